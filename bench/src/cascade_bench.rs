//! Cascade benchmarks: quality of each profile against the exhaustive search (nDCG@10 on a data
//! set), the quality/cost frontier of stage plans on a larger real collection, and adaptive
//! stopping calibrated on training queries.

use anyhow::{Context, Result, bail};
use barista_bench::evaluate::{overlap_at, write_run};
use barista_bench::indexing::{build_or_open, engine_documents};
use barista_bench::plot::{Kind, Point, scatter};
use barista_bench::stats::Latency;
use barista_datasets::DataSet;
use barista_datasets::beir::Query;
use barista_engine::metrics::{Run, mean_over_judged, ndcg_at, ndcg_exp_at};
use barista_engine::{CreateOptions, Document, Engine, Rung, SearchRequest, SearchResponse, StagePlan};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn documents_of(data: &DataSet) -> Result<(Vec<Document>, usize)> {
    let docs: Vec<Document> = engine_documents(data, &barista_datasets::Reading::strict())?.collect::<Result<_>>()?;
    let n = docs.len();
    Ok((docs, n))
}

/// Runs every query with `request` (its query replaced); returns runs, responses.
fn run_queries(
    engine: &Engine,
    queries: &[Query],
    template: &SearchRequest,
) -> Result<(BTreeMap<String, Run>, Vec<SearchResponse>)> {
    let mut runs = BTreeMap::new();
    let mut responses = Vec::with_capacity(queries.len());
    for q in queries {
        let request = SearchRequest { query: Some(q.text.clone()), ..template.clone() };
        let response = engine.search(&request)?;
        runs.insert(q.id.clone(), response.hits.iter().map(|h| (h.id.clone(), h.score)).collect());
        responses.push(response);
    }
    Ok((runs, responses))
}

fn latency(responses: &[SearchResponse], f: impl Fn(&SearchResponse) -> f64) -> Latency {
    let mut samples: Vec<Duration> = responses.iter().map(|r| Duration::from_secs_f64(f(r) / 1e3)).collect();
    Latency::of(&mut samples)
}

fn search_ms(r: &SearchResponse) -> f64 {
    r.timings.graph_ms + r.timings.scan_ms + r.timings.rescore_ms
}

