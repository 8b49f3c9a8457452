//! Attacks by another local user (`nobody`), reproduced exactly as found by a
//! probe of the landed daemon (issue 10), and asserted to fail: a planted
//! runtime directory, a forged control socket, and reading what the daemon
//! writes. These tests switch users and must run as root (CI does); without
//! root they fail and say so.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestHome, describe, read_json_file, wait_until};
use serde_json::json;

const NOBODY: u32 = 65534;
const T: Duration = Duration::from_secs(30);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches to the `nobody` user and must run as root (CI does; locally: sudo -E cargo test --test hostile_user)"
    );
}

/// Lets `nobody` traverse the test's temporary directory (tempdirs are 0700).
fn open_up(home: &TestHome) {
    std::fs::set_permissions(home.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
}

/// A command run as `nobody`.
fn nobody(program: &str) -> Command {
    let mut c = Command::new(program);
    c.uid(NOBODY).gid(NOBODY).current_dir("/").env_clear().env("PATH", "/usr/bin:/bin");
    c
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).mode() & 0o7777
}

/// Waits for a child that is expected to exit by itself; kills it after `timeout`.
fn wait_output(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("still running after {timeout:?} (killed): {}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Without XDG_RUNTIME_DIR the runtime directory falls back to
/// `$TMPDIR/ptt-runtime-<uid>`. Another user creates that (0777) with `ptt`
/// inside as a symlink to a directory of ours: the daemon must neither chmod
/// the target nor put its socket and lock there, and must say how to fix it.
#[test]
fn a_planted_runtime_directory_is_refused() {
    require_root();
    let uid = nix::unistd::geteuid().as_raw();
    assert!(
        !Path::new(&format!("/run/user/{uid}")).exists(),
        "/run/user/{uid} exists, so the fallback under TMPDIR this test attacks is not used; run it where it is absent"
    );
    let home = TestHome::with_fake("");
    open_up(&home);
    let shared = home.dir.path().join("shared-tmp");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    let victim = home.dir.path().join("victim");
    std::fs::create_dir(&victim).expect("mkdir");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let base = shared.join(format!("ptt-runtime-{uid}"));
    let planted = nobody("/bin/sh")
        .args(["-c", "mkdir -m 0777 \"$1\" && ln -s \"$2\" \"$1/ptt\"", "sh"])
        .arg(&base)
        .arg(&victim)
        .output()
        .expect("plant");
    assert!(planted.status.success(), "plant: {}", describe(&planted));

    let mut cmd = home.cmd(&["run"]);
    cmd.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &shared);
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ptt run");
    let out = wait_output(child, T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "the daemon must refuse: {}", describe(&out));
    assert!(err.contains("XDG_RUNTIME_DIR"), "the refusal says how to fix it: {err}");
    assert_eq!(mode(&victim), 0o755, "the symlink's target was chmodded");
    assert!(!victim.join("control.sock").exists() && !victim.join("daemon.lock").exists(), "files in the target");

    // The same directory made by another user with the "right" mode is not adopted either.
    std::fs::remove_file(base.join("ptt")).expect("rm link");
    let planted = nobody("/bin/mkdir").args(["-m", "0700"]).arg(base.join("ptt")).output().expect("mkdir as nobody");
    assert!(planted.status.success(), "{}", describe(&planted));
    let mut cmd = home.cmd(&["run"]);
    cmd.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &shared);
    let out = wait_output(cmd.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().expect("ptt run"), T);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to uid"), "{}", describe(&out));

    // With no one in the way, the fallback works and is private.
    let clean = home.dir.path().join("clean-tmp");
    std::fs::create_dir(&clean).expect("mkdir");
    std::fs::set_permissions(&clean, std::fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    let mut cmd = home.cmd(&["run"]);
    cmd.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &clean);
    let mut daemon = cmd.stdin(Stdio::null()).stderr(Stdio::null()).spawn().expect("ptt run");
    let sock = clean.join(format!("ptt-runtime-{uid}/ptt/control.sock"));
    wait_until(T, "the fallback socket", || sock.exists());
    assert_eq!(mode(&clean.join(format!("ptt-runtime-{uid}"))), 0o700);
    assert_eq!(mode(&clean.join(format!("ptt-runtime-{uid}/ptt"))), 0o700);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = daemon.wait();
}

