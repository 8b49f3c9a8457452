//! A real Wayland compositor for tests: a headless sway with a foot terminal whose input is read back.
//!
//! sway refuses to run as root ("Unable to drop root"), and CI runs as root, so each [`Sway`] creates a
//! throwaway user (`useradd`, no login shell, a home in the test's temporary directory), runs sway and foot as
//! that user (the child's uid and gid are set before exec; std drops root's supplementary groups), and removes
//! the user again when dropped (`userdel`, after sway and foot are killed by pid and reaped). The program under
//! test may stay root: the compositor's socket is reached by its absolute path (`WAYLAND_DISPLAY=/…/wayland-1`,
//! which libwayland supports), so no environment of the user is needed.
//!
//! No GPU or input devices here: `WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman`, with a
//! one-line config giving the headless output a size. foot runs `stty -icanon -echo; exec cat > typed.txt`,
//! so the file holds exactly the bytes the terminal application received (Enter as `"\n"`); it has focus as
//! soon as `swaymsg -t get_tree` lists it. Needs `sway`, `foot`, `useradd`/`userdel` (passwd); fails loudly
//! when one is missing: tests never skip.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::pulse::require;

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A throwaway system user, removed when dropped.
pub struct ThrowawayUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl ThrowawayUser {
    /// Creates `pttw<pid>x<n>` (unique per process and call, so concurrent test runs do not collide) with `home`
    /// as its home directory (created and owned by it).
    pub fn create(home: &Path) -> ThrowawayUser {
        require("useradd", "passwd");
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("pttw{}x{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", "--home-dir"])
            .arg(home)
            .arg(&name)
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name} failed (these tests run as root, like CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").arg(flag).arg(&name).output().expect("run id");
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric id")
        };
        let user = ThrowawayUser { uid: id("-u"), gid: id("-g"), name };
        std::fs::create_dir_all(home).expect("mkdir home");
        user.own(home);
        user
    }

    /// Makes `path` the user's.
    pub fn own(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).expect("chown");
    }

    /// A command that runs as this user.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.uid(self.uid).gid(self.gid);
        c
    }
}

impl ThrowawayUser {
    /// Pids of processes running as this user (what foot's shell left behind, e.g. `cat` after its pty closed).
    fn processes(&self) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                (e.metadata().ok()?.uid() == self.uid).then_some(pid)
            })
            .collect()
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        // userdel refuses while the user has processes: kill what is left of this throwaway user's (by pid).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = Command::new("userdel").arg(&self.name).output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("userdel {} failed: {out:?}", self.name);
        }
    }
}

/// A headless sway with a focused foot terminal; everything is stopped and the user removed when dropped.
pub struct Sway {
    foot: Option<Child>,
    sway: Option<Child>,
    pub dir: tempfile::TempDir,
    /// The compositor's socket: use it as `WAYLAND_DISPLAY`.
    pub socket: PathBuf,
    /// sway's IPC socket.
    pub ipc: PathBuf,
    /// What the terminal received.
    pub typed: PathBuf,
    user: ThrowawayUser,
}

impl Sway {
    pub fn start() -> Sway {
        require("sway", "sway");
        require("foot", "foot");
        require("swaymsg", "sway");
        let dir = tempfile::Builder::new().prefix("ptt-sway-").tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let user = ThrowawayUser::create(&dir.path().join("home"));
        let runtime = dir.path().join("run");
        std::fs::create_dir_all(&runtime).expect("mkdir run");
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod run");
        user.own(&runtime);
        let config = dir.path().join("sway.conf");
        std::fs::write(&config, "output HEADLESS-1 resolution 1280x720\n").expect("write config");
        let typed = dir.path().join("typed.txt");
        std::fs::write(&typed, b"").expect("create typed.txt");
        user.own(&typed);

        let home = dir.path().join("home");
        let env = |c: &mut Command| {
            c.env_clear()
                .env("HOME", &home)
                .env("XDG_RUNTIME_DIR", &runtime)
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("LANG", "C.UTF-8")
                .stdin(Stdio::null());
        };
        let log = std::fs::File::create(dir.path().join("sway.log")).expect("log");
        let mut cmd = user.command("sway");
        env(&mut cmd);
        cmd.env("WLR_BACKENDS", "headless")
            .env("WLR_LIBINPUT_NO_DEVICES", "1")
            .env("WLR_RENDERER", "pixman")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log);
        let sway = cmd.spawn().expect("spawn sway");
        let mut me = Sway {
            foot: None,
            sway: Some(sway),
            socket: runtime.join("wayland-1"),
            ipc: PathBuf::new(),
            typed,
            user,
            dir,
        };
        me.ipc = me.wait("sway's sockets", |_| {
            let ipc = std::fs::read_dir(&runtime)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("sway-ipc.")))?;
            std::os::unix::net::UnixStream::connect(runtime.join("wayland-1")).is_ok().then_some(ipc)
        });

        let mut cmd = me.user.command("foot");
        env(&mut cmd);
        cmd.env("WAYLAND_DISPLAY", "wayland-1")
            .arg("-e")
            .arg("sh")
            .arg("-c")
            .arg(format!("stty -icanon -echo; exec cat > '{}'", me.typed.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        me.foot = Some(cmd.spawn().expect("spawn foot"));
        me.wait("foot's window in sway's tree", |me| me.tree().contains("\"app_id\": \"foot\"").then_some(()));
        me
    }

    /// Polls `f` until it returns something, failing with sway's log after [`START_TIMEOUT`].
    fn wait<T>(&mut self, what: &str, mut f: impl FnMut(&Sway) -> Option<T>) -> T {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            let log = self.log();
            for (name, child) in [("sway", &mut self.sway), ("foot", &mut self.foot)] {
                if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                    panic!("{name} exited ({status}): {log}");
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sway.log")).unwrap_or_default()
    }

    /// `swaymsg -t get_tree` (as the user).
    pub fn tree(&self) -> String {
        let out = self
            .user
            .command("swaymsg")
            .env_clear()
            .env("SWAYSOCK", &self.ipc)
            .args(["-t", "get_tree"])
            .stdin(Stdio::null())
            .output()
            .expect("run swaymsg");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the terminal received so far.
    pub fn typed(&self) -> String {
        std::fs::read_to_string(&self.typed).unwrap_or_default()
    }

    /// Waits until the terminal received `want` (exactly, or more when `want` is a prefix of it); returns it.
    pub fn wait_typed(&self, want: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.typed();
            if got.len() >= want.len() {
                return got;
            }
            if Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A command with this compositor's socket as `WAYLAND_DISPLAY` (run as the caller, e.g. root).
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("WAYLAND_DISPLAY", &self.socket);
        c
    }
}

impl Drop for Sway {
    fn drop(&mut self) {
        for child in [self.foot.take(), self.sway.take()].into_iter().flatten() {
            let mut child = child;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The user goes when `self.user` drops, after this: its processes are gone by now.
    }
}
