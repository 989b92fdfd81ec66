//! The daemon's trust rules that need the built binary or a real socket,
//! one test binary (each one links the whole crate graph, so fewer build
//! faster): crash billing, bounded shutdown, HTTP listener limits, secrets
//! that never print, and a log without colour codes off a terminal. The
//! rules' other tests live beside the code they check (control's `api`,
//! `live_ws`, `dead_letters`; `bridge_failures`, `media_api`,
//! `transcode_cli`).

mod harness;

#[path = "trust/crash_billing.rs"]
mod crash_billing;
#[path = "trust/http_limits.rs"]
mod http_limits;
#[path = "trust/log_format.rs"]
mod log_format;
#[path = "trust/secrets_redacted.rs"]
mod secrets_redacted;
#[path = "trust/shutdown_bounded.rs"]
mod shutdown_bounded;
