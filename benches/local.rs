//! Benchmark of local dictation with the real Whisper tiny.en model (`scripts/setup --test` puts it in
//! `.tools/models/`): no key, no network.
//!
//! Run with `scripts/bench` or `cargo bench --bench local -- [--quick]`. Reports:
//! - **model load**: `Model::load` of tiny.en (structure check + whisper.cpp), n = 5 (2 quick);
//! - **transcription** of a 2 s espeak-ng sentence, clip-sized audio context, on the free cores, n = 10 (3);
//! - **key release → text typed** through the daemon: Xvfb + xdotool for the key and the typing, espeak-ng played
//!   into the PulseAudio virtual microphone while the key is held, an xterm receiving the text; `t0` just before
//!   `xdotool keyup 105`, `t1` when `dictation_typed` arrives on a subscribed control connection, n = 10 (3);
//!   the first dictation (which opens the microphone and loads the model) is reported on its own; each
//!   dictation's stages (`stages_ms`: capture, spool, prepare, engine, typing, …) and the p50 of each, and
//!   whisper.cpp's time apart from everything else;
//! - **RSS** of the daemon before the first dictation, with the model loaded, and after `dictate.model_idle_min`
//!   unloaded it;
//! - **binary size**: the bench's `ptt` binary, stripped.
//!
//! Two more modes, each instead of the above: `--ctx-table` transcribes 16 espeak-ng clips (bare and padded
//! with silence) at nine audio contexts with and without a vocabulary prompt and prints every transcript and
//! whether it looped (the evidence for the 384-frame floor); `--threads` prints what the free-core rule sees
//! and chooses, and the same clip's time with 1 and with 2 threads, interleaved.
//!
//! Every figure is printed with the load average and the runnable count (`/proc/loadavg`).
//!
//! Targets (issue 13): release → typed ≤ 400 ms for a ~2 s utterance on 2 cores; RSS loaded ≤ 150 MB; stripped
//! binary ≤ 12 MB.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::TestHome;
use common::model::{speech_wav, tiny_en};
use common::pulse::pulse_env;
use common::xterm::Xterm;
use common::xvfb::{Xvfb, xdotool};
use ptt::dictate::local::{self, Model};

const T: Duration = Duration::from_secs(60);
const SENTENCE: &str = "send the report on friday";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn rss_mb(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .expect("VmRSS");
    kb / 1024.0
}

/// `/proc/loadavg`'s first three fields and the runnable count, to print with every figure.
fn load() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let f: Vec<&str> = l.split_whitespace().collect();
    format!(
        "load {} {} {}, runnable {}",
        f.first().unwrap_or(&"?"),
        f.get(1).unwrap_or(&"?"),
        f.get(2).unwrap_or(&"?"),
        f.get(3).unwrap_or(&"?")
    )
}

/// The sentences of the audio-context table: 0.5-4 s of espeak-ng at two speeds.
const TABLE_CLIPS: &[(&str, u32)] = &[
    ("yes", 175),
    ("no", 175),
    ("stop", 175),
    ("hello world", 175),
    ("forty two", 175),
    ("three hundred and twelve", 175),
    ("two thousand and twenty six", 175),
    ("send the report on friday", 175),
    ("call me back when you are free", 175),
    ("open the terminal and run the tests again", 175),
    ("please send the quarterly report before friday afternoon", 175),
    ("the meeting is at half past nine tomorrow morning", 175),
    ("please send the quarterly report before friday afternoon", 130),
    ("the meeting is at half past nine tomorrow morning in the big room upstairs", 150),
    ("send the report on friday", 130),
    ("yes", 120),
];

/// espeak-ng saying `text` at `speed` words a minute, as the spool's 24 kHz PCM16 WAV, with `pad_ms` of
/// silence before and after (the daemon's clip has the pre-roll and the key's slack around the speech).
fn espeak_wav(dir: &std::path::Path, text: &str, speed: u32, pad_ms: usize) -> Vec<u8> {
    let raw = dir.join("table.wav");
    let ok =
        std::process::Command::new("espeak-ng").args(["-s", &speed.to_string(), "-w"]).arg(&raw).arg(text).status();
    assert!(ok.is_ok_and(|s| s.success()), "espeak-ng");
    let pad = vec![0i16; 24 * pad_ms];
    let mut samples = pad.clone();
    samples.extend(
        common::pulse::decode(&raw, 24_000).iter().map(|s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16),
    );
    samples.extend(&pad);
    ptt::dictate::wav::encode(&samples, 24_000)
}

