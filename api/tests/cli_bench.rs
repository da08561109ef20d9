//! `barista bench` end to end: the real binary, the real model, a real slice of the DL19
//! subset in MS MARCO files, with the run files checked against an independent nDCG.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
mod common;

use common::{barista, barista_command, shared};
use std::path::{Path, PathBuf};

/// The first 400 DL19-subset passages, with the queries and judgements that concern them.
fn slice(dir: &Path) -> PathBuf {
    let root = shared("datasets/msmarco-dl19-subset");
    let out = dir.join("dl19-slice");
    std::fs::create_dir_all(&out).unwrap();
    let collection: Vec<String> =
        std::fs::read_to_string(root.join("collection.tsv")).unwrap().lines().take(400).map(str::to_string).collect();
    let pids: BTreeSet<&str> = collection.iter().map(|l| l.split('\t').next().unwrap()).collect();
    let qrels: Vec<String> = std::fs::read_to_string(root.join("qrels.tsv"))
        .unwrap()
        .lines()
        .filter(|l| pids.contains(l.split_whitespace().nth(2).unwrap()))
        .map(str::to_string)
        .collect();
    std::fs::write(out.join("collection.tsv"), collection.join("\n") + "\n").unwrap();
    std::fs::write(out.join("qrels.tsv"), qrels.join("\n") + "\n").unwrap();
    std::fs::copy(root.join("queries.tsv"), out.join("queries.tsv")).unwrap();
    out
}

/// nDCG@10 from a TREC run file and TREC qrels, written independently of the engine's metrics
/// (trec_eval: linear gains, ties by descending document id, judged queries without results 0).
fn ndcg10_from_files(run: &Path, qrels: &Path) -> f64 {
    let mut judged: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in std::fs::read_to_string(qrels).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        judged.entry(f[0].into()).or_default().insert(f[2].into(), f[3].parse().unwrap());
    }
    let mut ranked: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
    for line in std::fs::read_to_string(run).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((f.len(), f[1]), (6, "Q0"), "not a TREC run line: {line}");
        ranked.entry(f[0].into()).or_default().push((f[4].parse().unwrap(), f[2].into()));
    }
    let mut total = 0.0;
    let mut queries = 0;
    for (query, grades) in &judged {
        if !grades.values().any(|&g| g > 0.0) {
            continue;
        }
        queries += 1;
        let mut docs = ranked.get(query).cloned().unwrap_or_default();
        docs.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        let discount = |i: usize| 1.0 / (i as f64 + 2.0).log2();
        let dcg: f64 = docs
            .iter()
            .take(10)
            .enumerate()
            .map(|(i, (_, d))| grades.get(d).copied().unwrap_or(0.0) * discount(i))
            .sum();
        let mut ideal: Vec<f64> = grades.values().copied().filter(|&g| g > 0.0).collect();
        ideal.sort_by(|a, b| b.total_cmp(a));
        let idcg: f64 = ideal.iter().take(10).enumerate().map(|(i, g)| g * discount(i)).sum();
        total += dcg / idcg;
    }
    total / queries as f64
}

#[test]
fn bench_reports_every_row_and_its_run_files_agree_with_an_independent_ndcg() {
    let dir = tempfile::tempdir().unwrap();
    let data = slice(dir.path());
    let (index, out) = (dir.path().join("index"), dir.path().join("out"));
    let model = shared("models/minilm-l6-2d");
    let args = |json: bool| {
        let mut a = vec![
            "bench".to_string(),
            "--model".into(),
            model.to_str().unwrap().into(),
            "--dataset".into(),
            data.to_str().unwrap().into(),
            "--index".into(),
            index.to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--min-seconds".into(),
            "0".into(),
            "--threads".into(),
            "2".into(),
            "--depth".into(),
            "100".into(),
            "--plan".into(),
            "2,64:300:scan 6,384:10".into(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    };
    let run = |json: bool| {
        let output = barista_command().args(args(json)).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        (String::from_utf8(output.stdout).unwrap(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (stdout, _) = run(true);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["documents"], 400);
    let order: Vec<&str> = report["order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(
        order,
        ["exact", "rung 1,32", "rung 2,64", "rung 3,96", "rung 4,128", "rung 5,256", "balanced", "fast", "plan 1"]
    );
    let rows = &report["profiles"];
    for label in &order {
        let row = &rows[label];
        for metric in ["ndcg@10", "mrr@10", "recall@100", "recall@1000", "overlap@10"] {
            let v = row[metric].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{label} {metric} = {v}");
        }
        let latency = &row["latency_ms"];
        assert!(latency["p50_ms"].as_f64().unwrap() > 0.0);
        assert!(latency["p50_ms"].as_f64() <= latency["p95_ms"].as_f64());
        assert!(latency["p95_ms"].as_f64() <= latency["p99_ms"].as_f64());
        assert!(row["qps"]["1"].as_f64().unwrap() > 0.0 && row["qps"]["2"].as_f64().unwrap() > 0.0);
        assert!(!row["stages"].as_array().unwrap().is_empty());
        // The run file holds the depth asked for, and its nDCG@10 is the one reported.
        let file = out.join(row["run_file"].as_str().unwrap());
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert_eq!(lines, report["queries"].as_u64().unwrap() as usize * 100, "{label}");
        let independent = ndcg10_from_files(&file, &data.join("qrels.tsv"));
        let reported = row["ndcg@10"].as_f64().unwrap();
        assert!((independent - reported).abs() < 1e-6, "{label}: run file {independent} vs reported {reported}");
    }
    assert_eq!(rows["exact"]["overlap@10"], 1.0);
    assert!(rows["exact"]["ndcg@10"].as_f64().unwrap() > rows["rung 1,32"]["ndcg@10"].as_f64().unwrap());
    assert_eq!(rows["balanced"]["stages"][0]["method"], "scan");
    assert_eq!(rows["plan 1"]["plan"], "2,64:300:scan 6,384:100");
    for file in ["report.md", "results.json", "quality-latency.svg"] {
        assert!(out.join(file).is_file(), "{file}");
    }

    // A second run reuses the index and prints the Markdown table.
    let (table, stderr) = run(false);
    assert!(stderr.contains("reusing the index"), "{stderr}");
    assert!(table.contains("| exact | ") && table.contains("| rung 3,96 | "), "{table}");
    let again = std::fs::read_to_string(out.join("results.json")).unwrap();
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["profiles"]["exact"]["ndcg@10"], rows["exact"]["ndcg@10"]);

    // The index is not reused for other data.
    let lines: Vec<String> =
        std::fs::read_to_string(data.join("collection.tsv")).unwrap().lines().take(300).map(str::to_string).collect();
    std::fs::write(data.join("collection.tsv"), lines.join("\n") + "\n").unwrap();
    let output = barista_command().args(args(true)).output().unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("holds 400 documents but the data set has 300"), "{err}");
}

#[test]
fn bad_data_set_arguments_are_explained() {
    let model = shared("models/minilm-l6-2d");
    let m = model.to_str().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let output = barista(&["bench", "--model", m, "--dataset", "scifactt", "--cache-dir", c]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("'scifactt' is neither a folder nor a known data set") && err.contains("nfcorpus"), "{err}");
    let scifact = shared("datasets/scifact");
    let output = barista(&["bench", "--model", m, "--dataset", scifact.to_str().unwrap(), "--split", "dev"]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("no judgements for split 'dev'") && err.contains("test, train"), "{err}");
    let output = barista(&["bench", "--model", m, "--dataset", scifact.to_str().unwrap(), "--format", "trek"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("choose beir or msmarco"));
}
