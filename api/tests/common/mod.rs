//! Helpers shared by the CLI and server tests: the shared material and the real binary.

#![allow(dead_code)] // each test binary uses its own subset

pub mod http;
pub mod python;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path inside `../shared` (the model and data sets beside the repository).
pub fn shared(relative: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(relative);
    assert!(path.exists(), "shared material missing at {}", path.display());
    path
}

/// The shared model's folder, as text for command lines.
pub fn model() -> String {
    shared("models/minilm-l6-2d").to_str().unwrap().to_string()
}

/// The `barista` binary, unaffected by the environment's Barista settings.
pub fn barista_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_barista"));
    for variable in ["BARISTA_INDEX", "BARISTA_MODEL", "BARISTA_CACHE_DIR"] {
        command.env_remove(variable);
    }
    command
}

/// Runs `barista` with `args` to completion.
pub fn barista(args: &[&str]) -> Output {
    barista_command().args(args).output().unwrap()
}

/// The standard output of a run that must have succeeded.
pub fn ok(output: Output) -> String {
    assert!(output.status.success(), "barista failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The first `n` SciFact documents as Barista JSONL in `dir/docs.jsonl`; `fields(i, document)`
/// may add or remove fields of the `i`-th (which starts with `id` and `text`).
pub fn scifact_jsonl(
    dir: &Path,
    n: usize,
    fields: impl Fn(usize, &serde_json::Value, &mut serde_json::Map<String, serde_json::Value>),
) -> PathBuf {
    let text = std::fs::read_to_string(shared("datasets/scifact/corpus.jsonl")).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().take(n).enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut doc = serde_json::Map::new();
        doc.insert("id".into(), v["_id"].clone());
        doc.insert("text".into(), v["text"].clone());
        fields(i, &v, &mut doc);
        out.push_str(&serde_json::Value::Object(doc).to_string());
        out.push('\n');
    }
    let path = dir.join("docs.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

/// `barista index` of `input` (in `format`) into `out` with the shared model; it must succeed.
/// Returns its standard error (the progress and the summary).
pub fn index(input: &Path, format: &str, out: &Path) -> String {
    let output = barista(&[
        "index",
        "--model",
        &model(),
        "--input",
        input.to_str().unwrap(),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "barista index failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stderr).into_owned()
}
