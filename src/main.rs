//! The `voxbridge` binary: a thin clap front over the library crates.
//!
//! Subcommands today: `transcode` (file conversion through the call-path DSP).
//! The daemon (`serve`), `loadgen` and the demo arrive with their issues.

mod transcode;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "voxbridge",
    version,
    about = "Connects telephone calls to AI voice bots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Convert audio between u-law, A-law, G.722, PCM16 and WAV, and between rates,
    /// in 20 ms frames through the same DSP a call uses.
    Transcode(transcode::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Transcode(args) => transcode::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, no backtrace.
            eprintln!("voxbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
