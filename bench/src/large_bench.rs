//! Millions of documents: `barista-bench large` measures an index of a million real passages
//! (or of ten million, expanded from them by `barista-bench expand`) the way a user meets it —
//! opening it, the memory it takes while serving, each rung's shortlist quality, and the
//! cascade's plans against the exhaustive search, from text queries encoded by the real model.

use crate::collection::SplitMix64;
use anyhow::{Context, Result, bail};
use barista_bench::indexing::bar;
use barista_bench::stats::Latency;
use barista_datasets::{DataSet, Reading};
use barista_engine::search::graph_rung::DEPTHS;
use barista_engine::{Engine, OpenOptions, SearchRequest, StagePlan};
use barista_index::{Index, IndexConfig, NewDocument};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `barista-bench large`.
#[derive(clap::Args)]
pub struct LargeArgs {
    /// The index (built by `barista index` from `barista-bench collection`'s passages, or by
    /// `barista-bench expand`).
    #[arg(long)]
    index: PathBuf,
    /// The model folder (default: where the index says).
    #[arg(long)]
    model: Option<String>,
    /// BEIR SciFact folder (the queries).
    #[arg(long, default_value = "../shared/datasets/scifact")]
    dataset: PathBuf,
    /// Which queries: `test` (300; the reported numbers) or `train` (809; for choosing the
    /// profiles' constants).
    #[arg(long, default_value = "test")]
    split: String,
    /// Also run these plans (`L,D:KEEP[:graph=EF|:scan] …`), each against exact.
    #[arg(long = "plan")]
    plans: Vec<String>,
    /// Skip the per-rung shortlist table (it scans every rung for every query).
    #[arg(long)]
    no_rungs: bool,
    /// Only the first N queries of the split (at ten million documents one exhaustive query
    /// takes about a second).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    queries: Option<u64>,
    /// Timed repetitions of the query set per plan.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Take the exhaustive reference (its top 10s and latencies) from an earlier `--json` of the
    /// same index and queries instead of scanning again: for a run under a memory limit, where
    /// every exhaustive query would read the largest rung from disk.
    #[arg(long)]
    exact_from: Option<PathBuf>,
}

/// Memory of this process, from /proc/self/status and /proc/self/stat (kB → MB).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Memory {
    /// Resident set.
    pub rss_mb: f64,
    /// Anonymous memory (heap, stacks): what the process owns.
    pub anon_mb: f64,
    /// Mapped file pages resident (index files, the model): the page cache's, shared.
    pub file_mb: f64,
    /// Peak resident set of the process so far (VmHWM).
    pub peak_rss_mb: f64,
    /// Page faults since the process started that had to read from disk.
    pub major_faults: u64,
}

/// This process's memory now (zeros where /proc is unavailable).
pub fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    // /proc/self/stat: after the command name in parentheses, field 3 (state) onwards; majflt
    // is field 12 (proc(5)).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let major_faults = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(12 - 3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Memory {
        rss_mb: field("VmRSS:"),
        anon_mb: field("RssAnon:"),
        file_mb: field("RssFile:"),
        peak_rss_mb: field("VmHWM:"),
        major_faults,
    }
}

/// The memory limit of this process's cgroup and the cgroup's peak usage so far (page cache
/// included), in MB; `None` without a limit (or without cgroups).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CgroupMemory {
    pub limit_mb: f64,
    pub peak_mb: Option<f64>,
}

/// Reads [`CgroupMemory`] from /proc/self/cgroup and the cgroup file systems (v2 `memory.max` /
/// `memory.peak`, v1 `memory.limit_in_bytes` / `memory.max_usage_in_bytes`).
pub fn cgroup_memory() -> Option<CgroupMemory> {
    let groups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let read = |path: PathBuf| -> Option<f64> {
        let text = std::fs::read_to_string(path).ok()?;
        let bytes: f64 = text.trim().parse().ok()?;
        // v1 writes "no limit" as a page-rounded i64::MAX.
        (bytes < 1e18).then_some(bytes / (1 << 20) as f64)
    };
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            let dir = PathBuf::from("/sys/fs/cgroup/memory").join(path);
            if let Some(limit_mb) = read(dir.join("memory.limit_in_bytes")) {
                return Some(CgroupMemory { limit_mb, peak_mb: read(dir.join("memory.max_usage_in_bytes")) });
            }
        } else if controllers.is_empty() {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let dir = PathBuf::from(root).join(path);
                if let Some(limit_mb) = read(dir.join("memory.max")) {
                    return Some(CgroupMemory { limit_mb, peak_mb: read(dir.join("memory.peak")) });
                }
            }
        }
    }
    None
}

