//! Turning measured rows into metrics, and the metrics into TREC run files, a Markdown table,
//! JSON and a quality-versus-latency plot.

use super::measure::{Measured, StageTime};
use super::{Args, RowSpec};
use crate::plot::{Kind, Point, scatter};
use crate::stats::Latency;
use anyhow::{Context, Result};
use barista_datasets::beir::{Qrels, Query};
use barista_engine::Engine;
use barista_engine::metrics::{Run, mean_over_judged, mrr_at, ndcg_at, recall_at, trec_order};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Writes a TREC run file (`qid Q0 docid rank score tag`, trec_eval's order).
pub fn write_run(path: &Path, runs: &BTreeMap<String, Run>, tag: &str) -> Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for (query, run) in runs {
        let mut ranked = run.clone();
        trec_order(&mut ranked);
        for (rank, (doc, score)) in ranked.iter().enumerate() {
            writeln!(out, "{query} Q0 {doc} {} {score} {tag}", rank + 1)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Mean share of each reference query's top `k` that `runs` also has in its top `k` (queries
/// whose reference has no results, such as blank ones, are left out).
pub fn overlap_at(runs: &BTreeMap<String, Run>, reference: &BTreeMap<String, Run>, k: usize) -> f64 {
    let mut total = 0.0;
    let mut counted = 0;
    for (query, run) in reference.iter().filter(|(_, run)| !run.is_empty()) {
        let truth: HashSet<&String> = run.iter().take(k).map(|(d, _)| d).collect();
        let got = runs.get(query).map_or(0, |r| r.iter().take(k).filter(|(d, _)| truth.contains(d)).count());
        total += got as f64 / truth.len().clamp(1, k) as f64;
        counted += 1;
    }
    total / counted.max(1) as f64
}

/// Judgements with grades below `min_grade` set to 0 (trec_eval's `-l`), for binary metrics.
pub fn at_level(qrels: &Qrels, min_grade: i32) -> Qrels {
    qrels
        .iter()
        .map(|(q, docs)| (q.clone(), docs.iter().map(|(d, &g)| (d.clone(), i32::from(g >= min_grade))).collect()))
        .collect()
}

/// One row's results.
#[derive(Clone, Debug, Serialize)]
pub struct RowResult {
    /// Its label.
    pub label: String,
    /// `exact`, `rung`, `profile` or `plan`.
    pub kind: &'static str,
    /// The stage plan it ran.
    pub plan: String,
    /// nDCG@10 with graded gains.
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
    /// MRR@10 (grades ≥ min_grade relevant).
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    /// Recall@100.
    #[serde(rename = "recall@100")]
    pub recall_100: f64,
    /// Recall@1000.
    #[serde(rename = "recall@1000")]
    pub recall_1000: f64,
    /// Share of the exact search's top 10 in this row's top 10.
    #[serde(rename = "overlap@10")]
    pub overlap_10: f64,
    /// End-to-end latency per query, one client.
    pub latency_ms: Latency,
    /// Queries per second by client threads ("1", "N").
    pub qps: BTreeMap<String, f64>,
    /// Mean time per stage.
    pub stages: Vec<StageTime>,
    /// The TREC run file, relative to the output folder.
    pub run_file: String,
    /// The run tag in that file.
    pub tag: String,
    #[serde(skip)]
    runs: BTreeMap<String, Run>,
    #[serde(skip)]
    plot_kind: Kind,
}

/// What happens to hits whose document id is the query id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdenticalIds {
    /// Dropped before scoring (BEIR's `ignore_identical_ids`, the default for BEIR sets).
    Dropped,
    /// Kept because `--keep-identical-ids` asked for it.
    KeptByRequest,
    /// Kept (MS MARCO sets: trec_eval's convention).
    Kept,
}

impl IdenticalIds {
    fn describe(self) -> &'static str {
        match self {
            IdenticalIds::Dropped => {
                "hits whose id is the query's were dropped before scoring (BEIR's default; --keep-identical-ids keeps them)"
            }
            IdenticalIds::KeptByRequest => "hits whose id is the query's were kept (--keep-identical-ids)",
            IdenticalIds::Kept => "hits whose id is the query's were kept (trec_eval's convention)",
        }
    }
}

/// The evaluation conventions a run used, reported with its results.
#[derive(Clone, Debug, Serialize)]
pub struct Conventions {
    /// Hits whose id is the query id.
    pub identical_ids: IdenticalIds,
    /// Judged queries that were blank (or missing from the queries file): no results, 0.
    pub blank_queries: Vec<String>,
    /// Documents of the data set whose id an earlier one had (the last copy was indexed).
    pub repeated_documents: usize,
}

/// The results of one `barista bench` run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Data set name.
    pub dataset: String,
    /// Judgement split.
    pub split: String,
    /// Model.
    pub model: String,
    /// Documents indexed.
    pub documents: usize,
    /// Judged queries evaluated.
    pub queries: usize,
    /// Results per query.
    pub depth: usize,
    /// Client threads of the concurrent pass.
    pub client_threads: usize,
    /// Smallest relevant grade for MRR and recall.
    pub min_grade: i32,
    /// The conventions the scores follow.
    pub conventions: Conventions,
    /// Rows in the order they ran (exact first).
    pub rows: Vec<RowResult>,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Exact => "exact",
        Kind::Rung => "rung",
        Kind::Profile => "profile",
        Kind::Other => "plan",
    }
}

