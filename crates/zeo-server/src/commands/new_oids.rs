//! `new_oids(n=100)`: hand out fresh oids (`new_oid` itself is registered in ZEO
//! but not implemented; its `AttributeError` is produced by the dispatcher).

use zeoraid_storage::MAX_NEW_OIDS;
use zeoraid_wire::Value;

use super::Args;
use crate::error::ZeoError;
use crate::session::Session;

pub(crate) async fn new_oids(session: &mut Session, a: Args) -> Result<Value, ZeoError> {
    let n = a.int_or(0, 100)?;
    if session.read_only {
        return Err(ZeoError::read_only());
    }
    let n = n.clamp(1, i64::from(MAX_NEW_OIDS)) as u32;
    let served = session.served()?;
    let oids = served.storage.new_oids(n).await?;
    Ok(Value::List(
        oids.into_iter().map(|o| Value::from(o.0)).collect(),
    ))
}
