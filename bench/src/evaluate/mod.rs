//! `barista bench`: index a data set (or reuse an index), run every judged query through the
//! exhaustive search, each rung alone, the cascade profiles and any explicit stage plans, and
//! report retrieval quality (trec_eval conventions), latency, throughput and time per stage,
//! with TREC run files, a Markdown table, JSON and a quality-versus-latency plot.

mod measure;
mod report;

use crate::indexing::{bar, build_or_open, engine_documents};
use crate::plot::Kind;
use anyhow::{Context, Result, bail};
use barista_datasets::beir::Query;
use barista_datasets::catalog::resolve;
use barista_datasets::download::Cache;
use barista_datasets::{DataSet, Format, Reading};
use barista_engine::search::plan::{Shortlist, Stage};
use barista_engine::{CreateOptions, Engine, SearchRequest, StagePlan};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use measure::{Measured, StageTime};
pub use report::{Conventions, IdenticalIds, Report, RowResult, at_level, overlap_at, write_run};

/// Arguments of `barista bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model folder or Hugging Face id (with a reused --index: the model it was built with,
    /// which is checked).
    #[arg(long)]
    pub model: String,
    /// Data set: a BEIR or MS MARCO folder, or a public data set's name (for example scifact,
    /// nfcorpus, trec-dl-2019-passage), downloaded into the cache on first use.
    #[arg(long)]
    pub dataset: String,
    /// Layout of a --dataset folder (default: recognised by its files).
    #[arg(long, value_parser = parse_format, value_name = "beir|msmarco")]
    pub format: Option<Format>,
    /// Judgement split to evaluate (BEIR: a file in qrels/; MS MARCO folders have one).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Named profiles to compare (exact is always run: it is the reference).
    #[arg(long, value_delimiter = ',', default_value = "exact,balanced,fast")]
    pub profiles: Vec<String>,
    /// An explicit stage plan to compare as well, e.g. "3,96:2000:scan 5,256:300 6,384:10"
    /// (repeatable; keeps are raised to --depth where smaller).
    #[arg(long = "plan", value_name = "STAGES")]
    pub plans: Vec<String>,
    /// Skip the rows that search each smaller rung alone, exhaustively.
    #[arg(long)]
    pub no_rungs: bool,
    /// Index folder: reused when it exists (same model and document count, checked), built
    /// there otherwise. Without it a temporary index is built and deleted.
    #[arg(long, value_name = "DIR")]
    pub index: Option<PathBuf>,
    /// Results per query (the run files' depth; Recall@1000 needs 1000).
    #[arg(long, default_value_t = 1000)]
    pub depth: usize,
    /// Client threads for the concurrent throughput measurement (default: the CPU count).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Smallest grade that counts as relevant for MRR and recall (TREC DL uses 2); nDCG
    /// always uses the graded judgements.
    #[arg(long, default_value_t = 1)]
    pub min_grade: i32,
    /// Each throughput pass repeats the query list for at least this long (seconds).
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub min_seconds: f64,
    /// Evaluate only the first N judged queries.
    #[arg(long, value_name = "N")]
    pub max_queries: Option<usize>,
    /// Folder for run files, report.md, results.json and the plot (default:
    /// barista-bench/<data set>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the results as JSON (per row: ndcg@10, mrr@10, recall@100, recall@1000, latency,
    /// qps, stages) instead of the Markdown table.
    #[arg(long)]
    pub json: bool,
    /// Where downloaded data sets are kept (default: $BARISTA_CACHE_DIR, else ~/.cache/barista).
    #[arg(long, value_name = "DIR", env = "BARISTA_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep hits whose document id equals the query id. By default BEIR data sets drop them
    /// before scoring, as BEIR's evaluation does (`ignore_identical_ids`: some sets' queries
    /// are also documents); MS MARCO data sets keep them (trec_eval's convention).
    #[arg(long)]
    pub keep_identical_ids: bool,
    /// Stop at the first data set line that is not valid as it is (invalid UTF-8, a lone
    /// UTF-16 surrogate escape, malformed JSON or fields). Without it such lines are repaired
    /// (U+FFFD) or skipped, and a warning names them.
    #[arg(long)]
    pub strict: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Examples for `barista bench --help`.
pub const EXAMPLES: &str = "Examples:
  barista bench --model ../shared/models/minilm-l6-2d --dataset ../shared/datasets/scifact
  barista bench --model ../shared/models/minilm-l6-2d --dataset ../shared/datasets/msmarco-dl19-subset \\
      --min-grade 2 --index /tmp/dl19 --json
  barista bench --model ielabgroup/Starbucks-msmarco --dataset nfcorpus --profiles exact,fast \\
      --plan '4,64:2000:scan 12,768:10'";

