//! With PulseAudio stopped: every audio entry point returns the clear reason, nothing panics, and after the
//! server comes back the next use opens the devices again. A test binary of its own, because it points this
//! process at a server of its own and ALSA's configuration is process-wide.

mod common;

use common::pulse::pulse_script;
use crossbeam_channel::{Receiver, unbounded};
use ptt::audio::{
    AudioConfig, AudioError, AudioEvent, Capture, CaptureConfig, DeviceState, Direction, Playback, PlaybackConfig,
    probe,
};
use std::time::{Duration, Instant};

const REASON: &str = "no audio device: is PulseAudio/PipeWire running? cpal said: ";

fn next_event(events: &Receiver<AudioEvent>, what: &str) -> AudioEvent {
    events.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("no event within 5 s ({what})"))
}

#[test]
fn d_no_sound_server_is_a_clear_status_and_the_next_use_reopens() {
    let dir = std::env::temp_dir().join(format!("ptt-au-noserver-{}", std::process::id()));
    // A server of our own, started and then stopped: exactly "PulseAudio stopped".
    let env = pulse_script("start", &dir);
    pulse_script("stop", &dir);
    for (k, v) in &env {
        // SAFETY: the only test in this binary; no other thread reads the environment yet.
        unsafe { std::env::set_var(k, v) };
    }

    let t = Instant::now();
    let report = probe(&AudioConfig::default());
    eprintln!("probe took {:.0} ms: {:?}", t.elapsed().as_secs_f64() * 1000.0, report.reason());
    for line in report.lines() {
        eprintln!("{line}");
    }
    assert!(!report.voice_available());
    for r in [&report.input, &report.output] {
        match r {
            Err(e @ AudioError::NoDevice(_)) => assert!(e.to_string().starts_with(REASON), "{e}"),
            other => panic!("expected NoDevice, got {other:?}"),
        }
    }
    let reason = report.reason().unwrap_or_default();
    assert!(reason.starts_with(REASON), "{reason}");

    // `ptt doctor` says the same without a single line of libasound's own chatter, and lists no ALSA plugin
    // pseudo-devices as if they were sound cards.
    let home = common::TestHome::empty();
    let mut doctor = home.cmd(&["doctor"]);
    for (k, v) in &env {
        doctor.env(k, v);
    }
    let out = doctor.output().expect("run ptt doctor");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("ALSA lib"), "libasound printed: {all}");
    assert!(all.contains("[warn] audio: voice is off: no audio device"), "{all}");
    for pseudo in ["lavrate", "speexrate", "device null", "device oss", "device jack", "upmix"] {
        assert!(!all.contains(pseudo), "{pseudo} listed: {all}");
    }
    assert!(all.contains("device pulse") && all.contains("pseudo-device(s) not shown"), "{all}");

    let (events_tx, events) = unbounded();
    let mic = Capture::spawn(CaptureConfig::default(), events_tx.clone()).unwrap_or_else(|e| panic!("spawn: {e}"));
    let speaker = Playback::spawn(PlaybackConfig::default(), events_tx).unwrap_or_else(|e| panic!("spawn: {e}"));
    // As in a voice session: the idle output stays open (paused) instead of closing, so that the server's
    // disappearance below happens under two open streams.
    speaker.set_keep_open(true);

    mic.set_gate(true, true);
    match next_event(&events, "input") {
        AudioEvent::Unavailable { direction: Direction::Input, error } => {
            assert!(error.to_string().starts_with(REASON), "{error}")
        }
        other => panic!("expected input Unavailable, got {other:?}"),
    }
    assert!(matches!(mic.state(), DeviceState::Unavailable(ref why) if why.starts_with(REASON)), "{:?}", mic.state());
    assert!(!mic.gate_open(), "a gate on no device does not stay open");

    let at = speaker.push(&[0i16; 2400]);
    assert_eq!(at, 0);
    match next_event(&events, "output") {
        AudioEvent::Unavailable { direction: Direction::Output, error } => {
            assert!(error.to_string().starts_with(REASON), "{error}")
        }
        other => panic!("expected output Unavailable, got {other:?}"),
    }
    let stats = speaker.stats();
    eprintln!("status while down: input {}; output {}", mic.state(), stats.state);
    assert!(!speaker.is_playing(), "nothing piles up without a device: {stats:?}");
    // More use while down: no panic, no flood of attempts (at most one per second).
    for _ in 0..10 {
        speaker.push(&[0i16; 480]);
        mic.set_gate(true, true);
        mic.set_gate(false, true);
    }
    assert_eq!(speaker.flush(), speaker.position());

    // The server comes back; after the retry pause the next use opens both.
    pulse_script("start", &dir);
    std::thread::sleep(Duration::from_millis(1100));
    while events.try_recv().is_ok() {}
    speaker.push(&[0i16; 2400]);
    mic.set_gate(true, true);
    let mut opened = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while opened.len() < 2 && Instant::now() < deadline {
        if let Ok(AudioEvent::Opened { direction, info }) = events.recv_timeout(Duration::from_millis(200)) {
            eprintln!("reopened {direction}: {info}");
            opened.push(direction);
        }
    }
    assert!(opened.contains(&Direction::Input) && opened.contains(&Direction::Output), "reopened only {opened:?}");

    // The server vanishes under open streams: both are reported lost (not a hang, not a panic), within 6 s
    // of the kill. The stop runs beside the wait: it returns only once every process of the server has
    // exited, which on PipeWire takes seconds after the streams already broke.
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    let stopper = {
        let dir = dir.clone();
        std::thread::spawn(move || pulse_script("stop", &dir))
    };
    let mut lost = Vec::new();
    while lost.len() < 2 && killed.elapsed() < Duration::from_secs(6) {
        if let Ok(AudioEvent::Lost { direction, reason }) = events.recv_timeout(Duration::from_millis(100)) {
            eprintln!("lost {direction} after {:.0} ms: {reason}", killed.elapsed().as_secs_f64() * 1000.0);
            lost.push(direction);
        }
    }
    if let Err(e) = stopper.join() {
        std::panic::resume_unwind(e);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(lost.contains(&Direction::Input) && lost.contains(&Direction::Output), "lost only {lost:?}");
    assert!(matches!(speaker.state(), DeviceState::Unavailable(_)) || matches!(speaker.state(), DeviceState::Opening));
    drop(mic);
    drop(speaker);
}
