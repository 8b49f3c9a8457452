//! Wayland typing proven in a real compositor: a headless sway (run as a throwaway user the tests create and
//! remove, see `common/sway.rs`) with a foot terminal whose input is read back, and a whole dictation per
//! compositor: the push-to-talk key over the socket, the PulseAudio (or PipeWire) virtual microphone, the
//! transcription stub, and ptt's `wtype` or clipboard typer. The daemon runs as the test's user and reaches the
//! compositor through `WAYLAND_DISPLAY=<absolute socket path>`. Fails loudly when sway, foot, wtype,
//! wl-clipboard or PulseAudio are missing; never skips.

mod common;

use std::time::Duration;

use common::pulse::{pulse_env, require, serial};
use common::sway::Sway;
use common::transcribe_stub::{self, Reply, TranscribeStub};
use common::{TestHome, describe, wait_until};

const T: Duration = Duration::from_secs(20);
/// Tests in this binary that use PulseAudio (pulse_env stops the server after the last one).
const TESTS: usize = 2;
const SAID: &str = "hello world from ptt";

fn wayland_home(stub: &TranscribeStub, sway: &Sway, typer: &str) -> TestHome {
    let display = ("WAYLAND_DISPLAY", sway.socket.display().to_string());
    transcribe_stub::dictation_home(stub, &format!("retries = 1\ntyper = \"{typer}\""), display)
}

/// Holds the push-to-talk key over the socket for `ms` (the microphone hears the null source's silence).
fn dictate_by_socket(home: &TestHome, ms: u64) {
    let out = home.run(&["key", "press", "ptt"]);
    assert!(out.status.success(), "{}", describe(&out));
    std::thread::sleep(Duration::from_millis(ms));
    let out = home.run(&["key", "release", "ptt"]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn a_dictation_lands_complete_in_five_fresh_compositors_in_a_row() {
    require("wtype", "wtype");
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.set_default(Reply::text(SAID));
    let want = format!("{SAID} ");
    for round in 1..=5 {
        let sway = Sway::start();
        // `auto`: the compositor offers the virtual-keyboard protocol, so wtype is chosen.
        let home = wayland_home(&stub, &sway, "auto");
        let doctor = home.run(&["doctor"]);
        let report = String::from_utf8_lossy(&doctor.stdout);
        assert!(report.contains("types with wtype here (Wayland session"), "round {round}: {report}");
        assert!(report.contains("typer wtype: usable"), "round {round}: {report}");
        let d = home.start_daemon();
        dictate_by_socket(&home, 600);
        let got = sway.wait_typed(&want, T);
        assert_eq!(got, want, "round {round}: the terminal got {got:?}\ndaemon log:\n{}", d.log_text());
        wait_until(T, "typed in status", || home.json(&["status", "--json"])["dictation"]["typed"] == 1);
    }
    assert_eq!(stub.uploads().len(), 5);
}

#[test]
fn the_clipboard_typer_pastes_and_puts_the_users_clipboard_back() {
    require("wl-copy", "wl-clipboard");
    require("wl-paste", "wl-clipboard");
    let _serial = serial();
    let _done = pulse_env(TESTS);
    let stub = TranscribeStub::start();
    stub.set_default(Reply::text(SAID));
    let sway = Sway::start();
    let users = "the user's own clipboard";
    let copied = sway.client("wl-copy").arg(users).status().expect("run wl-copy");
    assert!(copied.success(), "wl-copy failed");
    let paste = || {
        let out = sway.client("wl-paste").arg("--no-newline").output().expect("run wl-paste");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(T, "the clipboard set", || paste() == users);

    // foot, like most terminals, pastes with Ctrl+Shift+V (Ctrl+V arrives as a literal ^V).
    let home = wayland_home(&stub, &sway, "clipboard\"\npaste_keys = \"ctrl+shift+v");
    let doctor = home.run(&["doctor"]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("types with the clipboard: wl-copy/wl-paste, pasted with Ctrl+Shift+V from wtype"),
        "{report}"
    );
    let d = home.start_daemon();
    dictate_by_socket(&home, 600);
    let want = format!("{SAID} ");
    let got = sway.wait_typed(&want, T);
    assert_eq!(got, want, "the terminal got {got:?}\ndaemon log:\n{}", d.log_text());
    wait_until(T, "typed in status", || home.json(&["status", "--json"])["dictation"]["typed"] == 1);
    assert_eq!(paste(), users, "the user's clipboard is back after the paste");
}
