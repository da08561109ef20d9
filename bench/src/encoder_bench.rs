//! The encoder benchmark: one ~12-token query's latency to each rung's layer and for the full
//! model, documents/s over a real corpus with every rung kept, and the same inputs through
//! onnxruntime running the ONNX export of the same model — all in one run.

use anyhow::{Context, Result, bail};
use barista_bench::stats::{Latency, time_runs};
use barista_engine::{Encoder, EncoderOptions, Isa, TextKind, Tokens, WeightsChoice};
use serde::Serialize;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Arguments of `barista-bench encoder`.
#[derive(clap::Args)]
pub struct Args {
    /// Model folder (or Hugging Face id).
    #[arg(long, default_value = "../shared/models/minilm-l6-2d")]
    model: String,
    /// BEIR corpus.jsonl whose documents are encoded.
    #[arg(long, default_value = "../shared/datasets/scifact/corpus.jsonl")]
    corpus: PathBuf,
    /// Encode only the first N documents (default: all).
    #[arg(long)]
    docs: Option<usize>,
    /// The query.
    #[arg(long, default_value = "what is a matryoshka embedding")]
    query: String,
    /// Timed runs per query measurement.
    #[arg(long, default_value_t = 2000)]
    query_runs: usize,
    /// ONNX model for the onnxruntime anchor (default: <model>/onnx/model.onnx).
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Python interpreter with onnxruntime installed (default: bench/peers/.venv, made by
    /// bench/peers/setup.sh, else python3).
    #[arg(long)]
    python: Option<String>,
    /// Skip the onnxruntime anchor.
    #[arg(long)]
    no_anchor: bool,
    /// Also measure a reduced-precision weight storage (f16 or bf16) and its cosine to f32.
    #[arg(long)]
    reduced: Option<WeightsChoice>,
    /// Force an instruction set (avx512, avx2, scalar).
    #[arg(long)]
    isa: Option<Isa>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct QueryRow {
    what: String,
    layer: usize,
    latency: Latency,
}

#[derive(Serialize)]
struct DocRow {
    engine: String,
    weights: String,
    documents: usize,
    tokens: usize,
    seconds: f64,
    documents_per_second: f64,
    /// Lowest cosine of any document's largest-rung vector to the f32-weights result.
    min_cosine_to_f32: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    isa: String,
    threads: usize,
    query_tokens: usize,
    query: Vec<QueryRow>,
    documents: Vec<DocRow>,
    anchor: Option<serde_json::Value>,
}

fn load(args: &Args, weights: WeightsChoice) -> Result<Encoder> {
    let options = EncoderOptions { weights, isa: args.isa, ..Default::default() };
    Encoder::load(&args.model, &options).with_context(|| format!("loading {}", args.model))
}

pub fn run(args: &Args) -> Result<()> {
    let encoder = load(args, WeightsChoice::Auto)?;
    let f32_encoder = load(args, WeightsChoice::F32)?;
    let profile = encoder.profile().clone();
    let tokens = encoder.tokenize(&args.query, TextKind::Query)?;
    eprintln!(
        "model {} ({} layers, weights {:?}: {:.1} MB packed, {}), query {:?} = {} tokens",
        encoder.name(),
        encoder.layers(),
        encoder.weight_precision(),
        encoder.weight_bytes() as f64 / 1e6,
        encoder.isa(),
        args.query,
        tokens.len()
    );

    // 1. Query latency to each rung's layer, and the full model with tokenization.
    let mut query = Vec::new();
    let warmup = (args.query_runs / 10).max(10);
    for (name, enc) in [("barista", &encoder), ("barista f32 weights", &f32_encoder)] {
        for &rung in &profile.rungs {
            let latency = time_runs(warmup, args.query_runs, || {
                let mut q = enc.query_tokens(tokens.clone()).expect("valid tokens");
                std::hint::black_box(q.rung(rung).expect("valid rung"));
            });
            query.push(QueryRow { what: format!("{name}: tokens → rung {rung}"), layer: rung.layer, latency });
        }
    }
    let full = profile.largest();
    let latency = time_runs(warmup, args.query_runs, || {
        let mut q = encoder.query(&args.query).expect("query");
        std::hint::black_box(q.rung(full).expect("rung"));
    });
    query.push(QueryRow {
        what: format!("barista: text → rung {full} (with tokenization)"),
        layer: full.layer,
        latency,
    });
    let first = profile.rungs[0];
    let latency = time_runs(warmup, args.query_runs, || {
        let mut q = encoder.query_tokens(tokens.clone()).expect("query");
        std::hint::black_box(q.rung(first).expect("rung"));
        std::hint::black_box(q.rung(full).expect("rung"));
    });
    query.push(QueryRow { what: format!("barista: progressive {first} then {full}"), layer: full.layer, latency });

    // 2. Documents/s over the corpus, every rung kept.
    let mut texts = Vec::new();
    for doc in barista_datasets::beir::read_corpus(&args.corpus, &barista_datasets::Reading::strict())? {
        texts.push(doc?.passage());
        if args.docs.is_some_and(|n| texts.len() >= n) {
            break;
        }
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    let doc_tokens = encoder.tokenize_batch(&refs, TextKind::Passage)?;
    let tokenize_seconds = t.elapsed().as_secs_f64();
    let total_tokens: usize = doc_tokens.iter().map(Tokens::len).sum();
    eprintln!("{} documents, {} tokens (tokenized in {:.2} s)", texts.len(), total_tokens, tokenize_seconds);
    let mut documents = Vec::new();
    let mut reference = None;
    let mut variants =
        vec![("barista", f32_encoder.clone(), WeightsChoice::F32), ("barista", encoder.clone(), WeightsChoice::Auto)];
    if let Some(reduced) = args.reduced {
        variants.push(("barista", load(args, reduced)?, reduced));
    }
    for (name, enc, choice) in variants {
        let t = Instant::now();
        let out = enc.encode_tokens(&doc_tokens, &profile.rungs)?;
        let seconds = t.elapsed().as_secs_f64();
        let last = profile.rungs.len() - 1;
        let min_cosine_to_f32 = reference.as_ref().map(|r: &barista_engine::Embeddings| {
            (0..out.len()).map(|i| cosine(out.vector(i, last), r.vector(i, last))).fold(1.0, f64::min)
        });
        if choice == WeightsChoice::F32 {
            reference = Some(out);
        }
        let row = DocRow {
            engine: name.into(),
            weights: format!("{choice:?} ({:?})", enc.weight_precision()),
            documents: texts.len(),
            tokens: total_tokens,
            seconds,
            documents_per_second: texts.len() as f64 / seconds,
            min_cosine_to_f32,
        };
        eprintln!("{}: {:.1} documents/s", row.weights, row.documents_per_second);
        documents.push(row);
    }

    // 3. The onnxruntime anchor on the same token ids, and a check that it computes what
    //    Barista computes (mean-pooled last layer of the query and the first documents).
    let anchor = if args.no_anchor {
        None
    } else {
        let mut anchor = run_anchor(args, &tokens, &doc_tokens)?;
        let theirs: Vec<Vec<f32>> = serde_json::from_value(anchor["check_vectors"].take()).unwrap_or_default();
        let mut ours = vec![f32_encoder.encode_tokens(std::slice::from_ref(&tokens), &[full])?.vector(0, 0).to_vec()];
        let checked = theirs.len().saturating_sub(1).min(doc_tokens.len());
        let docs = f32_encoder.encode_tokens(&doc_tokens[..checked], &[full])?;
        ours.extend((0..checked).map(|i| docs.vector(i, 0).to_vec()));
        let min = ours.iter().zip(&theirs).map(|(a, b)| cosine(a, b)).fold(1.0, f64::min);
        eprintln!("onnxruntime's pooled outputs against Barista's: min cosine {min:.7} over {} texts", ours.len());
        if theirs.len() != ours.len() || min < 0.9999 {
            bail!("onnxruntime and Barista disagree (min cosine {min:.7}): the anchor would not be comparable");
        }
        anchor["output_check"] = serde_json::json!({"texts": ours.len(), "min_cosine": min});
        Some(anchor)
    };

    let report = Report {
        model: encoder.name().to_string(),
        isa: encoder.isa().to_string(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        query_tokens: tokens.len(),
        query,
        documents,
        anchor,
    };
    print_markdown(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

fn run_anchor(args: &Args, query: &Tokens, docs: &[Tokens]) -> Result<serde_json::Value> {
    let onnx = args.onnx.clone().unwrap_or_else(|| PathBuf::from(&args.model).join("onnx/model.onnx"));
    let dir = tempfile::tempdir()?;
    let inputs = dir.path().join("inputs.json");
    let payload = serde_json::json!({
        "query": query.ids,
        "documents": docs.iter().map(|d| &d.ids).collect::<Vec<_>>(),
    });
    std::fs::write(&inputs, serde_json::to_vec(&payload)?)?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/ort_encoder.py");
    eprintln!("running the onnxruntime anchor ({})…", onnx.display());
    let python = args.python.clone().unwrap_or_else(default_python);
    let output = Command::new(&python)
        .arg(&script)
        .arg("--onnx")
        .arg(&onnx)
        .arg("--inputs")
        .arg(&inputs)
        .arg("--query-runs")
        .arg(args.query_runs.to_string())
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "the onnxruntime anchor failed (install it with `bash bench/peers/setup.sh`, or pass --no-anchor):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The peers' virtual environment if `bench/peers/setup.sh` made one, else `python3`.
pub fn default_python() -> String {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/.venv/bin/python");
    if venv.exists() { venv.to_string_lossy().into_owned() } else { "python3".into() }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn print_markdown(r: &Report) {
    let anchor_q = r.anchor.as_ref().and_then(|a| a["query_p50_ms"].as_f64());
    let anchor_d = r.anchor.as_ref().and_then(|a| a["documents_per_second"].as_f64());
    println!("\n### Query latency ({} tokens, {} threads, {})\n", r.query_tokens, r.threads, r.isa);
    println!("| what | p50 ms | p99 ms | p50 / onnxruntime full model |");
    println!("| --- | ---: | ---: | ---: |");
    for row in &r.query {
        let ratio = anchor_q.map_or("–".into(), |a| format!("{:.2}×", row.latency.p50_ms / a));
        println!("| {} | {:.3} | {:.3} | {} |", row.what, row.latency.p50_ms, row.latency.p99_ms, ratio);
    }
    if let Some(a) = &r.anchor {
        println!(
            "| onnxruntime {}: full model | {:.3} | {:.3} | 1.00× |",
            a["onnxruntime"].as_str().unwrap_or("?"),
            a["query_p50_ms"].as_f64().unwrap_or(f64::NAN),
            a["query_p99_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "\n### Documents ({} documents, {} tokens, every rung kept)\n",
        r.documents[0].documents, r.documents[0].tokens
    );
    println!("| engine | weights | documents/s | × onnxruntime | min cosine to f32 |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for d in &r.documents {
        let ratio = anchor_d.map_or("–".into(), |a| format!("{:.2}×", d.documents_per_second / a));
        let cos = d.min_cosine_to_f32.map_or("(reference)".into(), |c| format!("{c:.6}"));
        println!("| {} | {} | {:.1} | {} | {} |", d.engine, d.weights, d.documents_per_second, ratio, cos);
    }
    if let Some(a) = &r.anchor {
        println!(
            "| onnxruntime {} | f32, batches of {} | {:.1} | 1.00× | – |",
            a["onnxruntime"].as_str().unwrap_or("?"),
            a["batch"],
            a["documents_per_second"].as_f64().unwrap_or(f64::NAN)
        );
        let threads = match a["intra_op_threads"].as_u64() {
            Some(0) | None => "its default (one per physical core)".to_string(),
            Some(n) => n.to_string(),
        };
        println!(
            "\nonnxruntime ran with intra-op threads: {threads}, on {} logical cores (Barista: {} threads); its \
             mean-pooled outputs match Barista's f32 ones at cosine ≥ {:.7} over {} texts.",
            a["logical_cores"],
            r.threads,
            a["output_check"]["min_cosine"].as_f64().unwrap_or(f64::NAN),
            a["output_check"]["texts"]
        );
    }
}
