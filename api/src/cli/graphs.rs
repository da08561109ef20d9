//! `barista graphs`: choose the rungs that carry HNSW graphs, and build them.

use super::open_args::{OpenArgs, WriterArgs};
use super::progress::Progress;
use anyhow::Result;
use barista_engine::Rung;
use std::time::Instant;

pub const EXAMPLES: &str = "\
Examples:
  barista graphs --index msmarco.idx --rung 3,96
  barista graphs --index msmarco.idx --rung 3,96 --rung 5,256

Sets the rungs that carry HNSW graphs to exactly those given: graphs on other rungs are
dropped, and every segment large enough for a graph gets one on each rung named that it lacks,
built from the vectors already stored (nothing is encoded again). Searches go on meanwhile;
a segment without its graph is scanned. The profiles shortlist through the smallest graph rung
(`barista info` shows them). Like compact, it takes the index's writer: stop a server writing
the same index first.";

/// Arguments of `barista graphs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    #[command(flatten)]
    writer: WriterArgs,
    /// A rung to carry a graph (repeatable): exactly these rungs will have graphs.
    #[arg(long, value_name = "LAYER,DIM", required = true)]
    rung: Vec<Rung>,
}

pub fn run(args: Args) -> Result<()> {
    let engine = args.open.open_writer(args.writer.options()?)?;
    let start = Instant::now();
    let bar = Progress::new(None, "graph");
    let built = engine.set_graph_rungs(&args.rung, &|_, done, total| bar.set(done as u64, total as u64))?;
    bar.finish();
    let rungs: Vec<String> = engine.shape().graph_rungs.iter().map(Rung::to_string).collect();
    eprintln!("graphs on {}: built for {built} segment(s) in {:.1} s", rungs.join(" "), start.elapsed().as_secs_f64());
    Ok(())
}
