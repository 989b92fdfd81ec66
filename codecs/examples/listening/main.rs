//! The listening benchmark's evaluator (issue 28, `benches/listening.sh`):
//! voice activity detectors run over the labelled set that
//! `benches/listening/make_set.sh` builds, in every noise condition, and
//! scored per 20 ms frame (F1 against labels taken from the clean track),
//! per utterance (how long after its first labelled frame `speech started`
//! is raised, utterances missed, false starts in the pauses) and by CPU
//! (microseconds per second of audio, on one core, resampling included).
//!
//! Usage: `cargo run --release -p voxbridge-codecs --example listening -- SETDIR`
//! Ends with `RESULT vad_f1=.. vad_latency_ms=.. vad_cpu_us_per_call_s=..`
//! for the detector voxbridge ships (`shipped`), F1 averaged over the three
//! noises at 10 dB SNR.

mod amd;
mod echo;
mod noise;

use std::path::{Path, PathBuf};
use std::time::Instant;
use voxbridge_codecs::vad::{Hysteresis, VadConfig, VoiceActivity, HANGOVER_FRAMES};

/// 10 ms at 8 kHz: the label grid.
const LABEL: usize = 80;
/// 20 ms at 8 kHz: the bridge's frame, the scoring grid.
const FRAME: usize = 160;
const RATE: usize = 8000;

