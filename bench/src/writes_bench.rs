//! `barista-bench writes`: live writes at service rates against bulk indexing, in one run.
//!
//! A real `barista serve` on loopback takes 10,000 single-document upserts over REST into the
//! SciFact index — the 5,183 abstracts written again (replacing themselves) interleaved with
//! 4,817 sentence passages — from 1 client, then (on a fresh copy of the index) from 4
//! concurrent clients. The anchor is `barista index` bulk-indexing the same 10,000 texts.
//! Afterwards the live index is compared with the bulk-built one: segments, search latency
//! (balanced and exact) and whether the exact top-10s are identical.

use crate::cascade_bench::sentence_corpus;
use anyhow::{Context, Result, bail};
use barista_bench::indexing::engine_documents;
use barista_bench::stats::Latency;
use barista_datasets::DataSet;
use barista_engine::Document;
use serde::Serialize;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `barista-bench writes`.
#[derive(clap::Args)]
pub struct WritesArgs {
    /// Model folder (or Hugging Face id).
    #[arg(long, default_value = "../shared/models/minilm-l6-2d")]
    model: String,
    /// BEIR SciFact folder.
    #[arg(long, default_value = "../shared/datasets/scifact")]
    dataset: PathBuf,
    /// The `barista` binary (default: the one beside this benchmark's binary).
    #[arg(long)]
    barista: Option<PathBuf>,
    /// Upserts per pass.
    #[arg(long, default_value_t = 10_000)]
    upserts: usize,
    /// Concurrent clients of the second pass.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Pass {
    clients: usize,
    upserts: usize,
    seconds: f64,
    documents_per_second: f64,
    ratio_to_bulk: f64,
    upsert_latency: Latency,
    /// Segments (committed + in memory) right after the last acknowledgement, and once the
    /// background flush (by age) and merges have run.
    segments_after_writes: usize,
    segments_settled: usize,
    seconds_to_settle: f64,
    group_commits: u64,
    flushes: u64,
    merges: u64,
}

#[derive(Serialize)]
struct SearchComparison {
    profile: String,
    /// The engine's own search time (`timings.total_ms`), per query.
    live_ms: Latency,
    bulk_ms: Latency,
    ratio: f64,
}

#[derive(Serialize)]
struct Report {
    base_documents: usize,
    upserts: usize,
    bulk_documents_per_second: f64,
    bulk_seconds: f64,
    passes: Vec<Pass>,
    bulk_segments: usize,
    search_as_written: Vec<SearchComparison>,
    search_settled: Vec<SearchComparison>,
    queries: usize,
    /// Queries whose exact top-10 ids (in order) equal the bulk-built index's: as written, settled.
    identical_exact_top10: (usize, usize),
}

/// A `barista serve` child on a free loopback port.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(barista: &Path, index: &Path) -> Result<Server> {
        let mut child = Command::new(barista)
            .args(["serve", "--index", &index.to_string_lossy(), "--addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", barista.display()))?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.to_string());
                } else if !line.contains("listening") {
                    eprintln!("  server: {line}");
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(120)).context("the server did not start")?;
        Ok(Server { child, base })
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = ureq::post(&format!("{}{path}", self.base))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
            .map_err(|e| anyhow::anyhow!("POST {path}: {e}"))?;
        Ok(serde_json::from_str(&response.into_string()?)?)
    }

    fn stats(&self) -> Result<Value> {
        let response =
            ureq::get(&format!("{}/stats", self.base)).call().map_err(|e| anyhow::anyhow!("GET /stats: {e}"))?;
        Ok(serde_json::from_str(&response.into_string()?)?)
    }

    fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_jsonl(path: &Path, docs: &[Document]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for d in docs {
        writeln!(out, "{}", serde_json::to_string(d)?)?;
    }
    out.flush()?;
    Ok(())
}

/// Runs `barista index`; returns the documents/s it reports and its seconds.
fn bulk_index(barista: &Path, model: &str, input: &Path, out: &Path) -> Result<(f64, f64)> {
    let output = Command::new(barista)
        .args(["index", "--model", model, "--input", &input.to_string_lossy(), "--out", &out.to_string_lossy()])
        .stdout(Stdio::null())
        .output()
        .context("running barista index")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("barista index failed: {stderr}");
    }
    // "indexed N documents in S s (R documents/s): …"
    let line = stderr.lines().find(|l| l.starts_with("indexed ")).context("barista index reported no rate")?;
    let seconds: f64 =
        line.split(" in ").nth(1).and_then(|r| r.split(' ').next()).and_then(|s| s.parse().ok()).context("seconds")?;
    let rate: f64 =
        line.split('(').nth(1).and_then(|r| r.split(' ').next()).and_then(|s| s.parse().ok()).context("rate")?;
    Ok((rate, seconds))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn segment_count(stats: &Value) -> usize {
    stats["segments"].as_array().map_or(0, Vec::len)
}