/// Another user answers on the socket path (they moved our runtime directory
/// aside and made their own): the client must check who listens before it
/// sends the task's text, and refuse.
#[test]
fn the_client_never_talks_to_another_users_socket() {
    require_root();
    let home = TestHome::with_fake("");
    open_up(&home);
    let evil = home.dir.path().join("evil-run");
    std::fs::create_dir(&evil).expect("mkdir");
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let got = evil.join("got");
    // A forged daemon: writes what it receives to `got`, answers "started t666".
    const SERVER: &str = r#"
import os, socket, sys
d = sys.argv[1]
os.mkdir(os.path.join(d, "ptt"), 0o755)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(os.path.join(d, "ptt", "control.sock"))
os.chmod(os.path.join(d, "ptt", "control.sock"), 0o777)
s.listen(8)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    data = b""
    try:
        c.sendall(b'{"status":"started","task_id":"t666","name":"deploy"}\n')
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\n" in data:
                break
    except OSError:
        pass
    c.close()
    with open(os.path.join(d, "got.tmp"), "wb") as f:
        f.write(data)
    os.rename(os.path.join(d, "got.tmp"), os.path.join(d, "got"))
"#;
    let mut server = nobody("/usr/bin/python3").args(["-c", SERVER]).arg(&evil).spawn().expect("forged server");
    let sock = evil.join("ptt/control.sock");
    wait_until(T, "the forged socket", || sock.exists());

    let mut cmd =
        home.cmd(&["task", "start", "deploy with password hunter2", "--dir", home.work("a").to_str().expect("utf8")]);
    cmd.env("XDG_RUNTIME_DIR", &evil);
    let out = cmd.stdin(Stdio::null()).output().expect("ptt task start");
    wait_until(T, "the forged server to see the connection", || got.exists());
    let received = std::fs::read(&got).expect("got");
    let _ = server.kill();
    let _ = server.wait();
    assert!(!String::from_utf8_lossy(&received).contains("hunter2"), "the text reached another user");
    assert!(received.is_empty(), "nothing at all is sent: {:?}", String::from_utf8_lossy(&received));
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("t666"),
        "the forged reply was believed: {}",
        describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("served by uid {NOBODY}")), "{err}");
}

/// Nothing the daemon writes is readable by another user: existing state is
/// tightened at start, new files are 0600 in 0700 directories, the task text
/// is not on the child's command line (`ps`), and a deleted logs directory is
/// made again, privately, for the next task.
#[test]
fn another_user_reads_nothing_the_daemon_writes() {
    require_root();
    let home = TestHome::with_fake("");
    open_up(&home);
    // Everything on the way to the state is open to others; only our modes protect it.
    for d in [home.home(), home.home().join(".local"), home.home().join(".local/state")] {
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // State left world-readable by an older version.
    let state = home.state_dir();
    std::fs::create_dir_all(state.join("logs")).expect("mkdir");
    for d in [&state, &state.join("logs")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let old_log = state.join("logs/t1.log");
    std::fs::write(&old_log, "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n").expect("write");
    std::fs::set_permissions(&old_log, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(state.join("tasks.json"), r#"{"version":1,"next_id":2,"tasks":[]}"#).expect("write");
    std::fs::set_permissions(state.join("tasks.json"), std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let _d = home.start_daemon();
    for (path, want) in [(state.clone(), 0o700), (state.join("logs"), 0o700), (old_log.clone(), 0o600)] {
        assert_eq!(mode(&path), want, "{} was not tightened at start", path.display());
    }

    let pid_file = home.scratch("pid");
    let secret = "PASSWORD hunter2-in-the-prompt";
    let script = json!({"pid_file": pid_file, "sleep": 1.0, "note": secret});
    let id = home.start_task(&script, "private", &home.work("a"));
    let pid: i32 = read_json_file(&pid_file, T).as_i64().expect("pid") as i32;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&cmdline).contains("hunter2"), "ps shows the task text: {cmdline:?}");
    home.wait_ended(&id, T);

    let files: Vec<PathBuf> = vec![
        state.join("tasks.json"),
        home.state_dir().join(format!("logs/{id}.log")),
        home.runtime_dir().join("daemon.lock"),
    ];
    for f in &files {
        assert_eq!(mode(f) & 0o077, 0, "{} is readable by others: {:o}", f.display(), mode(f));
        let out = nobody("/bin/cat").arg(f).output().expect("cat as nobody");
        assert!(!out.status.success(), "nobody read {}: {}", f.display(), describe(&out));
    }
    assert_eq!(mode(&home.runtime_dir().join("control.sock")) & 0o077, 0);

    // The logs directory deleted under a running daemon comes back, private, for the next task.
    std::fs::remove_dir_all(state.join("logs")).expect("rm logs");
    let id2 = home.start_task(&json!({"result": {"result": "Logged again."}}), "again", &home.work("b"));
    home.wait_ended(&id2, T);
    let log2 = state.join(format!("logs/{id2}.log"));
    assert!(std::fs::read_to_string(&log2).unwrap_or_default().contains("Logged again."), "no log for {id2}");
    assert_eq!(mode(&state.join("logs")), 0o700);
    assert_eq!(mode(&log2), 0o600);
}
