//! The `voxbridge` command line: its subcommands and their arguments (the
//! binary in `main.rs` runs them; tests parse the commands the docs show).

use crate::{bot, botcheck, demo, loadgen, serve, transcode};
use clap::{Parser, Subcommand};

/// `voxbridge <command>`.
#[derive(Parser, Debug)]
#[command(
    name = "voxbridge",
    version,
    about = "Connects telephone calls to AI voice bots"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
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

/// `voxbridge bot <command>`.
#[derive(Subcommand, Debug)]
pub enum BotCommand {
    /// Answer each call with its own audio (or a tone).
    Echo(bot::Args),
    /// Check a bot against its dialect: play voxbridge's side of a call
    /// (speech, DTMF, a barge-in, the hangup) and check every message it sends.
    Check(botcheck::Args),
}
