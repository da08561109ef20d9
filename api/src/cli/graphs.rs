//! `barista graphs`: choose the rungs that carry HNSW graphs (by name, or by measuring sample
//! queries), and build them.

use super::open_args::{OpenArgs, WriterArgs};
use super::progress::Progress;
use anyhow::{Context, Result, bail};
use barista_engine::search::graph_rung::DEPTHS;
use barista_engine::{Rung, choose_graph_rung};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const EXAMPLES: &str = "\
Examples:
  barista graphs --index msmarco.idx
  barista graphs --index msmarco.idx --rung 3,96
  barista graphs --index msmarco.idx --rung 3,96 --rung 5,256
  barista graphs --index msmarco.idx --choose-from queries.jsonl --shortlist 1000 --target 0.95

Without --rung or --choose-from it keeps the graph rungs and builds what segments lack: a
graph missing, or found damaged (it is verified first; `barista info --verify` reports
damage), built again from the stored rows. With --rung it sets the rungs that carry HNSW
graphs to exactly those given: graphs on other rungs are dropped (and named), and every
segment large enough for a graph gets one on each rung named that it lacks, built from the
vectors already stored (nothing is encoded again). A graph written by an earlier Barista
without the i8 copy of its rows that the walk scores gets one, its links kept (counted as
built). When there is nothing to do it changes nothing on disk. Searches go on meanwhile;
a segment without its graph is scanned. The profiles shortlist through the smallest graph rung
(`barista info` shows them). Like compact, it takes the index's writer: stop a server writing
the same index first.

--choose-from measures instead of naming: for sample queries (a BEIR queries.jsonl, or a text
file with one query per line), how much of the final top 10 (the exhaustive search at the
largest rung) each rung's own exhaustive top N holds. A smaller rung qualifies when its top N
(N = --shortlist, the walk's candidates) keeps --target of it; the largest rung always does,
with a walk of 100 candidates for the top 10 itself. The graph goes on the qualifying rung
whose walk reads the fewest bytes (candidates × dimensions, one byte each in the i8 copy it
walks; rescoring the shortlist at the larger rungs comes on top for a smaller rung, so the
estimate favours it). Set --shortlist to
what your profile walks (`balanced` 1,000, `fast` 300): it models the choice only. Measuring
costs one exhaustive scan of every rung per query (about 0.07 s per query at a million
documents).";

/// Arguments of `barista graphs`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("choice").args(["rung", "choose_from"])))]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    #[command(flatten)]
    writer: WriterArgs,
    /// A rung to carry a graph (repeatable): exactly these rungs will have graphs [default:
    /// the rungs that have them now].
    #[arg(long, value_name = "LAYER,DIM")]
    rung: Vec<Rung>,
    /// Choose the graph rung by measurement on these sample queries (BEIR queries.jsonl, or
    /// one query per line).
    #[arg(long, value_name = "FILE")]
    choose_from: Option<PathBuf>,
    /// With --choose-from: the candidates a walk on a smaller rung must return, as the profile
    /// you will search with walks them (`balanced` 1,000, `fast` 300); it models the choice
    /// only and does not change the profiles [default: 1000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(10..=100_000))]
    shortlist: Option<u32>,
    /// With --choose-from: the share of the final top 10 the rung's shortlist must keep
    /// [default: 0.95].
    #[arg(long, value_name = "SHARE", value_parser = share)]
    target: Option<f64>,
    /// With --choose-from: measure at most this many queries (the file's first) [default: 300].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    sample: Option<u32>,
    /// With --choose-from: print the measurement and the choice, build nothing.
    #[arg(long)]
    dry_run: bool,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' is not a share between 0 and 1 (for example 0.95)")),
    }
}

/// Sample query texts: a BEIR queries.jsonl (`{"_id", "text"}` per line) or one query per line.
fn read_queries(path: &Path, limit: usize) -> Result<Vec<String>> {
    let is_jsonl = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let texts: Vec<String> = if is_jsonl {
        let reading = barista_datasets::Reading::tolerant();
        let queries = barista_datasets::beir::read_queries(path, &reading)?;
        if let Some(summary) = reading.summary() {
            eprintln!("warning: {summary}");
        }
        queries.into_iter().map(|q| q.text).collect()
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the sample queries {}", path.display()))?
            .lines()
            .map(str::to_string)
            .collect()
    };
    let texts: Vec<String> = texts.into_iter().filter(|t| !t.trim().is_empty()).take(limit).collect();
    if texts.is_empty() {
        bail!("{} holds no query text to measure with", path.display());
    }
    Ok(texts)
}

