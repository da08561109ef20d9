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
    segments: Vec<Segment>,
    bytes: u64,
    calibrated_profiles: Vec<String>,
    verified: bool,
}

#[derive(Serialize)]
struct Segment {
    id: u64,
    documents: u32,
    deleted: u32,
    bytes: u64,
}

pub fn run(args: Args) -> Result<()> {
    let options = barista_index::OpenOptions { lazy_graphs: true, ..Default::default() };
    let index =
        Index::open_with(&args.index, options).with_context(|| format!("could not open {}", args.index.display()))?;
    if args.verify {
        index.verify().context("verification failed")?;
    }
    let snapshot = index.snapshot();
    let m = snapshot.manifest();
    let c = &m.config;
    let info = Info {
        directory: args.index.display().to_string(),
        generation: m.generation,
        model: serde_json::from_str(&c.model).unwrap_or(serde_json::Value::String(c.model.clone())),
        profile: serde_json::from_str(&c.profile).unwrap_or(serde_json::Value::String(c.profile.clone())),
        rungs: c.rungs.iter().map(|r| format!("{} {}", r.rung, r.element)).collect(),
        graph: format!(
            "HNSW on {} (M = {}, ef_construction = {})",
            c.graph_rung(),
            c.graph.max_connections,
            c.graph.ef_construction
        ),
        documents: m.live_docs(),
        deleted: m.segments.iter().map(|s| u64::from(s.deleted)).sum(),
        segments: m
            .segments
            .iter()
            .map(|s| Segment { id: s.id, documents: s.docs, deleted: s.deleted, bytes: s.files().map(|f| f.len).sum() })
            .collect(),
        bytes: m.files().map(|f| f.len).sum(),
        calibrated_profiles: m
            .settings
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("barista.cascade.stop.").map(str::to_string))
            .collect(),
        verified: args.verify,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("index       {}", info.directory);
    println!(
        "documents   {} live, {} deleted, in {} segment(s), {:.1} MB",
        info.documents,
        info.deleted,
        info.segments.len(),
        info.bytes as f64 / 1e6
    );
    println!("generation  {}", info.generation);
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
    Ok(())
}
