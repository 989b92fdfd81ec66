//! The `voxbridge` binary: a thin clap front over the library crates.
//!
//! Subcommands: `serve` (the daemon), `demo` (the whole system running an
//! outbound campaign), `bot echo` (a built-in bot), `bot check` (the
//! conformance kit for bot authors),
//! `loadgen` (Asterisk-like callers that measure the daemon) and `transcode`
//! (file conversion through the call-path DSP).

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use voxbridge::{bot, botcheck, demo, loadgen, serve, transcode};

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
    /// Run the daemon: AudioSocket in, bot WebSocket out, /metrics.
    Serve(serve::Args),
    /// The whole system in one process: control, media, the built-in bot and
    /// a simulated callee run a small outbound campaign with real speech.
    Demo(demo::Args),
    /// A built-in bot for demos and load tests.
    #[command(subcommand)]
    Bot(BotCommand),
    /// N concurrent AudioSocket callers against a daemon, with the echo bot;
    /// reports added latency, lost frames and daemon CPU per call-second.
    Loadgen(loadgen::Args),
    /// Convert audio between u-law, A-law, G.722, PCM16 and WAV, and between rates,
    /// in 20 ms frames through the same DSP a call uses.
    Transcode(transcode::Args),
}

#[derive(Subcommand, Debug)]
enum BotCommand {
    /// Answer each call with its own audio (or a tone).
    Echo(bot::Args),
    /// Check a bot against its dialect: play voxbridge's side of a call
    /// (speech, DTMF, a barge-in, the hangup) and check every message it sends.
    Check(botcheck::Args),
}

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
