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
                .map(|p| p.trim_end().trim_end_matches('&'))
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

/// Every `cargo test` README.md and docs/ show (in code or in backticks,
/// across line breaks) names test targets that exist, and its filter, if
/// any, matches a test or module in them: the tests the docs point at to
/// "see" a guarantee are there to run.
#[test]
fn documented_cargo_tests_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    files.extend(
        std::fs::read_dir(root.join("docs"))
            .expect("docs/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read").replace('\n', " ");
        for (at, _) in text.match_indices("cargo test ") {
            // The command runs to the closing backtick or the comment.
            let rest = &text[at..];
            let end = rest.find(['`', '#']).unwrap_or(rest.len());
            let words: Vec<&str> = rest[..end].split_whitespace().collect();
            let (mut krate, mut targets, mut lib, mut filter) = (None, Vec::new(), false, None);
            let mut i = 2;
            while i < words.len() {
                match words[i] {
                    "--" => break,
                    "-p" => {
                        krate = words.get(i + 1).copied();
                        i += 1;
                    }
                    "--test" => {
                        targets.extend(words.get(i + 1).copied());
                        i += 1;
                    }
                    "--lib" => lib = true,
                    w if w.starts_with('-') => {}
                    w if filter.is_none()
                        && w.chars().all(|c| c.is_ascii_alphanumeric() || "_:".contains(c)) =>
                    {
                        filter = Some(w)
                    }
                    _ => {}
                }
                i += 1;
            }
            let dir = match krate {
                None | Some("voxbridge") => root.to_path_buf(),
                Some(k) => root.join(k.strip_prefix("voxbridge-").unwrap_or(k)),
            };
            assert!(
                dir.join("Cargo.toml").exists(),
                "{}: no crate {krate:?}",
                file.display()
            );
            let mut sources = Vec::new();
            for t in &targets {
                let (single, folder) = (
                    dir.join("tests").join(format!("{t}.rs")),
                    dir.join("tests").join(t),
                );
                assert!(
                    single.exists() || folder.join("main.rs").exists(),
                    "{}: `cargo test --test {t}`: no such test target in {}",
                    file.display(),
                    dir.display()
                );
                sources.push(single);
                sources.push(folder);
            }
            if lib || targets.is_empty() {
                sources.push(dir.join("src"));
                sources.push(dir.join("tests"));
            }
            if let Some(f) = filter {
                let last = f.rsplit("::").next().unwrap_or(f);
                assert!(
                    sources.iter().any(|s| mentions(s, last)),
                    "{}: `{}`: no test or module matches {f:?}",
                    file.display(),
                    words.join(" ")
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} cargo test commands found");
}

/// Whether a `.rs` file at or under `path` has a fn or module named with `word` in it.
fn mentions(path: &std::path::Path, word: &str) -> bool {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return false;
        };
        return entries.filter_map(|e| e.ok()).any(|e| mentions(&e.path(), word));
    }
    if path.extension().is_none_or(|x| x != "rs") {
        return false;
    }
    path.file_stem()
        .is_some_and(|s| s.to_string_lossy().contains(word))
        || std::fs::read_to_string(path).is_ok_and(|t| {
            t.lines().any(|l| {
                let l = l.trim_start();
                (l.starts_with("fn ")
                    || l.starts_with("async fn ")
                    || l.starts_with("mod ")
                    || l.starts_with("pub mod "))
                    && l.split(['(', '{', ';', '<'])
                        .next()
                        .is_some_and(|head| head.contains(word))
            })
        })
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

/// The walkthroughs docs/control-api.md ("Try it on the embedded
/// defaults") and docs/rtp.md (the session API) show run as written, on the
/// embedded defaults and their fixed ports: the daemons they start
/// (`voxbridge serve`, `cargo run --release -- serve`, `voxbridge bot echo`)
/// are this build's binary, started with the line's own variables and
/// waited for; every other line runs in bash with the variables set so far
/// (`openssl` included), each `curl` exactly as written with the HTTP status
/// added (`-w`), `<secret from above>` filled from the answer before it, and
/// `offer.sdp` a fixture in the working directory. Every request succeeds.
#[test]
fn documented_walkthroughs_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let control = walkthrough(&root.join("docs/control-api.md"), "VOXBRIDGE_ADMIN_KEY=change-me");
    let answers = run_walkthrough(&control, &[]);
    let statuses: Vec<u16> = answers.iter().map(|a| a.1).collect();
    assert_eq!(statuses, [201, 200], "{answers:?}");
    assert!(answers[0].2.contains("\"secret\""), "{answers:?}");

    // A far end for the SDP offer's RTP, so the call it creates stays up.
    let far = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        far.local_addr().expect("addr").port()
    );
    let rtp = walkthrough(&root.join("docs/rtp.md"), "export VOXBRIDGE_MEDIA_API_TOKEN");
    let answers = run_walkthrough(&rtp, &[("offer.sdp", &offer)]);
    let statuses: Vec<u16> = answers.iter().map(|a| a.1).collect();
    assert_eq!(statuses, [201, 201, 200, 204], "{answers:?}");
    assert!(answers[0].2.starts_with("v=0"), "an SDP answer: {answers:?}");
    assert!(
        answers[2].2.contains("\"abc\""),
        "the list shows call abc: {answers:?}"
    );
}

