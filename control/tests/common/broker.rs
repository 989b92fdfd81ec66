//! A tansu broker (Kafka protocol, SQLite storage; see `../shared/KAFKA.md`,
//! installed by `scripts/setup.sh`) started and killed by a test, on a port
//! of its own. Shared by the control tests and the root split-mode test
//! (`#[path]`), so it uses nothing but std.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("VOXBRIDGE_TANSU") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/tansu-0.6.0/bin/tansu")
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One tansu broker with SQLite storage in its own directory.
pub struct Broker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    pub fn new() -> Broker {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "voxbridge-kafka-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut b = Broker {
            dir,
            port: free_port(),
            child: None,
        };
        b.start();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let url = format!("tcp://{}", self.addr());
        let bin = tansu();
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} (scripts/setup.sh installs it): {e}", bin.display()));
        self.child = Some(child);
        // Ready in ~50 ms; poll the port (bounded), the broker has no other signal.
        for _ in 0..200 {
            if TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("tansu did not listen on {}", self.addr());
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
