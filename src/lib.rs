//! The `voxbridge` binary's commands, as a library so integration tests can
//! drive them in-process: `transcode` (file conversion through the call-path
//! DSP), `serve` (the daemon) and its [`http`] API, `demo` (everything in one
//! process running an outbound campaign), `bot` (a built-in echo/tone bot),
//! `botcheck` (the conformance kit for bot authors) and `loadgen`
//! (Asterisk-like callers measuring the daemon).

pub mod bot;
pub mod botcheck;
pub mod cli;
pub mod demo;
pub mod http;
pub mod listener;
pub mod loadgen;
pub mod loadgen_chanws;
pub mod loadgen_rtp;
mod plot;
pub mod serve;
pub mod transcode;
pub mod transcode_ogg;
