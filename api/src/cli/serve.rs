//! `barista serve`: the REST API over an index.

use super::open_args::{OpenArgs, WriterArgs};
use crate::server::{Keys, Limits, ServerOptions, serve};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Examples:
  barista serve --index scifact.idx --addr 127.0.0.1:8080
  BARISTA_WRITE_KEY=s3cret barista serve --index scifact.idx --config barista.toml

Configuration comes from flags, then BARISTA_* environment variables, then the TOML file given
with --config, then defaults. The file may hold:

  [server]
  addr = \"0.0.0.0:8080\"
  read_key = \"…\"            # optional: required for searches and reads
  write_key = \"…\"           # optional: required for writes (also grants reads)
  search_threads = 2
  write_threads = 2
  queue = 64
  [server.limits]
  max_body_bytes = 16777216
  max_query_bytes = 16384
  max_batch = 1000
  max_k = 1000

With any key configured, writes need the write key: with only a read key, the server takes
no writes at all. With only a write key, reads are open.

Routes: POST /search, POST /documents, GET|DELETE /documents/{id}, GET /stats,
POST /admin/compact, GET /health, /ready, /metrics, /openapi.json; embeddings:
POST /v1/embeddings, GET /v1/models (OpenAI), POST /embed (TEI).

Writes are acknowledged once they are synced in the index's write-ahead log (concurrent
writes share one sync) and are searchable at once; a background thread flushes them into
segments (--flush-docs, --flush-age) and another merges segments (--merge-factor).

The port is bound before the index opens (a port in use fails without touching the index);
connections made while it opens (replaying the log) wait until it serves. Index files are
memory-mapped; graphs and the blocks they walk are advised random access
(BARISTA_MMAP_ADVICE=normal turns that off).";

/// Arguments of `barista serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    #[command(flatten)]
    writer: WriterArgs,
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long, env = "BARISTA_ADDR")]
    addr: Option<SocketAddr>,
    /// A TOML configuration file (see below).
    #[arg(long, env = "BARISTA_CONFIG")]
    config: Option<PathBuf>,
    /// API key required for searches and reads (alone, without --write-key, it also turns
    /// writes off: a read key never writes).
    #[arg(long, env = "BARISTA_READ_KEY", hide_env_values = true)]
    read_key: Option<String>,
    /// API key required for writes (it also grants reads).
    #[arg(long, env = "BARISTA_WRITE_KEY", hide_env_values = true)]
    write_key: Option<String>,
    /// Threads running searches and reads (default: the number of cores).
    #[arg(long)]
    search_threads: Option<usize>,
    /// Threads encoding documents of writes (default: the number of cores).
    #[arg(long)]
    write_threads: Option<usize>,
    /// Requests that may wait for a thread before the server answers 503 (default 64).
    #[arg(long)]
    queue: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Longest query text in bytes.
    #[arg(long)]
    max_query_bytes: Option<usize>,
    /// Most documents in one POST /documents.
    #[arg(long)]
    max_batch: Option<usize>,
    /// Largest k.
    #[arg(long)]
    max_k: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    server: ServerSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    addr: Option<SocketAddr>,
    read_key: Option<String>,
    write_key: Option<String>,
    search_threads: Option<usize>,
    write_threads: Option<usize>,
    queue: Option<usize>,
    #[serde(default)]
    limits: Option<Limits>,
}

impl Args {
    /// Flags and environment over the file over defaults.
    fn options(&self) -> Result<ServerOptions> {
        let file: ConfigFile = match &self.config {
            None => ConfigFile::default(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid Barista configuration", path.display()))?
            }
        };
        let s = file.server;
        let mut limits = s.limits.unwrap_or_default();
        if let Some(v) = self.max_body_bytes {
            limits.max_body_bytes = v;
        }
        if let Some(v) = self.max_query_bytes {
            limits.max_query_bytes = v;
        }
        if let Some(v) = self.max_batch {
            limits.max_batch = v;
        }
        if let Some(v) = self.max_k {
            limits.max_k = v;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(ServerOptions {
            addr: self.addr.or(s.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            keys: Keys { read: self.read_key.clone().or(s.read_key), write: self.write_key.clone().or(s.write_key) },
            limits,
            search_threads: self.search_threads.or(s.search_threads).unwrap_or(cores).max(1),
            write_threads: self.write_threads.or(s.write_threads).unwrap_or(cores).max(1),
            queue: self.queue.or(s.queue).unwrap_or(64).max(1),
        })
    }
}

pub fn run(args: Args) -> Result<()> {
    let options = args.options()?;
    options
        .keys
        .validate()
        .map_err(|e| anyhow::anyhow!("{e} (--read-key / --write-key, BARISTA_*_KEY, or the config file)"))?;
    // The port first: a refused bind leaves the index untouched (opening the writer renames
    // the write-ahead log).
    let listener = crate::server::bind(options.addr)?;
    let engine = args.open.open_writer(args.writer.options()?)?;
    if let Some(cut) = engine.stats().writer.and_then(|w| w.recovery.cut) {
        eprintln!("barista: recovering the write-ahead log: {cut}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("barista-http")
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(serve(engine, options, listener, shutdown_signal()))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    eprintln!("barista: shutting down: finishing the requests in flight");
}