/// The indented code block of `doc` holding `marker`, its `\`-continued
/// lines joined.
fn walkthrough(doc: &std::path::Path, marker: &str) -> Vec<String> {
    let text = std::fs::read_to_string(doc).expect("read the doc");
    let mut blocks: Vec<Vec<&str>> = vec![Vec::new()];
    for line in text.lines() {
        match line.strip_prefix("    ") {
            Some(code) => blocks.last_mut().expect("a block").push(code),
            None if blocks.last().is_some_and(|b| !b.is_empty()) => blocks.push(Vec::new()),
            None => {}
        }
    }
    let block = blocks
        .into_iter()
        .find(|b| b.iter().any(|l| l.contains(marker)))
        .unwrap_or_else(|| panic!("{}: no code block with {marker:?}", doc.display()));
    let mut commands = Vec::new();
    let mut cur = String::new();
    for line in block {
        match line.trim_end().strip_suffix('\\') {
            Some(head) => cur.push_str(head),
            None => {
                cur.push_str(line);
                commands.push(std::mem::take(&mut cur));
            }
        }
    }
    commands
}

/// Runs a walkthrough's commands in a fresh directory holding `files`;
/// returns each request's command, HTTP status and body.
fn run_walkthrough(commands: &[String], files: &[(&str, &str)]) -> Vec<(String, u16, String)> {
    let dir = std::env::temp_dir().join(format!("voxbridge-walkthrough-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a working directory");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write a fixture");
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_voxbridge"));
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut daemons = Vec::new();
    let mut answers: Vec<(String, u16, String)> = Vec::new();
    let bash = |script: &str, vars: &[(String, String)]| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .current_dir(&dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "`{script}` failed: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    for command in commands {
        let line = command.split(" # ").next().unwrap_or_default().trim();
        let words: Vec<&str> = line.trim_end_matches('&').split_whitespace().collect();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let daemon = words
            .iter()
            .position(|w| *w == "voxbridge")
            .map(|i| i + 1)
            .or_else(|| {
                Some(
                    words
                        .windows(4)
                        .position(|w| w == ["cargo", "run", "--release", "--"])?
                        + 4,
                )
            });
        if let Some(at) = daemon.filter(|&at| matches!(words.get(at), Some(&"serve" | &"bot"))) {
            let assignments = words[..at].iter().filter_map(|w| w.split_once('='));
            let mut child = Command::new(bin)
                .args(&words[at..])
                .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .envs(assignments)
                .env("RUST_LOG", "warn")
                .current_dir(&dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("the daemon runs");
            let stdout = child.stdout.take().expect("stdout");
            daemons.push(Daemon(child));
            // Each says where it listens once it does.
            let mut ready = String::new();
            BufReader::new(stdout).read_line(&mut ready).expect("a line");
            assert!(ready.starts_with("voxbridge "), "`{line}` said {ready:?}");
        } else if let Some((name, _)) = line
            .strip_prefix("export ")
            .unwrap_or(line)
            .split_once('=')
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            let value = bash(&format!("{line}\nprintf %s \"${name}\""), &vars);
            vars.push((name.to_string(), value));
        } else {
            assert!(
                line.starts_with("curl "),
                "a walkthrough line the test does not know: {line}"
            );
            let secret = answers
                .last()
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a.2).ok())
                .and_then(|v| v["secret"].as_str().map(str::to_string))
                .unwrap_or_default();
            let line = line.replace("<secret from above>", &secret);
            let out = bash(
                &format!("curl() {{ command curl -w '\\n%{{http_code}}' \"$@\"; }}\n{line}"),
                &vars,
            );
            let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
            let status = status.trim().parse().unwrap_or(0);
            answers.push((line, status, body.to_string()));
        }
    }
    drop(daemons);
    let _ = std::fs::remove_dir_all(&dir);
    answers
}

/// README's first command, `voxbridge demo`, as a newcomer runs it (this
/// build's binary, embedded defaults, in a fresh directory): it exits
/// cleanly after its campaign, with the RESULT line README shows (12 calls
/// of 10 targets, the busy ones retried, 6 answered) and the transcript and
/// WAV it says it writes.
#[test]
fn the_readme_demo_runs() {
    let dir = std::env::temp_dir().join(format!("voxbridge-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a working directory");
    let out = Command::new(env!("CARGO_BIN_EXE_voxbridge"))
        .arg("demo")
        .env("RUST_LOG", "warn")
        .current_dir(&dir)
        .stderr(Stdio::null())
        .output()
        .expect("voxbridge demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {stdout}");
    let result = stdout
        .lines()
        .rfind(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}"));
    assert!(
        result.contains(" calls=12 ") && result.contains(" answered=6 "),
        "{result}"
    );
    for file in ["voxbridge-demo/transcript.txt", "voxbridge-demo/call.wav"] {
        let len = std::fs::metadata(dir.join(file)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{file} written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
