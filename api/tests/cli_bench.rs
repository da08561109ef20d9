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
    // Every judged query counts, also one judged only with grade 0 (it scores 0).
    for (query, grades) in &judged {
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
        total += if idcg > 0.0 { dcg / idcg } else { 0.0 };
    }
    total / queries as f64
}

/// A BEIR folder: `corpus` lines (id, text), `queries` (id, text or None for no "text" field),
/// qrels (query, document, grade).
fn beir(dir: &Path, corpus: &[(&str, &str)], queries: &[(&str, Option<&str>)], qrels: &[(&str, &str, i32)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let lines: Vec<String> =
        corpus.iter().map(|(id, text)| serde_json::json!({"_id": id, "title": "", "text": text}).to_string()).collect();
    std::fs::write(dir.join("corpus.jsonl"), lines.join("\n") + "\n").unwrap();
    let lines: Vec<String> = queries
        .iter()
        .map(|(id, text)| match text {
            Some(t) => serde_json::json!({"_id": id, "text": t}).to_string(),
            None => serde_json::json!({"_id": id}).to_string(),
        })
        .collect();
    std::fs::write(dir.join("queries.jsonl"), lines.join("\n") + "\n").unwrap();
    let lines: Vec<String> = qrels.iter().map(|(q, d, g)| format!("{q}\t{d}\t{g}")).collect();
    std::fs::write(dir.join("qrels/test.tsv"), format!("query-id\tcorpus-id\tscore\n{}\n", lines.join("\n"))).unwrap();
    dir.to_path_buf()
}

/// `barista bench --json` on a data set folder: (report, standard error).
fn bench_json(data: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let model = shared("models/minilm-l6-2d");
    let out = data.join("out");
    let output = barista_command()
        .args(["bench", "--model", model.to_str().unwrap(), "--dataset", data.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--min-seconds", "0", "--no-rungs", "--profiles", "exact", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

#[test]
fn a_hit_that_is_the_query_itself_is_dropped_for_beir_as_beir_does() {
    let dir = tempfile::tempdir().unwrap();
    let uniforms = "School uniforms reduce bullying because everyone looks the same.";
    let data = beir(
        dir.path(),
        &[
            ("a1", uniforms),
            ("a2", "Uniforms suppress self-expression and do not stop bullying."),
            ("a3", "Tea grows at high altitude."),
        ],
        &[("a1", Some(uniforms))],
        &[("a1", "a2", 1)],
    );
    let (report, _) = bench_json(&data, &[]);
    assert_eq!(report["conventions"]["identical_ids"], "dropped");
    assert!((report["profiles"]["exact"]["ndcg@10"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{report}");
    let (report, _) = bench_json(&data, &["--keep-identical-ids"]);
    assert_eq!(report["conventions"]["identical_ids"], "kept_by_request");
    let kept = report["profiles"]["exact"]["ndcg@10"].as_f64().unwrap();
    assert!((kept - 1.0 / 3f64.log2()).abs() < 1e-4, "a2 second behind a1 itself: {kept}");
    // At depth 1 the query itself takes the only place unless one more hit is asked for.
    let (report, _) = bench_json(&data, &["--depth", "1"]);
    assert!((report["profiles"]["exact"]["ndcg@10"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{report}");
}

#[test]
fn every_judged_query_counts_blank_ones_too_and_repeated_ids_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    // q2 is judged only with grade 0: trec_eval and pytrec_eval count it (0), so both means are
    // 0.5. q3 is blank and q4 has no text: they finish with a warning and score 0 as well.
    let corpus = [("d1", "Apples are red fruit."), ("d2", "The ocean is salty."), ("d1", "Apples are red fruit.")];
    let queries = [("q1", Some("red fruit")), ("q2", Some("salt water"))];
    let qrels = [("q1", "d1", 1), ("q2", "d2", 0)];
    let data = beir(&dir.path().join("two"), &corpus, &queries, &qrels);
    let index = dir.path().join("index");
    let (report, stderr) = bench_json(&data, &["--index", index.to_str().unwrap()]);
    let exact = &report["profiles"]["exact"];
    assert!((exact["ndcg@10"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{report}");
    assert!((exact["mrr@10"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{report}");
    assert!(stderr.contains("1 documents repeat an id") && stderr.contains("\"d1\""), "{stderr}");
    assert_eq!(
        (report["documents"].as_u64(), report["conventions"]["repeated_documents"].as_u64()),
        (Some(2), Some(1))
    );
    // The index of the repeated ids is reused: it holds the distinct documents.
    let (_, stderr) = bench_json(&data, &["--index", index.to_str().unwrap()]);
    assert!(stderr.contains("reusing the index"), "{stderr}");

    // q1 is listed twice: its last text wins (as a dictionary of queries keeps it); were the
    // first one used, d1 would rank second and the mean would not be 0.5.
    let queries = [
        ("q1", Some("the salty ocean")),
        ("q1", Some("red fruit")),
        ("q2", Some("salt water")),
        ("q3", Some("   ")),
        ("q4", None),
    ];
    let qrels = [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d1", 1), ("q4", "d2", 1)];
    let data = beir(&dir.path().join("blank"), &corpus, &queries, &qrels);
    let (report, stderr) = bench_json(&data, &[]);
    assert!(stderr.contains("query \"q3\" is blank") && stderr.contains("query \"q4\" is blank"), "{stderr}");
    assert!(stderr.contains("1 queries repeat an id") && stderr.contains("\"q1\""), "{stderr}");
    assert_eq!(report["queries"], 4);
    assert_eq!(report["conventions"]["blank_queries"], serde_json::json!(["q3", "q4"]));
    assert!((report["profiles"]["exact"]["ndcg@10"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{report}");
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

/// Runs bench/peers/trec_metrics.py (pytrec_eval) on a run file.
fn pytrec_eval(run: &Path, qrels: &Path, min_grade: i32) -> serde_json::Value {
    let python = common::python::python(&["pytrec-eval-terrier==0.5.11"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/trec_metrics.py");
    let output = std::process::Command::new(python)
        .args([script.to_str().unwrap(), "--run", run.to_str().unwrap(), "--qrels", qrels.to_str().unwrap()])
        .args(["--min-grade", &min_grade.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every row's run file scored by pytrec_eval equals what `barista bench` reports, to 4
/// decimals, on real data: a slice of the DL19 subset at relevance level 2 (TREC DL's binary
/// metrics), and a slice of SciFact.
#[test]
fn metrics_equal_pytrec_evals_on_real_run_files() {
    let dir = tempfile::tempdir().unwrap();
    let dl19 = slice(dir.path());
    // SciFact: the documents judged for the first 60 test queries, and 600 others.
    let scifact = shared("datasets/scifact");
    let sci = dir.path().join("scifact-slice");
    std::fs::create_dir_all(sci.join("qrels")).unwrap();
    let qrels_text = std::fs::read_to_string(scifact.join("qrels/test.tsv")).unwrap();
    let mut kept_queries = BTreeSet::new();
    let mut judged_docs = BTreeSet::new();
    let mut lines = vec!["query-id\tcorpus-id\tscore".to_string()];
    for line in qrels_text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if kept_queries.len() < 60 || kept_queries.contains(f[0]) {
            kept_queries.insert(f[0].to_string());
            judged_docs.insert(f[1].to_string());
            lines.push(line.to_string());
        }
    }
    std::fs::write(sci.join("qrels/test.tsv"), lines.join("\n") + "\n").unwrap();
    std::fs::copy(scifact.join("queries.jsonl"), sci.join("queries.jsonl")).unwrap();
    let corpus: Vec<String> = std::fs::read_to_string(scifact.join("corpus.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(i, l)| *i < 600 || judged_docs.iter().any(|d| l.contains(&format!("\"_id\": \"{d}\""))))
        .map(|(_, l)| l.to_string())
        .collect();
    std::fs::write(sci.join("corpus.jsonl"), corpus.join("\n") + "\n").unwrap();
    for (data, qrels, min_grade) in [(&dl19, dl19.join("qrels.tsv"), 2), (&sci, sci.join("qrels/test.tsv"), 1)] {
        let (report, _) = bench_json(data, &["--min-grade", &min_grade.to_string(), "--depth", "1000"]);
        let out = data.join("out");
        for label in ["exact"] {
            let row = &report["profiles"][label];
            let reference = pytrec_eval(&out.join(row["run_file"].as_str().unwrap()), &qrels, min_grade);
            assert_eq!(reference["queries"], report["queries"], "{}", data.display());
            for metric in ["ndcg@10", "mrr@10", "recall@100", "recall@1000"] {
                let (ours, theirs) = (row[metric].as_f64().unwrap(), reference[metric].as_f64().unwrap());
                assert!(
                    (ours - theirs).abs() < 5e-5,
                    "{} {label} {metric}: barista {ours:.6}, pytrec_eval {theirs:.6}",
                    data.display()
                );
            }
        }
    }
}
