//! `barista`: the command-line face of Barista.

mod cli;
mod server;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if cli::quiet_on_closed_output(&args) {
        // Rust ignores SIGPIPE, so printing into a closed pipe panics; a report whose reader
        // stopped reading (`| head`) should just end, as other Unix tools do. Not for the
        // server, which must survive clients that hang up.
        #[cfg(unix)]
        // SAFETY: restores the default disposition of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", message(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message
/// already holds (errors that print their source as part of their own text).
fn message(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
