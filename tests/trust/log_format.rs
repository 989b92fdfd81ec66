//! Rule: the log is plain text unless a person reads it on a terminal. The
//! daemon runs with stderr on a pipe (as under systemd, docker or `2> file`)
//! and must write no ANSI escape codes there.

use std::process::{Command, Stdio};

#[test]
fn logs_on_a_pipe_carry_no_colour_codes() {
    let dir = std::env::temp_dir().join(format!("voxbridge-logfmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // A taken port: the daemon opens its store (logging the migrations) and
    // then fails to bind, so it exits by itself after writing log lines.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = dir.join("voxbridge.toml");
    std::fs::write(
        &config,
        format!(
            "metrics_listen = \"off\"\n[control]\nlisten = \"{}\"\nstore = \"sqlite://{}\"\n",
            taken.local_addr().expect("addr"),
            dir.join("store.db").display()
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_voxbridge"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("voxbridge serve runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the port was taken: {log}");
    assert!(log.contains(" INFO "), "no log lines to check: {log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape codes on a pipe: {log:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
