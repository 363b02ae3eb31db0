//! The RAID's one piece of state of its own: the names of the backends that hold
//! every acknowledged commit (the optimal ones; when none is left, the last good
//! ones), kept in a small file. The backends alone cannot tell, after a restart
//! with some of them unreachable, whether a reachable one that looks newest really
//! is (it may have been degraded long before, while the unreachable one went on
//! committing). With the record, a reachable backend at the newest reachable tid
//! that was in the set is proof that nothing acknowledged is elsewhere, and the
//! RAID takes writes at once; without it, writes wait for the unreachable backends
//! (`unverified.rs`).
//!
//! The set is rewritten whenever it changes, before the commit that changed it is
//! acknowledged: atomically (a temporary file, `fsync`, rename, `fsync` of the
//! directory). Format, text: the line `zeoraid optimal backends 1`, then one
//! backend name per line.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;

const HEADER: &str = "zeoraid optimal backends 1";

/// The file recording which backends hold every acknowledged commit.
#[derive(Debug)]
pub struct OptimalRecord {
    path: PathBuf,
    written: Option<Vec<String>>,
}

impl OptimalRecord {
    pub fn new(path: PathBuf) -> Self {
        OptimalRecord {
            path,
            written: None,
        }
    }

    /// The recorded names; `None` when there is no record (first start) or it
    /// cannot be read (logged: the RAID then waits as without one).
    pub fn read(&self) -> Option<Vec<String>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::error!(file = %self.path.display(), "cannot read the RAID's record of optimal backends: {e}");
                return None;
            }
        };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            tracing::error!(file = %self.path.display(), "not a record of optimal backends (bad first line); ignored");
            return None;
        }
        Some(lines.filter(|l| !l.is_empty()).map(str::to_owned).collect())
    }

    /// Records `names` unless they are what was written last. A failure is
    /// logged, not returned: the commit in progress is not failed for it (the
    /// record only narrows what a restart must wait for).
    pub fn write(&mut self, names: Vec<String>) {
        if self.written.as_ref() == Some(&names) {
            return;
        }
        match self.write_file(&names) {
            Ok(()) => self.written = Some(names),
            Err(e) => tracing::error!(
                file = %self.path.display(),
                "cannot record the optimal backends: {e}; after a restart with backends \
                 unreachable, writes will wait for them"
            ),
        }
    }

    fn write_file(&self, names: &[String]) -> std::io::Result<()> {
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut text = String::from(HEADER);
        text.push('\n');
        for name in names {
            text.push_str(name);
            text.push('\n');
        }
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_missing_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raid.state");
        let mut record = OptimalRecord::new(path.clone());
        assert_eq!(record.read(), None);
        record.write(vec!["a".into(), "b c".into()]);
        assert_eq!(record.read(), Some(vec!["a".to_owned(), "b c".to_owned()]));
        record.write(vec![]);
        assert_eq!(record.read(), Some(vec![]));
        std::fs::write(&path, "something else\na\n").unwrap();
        assert_eq!(OptimalRecord::new(path).read(), None);
    }

    #[test]
    fn an_unwritable_place_is_logged_not_fatal() {
        let mut record = OptimalRecord::new(PathBuf::from("/nonexistent-dir/x/raid.state"));
        record.write(vec!["a".into()]);
        assert_eq!(record.read(), None);
    }
}