/// Arguments of `barista-bench cascade`.
#[derive(clap::Args)]
pub struct QualityArgs {
    /// Model folder (or Hugging Face id).
    #[arg(long, default_value = "../shared/models/minilm-l6-2d")]
    model: String,
    /// Data set folder (BEIR or MS MARCO files).
    #[arg(long, default_value = "../shared/datasets/scifact")]
    dataset: PathBuf,
    /// Split whose judgements are evaluated (BEIR).
    #[arg(long, default_value = "test")]
    split: String,
    /// Where the index lives (built if missing).
    #[arg(long)]
    index_dir: Option<PathBuf>,
    /// Also calibrate adaptive stopping on this split (BEIR) and evaluate it.
    #[arg(long)]
    calibrate_on: Option<String>,
    /// Target shares of the full cascade's nDCG@10 to calibrate for (one row each).
    #[arg(long, value_delimiter = ',', default_value = "0.99,0.98,0.95")]
    targets: Vec<f64>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one TREC run file per profile into this folder.
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct ProfileRow {
    profile: String,
    plan: String,
    ndcg_at_10: f64,
    /// With exponential gains (differs only for graded judgements).
    ndcg_exp_at_10: f64,
    overlap_with_exact: f64,
    search: Latency,
    end_to_end: Latency,
    encode: Latency,
    stopped_early_share: f64,
}

pub fn quality(args: &QualityArgs) -> Result<()> {
    let data = DataSet::detect(&args.dataset)?;
    let name = args.dataset.file_name().map_or("data".into(), |n| n.to_string_lossy().into_owned());
    let dir = args.index_dir.clone().unwrap_or_else(|| PathBuf::from("target/bench-indexes").join(&name));
    std::fs::create_dir_all(dir.parent().unwrap_or(Path::new(".")))?;
    let (docs, total) = documents_of(&data)?;
    let engine = build_or_open(&dir, &CreateOptions::new(&args.model), docs.into_iter().map(Ok), total)?;
    let (queries, qrels) = data.judged_queries(&args.split, &barista_datasets::Reading::strict())?;
    eprintln!("{} documents, {} judged queries ({})", engine.index().snapshot().len(), queries.len(), args.split);
    // Warm up every path once.
    for profile in ["exact", "balanced", "fast"] {
        run_queries(&engine, &queries, &SearchRequest::text("").with_profile(profile).with_k(10))?;
    }
    let mut rows = Vec::new();
    let (exact_runs, _) = run_queries(&engine, &queries, &SearchRequest::text("").with_profile("exact").with_k(100))?;
    let variants: Vec<(String, SearchRequest)> = ["exact", "balanced", "fast"]
        .iter()
        .map(|p| {
            (
                p.to_string(),
                SearchRequest { adaptive: Some(false), ..SearchRequest::text("").with_profile(p).with_k(100) },
            )
        })
        .collect();
    for (label, request) in variants {
        let plan = engine.plan_for(&request)?;
        let (runs, responses) = run_queries(&engine, &queries, &request)?;
        if let Some(dir) = &args.run_dir {
            std::fs::create_dir_all(dir)?;
            let tag = format!("barista-{}", label.replace([' ', '+'], ""));
            write_run(&dir.join(format!("{name}.{tag}.trec")), &runs, &tag)?;
        }
        let ndcg = mean_over_judged(&runs, &qrels, |r, q| ndcg_at(r, q, 10));
        rows.push(ProfileRow {
            profile: label,
            plan: plan.to_string(),
            ndcg_at_10: ndcg,
            ndcg_exp_at_10: mean_over_judged(&runs, &qrels, |r, q| ndcg_exp_at(r, q, 10)),
            overlap_with_exact: overlap_at(&runs, &exact_runs, 10),
            search: latency(&responses, search_ms),
            end_to_end: latency(&responses, |r| r.timings.total_ms),
            encode: latency(&responses, |r| r.timings.encode_ms),
            stopped_early_share: responses.iter().filter(|r| r.stopped_early).count() as f64
                / responses.len().max(1) as f64,
        });
    }
    let mut adaptive = Vec::new();
    if let Some(split) = &args.calibrate_on {
        let (train, train_qrels) = data.judged_queries(split, &barista_datasets::Reading::strict())?;
        let pairs: Vec<(String, String)> = train.iter().map(|q| (q.id.clone(), q.text.clone())).collect();
        let request =
            SearchRequest { adaptive: Some(true), ..SearchRequest::text("").with_profile("balanced").with_k(100) };
        for &target in &args.targets {
            let rule = engine.calibrate("balanced", &pairs, &train_qrels, target)?;
            let (runs, responses) = run_queries(&engine, &queries, &request)?;
            let ndcg = mean_over_judged(&runs, &qrels, |r, q| ndcg_at(r, q, 10));
            adaptive.push(AdaptiveRow::new(rule, &responses, ndcg, &rows));
        }
    }
    println!(
        "\n### {name}: profiles against the exhaustive search ({} queries, {} split)\n",
        queries.len(),
        args.split
    );
    println!(
        "| profile | nDCG@10 | × exact | nDCG@10 (exp. gains) | top-10 overlap with exact | search p50 ms | end-to-end p50 ms | encode p50 ms | plan |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let exact = rows[0].ndcg_at_10;
    for r in &rows {
        println!(
            "| {} | {:.4} | {:.3} | {:.4} | {:.3} | {:.3} | {:.3} | {:.3} | `{}` |",
            r.profile,
            r.ndcg_at_10,
            r.ndcg_at_10 / exact,
            r.ndcg_exp_at_10,
            r.overlap_with_exact,
            r.search.p50_ms,
            r.end_to_end.p50_ms,
            r.encode.p50_ms,
            r.plan
        );
    }
    if !adaptive.is_empty() {
        let full = rows.iter().find(|r| r.profile == "balanced").map_or(0.0, |r| r.ndcg_at_10);
        println!(
            "\n### Adaptive stopping: balanced, calibrated on {} `{}` queries, evaluated on the {} `{}` queries\n",
            adaptive[0].rule.queries,
            args.calibrate_on.as_deref().unwrap_or(""),
            queries.len(),
            args.split
        );
        let ladder: Vec<String> = adaptive[0].rule.plan.stages.iter().map(|s| s.rung.to_string()).collect();
        println!(
            "| target | thresholds per stage | stopped after {} | mean encode ms (without stopping) | encode saved | nDCG@10 | × balanced |",
            ladder.join(" / ")
        );
        println!("| ---: | --- | --- | ---: | ---: | ---: | ---: |");
        for a in &adaptive {
            let shares: Vec<String> = a.stopped_share.iter().map(|s| format!("{s:.3}")).collect();
            let thresholds: Vec<String> =
                a.rule.thresholds.iter().map(|t| t.map_or("–".into(), |t| format!("{t:.1}"))).collect();
            println!(
                "| {:.2} | {} | {} | {:.3} ({:.3}) | {:.1}% | {:.4} | {:.3} |",
                a.rule.target,
                thresholds.join(" / "),
                shares.join(" / "),
                a.encode_ms,
                a.full_encode_ms,
                100.0 * (1.0 - a.encode_ms / a.full_encode_ms.max(1e-9)),
                a.ndcg_at_10,
                a.ndcg_at_10 / full
            );
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&serde_json::json!({"profiles": rows, "adaptive": adaptive}))?,
        )?;
    }
    Ok(())
}

#[derive(Serialize)]
struct AdaptiveRow {
    rule: barista_engine::search::adaptive::StopRule,
    stopped_share: Vec<f64>,
    encode_ms: f64,
    full_encode_ms: f64,
    ndcg_at_10: f64,
}

impl AdaptiveRow {
    fn new(
        rule: barista_engine::search::adaptive::StopRule,
        responses: &[SearchResponse],
        ndcg_at_10: f64,
        rows: &[ProfileRow],
    ) -> Self {
        let n = responses.len().max(1) as f64;
        let mut stopped_share = vec![0.0; rule.plan.stages.len()];
        for r in responses {
            stopped_share[r.stages.len() - 1] += 1.0 / n;
        }
        let encode_ms = responses.iter().map(|r| r.timings.encode_ms).sum::<f64>() / n;
        let full_encode_ms = rows.iter().find(|r| r.profile == "balanced").map_or(0.0, |r| r.encode.mean_ms);
        AdaptiveRow { rule, stopped_share, encode_ms, full_encode_ms, ndcg_at_10 }
    }
}

/// Arguments of `barista-bench frontier`.
#[derive(clap::Args)]
pub struct FrontierArgs {
    /// Model folder (or Hugging Face id).
    #[arg(long, default_value = "../shared/models/minilm-l6-2d")]
    model: String,
    /// BEIR SciFact folder: its abstracts plus every sentence of every abstract are indexed.
    #[arg(long, default_value = "../shared/datasets/scifact")]
    dataset: PathBuf,
    /// Where the index lives (built if missing; default: target/bench-indexes/scifact-sentences).
    #[arg(long)]
    index_dir: Option<PathBuf>,
    /// The rung to build the HNSW graph on (default: the engine's default).
    #[arg(long, value_name = "LAYER,DIM")]
    graph_rung: Option<Rung>,
    /// Where to write the plot (SVG).
    #[arg(long, default_value = "bench/results/frontier.svg")]
    plot: PathBuf,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Timed repetitions of the query set per plan.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Run only this plan (and exact), printing its per-stage times.
    #[arg(long)]
    only: Option<String>,
    /// Which judged queries to run (the profiles' constants were chosen on `test`; `train`
    /// shows them on queries they were not tuned on).
    #[arg(long, default_value = "test")]
    split: String,
}

/// Splits an abstract into sentences (at ". ", "? ", "! " followed by an upper-case letter or
/// a digit): simple, and right for scientific prose.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for w in 0..chars.len().saturating_sub(2) {
        let (i, c) = chars[w];
        if matches!(c, '.' | '?' | '!')
            && chars[w + 1].1 == ' '
            && (chars[w + 2].1.is_uppercase() || chars[w + 2].1.is_ascii_digit())
        {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                out.push(s.to_string());
            }
            start = chars[w + 2].0;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

#[derive(Serialize)]
struct FrontierRow {
    label: String,
    plan: String,
    overlap_with_exact: f64,
    search: Latency,
    end_to_end: Latency,
}

/// SciFact's abstracts plus every sentence of every abstract as its own passage (~50k): a
/// larger real collection for cost measurements.
pub fn sentence_corpus(data: &DataSet) -> Result<Vec<Document>> {
    let (abstracts, _) = documents_of(data)?;
    let mut docs = Vec::new();
    for d in &abstracts {
        docs.push(d.clone());
        for (i, s) in sentences(&d.text).into_iter().enumerate() {
            docs.push(Document { id: format!("{}#{i}", d.id), text: s, title: None, metadata: None });
        }
    }
    Ok(docs)
}

pub fn frontier(args: &FrontierArgs) -> Result<()> {
    let data = DataSet::detect(&args.dataset)?;
    let docs = sentence_corpus(&data)?;
    let index_dir = args.index_dir.clone().unwrap_or_else(|| {
        let suffix = args.graph_rung.map_or(String::new(), |r| format!("-graph-{}-{}", r.layer, r.dim));
        PathBuf::from(format!("target/bench-indexes/scifact-sentences{suffix}"))
    });
    std::fs::create_dir_all(index_dir.parent().unwrap_or(Path::new(".")))?;
    let total = docs.len();
    let mut options = CreateOptions::new(&args.model);
    options.graph_rungs = args.graph_rung.into_iter().collect();
    let engine = build_or_open(&index_dir, &options, docs.into_iter().map(Ok), total)?;
    let (queries, _) = data.judged_queries(&args.split, &barista_datasets::Reading::strict())?;
    let n = engine.index().snapshot().len();
    eprintln!("{n} passages, {} {} queries", queries.len(), args.split);
    let shape = engine.shape();
    let r = |l: usize, d: usize| Rung::new(l, d);
    let largest = *shape.rungs.last().unwrap_or(&r(6, 384));
    let graph = *shape.graph_rungs.first().context("the index has no graph rung")?;
    let mut plans: Vec<(String, StagePlan)> = Vec::new();
    for name in ["exact", "balanced", "fast"] {
        plans.push((name.to_string(), StagePlan::profile(name, &shape, 10)?));
    }
    let parse = |s: &str| StagePlan::parse(s).map_err(anyhow::Error::msg);
    let sweep = [
        "1,32:3000:scan 6,384:10",
        "1,32:10000:scan 2,64:4000 3,96:2000 4,128:600 5,256:150 6,384:10",
        "2,64:8000:scan 3,96:3000 4,128:1000 5,256:250 6,384:10",
        "2,64:10000:scan 3,96:4000 4,128:1500 5,256:400 6,384:10",
        "2,64:3000:scan 6,384:10",
        "2,64:5000:scan 3,96:2000 4,128:600 5,256:150 6,384:10",
        "3,96:1000:scan 6,384:10",
        "3,96:3000:scan 6,384:10",
        "3,96:1000:scan 4,128:300 5,256:60 6,384:10",
        "3,96:2000:scan 4,128:600 5,256:150 6,384:10",
        "3,96:6000:scan 4,128:2000 5,256:400 6,384:10",
        "4,128:1000:scan 5,256:200 6,384:10",
        "4,128:1500:scan 5,256:300 6,384:10",
        "4,128:2000:scan 6,384:10",
        "4,128:3000:scan 5,256:500 6,384:10",
        "5,256:300:scan 6,384:10",
        "5,256:500:scan 6,384:10",
        "5,256:1000:scan 6,384:10",
    ];
    for s in sweep {
        let plan = parse(s)?;
        if plan.validate(&shape).is_ok() {
            plans.push((s.to_string(), plan));
        }
    }
    // Graph shortlists at the graph rung, then straight to the largest rung or through the
    // rungs in between.
    for keep in [100, 200, 300, 500, 1000, 3000] {
        let direct = format!("{},{}:{keep}:graph={keep} {},{}:10", graph.layer, graph.dim, largest.layer, largest.dim);
        let between: Vec<String> = shape
            .rungs
            .iter()
            .filter(|r| r.layer > graph.layer && **r != largest)
            .enumerate()
            .map(|(i, r)| format!("{},{}:{}", r.layer, r.dim, (keep / (3 * (i + 1))).max(10)))
            .collect();
        let climbing = format!(
            "{},{}:{keep}:graph={keep} {} {},{}:10",
            graph.layer,
            graph.dim,
            between.join(" "),
            largest.layer,
            largest.dim
        );
        for s in [direct, climbing] {
            if let Ok(plan) = parse(&s)
                && plan.validate(&shape).is_ok()
                && !plans.iter().any(|(_, p)| *p == plan)
            {
                plans.push((format!("graph {s}"), plan));
            }
        }
    }
    if let Some(only) = &args.only {
        plans.retain(|(label, p)| label == "exact" || label == only || p.to_string() == *only);
        if plans.len() == 1 {
            plans.push((only.clone(), parse(only)?));
        }
    } else if plans.len() < 4 {
        bail!("the index's rungs do not fit the sweep");
    }
    let request = |plan: &StagePlan| SearchRequest {
        stages: Some(plan.stages.clone()),
        adaptive: Some(false),
        ..SearchRequest::text("").with_k(10)
    };
    let (exact_runs, _) = run_queries(
        &engine,
        &queries,
        &SearchRequest { adaptive: Some(false), ..SearchRequest::text("").with_profile("exact").with_k(10) },
    )?;
    let mut rows = Vec::new();
    for (label, plan) in &plans {
        run_queries(&engine, &queries, &request(plan))?; // warm-up
        let mut all = Vec::new();
        let mut runs = BTreeMap::new();
        for _ in 0..args.repeat.max(1) {
            let (r, responses) = run_queries(&engine, &queries, &request(plan))?;
            runs = r;
            all.extend(responses);
        }
        if args.only.is_some() {
            let stages = all[0].stages.len();
            for i in 0..stages {
                let mean = |f: &dyn Fn(&barista_engine::search::request::StageReport) -> f64| {
                    all.iter().filter_map(|r| r.stages.get(i)).map(f).sum::<f64>() / all.len() as f64
                };
                eprintln!(
                    "{label}: stage {i} {} {}: search {:.3} ms, encode {:.3} ms, {:.0} → {:.0}",
                    all[0].stages[i].method,
                    all[0].stages[i].rung,
                    mean(&|s| s.search_ms),
                    mean(&|s| s.encode_ms),
                    mean(&|s| s.candidates as f64),
                    mean(&|s| s.kept as f64)
                );
            }
        }
        rows.push(FrontierRow {
            label: label.clone(),
            plan: plan.to_string(),
            overlap_with_exact: overlap_at(&runs, &exact_runs, 10),
            search: latency(&all, search_ms),
            end_to_end: latency(&all, |r| r.timings.total_ms),
        });
    }
    let exact_search = rows[0].search.p50_ms;
    println!(
        "\n### Quality/cost frontier: {n} SciFact passages (abstracts + sentences), {} {} queries\n",
        queries.len(),
        args.split
    );
    println!("| plan | top-10 overlap with exact | search p50 ms | search / exact | end-to-end p50 ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} (`{}`) | {:.3} | {:.3} | {:.2} | {:.3} |",
            r.label,
            r.plan,
            r.overlap_with_exact,
            r.search.p50_ms,
            r.search.p50_ms / exact_search,
            r.end_to_end.p50_ms
        );
    }
    plot(&args.plot, &rows, n)?;
    eprintln!("plot written to {}", args.plot.display());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}

fn plot(path: &Path, rows: &[FrontierRow], n: u64) -> Result<()> {
    let points: Vec<Point> = rows
        .iter()
        .map(|r| Point {
            label: r.label.clone(),
            x: r.search.p50_ms,
            y: r.overlap_with_exact,
            kind: if r.label == "exact" {
                Kind::Exact
            } else if r.label == "balanced" || r.label == "fast" {
                Kind::Profile
            } else if r.label.starts_with("graph") {
                Kind::Rung
            } else {
                Kind::Other
            },
        })
        .collect();
    scatter(
        path,
        &format!(
            "Quality vs search time, {n} SciFact passages (red: exact; blue: profiles; green: graph; black: scan plans)"
        ),
        "search time p50 (ms, graph + scan + rescoring)",
        "top-10 overlap with exact",
        &points,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scientific_prose_into_sentences() {
        let s = sentences(
            "Vitamin D matters. It was measured in 5.3% of cases. 20 patients improved! Why? e.g. this stays.",
        );
        assert_eq!(
            s,
            vec![
                "Vitamin D matters.",
                "It was measured in 5.3% of cases.",
                "20 patients improved!",
                "Why? e.g. this stays."
            ]
        );
    }
}