impl Report {
    /// Scores every measured row.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dataset: &str,
        split: &str,
        documents: usize,
        queries: &[Query],
        qrels: &Qrels,
        args: &Args,
        threads: usize,
        specs: &[RowSpec],
        measured: Vec<Measured>,
        engine: &Engine,
        conventions: Conventions,
    ) -> Result<Report> {
        let evaluated: HashSet<&String> = queries.iter().map(|q| &q.id).collect();
        let graded: Qrels =
            qrels.iter().filter(|(q, _)| evaluated.contains(q)).map(|(q, j)| (q.clone(), j.clone())).collect();
        let binary = at_level(&graded, args.min_grade);
        let exact_runs = measured.first().map(|m| m.runs.clone()).unwrap_or_default();
        let mut rows = Vec::new();
        for (spec, m) in specs.iter().zip(measured) {
            let mut qps = BTreeMap::from([("1".to_string(), m.qps_one)]);
            if let Some((n, value)) = m.qps_many {
                qps.insert(n.to_string(), value);
            }
            let words: Vec<&str> =
                spec.label.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
            let tag = format!("barista-{}", words.join("-"));
            rows.push(RowResult {
                label: spec.label.clone(),
                kind: kind_name(spec.kind),
                plan: engine.plan_for(&spec.request)?.to_string(),
                ndcg_10: mean_over_judged(&m.runs, &graded, |r, q| ndcg_at(r, q, 10)),
                mrr_10: mean_over_judged(&m.runs, &binary, |r, q| mrr_at(r, q, 10)),
                recall_100: mean_over_judged(&m.runs, &binary, |r, q| recall_at(r, q, 100)),
                recall_1000: mean_over_judged(&m.runs, &binary, |r, q| recall_at(r, q, 1000)),
                overlap_10: overlap_at(&m.runs, &exact_runs, 10),
                latency_ms: m.latency,
                qps,
                stages: m.stages,
                run_file: format!("{dataset}.{tag}.trec"),
                tag,
                runs: m.runs,
                plot_kind: spec.kind,
            });
        }
        Ok(Report {
            dataset: dataset.to_string(),
            split: split.to_string(),
            model: args.model.clone(),
            documents,
            queries: queries.len(),
            depth: args.depth,
            client_threads: threads,
            min_grade: args.min_grade,
            conventions,
            rows,
        })
    }

    /// The JSON form: the run's settings and, per row label, its metrics.
    pub fn json(&self) -> serde_json::Value {
        let profiles: serde_json::Map<String, serde_json::Value> = self
            .rows
            .iter()
            .map(|r| (r.label.clone(), serde_json::to_value(r).unwrap_or(serde_json::Value::Null)))
            .collect();
        serde_json::json!({
            "dataset": self.dataset,
            "split": self.split,
            "model": self.model,
            "documents": self.documents,
            "queries": self.queries,
            "depth": self.depth,
            "client_threads": self.client_threads,
            "min_grade": self.min_grade,
            "conventions": self.conventions,
            "order": self.rows.iter().map(|r| r.label.clone()).collect::<Vec<_>>(),
            "profiles": profiles,
        })
    }

    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### {} ({} split): {} judged queries, {} documents, depth {}, model `{}`\n\n",
            self.dataset, self.split, self.queries, self.documents, self.depth, self.model
        );
        let n = self.client_threads;
        s += &format!(
            "| row | nDCG@10 | × exact | MRR@10 | R@100 | R@1000 | top-10 overlap with exact | p50 ms | p95 ms | p99 ms | QPS (1 client) | QPS ({n} clients) | per stage: encode + search ms | plan |\n"
        );
        s += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n";
        let exact = self.rows.first().map_or(0.0, |r| r.ndcg_10);
        for r in &self.rows {
            let stages: Vec<String> = r
                .stages
                .iter()
                .map(|t| format!("{} {} {:.2}+{:.2}", t.rung, t.method, t.encode_ms, t.search_ms))
                .collect();
            let many = r.qps.get(&n.to_string()).map_or("–".into(), |q| format!("{q:.1}"));
            s += &format!(
                "| {} | {:.4} | {:.3} | {:.4} | {:.4} | {:.4} | {:.3} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | `{}` |\n",
                r.label,
                r.ndcg_10,
                if exact > 0.0 { r.ndcg_10 / exact } else { 0.0 },
                r.mrr_10,
                r.recall_100,
                r.recall_1000,
                r.overlap_10,
                r.latency_ms.p50_ms,
                r.latency_ms.p95_ms,
                r.latency_ms.p99_ms,
                r.qps["1"],
                many,
                stages.join(" → "),
                r.plan
            );
        }
        s += &format!(
            "\nMetrics follow trec_eval: nDCG@10 with graded gains; MRR@10 and recall count grades ≥ {} as relevant; \
             every judged query counts (one judged only with grade 0, or without results, scores 0); latency is end \
             to end (query encoding included) with one client; depth {} per query. Identical ids: {}.\n",
            self.min_grade,
            self.depth,
            self.conventions.identical_ids.describe()
        );
        let c = &self.conventions;
        if !c.blank_queries.is_empty() {
            s += &format!(
                "Blank (or missing) queries, no results, scored 0: {} ({}).\n",
                c.blank_queries.len(),
                c.blank_queries.iter().take(5).map(String::as_str).collect::<Vec<_>>().join(", ")
            );
        }
        if c.repeated_documents > 0 {
            s += &format!(
                "{} documents repeated an earlier document's id; the last copy of each id was indexed.\n",
                c.repeated_documents
            );
        }
        s
    }

    /// Writes the run files, `report.md`, `results.json` and `quality-latency.svg` into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        for r in &self.rows {
            write_run(&out.join(&r.run_file), &r.runs, &r.tag)?;
        }
        std::fs::write(out.join("report.md"), self.markdown())?;
        std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&self.json())?)?;
        let points: Vec<Point> = self
            .rows
            .iter()
            .map(|r| Point { label: r.label.clone(), x: r.latency_ms.p50_ms, y: r.ndcg_10, kind: r.plot_kind })
            .collect();
        scatter(
            &out.join("quality-latency.svg"),
            &format!(
                "{}: nDCG@10 vs latency (red: exact; green: one rung; blue: profiles; black: plans)",
                self.dataset
            ),
            "end-to-end latency p50 (ms, one client)",
            "nDCG@10",
            &points,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(docs: &[&str]) -> Run {
        docs.iter().enumerate().map(|(i, d)| (d.to_string(), 1.0 - i as f32 * 0.1)).collect()
    }

    #[test]
    fn overlap_and_levels_by_hand() {
        let reference = BTreeMap::from([("q".to_string(), run(&["a", "b", "c", "d"]))]);
        let got = BTreeMap::from([("q".to_string(), run(&["b", "x", "a", "y"]))]);
        assert!((overlap_at(&got, &reference, 2) - 0.5).abs() < 1e-12);
        assert!((overlap_at(&got, &reference, 4) - 0.5).abs() < 1e-12);
        assert_eq!(overlap_at(&BTreeMap::new(), &reference, 4), 0.0);
        let qrels: Qrels = BTreeMap::from([(
            "q".to_string(),
            BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2), ("c".to_string(), 3)]),
        )]);
        let level2 = at_level(&qrels, 2);
        assert_eq!(level2["q"].values().copied().collect::<Vec<_>>(), vec![0, 1, 1]);
        // With level 2, "a" (grade 1) no longer counts: the first relevant hit of "a b c d" is b.
        assert!((mrr_at(&run(&["a", "b", "c", "d"]), &level2["q"], 10) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn run_files_are_in_trec_format_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.trec");
        let runs = BTreeMap::from([(
            "7".to_string(),
            vec![("a".to_string(), 0.5f32), ("b".to_string(), 0.5), ("c".to_string(), 0.9)],
        )]);
        write_run(&path, &runs, "tag").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "7 Q0 c 1 0.9 tag\n7 Q0 b 2 0.5 tag\n7 Q0 a 3 0.5 tag\n");
    }
}