/// One row to measure: a label, its family and the request every query runs with.
#[derive(Clone, Debug)]
pub struct RowSpec {
    /// Its label (`exact`, `rung 3,96`, `balanced`, `plan 1`).
    pub label: String,
    /// Its family (for the plot).
    pub kind: Kind,
    /// The request template (its query is replaced per query).
    pub request: SearchRequest,
}

/// The rows `args` asks for, exact first. When hits whose id is the query's are dropped,
/// each asks for one result more, so that `depth` remain (as BEIR asks for top-k + 1).
pub fn rows(engine: &Engine, args: &Args, drop_identical: bool) -> Result<Vec<RowSpec>> {
    let depth = args.depth + usize::from(drop_identical);
    let fixed = |profile: &str| SearchRequest {
        adaptive: Some(false),
        ..SearchRequest::text("").with_profile(profile).with_k(depth)
    };
    let staged = |stages: Vec<Stage>| SearchRequest {
        stages: Some(stages),
        adaptive: Some(false),
        ..SearchRequest::text("").with_k(depth)
    };
    let mut rows = vec![RowSpec { label: "exact".into(), kind: Kind::Exact, request: fixed("exact") }];
    let shape = engine.shape();
    if !args.no_rungs {
        for &rung in shape.rungs.iter().take(shape.rungs.len().saturating_sub(1)) {
            let stage = Stage { rung, keep: depth, shortlist: Some(Shortlist::Scan) };
            let label = format!("rung {},{}", rung.layer, rung.dim);
            rows.push(RowSpec { label, kind: Kind::Rung, request: staged(vec![stage]) });
        }
    }
    for profile in args.profiles.iter().map(|p| p.trim()).filter(|p| !p.is_empty() && *p != "exact") {
        let request = fixed(profile);
        engine.plan_for(&request).with_context(|| format!("profile '{profile}'"))?;
        rows.push(RowSpec { label: profile.to_string(), kind: Kind::Profile, request });
    }
    for (i, text) in args.plans.iter().enumerate() {
        let mut plan = StagePlan::parse(text).map_err(|e| anyhow::anyhow!("--plan '{text}': {e}"))?;
        for stage in &mut plan.stages {
            stage.keep = stage.keep.max(depth);
        }
        let request = staged(plan.stages);
        engine.plan_for(&request).with_context(|| format!("--plan '{text}'"))?;
        rows.push(RowSpec { label: format!("plan {}", i + 1), kind: Kind::Other, request });
    }
    Ok(rows)
}

fn dataset_name(what: &str) -> String {
    let path = Path::new(what);
    if path.exists() {
        path.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "data".into())
    } else {
        what.replace('/', "-")
    }
}

/// Loads (downloading when named) the data set `args` names.
pub fn load_dataset(args: &Args) -> Result<DataSet> {
    let cache = match &args.cache_dir {
        Some(dir) => Cache::new(dir),
        None => Cache::default_location()?,
    };
    let download = bar(0, "download");
    let data = resolve(&args.dataset, args.format, &cache, &|_, done, total| {
        if let Some(total) = total {
            download.set_length(total);
        }
        download.set_position(done);
    });
    download.finish_and_clear();
    Ok(data?)
}

/// The documents of a data set: how many distinct ids, and which ids repeat.
pub struct Census {
    /// Distinct document ids (what an index of the data set holds: the last copy of an id wins).
    pub unique: usize,
    /// Documents whose id an earlier document already had.
    pub repeated: usize,
    /// A few of those ids.
    pub examples: Vec<String>,
}

/// Counts a data set's documents and distinct ids, warning about repeated ids.
pub fn census(data: &DataSet, reading: &Reading) -> Result<Census> {
    let mut seen = HashSet::new();
    let (mut repeated, mut examples) = (0, Vec::new());
    for doc in data.documents(reading)? {
        let doc = doc?;
        if !seen.insert(xxhash_rust::xxh3::xxh3_64(doc.id.as_bytes())) {
            repeated += 1;
            if examples.len() < 5 {
                examples.push(doc.id);
            }
        }
    }
    if repeated > 0 {
        eprintln!(
            "warning: {repeated} documents repeat an id an earlier document has (for example {}); the last copy of \
             each id is indexed, so the index holds {} documents",
            examples.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join(", "),
            seen.len()
        );
    }
    Ok(Census { unique: seen.len(), repeated, examples })
}

