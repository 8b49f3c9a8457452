//! Real-device tests on PulseAudio null sinks (scripts/pulse-test-env): speech into the virtual microphone
//! comes out as 24 kHz chunks; a tone pushed to playback is heard on the speaker's monitor at the right pitch
//! and length; a flush stops it at once and the played counter agrees with what the monitor heard.

mod common;

use common::pulse::{Recorder, decode, pulse_env, require, serial};
use crossbeam_channel::{Receiver, unbounded};
use ptt::audio::analysis::{active_span, i16_to_f32, rms, zero_crossing_hz};
use ptt::audio::resample::f32_to_i16;
use ptt::audio::{
    AudioEvent, CHUNK_SAMPLES, Capture, CaptureConfig, Captured, DeviceState, Direction, Playback, PlaybackConfig,
    probe,
};
use std::f32::consts::TAU;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The number of tests below: the last one to finish stops the server.
const TESTS: usize = 5;

fn wait_for(events: &Receiver<AudioEvent>, what: &str, pred: impl Fn(&AudioEvent) -> bool) -> AudioEvent {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ev) if pred(&ev) => return ev,
            Ok(ev) => eprintln!("(event while waiting for {what}: {ev:?})"),
            Err(_) => break,
        }
    }
    panic!("no {what} event within 5 s");
}

/// The tone's frequency as the median of 20 ms windows' zero-crossing estimates: a recorder that
/// drops or pads a few periods on a loaded sound server spoils a window or two, not the answer.
fn steady_hz(samples: &[f32], rate: u32) -> f32 {
    let mut per_window: Vec<f32> =
        samples.chunks(rate as usize / 50).map(|w| zero_crossing_hz(w, rate)).filter(|hz| *hz > 0.0).collect();
    per_window.sort_by(f32::total_cmp);
    per_window.get(per_window.len() / 2).copied().unwrap_or(0.0)
}

fn tone_1k(ms: usize) -> Vec<i16> {
    (0..ms * 24).map(|i| f32_to_i16(0.5 * (TAU * 1000.0 * i as f32 / 24_000.0).sin())).collect()
}

#[test]
fn a_speech_into_the_mic_comes_out_as_24k_chunks() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    require("espeak-ng", "espeak-ng");
    require("paplay", "pulseaudio-utils");
    let wav = std::env::temp_dir().join(format!("ptt-au-speech-{}.wav", std::process::id()));
    let ok = Command::new("espeak-ng").arg("-w").arg(&wav).arg("hello world").status().is_ok_and(|s| s.success());
    assert!(ok, "espeak-ng -w failed");
    let clip = decode(&wav, 24_000);
    let clip_secs = clip.len() as f64 / 24_000.0;
    let (c0, c1) = active_span(&clip, 24_000, 0.01).unwrap_or_else(|| panic!("espeak clip is silent"));

    let (events_tx, events) = unbounded();
    let mic = Capture::spawn(CaptureConfig::default(), events_tx).unwrap_or_else(|e| panic!("spawn: {e}"));
    mic.open();
    let opened =
        wait_for(&events, "input Opened", |e| matches!(e, AudioEvent::Opened { direction: Direction::Input, .. }));
    eprintln!("{opened:?}");
    std::thread::sleep(Duration::from_millis(300)); // the stream settles; pre-roll fills with silence

    // The loop drains the channel as chunks come, like the daemon's select! does, until the turn ends.
    let rx = mic.receiver().clone();
    let collector = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut first_at = None;
        loop {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Captured::Chunk(c)) => {
                    first_at.get_or_insert_with(Instant::now);
                    got.push(c);
                }
                Ok(Captured::TurnEnd) => return (got, first_at, Some(Instant::now())),
                Err(_) => return (got, first_at, None),
            }
        }
    });
    let gate_opened = Instant::now();
    mic.set_gate(true, false);
    let status = Command::new("paplay").args(["-d", "micfeed"]).arg(&wav).stdin(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "paplay -d micfeed failed");
    std::thread::sleep(Duration::from_millis(60)); // what paplay drained is still on its way through vmic
    let gate_closed = Instant::now();
    mic.set_gate(false, false);
    let gate_secs = gate_opened.elapsed().as_secs_f64();
    let (chunks, first_at, ended_at) = collector.join().unwrap_or_else(|_| panic!("collector panicked"));
    let ended_at = ended_at.unwrap_or_else(|| panic!("no TurnEnd after the gate closed"));
    eprintln!(
        "capture: first chunk {:.1} ms after the gate opened; TurnEnd {:.1} ms after it closed",
        first_at.map_or(f64::NAN, |t| (t - gate_opened).as_secs_f64() * 1000.0),
        (ended_at - gate_closed).as_secs_f64() * 1000.0
    );
    let stats = mic.stats();
    assert!(chunks.iter().all(|c| c.len() == CHUNK_SAMPLES));
    let pcm: Vec<i16> = chunks.iter().flatten().copied().collect();
    let audio = i16_to_f32(&pcm);
    let captured_secs = pcm.len() as f64 / 24_000.0;
    let level = rms(&audio);
    let (s0, s1) = active_span(&audio, 24_000, 0.01).unwrap_or_else(|| panic!("captured audio is silent"));
    let speech_captured = (s1 - s0) as f64 / 24_000.0;
    let speech_clip = (c1 - c0) as f64 / 24_000.0;
    eprintln!(
        "capture: clip {clip_secs:.3} s (speech {speech_clip:.3} s); gate open {gate_secs:.3} s; \
         captured {} chunks = {captured_secs:.3} s (speech {speech_captured:.3} s), rms {level:.3}; stats {stats:?}",
        chunks.len()
    );
    let _ = std::fs::remove_file(&wav);
    assert!(level > 0.01, "captured audio is silent (rms {level})");
    // 24 kHz: the gate was open for gate_secs of wall clock and that much audio came out.
    assert!((captured_secs - gate_secs).abs() / gate_secs < 0.15, "{captured_secs} s captured over {gate_secs} s");
    // The whole clip arrived (the gate stayed open until paplay had played it; a loaded sound server
    // may take longer than the clip to play it, so only a lower bound), at the right speed (the speech span).
    assert!(captured_secs >= clip_secs * 0.85, "captured {captured_secs} s, clip {clip_secs} s");
    assert!(
        (speech_captured - speech_clip).abs() / speech_clip < 0.15,
        "speech {speech_captured} s vs {speech_clip} s"
    );
    assert_eq!(stats.chunks_dropped, 0);
}