/// `--ctx-table`: every clip of [`TABLE_CLIPS`] (bare, and with 300 ms of silence around it) at several audio
/// contexts, with no prompt and with a vocabulary prompt; prints each transcript and whether it looped.
fn ctx_table(model: &mut Model, dir: &std::path::Path) {
    let threads = local::threads(0);
    println!("audio_ctx table, {threads} threads, {}", load());
    println!("| clip | s | prompt | audio_ctx | ms | tokens | looped | text |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut looped = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for &(text, speed) in TABLE_CLIPS {
        for pad in [0, 300] {
            let pcm = local::prepare(&espeak_wav(dir, text, speed, pad)).expect("prepare");
            let frames = (pcm.len() as u32 * 50).div_ceil(16_000) as i32;
            let mut ctxs: Vec<(String, i32)> = vec![
                ("f+16".into(), (frames + 16 + 7) / 8 * 8),
                ("f+64".into(), (frames + 64 + 7) / 8 * 8),
                ("128".into(), 128),
                ("192".into(), 192),
                ("256".into(), 256),
                ("384".into(), 384),
                ("512".into(), 512),
                ("768".into(), 768),
                ("1500".into(), 1500),
            ];
            ctxs.retain(|(_, c)| *c >= frames);
            for prompt in [None, Some("Kubernetes, PostgreSQL.")] {
                for (label, ctx) in &ctxs {
                    let t = model.transcribe_with_audio_ctx(&pcm, prompt, None, threads, *ctx).expect("transcribe");
                    let bad = t.looped(pcm.len());
                    let e = looped.entry(label.clone()).or_default();
                    e.0 += 1;
                    e.1 += usize::from(bad);
                    println!(
                        "| {text} ({speed} wpm{}) | {:.1} | {} | {ctx} ({label}) | {:.0} | {} | {} | {} |",
                        if pad > 0 { ", padded" } else { "" },
                        pcm.len() as f64 / 16_000.0,
                        if prompt.is_some() { "vocabulary" } else { "none" },
                        t.took.as_secs_f64() * 1000.0,
                        t.tokens,
                        if bad { "LOOP" } else { "no" },
                        t.text
                    );
                }
            }
        }
    }
    println!("looped per context (runs, loops): {looped:?}; {}", load());
}

