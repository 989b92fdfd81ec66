//! sipp (Debian's `sip-tester`, installed by the test command): as the
//! caller ([`sipp`]) and as the far end of calls voxbridge places (a UAS
//! on a free port running one of its own scenarios or a
//! `tests/fixtures/sipp/` one), and its verdict.

use super::within;

/// sipp answering one call on a free UDP port with `scenario` (a fixture
/// name ending in `.xml`, or one of sipp's own such as `uas`); returns the
/// port and the running sipp.
pub fn sipp_uas(scenario: &str) -> (u16, std::process::Child) {
    sipp_uas_on(free_udp_port(), scenario)
}

/// [`sipp_uas`] that gives up after `seconds` rather than 9 (sipp's own
/// `uas` ends with a 4 s pause after the BYE).
pub fn sipp_uas_for(scenario: &str, seconds: u32) -> (u16, std::process::Child) {
    let timeout = format!("{seconds}s");
    sipp_uas_with(free_udp_port(), scenario, &["-timeout", &timeout])
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// [`sipp_uas`] on `port` (one an earlier sipp freed, say).
pub fn sipp_uas_on(port: u16, scenario: &str) -> (u16, std::process::Child) {
    sipp_uas_with(port, scenario, &[])
}

/// [`sipp_uas`] over TCP (`-t t1`) on a free TCP port, returned once sipp
/// accepts connections there (over TCP nothing is retransmitted, so a call
/// placed before would find no one).
pub async fn sipp_uas_tcp(scenario: &str) -> (u16, std::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let started = sipp_uas_with(port, scenario, &["-t", "t1"]);
    within("sipp listening on TCP", async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    started
}

fn sipp_uas_with(port: u16, scenario: &str, extra: &[&str]) -> (u16, std::process::Child) {
    let mut cmd = std::process::Command::new("sipp");
    match scenario.ends_with(".xml") {
        true => cmd.arg("-sf").arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/sipp")
                .join(scenario),
        ),
        false => cmd.args(["-sn", scenario]),
    };
    let child = cmd
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-timeout",
            "9s",
        ])
        .args(["-timeout_error", "-nostdin"])
        .args(extra)
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("sipp not runnable ({e}); run the README's test command, which installs it")
        });
    (port, child)
}

/// Waits for sipp's end: it must have run its scenario through (exit 0).
pub async fn sipp_done(child: std::process::Child, what: &str) {
    let out = within(
        what,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("sipp task")
    .expect("sipp output");
    assert!(out.status.success(), "sipp {what} failed: {}", sipp_report(&out));
}

/// Runs sipp against `target` with `args` (a UAC scenario; from a
/// blocking task, inside the harness's guard) and returns its output.
pub async fn sipp(what: &str, target: std::net::SocketAddr, args: Vec<String>) -> std::process::Output {
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sipp")
            .args(["-i", "127.0.0.1", "-p", "0", "-timeout_error", "-nostdin"])
            .args(&args)
            .arg(target.to_string())
            .current_dir(std::env::temp_dir())
            .output()
    });
    within(what, run).await.expect("sipp task").unwrap_or_else(|e| {
        panic!("sipp not runnable ({e}); run the README's test command, which installs it")
    })
}

/// One call of the fixture `scenario` (in `tests/fixtures/sipp/`) from
/// sipp as the caller to `target`; its output, for the caller to judge.
pub async fn sipp_one_call(target: std::net::SocketAddr, scenario: &'static str) -> std::process::Output {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sipp")
        .join(scenario);
    let mut args = vec!["-sf".to_owned(), path.display().to_string()];
    args.extend("-s bot -m 1 -l 1 -timeout 9s".split(' ').map(String::from));
    sipp(scenario, target, args).await
}

/// The end of sipp's report, for a failed assertion.
pub fn sipp_report(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(30).collect();
    format!("{}\n{}", tail.join("\n"), String::from_utf8_lossy(&out.stderr))
}