#[test]
fn b_a_pushed_tone_is_heard_at_1khz_for_500ms() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let (events_tx, events) = unbounded();
    let speaker = Playback::spawn(PlaybackConfig::default(), events_tx).unwrap_or_else(|e| panic!("spawn: {e}"));
    speaker.open();
    let opened =
        wait_for(&events, "output Opened", |e| matches!(e, AudioEvent::Opened { direction: Direction::Output, .. }));
    eprintln!("{opened:?}");
    let rec = Recorder::start("speaker.monitor", 48_000);
    std::thread::sleep(Duration::from_millis(300));

    let before = speaker.played_ms();
    // Deltas arrive in pieces, as from the network.
    for piece in tone_1k(500).chunks(2400) {
        speaker.push(piece);
    }
    speaker.finish();
    assert!(speaker.is_playing());
    wait_for(&events, "PlaybackIdle", |e| matches!(e, AudioEvent::PlaybackIdle));
    std::thread::sleep(Duration::from_millis(300));
    let recording = rec.stop();
    let stats = speaker.stats();
    let played = speaker.played_ms() - before;

    let (a, b) =
        active_span(&recording.samples, 48_000, 0.05).unwrap_or_else(|| panic!("nothing heard on the monitor"));
    let span_ms = (b - a) as f64 / 48.0;
    // The time the tone sounded: its loud 5 ms windows, so that a gap a loaded sound server puts in the
    // middle (seen on PipeWire at load 10: a 500 ms tone spread over 585-675 ms) does not count as tone.
    let heard_ms = recording.samples[a..b].chunks(240).filter(|w| rms(w) > 0.05).count() as f64 * 5.0;
    let hz = steady_hz(&recording.samples[a + 2400..b - 2400], 48_000);
    eprintln!(
        "playback: heard {heard_ms:.1} ms (over {span_ms:.1} ms) at {hz:.1} Hz; played counter {played} ms; \
         stats {stats:?}"
    );
    // 3 %: a wrong sample rate anywhere (24 vs 48 kHz, 44.1 vs 48 kHz: 8.8 %) is far outside it.
    assert!((hz - 1000.0).abs() < 30.0, "heard {hz} Hz");
    assert!((heard_ms - 500.0).abs() <= 30.0, "heard {heard_ms} ms");
    assert_eq!(played, 500);
    assert!(!speaker.is_playing());
    assert!(matches!(speaker.state(), DeviceState::Open(_)));
}

