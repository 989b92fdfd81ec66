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

/// The commands README.md and docs/ show stay true: every `voxbridge`
/// command line in their code (`voxbridge ...`, `target/release/voxbridge
/// ...`, `cargo run --release -- ...`; a synopsis's `[optional]` parts
/// included, its first `a|b` alternative taken, `<placeholders>` and
/// `$(...)` filled in) parses with the binary's own parser, and every
/// script they name exists.
#[test]
fn documented_commands_parse() {
    use clap::Parser as _;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let (mut commands, mut scripts) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            if !(fenced || line.starts_with("    ")) {
                continue;
            }
            let code = line.split(" # ").next().unwrap_or_default();
            for word in code.split_whitespace() {
                let word = word.trim_matches(|c: char| "`'\"();,".contains(c));
                if (word.starts_with("scripts/") || word.starts_with("benches/") || word.starts_with("fuzz/"))
                    && word.ends_with(".sh")
                {
                    scripts += 1;
                    assert!(
                        root.join(word).exists(),
                        "{}: {word} does not exist",
                        file.display()
                    );
                }
            }
            for part in code
                .split("&&")
                .flat_map(|p| p.split(" | "))
                .flat_map(|p| p.split(';'))
            {
                let words = shell_words(part);
                let at = words
                    .iter()
                    .position(|w| w == "voxbridge" || w.ends_with("/voxbridge"))
                    .map(|i| i + 1)
                    .or_else(|| {
                        let i = words
                            .windows(4)
                            .position(|w| w == ["cargo", "run", "--release", "--"])?;
                        Some(i + 4)
                    });
                let Some(at) = at else { continue };
                if at >= words.len() || words[at].starts_with('-') && words[at] != "--help" {
                    continue; // prose naming the binary, or cargo's own flags
                }
                let args = std::iter::once("voxbridge".to_string()).chain(words[at..].iter().cloned());
                commands += 1;
                if let Err(e) = voxbridge::cli::Cli::try_parse_from(args) {
                    panic!("{}: `{}` does not parse:\n{e}", file.display(), part.trim());
                }
            }
        }
    }
    assert!(
        commands >= 10 && scripts >= 5,
        "{commands} commands, {scripts} scripts found"
    );
}

/// A command line's words: quotes removed, `$(...)` and `<placeholder>`
/// made a value, synopsis brackets dropped and the first `a|b` taken,
/// leading `NAME=value` assignments skipped.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quote, mut depth) = (None, 0);
    for c in line.chars() {
        match (quote, c) {
            (None, '$') => {}
            (None, '(') => {
                depth += 1;
                cur.push('1');
            }
            (None, ')') if depth > 0 => depth -= 1,
            (_, _) if depth > 0 => {}
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            (None, '[' | ']' | '\\') => {}
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
        .into_iter()
        .skip_while(|w| {
            w.contains('=') && !w.starts_with('-') && w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        })
        .map(|w| {
            let w = w.split('|').next().unwrap_or_default().to_string();
            if w.starts_with('<') && w.ends_with('>') {
                "1".to_string()
            } else {
                w
            }
        })
        .collect()
}
