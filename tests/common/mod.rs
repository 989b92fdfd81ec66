//! Helpers for tests that drive real peers (ffmpeg, sox, espeak-ng).
//!
//! The README's test command installs those tools; a test that cannot find one
//! fails with a message saying so, rather than silently passing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs a peer tool, failing the test with its stderr if it does not succeed.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} not runnable ({e}); run the README's test command, which installs it")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs ffmpeg quietly (`-nostdin -v error -y` + `args` split on whitespace; paths must have none).
pub fn ffmpeg(args: &str) -> Output {
    let mut all = vec!["-nostdin", "-v", "error", "-y"];
    all.extend(args.split_whitespace());
    run("ffmpeg", &all)
}

/// A path inside `dir` as a string, for command lines.
pub fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_string()
}

/// A fresh temporary directory for one test.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxbridge-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Real speech from espeak-ng, resampled by ffmpeg to raw PCM16 at `rate`.
pub fn speech(dir: &Path, rate: u32) -> PathBuf {
    let wav = dir.join("espeak.wav");
    run(
        "espeak-ng",
        &[
            "-s",
            "150",
            "-w",
            wav.to_str().expect("utf-8 path"),
            "Hello, thank you for calling. Please tell me how I can help you today.",
        ],
    );
    let raw = dir.join(format!("speech_{rate}.raw"));
    ffmpeg(&format!(
        "-i {} -ar {rate} -ac 1 -f s16le {}",
        wav.to_str().expect("utf-8"),
        raw.to_str().expect("utf-8")
    ));
    raw
}

/// Reads a raw PCM16 LE file.
pub fn read_pcm(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .expect("read pcm")
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Writes a raw PCM16 LE file.
pub fn write_pcm(path: &Path, pcm: &[i16]) {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write pcm");
}

/// SNR of `test` against `reference` (dB) over their common length, after `skip` samples.
pub fn snr_db(reference: &[i16], test: &[i16], skip: usize) -> f64 {
    let n = reference.len().min(test.len());
    let (mut s, mut e) = (0f64, 0f64);
    for i in skip..n {
        let r = reference[i] as f64;
        s += r * r;
        e += (r - test[i] as f64).powi(2);
    }
    10.0 * (s / e.max(1e-9)).log10()
}

/// A Python of one of the venvs `scripts/setup.sh` builds (`interop-venv`:
/// pipecat and its peers; `control-venv`: schemathesis, jsonschema_rs),
/// failing the test when it is missing.
fn venv_python(venv: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| format!("{home}/.cache"));
    let py = Path::new(&cache).join("voxbridge").join(venv).join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/setup.sh (the README's test command does)",
        py.display()
    );
    py
}

/// The Python with pipecat (or `VOXBRIDGE_INTEROP_PYTHON`).
pub fn interop_python() -> PathBuf {
    match std::env::var("VOXBRIDGE_INTEROP_PYTHON") {
        Ok(p) => PathBuf::from(p),
        Err(_) => venv_python("interop-venv"),
    }
}

/// The speech recognizer venv's Python (PocketSphinx, for tests/interop/stt_server.py).
#[allow(dead_code)]
pub fn stt_python() -> PathBuf {
    venv_python("stt-venv")
}

/// The control venv's Python (jsonschema_rs, confluent-kafka).
pub fn control_python() -> PathBuf {
    venv_python("control-venv")
}

/// Runs `tests/interop/<script>` with `py` and `args`; fails the test with
/// `what` and the script's output unless it succeeds.
pub fn run_interop(py: &Path, script: &str, args: &[&std::ffi::OsStr], what: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let out = Command::new(py)
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A peer script of `tests/interop` that listens and prints `LISTEN <port>`
/// first: the child, its port and the rest of its output's lines.
pub fn spawn_listening(
    py: &Path,
    script: &str,
    args: &[&str],
) -> (
    std::process::Child,
    String,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let mut child = Command::new(py)
        .arg(&script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python runs");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    let port = first
        .strip_prefix("LISTEN ")
        .unwrap_or_else(|| panic!("{script:?} said {first:?} instead of LISTEN <port>"))
        .to_owned();
    (child, port, lines)
}

/// The normalized correlation of two signals over what they share (the
/// shorter one's length): 1 for the same signal, about 0 for unrelated ones.
pub fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1.0)
}
