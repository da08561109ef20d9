//! The flags of commands that open an existing index.

use anyhow::{Context, Result};
use barista_engine::{EncoderOptions, Engine, OpenOptions};
use barista_index::{MergePolicy, WriterOptions};
use std::path::PathBuf;
use std::time::Duration;

/// Which index to open, and how.
#[derive(clap::Args, Debug)]
pub struct OpenArgs {
    /// The index directory.
    #[arg(long, env = "BARISTA_INDEX")]
    pub index: PathBuf,
    /// Load the index's model from here (it must be the same model; by default the location
    /// recorded at indexing time is used).
    #[arg(long)]
    pub model: Option<String>,
    /// Worker threads for batches of texts (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Threads that split one query (default: up to 2).
    #[arg(long)]
    pub query_threads: Option<usize>,
}

/// How a process that writes an index flushes and merges.
#[derive(clap::Args, Debug, Clone)]
pub struct WriterArgs {
    /// Documents the in-memory (mutable) segment holds before it is flushed to disk.
    #[arg(long, env = "BARISTA_FLUSH_DOCS", default_value_t = WriterOptions::default().flush_docs)]
    pub flush_docs: usize,
    /// Seconds after which the mutable segment, if it took writes, is flushed (bounds what a
    /// restart replays from the write-ahead log).
    #[arg(long, env = "BARISTA_FLUSH_AGE", default_value_t = WriterOptions::default().flush_age.as_secs_f64())]
    pub flush_age: f64,
    /// Segments of one size level merged at once (and the size ratio between levels).
    #[arg(long, env = "BARISTA_MERGE_FACTOR", default_value_t = MergePolicy::default().factor)]
    pub merge_factor: usize,
}

impl WriterArgs {
    /// The writer options these flags give.
    pub fn options(&self) -> Result<WriterOptions> {
        if !(self.flush_age.is_finite() && self.flush_age > 0.0) {
            anyhow::bail!("--flush-age must be a positive number of seconds, not {}", self.flush_age);
        }
        if self.flush_docs == 0 || self.merge_factor < 2 {
            anyhow::bail!("--flush-docs must be at least 1 and --merge-factor at least 2");
        }
        Ok(WriterOptions {
            flush_docs: self.flush_docs,
            flush_age: Duration::from_secs_f64(self.flush_age),
            merge: MergePolicy { factor: self.merge_factor, ..MergePolicy::default() },
            ..WriterOptions::default()
        })
    }
}

impl OpenArgs {
    fn options(&self) -> OpenOptions {
        OpenOptions {
            model: self.model.clone(),
            encoder: EncoderOptions { threads: self.threads, query_threads: self.query_threads, ..Default::default() },
            ..OpenOptions::default()
        }
    }

    /// Opens the index and its model, for reading (a writer is taken at the first write).
    /// Damaged graphs (verified as they load) are named on stderr: their segments are scanned.
    pub fn open(&self) -> Result<Engine> {
        let engine = Engine::open(&self.index, &self.options())
            .with_context(|| format!("could not open the index {}", self.index.display()))?;
        warn_damaged(&engine, &format!("`barista graphs --index {}` builds it again", self.index.display()));
        Ok(engine)
    }

    /// Opens the index and its model and takes the index's writer now: the write-ahead log is
    /// recovered, a crash's leftovers are removed and background flushes and merges start
    /// (building again any graph found damaged, which is named on stderr).
    pub fn open_writer(&self, writer: WriterOptions) -> Result<Engine> {
        let engine = self.open_writer_quietly(writer)?;
        warn_damaged(&engine, "this process builds it again now");
        Ok(engine)
    }

    /// [`OpenArgs::open_writer`] without naming damaged graphs (for a command that opened the
    /// index for reading first, and named them then).
    pub fn open_writer_quietly(&self, writer: WriterOptions) -> Result<Engine> {
        let options = OpenOptions { write: true, writer, ..self.options() };
        Engine::open(&self.index, &options)
            .with_context(|| format!("could not open the index {} for writing", self.index.display()))
    }
}

/// Names each damaged graph on stderr, with what will repair it.
fn warn_damaged(engine: &Engine, remedy: &str) {
    for damaged in engine.index().snapshot().damaged_graphs() {
        eprintln!("warning: {damaged}; {remedy}");
    }
}
