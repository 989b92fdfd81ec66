//! The answering-machine part of the listening benchmark: every greeting
//! of `amd/` (people: "Hello?"; voicemails: a greeting, then a 1 kHz beep)
//! after 300 to 1,200 ms of silence from the answer, then silence (a person
//! waits for the caller), over a faint line hiss, through `Amd` with
//! Asterisk's default settings. A verdict is right when it names who
//! answered; `not_sure` is wrong. `amd_p90_ms` is the 90th percentile of
//! the time from the answer to the decision, over all calls.

use super::{percentile, read_wav, FRAME, RATE};
use std::path::Path;
use voxbridge_codecs::vad::{Amd, AmdConfig, AmdVerdict, BeepDetector};

/// Accuracy in percent and the p90 decision time in ms.
pub fn report(dir: &Path, hiss: &[i16]) -> (f64, f64) {
    let mut calls: Vec<(String, bool, Vec<i16>)> = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    for (k, p) in paths.iter().enumerate() {
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let machine = name.starts_with("machine");
        if !machine && !name.starts_with("human") {
            continue;
        }
        let lead = (300 + (k * 137) % 900) * RATE / 1000;
        let mut audio = vec![0i16; lead];
        audio.extend(read_wav(p));
        if machine {
            audio.extend(std::iter::repeat_n(0i16, 300 * RATE / 1000));
            audio.extend((0..400 * RATE / 1000).map(|i| {
                (8000.0 * (i as f64 * 2.0 * std::f64::consts::PI * 1000.0 / RATE as f64).sin()) as i16
            }));
        }
        audio.extend(std::iter::repeat_n(0i16, 6 * RATE));
        let hiss_rms = super::power(hiss).sqrt().max(1.0);
        let gain = 32768.0 * 10f64.powf(-55.0 / 20.0) / hiss_rms;
        for (i, s) in audio.iter_mut().enumerate() {
            *s = (*s as f64 + hiss[i % hiss.len()] as f64 * gain)
                .round()
                .clamp(-32768.0, 32767.0) as i16;
        }
        calls.push((name, machine, audio));
    }
    for (after, greeting) in [
        (800, 1500),
        (600, 1500),
        (500, 1500),
        (500, 1200),
        (400, 1200),
        (600, 1200),
    ] {
        let config = AmdConfig {
            after_greeting_silence_ms: after,
            greeting_ms: greeting,
            ..AmdConfig::default()
        };
        let (acc, p90, _) = run(&calls, &config, false);
        println!(
            "amd: after_greeting_silence_ms={after} greeting_ms={greeting}: {acc:.1}% right, p90 {p90:.0} ms"
        );
    }
    let found = calls.iter().filter(|c| c.1 && beeps_in(&c.2) > 0).count();
    let heard_in_people: usize = calls.iter().filter(|c| !c.1).map(|c| beeps_in(&c.2)).sum();
    println!(
        "beep: found in {found} of {} voicemails; {heard_in_people} in the people's answers",
        calls.iter().filter(|c| c.1).count()
    );
    let (accuracy, p90, times) = run(&calls, &AmdConfig::default(), true);
    println!(
        "amd: {} calls ({} people, {} machines), default settings: {accuracy:.1}% right, decision p50 {:.0} ms, p90 {p90:.0} ms",
        calls.len(),
        calls.iter().filter(|c| !c.1).count(),
        calls.iter().filter(|c| c.1).count(),
        percentile(&times, 0.5)
    );
    (accuracy, p90)
}

/// Beeps the detector finds in `audio` (8 kHz).
pub fn beeps_in(audio: &[i16]) -> usize {
    let mut d = BeepDetector::new(RATE as u32);
    audio.chunks_exact(FRAME).filter_map(|f| d.push(f)).count()
}

/// Accuracy (%), p90 decision time (ms) and every decision time of `calls` under `config`.
fn run(calls: &[(String, bool, Vec<i16>)], config: &AmdConfig, verbose: bool) -> (f64, f64, Vec<f64>) {
    let (mut right, mut times, mut wrong) = (0usize, Vec::new(), Vec::new());
    let mut by_cause = std::collections::BTreeMap::<String, usize>::new();
    for (name, machine, audio) in calls {
        let mut amd = Amd::new(config.clone(), 8000).expect("valid settings");
        let decision = audio.chunks_exact(FRAME).find_map(|f| amd.push(f));
        let Some(d) = decision else {
            wrong.push(format!("{name}: undecided"));
            continue;
        };
        times.push(d.after_ms as f64);
        *by_cause
            .entry(format!("{}/{}", d.verdict.as_str(), d.cause.as_str()))
            .or_default() += 1;
        let expected = if *machine {
            AmdVerdict::Machine
        } else {
            AmdVerdict::Human
        };
        if d.verdict == expected {
            right += 1;
        } else {
            wrong.push(format!(
                "{name}: {} ({}) at {} ms",
                d.verdict.as_str(),
                d.cause.as_str(),
                d.after_ms
            ));
        }
    }
    let accuracy = 100.0 * right as f64 / calls.len().max(1) as f64;
    let p90 = percentile(&times, 0.9);
    if verbose {
        println!("amd: decided by {by_cause:?}");
        for w in &wrong {
            println!("amd: wrong: {w}");
        }
    }
    (accuracy, p90, times)
}
