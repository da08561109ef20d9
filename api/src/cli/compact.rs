//! `barista compact`: merge an index's segments into one (segments of at most a million
//! documents past that size), dropping deleted documents.

use super::open_args::{OpenArgs, WriterArgs};
use super::progress::Progress;
use anyhow::Result;
use std::time::Instant;

pub const EXAMPLES: &str = "\
Examples:
  barista compact --index scifact.idx

Writes the documents written since the last flush into a segment, then merges every segment
into one without the deleted documents (a server does this gradually, in the background; this
is the full merge). Past 1,000,000 live documents (the merge policy's cap) it merges into
segments of at most that size instead, so that its memory stays bounded (about 6 GB for a
million documents of the shared model's ladder; 6.1 GB measured) however large the index. A
segment already larger (written in bulk past the cap) stays as it is, rewritten on its own
only to drop its deletions. It takes the index's writer: stop a server writing the same index
first, or use its route POST /admin/compact instead.";

/// Arguments of `barista compact`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    #[command(flatten)]
    writer: WriterArgs,
}

pub fn run(args: Args) -> Result<()> {
    let engine = args.open.open_writer(args.writer.options()?)?;
    let before = engine.stats();
    let start = Instant::now();
    let bar = Progress::new(None, "graph");
    engine.compact(&|_, done, total| bar.set(done as u64, total as u64))?;
    bar.finish();
    let after = engine.stats();
    let ids = |stats: &barista_engine::IndexStats| stats.segments.iter().map(|s| s.id).collect::<Vec<_>>();
    if ids(&after) == ids(&before) {
        eprintln!(
            "nothing to compact: {} segment(s) holding {} documents, none deleted: no segment rewritten",
            after.segments.len(),
            after.documents
        );
        return Ok(());
    }
    eprintln!(
        "compacted {} segment(s) holding {} documents ({} deleted) into {} segment(s) holding {} in {:.1} s",
        before.segments.len(),
        before.documents,
        before.deleted,
        after.segments.len(),
        after.documents,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
