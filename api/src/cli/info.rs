//! `barista info`: what an index holds.

use anyhow::{Context, Result};
use barista_index::Index;
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `barista info`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The index directory.
    #[arg(long, env = "BARISTA_INDEX")]
    index: PathBuf,
    /// Read every file and check it against its checksum.
    #[arg(long)]
    verify: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Info {
    directory: String,
    generation: u64,
    model: serde_json::Value,
    profile: serde_json::Value,
    rungs: Vec<String>,
    graph: String,
    documents: u64,
    deleted: u64,
    segments: Vec<barista_index::SegmentInfo>,
    bytes: u64,
    log: barista_index::LogSummary,
    log_applied: u64,
    calibrated_profiles: Vec<String>,
    verified: bool,
}

pub fn run(args: Args) -> Result<()> {
    let options = barista_index::OpenOptions { lazy_graphs: true, ..Default::default() };
    let index =
        Index::open_with(&args.index, options).with_context(|| format!("could not open {}", args.index.display()))?;
    if args.verify {
        index.verify().context("verification failed")?;
    }
    let snapshot = index.snapshot();
    // Found by the verification (graphs are derived data: reported, their segments scanned).
    let damaged = snapshot.damaged_graphs();
    let m = snapshot.manifest();
    let c = &m.config;
    let info = Info {
        directory: args.index.display().to_string(),
        generation: m.generation,
        model: serde_json::from_str(&c.model).unwrap_or(serde_json::Value::String(c.model.clone())),
        profile: serde_json::from_str(&c.profile).unwrap_or(serde_json::Value::String(c.profile.clone())),
        rungs: c.rungs.iter().map(|r| format!("{} {}", r.rung, r.element)).collect(),
        graph: format!(
            "HNSW on {} (M = {}, ef_construction = {}) for {}",
            c.graph_rungs().iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            c.graph.max_connections,
            c.graph.ef_construction,
            match c.graph.min_docs {
                0 => "every segment".to_string(),
                n => format!("segments of {n} documents or more"),
            }
        ),
        documents: snapshot.len(),
        deleted: snapshot.segments().iter().map(|s| u64::from(s.deleted)).sum(),
        segments: snapshot.segments(),
        bytes: m.files().map(|f| f.len).sum::<u64>()
            + index.log_summary().files.iter().map(|(_, len)| len).sum::<u64>(),
        log: index.log_summary(),
        log_applied: m.log_applied,
        calibrated_profiles: m
            .settings
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("barista.cascade.stop.").map(str::to_string))
            .collect(),
        // Whether every file was read and matched: not while a graph is damaged.
        verified: args.verify && damaged.is_empty(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return report_damaged(&damaged, &args.index);
    }
    println!("index       {}", info.directory);
    println!(
        "documents   {} live, {} deleted, in {} segment(s), {:.1} MB on disk",
        info.documents,
        info.deleted,
        info.segments.len(),
        info.bytes as f64 / 1e6
    );
    for s in &info.segments {
        println!(
            "  segment {:>6}  {:>9} documents  {:>8} deleted  {:>9.1} MB  {}",
            s.id,
            s.documents,
            s.deleted,
            s.bytes as f64 / 1e6,
            match (s.in_memory, s.graphs.is_empty()) {
                (true, _) => "in memory (written since the last flush; in the log)".to_string(),
                (false, false) => {
                    let graphs: Vec<String> = s
                        .graphs
                        .iter()
                        .map(|g| match s.damaged_graphs.iter().any(|d| d.rung == *g) {
                            true => format!("{g} (damaged: scanned)"),
                            false => g.to_string(),
                        })
                        .collect();
                    format!("graph on {}", graphs.join(" "))
                }
                (false, true) => "scanned (no graph)".to_string(),
            }
        );
    }
    let log_bytes: u64 = info.log.files.iter().map(|(_, len)| len).sum();
    println!(
        "log         {} file(s), {:.1} KB; {} logged write(s) newer than generation {}, replayed in memory",
        info.log.files.len(),
        log_bytes as f64 / 1e3,
        info.log.replayed,
        info.generation
    );
    if let Some(cut) = &info.log.cut {
        println!("            {cut}");
    }
    println!("generation  {} (covers logged writes up to {})", info.generation, info.log_applied);
    println!("model       {}", info.model);
    println!("profile     {}", info.profile);
    println!("rungs       {}", info.rungs.join(", "));
    println!("graph       {}", info.graph);
    if !info.calibrated_profiles.is_empty() {
        println!("calibrated  {}", info.calibrated_profiles.join(", "));
    }
    if info.verified {
        println!("verified    every file matches its checksum");
    }
    report_damaged(&damaged, &args.index)
}

/// Names each damaged graph on stderr; an error when there is one, for `--verify`'s exit status
/// (the index itself opens and serves: those segments are scanned).
fn report_damaged(damaged: &[barista_index::DamagedGraph], dir: &std::path::Path) -> Result<()> {
    if damaged.is_empty() {
        return Ok(());
    }
    for d in damaged {
        eprintln!("warning: {d}");
    }
    anyhow::bail!(
        "verification found {} damaged graph file(s), named above; every other file matches its checksum. The index \
         still serves (those segments are scanned); build the graphs again from the stored rows with `barista graphs \
         --index {}`",
        damaged.len(),
        dir.display()
    )
}
