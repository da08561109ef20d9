//! `barista-bench`: Barista's benchmarks, each run side by side with the anchor users would
//! otherwise run, in one process invocation.

mod encoder_bench;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "barista-bench", version, about = "Benchmarks for Barista, side by side with their anchors")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encoder speed: query latency per rung layer and documents/s, against onnxruntime.
    Encoder(encoder_bench::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Encoder(args) => encoder_bench::run(&args),
    }
}