#[test]
fn c_flush_stops_the_tone_within_100ms_and_the_counter_agrees() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let (events_tx, events) = unbounded();
    let speaker = Playback::spawn(PlaybackConfig::default(), events_tx).unwrap_or_else(|e| panic!("spawn: {e}"));
    speaker.open();
    wait_for(&events, "output Opened", |e| matches!(e, AudioEvent::Opened { direction: Direction::Output, .. }));
    let rec = Recorder::start("speaker.monitor", 48_000);
    std::thread::sleep(Duration::from_millis(300));

    let start = speaker.push(&tone_1k(3000));
    let deadline = Instant::now() + Duration::from_secs(5);
    while speaker.played_ms() < 800 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let flushed_at = Instant::now();
    let reached = speaker.flush();
    let item_ms = (reached - start) / 24;
    std::thread::sleep(Duration::from_millis(100));
    let played_after = speaker.played_ms();
    assert!(!speaker.is_playing());
    std::thread::sleep(Duration::from_millis(400));
    let recording = rec.stop();
    let stats = speaker.stats();

    let (a, b) =
        active_span(&recording.samples, 48_000, 0.05).unwrap_or_else(|| panic!("nothing heard on the monitor"));
    let heard_ms = recording.samples[a..b].chunks(240).filter(|w| rms(w) > 0.05).count() as f64 * 5.0;
    let end = recording.time_of(b - 1).unwrap_or_else(|| panic!("no timestamp for the tone's end"));
    let stop_ms = end.saturating_duration_since(flushed_at).as_secs_f64() * 1000.0;
    let overshoot = if end < flushed_at { -(flushed_at.duration_since(end).as_secs_f64() * 1000.0) } else { stop_ms };
    eprintln!(
        "flush: item position at flush {item_ms} ms, played counter {played_after} ms, heard {heard_ms:.1} ms; \
         tone ended on the monitor {overshoot:.1} ms after flush(); stats {stats:?}"
    );
    assert!(overshoot <= 100.0, "the tone went on for {overshoot} ms after the flush");
    assert!((played_after as f64 - heard_ms).abs() <= 150.0, "counter {played_after} ms vs heard {heard_ms} ms");
    assert!((item_ms as f64 - heard_ms).abs() <= 150.0, "truncate position {item_ms} ms vs heard {heard_ms} ms");
    assert!(stats.dropped_ms >= 2000, "the rest of the tone was dropped: {stats:?}");
}

#[test]
fn doctor_probe_lists_devices_and_opens_both_directions() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let report = probe(&ptt::audio::AudioConfig::default());
    for line in report.lines() {
        eprintln!("{line}");
    }
    assert!(report.voice_available(), "{:?}", report.reason());
    assert!(report.devices.as_ref().is_ok_and(|d| d.iter().any(|d| d.id == "default")));
    let named = probe(&ptt::audio::AudioConfig {
        input: Some("pulse".into()),
        output: Some("nonexistent-xyz".into()),
        ..Default::default()
    });
    assert!(named.input.is_ok(), "{:?}", named.input);
    let err = named.output.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("no output device matches \"nonexistent-xyz\""), "{err}");
}

#[test]
fn e_key_press_sends_the_preroll_at_once_and_release_ends_the_turn() {
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let (events_tx, events) = unbounded();
    let mic = Capture::spawn(CaptureConfig::default(), events_tx).unwrap_or_else(|e| panic!("spawn: {e}"));
    mic.open();
    wait_for(&events, "input Opened", |e| matches!(e, AudioEvent::Opened { direction: Direction::Input, .. }));
    std::thread::sleep(Duration::from_millis(500)); // the pre-roll fills
    let pressed = Instant::now();
    mic.set_gate(true, true);
    // The pre-roll (300 ms of audio, 15 chunks) comes at once: that much audio arriving in less wall time
    // than it lasts can only come from the buffer, however slow the machine.
    let preroll_chunks = 15;
    for n in 0..preroll_chunks {
        let got = mic.receiver().recv_timeout(Duration::from_secs(2));
        assert!(matches!(got, Ok(Captured::Chunk(_))), "chunk {n}: {got:?}");
    }
    let preroll_ms = pressed.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_millis(400));
    let released = Instant::now();
    mic.set_gate(false, true);
    let held_ms = (released - pressed).as_secs_f64() * 1000.0;
    let mut chunks = preroll_chunks;
    let end_ms = loop {
        match mic.receiver().recv_timeout(Duration::from_secs(2)) {
            Ok(Captured::Chunk(_)) => chunks += 1,
            Ok(Captured::TurnEnd) => break released.elapsed().as_secs_f64() * 1000.0,
            Err(e) => panic!("no TurnEnd: {e}"),
        }
    };
    let turn_ms = chunks as f64 * 20.0;
    eprintln!(
        "key press → {preroll_chunks} pre-roll chunks {preroll_ms:.2} ms; held {held_ms:.1} ms; \
         release → TurnEnd {end_ms:.1} ms; turn {turn_ms} ms of audio"
    );
    assert!(preroll_ms < 280.0, "300 ms of pre-roll took {preroll_ms} ms to arrive: not sent at once");
    // 300 ms of pre-roll plus what was captured while the key was held, within a capture period (PipeWire
    // gives 100 ms) either way.
    assert!((turn_ms - (300.0 + held_ms)).abs() <= 120.0, "{turn_ms} ms of audio for {held_ms} ms held");
}
