//! Index benchmarks: HNSW recall and latency against exact search (SIFT10K), opening a large
//! index, and the quality cost of storing rung blocks in f16 instead of f32 (SciFact).

use anyhow::{Context, Result};
use barista_bench::indexing::bar;
use barista_bench::stats::{Latency, time_runs};
use barista_datasets::beir::{read_corpus, read_qrels, read_queries};
use barista_datasets::vecs::read_fvecs;
use barista_engine::metrics::{Run, mean_over_judged, ndcg_at};
use barista_engine::{Encoder, EncoderOptions, TextKind};
use barista_index::{ElementType, GraphParams, Index, IndexConfig, NewDocument, OpenOptions, Rung, StoredRung};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Writes `docs` as one segment, with a progress bar for the graph build.
fn commit(writer: &barista_index::IndexWriter, docs: Vec<NewDocument>) -> Result<()> {
    let progress = bar(0, "graph");
    writer.add_segment(&docs, &|_, done, total| {
        progress.set_length(total as u64);
        progress.set_position(done as u64);
    })?;
    progress.finish_and_clear();
    Ok(())
}

/// Arguments of `barista-bench hnsw`.
#[derive(clap::Args)]
pub struct HnswArgs {
    /// Directory with siftsmall_base.fvecs and siftsmall_query.fvecs.
    #[arg(long, default_value = "../shared/datasets/siftsmall")]
    sift: PathBuf,
    /// HNSW links per node.
    #[arg(long, default_value_t = 24)]
    m: usize,
    /// HNSW construction candidate list.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct HnswRow {
    metric: &'static str,
    ef: usize,
    recall_at_10: f64,
    latency: Latency,
}

#[derive(Serialize)]
struct HnswReport {
    vectors: usize,
    dim: usize,
    m: usize,
    ef_construction: usize,
    build_seconds: BTreeMap<&'static str, f64>,
    exact_latency: BTreeMap<&'static str, Latency>,
    rows: Vec<HnswRow>,
}