/// Runs `barista bench`.
pub fn run(args: &Args) -> Result<()> {
    if args.depth == 0 || args.depth > 10_000 {
        bail!("--depth must be between 1 and 10000, not {}", args.depth);
    }
    if !(args.min_seconds >= 0.0 && args.min_seconds <= 3600.0) {
        bail!("--min-seconds must be between 0 and 3600, not {}", args.min_seconds);
    }
    let min_time = std::time::Duration::from_secs_f64(args.min_seconds);
    let data = load_dataset(args)?;
    let name = dataset_name(&args.dataset);
    let reading = if args.strict { Reading::strict() } else { Reading::tolerant() };
    let (listed, qrels) = data.judged_queries(&args.split, &reading)?;
    // A query id listed twice: the last text wins (as a dictionary of queries keeps it).
    let mut position = std::collections::HashMap::new();
    let mut queries: Vec<Query> = Vec::with_capacity(listed.len());
    let mut repeated_queries = Vec::new();
    for q in listed {
        match position.get(&q.id) {
            Some(&i) => {
                repeated_queries.push(q.id.clone());
                queries[i] = q;
            }
            None => {
                position.insert(q.id.clone(), queries.len());
                queries.push(q);
            }
        }
    }
    if !repeated_queries.is_empty() {
        eprintln!(
            "warning: {} queries repeat an id an earlier query has (for example {}); the last text of each is used",
            repeated_queries.len(),
            repeated_queries.iter().take(5).map(|id| format!("{id:?}")).collect::<Vec<_>>().join(", ")
        );
    }
    // Every judged query counts (trec_eval -c): one missing from the queries file is kept, blank.
    let known: HashSet<String> = queries.iter().map(|q| q.id.clone()).collect();
    for id in qrels.keys().filter(|id| !known.contains(*id)) {
        eprintln!("warning: judged query {id:?} is not in the queries file: it gets no results (scores 0)");
        queries.push(Query { id: id.clone(), text: String::new() });
    }
    if let Some(max) = args.max_queries {
        queries.truncate(max);
    }
    if queries.is_empty() {
        bail!("{} has no judged queries in split '{}'", args.dataset, args.split);
    }
    let (blank, searched): (Vec<Query>, Vec<Query>) = queries.iter().cloned().partition(|q| q.text.trim().is_empty());
    for q in &blank {
        if known.contains(&q.id) {
            eprintln!(
                "warning: query {:?} is blank: it gets no results (scores 0, as trec_eval -c counts it; trec_eval without -c and BEIR's mean leave queries without results out)",
                q.id
            );
        }
    }
    if searched.is_empty() {
        bail!("every judged query of {} is blank: nothing to search", args.dataset);
    }
    let drop_identical = matches!(data, DataSet::Beir(_)) && !args.keep_identical_ids;
    eprintln!("counting documents…");
    let census = census(&data, &reading)?;
    let total = census.unique;
    let temporary;
    let index_dir = match &args.index {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::Builder::new().prefix("barista-bench-").tempdir()?;
            eprintln!("indexing into a temporary folder (pass --index DIR to keep the index for later runs)");
            temporary.path().join("index")
        }
    };
    // The census read every line already (and reported what it repaired or skipped): the
    // indexing pass reads them again with the same policy but reports nothing twice.
    let again = if args.strict { Reading::strict() } else { Reading::tolerant() };
    let engine = build_or_open(&index_dir, &CreateOptions::new(&args.model), engine_documents(&data, &again)?, total)?;
    if let Some(summary) = reading.summary() {
        eprintln!("warning: {summary}");
    }
    let rule = if drop_identical {
        IdenticalIds::Dropped
    } else if matches!(data, DataSet::Beir(_)) {
        IdenticalIds::KeptByRequest
    } else {
        IdenticalIds::Kept
    };
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
    let specs = rows(&engine, args, drop_identical)?;
    eprintln!("{total} documents, {} judged queries ({}), {} rows", queries.len(), args.split, specs.len());
    let mut measured = Vec::new();
    for spec in &specs {
        eprintln!("running {}", spec.label);
        let mut m = measure::measure(&engine, &searched, spec, threads, min_time)?;
        for q in &blank {
            m.runs.insert(q.id.clone(), Vec::new());
        }
        if drop_identical {
            // The rows asked for one result more (see `rows`): drop the query itself, keep depth.
            for (query, run) in &mut m.runs {
                run.retain(|(doc, _)| doc != query);
                run.truncate(args.depth);
            }
        }
        measured.push(m);
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("barista-bench").join(&name));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let conventions = Conventions {
        identical_ids: rule,
        blank_queries: blank.iter().map(|q| q.id.clone()).collect(),
        repeated_documents: census.repeated,
    };
    let report = Report::new(
        &name,
        &args.split,
        total,
        &queries,
        &qrels,
        args,
        threads,
        &specs,
        measured,
        &engine,
        conventions,
    )?;
    report.write(&out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        println!("{}", report.markdown());
    }
    eprintln!("run files, report.md, results.json and quality-latency.svg are in {}", out.display());
    Ok(())
}
