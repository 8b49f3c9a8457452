//! The Debian package: `scripts/package` wraps the binary this test run built (no release build), `dpkg -i`
//! installs it on this machine (CI runs as root), the installed `ptt --version` and `ptt doctor` run, the user
//! unit is in place and points at /usr/bin/ptt, and `dpkg -r` removes it all again. Needs dpkg-deb (Debian).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::pulse::{require, root};
use common::{PTT, describe};

/// dpkg, waiting (up to 2 minutes) while another dpkg or apt holds its lock.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("dpkg").args(args).output().expect("run dpkg");
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("lock") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_deb_installs_runs_and_uninstalls() {
    require("dpkg-deb", "dpkg");
    let installed = dpkg(&["-s", "ptt"]);
    assert!(
        !installed.status.success(),
        "a ptt package is already installed here; this test installs and removes its own"
    );
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(root().join("scripts/package"))
        .args(["--binary", PTT, "--out"])
        .arg(out_dir.path())
        .output()
        .expect("run scripts/package");
    assert!(out.status.success(), "scripts/package: {}", describe(&out));
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");

    let fields = Command::new("dpkg-deb").args(["-f", &deb]).output().expect("dpkg-deb -f");
    let fields = String::from_utf8_lossy(&fields.stdout).into_owned();
    assert!(fields.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))), "{fields}");
    for dep in ["libasound2", "libx11-6", "libxtst6", "libxi6"] {
        let line = fields.lines().find(|l| l.starts_with("Depends:")).unwrap_or_default();
        assert!(line.contains(dep), "Depends lacks {dep}: {fields}");
    }
    let recommends = fields.lines().find(|l| l.starts_with("Recommends:")).unwrap_or_default().to_string();
    for tool in ["pipewire-pulse", "pulseaudio", "wtype", "xdotool", "wl-clipboard", "libnotify-bin"] {
        assert!(recommends.contains(tool), "Recommends lacks {tool}: {fields}");
    }

    let out = dpkg(&["-i", &deb]);
    assert!(out.status.success(), "dpkg -i: {}", describe(&out));
    // From here on, remove the package whatever happens.
    struct Remove;
    impl Drop for Remove {
        fn drop(&mut self) {
            let out = dpkg(&["-r", "ptt"]);
            if !out.status.success() {
                eprintln!("dpkg -r ptt failed: {}", describe(&out));
            }
        }
    }
    let remove = Remove;

    let version = Command::new("/usr/bin/ptt").arg("--version").output().expect("run /usr/bin/ptt");
    assert!(version.status.success(), "{}", describe(&version));
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("ptt {}", env!("CARGO_PKG_VERSION")));

    let home = tempfile::tempdir().expect("home");
    let doctor = Command::new("/usr/bin/ptt")
        .arg("doctor")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .output()
        .expect("run ptt doctor");
    let text = format!("{}{}", String::from_utf8_lossy(&doctor.stdout), String::from_utf8_lossy(&doctor.stderr));
    // Exit 1 is expected here (no Claude CLI on this PATH); what matters is that it ran every check.
    assert!(matches!(doctor.status.code(), Some(0 | 1)), "{text}");
    for check in ["[ok  ] config", "] claude", "] audio", "] dictation", "] daemon"] {
        assert!(text.contains(check), "doctor did not report {check:?}: {text}");
    }
    assert!(!text.contains("ALSA lib"), "{text}");

    let unit = std::fs::read_to_string("/usr/lib/systemd/user/ptt.service").expect("the user unit is installed");
    assert!(unit.contains("\nExecStart=/usr/bin/ptt run\n"), "{unit}");
    assert!(unit.contains("Type=notify") && unit.contains("WantedBy=default.target"), "{unit}");

    drop(remove);
    assert!(!Path::new("/usr/bin/ptt").exists(), "dpkg -r left the binary");
    assert!(!Path::new("/usr/lib/systemd/user/ptt.service").exists(), "dpkg -r left the unit");
}