pub fn run(args: Args) -> Result<()> {
    let measuring = [args.shortlist.is_some(), args.target.is_some(), args.sample.is_some(), args.dry_run];
    if args.choose_from.is_none() && measuring.contains(&true) {
        bail!(
            "--shortlist, --target, --sample and --dry-run go with --choose-from: with --rung the rungs are \
             named and built, nothing is measured"
        );
    }
    let rungs = match &args.choose_from {
        None => {
            // Checked before the writer is taken: taking it recovers and renumbers the log.
            // Opening verifies the graphs (a damaged one is work to do).
            let engine = args.open.open()?;
            let snapshot = engine.index().snapshot();
            let current = engine.shape().graph_rungs;
            let rungs = if args.rung.is_empty() { current.clone() } else { args.rung.clone() };
            if rungs.is_empty() {
                bail!("the index has no graph rungs: name one with --rung LAYER,DIM (`barista info` lists the rungs)");
            }
            let mut wanted = engine.graph_rung_positions(&rungs)?;
            wanted.sort_unstable();
            wanted.dedup();
            if snapshot.config().graph.rungs == wanted && snapshot.segments_lacking_graphs() == 0 {
                eprintln!(
                    "graphs on {}: every segment that should have them has them and none is damaged; nothing to do",
                    names(&current)
                );
                return Ok(());
            }
            rungs
        }
        Some(path) => {
            let queries = read_queries(path, args.sample.unwrap_or(300) as usize)?;
            let target = args.target.unwrap_or(0.95);
            // Measuring reads the index only: the writer is taken after, to build.
            let engine = args.open.open()?;
            let depth = args.shortlist.unwrap_or(1000) as usize;
            let documents = engine.index().snapshot().len();
            if documents <= depth as u64 {
                eprintln!(
                    "warning: the index holds {documents} documents, no more than the shortlist of {depth}: every \
                     rung keeps the whole final top 10 at that depth, so the choice below says nothing about a \
                     larger collection; measure on one, or pass a smaller --shortlist"
                );
            }
            let mut depths: Vec<usize> = DEPTHS.to_vec();
            if !depths.contains(&depth) {
                depths.push(depth);
                depths.sort_unstable();
            }
            let bar = Progress::new(Some(queries.len() as u64), "measuring rungs");
            let rows = engine.rung_quality(&queries, &depths, &|done, _| bar.set(done as u64, queries.len() as u64))?;
            bar.finish();
            let header: Vec<String> = depths.iter().map(|d| format!("top {d}")).collect();
            println!("final top 10 kept by each rung's exhaustive shortlist ({} queries):", queries.len());
            println!(
                "{:<10} {:>9} {}",
                "rung",
                "bytes/row",
                header.iter().map(|h| format!("{h:>9}")).collect::<String>()
            );
            for row in &rows {
                let cells: String = row.kept.iter().map(|(_, s)| format!("{s:>9.3}")).collect();
                println!("{:<10} {:>9} {cells}", row.rung.to_string(), row.row_bytes);
            }
            let chosen = choose_graph_rung(&rows, depth, target).context("no rung was measured")?;
            println!(
                "graph rung: {chosen} (of the rungs whose top {depth} keeps ≥ {} of the final top 10, and the \
                 largest, the one whose walk reads the fewest bytes)",
                target
            );
            if args.dry_run {
                return Ok(());
            }
            drop(engine);
            vec![chosen]
        }
    };
    let start = Instant::now();
    // The read-only open above named any damaged graph.
    let engine = args.open.open_writer_quietly(args.writer.options()?)?;
    let had = engine.shape().graph_rungs;
    let bar = Progress::new(None, "graph");
    engine.set_graph_rungs(&rungs, &|_, done, total| bar.set(done as u64, total as u64))?;
    bar.finish();
    // Counted by the writer, not from the call's return: its background builder may have
    // built a graph first.
    let built = engine.stats().writer.map_or(0, |w| w.graph_builds);
    let now = engine.shape().graph_rungs;
    let dropped: Vec<Rung> = had.iter().filter(|r| !now.contains(r)).copied().collect();
    let dropped = match dropped.is_empty() {
        true => String::new(),
        false => format!("; dropped the graphs on {}", names(&dropped)),
    };
    eprintln!(
        "graphs on {}: built for {built} segment(s) in {:.1} s{dropped}",
        names(&now),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn names(rungs: &[Rung]) -> String {
    rungs.iter().map(Rung::to_string).collect::<Vec<_>>().join(" ")
}
