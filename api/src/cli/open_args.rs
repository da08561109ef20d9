//! The flags of commands that open an existing index.

use anyhow::{Context, Result};
use barista_engine::{EncoderOptions, Engine, OpenOptions};
use std::path::PathBuf;

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

impl OpenArgs {
    /// Opens the index and its model.
    pub fn open(&self) -> Result<Engine> {
        let options = OpenOptions {
            model: self.model.clone(),
            encoder: EncoderOptions { threads: self.threads, query_threads: self.query_threads, ..Default::default() },
            lazy_graphs: false,
        };
        Engine::open(&self.index, &options)
            .with_context(|| format!("could not open the index {}", self.index.display()))
    }
}