fn main() {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        eprintln!("usage: listening SETDIR (built by benches/listening/make_set.sh)");
        std::process::exit(2);
    });
    let utterances = read_dir_wavs(&dir.join("speech"));
    if utterances.is_empty() {
        eprintln!("listening: no utterances in {}", dir.join("speech").display());
        std::process::exit(2);
    }
    let track = Track::build(&utterances, 0x5eed);
    let noises: Vec<(&str, Vec<i16>)> = ["white", "pink", "babble"]
        .iter()
        .map(|n| (*n, read_wav(&dir.join("noise").join(format!("{n}.wav")))))
        .collect();
    let mut conditions: Vec<(String, Vec<i16>)> = vec![("clean".into(), track.clean.clone())];
    for snr in [20.0, 10.0, 5.0] {
        for (name, noise) in &noises {
            conditions.push((format!("{name}@{snr:.0}dB"), track.mixed(noise, snr)));
        }
    }
    println!(
        "set: {} utterances, {:.1} s of track ({:.0}% speech by label), {} conditions",
        utterances.len(),
        track.clean.len() as f64 / RATE as f64,
        100.0 * track.labels.iter().filter(|l| **l).count() as f64 / track.labels.len() as f64,
        conditions.len()
    );
    println!(
        "{:<14} {:<14} {:>6} {:>6} {:>6} {:>9} {:>9} {:>7} {:>7}",
        "detector", "condition", "prec", "recall", "f1", "onset_p50", "onset_p90", "missed", "false+"
    );
    let candidates = [
        Candidate::Shipped,
        Candidate::Neural,
        Candidate::NeuralGated,
        Candidate::Fvad,
    ];
    let mut summary = Vec::new();
    for detector in &candidates {
        let mut cpu_ns = 0u128;
        let mut audio_s = 0f64;
        let mut f1_at_10 = Vec::new();
        let mut onsets_at_10 = Vec::new();
        for (name, audio) in &conditions {
            let run = run_detector(*detector, audio);
            cpu_ns += run.cpu_ns;
            audio_s += audio.len() as f64 / RATE as f64;
            let score = score(&track, &run);
            println!(
                "{:<14} {:<14} {:>6.3} {:>6.3} {:>6.3} {:>7.0}ms {:>7.0}ms {:>7} {:>7}",
                detector.name(),
                name,
                score.precision,
                score.recall,
                score.f1,
                percentile(&score.onsets_ms, 0.5),
                percentile(&score.onsets_ms, 0.9),
                score.missed,
                score.false_starts
            );
            if name.ends_with("@10dB") {
                f1_at_10.push(score.f1);
                onsets_at_10.extend(score.onsets_ms.iter().copied());
            }
        }
        let cpu_us_per_s = cpu_ns as f64 / 1000.0 / audio_s;
        let f1 = f1_at_10.iter().sum::<f64>() / f1_at_10.len() as f64;
        let onset = percentile(&onsets_at_10, 0.5);
        println!(
            "{:<14} summary: F1 at 10 dB {:.3}, onset p50 at 10 dB {:.0} ms, CPU {:.1} us per call-second",
            detector.name(),
            f1,
            onset,
            cpu_us_per_s
        );
        summary.push((*detector, f1, onset, cpu_us_per_s));
    }
    let (ns, rnnoise) = noise::report(&track, &conditions);
    let dialogue = echo::Dialogue::build(&utterances);
    let hiss = &noises.iter().find(|(n, _)| *n == "pink").expect("pink noise").1;
    let barge = echo::report(&dialogue, hiss);
    let (amd_accuracy, amd_p90) = amd::report(&dir.join("amd"), hiss);
    // Speech in every noise heard as a beep would cut a voicemail short.
    let (mut false_beeps, mut speech_s) = (0usize, 0f64);
    for (name, audio) in &conditions {
        let n = amd::beeps_in(audio);
        if n > 0 {
            println!("beep: {n} in speech, {name}");
        }
        false_beeps += n;
        speech_s += audio.len() as f64 / RATE as f64;
    }
    println!(
        "beep: {false_beeps} false beeps in {:.0} s of speech in noise (all conditions)",
        speech_s
    );
    // The bridge runs the caller's direction at the bot's rate, often 16 kHz.
    let (shipped_16k_us, amd_16k_us) = cpu_at_16k(&track.clean);
    println!(
        "{:<14} at 16 kHz: CPU {shipped_16k_us:.1} us per call-second; answering-machine detection {amd_16k_us:.1} (clean track, resampled first)",
        Candidate::Shipped.name()
    );
    let shipped = summary
        .iter()
        .find(|(d, ..)| *d == Candidate::Shipped)
        .copied()
        .expect("the shipped detector is a candidate");
    let line: Vec<String> = summary
        .iter()
        .map(|(d, f1, _, cpu)| format!("{}_f1={f1:.3} {}_cpu_us={cpu:.1}", d.name(), d.name()))
        .collect();
    println!(
        "RESULT vad_f1={:.3} vad_latency_ms={:.0} vad_cpu_us_per_call_s={:.1} vad_cpu_16k_us_per_call_s={shipped_16k_us:.1} amd_cpu_16k_us_per_call_s={amd_16k_us:.1} false_bargein_pct={:.1} missed_bargein_pct={:.1} amd_accuracy_pct={amd_accuracy:.1} amd_p90_ms={amd_p90:.0} false_beeps={false_beeps} ns_snr_gain_db={:.1} ns_cpu_us_per_call_s={:.1} rnnoise_snr_gain_db={:.1} rnnoise_cpu_us_per_call_s={:.0} shipped={} {}",
        shipped.1,
        shipped.2,
        shipped.3,
        barge.false_pct,
        barge.missed_pct,
        ns.gain_db,
        ns.cpu_us,
        rnnoise.gain_db,
        rnnoise.cpu_us,
        shipped.0.name(),
        line.join(" ")
    );
}

/// The shipped detector's CPU per second of a 16 kHz stream, and
/// answering-machine detection's (the track resampled before the clock
/// starts; the detection restarted whenever it decides).
fn cpu_at_16k(track: &[i16]) -> (f64, f64) {
    let mut up = voxbridge_codecs::Resampler::new(8000, 16_000).expect("8k -> 16k");
    let mut wide = vec![0i16; track.len() * 2];
    for (i, o) in track.chunks_exact(FRAME).zip(wide.chunks_exact_mut(2 * FRAME)) {
        up.process(i, o).expect("whole frames");
    }
    let mut vad = VoiceActivity::new(&VadConfig::default(), 16_000).expect("16 kHz");
    let t0 = Instant::now();
    let mut changes = 0usize;
    for frame in wide.chunks_exact(2 * FRAME) {
        changes += vad.push(frame).is_some() as usize;
    }
    let vad_ns = t0.elapsed().as_nanos() as f64;
    std::hint::black_box(changes);
    let config = voxbridge_codecs::vad::AmdConfig::default();
    let mut amd = voxbridge_codecs::vad::Amd::new(config.clone(), 16_000).expect("valid");
    let t0 = Instant::now();
    for frame in wide.chunks_exact(2 * FRAME) {
        if amd.push(frame).is_some() {
            amd = voxbridge_codecs::vad::Amd::new(config.clone(), 16_000).expect("valid");
        }
    }
    let amd_ns = t0.elapsed().as_nanos() as f64;
    let seconds = track.len() as f64 / RATE as f64;
    (vad_ns / 1000.0 / seconds, amd_ns / 1000.0 / seconds)
}

