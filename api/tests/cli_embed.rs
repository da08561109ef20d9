//! `barista embed` end to end: the real binary, the shared model.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

mod common;

use common::{barista_command, model};
use std::io::Write;
use std::process::{Output, Stdio};

/// Runs `barista` with `args`, feeding it `stdin`.
fn barista(args: &[&str], stdin: Option<&str>) -> Output {
    barista_bytes(args, stdin.unwrap_or("").as_bytes())
}

/// Runs `barista` with `args`, feeding it `input` as it is (not necessarily UTF-8).
fn barista_bytes(args: &[&str], input: &[u8]) -> Output {
    let mut child = barista_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = input.to_vec();
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || pipe.write_all(&input));
    child.wait_with_output().unwrap()
}

fn lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "barista failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn embeds_every_profile_rung_by_default() {
    let m = model();
    let out = lines(&barista(&["embed", "--model", &m, "--query", "what is a matryoshka embedding", "second"], None));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["text"], "what is a matryoshka embedding");
    assert_eq!(out[0]["kind"], "query");
    assert_eq!(out[0]["tokens"], 12);
    let rungs = out[0]["rungs"].as_array().unwrap();
    let shape: Vec<(u64, u64)> =
        rungs.iter().map(|r| (r["layer"].as_u64().unwrap(), r["dim"].as_u64().unwrap())).collect();
    assert_eq!(shape, vec![(1, 32), (2, 64), (3, 96), (4, 128), (5, 256), (6, 384)]);
    for r in rungs {
        let v: Vec<f64> = r["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(v.len() as u64, r["dim"].as_u64().unwrap());
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "cosine profile: unit vectors, got norm {norm}");
    }
}

#[test]
fn selected_rungs_and_texts_from_stdin() {
    let m = model();
    let out = lines(&barista(
        &["embed", "--model", &m, "--rung", "2,64", "--rung", "6,16", "--similarity", "dot"],
        Some("first text\nsecond text\n"),
    ));
    assert_eq!(out.len(), 2);
    assert_eq!(out[1]["text"], "second text");
    assert_eq!(out[1]["kind"], "passage");
    let rungs = out[1]["rungs"].as_array().unwrap();
    assert_eq!(rungs.len(), 2);
    assert_eq!(rungs[1]["vector"].as_array().unwrap().len(), 16);
}

#[test]
fn texts_from_stdin_are_read_as_data_set_lines_are() {
    // Invalid UTF-8 is repaired and reported, blank lines are skipped: as for every other file.
    let m = model();
    let output = barista_bytes(&["embed", "--model", &m, "--rung", "2,64"], b"caf\xe9 au lait\n\n  \nsecond text\n");
    let out = lines(&output);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["text"], "caf\u{fffd} au lait");
    assert_eq!(out[1]["text"], "second text");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("standard input"), "{stderr}");
}

#[test]
fn queries_are_cut_shorter_than_passages() {
    let m = model();
    let long = "retrieval ".repeat(100);
    let q = lines(&barista(&["embed", "--model", &m, "--query", &long], None));
    let p = lines(&barista(&["embed", "--model", &m, "--passage", &long], None));
    assert_eq!(q[0]["tokens"], 32);
    assert_eq!(p[0]["tokens"], 102);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let m = model();
    let cases: [(&[&str], &str); 5] = [
        (&["embed", "--model", &m, "--rung", "9,32", "x"], "uses layer 9, but the model has 6 layers"),
        (&["embed", "--model", &m, "--rung", "2,999", "x"], "hidden size 384"),
        (&["embed", "--model", &m, "--rung", "two", "x"], "is not a rung"),
        (&["embed", "--model", "/definitely/not/here", "x"], "no model folder"),
        (&["embed", "--model", &m, "--query", "--passage", "x"], "cannot be used with"),
    ];
    for (args, message) in cases {
        let out = barista(args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(message), "{args:?}: expected {message:?} in {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed vectors despite failing");
    }
    let out = barista(&["embed", "--model", &m], Some(""));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no texts to embed"));
}
