//! Command-line parsing and the subcommands.

mod calibrate;
mod compact;
mod embed;
mod graphs;
mod index;
mod info;
mod input;
mod model_args;
mod open_args;
mod progress;
mod search;
mod serve;

use clap::{Parser, Subcommand};

/// Barista: a vector retrieval engine for 2D Matryoshka text encoders.
#[derive(Parser)]
#[command(name = "barista", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed texts and print their rung vectors as JSON lines.
    #[command(after_help = embed::EXAMPLES)]
    Embed(embed::Args),
    /// Build an index from a corpus (JSONL, BEIR or MS MARCO).
    #[command(after_help = index::EXAMPLES)]
    Index(index::Args),
    /// Search an index.
    #[command(after_help = search::EXAMPLES)]
    Search(search::Args),
    /// Fit adaptive-stopping thresholds on training queries and store them in the index.
    #[command(after_help = calibrate::EXAMPLES)]
    Calibrate(calibrate::Args),
    /// Describe an index: model, profile, rungs, segments, the write-ahead log, sizes.
    Info(info::Args),
    /// Merge every segment into one (at most a million documents each past that), dropping
    /// deleted documents.
    #[command(after_help = compact::EXAMPLES)]
    Compact(compact::Args),
    /// Choose the rungs that carry HNSW graphs, and build the graphs segments lack (or add the
    /// i8 copy of the rows to graphs written without one).
    #[command(after_help = graphs::EXAMPLES)]
    Graphs(graphs::Args),
    /// Serve an index over HTTP (REST API).
    #[command(after_help = serve::EXAMPLES)]
    Serve(serve::Args),
    /// Evaluate on a BEIR or MS MARCO data set: nDCG@10, MRR@10, recall, latency and QPS of
    /// the exact search, each rung alone and the cascade profiles, with TREC run files.
    #[command(after_help = barista_bench::evaluate::EXAMPLES)]
    Bench(barista_bench::evaluate::Args),
}

/// Whether the command writes a report to standard output and should end quietly, as Unix
/// tools do, when the reader goes away (`barista info | head`); the server never should.
pub fn quiet_on_closed_output(cli: &Cli) -> bool {
    !matches!(cli.command, Command::Serve(_))
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Embed(args) => embed::run(args),
        Command::Index(args) => index::run(args),
        Command::Search(args) => search::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Info(args) => info::run(args),
        Command::Compact(args) => compact::run(args),
        Command::Graphs(args) => graphs::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => barista_bench::evaluate::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