/// The utterances laid out with pauses, and per 10 ms whether it is speech.
struct Track {
    clean: Vec<i16>,
    /// Per 10 ms (LABEL samples).
    labels: Vec<bool>,
    /// Each utterance's first and one-past-last speech label index.
    spans: Vec<(usize, usize)>,
}

impl Track {
    /// Pauses of 0.8 to 2.8 s (longer than the hysteresis's stop, so
    /// every utterance is a start of its own; a fixed pseudo-random sequence) before each
    /// utterance and after the last. A 10 ms piece of an utterance is speech
    /// when its level is within 35 dB of the utterance's loudest piece; gaps
    /// of up to 150 ms between speech pieces (between words) are speech too.
    fn build(utterances: &[Vec<i16>], seed: u64) -> Track {
        let mut rng = seed;
        let mut pause = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ms = 800 + (rng >> 33) % 2000;
            (ms as usize * RATE / 1000) / LABEL * LABEL
        };
        let mut clean = Vec::new();
        let mut labels = Vec::new();
        let mut spans = Vec::new();
        for u in utterances {
            let p = pause();
            clean.extend(std::iter::repeat_n(0i16, p));
            labels.extend(std::iter::repeat_n(false, p / LABEL));
            let mut u = u.clone();
            u.resize(u.len().div_ceil(LABEL) * LABEL, 0);
            let levels: Vec<f64> = u.chunks(LABEL).map(power).collect();
            let loudest = levels.iter().copied().fold(0.0, f64::max);
            let mut speech: Vec<bool> = levels.iter().map(|p| *p > loudest * 10f64.powf(-3.5)).collect();
            bridge_gaps(&mut speech, 15);
            let base = labels.len();
            if let (Some(first), Some(last)) =
                (speech.iter().position(|s| *s), speech.iter().rposition(|s| *s))
            {
                spans.push((base + first, base + last + 1));
            }
            labels.extend(speech);
            clean.extend(u);
        }
        let p = pause();
        clean.extend(std::iter::repeat_n(0i16, p));
        labels.extend(std::iter::repeat_n(false, p / LABEL));
        // Whole 20 ms frames.
        let frames = clean.len() / FRAME;
        clean.truncate(frames * FRAME);
        labels.truncate(frames * 2);
        Track { clean, labels, spans }
    }

    /// The clean track with `noise` (looped) added at `snr_db` below the
    /// speech's mean power over its labelled frames.
    fn mixed(&self, noise: &[i16], snr_db: f64) -> Vec<i16> {
        let speech: Vec<f64> = self
            .clean
            .chunks(LABEL)
            .zip(&self.labels)
            .filter(|(_, l)| **l)
            .map(|(c, _)| power(c))
            .collect();
        let speech_power = speech.iter().sum::<f64>() / speech.len().max(1) as f64;
        let noise_power = power(noise);
        let gain = (speech_power / noise_power / 10f64.powf(snr_db / 10.0)).sqrt();
        self.clean
            .iter()
            .zip(noise.iter().cycle())
            .map(|(s, n)| (*s as f64 + *n as f64 * gain).round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }
}

/// Mean square of the samples.
fn power(samples: &[i16]) -> f64 {
    samples.iter().map(|s| (*s as f64) * (*s as f64)).sum::<f64>() / samples.len().max(1) as f64
}

