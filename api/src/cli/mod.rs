//! Command-line parsing and the subcommands.

mod embed;
mod model_args;

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
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Embed(args) => embed::run(args),
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
