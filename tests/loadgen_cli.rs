//! The built binary end to end: `voxbridge serve` on free ports, then
//! `voxbridge loadgen` with its echo bot in each caller mode (AudioSocket,
//! Asterisk's WebSocket channel, RTP PCMU, RTP Opus), a few calls for one second. Checks that calls are set
//! up, audio flows both ways and the `LOADGEN` line is printed; figures are
//! for benches/capacity.sh, not asserted here.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A listener on a free port; dropped, the port is free again for the
/// echo bot or the daemon, which must be told it first.
fn free_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind")
}

fn port_of(l: &std::net::TcpListener) -> u16 {
    l.local_addr().expect("addr").port()
}

/// A fresh directory for the daemon's embedded store.
fn data_dir(tag: u16) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("voxbridge-loadgen-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The media API token the daemon is given and loadgen sends.
const TOKEN: &str = "loadgen-test-token-0123456789";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the daemon (its chan_websocket listener on `chanws_port`);
/// returns it with its AudioSocket and HTTP addresses.
fn serve(bot_port: u16, chanws_port: u16) -> (Daemon, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxbridge"))
        .arg("serve")
        .env("VOXBRIDGE_AUDIOSOCKET_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_CHANWS_LISTEN", format!("127.0.0.1:{chanws_port}"))
        .env("VOXBRIDGE_METRICS_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_BOT_URL", format!("ws://127.0.0.1:{bot_port}"))
        .env("VOXBRIDGE_WORKERS", "1")
        .env("VOXBRIDGE_CONTROL_LISTEN", "127.0.0.1:0")
        .env("VOXBRIDGE_DATA_DIR", data_dir(bot_port))
        .env("VOXBRIDGE_MEDIA_API_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("voxbridge serve runs");
    let stdout = child.stdout.take().expect("stdout");
    let daemon = Daemon(child);
    // The first line says where it listens (ports were 0).
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("serve line");
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {line:?}"))
            .to_string()
    };
    let (a, m) = (field("audiosocket="), field("metrics="));
    (daemon, a, m)
}

#[test]
fn loadgen_drives_the_daemon_in_every_caller_mode() {
    // The last run: quiet callers (one frame a second each).
    for (mode, quiet) in [
        ("audiosocket", false),
        ("chanws", false),
        ("rtp-pcmu", false),
        ("rtp-opus", false),
        ("audiosocket", true),
    ] {
        // Both held at once, so they differ.
        let (a, b) = (free_listener(), free_listener());
        let (bot_port, chanws_port) = (port_of(&a), port_of(&b));
        drop((a, b));
        let (_daemon, audiosocket, api) = serve(bot_port, chanws_port);
        let target = match mode {
            "chanws" => format!("127.0.0.1:{chanws_port}"),
            _ => audiosocket,
        };
        let out = Command::new(env!("CARGO_BIN_EXE_voxbridge"))
            .args([
                "loadgen",
                "--mode",
                mode,
                "--calls",
                "3",
                "--seconds",
                "1",
                "--ramp-ms",
                "0",
            ])
            .args(["--target", &target, "--api", &api, "--api-token", TOKEN])
            .args(["--bot-listen", &format!("127.0.0.1:{bot_port}")])
            .args([
                "--audio",
                concat!(env!("CARGO_MANIFEST_DIR"), "/samples/hello_8k.ul"),
            ])
            .args(quiet.then_some("--quiet"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("loadgen runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("LOADGEN "))
            .unwrap_or_else(|| panic!("{mode}: no LOADGEN line in {stdout}"));
        let get = |k: &str| -> f64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} in {line}"))
        };
        println!("{line}");
        assert!(line.contains(&format!("mode={mode} ")), "{line}");
        assert_eq!(get("calls"), 3.0);
        assert_eq!(get("hung_up_early"), 0.0, "{mode}: {stdout}");
        assert!(
            get("loadgen_cpu_us_per_call_s") > 0.0,
            "loadgen reports its own CPU: {line}"
        );
        // Audio went both ways: frames reached the bot and came back.
        let count_before = |marker: &str| -> u64 {
            stdout
                .lines()
                .find_map(|l| l.split_once(marker))
                .and_then(|(head, _)| head.split_whitespace().last().and_then(|n| n.parse().ok()))
                .unwrap_or_else(|| panic!("{mode}: no {marker:?} in {stdout}"))
        };
        if quiet {
            // One frame a second per caller (the measured second, 3 calls),
            // each matched at the bot; the daemon still plays 50 a second.
            let sent = count_before(" frames sent");
            assert!((1..=6).contains(&sent), "quiet: {sent} sent: {stdout}");
            assert_eq!(count_before(" at the bot"), sent, "quiet: {stdout}");
        } else {
            assert!(count_before(" at the bot") > 50, "{mode}: {stdout}");
        }
        assert!(count_before(" frames received") > 50, "{mode}: {stdout}");
    }
}
