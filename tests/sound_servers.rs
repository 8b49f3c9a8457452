//! `scripts/pulse-test-env` on PipeWire: it starts pipewire, wireplumber and pipewire-pulse with the same sinks
//! as PulseAudio, and its stop routine kills only what it started: pipewire-pulse writes the same `pulse/pid`
//! file as PulseAudio, and a routine that trusted that file would kill a PipeWire server it did not start.

mod common;

use std::path::Path;
use std::process::Command;

use common::pulse::{require, root};

fn script(verb: &str, dir: &Path) -> std::process::Output {
    Command::new(root().join("scripts/pulse-test-env"))
        .arg(verb)
        .env("PTT_PULSE_DIR", dir)
        .env("PTT_SOUND_SERVER", "pipewire")
        .output()
        .expect("run scripts/pulse-test-env")
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn pipewire_starts_with_the_sinks_and_stop_spares_a_pipewire_pulse_it_did_not_start() {
    for tool in ["pipewire", "wireplumber", "pipewire-pulse"] {
        require(tool, tool);
    }
    let dir = tempfile::Builder::new().prefix("ptt-pw-test-").tempdir().expect("tempdir");
    let out = script("start", dir.path());
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    let runtime = dir.path().join("runtime");
    let pactl = |args: &[&str]| {
        Command::new("pactl")
            .args(args)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("PULSE_SERVER", format!("unix:{}/pulse/native", runtime.display()))
            .output()
            .expect("run pactl")
    };
    let info = String::from_utf8_lossy(&pactl(&["info"]).stdout).into_owned();
    assert!(info.contains("on PipeWire"), "pactl talks to PipeWire: {info}");
    let sinks = String::from_utf8_lossy(&pactl(&["list", "short", "sinks"]).stdout).into_owned();
    assert!(sinks.contains("speaker") && sinks.contains("micfeed"), "{sinks}");

    let pid_of = |name: &str| -> i32 {
        std::fs::read_to_string(dir.path().join(name)).expect("pid file").trim().parse().expect("pid")
    };
    let pulse = pid_of("pipewire-pulse.pid");
    let in_pid_file: i32 =
        std::fs::read_to_string(runtime.join("pulse/pid")).expect("pulse/pid").trim().parse().expect("pid");
    assert_eq!(in_pid_file, pulse, "pipewire-pulse writes PulseAudio's pid file");

    // As if this PipeWire had been started by someone else: the routine finds only the pid file.
    let aside = dir.path().join("started-elsewhere");
    std::fs::create_dir_all(&aside).expect("mkdir");
    for f in ["pipewire-pulse.pid", "wireplumber.pid", "pipewire.pid", "dbus.pid"] {
        std::fs::rename(dir.path().join(f), aside.join(f)).expect("move pid file");
    }
    let out = script("stop", dir.path());
    assert!(out.status.success(), "stop: {}", String::from_utf8_lossy(&out.stderr));
    assert!(alive(pulse), "pipewire-pulse was killed through PulseAudio's pid file");
    assert!(pactl(&["info"]).status.success(), "the server still answers");

    // Its own pids: everything goes.
    let pids: Vec<i32> = ["pipewire-pulse.pid", "wireplumber.pid", "pipewire.pid", "dbus.pid"]
        .iter()
        .map(|f| std::fs::read_to_string(aside.join(f)).expect("pid").trim().parse().expect("pid"))
        .collect();
    for f in ["pipewire-pulse.pid", "wireplumber.pid", "pipewire.pid", "dbus.pid"] {
        std::fs::rename(aside.join(f), dir.path().join(f)).expect("move back");
    }
    let out = script("stop", dir.path());
    assert!(out.status.success(), "stop: {}", String::from_utf8_lossy(&out.stderr));
    for pid in pids {
        assert!(!alive(pid), "{pid} left running");
    }
}
