//! `barista calibrate`: fit adaptive-stopping thresholds on training queries.

use super::open_args::OpenArgs;
use anyhow::{Context, Result};
use std::path::PathBuf;

pub const EXAMPLES: &str = "\
Example:
  barista calibrate --index scifact.idx --queries ../shared/datasets/scifact/queries.jsonl \\
      --qrels ../shared/datasets/scifact/qrels/train.tsv --target 0.99";

/// Arguments of `barista calibrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    /// Training queries (BEIR queries.jsonl).
    #[arg(long)]
    queries: PathBuf,
    /// Their relevance judgements (BEIR qrels TSV); only judged queries are used.
    #[arg(long)]
    qrels: PathBuf,
    /// The profile to calibrate.
    #[arg(long, default_value = "balanced")]
    profile: String,
    /// Share of the full cascade's nDCG@10 to keep on the training queries.
    #[arg(long, default_value_t = 0.99)]
    target: f64,
}

pub fn run(args: Args) -> Result<()> {
    let engine = args.open.open()?;
    let queries = barista_datasets::beir::read_queries(&args.queries)?;
    let qrels = barista_datasets::beir::read_qrels(&args.qrels)?;
    let pairs: Vec<(String, String)> = queries.into_iter().map(|q| (q.id, q.text)).collect();
    let rule = engine.calibrate(&args.profile, &pairs, &qrels, args.target).context("calibration failed")?;
    println!("{}", serde_json::to_string_pretty(&rule)?);
    eprintln!(
        "calibrated {} on {} queries: nDCG@10 {:.4} (full cascade {:.4}), mean layers {:.2} of {}; stored in the index",
        args.profile,
        rule.queries,
        rule.ndcg,
        rule.full_ndcg,
        rule.mean_layers,
        rule.plan.stages.last().map_or(0, |s| s.rung.layer)
    );
    Ok(())
}
