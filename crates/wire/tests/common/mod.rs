//! Shared helpers for the integration tests: loading the captured ZEO 6.2 frames
//! and encoder vectors copied into `tests/fixtures/`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// Every JSON object of one `.jsonl` fixture.
pub fn load_jsonl(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixtures_dir().join(name)).expect("fixture readable");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// All scenario trace files (`NN_name.jsonl`), sorted.
pub fn trace_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl") && n.as_bytes().first().is_some_and(u8::is_ascii_digit))
        .collect();
    names.sort();
    names
}

pub fn str_field<'a>(obj: &'a serde_json::Value, key: &str) -> &'a str {
    obj.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("field {key} in {obj}"))
}

pub fn hex_field(obj: &serde_json::Value, key: &str) -> Vec<u8> {
    hex::decode(str_field(obj, key)).expect("hex")
}
