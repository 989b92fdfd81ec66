//! baresip (Debian's `baresip-core`, installed by the test command), a SIP
//! phone no one here wrote, calls voxbridge: it plays espeak-ng speech from
//! a file (its `aufile` source), voxbridge's echo bot sends it back, and
//! baresip records what it hears (its `sndfile` dump of the decoded audio).
//! Per codec baresip offers alone (PCMU, PCMA, G.722, Opus) the recording,
//! aligned to the speech, must correlate with it (>= 0.9 for G.711 and
//! G.722; Opus, lossy by design, >= 0.6), and baresip's hangup at the end
//! of its file must end the call as the caller's. The figures are printed
//! (`-- --nocapture`). And baresip carries out a transfer the bot asks for
//! (REFER, its call to the target, NOTIFY); driven through its `ctrl_tcp`
//! module, it puts its call on hold and resumes it, and voxbridge's hangup
//! reaches it as BYE.

use crate::harness::{echo_bot, fresh_dir, pipecat_route, Daemon};
use std::path::{Path, PathBuf};
use std::time::Duration;
use voxbridge_media::{CallEvent, Config, HangupCause};

/// Runs `cmd`, failing the test with its output when it fails.
fn run(cmd: &mut std::process::Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} not runnable ({e}); run the README's test command"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mono PCM16 samples of a WAV file (its 44-byte header skipped), at 8 kHz
/// through ffmpeg whatever its rate.
fn samples_8k(wav: &Path, dir: &Path) -> Vec<i16> {
    let raw = dir.join(format!(
        "{}.s16",
        wav.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    run(
        std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-i"])
            .arg(wav)
            .args(["-ar", "8000", "-ac", "1", "-f", "s16le"])
            .arg(&raw),
        "ffmpeg",
    );
    let bytes = std::fs::read(&raw).expect("ffmpeg's output");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The best normalised correlation of `got` against `sent` over lags up to
/// `max_lag` samples (coarse on 4x decimated signals, refined at full rate).
fn best_correlation(sent: &[i16], got: &[i16], max_lag: usize) -> f64 {
    let corr = |lag: usize| -> f64 {
        let n = sent.len().min(got.len().saturating_sub(lag));
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for i in 0..n {
            let (x, y) = (f64::from(sent[i]), f64::from(got[i + lag]));
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        xy / (xx * yy).sqrt().max(1e-9)
    };
    let coarse = (0..max_lag.min(got.len()))
        .step_by(4)
        .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
        .unwrap_or(0);
    (coarse.saturating_sub(4)..coarse + 4)
        .map(corr)
        .fold(f64::MIN, f64::max)
}

/// baresip's config: no sound card (its player is an unconnected
/// `aubridge` device), the speech file as its source, its decoded audio
/// dumped to `dump/`, `codec` alone offered.
fn baresip_config(dir: &Path, speech: &Path, codec: (&str, &str)) {
    let (module, name) = codec;
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:0\nmodule_path /usr/lib/baresip/modules\n\
         module {module}.so\nmodule aufile.so\nmodule aubridge.so\nmodule sndfile.so\nmodule menu.so\n\
         module_app account.so\naudio_source aufile,{}\naudio_player aubridge,nowhere\n\
         audio_alert aubridge,nowhere\nsnd_path {}\n",
        speech.display(),
        dir.join("dump").display()
    );
    std::fs::write(dir.join("config"), config).expect("config");
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:baresip@127.0.0.1>;regint=0;audio_codecs={name}\n"),
    )
    .expect("accounts");
    std::fs::create_dir_all(dir.join("dump")).expect("dump dir");
}

/// A 440 Hz tone of `seconds` at 8 kHz mono (baresip's G.711 file source),
/// `tone.wav` in `dir`.
fn tone_wav(dir: &Path, seconds: u32) -> PathBuf {
    let wav = dir.join("tone.wav");
    run(
        std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=440:duration={seconds}"))
            .args(["-ar", "8000", "-ac", "1", "-sample_fmt", "s16"])
            .arg(&wav),
        "ffmpeg",
    );
    wav
}

/// A daemon with SIP on whose default route is voxbridge's echo bot at
/// `rate` Hz.
async fn echo_daemon(rate: u32) -> Daemon {
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&echo_bot().await, rate));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    Daemon::with_config(config).await
}

