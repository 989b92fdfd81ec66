//! The `voxbridge` binary: a thin clap front over the library crates.
//!
//! Subcommands: `serve` (the daemon), `demo` (the whole system running an
//! outbound campaign), `bot echo` (a built-in bot), `bot check` (the
//! conformance kit for bot authors),
//! `loadgen` (Asterisk-like callers that measure the daemon) and `transcode`
//! (file conversion through the call-path DSP).

use clap::Parser;
use std::process::ExitCode;
use voxbridge::cli::{BotCommand, Cli, Command};
use voxbridge::{bot, botcheck, demo, loadgen, serve, transcode};

/// Colour in the log only when a person reads it: stderr is a terminal and
/// `NO_COLOR` (no-color.org) is unset. Files, pipes and journald get plain text.
fn log_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colour())
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bot(BotCommand::Echo(args)) => bot::run(args),
        Command::Bot(BotCommand::Check(args)) => botcheck::run(args),
        Command::Loadgen(args) => loadgen::run(args),
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