pub fn hnsw(args: &HnswArgs) -> Result<()> {
    let base = read_fvecs(&args.sift.join("siftsmall_base.fvecs"))?;
    let queries = read_fvecs(&args.sift.join("siftsmall_query.fvecs"))?;
    let mut report = HnswReport {
        vectors: base.len(),
        dim: base.dim,
        m: args.m,
        ef_construction: args.ef_construction,
        build_seconds: BTreeMap::new(),
        exact_latency: BTreeMap::new(),
        rows: Vec::new(),
    };
    for (metric, normalise) in [("cosine", true), ("inner product", false)] {
        let prepare = |v: &[f32]| -> Vec<f32> {
            let mut v = v.to_vec();
            if normalise {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= n);
            }
            v
        };
        let dir = tempfile::tempdir()?;
        let config = IndexConfig {
            model: "sift".into(),
            profile: "{}".into(),
            rungs: vec![StoredRung { rung: Rung::new(0, base.dim), element: ElementType::F32 }],
            graph: GraphParams {
                rungs: vec![0],
                max_connections: args.m,
                ef_construction: args.ef_construction,
                min_docs: 0,
            },
        };
        let index = Index::create(dir.path(), config.clone())?;
        let writer = index.writer()?;
        let docs = (0..base.len())
            .map(|i| NewDocument::new(&config, i.to_string(), None, None, vec![prepare(base.row(i))]))
            .collect::<Result<Vec<_>, _>>()?;
        let t = Instant::now();
        commit(&writer, docs)?;
        report.build_seconds.insert(metric, t.elapsed().as_secs_f64());
        let snapshot = index.snapshot();
        let qs: Vec<Vec<f32>> = (0..queries.len()).map(|q| prepare(queries.row(q))).collect();
        let truth: Vec<HashSet<_>> = qs
            .iter()
            .map(|q| snapshot.exact_search(0, q, 10).map(|h| h.into_iter().map(|h| h.address).collect()))
            .collect::<Result<_, _>>()?;
        let mut i = 0;
        let exact = time_runs(qs.len(), qs.len() * 5, || {
            std::hint::black_box(snapshot.exact_search(0, &qs[i % qs.len()], 10).ok());
            i += 1;
        });
        report.exact_latency.insert(metric, exact);
        for ef in [10, 16, 24, 32, 48, 64, 96, 128, 256] {
            let mut found = 0;
            for (q, t) in qs.iter().zip(&truth) {
                found += snapshot.graph_search(q, 10, ef)?.iter().filter(|h| t.contains(&h.address)).count();
            }
            let recall = found as f64 / (10 * qs.len()) as f64;
            let mut i = 0;
            let latency = time_runs(qs.len(), qs.len() * 5, || {
                std::hint::black_box(snapshot.graph_search(&qs[i % qs.len()], 10, ef).ok());
                i += 1;
            });
            report.rows.push(HnswRow { metric, ef, recall_at_10: recall, latency });
        }
    }
    println!(
        "\n### HNSW on SIFT10K ({} × {}, M = {}, ef_construction = {})\n",
        report.vectors, report.dim, args.m, args.ef_construction
    );
    for (metric, seconds) in &report.build_seconds {
        println!(
            "- {metric}: graph built in {seconds:.2} s; exact scan p50 {:.3} ms",
            report.exact_latency[metric].p50_ms
        );
    }
    println!("\n| metric | ef | recall@10 | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for r in &report.rows {
        println!(
            "| {} | {} | {:.4} | {:.3} | {:.3} |",
            r.metric, r.ef, r.recall_at_10, r.latency.p50_ms, r.latency.p99_ms
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Arguments of `barista-bench index-open`.
#[derive(clap::Args)]
pub struct OpenArgs {
    /// Documents in the synthetic index.
    #[arg(long, default_value_t = 1_000_000)]
    docs: usize,
    /// Where to build it (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Reuse an index already built in --dir.
    #[arg(long)]
    reuse: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The shared model's ladder, stored in f16, graph on (2,64).
fn synthetic_config() -> IndexConfig {
    let rungs = [(1, 32), (2, 64), (3, 96), (4, 128), (5, 256), (6, 384)];
    IndexConfig {
        model: "synthetic".into(),
        profile: "{}".into(),
        rungs: rungs.iter().map(|&(l, d)| StoredRung { rung: Rung::new(l, d), element: ElementType::F16 }).collect(),
        graph: GraphParams { rungs: vec![1], max_connections: 16, ef_construction: 64, min_docs: 0 },
    }
}

fn synthetic_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

pub fn open(args: &OpenArgs) -> Result<()> {
    let temp;
    let dir: &Path = match &args.dir {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir()?;
            temp.path()
        }
    };
    let config = synthetic_config();
    if !args.reuse {
        let index = Index::create(dir, config.clone())?;
        let writer = index.writer()?;
        let progress = bar(args.docs as u64, "documents");
        let mut docs = Vec::with_capacity(args.docs);
        for i in 0..args.docs {
            let vectors = config
                .rungs
                .iter()
                .enumerate()
                .map(|(r, s)| synthetic_vector((i * 8 + r) as u64, s.rung.dim))
                .collect();
            docs.push(NewDocument::new(
                &config,
                format!("doc-{i}"),
                Some(format!("synthetic document {i}")),
                None,
                vectors,
            )?);
            if i % 10_000 == 0 {
                progress.set_position(i as u64);
            }
        }
        progress.finish_and_clear();
        let t = Instant::now();
        commit(&writer, docs)?;
        eprintln!("built {} documents in {:.1} s (graph and files)", args.docs, t.elapsed().as_secs_f64());
    }
    let bytes: u64 = std::fs::read_dir(dir)?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let index = Index::open_with(dir, OpenOptions { lazy_graphs: true, ..Default::default() })?;
        opens.push(t.elapsed());
        drop(index);
    }
    let open = Latency::of(&mut opens);
    let index = Index::open_with(dir, OpenOptions { lazy_graphs: true, ..Default::default() })?;
    let t = Instant::now();
    index.load_graphs()?;
    let graphs = t.elapsed().as_secs_f64();
    let snapshot = index.snapshot();
    let q = synthetic_vector(u64::MAX, 384);
    let t = Instant::now();
    snapshot.exact_search(5, &q, 10)?;
    let first_scan = t.elapsed().as_secs_f64() * 1e3;
    let q64 = synthetic_vector(u64::MAX - 1, 64);
    let found = snapshot.graph_search(&q64, 100, 128)?.len();
    anyhow::ensure!(found == 100, "the graph search found {found} hits, not 100");
    let graph = time_runs(20, 200, || {
        std::hint::black_box(snapshot.graph_search(&q64, 100, 128).ok());
    });
    println!(
        "\n### Opening a {}-document index ({:.2} GB on disk, rungs in f16)\n",
        snapshot.len(),
        bytes as f64 / 1e9
    );
    println!("| step | time |");
    println!("| --- | ---: |");
    println!("| open (manifest, maps, headers, id tables; graphs left on disk), p50 of 5 | {:.1} ms |", open.p50_ms);
    println!("| load the HNSW graph (verified) | {graphs:.2} s |");
    println!("| first exact scan of rung (6,384) (pages in from disk/cache) | {first_scan:.1} ms |");
    println!("| graph search, top 100, ef 128, p50 | {:.3} ms |", graph.p50_ms);
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "documents": snapshot.len(), "bytes": bytes, "open": open, "load_graphs_seconds": graphs,
            "first_exact_scan_ms": first_scan, "graph_search_top100_ef128": graph,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

/// Arguments of `barista-bench storage`.
#[derive(clap::Args)]
pub struct StorageArgs {
    /// Model folder (or Hugging Face id).
    #[arg(long, default_value = "../shared/models/minilm-l6-2d")]
    model: String,
    /// BEIR data set folder (corpus.jsonl, queries.jsonl, qrels/test.tsv).
    #[arg(long, default_value = "../shared/datasets/scifact")]
    dataset: PathBuf,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn storage(args: &StorageArgs) -> Result<()> {
    let encoder = Encoder::load(&args.model, &EncoderOptions::default()).context("loading the model")?;
    let rungs = encoder.profile().rungs.clone();
    let docs: Vec<_> = read_corpus(&args.dataset.join("corpus.jsonl"), &barista_datasets::Reading::strict())?
        .collect::<Result<_, _>>()?;
    let qrels = read_qrels(&args.dataset.join("qrels/test.tsv"), &barista_datasets::Reading::strict())?;
    let queries: Vec<_> = read_queries(&args.dataset.join("queries.jsonl"), &barista_datasets::Reading::strict())?
        .into_iter()
        .filter(|q| qrels.contains_key(&q.id))
        .collect();
    eprintln!("encoding {} documents and {} queries…", docs.len(), queries.len());
    let passages: Vec<String> = docs.iter().map(|d| d.passage()).collect();
    let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
    let progress = bar(refs.len() as u64, "encoding");
    let mut embedded = Vec::new();
    for chunk in refs.chunks(512) {
        embedded.push(encoder.encode(chunk, TextKind::Passage, &rungs)?);
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    let qtexts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let qvecs = encoder.encode(&qtexts, TextKind::Query, &rungs)?;
    let mut results: BTreeMap<ElementType, (Vec<BTreeMap<String, Run>>, u64)> = BTreeMap::new();
    for element in [ElementType::F32, ElementType::F16, ElementType::I8] {
        let dir = tempfile::tempdir()?;
        let config = IndexConfig {
            model: encoder.name().to_string(),
            profile: serde_json::to_string(encoder.profile())?,
            rungs: rungs.iter().map(|r| StoredRung { rung: *r, element }).collect(),
            graph: GraphParams::on(1),
        };
        let index = Index::create(dir.path(), config.clone())?;
        let writer = index.writer()?;
        let mut d = 0;
        let mut segment = Vec::with_capacity(docs.len());
        for batch in &embedded {
            for i in 0..batch.len() {
                let vectors = (0..rungs.len()).map(|r| batch.vector(i, r).to_vec()).collect();
                segment.push(NewDocument::new(&config, docs[d].id.clone(), None, None, vectors)?);
                d += 1;
            }
        }
        commit(&writer, segment)?;
        let bytes = index.snapshot().manifest().segments.iter().map(|s| s.vectors.len).sum();
        let snapshot = index.snapshot();
        let mut per_rung = Vec::new();
        for r in 0..rungs.len() {
            let mut runs = BTreeMap::new();
            for (qi, q) in queries.iter().enumerate() {
                let hits = snapshot.exact_search(r, qvecs.vector(qi, r), 100)?;
                let run: Run = hits
                    .iter()
                    .map(|h| Ok((snapshot.doc(h.address)?.id.to_string(), h.score)))
                    .collect::<Result<_, barista_index::Error>>()?;
                runs.insert(q.id.clone(), run);
            }
            per_rung.push(runs);
        }
        results.insert(element, (per_rung, bytes));
    }
    let (f32_runs, f32_bytes) = &results[&ElementType::F32];
    println!("\n### Rung storage against f32 (SciFact test, {} queries, exact search per rung)\n", queries.len());
    let sizes: Vec<String> = results.iter().map(|(e, (_, b))| format!("{e} {:.1} MB", *b as f64 / 1e6)).collect();
    println!("vector file: {}\n", sizes.join(", "));
    println!("| rung | storage | nDCG@10 | top-10 overlap with f32 | max score difference |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let _ = f32_bytes;
    let mut rows = Vec::new();
    for (r, rung) in rungs.iter().enumerate() {
        for (element, (runs, _)) in &results {
            let ndcg = mean_over_judged(&runs[r], &qrels, |run, q| ndcg_at(run, q, 10));
            let mut overlap = 0.0;
            let mut max_diff = 0.0f32;
            for (q, a) in &f32_runs[r] {
                let b = &runs[r][q];
                let top_a: HashSet<&String> = a.iter().take(10).map(|(d, _)| d).collect();
                overlap += b.iter().take(10).filter(|(d, _)| top_a.contains(d)).count() as f64 / 10.0;
                let scores_b: BTreeMap<&String, f32> = b.iter().map(|(d, s)| (d, *s)).collect();
                for (d, s) in a {
                    if let Some(t) = scores_b.get(d) {
                        max_diff = max_diff.max((s - t).abs());
                    }
                }
            }
            overlap /= f32_runs[r].len() as f64;
            println!("| {rung} | {element} | {ndcg:.4} | {overlap:.4} | {max_diff:.2e} |");
            rows.push(serde_json::json!({
                "rung": rung.to_string(), "storage": element.to_string(), "ndcg@10": ndcg,
                "overlap@10_with_f32": overlap, "max_score_difference": max_diff,
            }));
        }
    }
    if let Some(path) = &args.json {
        let bytes: BTreeMap<String, u64> = results.iter().map(|(e, (_, b))| (e.to_string(), *b)).collect();
        let json = serde_json::json!({"queries": queries.len(), "vector_file_bytes": bytes, "rows": rows});
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}
