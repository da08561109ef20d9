//! Barista's HNSW graph against FAISS (IndexFlatIP, IndexHNSWFlat, and IndexHNSWSQ with 8-bit
//! scalar quantisation — like for like with Barista's i8 rows) and hnswlib, in one run, on the
//! same vectors: the rows Barista's graph searches (its graph rung, exported dequantised), the
//! same query vectors, the same M and efConstruction, graphs built on every core, one search
//! thread each. The truth is independent of every engine's scorer: the top 10 by f64 inner
//! product on the dequantised vectors. Reports queries/s at a target recall@10 (0.95 by
//! default) and each library's build time, Barista's included.

use crate::cascade_bench::sentence_corpus;
use crate::encoder_bench::default_python;
use anyhow::{Context, Result, bail};
use barista_bench::indexing::build_or_open;
use barista_bench::stats::time_runs;
use barista_datasets::DataSet;
use barista_datasets::vecs::{Vectors, write_fvecs, write_ivecs};
use barista_engine::{CreateOptions, Engine, OpenOptions};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Arguments of `barista-bench peers`.
#[derive(clap::Args)]
pub struct PeersArgs {
    /// Model folder (or Hugging Face id).
    #[arg(long, default_value = "../shared/models/minilm-l6-2d")]
    model: String,
    /// BEIR SciFact folder: its abstracts plus every sentence are indexed (as in `frontier`),
    /// and all its queries are the query set.
    #[arg(long, default_value = "../shared/datasets/scifact")]
    dataset: PathBuf,
    /// Where the index lives (built if missing).
    #[arg(long, default_value = "target/bench-indexes/scifact-sentences")]
    index_dir: PathBuf,
    /// Python with faiss-cpu and hnswlib (default: bench/peers/.venv from setup.sh).
    #[arg(long)]
    python: Option<String>,
    /// The ef values swept (search candidate list size).
    #[arg(long, value_delimiter = ',', default_value = "10,16,24,32,48,64,96,128,192,256,384,512")]
    efs: Vec<usize>,
    /// Recall@10 at which queries/s are compared.
    #[arg(long, default_value_t = 0.95)]
    target_recall: f64,
    /// Each sweep point repeats the query set for at least this long (seconds).
    #[arg(long, default_value_t = 0.5)]
    min_seconds: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One point of an ef sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SweepPoint {
    ef: Option<usize>,
    recall: f64,
    qps: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct PeerResult {
    #[serde(default)]
    build_seconds: Option<f64>,
    sweep: Vec<SweepPoint>,
}

#[derive(Debug, Deserialize)]
struct PeersOutput {
    faiss_version: String,
    hnswlib_version: String,
    build_threads: usize,
    faiss_flat: PeerResult,
    faiss_hnsw: PeerResult,
    faiss_hnsw_sq8: PeerResult,
    hnswlib: PeerResult,
}

/// The `k` rows of `base` with the largest f64 inner product with `query` (ties by row).
fn true_top(base: &Vectors<f32>, query: &[f32], k: usize) -> Vec<u32> {
    let mut scored: Vec<(f64, u32)> = (0..base.len())
        .map(|i| (base.row(i).iter().zip(query).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum(), i as u32))
        .collect();
    let k = k.min(scored.len());
    if k > 0 {
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    }
    scored.truncate(k);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// Queries/s at `target` recall, interpolated linearly between the sweep points around it;
/// `None` when the sweep never reaches it.
fn qps_at(sweep: &[SweepPoint], target: f64) -> Option<f64> {
    let i = sweep.iter().position(|p| p.recall >= target)?;
    if i == 0 {
        return Some(sweep[0].qps);
    }
    let (a, b) = (&sweep[i - 1], &sweep[i]);
    let t = if b.recall > a.recall { (target - a.recall) / (b.recall - a.recall) } else { 1.0 };
    Some(a.qps + t * (b.qps - a.qps))
}

fn recall_at(found: &[u32], truth: &[u32]) -> usize {
    let truth: HashSet<&u32> = truth.iter().collect();
    found.iter().filter(|d| truth.contains(d)).count()
}

pub fn peers(args: &PeersArgs) -> Result<()> {
    let data = DataSet::detect(&args.dataset)?;
    let docs = sentence_corpus(&data)?;
    let total = docs.len();
    if let Some(parent) = args.index_dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let engine = if args.index_dir.join("MANIFEST").exists() {
        // Any index (the million-passage one of `barista-bench large`, say), as it is.
        let open = OpenOptions { model: Some(args.model.clone()), ..OpenOptions::default() };
        Engine::open(&args.index_dir, &open)?
    } else {
        build_or_open(&args.index_dir, &CreateOptions::new(&args.model), docs.into_iter().map(Ok), total)?
    };
    let snapshot = engine.index().snapshot();
    engine.index().load_graphs()?;
    let config = snapshot.config().clone();
    let graph = config.graph.clone();
    let graph_rung = *graph.rungs.first().context("the index has no graph rung")?;
    if snapshot.segment_count() != 1 {
        bail!(
            "the index in {} has {} segments: the peers build one graph over all vectors, so compare against one \
             segment (`barista compact --index {}`)",
            args.index_dir.display(),
            snapshot.segment_count(),
            args.index_dir.display()
        );
    }
    let stored = config.rungs[graph_rung];
    let rung = stored.rung;
    // The rows exactly as the graph scores them (dequantised when stored as i8 or f16).
    let mut base = Vectors { dim: rung.dim, data: Vec::new() };
    let mut first_row = Vec::new();
    for segment in 0..snapshot.segment_count() as u32 {
        first_row.push(base.len() as u32);
        let block = snapshot.block(segment, graph_rung)?;
        for row in 0..block.count {
            base.data.extend(block.row_f32(row));
        }
    }
    if base.len() as u64 != snapshot.len() {
        bail!(
            "the index in {} has deleted documents ({} rows, {} live): the peers would search rows Barista skips; \
             rebuild it or pass another --index-dir",
            args.index_dir.display(),
            base.len(),
            snapshot.len()
        );
    }
    let queries = data.queries(&barista_datasets::Reading::strict())?;
    let mut query_vectors = Vectors { dim: rung.dim, data: Vec::new() };
    for q in &queries {
        query_vectors.data.extend(engine.encoder().query(&q.text)?.rung(rung)?);
    }
    let k = 10;
    let global = |hits: Vec<barista_index::Hit>| -> Vec<u32> {
        hits.iter().map(|h| first_row[h.address.segment as usize] + h.address.doc).collect()
    };
    // The truth: f64 inner products on the dequantised rows, independent of any scorer.
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let truth: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let (base, query_vectors) = (&base, &query_vectors);
        let chunk = queries.len().div_ceil(threads).max(1);
        let parts: Vec<_> = (0..queries.len())
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + chunk).min(query_vectors.len()))
                        .map(|i| true_top(base, query_vectors.row(i), k))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap_or_default()).collect()
    });
    if truth.len() != queries.len() {
        bail!("computing the true top {k} failed");
    }
    let exact_agrees: usize = (0..queries.len())
        .map(|i| Ok(recall_at(&global(snapshot.exact_search(graph_rung, query_vectors.row(i), k)?), &truth[i])))
        .sum::<Result<usize>>()?;
    let exact_recall = exact_agrees as f64 / (queries.len() * k) as f64;
    // Barista's graph build on the same rows, all cores (as indexing does).
    let build_start = Instant::now();
    let params = barista_index::graph::build::BuildParams {
        m: graph.max_connections,
        ef_construction: graph.ef_construction,
        threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        seed: 1,
    };
    barista_index::graph::build::build(
        snapshot.block(0, graph_rung)?,
        barista_index::scan::Kernels::default(),
        rung.layer,
        &params,
        &|_, _| {},
        &|| false,
    )?;
    let barista_build = build_start.elapsed().as_secs_f64();
    eprintln!(
        "{} vectors at rung {rung} ({:?}), {} queries; Barista graph M={} efConstruction={}",
        base.len(),
        stored.element,
        queries.len(),
        graph.max_connections,
        graph.ef_construction
    );
    let min_time = Duration::from_secs_f64(args.min_seconds.max(0.0));
    let mut barista = Vec::new();
    for &ef in &args.efs {
        let mut found = 0;
        for (i, truth) in truth.iter().enumerate() {
            found += recall_at(&global(snapshot.graph_search(query_vectors.row(i), k, ef)?), truth);
        }
        let start = Instant::now();
        let mut done = 0usize;
        while done == 0 || start.elapsed() < min_time {
            for i in 0..queries.len() {
                std::hint::black_box(snapshot.graph_search(query_vectors.row(i), k, ef)?);
            }
            done += queries.len();
        }
        let qps = done as f64 / start.elapsed().as_secs_f64();
        barista.push(SweepPoint { ef: Some(ef), recall: found as f64 / (queries.len() * k) as f64, qps });
    }
    let exact = time_runs(1, 3, || {
        for i in 0..queries.len() {
            std::hint::black_box(snapshot.exact_search(graph_rung, query_vectors.row(i), k).ok());
        }
    });
    let barista_flat = queries.len() as f64 / (exact.p50_ms / 1e3);

    let dir = tempfile::tempdir()?;
    let (base_path, query_path, truth_path) =
        (dir.path().join("base.fvecs"), dir.path().join("queries.fvecs"), dir.path().join("truth.ivecs"));
    write_fvecs(&base_path, &base)?;
    write_fvecs(&query_path, &query_vectors)?;
    let truth_vectors = Vectors { dim: k, data: truth.iter().flatten().map(|&d| d as i32).collect() };
    write_ivecs(&truth_path, &truth_vectors)?;
    let python = args.python.clone().unwrap_or_else(default_python);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/ann_peers.py");
    eprintln!("running FAISS and hnswlib ({python})…");
    let efs: Vec<String> = args.efs.iter().map(usize::to_string).collect();
    let output = Command::new(&python)
        .arg(&script)
        .args(["--base", &base_path.to_string_lossy(), "--queries", &query_path.to_string_lossy()])
        .args(["--truth", &truth_path.to_string_lossy(), "--k", &k.to_string()])
        .args(["--m", &graph.max_connections.to_string(), "--ef-construction", &graph.ef_construction.to_string()])
        .args(["--efs", &efs.join(","), "--min-seconds", &args.min_seconds.to_string()])
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "the FAISS/hnswlib peers failed (install them with `bash bench/peers/setup.sh`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let peers: PeersOutput = serde_json::from_slice(&output.stdout).context("reading the peers' JSON")?;

    let target = args.target_recall;
    let cell = |v: Option<f64>| v.map_or("not reached".into(), |q| format!("{q:.0}"));
    let max_recall = |s: &[SweepPoint]| s.iter().map(|p| p.recall).fold(0.0, f64::max);
    let barista_at = qps_at(&barista, target);
    println!(
        "\n### HNSW against FAISS and hnswlib: {} passages at rung {rung} ({:?} as stored), {} queries, one search thread\n",
        base.len(),
        stored.element,
        queries.len()
    );
    println!(
        "Truth: f64 inner products on the dequantised rows. Builds on {} threads; searches on one.\n",
        peers.build_threads
    );
    println!("| engine | queries/s at recall@10 = {target} | × Barista | best recall@10 in the sweep | build s |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let ratio = |v: Option<f64>| match (v, barista_at) {
        (Some(v), Some(b)) => format!("{:.2}", v / b),
        _ => "–".into(),
    };
    let scan = match stored.element {
        barista_index::ElementType::I8 => "integer scoring of the i8 rows",
        _ => "of the rows as stored, one thread",
    };
    let walk = if stored.element == barista_index::ElementType::I8 {
        "walks the stored i8 rows"
    } else {
        "walks its i8 copy of the rows, rescores on the rows as stored"
    };
    println!(
        "| Barista graph (own build and search; {walk}) | {} | 1.00 | {:.3} | {barista_build:.1} |",
        cell(barista_at),
        max_recall(&barista)
    );
    for (name, r) in [
        (format!("FAISS {} IndexHNSWSQ (8-bit, like for like)", peers.faiss_version), &peers.faiss_hnsw_sq8),
        (format!("FAISS {} IndexHNSWFlat (f32)", peers.faiss_version), &peers.faiss_hnsw),
        (format!("hnswlib {} (f32)", peers.hnswlib_version), &peers.hnswlib),
    ] {
        let at = qps_at(&r.sweep, target);
        println!(
            "| {name} | {} | {} | {:.3} | {:.1} |",
            cell(at),
            ratio(at),
            max_recall(&r.sweep),
            r.build_seconds.unwrap_or(0.0)
        );
    }
    let flat = peers.faiss_flat.sweep.first().map_or(0.0, |p| p.qps);
    let flat_recall = peers.faiss_flat.sweep.first().map_or(0.0, |p| p.recall);
    println!(
        "| FAISS IndexFlatIP (exhaustive) | {flat:.0} (recall {flat_recall:.5}) | {} | {flat_recall:.5} | – |",
        ratio(Some(flat))
    );
    println!(
        "| Barista exact scan ({scan}) | {barista_flat:.0} (recall {exact_recall:.5}) | {} | {exact_recall:.5} | – |",
        ratio(Some(barista_flat))
    );
    println!(
        "\n| ef | Barista recall | Barista q/s | FAISS HNSWSQ recall | q/s | FAISS HNSW recall | q/s | hnswlib recall | q/s |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, b) in barista.iter().enumerate() {
        let (q, f, h) = (&peers.faiss_hnsw_sq8.sweep[i], &peers.faiss_hnsw.sweep[i], &peers.hnswlib.sweep[i]);
        println!(
            "| {} | {:.3} | {:.0} | {:.3} | {:.0} | {:.3} | {:.0} | {:.3} | {:.0} |",
            b.ef.unwrap_or(0),
            b.recall,
            b.qps,
            q.recall,
            q.qps,
            f.recall,
            f.qps,
            h.recall,
            h.qps
        );
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "vectors": base.len(), "dim": rung.dim, "rung": rung.to_string(), "element": format!("{:?}", stored.element),
            "queries": queries.len(), "k": k, "m": graph.max_connections, "ef_construction": graph.ef_construction,
            "target_recall": target,
            "qps_at_target": {"barista": barista_at, "faiss_hnsw_sq8": qps_at(&peers.faiss_hnsw_sq8.sweep, target),
                              "faiss_hnsw": qps_at(&peers.faiss_hnsw.sweep, target),
                              "hnswlib": qps_at(&peers.hnswlib.sweep, target)},
            "truth": "top 10 by f64 inner product on the dequantised rows",
            "build_threads": peers.build_threads,
            "barista": {"sweep": barista, "exact_qps": barista_flat, "exact_recall": exact_recall,
                        "build_seconds": barista_build},
            "faiss_version": peers.faiss_version, "hnswlib_version": peers.hnswlib_version,
            "faiss_flat": peers.faiss_flat, "faiss_hnsw": peers.faiss_hnsw,
            "faiss_hnsw_sq8": peers.faiss_hnsw_sq8, "hnswlib": peers.hnswlib,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_queries_per_second_at_the_target_recall() {
        let p = |recall, qps| SweepPoint { ef: None, recall, qps };
        let sweep = [p(0.90, 1000.0), p(0.94, 800.0), p(0.96, 600.0)];
        assert!((qps_at(&sweep, 0.95).unwrap() - 700.0).abs() < 1e-9);
        assert_eq!(qps_at(&sweep, 0.80), Some(1000.0));
        assert_eq!(qps_at(&sweep, 0.99), None);
    }
}
