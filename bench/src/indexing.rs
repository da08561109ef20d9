//! Building a benchmark index from a stream of documents, or reusing one built before.

use anyhow::{Context, Result, bail};
use barista_engine::{CreateOptions, Document, Engine, OpenOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

/// A progress bar in the benchmarks' style (drawn on stderr, hidden when it is not a terminal).
pub fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Documents staged per batch while building.
const BATCH: usize = 2048;

/// Opens the index in `dir` when it holds exactly `total` documents made by `options.model`,
/// or builds it there from `documents` (one commit at the end, so an interrupted build leaves
/// an empty index that the next run reports rather than trusts).
pub fn build_or_open(
    dir: &Path,
    options: &CreateOptions,
    documents: impl Iterator<Item = Result<Document>>,
    total: usize,
) -> Result<Engine> {
    if dir.join("MANIFEST").exists() {
        let open = OpenOptions { model: Some(options.model.clone()), ..OpenOptions::default() };
        let engine = Engine::open(dir, &open).with_context(|| format!("opening the index in {}", dir.display()))?;
        let held = engine.index().snapshot().len();
        if held != total as u64 {
            bail!(
                "the index in {} holds {held} documents but the data set has {total}: it was built from other data \
                 or its build was interrupted; delete it or pass another --index folder",
                dir.display()
            );
        }
        eprintln!("reusing the index in {} ({held} documents)", dir.display());
        return Ok(engine);
    }
    let engine = Engine::create(dir, options).with_context(|| format!("creating an index in {}", dir.display()))?;
    let progress = bar(total as u64, "encoding");
    let mut batch = Vec::with_capacity(BATCH);
    for doc in documents {
        batch.push(doc?);
        if batch.len() == BATCH {
            engine.stage(&batch)?;
            progress.inc(batch.len() as u64);
            batch.clear();
        }
    }
    engine.stage(&batch)?;
    progress.finish_and_clear();
    let graph = bar(0, "graph");
    engine.commit_with(&|_, done, total| {
        graph.set_length(total as u64);
        graph.set_position(done as u64);
    })?;
    graph.finish_and_clear();
    Ok(engine)
}

/// The documents of a data set as engine documents (title kept apart, as BEIR does); lines
/// that cannot be taken as they are follow `reading`.
pub fn engine_documents(
    data: &barista_datasets::DataSet,
    reading: &barista_datasets::Reading,
) -> Result<impl Iterator<Item = Result<Document>> + use<>> {
    Ok(data.documents(reading)?.map(|d| {
        let d = d?;
        Ok(Document { id: d.id, title: Some(d.title).filter(|t| !t.trim().is_empty()), text: d.text, metadata: None })
    }))
}
