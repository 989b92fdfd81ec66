//! Rules of the operator's log: one `info` line per call start and end
//! (with its cause) whatever else takes the call events (here the control
//! sidecar, the default), and plain text unless a person reads it on a
//! terminal: with stderr on a pipe or a file (systemd, docker, `2> file`)
//! no ANSI escape codes.

use crate::harness;

use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_logs_its_start_and_end_in_plain_text() {
    let bot_url = harness::echo_bot().await;
    let dir = harness::fresh_dir("calllog");
    let config = dir.join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            dir.display()
        ),
    )
    .expect("config");
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let (mut daemon, addr) = harness::ServeProcess::start_with(&config, &bot_url, |cmd| {
        cmd.env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stderr(Stdio::from(log));
    });

    // One AudioSocket call: its UUID, a frame, then the caller hangs up and
    // the daemon closes the connection.
    let mut caller = harness::Caller::connect(addr.parse().expect("addr"), harness::uuid(77)).await;
    caller.send_audio(&[0; 160]).await;
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        use tokio::io::AsyncReadExt;
        caller.sock.read_to_end(&mut rest).await
    })
    .await;
    assert!(closed.is_ok(), "the daemon did not close the call's connection");

    // SIGTERM and wait: once the process is gone its log is complete.
    let status = daemon
        .sigterm(Duration::from_secs(30))
        .await
        .expect("the daemon ends after SIGTERM");
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(status.success(), "{text}");
    let call_id = uuid::Uuid::from_bytes(harness::uuid(77)).to_string();
    let started = text
        .lines()
        .find(|l| l.contains("call started") && l.contains(&call_id));
    assert!(
        started.is_some_and(|l| l.contains(" INFO ")),
        "no start line for {call_id}: {text}"
    );
    let ended = text
        .lines()
        .find(|l| l.contains("call ended") && l.contains(&call_id));
    assert!(
        ended.is_some_and(|l| l.contains(" INFO ") && l.contains("cause=\"caller_hangup\"")),
        "no end line with its cause for {call_id}: {text}"
    );
    assert!(!text.contains('\u{1b}'), "ANSI escape codes in a file: {text:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
