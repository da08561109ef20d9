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
    /// Stop at the first line of the queries or qrels that is not valid as it is (without it,
    /// such lines are repaired or skipped, and a warning names them).
    #[arg(long)]
    strict: bool,
    /// Keep hits whose document id is the query's id (by default they are left out before
    /// scoring, as BEIR's evaluation and `barista bench` on BEIR data sets do).
    #[arg(long)]
    keep_identical_ids: bool,
}

pub fn run(args: Args) -> Result<()> {
    let engine = args.open.open()?;
    let reading = if args.strict { barista_datasets::Reading::strict() } else { barista_datasets::Reading::tolerant() };
    let queries = barista_datasets::beir::read_queries(&args.queries, &reading)?;
    let qrels = barista_datasets::beir::read_qrels(&args.qrels, &reading)?;
    if let Some(summary) = reading.summary() {
        eprintln!("warning: {summary}");
    }
    // Every judged query counts (as in `barista bench`): say which ones cannot be searched.
    let texts: std::collections::HashMap<&str, &str> =
        queries.iter().map(|q| (q.id.as_str(), q.text.as_str())).collect();
    for id in qrels.keys() {
        match texts.get(id.as_str()) {
            None => eprintln!(
                "warning: judged query {id:?} is not in {}: it gets no results (scores 0)",
                args.queries.display()
            ),
            Some(text) if text.trim().is_empty() => {
                eprintln!("warning: query {id:?} is blank: it gets no results (scores 0, as trec_eval counts it)")
            }
            Some(_) => {}
        }
    }
    let pairs: Vec<(String, String)> = queries.iter().map(|q| (q.id.clone(), q.text.clone())).collect();
    let rule = engine
        .calibrate_with(&args.profile, &pairs, &qrels, args.target, !args.keep_identical_ids)
        .context("calibration failed")?;
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