/// `--threads`: what the free-core rule sees and chooses now, and what one and two threads take on the
/// bench's sentence (interleaved, so both see the same machine).
fn thread_choice(model: &mut Model, dir: &std::path::Path, n: usize) {
    let pcm = local::prepare(&espeak_wav(dir, SENTENCE, 175, 0)).expect("prepare");
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let others = local::others_runnable();
        let chosen = local::threads(0);
        let t1 = model.transcribe(&pcm, None, None, 1).expect("transcribe").took.as_secs_f64() * 1000.0;
        let t2 = model.transcribe(&pcm, None, None, 2).expect("transcribe").took.as_secs_f64() * 1000.0;
        println!(
            "others runnable {:.2} -> {chosen} thread(s); 1 thread {t1:.0} ms, 2 threads {t2:.0} ms; {}",
            others.unwrap_or(f64::NAN),
            load()
        );
        one.push(t1);
        two.push(t2);
    }
    let (one, two) = (sorted(one), sorted(two));
    println!("1 thread p50 {:.0} ms, 2 threads p50 {:.0} ms (n={n})", percentile(&one, 0.5), percentile(&two, 0.5));
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_load, n_run) = if quick { (2, 3) } else { (5, 10) };
    println!(
        "ptt {} local dictation benchmark ({}); {}",
        env!("CARGO_PKG_VERSION"),
        if quick { "quick" } else { "full" },
        load()
    );
    let model_path = tiny_en();
    let scratch = tempfile::tempdir().expect("tempdir");

    // The engine alone.
    let mut loads = Vec::new();
    let mut model = None;
    for _ in 0..n_load {
        drop(model.take());
        let m = Model::load(&model_path).expect("load");
        loads.push(m.load_time.as_secs_f64() * 1000.0);
        model = Some(m);
    }
    let mut model = model.expect("a model");
    if std::env::args().any(|a| a == "--threads") {
        thread_choice(&mut model, scratch.path(), n_run);
        return;
    }
    if std::env::args().any(|a| a == "--ctx-table") {
        ctx_table(&mut model, scratch.path());
        return;
    }
    let loads = sorted(loads);
    let wav = speech_wav(scratch.path(), SENTENCE);
    let pcm = local::prepare(&wav).expect("prepare");
    let threads = local::threads(0);
    let mut runs = Vec::new();
    let mut heard = String::new();
    let mut ctx = 0;
    for _ in 0..n_run {
        let t = model.transcribe(&pcm, None, None, threads).expect("transcribe");
        runs.push(t.took.as_secs_f64() * 1000.0);
        (heard, ctx) = (t.text, t.audio_ctx);
    }
    // What the 384-frame floor costs: the same clip with a clip-sized context (50 frames a second plus 64).
    let clip_ctx = ((pcm.len() as u64 * 50 / 16_000 + 64).div_ceil(8) * 8) as i32;
    let mut clip_runs = Vec::new();
    let mut clip_heard = String::new();
    for _ in 0..n_run {
        let t = model.transcribe_with_audio_ctx(&pcm, None, None, threads, clip_ctx).expect("transcribe");
        clip_runs.push(t.took.as_secs_f64() * 1000.0);
        clip_heard = t.text;
    }
    drop(model);
    let runs = sorted(runs);
    let clip_runs = sorted(clip_runs);
    let secs = pcm.len() as f64 / 16_000.0;
    println!(
        "model load (tiny.en, {:.1} MiB), n={n_load}: p50 {:.0} ms, max {:.0} ms",
        74.1,
        percentile(&loads, 0.5),
        loads[loads.len() - 1]
    );
    println!(
        "transcription of {secs:.1} s of speech (audio_ctx {ctx}, {threads} threads), n={n_run}: p50 {:.0} ms, p90 {:.0} ms; heard {heard:?}; {}",
        percentile(&runs, 0.5),
        percentile(&runs, 0.9),
        load()
    );
    println!(
        "the same with a clip-sized audio_ctx {clip_ctx} (no floor), n={n_run}: p50 {:.0} ms, p90 {:.0} ms; heard {clip_heard:?}",
        percentile(&clip_runs, 0.5),
        percentile(&clip_runs, 0.9)
    );

    // Through the daemon.
    let _pulse = pulse_env(1);
    let xvfb = Xvfb::start();
    let mut home = TestHome::empty();
    let models = home.home().join(".local/share/ptt/models");
    std::fs::create_dir_all(&models).expect("models dir");
    std::fs::copy(&model_path, models.join("ggml-tiny.en.bin")).expect("install the model");
    home.write_config("[dictate]\napi_base = \"http://127.0.0.1:9/v1\"\nmodel_idle_min = 0.1\n[audio]\ncues = false\n");
    home.env.push(("PTT_LOG".into(), "info".into()));
    home.use_pulse();
    home.env.push(("DISPLAY".into(), xvfb.display.clone()));
    let speech = home.scratch("sentence.wav");
    std::fs::write(&speech, &wav).expect("speech file");
    let term = Xterm::start(&xvfb.display);
    let d = home.start_daemon();
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_mb(d.pid());

    let rx = home.timed_events("dictation_typed");
    let status = |home: &TestHome| home.json(&["status", "--json"]);
    let (mut total, mut internal, mut first) = (Vec::new(), Vec::new(), 0.0);
    let mut stages: Vec<(String, Vec<f64>)> = Vec::new();
    let mut rest = Vec::new();
    let mut rss_loaded: f64 = 0.0;
    for i in 0..=n_run {
        xdotool(&xvfb.display, &["keydown", "105"]);
        common::wait_until(T, "the microphone open", || status(&home)["audio"]["input"]["ok"].is_string());
        let played = std::process::Command::new("paplay").args(["-d", "micfeed"]).arg(&speech).status();
        assert!(played.is_ok_and(|s| s.success()), "paplay");
        let t0 = Instant::now();
        xdotool(&xvfb.display, &["keyup", "105"]);
        let (t1, ev) = rx.recv_timeout(T).expect("dictation_typed event");
        let ms = t1.duration_since(t0).as_secs_f64() * 1000.0;
        if i == 0 {
            first = ms;
        } else {
            total.push(ms);
            internal.push(ev["release_to_typed_ms"].as_f64().unwrap_or(f64::NAN));
            rest.push(ms - ev["stages_ms"]["engine"].as_f64().unwrap_or(f64::NAN));
            println!("  dictation {i}: {ms:.0} ms, stages {}; {}", ev["stages_ms"], load());
            if let Some(m) = ev["stages_ms"].as_object() {
                for (k, v) in m {
                    let v = v.as_f64().unwrap_or(f64::NAN);
                    match stages.iter_mut().find(|(s, _)| s == k) {
                        Some((_, vs)) => vs.push(v),
                        None => stages.push((k.clone(), vec![v])),
                    }
                }
            }
        }
        rss_loaded = rss_loaded.max(rss_mb(d.pid()));
        std::thread::sleep(Duration::from_millis(300));
    }
    let typed = term.received();
    // The thread count the free-core rule chose for each dictation, from the journal's "transcribed locally" lines.
    let chosen: Vec<String> = d
        .log_text()
        .lines()
        .filter(|l| l.contains("transcribed locally in"))
        .filter_map(|l| l.rsplit_once(", ").map(|(_, t)| t.trim_end_matches(')').to_string()))
        .collect();
    common::wait_until(T, "the model unloaded", || status(&home)["dictation"]["model"]["state"] == "unloaded");
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = rss_mb(d.pid());
    let (total, internal) = (sorted(total), sorted(internal));
    let (p50, p90, max) = (percentile(&total, 0.5), percentile(&total, 0.9), total[total.len() - 1]);
    println!("typed: {:?}", typed.trim());
    println!("threads chosen per dictation (first included): {chosen:?}; {}", load());
    println!("key release -> text typed, local tiny.en, n={n_run}: p50 {p50:.0} ms, p90 {p90:.0} ms, max {max:.0} ms");
    println!(
        "  daemon's own release -> typed: p50 {:.0} ms; first dictation (opens the microphone, loads the model): {first:.0} ms",
        percentile(&internal, 0.5)
    );
    let stage_p50 = |name: &str| {
        stages.iter().find(|(s, _)| s == name).map(|(_, v)| percentile(&sorted(v.clone()), 0.5)).unwrap_or(f64::NAN)
    };
    let engine_p50 = stage_p50("engine");
    println!(
        "  where it goes (p50 per stage, ms): {}",
        stages.iter().map(|(k, _)| format!("{k} {:.1}", stage_p50(k))).collect::<Vec<_>>().join(", ")
    );
    let rest = sorted(rest);
    println!(
        "  whisper.cpp p50 {engine_p50:.0} ms; everything else p50 {:.0} ms, p90 {:.0} ms (release -> typed less whisper.cpp's time, per run)",
        percentile(&rest, 0.5),
        percentile(&rest, 0.9)
    );
    println!(
        "daemon RSS: {rss_before:.1} MB before the first dictation, {rss_loaded:.1} MB with the model loaded, {rss_after:.1} MB after it was unloaded"
    );

    // The binary.
    let bin = std::path::Path::new(common::PTT);
    let stripped = scratch.path().join("ptt-stripped");
    std::fs::copy(bin, &stripped).expect("copy the binary");
    let ok = std::process::Command::new("strip").arg(&stripped).status();
    assert!(ok.is_ok_and(|s| s.success()), "strip");
    let size = std::fs::metadata(&stripped).expect("size").len() as f64 / 1e6;
    println!(
        "binary: {} ({:.1} MB), stripped {size:.1} MB",
        bin.display(),
        std::fs::metadata(bin).expect("size").len() as f64 / 1e6
    );

    println!();
    println!("| local dictation benchmark | result | target | ok |");
    println!("|---|---|---|---|");
    println!("| model load, tiny.en (n={n_load}) | p50 {:.0} ms | reported | – |", percentile(&loads, 0.5));
    println!(
        "| transcription of {secs:.1} s of speech, {threads} threads (n={n_run}) | p50 {:.0} ms, p90 {:.0} ms | reported | – |",
        percentile(&runs, 0.5),
        percentile(&runs, 0.9)
    );
    println!(
        "| the same, clip-sized audio_ctx {clip_ctx} instead of the 384 floor (n={n_run}) | p50 {:.0} ms, p90 {:.0} ms | reported | – |",
        percentile(&clip_runs, 0.5),
        percentile(&clip_runs, 0.9)
    );
    println!(
        "| key release -> text typed, tiny.en, ~2 s utterance (n={n_run}) | p50 {p50:.0} ms, p90 {p90:.0} ms, max {max:.0} ms | <= 400 ms | {} |",
        if p90 <= 400.0 { "yes" } else { "NO" }
    );
    println!(
        "| daemon RSS, model loaded / unloaded (before: {rss_before:.1} MB) | {rss_loaded:.1} MB / {rss_after:.1} MB | <= 150 MB loaded | {} |",
        if rss_loaded <= 150.0 { "yes" } else { "NO" }
    );
    println!("| stripped release binary | {size:.1} MB | <= 12 MB | {} |", if size <= 12.0 { "yes" } else { "NO" });
}