/// Marks runs of at most `max` false entries between two true ones true.
fn bridge_gaps(speech: &mut [bool], max: usize) {
    let mut last_true: Option<usize> = None;
    for i in 0..speech.len() {
        if speech[i] {
            if let Some(j) = last_true {
                if i - j - 1 <= max {
                    speech[j + 1..i].iter_mut().for_each(|s| *s = true);
                }
            }
            last_true = Some(i);
        }
    }
}

/// A detector under test, each behind the same hysteresis and 160 ms
/// hangover: voxbridge's (`level`, `voxbridge_codecs::vad`), earshot's
/// neural network alone (score >= 0.5; 16 kHz, so the audio is resampled
/// first, inside the timing), the two together (a frame is speech when
/// both say so), and WebRTC's (libfvad, most aggressive mode, 20 ms at
/// 8 kHz).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Candidate {
    Shipped,
    Neural,
    NeuralGated,
    Fvad,
}

impl Candidate {
    fn name(self) -> &'static str {
        match self {
            Candidate::Shipped => "level",
            Candidate::Neural => "earshot",
            Candidate::NeuralGated => "level+earshot",
            Candidate::Fvad => "webrtc",
        }
    }
}

/// earshot's detector behind a resampler from 8 to 16 kHz.
struct Earshot {
    detector: Box<earshot::Detector>,
    up: voxbridge_codecs::Resampler,
    /// 16 kHz samples not yet scored (fewer than a 256-sample hop).
    pending: Vec<i16>,
    wide: Vec<i16>,
    score: f32,
}

impl Earshot {
    fn new() -> Earshot {
        Earshot {
            detector: earshot::Detector::default_boxed(),
            up: voxbridge_codecs::Resampler::new(8000, 16_000).expect("8k -> 16k"),
            pending: Vec::with_capacity(1024),
            wide: vec![0; 2 * FRAME],
            score: 0.0,
        }
    }

    /// Whether the 20 ms frame at 8 kHz is speech: the best score of the
    /// hops it completed (or the last score, if it completed none) >= 0.5.
    fn is_speech(&mut self, frame: &[i16]) -> bool {
        if self.up.process(frame, &mut self.wide).is_err() {
            return false;
        }
        self.pending.extend_from_slice(&self.wide);
        let mut best = None::<f32>;
        let mut used = 0;
        while self.pending.len() - used >= 256 {
            let s = self.detector.predict_i16(&self.pending[used..used + 256]);
            best = Some(best.map_or(s, |b| b.max(s)));
            used += 256;
        }
        self.pending.drain(..used);
        if let Some(b) = best {
            self.score = b;
        }
        self.score >= 0.5
    }
}

/// One detector's decisions over one condition.
struct Run {
    /// Per 20 ms frame: the detector's decision with its short hangover
    /// (`HANGOVER_FRAMES`), without the start and stop hysteresis.
    frames: Vec<bool>,
    /// Frames at which `speech started` was raised.
    starts: Vec<usize>,
    cpu_ns: u128,
}

fn run_detector(candidate: Candidate, audio: &[i16]) -> Run {
    let mut frames = Vec::with_capacity(audio.len() / FRAME);
    let mut starts = Vec::new();
    let t0 = Instant::now();
    match candidate {
        Candidate::Shipped | Candidate::NeuralGated => {
            let mut vad = VoiceActivity::new(&VadConfig::default(), 8000).expect("8 kHz is supported");
            let mut neural = (candidate == Candidate::NeuralGated).then(Earshot::new);
            for (i, frame) in audio.chunks_exact(FRAME).enumerate() {
                let also = neural.as_mut().is_none_or(|n| n.is_speech(frame));
                let change = vad.push_with(frame, also);
                frames.push(vad.frame_is_speech());
                if change == Some(true) {
                    starts.push(i);
                }
            }
        }
        Candidate::Neural | Candidate::Fvad => {
            let mut neural = Earshot::new();
            let mut fvad = webrtc_vad::Vad::new_with_rate_and_mode(
                webrtc_vad::SampleRate::Rate8kHz,
                webrtc_vad::VadMode::VeryAggressive,
            );
            let defaults = VadConfig::default();
            let mut hysteresis = Hysteresis::new(defaults.start_ms, defaults.stop_ms);
            let mut since_speech = u32::MAX;
            for (i, frame) in audio.chunks_exact(FRAME).enumerate() {
                let speech = match candidate {
                    Candidate::Neural => neural.is_speech(frame),
                    _ => fvad.is_voice_segment(frame).unwrap_or(false),
                };
                since_speech = if speech { 0 } else { since_speech.saturating_add(1) };
                frames.push(since_speech <= HANGOVER_FRAMES);
                if hysteresis.update(speech) == Some(true) {
                    starts.push(i);
                }
            }
        }
    }
    let cpu_ns = t0.elapsed().as_nanos();
    Run {
        frames,
        starts,
        cpu_ns,
    }
}

