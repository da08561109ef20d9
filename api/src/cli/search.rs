//! `barista search`: query an index from the shell.

use super::open_args::OpenArgs;
use anyhow::{Context, Result, bail};
use barista_engine::{SearchRequest, StagePlan};

pub const EXAMPLES: &str = "\
Examples:
  barista search --index scifact.idx \"vitamin D deficiency and depression\"
  barista search --index scifact.idx --profile exact --k 5 --json \"what causes myopia\"
  barista search --index scifact.idx --stages \"4,128:1500:scan 5,256:500 6,384:10\" --json \"query\"";

/// Arguments of `barista search`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    open: OpenArgs,
    /// Named plan: fast, balanced or exact.
    #[arg(long, default_value = "balanced", conflicts_with = "stages")]
    profile: String,
    /// An explicit plan, "LAYER,DIM:KEEP[:scan|:graph=EF] …" (coarse to fine).
    #[arg(long, value_parser = StagePlan::parse)]
    stages: Option<StagePlan>,
    /// Hits to return.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Adaptive stopping: on or off (true/false, yes/no and 1/0 are accepted too; default: on
    /// when the index is calibrated for the profile).
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    adaptive: Option<bool>,
    /// Print the whole response as JSON (hits, stages run, timings).
    #[arg(long)]
    json: bool,
    /// Include stored texts and metadata.
    #[arg(long)]
    text: bool,
    /// Only documents whose metadata matches this JSON object, e.g. '{"lang": "en", "year": [2019, 2020]}'.
    #[arg(long, value_parser = parse_filter)]
    filter: Option<Filter>,
    /// The query.
    query: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let query = args.query.join(" ");
    if query.trim().is_empty() {
        bail!(
            "the query is empty or blank: pass the text to search for as the last argument, e.g. barista search \
             --index DIR \"my query\""
        );
    }
    let engine = args.open.open()?;
    let request = SearchRequest {
        query: Some(query),
        vectors: None,
        k: args.k,
        profile: Some(args.profile.clone()),
        stages: args.stages.map(|p| p.stages),
        adaptive: args.adaptive,
        filter: args.filter.map(|f| f.0),
        overlap_encoding: None,
        include_text: args.text,
        include_metadata: args.text,
    };
    let response = engine.search(&request).context("search failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(());
    }
    for (rank, hit) in response.hits.iter().enumerate() {
        let snippet: String = hit.text.as_deref().unwrap_or("").chars().take(100).collect();
        println!("{:>3}  {:>9.4}  {}  {}", rank + 1, hit.score, hit.id, snippet);
    }
    let stages: Vec<String> =
        response.stages.iter().map(|s| format!("{} {} {}→{}", s.method, s.rung, s.candidates, s.kept)).collect();
    let t = &response.timings;
    eprintln!(
        "{} hits · {}{} · encode {:.2} ms, graph {:.2} ms, scan {:.2} ms, rescore {:.2} ms, total {:.2} ms",
        response.hits.len(),
        stages.join(" → "),
        if response.stopped_early { " (stopped early)" } else { "" },
        t.encode_ms,
        t.graph_ms,
        t.scan_ms,
        t.rescore_ms,
        t.total_ms
    );
    Ok(())
}

/// A metadata filter given on the command line.
#[derive(Clone, Debug)]
pub struct Filter(serde_json::Map<String, serde_json::Value>);

fn parse_filter(s: &str) -> Result<Filter, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(map)) => Ok(Filter(map)),
        Ok(_) => Err("the filter must be a JSON object, e.g. '{\"lang\": \"en\"}'".into()),
        Err(e) => Err(format!("the filter is not valid JSON: {e}")),
    }
}
