//! A full disk loses nothing: the state directory sits on a tiny tmpfs that
//! fills up while a task runs. The daemon keeps serving from memory, retries
//! the registry write, and the result reaches the disk once there is room.
//! Mounting needs root (CI runs as root); without it this test fails and says so.

mod common;

use std::time::Duration;

use common::{TestHome, describe, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_loses_no_result() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a tmpfs and must run as root (CI does; locally: sudo -E cargo test --test full_disk)"
    );
    let home = TestHome::with_fake("");
    let state = home.home().join(".local/state");
    std::fs::create_dir_all(&state).expect("mkdir");
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&state)
        .output()
        .expect("mount");
    assert!(out.status.success(), "mount a tmpfs: {}", describe(&out));
    let _mount = Mount(state.clone());

    let d = home.start_daemon();
    let id = home.start_task(
        &json!({"sleep": 1.5, "result": {"result": "Survived the full disk."}}),
        "full",
        &home.work("a"),
    );
    // Fill the disk while the task runs.
    let filler = state.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]);
    let t = home.wait_ended(&id, T);
    assert_eq!(t["state"], "succeeded", "served from memory: {t:#}");
    assert_eq!(t["summary"], "Survived the full disk.");
    wait_until(T, "the failed write to be logged", || d.log_text().contains("cannot write the task registry"));
    let registry = state.join("ptt/tasks.json");
    let on_disk = std::fs::read_to_string(&registry).unwrap_or_default();
    // (The prompt, the fake's script, holds the sentence too: look for the summary field.)
    let summary = r#""summary":"Survived the full disk.""#;
    assert!(
        !on_disk.contains(summary),
        "the disk really was full: {}\n{}",
        describe(&std::process::Command::new("df").arg(&state).output().expect("df")),
        d.log_text()
    );

    // Room again: the retry writes the result.
    std::fs::remove_file(&filler).expect("rm filler");
    wait_until(T, "the result on disk", || std::fs::read_to_string(&registry).unwrap_or_default().contains(summary));
    assert!(d.log_text().contains("the task registry is written again"), "{}", d.log_text());
    drop(d);
    let _d2 = home.start_daemon();
    assert_eq!(home.task(&id)["summary"], "Survived the full disk.");
}
