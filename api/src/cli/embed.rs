//! `barista embed`: texts in, rung vectors out, one JSON object per line.

use super::model_args::ModelArgs;
use anyhow::{Context, bail};
use barista_engine::{Rung, TextKind};
use serde::Serialize;
use std::io::Write;

pub const EXAMPLES: &str = "\
Examples:
  barista embed --model ../shared/models/minilm-l6-2d --query \"what is a matryoshka embedding\"
  barista embed --model ielabgroup/Starbucks-msmarco --passage --rung 12,768 \"a passage\" \"another\"
  cat passages.txt | barista embed --model ./my-model --rung 2,64 --rung 6,384";

/// Arguments of `barista embed`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Rung to output, as LAYER,DIM (repeatable; default: every rung of the profile).
    #[arg(long = "rung", id = "output_rung", value_name = "LAYER,DIM")]
    output_rungs: Vec<Rung>,
    /// Encode the texts as queries (query max length).
    #[arg(long, conflicts_with = "passage")]
    query: bool,
    /// Encode the texts as passages (passage max length; the default).
    #[arg(long)]
    passage: bool,
    /// Stop at the first line of standard input that is not valid UTF-8 (by default it is
    /// repaired with U+FFFD and a warning names the line).
    #[arg(long)]
    strict: bool,
    /// Texts to embed; with none, one text per line is read from standard input.
    texts: Vec<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    text: &'a str,
    kind: TextKind,
    tokens: usize,
    rungs: Vec<RungOut<'a>>,
}

#[derive(Serialize)]
struct RungOut<'a> {
    layer: usize,
    dim: usize,
    vector: &'a [f32],
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let texts = if args.texts.is_empty() {
        // The one line reader: invalid UTF-8 is repaired (and reported) or stops the run
        // (--strict); blank lines are skipped.
        let reading =
            if args.strict { barista_datasets::Reading::strict() } else { barista_datasets::Reading::tolerant() };
        let name = std::path::Path::new("standard input");
        let texts = barista_datasets::lines::lines_of(std::io::stdin().lock(), name, &reading)
            .map(|line| line.map(|(_, text)| text))
            .collect::<Result<Vec<_>, _>>()
            .context("reading texts from standard input")?;
        if let Some(summary) = reading.summary() {
            eprintln!("warning: {summary}");
        }
        texts
    } else {
        args.texts
    };
    if texts.is_empty() {
        bail!("no texts to embed: pass them as arguments or one per line on standard input");
    }
    let encoder = args.model.load()?;
    let rungs = if args.output_rungs.is_empty() { encoder.profile().rungs.clone() } else { args.output_rungs };
    let kind = if args.query { TextKind::Query } else { TextKind::Passage };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embeddings = encoder.encode(&refs, kind, &rungs)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, text) in texts.iter().enumerate() {
        let line = Line {
            text,
            kind,
            tokens: embeddings.token_counts()[i],
            rungs: rungs
                .iter()
                .enumerate()
                .map(|(r, rung)| RungOut { layer: rung.layer, dim: rung.dim, vector: embeddings.vector(i, r) })
                .collect(),
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