struct Score {
    precision: f64,
    recall: f64,
    f1: f64,
    /// Per detected utterance: ms from its first labelled frame to `speech started`.
    onsets_ms: Vec<f64>,
    missed: usize,
    false_starts: usize,
}

fn score(track: &Track, run: &Run) -> Score {
    let (mut tp, mut fp, mut fn_) = (0f64, 0f64, 0f64);
    for (i, decided) in run.frames.iter().enumerate() {
        let truth = track.labels[2 * i] || track.labels[2 * i + 1];
        match (truth, *decided) {
            (true, true) => tp += 1.0,
            (false, true) => fp += 1.0,
            (true, false) => fn_ += 1.0,
            (false, false) => {}
        }
    }
    let precision = tp / (tp + fp).max(1.0);
    let recall = tp / (tp + fn_).max(1.0);
    let f1 = 2.0 * precision * recall / (precision + recall).max(f64::MIN_POSITIVE);
    // A start belongs to the utterance it falls in (from 100 ms before its
    // first labelled frame to its end); others are false starts.
    let mut onsets_ms = Vec::new();
    let mut missed = 0;
    let mut claimed = vec![false; run.starts.len()];
    for (first, end) in &track.spans {
        let from = (first / 2).saturating_sub(5);
        let to = end.div_ceil(2);
        let hit = run.starts.iter().position(|s| *s >= from && *s < to);
        match hit {
            Some(k) => {
                claimed[k] = true;
                // The frame that raised it ends 20 ms after it begins.
                let raised_ms = (run.starts[k] as f64 + 1.0) * 20.0;
                onsets_ms.push((raised_ms - *first as f64 * 10.0).max(0.0));
            }
            None => missed += 1,
        }
        for (k, s) in run.starts.iter().enumerate() {
            if *s >= from && *s < to {
                claimed[k] = true;
            }
        }
    }
    let false_starts = claimed.iter().filter(|c| !**c).count();
    Score {
        precision,
        recall,
        f1,
        onsets_ms,
        missed,
        false_starts,
    }
}

fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn read_dir_wavs(dir: &Path) -> Vec<Vec<i16>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "wav"));
    paths.sort();
    paths.iter().map(|p| read_wav(p)).collect()
}

/// The samples of a mono PCM16 WAV (the `data` chunk; 8 kHz assumed, as
/// make_set.sh writes).
fn read_wav(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("listening: {}: {e}", path.display());
        std::process::exit(2);
    });
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        if &bytes[at..at + 4] == b"data" {
            let end = (at + 8 + len).min(bytes.len());
            return bytes[at + 8..end]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
        }
        at += 8 + len + (len & 1);
    }
    eprintln!("listening: {}: no data chunk", path.display());
    std::process::exit(2);
}

/// Writes `samples` as a mono 8 kHz PCM16 WAV (for the STOI scorer).
fn write_wav(path: &Path, samples: &[i16]) {
    let data = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + data as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&(RATE as u32).to_le_bytes());
    b.extend_from_slice(&(RATE as u32 * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    if let Err(e) = std::fs::write(path, b) {
        eprintln!("listening: {}: {e}", path.display());
    }
}
