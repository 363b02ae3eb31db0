//! A file that is not a FileStorage is refused with a message naming the file,
//! the position and the header bytes (escaped, whatever they are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use zeoraid_filestorage::{FileStorage, Options};

#[test]
fn a_foreign_header_is_named_in_the_error() {
    for (content, shown) in [
        (&b"\x38\xa0\xe4\x52garbage"[..], r#"header b"8\xa0\xe4R""#),
        (&b"FS99rest"[..], r#"header b"FS99""#),
        (&b"FS"[..], r#"header b"FS""#),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = data_fs(&dir);
        std::fs::write(&path, content).unwrap();
        let err = FileStorage::open(&path, Options::default())
            .err()
            .expect("a foreign file must not open");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("position 0"), "{msg}");
        assert!(msg.contains(shown), "{msg}");
        // Nothing was written to the file.
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }
}
