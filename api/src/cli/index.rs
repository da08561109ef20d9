//! `barista index`: build an index from a corpus.

use super::input::{self, Format};
use super::model_args::ModelArgs;
use super::progress::Progress;
use anyhow::{Context, Result, bail};
use barista_engine::{CreateOptions, Document, Engine, OpenOptions, Rung};
use barista_index::ElementType;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub const EXAMPLES: &str = "\
Examples:
  barista index --model ../shared/models/minilm-l6-2d --input ../shared/datasets/scifact --format beir --out scifact.idx
  barista index --model ielabgroup/Starbucks-msmarco --input docs.jsonl --out docs.idx --store f32";

/// Arguments of `barista index`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The documents: a JSONL file, or a BEIR corpus.jsonl / data set folder.
    #[arg(long)]
    input: PathBuf,
    /// Input format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Directory of the new index.
    #[arg(long)]
    out: PathBuf,
    /// Element type of the largest rung's block (final scores, the exact profile): f32, f16, i8.
    #[arg(long, default_value = "f16")]
    store: ElementType,
    /// Element type of the smaller rungs' blocks (shortlists and rescoring): f32, f16, i8.
    #[arg(long, default_value = "i8")]
    store_coarse: ElementType,
    /// Rung an HNSW graph is built on (repeatable; default: the largest rung; `barista graphs
    /// --choose-from` measures which rung pays for your model and queries).
    #[arg(long, value_name = "LAYER,DIM")]
    graph_rung: Vec<Rung>,
    /// Segments with fewer documents get no HNSW graph (they are scanned, which below this
    /// size costs about what a graph walk does).
    #[arg(long, default_value_t = barista_index::DEFAULT_GRAPH_MIN_DOCS)]
    graph_min_docs: u64,
    /// Documents encoded per batch.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Commit (one segment) every this many documents.
    #[arg(long, default_value_t = 200_000)]
    commit_every: usize,
    /// Continue an index that an earlier run (interrupted, or over part of the input) began:
    /// documents whose id is already in the index are skipped.
    #[arg(long)]
    resume: bool,
    /// Stop at the first input line that is not valid as it is (invalid UTF-8, a lone UTF-16
    /// surrogate escape, malformed JSON, a document breaking the rules). Without it such
    /// lines are repaired (U+FFFD) or skipped, and a warning names them.
    #[arg(long)]
    strict: bool,
}

pub fn run(args: Args) -> Result<()> {
    let folder_existed = args.out.exists();
    let exists = args.out.join("MANIFEST").exists();
    let result = build(&args, exists);
    if result.is_err() && !exists {
        // A new index that never committed anything: leave no trace of the failed run.
        let committed = barista_index::manifest::Manifest::read(&args.out).is_ok_and(|m| m.generation > 0);
        if !committed {
            remove_new_index(&args.out, folder_existed);
        }
    }
    result
}

/// Removes what a failed first run created in `out`: the folder, or only Barista's files when
/// the folder was there before.
fn remove_new_index(out: &std::path::Path, folder_existed: bool) {
    if !folder_existed {
        let _ = std::fs::remove_dir_all(out);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(out) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "MANIFEST" || name == "LOCK" || name.starts_with("wal-") || name.starts_with("seg-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn build(args: &Args, exists: bool) -> Result<()> {
    if exists && !args.resume {
        bail!(
            "{} already holds an index; pass --resume to add the documents of the input it does not have yet, \
             or choose another --out",
            args.out.display()
        );
    }
    let engine = if exists {
        let options = OpenOptions {
            model: Some(args.model.model.clone()),
            encoder: args.model.encoder_options(),
            lazy_graphs: true,
            ..OpenOptions::default()
        };
        Engine::open(&args.out, &options).context("could not reopen the index to resume it")?
    } else {
        let mut options = CreateOptions::new(args.model.model.clone());
        options.encoder = args.model.encoder_options();
        options.element = args.store;
        options.coarse_element = args.store_coarse;
        options.graph_rungs = args.graph_rung.clone();
        options.graph_min_docs = args.graph_min_docs;
        Engine::create(&args.out, &options).context("could not create the index")?
    };
    let reading = if args.strict { barista_datasets::Reading::strict() } else { barista_datasets::Reading::tolerant() };
    let docs = input::open(&args.input, args.format, &reading)?;
    let total = docs.total;
    // Ctrl-C: finish the batch in hand, commit what is staged, stop. A second Ctrl-C stops at
    // once; the index then holds what the last commit wrote.
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted twice: stopping now; the index keeps its last commit");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: committing what is encoded, then stopping (Ctrl-C again to stop at once)");
        });
    }
    let start = Instant::now();
    let bar = Progress::new(total, "encoding");
    let mut batch: Vec<Document> = Vec::with_capacity(args.batch);
    let mut staged = 0;
    let (mut count, mut skipped) = (0u64, 0u64);
    // Ids seen in this input (hashes), to report repeated ids: the last copy of each wins.
    let mut seen = std::collections::HashSet::new();
    let mut repeated: Vec<String> = Vec::new();
    let mut repeats = 0u64;
    let commit = |engine: &Engine| -> Result<()> {
        let graph = Progress::new(None, "graph");
        engine.commit_with(&|_, done, total| graph.set(done as u64, total as u64))?;
        graph.finish();
        Ok(())
    };
    let snapshot = engine.index().snapshot();
    for doc in docs {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        let doc = doc?;
        if !seen.insert(xxhash_rust::xxh3::xxh3_64(doc.id.as_bytes())) {
            repeats += 1;
            if repeated.len() < 5 {
                repeated.push(doc.id.clone());
            }
        }
        if exists && snapshot.lookup(&doc.id)?.is_some() {
            skipped += 1;
            bar.inc(1);
            continue;
        }
        batch.push(doc);
        if batch.len() == args.batch.max(1) {
            staged = engine.stage(&batch)?;
            count += batch.len() as u64;
            bar.inc(batch.len() as u64);
            batch.clear();
            if staged >= args.commit_every {
                commit(&engine)?;
                staged = 0;
            }
        }
    }
    if !batch.is_empty() {
        staged = engine.stage(&batch)?;
        count += batch.len() as u64;
        bar.inc(batch.len() as u64);
    }
    bar.finish();
    if staged > 0 || (count == 0 && !exists) {
        commit(&engine)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let snapshot = engine.index().snapshot();
    let resumed = if skipped > 0 { format!(" ({skipped} already indexed, skipped)") } else { String::new() };
    eprintln!(
        "indexed {count} documents{resumed} in {seconds:.1} s ({:.0} documents/s): {} live in {} segment(s) at {}",
        count as f64 / seconds,
        snapshot.len(),
        snapshot.segment_count(),
        args.out.display()
    );
    if repeats > 0 {
        eprintln!(
            "warning: {repeats} input documents repeat an id an earlier one has (for example {}); the last copy of \
             each id is the one indexed",
            repeated.iter().map(|id| format!("{id:?}")).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(summary) = reading.summary() {
        eprintln!("warning: {summary}");
    }
    if interrupted.load(Ordering::SeqCst) {
        eprintln!("stopped early: run the same command with --resume to index the rest");
    }
    Ok(())
}
