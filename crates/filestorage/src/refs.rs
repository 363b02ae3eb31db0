//! "Which objects does this record refer to?" — the question pack's garbage
//! collection asks of every record it keeps (ZODB's `referencesf`). The answer
//! comes from the wire crate's pickle decoder; a storage can be given another
//! function (tests, or records transformed by a wrapper).

use std::sync::Arc;

use zeoraid_storage::Oid;

/// The persistent references (ordinary internal ones: not weak, not
/// cross-database) of an object record, or why the record could not be read.
pub type ReferencesFn = Arc<dyn Fn(&[u8]) -> Result<Vec<Oid>, String> + Send + Sync>;

/// `ZODB.serialize.referencesf`, via `zeoraid_wire::pickle::persistent_references`.
pub fn default_references() -> ReferencesFn {
    Arc::new(|record: &[u8]| {
        zeoraid_wire::pickle::persistent_references(record)
            .map(|oids| oids.into_iter().map(Oid).collect())
            .map_err(|e| e.to_string())
    })
}
