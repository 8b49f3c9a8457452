//! The control socket refuses other users, both by file permissions (socket
//! 0600 in a 0700 directory) and, should those be loosened, by checking the
//! peer's uid with SO_PEERCRED. The client runs as `nobody`, so this test needs
//! root (CI runs as root); without it, it fails and says so.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::{TestHome, describe};

const NOBODY: u32 = 65534;

fn as_nobody(home: &TestHome, args: &[&str]) -> std::process::Output {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches to the `nobody` user and must run as root (CI does; locally: sudo -E cargo test --test socket_peer)"
    );
    let mut cmd = home.cmd(args);
    cmd.uid(NOBODY).gid(NOBODY).current_dir("/");
    cmd.output().expect("run ptt as nobody")
}

#[test]
fn another_user_cannot_use_the_socket() {
    let home = TestHome::with_fake("");
    let d = home.start_daemon();
    let sock = home.runtime_dir().join("control.sock");
    let mode = std::fs::metadata(&sock).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    let dir_mode = std::fs::metadata(home.runtime_dir()).expect("dir").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "runtime dir mode");

    // 1. File permissions alone keep nobody out.
    let out = as_nobody(&home, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"), "{}", describe(&out));

    // 2. Even with the permissions opened up, the daemon checks the peer's uid.
    for dir in [home.dir.path().to_path_buf(), home.dir.path().join("run"), home.runtime_dir()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
    let out = as_nobody(&home, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied: this daemon belongs to uid"), "{err}");
    assert!(d.log_text().contains(&format!("refused a connection from uid {NOBODY}")), "{}", d.log_text());

    // The owner still gets through.
    assert!(home.run(&["status"]).status.success());
}