/// The exhaustive reference of an earlier run (`--exact-from`).
#[derive(serde::Deserialize)]
struct ExactReference {
    documents: u64,
    queries: usize,
    split: String,
    /// Absent in runs before it was recorded.
    #[serde(default)]
    query_ids: Option<Vec<String>>,
    exact_top10: Vec<Vec<String>>,
    plans: Vec<ExactRow>,
}

#[derive(serde::Deserialize)]
struct ExactRow {
    label: String,
    search: Latency,
    end_to_end: Latency,
}

#[derive(Serialize)]
struct RungRow {
    rung: String,
    /// Share of the exact top 10 (largest rung) inside this rung's exact top N.
    recall_of_final_top10: Vec<(usize, f64)>,
    /// Mean over queries of the top-1 score, and of the 100th.
    top1_score: f64,
    top100_score: f64,
}

#[derive(Serialize)]
struct PlanRow {
    label: String,
    plan: String,
    overlap_with_exact: f64,
    search: Latency,
    end_to_end: Latency,
    end_to_end_without_overlap: Option<Latency>,
    search_over_exact: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `request` (its query replaced) for every query `repeat` times after one warm-up pass:
/// the last pass's top-10 addresses, search-time and end-to-end latencies.
fn run_plan(
    engine: &Engine,
    queries: &[String],
    template: &SearchRequest,
    repeat: usize,
) -> Result<(Vec<Vec<String>>, Latency, Latency)> {
    let mut search = Vec::new();
    let mut total = Vec::new();
    let mut tops = Vec::new();
    for pass in 0..=repeat.max(1) {
        tops.clear();
        for q in queries {
            let request = SearchRequest { query: Some(q.clone()), ..template.clone() };
            let t = Instant::now();
            let response = engine.search(&request)?;
            let took = t.elapsed();
            if pass > 0 {
                let tm = &response.timings;
                search.push(Duration::from_secs_f64((tm.graph_ms + tm.scan_ms + tm.rescore_ms) / 1e3));
                total.push(took);
            }
            tops.push(response.hits.iter().map(|h| h.id.clone()).collect());
        }
    }
    Ok((tops, Latency::of(&mut search), Latency::of(&mut total)))
}

fn overlap(a: &[Vec<String>], b: &[Vec<String>]) -> f64 {
    let mut total = 0.0;
    for (x, y) in a.iter().zip(b) {
        let truth: HashSet<&String> = y.iter().collect();
        total += x.iter().filter(|d| truth.contains(d)).count() as f64 / truth.len().max(1) as f64;
    }
    total / a.len().max(1) as f64
}

pub fn large(args: &LargeArgs) -> Result<()> {
    let data = DataSet::detect(&args.dataset)?;
    let (queries, _) = data.judged_queries(&args.split, &Reading::strict())?;
    let chosen = &queries[..queries.len().min(args.queries.map_or(usize::MAX, |n| n as usize))];
    let texts: Vec<String> = chosen.iter().map(|q| q.text.clone()).collect();
    let query_ids: Vec<String> = chosen.iter().map(|q| q.id.clone()).collect();
    // Opening: the index alone (p50 of 5), then with its graphs mapped and verified.
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let index =
            Index::open_with(&args.index, barista_index::OpenOptions { lazy_graphs: true, ..Default::default() })?;
        opens.push(t.elapsed());
        drop(index);
    }
    let open = Latency::of(&mut opens);
    let t = Instant::now();
    let index = Index::open(&args.index)?;
    let open_with_graphs = ms(t.elapsed());
    drop(index);
    let before = memory();
    let options = OpenOptions { model: args.model.clone(), ..OpenOptions::default() };
    let engine = Engine::open(&args.index, &options).with_context(|| format!("opening {}", args.index.display()))?;
    let snapshot = engine.index().snapshot();
    let n = snapshot.len();
    let bytes: u64 = snapshot.manifest().files().map(|f| f.len).sum();
    let graph_bytes: u64 = snapshot.manifest().segments.iter().flat_map(|s| s.graphs.iter().map(|g| g.file.len)).sum();
    eprintln!(
        "{n} documents in {} segments ({:.2} GB, graphs {:.2} GB); {} {} queries",
        snapshot.segment_count(),
        bytes as f64 / 1e9,
        graph_bytes as f64 / 1e9,
        texts.len(),
        args.split
    );
    let shape = engine.shape();
    let mut plans: Vec<(String, StagePlan)> = Vec::new();
    for name in ["balanced", "fast"] {
        plans.push((name.to_string(), StagePlan::profile(name, &shape, 10)?));
    }
    for p in &args.plans {
        let plan = StagePlan::parse(p).map_err(anyhow::Error::msg)?;
        plan.validate(&shape)?;
        plans.push((p.clone(), plan));
    }
    let request = |plan: &StagePlan, overlap: bool| SearchRequest {
        stages: Some(plan.stages.clone()),
        adaptive: Some(false),
        overlap_encoding: Some(overlap),
        ..SearchRequest::text("").with_k(10)
    };
    // Serving first (what a server does), then memory, then the exhaustive reference.
    let mut measured = Vec::new();
    for (label, plan) in &plans {
        eprintln!("plan {label}: {plan}");
        let (tops, search, total) = run_plan(&engine, &texts, &request(plan, true), args.repeat)?;
        let serial = if plan.shortlist(&shape) != barista_engine::Shortlist::Scan && plan.stages.len() > 1 {
            Some(run_plan(&engine, &texts, &request(plan, false), args.repeat)?.2)
        } else {
            None
        };
        measured.push((label.clone(), plan.clone(), tops, search, total, serial));
    }
    let serving = memory();
    let serving_cgroup = cgroup_memory();
    let exact_plan = StagePlan::profile("exact", &shape, 10)?;
    let (exact_tops, exact_search, exact_total) = match &args.exact_from {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let reference: ExactReference = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not the --json of a `barista-bench large` run that saved its exact top 10s",
                    path.display()
                )
            })?;
            if (reference.documents, reference.queries, reference.split.as_str())
                != (n, texts.len(), args.split.as_str())
            {
                bail!(
                    "{} measured {} documents with {} {} queries; this run has {n} documents and {} {} queries",
                    path.display(),
                    reference.documents,
                    reference.queries,
                    reference.split,
                    texts.len(),
                    args.split
                );
            }
            if reference.query_ids.as_ref().is_some_and(|ids| ids != &query_ids)
                || reference.exact_top10.len() != texts.len()
            {
                bail!("{} answered other queries than this run's", path.display());
            }
            let row = reference.plans.iter().find(|r| r.label == "exact").context("it has no exact row")?;
            eprintln!("exact: from {}", path.display());
            (reference.exact_top10, row.search, row.end_to_end)
        }
        None => {
            eprintln!("exact…");
            run_plan(&engine, &texts, &request(&exact_plan, false), 1)?
        }
    };
    let after_exact = memory();
    let mut rows = vec![PlanRow {
        label: "exact".into(),
        plan: exact_plan.to_string(),
        overlap_with_exact: 1.0,
        search: exact_search,
        end_to_end: exact_total,
        end_to_end_without_overlap: None,
        search_over_exact: 1.0,
    }];
    for (label, plan, tops, search, total, serial) in measured {
        rows.push(PlanRow {
            label,
            plan: plan.to_string(),
            overlap_with_exact: overlap(&tops, &exact_tops),
            search,
            end_to_end: total,
            end_to_end_without_overlap: serial,
            search_over_exact: search.p50_ms / exact_search.p50_ms,
        });
    }
    let rungs = if args.no_rungs { Vec::new() } else { rung_table(&engine, &texts)? };
    println!(
        "\n### {n} documents, {} segments, {:.2} GB on disk ({:.2} GB of graphs); {} SciFact {} queries\n",
        snapshot.segment_count(),
        bytes as f64 / 1e9,
        graph_bytes as f64 / 1e9,
        texts.len(),
        args.split
    );
    println!(
        "Open: {:.1} ms p50 (graphs left on disk), {open_with_graphs:.0} ms with every graph mapped and verified.",
        open.p50_ms
    );
    println!(
        "Memory (MB; RSS = anonymous + mapped file pages): before the engine {:.0} ({:.0} + {:.0}); serving the plans \
         below {:.0} ({:.0} + {:.0}); after the exhaustive scans {:.0} ({:.0} + {:.0}).",
        before.rss_mb,
        before.anon_mb,
        before.file_mb,
        serving.rss_mb,
        serving.anon_mb,
        serving.file_mb,
        after_exact.rss_mb,
        after_exact.anon_mb,
        after_exact.file_mb
    );
    println!(
        "Peak RSS of the process {:.0} MB (VmHWM: opening and verifying the graphs included); {} page faults read \
         the disk from opening the engine to the end of serving.",
        serving.peak_rss_mb,
        serving.major_faults - before.major_faults
    );
    if let Some(c) = serving_cgroup {
        println!(
            "Memory limit of the cgroup {:.0} MB; its peak usage while serving {} MB (page cache included).",
            c.limit_mb,
            c.peak_mb.map_or("–".into(), |p| format!("{p:.0}"))
        );
    }
    if args.exact_from.is_some() {
        println!("The exact row is the reference run's (--exact-from), not measured here.");
    }
    println!();
    println!(
        "| plan | top-10 overlap with exact | search p50 ms | search / exact | end-to-end p50 ms | without overlap |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} `{}` | {:.3} | {:.3} | {:.4} | {:.3} | {} |",
            r.label,
            r.plan,
            r.overlap_with_exact,
            r.search.p50_ms,
            r.search_over_exact,
            r.end_to_end.p50_ms,
            r.end_to_end_without_overlap.map_or("–".into(), |l| format!("{:.3}", l.p50_ms))
        );
    }
    if !rungs.is_empty() {
        println!(
            "\n| rung | final top 10 within the rung's top 100 / 300 / 1,000 / 3,000 | mean top-1 score | mean 100th score |"
        );
        println!("| --- | --- | ---: | ---: |");
        for r in &rungs {
            let cells: Vec<String> = r.recall_of_final_top10.iter().map(|(_, v)| format!("{v:.3}")).collect();
            println!("| {} | {} | {:.4} | {:.4} |", r.rung, cells.join(" / "), r.top1_score, r.top100_score);
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "documents": n, "segments": snapshot.segment_count(), "bytes": bytes, "graph_bytes": graph_bytes,
            "queries": texts.len(), "split": args.split,
            "open": open, "open_with_graphs_ms": open_with_graphs,
            "memory": {"before": before, "serving": serving, "after_exact": after_exact, "cgroup": serving_cgroup},
            "exact_from": args.exact_from, "query_ids": query_ids, "exact_top10": exact_tops,
            "plans": rows, "rungs": rungs,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

/// For each rung: how much of the exact top 10 at the largest rung its exact top N holds, and
/// its score spread (the statistics the synthetic expansion must keep).
fn rung_table(engine: &Engine, texts: &[String]) -> Result<Vec<RungRow>> {
    let progress = bar(texts.len() as u64, "rung table");
    let rows = engine.rung_quality(texts, DEPTHS, &|done, _| progress.set_position(done as u64))?;
    progress.finish_and_clear();
    Ok(rows
        .into_iter()
        .map(|row| RungRow {
            rung: row.rung.to_string(),
            recall_of_final_top10: row.kept,
            top1_score: row.top1_score,
            top100_score: row.top100_score,
        })
        .collect())
}

/// Arguments of `barista-bench expand`.
#[derive(clap::Args)]
pub struct ExpandArgs {
    /// The index of real passages to expand.
    #[arg(long)]
    from: PathBuf,
    /// Where to write the expanded index (resumed if it exists).
    #[arg(long)]
    to: PathBuf,
    /// Documents in the expanded index.
    #[arg(long, default_value_t = 10_000_000)]
    docs: usize,
    /// Documents per segment (each written and committed on its own: memory stays bounded).
    #[arg(long, default_value_t = 1_000_000)]
    segment_docs: usize,
    /// Seed of the expansion.
    #[arg(long, default_value_t = 2410_13230)]
    seed: u64,
    /// Blend only the first N documents of `--from` (default: all of them): to check the
    /// expansion, expand a prefix of a real collection to its full size and compare the two
    /// with `barista-bench large`. A resumed run must be given the same `--base`, `--seed` and
    /// `--segment-docs` (recorded in the first document's metadata and checked).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    base: Option<u64>,
}

/// Expands an index of real vectors: the first documents are the real ones; every other is a
/// blend of two real documents `a` and `b`, `normalise((1 − t) x_a + t x_b)` at every rung with
/// the same `t` ∈ [0.1, 0.4) (so that its rungs stay the rungs of one document), or without the
/// normalisation for dot-product profiles. Segments are written one at a time and committed,
/// so an interrupted run resumes where the last commit ended.
pub fn expand(args: &ExpandArgs) -> Result<()> {
    let source = Index::open_with(&args.from, barista_index::OpenOptions { lazy_graphs: true, ..Default::default() })?;
    let snap = source.snapshot();
    let config: IndexConfig = snap.config().clone();
    let cosine = config.profile.contains("\"cosine\"");
    let real = args.base.map_or(snap.len(), |b| b.min(snap.len())) as usize;
    if real == 0 || snap.segments().iter().any(|s| s.deleted > 0 || s.in_memory) {
        bail!("{} must hold committed documents without deletions (compact it first)", args.from.display());
    }
    // The real vectors, dequantised, one buffer per rung.
    let mut rows: Vec<Vec<f32>> = config.rungs.iter().map(|r| Vec::with_capacity(real * r.rung.dim)).collect();
    let progress = bar(real as u64, "reading");
    let mut read = 0;
    for segment in 0..snap.segment_count() as u32 {
        let take = (snap.segments()[segment as usize].documents as usize).min(real - read);
        for (r, buffer) in rows.iter_mut().enumerate() {
            let block = snap.block(segment, r)?;
            for row in 0..take {
                buffer.extend(block.row_f32(row));
            }
        }
        read += take;
        progress.inc(take as u64);
    }
    progress.finish_and_clear();
    let index = if args.to.join("MANIFEST").exists() {
        let index = Index::open_with(&args.to, barista_index::OpenOptions { lazy_graphs: true, ..Default::default() })?;
        if index.snapshot().config() != &config {
            bail!("{} was expanded from another index", args.to.display());
        }
        index
    } else {
        Index::create(&args.to, config.clone())?
    };
    // The parameters that decide every vector, kept in the first document's metadata so that a
    // resumed run cannot mix two expansions.
    let recipe = serde_json::json!({"expansion": {
        "real": real, "seed": args.seed, "segment_docs": args.segment_docs, "from_docs": snap.len(),
    }});
    let mut done = index.snapshot().len() as usize;
    if done > 0 {
        let before = index.snapshot();
        let first = before.lookup("syn-0")?.map(|a| before.doc(a)).transpose()?;
        match first.and_then(|d| d.metadata.map(str::to_string)) {
            Some(recorded) if serde_json::from_str::<serde_json::Value>(&recorded).ok().as_ref() == Some(&recipe) => {}
            Some(recorded) => bail!(
                "{} was expanded with {recorded}; this run asks for {recipe}: give the same --base, --seed and \
                 --segment-docs (and the same --from) to resume it, or expand into a new folder",
                args.to.display()
            ),
            None => eprintln!(
                "{}: written before expansions recorded their parameters; resuming without checking them",
                args.to.display()
            ),
        }
    }
    let writer = index.writer()?;
    if !done.is_multiple_of(args.segment_docs) && done != args.docs {
        bail!("{} holds {done} documents, not whole segments of {}", args.to.display(), args.segment_docs);
    }
    let progress = bar(args.docs as u64, "expanding");
    progress.set_position(done as u64);
    while done < args.docs {
        let end = (done + args.segment_docs).min(args.docs);
        let mut docs = Vec::with_capacity(end - done);
        for j in done..end {
            let vectors: Vec<Vec<f32>> = if j < real {
                config.rungs.iter().zip(&rows).map(|(r, b)| b[j * r.rung.dim..(j + 1) * r.rung.dim].to_vec()).collect()
            } else {
                let mut rng = SplitMix64(args.seed ^ (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let (a, b) = (rng.below(real), rng.below(real));
                let t = (0.1 + 0.3 * rng.unit()) as f32;
                config
                    .rungs
                    .iter()
                    .zip(&rows)
                    .map(|(r, buffer)| {
                        let d = r.rung.dim;
                        let (x, y) = (&buffer[a * d..(a + 1) * d], &buffer[b * d..(b + 1) * d]);
                        let mut v: Vec<f32> = x.iter().zip(y).map(|(p, q)| (1.0 - t) * p + t * q).collect();
                        if cosine {
                            let norm = v.iter().map(|z| z * z).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
                            v.iter_mut().for_each(|z| *z /= norm);
                        }
                        v
                    })
                    .collect()
            };
            let metadata = (j == 0).then(|| recipe.to_string());
            docs.push(NewDocument::new(&config, format!("syn-{j}"), None, metadata, vectors)?);
        }
        let graph = bar(0, "graph");
        writer.add_segment(&docs, &|_, d, t| {
            graph.set_length(t as u64);
            graph.set_position(d as u64);
        })?;
        graph.finish_and_clear();
        done = end;
        progress.set_position(done as u64);
    }
    progress.finish_and_clear();
    eprintln!("{} holds {} documents", args.to.display(), index.snapshot().len());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use barista_index::{ElementType, GraphParams, Rung, StoredRung};
    use std::path::Path;

    /// An index of 20 "real" documents with two rungs, no graph.
    fn real_index(dir: &Path) -> PathBuf {
        let config = IndexConfig {
            model: "test-model".into(),
            profile: "{}".into(),
            rungs: vec![
                StoredRung { rung: Rung::new(1, 4), element: ElementType::F32 },
                StoredRung { rung: Rung::new(2, 8), element: ElementType::F32 },
            ],
            graph: GraphParams { min_docs: 1_000_000, ..GraphParams::on(1) },
        };
        let path = dir.join("real");
        let index = Index::create(&path, config.clone()).unwrap();
        let docs: Vec<NewDocument> = (0..20)
            .map(|i| {
                let rung = |d: usize| (0..d).map(|k| ((i * d + k) as f32).sin()).collect::<Vec<f32>>();
                NewDocument::new(&config, format!("r{i}"), None, None, vec![rung(4), rung(8)]).unwrap()
            })
            .collect();
        index.writer().unwrap().add_segment(&docs, &|_, _, _| {}).unwrap();
        path
    }

    #[test]
    fn a_resumed_expansion_must_be_given_the_same_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let from = real_index(dir.path());
        let to = dir.path().join("expanded");
        let args = |seed: u64, base: u64, docs: usize| ExpandArgs {
            from: from.clone(),
            to: to.clone(),
            docs,
            segment_docs: 30,
            seed,
            base: Some(base),
        };
        let documents = || Index::open(&to).unwrap().snapshot().len();
        expand(&args(7, 10, 30)).unwrap();
        assert_eq!(documents(), 30);
        for (seed, base) in [(8, 10), (7, 12)] {
            let err = expand(&args(seed, base, 60)).unwrap_err().to_string();
            assert!(err.contains("give the same --base, --seed and --segment-docs"), "{err}");
            assert_eq!(documents(), 30, "a refused resume wrote documents");
        }
        expand(&args(7, 10, 60)).unwrap();
        assert_eq!(documents(), 60);
    }
}
