//! Unit-test access to the chain's reference vectors (copied from the shared spec into
//! `tests/data/` so a clean clone tests itself).

use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn wallet_path(file: &str) -> PathBuf {
    data_dir().join(file)
}

pub fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(data_dir().join("claws-vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}
