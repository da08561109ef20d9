//! `barista index`, `search` and `calibrate` end to end: the real binary on real documents.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

mod common;

use common::{barista, barista_command, ok, scifact_jsonl, shared};
use std::path::{Path, PathBuf};

/// 40 SciFact documents as Barista JSONL, with titles and metadata.
fn corpus(dir: &Path) -> PathBuf {
    scifact_jsonl(dir, 40, |_, v, doc| {
        doc.insert("title".into(), v["title"].clone());
        doc.insert("metadata".into(), serde_json::json!({"n": 1}));
    })
}

#[test]
fn index_then_search_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let index = dir.path().join("idx");
    let model = shared("models/minilm-l6-2d");
    let (m, i, x) = (model.to_str().unwrap(), input.to_str().unwrap(), index.to_str().unwrap());
    let out = barista(&["index", "--model", m, "--input", i, "--out", x]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("indexed 40 documents"));
    // JSON output: hits, the stages that ran, timings.
    let json = ok(barista(&["search", "--index", x, "--json", "--k", "3", "--text", "mitochondria and aging"]));
    let response: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(response["hits"].as_array().unwrap().len(), 3);
    assert!(response["hits"][0]["text"].is_string() && response["hits"][0]["metadata"]["n"] == 1);
    let stages = response["stages"].as_array().unwrap();
    assert!(stages.len() >= 2 && stages[0]["method"] == "scan" && stages[1]["method"] == "rescore");
    assert!(response["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    // Human output and every profile; an explicit plan.
    for profile in ["fast", "balanced", "exact"] {
        let text = ok(barista(&["search", "--index", x, "--profile", profile, "cancer cells"]));
        assert_eq!(text.lines().count(), 10, "{profile}");
    }
    let json = ok(barista(&["search", "--index", x, "--json", "--stages", "2,64:20:scan 6,384:5", "cancer"]));
    let response: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(response["stages"][0]["kept"], 20);
    // Refusals.
    let again = barista(&["index", "--model", m, "--input", i, "--out", x]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already holds an index"));
    for (args, message) in [
        (vec!["search", "--index", x], "the query is empty or blank"),
        (vec!["search", "--index", x, "--profile", "warp", "q"], "unknown profile"),
        (vec!["search", "--index", x, "--stages", "6,384:5 2,64:5", "q"], "climb"),
        (vec!["search", "--index", x, "--stages", "6,384", "q"], "LAYER,DIM:KEEP"),
        (vec!["search", "--index", dir.path().join("nothing").to_str().unwrap(), "q"], "no index here"),
    ] {
        let out = barista(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn beir_input_and_calibration() {
    let dir = tempfile::tempdir().unwrap();
    // A small BEIR set: 60 SciFact documents, queries made of their titles.
    let text = std::fs::read_to_string(shared("datasets/scifact/corpus.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().take(60).collect();
    std::fs::write(dir.path().join("corpus.jsonl"), lines.join("\n")).unwrap();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for line in &lines[..30] {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        queries.push_str(
            &serde_json::json!({"_id": format!("q{}", v["_id"].as_str().unwrap()), "text": v["title"]}).to_string(),
        );
        queries.push('\n');
        qrels.push_str(&format!("q{}\t{}\t1\n", v["_id"].as_str().unwrap(), v["_id"].as_str().unwrap()));
    }
    std::fs::write(dir.path().join("queries.jsonl"), queries).unwrap();
    std::fs::write(dir.path().join("qrels.tsv"), qrels).unwrap();
    let index = dir.path().join("idx");
    common::index(dir.path(), "beir", &index);
    let q = dir.path().join("queries.jsonl");
    let r = dir.path().join("qrels.tsv");
    let out = barista(&[
        "calibrate",
        "--index",
        index.to_str().unwrap(),
        "--queries",
        q.to_str().unwrap(),
        "--qrels",
        r.to_str().unwrap(),
        "--target",
        "0.9",
    ]);
    let rule: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(rule["queries"], 30);
    let json = ok(barista(&["search", "--index", index.to_str().unwrap(), "--json", "--adaptive", "on", "cells"]));
    let response: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(response["stopped_early"].is_boolean());
}

fn live_documents(index: &str) -> u64 {
    let json = ok(barista(&["info", "--index", index, "--json"]));
    serde_json::from_str::<serde_json::Value>(&json).unwrap()["documents"].as_u64().unwrap()
}

#[test]
fn ctrl_c_keeps_what_was_committed_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let input = scifact_jsonl(dir.path(), 300, |_, _, _| {});
    let index = dir.path().join("idx");
    let model = shared("models/minilm-l6-2d");
    let (m, i, x) = (model.to_str().unwrap(), input.to_str().unwrap(), index.to_str().unwrap());
    let child = barista_command()
        .args(["index", "--model", m, "--input", i, "--out", x, "--batch", "16", "--commit-every", "32"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once some commits happened but before the end.
    let started = std::time::Instant::now();
    while !(index.join("MANIFEST").exists() && std::fs::read_dir(&index).unwrap().count() > 6) {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "indexing made no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let partial = live_documents(x);
    assert!(stderr.contains("--resume") && partial > 0 && partial < 300, "{partial} documents: {stderr}");
    // Re-running without --resume refuses; with it, finishes the rest only.
    let again = barista(&["index", "--model", m, "--input", i, "--out", x]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let resumed = barista(&["index", "--model", m, "--input", i, "--out", x, "--resume"]);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("({partial} already indexed, skipped)")), "{stderr}");
    assert_eq!(live_documents(x), 300);
    let info = ok(barista(&["info", "--index", x, "--verify"]));
    assert!(info.contains("300 live") && info.contains("every file matches"), "{info}");
}

#[test]
fn msmarco_input_and_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shared("datasets/msmarco-dl19-subset/collection.tsv")).unwrap();
    let lines: Vec<&str> = text.lines().take(25).collect();
    std::fs::write(dir.path().join("collection.tsv"), lines.join("\n")).unwrap();
    let index = dir.path().join("idx");
    common::index(dir.path(), "msmarco", &index);
    assert_eq!(live_documents(index.to_str().unwrap()), 25);
    let first_id = lines[0].split('\t').next().unwrap();
    let json = ok(barista(&[
        "search",
        "--index",
        index.to_str().unwrap(),
        "--json",
        "--k",
        "1",
        lines[0].split('\t').nth(1).unwrap(),
    ]));
    let response: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(response["hits"][0]["id"], first_id, "a passage finds itself");
    // A bad configuration file is refused with its name.
    let config = dir.path().join("barista.toml");
    std::fs::write(&config, "[server]\nport = 1\n").unwrap();
    let out = barista(&["serve", "--index", index.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("barista.toml") && stderr.contains("port"), "{stderr}");
}

/// Bad lines real files contain: a lone UTF-16 surrogate escape in a BEIR corpus and a raw
/// invalid byte in Barista JSONL are repaired (U+FFFD), a line without an id is skipped, and a
/// warning names each `file:line`; `--strict` stops at the first, naming it.
#[test]
fn bad_lines_are_repaired_or_skipped_by_policy_and_strict_stops() {
    let dir = tempfile::tempdir().unwrap();
    let beir = dir.path().join("beir");
    std::fs::create_dir_all(&beir).unwrap();
    std::fs::write(
        beir.join("corpus.jsonl"),
        "{\"_id\": \"a\", \"title\": \"\", \"text\": \"Cells make ATP.\"}\n\
         {\"_id\": \"b\", \"title\": \"\", \"text\": \"emoji \\ud83d cut\"}\n\
         {\"title\": \"no id\", \"text\": \"x\"}\n",
    )
    .unwrap();
    let jsonl = dir.path().join("docs.jsonl");
    std::fs::write(&jsonl, b"{\"id\": \"c\", \"text\": \"caf\xe9 au lait\"}\n{\"id\": \"d\", \"text\": \"Tea.\"}\n")
        .unwrap();
    let model = common::model();
    let index = |input: &Path, format: &str, out: &str, strict: bool| {
        let out = dir.path().join(out);
        let mut args = vec!["index", "--model", &model, "--input", input.to_str().unwrap(), "--format", format];
        args.extend(["--out", out.to_str().unwrap()]);
        if strict {
            args.push("--strict");
        }
        let output = barista(&args);
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned(), out)
    };
    let (ok, stderr, out) = index(&beir, "beir", "beir.idx", false);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("1 line(s) repaired and 1 skipped"), "{stderr}");
    assert!(
        stderr.contains("corpus.jsonl:2: repaired: a lone UTF-16 surrogate") && stderr.contains("corpus.jsonl:3"),
        "{stderr}"
    );
    assert_eq!(live_documents(out.to_str().unwrap()), 2);
    let (ok, stderr, _) = index(&beir, "beir", "beir-strict.idx", true);
    assert!(!ok && stderr.contains("corpus.jsonl:2") && stderr.contains("surrogate"), "{stderr}");
    let (ok, stderr, out) = index(&jsonl, "jsonl", "jsonl.idx", false);
    assert!(ok && stderr.contains("docs.jsonl:1: repaired: invalid UTF-8"), "{stderr}");
    assert_eq!(live_documents(out.to_str().unwrap()), 2);
    let (ok, stderr, _) = index(&jsonl, "jsonl", "jsonl-strict.idx", true);
    assert!(!ok && stderr.contains("docs.jsonl:1") && stderr.contains("invalid UTF-8"), "{stderr}");
}

/// The 40-document corpus indexed in `dir/idx`, every segment with a graph (default rung).
fn graphed_index(dir: &Path) -> PathBuf {
    let input = corpus(dir);
    let index = dir.join("idx");
    let model = shared("models/minilm-l6-2d");
    let (m, i, x) = (model.to_str().unwrap(), input.to_str().unwrap(), index.to_str().unwrap());
    ok(barista(&["index", "--model", m, "--input", i, "--out", x, "--graph-min-docs", "0"]));
    index
}

/// Every file in the index folder with its bytes, sorted by name.
fn files_with_contents(index: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// The graph rungs of the index's first segment, as `barista info --json` reports them.
fn graph_rungs_of(index: &str) -> serde_json::Value {
    let info: serde_json::Value = serde_json::from_str(&ok(barista(&["info", "--index", index, "--json"]))).unwrap();
    info["segments"][0]["graphs"].clone()
}

/// `barista graphs` moves an index's HNSW graphs to other rungs from the stored vectors, and
/// the graph profiles then shortlist through the smallest of them; a rung the index does not
/// store is refused with the stored rungs named, and changes nothing.
#[test]
fn graphs_move_to_other_rungs_without_encoding_again() {
    let dir = tempfile::tempdir().unwrap();
    let index = graphed_index(dir.path());
    let x = index.to_str().unwrap();
    let graph_rungs = || graph_rungs_of(x);
    assert_eq!(graph_rungs(), serde_json::json!([[6, 384]]));
    let before = files_with_contents(&index);
    let refused = barista(&["graphs", "--index", x, "--rung", "7,7"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("not one of the index's stored rungs: (1,32) (2,64)"),
        "{stderr}"
    );
    // Refused before the writer is taken: not even the write-ahead log is touched.
    assert_eq!(files_with_contents(&index), before, "a refused `graphs` changed the index folder");
    assert_eq!(graph_rungs(), serde_json::json!([[6, 384]]));
    let out = barista(&["graphs", "--index", x, "--rung", "5,256", "--rung", "2,64"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && stderr.contains("graphs on (2,64) (5,256): built for 1 segment(s)")
            && stderr.contains("dropped the graphs on (6,384)"),
        "{stderr}"
    );
    assert_eq!(graph_rungs(), serde_json::json!([[2, 64], [5, 256]]));
    let json =
        ok(barista(&["search", "--index", x, "--json", "--k", "5", "--stages", "5,256:20:graph=40 6,384:5", "cancer"]));
    let response: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(response["stages"][0]["method"], "graph", "{response}");
    assert_eq!(response["hits"].as_array().unwrap().len(), 5);
    let verified = ok(barista(&["info", "--index", x, "--verify"]));
    assert!(verified.contains("(2,64) (5,256)"), "{verified}");
}

/// `barista graphs --choose-from` measures each rung's exhaustive shortlist against the final
/// top 10 on sample queries and builds the graph on the cheapest rung that keeps the target;
/// the shares it prints are recomputed here from single-rung searches (`--stages "L,D:10:scan"`
/// against `--profile exact`). Bad arguments change nothing.
#[test]
fn graph_rung_is_chosen_by_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let index = graphed_index(dir.path());
    let x = index.to_str().unwrap();
    let queries = ["vitamin D and bone density", "how do tumours evade the immune system", "stem cell aging"];
    let file = dir.path().join("queries.txt");
    std::fs::write(&file, format!("{}\n\n", queries.join("\n"))).unwrap();
    let q = file.to_str().unwrap();
    let graph_rungs = || graph_rungs_of(x);
    let ids = |args: &[&str], text: &str| -> Vec<String> {
        let mut all = vec!["search", "--index", x, "--json", "--k", "10"];
        all.extend_from_slice(args);
        all.push(text);
        let response: serde_json::Value = serde_json::from_str(&ok(barista(&all))).unwrap();
        response["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_string()).collect()
    };
    // The expected shares at N = 10, from the search command alone.
    let rungs = ["1,32", "2,64", "3,96", "4,128", "5,256", "6,384"];
    let truths: Vec<Vec<String>> = queries.iter().map(|t| ids(&["--profile", "exact"], t)).collect();
    let shares: Vec<f64> = rungs
        .iter()
        .map(|r| {
            let plan = format!("{r}:10:scan");
            let found: usize = queries
                .iter()
                .zip(&truths)
                .map(|(t, truth)| ids(&["--stages", &plan], t).iter().filter(|d| truth.contains(d)).count())
                .sum();
            found as f64 / 30.0
        })
        .collect();
    assert_eq!(shares[5], 1.0);
    // A walk of 10 candidates on any smaller rung reads fewer bytes than 100 on (6,384) in f16,
    // and the smaller the rung the fewer: here the cheapest qualifying rung is the smallest.
    let target = 0.8;
    let expected = rungs[shares.iter().position(|&s| s >= target).unwrap()];
    let out =
        barista(&["graphs", "--index", x, "--choose-from", q, "--shortlist", "10", "--target", "0.8", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("(3 queries)"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "40 documents are more than a shortlist of 10");
    // A shortlist as long as the collection measures nothing: said, not hidden.
    let wide = barista(&["graphs", "--index", x, "--choose-from", q, "--dry-run"]);
    let stderr = String::from_utf8_lossy(&wide.stderr);
    assert!(
        wide.status.success() && stderr.contains("holds 40 documents, no more than the shortlist of 1000"),
        "{stderr}"
    );
    for (rung, share) in rungs.iter().zip(&shares) {
        let line = stdout.lines().find(|l| l.starts_with(&format!("({rung})"))).unwrap_or_else(|| panic!("{stdout}"));
        let printed: Vec<f64> = line.split_whitespace().skip(2).map(|v| v.parse().unwrap()).collect();
        // Columns: top 10 (asked for), then 100, 300, 1000, 3000 (all 40 documents: everything kept).
        assert_eq!(printed.len(), 5, "{line}");
        assert!(
            (printed[0] - share).abs() < 1e-3 && printed[1..].iter().all(|&v| v == 1.0),
            "{rung}: {line} vs {share}"
        );
    }
    assert!(stdout.contains(&format!("graph rung: ({expected})")), "{stdout}");
    assert_eq!(graph_rungs(), serde_json::json!([[6, 384]]), "a dry run builds nothing");
    // Bad arguments are refused before anything is measured or built.
    for (args, message) in [
        (vec!["--choose-from", q, "--target", "1.5"], "not a share between 0 and 1"),
        (vec!["--choose-from", q, "--rung", "5,256"], "cannot be used with"),
        (vec!["--rung", "5,256", "--dry-run"], "--choose-from"),
        (vec!["--rung", "5,256", "--target", "0.9"], "--choose-from"),
    ] {
        let mut all = vec!["graphs", "--index", x];
        all.extend(args);
        let out = barista(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{stderr}");
    }
    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, "\n  \n").unwrap();
    let out = barista(&["graphs", "--index", x, "--choose-from", blank.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("holds no query text"), "{stderr}");
    assert_eq!(graph_rungs(), serde_json::json!([[6, 384]]));
    // Without --dry-run the graph moves to the chosen rung.
    let out = barista(&["graphs", "--index", x, "--choose-from", q, "--shortlist", "10", "--target", "0.8"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let [layer, dim]: [usize; 2] = {
        let mut parts = expected.split(',').map(|v| v.parse().unwrap());
        [parts.next().unwrap(), parts.next().unwrap()]
    };
    assert_eq!(graph_rungs(), serde_json::json!([[layer, dim]]));
}

/// A damaged graph file is named (by `info --verify`, which fails, and as a warning by every
/// command that opens the index), never used — searches scan its segment and give the same
/// hits — and `barista graphs --index` builds it again from the stored rows; with nothing left
/// to do it changes no file. A file passed as --index is named as not an index directory.
#[test]
fn a_damaged_graph_is_reported_searched_around_and_built_again() {
    let dir = tempfile::tempdir().unwrap();
    let index = graphed_index(dir.path());
    let x = index.to_str().unwrap();
    let search = || -> (Vec<String>, String) {
        let out = barista(&["search", "--index", x, "--json", "--k", "10", "cancer treatment outcomes"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids = response["hits"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_string()).collect();
        (ids, stderr)
    };
    let (intact, _) = search();
    let name = std::fs::read_dir(&index)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with(".graph"))
        .unwrap();
    let path = index.join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();

    let out = barista(&["info", "--index", x, "--verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(&name)
            && stderr.contains("damaged")
            && stderr.contains(&format!("barista graphs --index {x}")),
        "{stderr}"
    );
    // The same verdict as JSON: the exit status, the warning, and the segment's damaged graph.
    let out = barista(&["info", "--index", x, "--verify", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(&name));
    assert_eq!(info["verified"], false, "{info}");
    assert_eq!(info["segments"][0]["damaged_graphs"][0]["file"], name.as_str(), "{info}");
    let (hits, stderr) = search();
    assert_eq!(hits, intact, "a segment whose graph is damaged is scanned");
    assert!(stderr.contains("warning") && stderr.contains(&name) && stderr.contains("scan"), "{stderr}");

    let out = barista(&["graphs", "--index", x]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("graphs on (6,384): built for 1 segment(s)"), "{stderr}");
    assert!(ok(barista(&["info", "--index", x, "--verify"])).contains("every file matches its checksum"));
    let (hits, stderr) = search();
    assert_eq!(hits, intact);
    assert!(!stderr.contains("warning"), "{stderr}");

    // Nothing to do: no file changes, not even the write-ahead log's name.
    let before = files_with_contents(&index);
    let out = barista(&["graphs", "--index", x]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("nothing to do"), "{stderr}");
    let out = barista(&["graphs", "--index", x, "--rung", "6,384"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing to do"));
    assert_eq!(files_with_contents(&index), before, "a `graphs` with nothing to do changed the index folder");

    let file = dir.path().join("docs.jsonl");
    let out = barista(&["info", "--index", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("this is a file, not an index directory"), "{stderr}");
}

/// `barista compact` on an index with one segment and no deletions says so and rewrites nothing
/// (it used to print "compacted 1 segment(s) … into 1" as if it had).
#[test]
fn compact_on_a_compact_index_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = graphed_index(dir.path());
    let x = index.to_str().unwrap();
    let segment_files = || {
        let mut files = files_with_contents(&index);
        files.retain(|(name, _)| name.starts_with("seg-"));
        files
    };
    let before = segment_files();
    assert!(!before.is_empty());
    let out = barista(&["compact", "--index", x]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("nothing to compact: 1 segment(s) holding 40 documents"),
        "{stderr}"
    );
    assert_eq!(segment_files(), before, "a compaction with nothing to do rewrote a segment");
}

/// `barista serve` on a port already in use fails naming the address and leaves every file of
/// the index as it was (it used to open the writer first, which renames the write-ahead log).
#[test]
fn serve_on_a_port_in_use_leaves_the_index_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let index = graphed_index(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let before = files_with_contents(&index);
    let out = barista(&["serve", "--index", index.to_str().unwrap(), "--addr", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert_eq!(files_with_contents(&index), before, "a refused `serve` changed the index folder");
}