/// baresip calls `sip` with `codec` and quits after `seconds`; returns its log.
async fn baresip_call(dir: PathBuf, sip: std::net::SocketAddr, seconds: u32) -> String {
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-e", &format!("/dial sip:bot@{sip}"), "-t", &seconds.to_string()])
            .current_dir(&dir)
            .output()
    });
    let out = tokio::time::timeout(Duration::from_secs(u64::from(seconds) + 20), run)
        .await
        .expect("baresip quits after -t")
        .expect("baresip task")
        .unwrap_or_else(|e| {
            panic!("baresip not runnable ({e}); run the README's test command, which installs it")
        });
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test]
async fn baresip_hears_its_speech_back_through_the_echo_bot_per_codec() {
    let dir = fresh_dir("baresip");
    let espeak = dir.join("espeak.wav");
    run(
        std::process::Command::new("espeak-ng")
            .arg("-w")
            .arg(&espeak)
            .arg("Hello, this is a test of the telephone bridge. One two three four five."),
        "espeak-ng",
    );
    // baresip's file source must have the codec's own rate and channels.
    let speech_at = |rate: u32, channels: u32| -> PathBuf {
        let speech = dir.join(format!("speech-{rate}-{channels}.wav"));
        run(
            std::process::Command::new("ffmpeg")
                .args(["-loglevel", "error", "-y", "-i"])
                .arg(&espeak)
                .args([
                    "-ar",
                    &rate.to_string(),
                    "-ac",
                    &channels.to_string(),
                    "-sample_fmt",
                    "s16",
                ])
                .arg(&speech),
            "ffmpeg",
        );
        speech
    };
    let sent = samples_8k(&speech_at(8000, 1), &dir);

    let mut d = echo_daemon(16000).await;
    let sip = d.sip.expect("SIP on");

    let mut report = Vec::new();
    let codecs = [
        ("g711", "PCMU", 8000, 1),
        ("g711", "PCMA", 8000, 1),
        ("g722", "G722/16000/1", 16000, 1),
        ("opus", "opus/48000/2", 48000, 2),
    ];
    for (module, name, rate, channels) in codecs {
        let codec = (module, name);
        let run_dir = dir.join(name.replace('/', "-"));
        std::fs::create_dir_all(&run_dir).expect("dir");
        baresip_config(&run_dir, &speech_at(rate, channels), codec);
        let log = baresip_call(run_dir.clone(), sip, 7).await;
        assert!(
            log.contains("Call established"),
            "{}: baresip's call did not come up:\n{log}",
            codec.1
        );
        let (_, cause) = match d
            .event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
            .await
        {
            CallEvent::Hungup { call_id, cause, .. } => (call_id, cause),
            _ => unreachable!("matched above"),
        };
        assert_eq!(
            cause,
            HangupCause::CallerHangup,
            "{}: baresip hung up at the end of its file",
            codec.1
        );
        let dump = std::fs::read_dir(run_dir.join("dump"))
            .expect("dump dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| panic!("{}: baresip dumped nothing it heard:\n{log}", codec.1));
        let got = samples_8k(&dump, &run_dir);
        let corr = best_correlation(&sent, &got, 16_000);
        report.push(format!("{} {corr:.3}", codec.1));
        // Opus is lossy by design (0.92 here): it must carry the speech, the
        // waveform bar is the G.711 and G.722 runs'.
        let floor = if module == "opus" { 0.6 } else { 0.9 };
        assert!(
            corr >= floor,
            "{}: correlation {corr:.3} < {floor} ({report:?})",
            codec.1
        );
    }
    println!(
        "baresip round trips (correlation after alignment): {}",
        report.join(", ")
    );
}

/// The bot hands baresip's call on to a person (sipp as the target's phone,
/// its own `uas` scenario): voxbridge's REFER is carried out by baresip,
/// which calls the target and reports it up by NOTIFY; voxbridge then ends
/// its call `transferred`, and sipp's call with baresip completes.
#[tokio::test]
async fn baresip_carries_out_the_bots_transfer() {
    let dir = fresh_dir("baresip-refer");
    let speech = tone_wav(&dir, 6);
    let (agent_port, agent) = crate::harness::sipp::sipp_uas_for("uas", 30);
    let mut bot = crate::harness::TestBot::start().await;
    let mut config = Config::default();
    config
        .routes
        .insert("default".into(), pipecat_route(&bot.url, 8000));
    config.sip.listen = Some("127.0.0.1:0".parse().expect("addr"));
    let mut d = Daemon::with_config(config).await;
    let sip = d.sip.expect("SIP on");
    let target = format!("sip:agent@127.0.0.1:{agent_port}");
    let bots = tokio::spawn(async move {
        let mut conn = bot.accept().await;
        let ask = serde_json::json!({"type": "voxbridge.transfer", "target": target}).to_string();
        conn.send(crate::harness::pipecat_msg(
            voxbridge_proto::pipecat::Kind::Message(voxbridge_proto::pipecat::MessageFrame { data: ask }),
        ))
        .await;
        conn
    });
    baresip_config(&dir, &speech, ("g711", "PCMU"));
    let log = baresip_call(dir.clone(), sip, 8).await;
    let _conn = crate::harness::within("the bot connection", bots)
        .await
        .expect("bot task");
    let transferred = d
        .event("the transfer", |e| matches!(e, CallEvent::Transferred { .. }))
        .await;
    assert!(
        matches!(&transferred, CallEvent::Transferred { target, .. } if target.contains("agent@")),
        "{log}"
    );
    let cause = match d
        .event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await
    {
        CallEvent::Hungup { cause, .. } => cause,
        _ => unreachable!("matched above"),
    };
    assert_eq!(cause, HangupCause::Transferred);
    crate::harness::sipp::sipp_done(agent, "uas as the transfer target (baresip's call)").await;
}

/// baresip in the background, driven through its `ctrl_tcp` module: JSON
/// commands out, responses and call events in, each a netstring.
struct BaresipCtrl {
    child: std::process::Child,
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    /// baresip's output, read to its end by a thread (the pipe never fills).
    log: std::thread::JoinHandle<String>,
}

impl BaresipCtrl {
    /// Starts baresip on `dir`'s config (whose `ctrl_tcp_listen` is `ctrl`)
    /// and connects once it says it is ready.
    async fn start(dir: &Path, ctrl: std::net::SocketAddr) -> BaresipCtrl {
        use std::io::BufRead;
        let mut child = std::process::Command::new("baresip")
            .arg("-f")
            .arg(dir)
            .args(["-t", "60"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("baresip not runnable ({e}); run the README's test command"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let log = std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            let mut log = String::new();
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("baresip is ready") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        crate::harness::within("baresip to start", ready)
            .await
            .expect("baresip says it is ready");
        let stream = tokio::net::TcpStream::connect(ctrl)
            .await
            .expect("baresip's ctrl_tcp listens once it is ready");
        BaresipCtrl {
            child,
            stream,
            buf: Vec::new(),
            log,
        }
    }

    async fn command(&mut self, command: &str, params: &str) {
        use tokio::io::AsyncWriteExt;
        let json = serde_json::json!({"command": command, "params": params, "token": command}).to_string();
        self.stream
            .write_all(format!("{}:{json},", json.len()).as_bytes())
            .await
            .expect("ctrl_tcp write");
    }

    /// The next netstring from baresip, as JSON.
    async fn next(&mut self) -> serde_json::Value {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let len: usize = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .expect("a netstring length");
                if self.buf.len() > colon + len {
                    let body = self.buf[colon + 1..colon + 1 + len].to_vec();
                    self.buf.drain(..colon + 2 + len);
                    return serde_json::from_slice(&body).expect("ctrl_tcp sends JSON");
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.expect("ctrl_tcp read");
            assert!(n > 0, "baresip closed its ctrl_tcp link");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next call event of type `kind` (others skipped); its JSON.
    async fn event(&mut self, kind: &str) -> serde_json::Value {
        crate::harness::within(&format!("baresip's {kind}"), async {
            loop {
                let v = self.next().await;
                if v["event"] == true && v["type"] == kind {
                    return v;
                }
            }
        })
        .await
    }

    /// Quits baresip; its output.
    async fn quit(mut self) -> String {
        self.command("quit", "").await;
        let mut child = self.child;
        let log = self.log;
        tokio::task::spawn_blocking(move || {
            let _ = child.wait();
            log.join().unwrap_or_default()
        })
        .await
        .expect("baresip wait")
    }
}

/// baresip puts its call on hold and resumes it (re-INVITEs voxbridge
/// answers, `recvonly` then `sendrecv`, each reaching baresip as the
/// answer it waits for), then voxbridge hangs the call up (the API's
/// hangup): baresip gets voxbridge's BYE and closes its call.
#[tokio::test]
async fn baresip_holds_and_resumes_then_voxbridge_hangs_up() {
    let dir = fresh_dir("baresip-hold");
    let ctrl = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port for ctrl_tcp");
    let tone = tone_wav(&dir, 60);
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:0\nmodule_path /usr/lib/baresip/modules\n\
         module g711.so\nmodule aufile.so\nmodule aubridge.so\nmodule menu.so\nmodule ctrl_tcp.so\n\
         module_app account.so\naudio_source aufile,{}\naudio_player aubridge,nowhere\n\
         audio_alert aubridge,nowhere\nctrl_tcp_listen {ctrl}\n",
        tone.display()
    );
    std::fs::write(dir.join("config"), config).expect("config");
    std::fs::write(
        dir.join("accounts"),
        "<sip:baresip@127.0.0.1>;regint=0;audio_codecs=PCMU\n",
    )
    .expect("accounts");

    let mut d = echo_daemon(8000).await;
    let sip = d.sip.expect("SIP on");

    let mut baresip = BaresipCtrl::start(&dir, ctrl).await;
    baresip.command("dial", &format!("sip:bot@{sip}")).await;
    baresip.event("CALL_ESTABLISHED").await;
    let call_id = match d
        .event("the call", |e| matches!(e, CallEvent::Created { .. }))
        .await
    {
        CallEvent::Created { info, .. } => info.call_id,
        _ => unreachable!("matched above"),
    };
    let reinvites = |d: &Daemon| d.metrics.sip.lock().expect("metrics").reinvites;
    baresip.command("hold", "").await;
    baresip.event("CALL_REMOTE_SDP").await;
    assert_eq!(reinvites(&d), 1, "voxbridge answered the hold");
    baresip.command("resume", "").await;
    baresip.event("CALL_REMOTE_SDP").await;
    assert_eq!(reinvites(&d), 2, "voxbridge answered the resume");

    assert!(d.rtp.hangup(&call_id), "the call is up");
    let closed = baresip.event("CALL_CLOSED").await;
    let cause = match d
        .event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await
    {
        CallEvent::Hungup { cause, .. } => cause,
        _ => unreachable!("matched above"),
    };
    assert_eq!(cause, HangupCause::ApiHangup);
    let s = *d.metrics.sip.lock().expect("metrics");
    let log = baresip.quit().await;
    assert_eq!(
        (s.byes_sent, s.byes_received),
        (1, 0),
        "voxbridge's BYE closed baresip's call ({}): {s:?}\n{log}",
        closed["param"]
    );
}