/// Upserts `docs` one per request from `clients` threads; returns seconds and per-request times.
fn upsert_all(server: &Server, docs: &[Document], clients: usize) -> Result<(f64, Vec<Duration>)> {
    let next = AtomicUsize::new(0);
    let times = Mutex::new(Vec::with_capacity(docs.len()));
    let failure = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(doc) = docs.get(i) else { break };
                    let t = Instant::now();
                    match server.post("/documents", &json!({ "documents": [doc] })) {
                        Ok(_) => times.lock().unwrap_or_else(|e| e.into_inner()).push(t.elapsed()),
                        Err(e) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok((start.elapsed().as_secs_f64(), times.into_inner().unwrap_or_else(|e| e.into_inner())))
}

/// Every query through `profile`: (engine search ms per query, top-10 ids per query).
fn search_all(server: &Server, queries: &[String], profile: &str) -> Result<(Vec<Duration>, Vec<Vec<String>>)> {
    let mut times = Vec::with_capacity(queries.len());
    let mut ids = Vec::with_capacity(queries.len());
    for warm in [true, false] {
        for q in queries {
            let r = server.post("/search", &json!({"query": q, "k": 10, "profile": profile}))?;
            if !warm {
                times.push(Duration::from_secs_f64(r["timings"]["total_ms"].as_f64().unwrap_or(0.0) / 1e3));
                ids.push(r["hits"].as_array().map_or(Vec::new(), |h| {
                    h.iter().map(|h| h["id"].as_str().unwrap_or_default().to_string()).collect()
                }));
            }
        }
    }
    Ok((times, ids))
}

fn compare(live: &Server, bulk: &Server, queries: &[String]) -> Result<(Vec<SearchComparison>, usize)> {
    let mut rows = Vec::new();
    let mut identical = 0;
    for profile in ["balanced", "exact"] {
        let (mut live_t, live_ids) = search_all(live, queries, profile)?;
        let (mut bulk_t, bulk_ids) = search_all(bulk, queries, profile)?;
        let (live_ms, bulk_ms) = (Latency::of(&mut live_t), Latency::of(&mut bulk_t));
        if profile == "exact" {
            identical = live_ids.iter().zip(&bulk_ids).filter(|(a, b)| a == b).count();
        }
        rows.push(SearchComparison {
            profile: profile.into(),
            ratio: live_ms.p50_ms / bulk_ms.p50_ms,
            live_ms,
            bulk_ms,
        });
    }
    Ok((rows, identical))
}

pub fn run(args: &WritesArgs) -> Result<()> {
    let barista = match &args.barista {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("barista"),
    };
    if !barista.exists() {
        bail!(
            "{} does not exist: build it (cargo build --release -p barista-api) or pass --barista",
            barista.display()
        );
    }
    let temp;
    let dir: &Path = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path()
        }
    };
    let data = DataSet::detect(&args.dataset)?;
    let abstracts: Vec<Document> =
        engine_documents(&data, &barista_datasets::Reading::strict())?.collect::<Result<_>>()?;
    let sentences: Vec<Document> = sentence_corpus(&data)?
        .into_iter()
        .filter(|d| d.id.contains('#'))
        .take(args.upserts.saturating_sub(abstracts.len()))
        .collect();
    // The upserts: every abstract again, and sentences, interleaved.
    let mut upserts = Vec::with_capacity(args.upserts);
    let (mut a, mut s) = (abstracts.iter().take(args.upserts), sentences.iter());
    while upserts.len() < args.upserts {
        match (a.next(), s.next()) {
            (None, None) => break,
            (x, y) => upserts.extend(x.into_iter().chain(y).cloned()),
        }
    }
    let queries: Vec<String> =
        data.judged_queries("test", &barista_datasets::Reading::strict())?.0.into_iter().map(|q| q.text).collect();
    eprintln!("{} base documents, {} upserts, {} queries", abstracts.len(), upserts.len(), queries.len());

    // The base index, and the anchor: bulk indexing of the same texts the upserts write.
    let base = dir.join("base.idx");
    if !base.join("MANIFEST").exists() {
        write_jsonl(&dir.join("base.jsonl"), &abstracts)?;
        eprintln!("building the base index…");
        bulk_index(&barista, &args.model, &dir.join("base.jsonl"), &base)?;
    }
    write_jsonl(&dir.join("upserts.jsonl"), &upserts)?;
    let anchor = dir.join("anchor.idx");
    let _ = std::fs::remove_dir_all(&anchor);
    eprintln!("bulk-indexing the {} upsert texts (the anchor)…", upserts.len());
    let (bulk_rate, bulk_seconds) = bulk_index(&barista, &args.model, &dir.join("upserts.jsonl"), &anchor)?;
    eprintln!("bulk: {bulk_rate:.1} documents/s");
    // What the live index holds in the end (base documents not rewritten, then the upserts),
    // built in bulk, to compare searches with.
    let rewritten: std::collections::HashSet<&str> = upserts.iter().map(|d| d.id.as_str()).collect();
    let kept: Vec<Document> = abstracts.iter().filter(|d| !rewritten.contains(d.id.as_str())).cloned().collect();
    let bulk = if kept.is_empty() {
        anchor.clone()
    } else {
        let all: Vec<Document> = kept.into_iter().chain(upserts.iter().cloned()).collect();
        write_jsonl(&dir.join("final.jsonl"), &all)?;
        let bulk = dir.join("final.idx");
        let _ = std::fs::remove_dir_all(&bulk);
        bulk_index(&barista, &args.model, &dir.join("final.jsonl"), &bulk)?;
        bulk
    };

    let bulk_server = Server::start(&barista, &bulk)?;
    let bulk_segments = segment_count(&bulk_server.stats()?);
    let mut passes = Vec::new();
    let (mut search_as_written, mut search_settled, mut identical) = (Vec::new(), Vec::new(), (0, 0));
    for clients in [1, args.clients] {
        let live = dir.join(format!("live-{clients}.idx"));
        let _ = std::fs::remove_dir_all(&live);
        copy_dir(&base, &live)?;
        let server = Server::start(&barista, &live)?;
        eprintln!("{} upserts from {clients} client(s)…", upserts.len());
        let (seconds, mut times) = upsert_all(&server, &upserts, clients)?;
        let after = server.stats()?;
        let last = clients == args.clients;
        if last {
            // Searches at once, with the last writes still in the mutable segment.
            let (rows, same) = compare(&server, &bulk_server, &queries)?;
            search_as_written = rows;
            identical.0 = same;
        }
        let settle = Instant::now();
        loop {
            let s = server.stats()?;
            let w = &s["writer"];
            let idle = s["segments"].as_array().is_some_and(|segs| segs.iter().all(|x| x["in_memory"] == false))
                && w["flushes_waiting"] == 0
                && w["merges_running"] == 0;
            if idle || settle.elapsed() > Duration::from_secs(300) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let seconds_to_settle = settle.elapsed().as_secs_f64();
        let settled = server.stats()?;
        if last {
            let (rows, same) = compare(&server, &bulk_server, &queries)?;
            search_settled = rows;
            identical.1 = same;
        }
        let w = &settled["writer"];
        let rate = upserts.len() as f64 / seconds;
        eprintln!("{clients} client(s): {rate:.1} documents/s ({:.2}× bulk)", rate / bulk_rate);
        passes.push(Pass {
            clients,
            upserts: upserts.len(),
            seconds,
            documents_per_second: rate,
            ratio_to_bulk: rate / bulk_rate,
            upsert_latency: Latency::of(&mut times),
            segments_after_writes: segment_count(&after),
            segments_settled: segment_count(&settled),
            seconds_to_settle,
            group_commits: w["group_commits"].as_u64().unwrap_or(0),
            flushes: w["flushes"].as_u64().unwrap_or(0),
            merges: w["merges"].as_u64().unwrap_or(0),
        });
        server.stop()?;
    }
    bulk_server.stop()?;

    let report = Report {
        base_documents: abstracts.len(),
        upserts: upserts.len(),
        bulk_documents_per_second: bulk_rate,
        bulk_seconds,
        passes,
        bulk_segments,
        search_as_written,
        search_settled,
        queries: queries.len(),
        identical_exact_top10: identical,
    };
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!("\n### {} single-document upserts over REST into SciFact ({} documents)\n", r.upserts, r.base_documents);
    println!(
        "Anchor: `barista index` of the same {} texts: {:.1} documents/s ({:.1} s).\n",
        r.upserts, r.bulk_documents_per_second, r.bulk_seconds
    );
    println!(
        "| clients | documents/s | × bulk | upsert p50 ms | p99 ms | group commits | flushes | merges | segments after | settled (s) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for p in &r.passes {
        println!(
            "| {} | {:.1} | {:.2} | {:.1} | {:.1} | {} | {} | {} | {} → {} | {:.1} |",
            p.clients,
            p.documents_per_second,
            p.ratio_to_bulk,
            p.upsert_latency.p50_ms,
            p.upsert_latency.p99_ms,
            p.group_commits,
            p.flushes,
            p.merges,
            p.segments_after_writes,
            p.segments_settled,
            p.seconds_to_settle
        );
    }
    println!(
        "\nSearch ({} test queries, engine time p50) against the bulk-built index ({} segment(s)):\n",
        r.queries, r.bulk_segments
    );
    println!("| state | profile | live p50 ms | bulk p50 ms | ratio |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (state, rows) in [("as written", &r.search_as_written), ("settled", &r.search_settled)] {
        for c in rows {
            println!(
                "| {state} | {} | {:.3} | {:.3} | {:.2} |",
                c.profile, c.live_ms.p50_ms, c.bulk_ms.p50_ms, c.ratio
            );
        }
    }
    println!(
        "\nIdentical exact top-10 (ids in order): {} of {} queries as written, {} of {} settled.",
        r.identical_exact_top10.0, r.queries, r.identical_exact_top10.1, r.queries
    );
}
