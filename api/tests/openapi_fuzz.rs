//! The OpenAPI document says what the server does: schemathesis (PyPI), a schema-based fuzzer,
//! generates requests from `GET /openapi.json` against a real server on loopback and checks
//! every answer: no server error, only documented statuses, content types, headers and
//! response bodies, and every request the schema forbids refused. 0 failures allowed.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

mod common;

use common::http::{Server, build_index};
use std::path::Path;

#[test]
fn a_schema_based_fuzzer_finds_no_server_error_and_no_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let index = build_index(dir.path(), 40);
    let server = Server::start(&index, &["--max-batch", "20", "--max-k", "100"]);
    let python = common::python::python(&["schemathesis==4.32.5"]);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/schemathesis.toml");
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,\
                  response_headers_conformance,response_schema_conformance,negative_data_rejection";
    let output = std::process::Command::new(python)
        .args(["-m", "schemathesis.cli", "--config-file", config.to_str().unwrap(), "run"])
        .arg(server.url("/openapi.json"))
        .args(["--checks", checks, "--max-examples", "40", "--seed", "20261129", "--workers", "2"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: String =
        stdout.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{}\n{}",
        tail.chars().take(20_000).collect::<String>(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Tested: 12"), "every route was tested:\n{tail}");
}
