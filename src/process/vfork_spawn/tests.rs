//! Tests of the cheap spawn: each guarantee the module doc gives is checked in a real child, through what the
//! kernel shows of it (`/proc`), its output, or its exit.

use super::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

fn path_env() -> Vec<(OsString, OsString)> {
    vec![("PATH".into(), "/usr/bin:/bin".into())]
}

/// Runs `program args` with stdout and stderr on one pipe and stdin on /dev/null; its pid, status and output.
fn run(program: &str, args: &[&str], cwd: &Path, umask: libc::mode_t) -> (u32, ExitStatus, String) {
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let mut child = spawn(&Request {
        program: program.as_ref(),
        args: &args,
        env: &path_env(),
        cwd,
        stdin: Some(null.as_fd()),
        stdout: Some(writer.as_fd()),
        stderr: Some(writer.as_fd()),
        umask,
        own_group: true,
        death_signal: Some(libc::SIGTERM),
    })
    .expect("spawn");
    drop(writer);
    let mut out = String::new();
    reader.read_to_string(&mut out).expect("read");
    let status = child.wait().expect("wait");
    (child.id(), status, out)
}

/// A field of the child's `/proc/self/status`, read by `grep` itself (a shell would reset the mask).
fn child_status(field: &str) -> String {
    let (_, status, out) = run("/bin/grep", &[&format!("^{field}:"), "/proc/self/status"], Path::new("/"), 0o022);
    assert!(status.success(), "{status:?}: {out}");
    out.split_whitespace().nth(1).expect("value").to_string()
}

/// A field of `/proc/<who>/status` (`self`, `thread-self`).
fn proc_status(who: &str, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{who}/status")).expect("status");
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:"))).expect("field").to_string();
    line.split_whitespace().nth(1).expect("value").to_string()
}

/// The pids this thread has as children, zombies included.
fn children_of_this_thread() -> String {
    std::fs::read_to_string("/proc/thread-self/children").expect("children")
}

#[test]
fn the_child_gets_the_umask_asked_for_and_the_parent_keeps_its_own() {
    let before = proc_status("self", "Umask");
    let wanted = if before == "0027" { 0o002 } else { 0o027 };
    let (_, status, out) = run("/bin/sh", &["-c", "umask"], Path::new("/"), wanted);
    assert!(status.success());
    assert_eq!(out.trim(), format!("{wanted:04o}"));
    assert_eq!(proc_status("self", "Umask"), before, "the parent's umask is untouched");
}

#[test]
fn the_child_leads_a_process_group_of_its_own() {
    // Fields 1 and 5 of /proc/<pid>/stat: pid and process group (`read` is a builtin: the shell itself).
    let (pid, status, out) =
        run("/bin/sh", &["-c", "read -r l < /proc/self/stat; set -- $l; echo $1 $5"], Path::new("/"), 0o022);
    assert!(status.success());
    assert_eq!(out.trim(), format!("{pid} {pid}"));
}

#[test]
fn the_child_gets_its_death_signal_when_the_spawning_thread_exits() {
    let spawner = std::thread::spawn(|| {
        spawn(&Request {
            program: "sleep".as_ref(),
            args: &["60".into()],
            env: &path_env(),
            cwd: Path::new("/"),
            stdin: None,
            stdout: None,
            stderr: None,
            umask: 0o022,
            own_group: true,
            death_signal: Some(libc::SIGTERM),
        })
        .expect("spawn")
    });
    let mut child = spawner.join().expect("join");
    // Without PR_SET_PDEATHSIG this waits the full minute and then sees exit status 0.
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

#[test]
fn the_environment_is_exactly_the_one_given_later_entries_winning() {
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let env: Vec<(OsString, OsString)> =
        vec![("A".into(), "1".into()), ("PATH".into(), "/usr/bin:/bin".into()), ("A".into(), "2".into())];
    // A bare name: found on the PATH given, not the test's.
    let mut child = spawn(&Request {
        program: "env".as_ref(),
        args: &[],
        env: &env,
        cwd: Path::new("/"),
        stdin: None,
        stdout: Some(writer.as_fd()),
        stderr: None,
        umask: 0o022,
        own_group: false,
        death_signal: None,
    })
    .expect("spawn");
    drop(writer);
    let mut out = String::new();
    reader.read_to_string(&mut out).expect("read");
    assert!(child.wait().expect("wait").success());
    let lines: BTreeSet<&str> = out.lines().collect();
    assert_eq!(lines, BTreeSet::from(["A=2", "PATH=/usr/bin:/bin"]));
}

#[test]
fn the_child_runs_in_the_directory_asked_for() {
    let d = tempfile::tempdir().expect("tempdir");
    let (_, status, out) = run("/bin/pwd", &["-P"], d.path(), 0o022);
    assert!(status.success());
    assert_eq!(PathBuf::from(out.trim()), d.path().canonicalize().expect("canonical"));
}

#[test]
fn a_missing_program_is_enoent_and_leaves_no_zombie() {
    let before = children_of_this_thread();
    for program in ["/nonexistent/claude", "ptt-no-such-program"] {
        let e = spawn(&Request {
            program: program.as_ref(),
            args: &[],
            env: &path_env(),
            cwd: Path::new("/"),
            stdin: None,
            stdout: None,
            stderr: None,
            umask: 0o022,
            own_group: true,
            death_signal: Some(libc::SIGTERM),
        })
        .expect_err("no such program");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{program}: {e}");
        // What `Supervisor::launch` puts after "could not start <program>: ".
        assert!(e.to_string().contains("No such file or directory"), "{e}");
    }
    assert_eq!(children_of_this_thread(), before, "the failed child was reaped");
}

#[test]
fn a_file_without_execute_permission_is_eacces() {
    let d = tempfile::tempdir().expect("tempdir");
    let plain = d.path().join("claude");
    std::fs::write(&plain, "#!/bin/sh\necho ran\n").expect("write");
    let before = children_of_this_thread();
    let e = spawn(&Request {
        program: &plain,
        args: &[],
        env: &path_env(),
        cwd: d.path(),
        stdin: None,
        stdout: None,
        stderr: None,
        umask: 0o022,
        own_group: true,
        death_signal: None,
    })
    .expect_err("not executable");
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    assert_eq!(children_of_this_thread(), before, "the failed child was reaped");
}

#[test]
fn a_directory_that_is_gone_is_an_error_too() {
    let e = spawn(&Request {
        program: "/bin/true".as_ref(),
        args: &[],
        env: &path_env(),
        cwd: Path::new("/nonexistent/dir"),
        stdin: None,
        stdout: None,
        stderr: None,
        umask: 0o022,
        own_group: true,
        death_signal: None,
    })
    .expect_err("no such directory");
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
}

#[test]
fn a_nul_byte_is_refused_before_anything_starts() {
    let e = spawn(&Request {
        program: "/bin/true".as_ref(),
        args: &["a\0b".into()],
        env: &path_env(),
        cwd: Path::new("/"),
        stdin: None,
        stdout: None,
        stderr: None,
        umask: 0o022,
        own_group: true,
        death_signal: None,
    })
    .expect_err("nul");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn stdin_stdout_and_stderr_are_wired() {
    let (stdin_read, mut stdin) = std::io::pipe().expect("pipe");
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let mut child = spawn(&Request {
        program: "/bin/sh".as_ref(),
        args: &["-c".into(), "read x; echo \"out $x\"; echo \"err $x\" >&2".into()],
        env: &path_env(),
        cwd: Path::new("/"),
        stdin: Some(stdin_read.as_fd()),
        stdout: Some(writer.as_fd()),
        stderr: Some(writer.as_fd()),
        umask: 0o022,
        own_group: true,
        death_signal: None,
    })
    .expect("spawn");
    drop(stdin_read);
    drop(writer);
    stdin.write_all(b"hello\n").expect("write");
    drop(stdin);
    let mut out = String::new();
    reader.read_to_string(&mut out).expect("read");
    assert!(child.wait().expect("wait").success());
    assert_eq!(out, "out hello\nerr hello\n");
}

#[test]
fn no_handler_of_the_parent_is_left_in_the_child_and_sigpipe_is_default() {
    // Preconditions: std's runtime catches SIGSEGV (stack overflows) and ignores SIGPIPE in this process.
    let disposition = |sig| {
        // SAFETY: a query into a local struct.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) }, 0);
        old.sa_sigaction
    };
    let segv = disposition(libc::SIGSEGV);
    assert!(segv != libc::SIG_DFL && segv != libc::SIG_IGN, "the test process has a SIGSEGV handler");
    assert_eq!(disposition(libc::SIGPIPE), libc::SIG_IGN, "the test process ignores SIGPIPE");
    // Right before execve (probe in the child's memory, which is ours): no handler, SIGPIPE default.
    let ignored = child_status("SigIgn");
    assert_eq!(
        LAST_CAUGHT.with(|c| c.get()),
        0,
        "signals still caught in the child: {:#x}",
        LAST_CAUGHT.with(|c| c.get())
    );
    // After execve: an ignored SIGPIPE would have stayed ignored.
    let mask = u64::from_str_radix(&ignored, 16).expect("hex");
    assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored in the child: {ignored}");
    // And the parent's dispositions are untouched (the child had its own table).
    assert_eq!(disposition(libc::SIGSEGV), segv);
    assert_eq!(disposition(libc::SIGPIPE), libc::SIG_IGN);
}

#[test]
fn the_signal_mask_is_the_parents_in_the_child_and_restored_in_the_parent() {
    let before = proc_status("thread-self", "SigBlk");
    assert_eq!(child_status("SigBlk"), before, "the child's mask");
    assert_eq!(proc_status("thread-self", "SigBlk"), before, "the parent's mask after the spawn");
}

#[test]
fn no_descriptor_of_the_parent_reaches_the_child_but_0_1_2() {
    // This process's descriptors a child may inherit: those without close-on-exec (none that we open).
    let inheritable: BTreeSet<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        // SAFETY: F_GETFD on a number; a closed one gives -1.
        .filter(|&fd| {
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect();
    // Some open pipes of ours, close-on-exec, that must not show up.
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let (stdin_read, stdin_write) = std::io::pipe().expect("pipe");
    let ours = [reader.as_raw_fd(), writer.as_raw_fd(), stdin_read.as_raw_fd(), stdin_write.as_raw_fd()];
    let mut child = spawn(&Request {
        program: "/bin/ls".as_ref(),
        args: &["-l".into(), "/proc/self/fd/".into()],
        env: &path_env(),
        cwd: Path::new("/"),
        stdin: Some(stdin_read.as_fd()),
        stdout: Some(writer.as_fd()),
        stderr: Some(writer.as_fd()),
        umask: 0o022,
        own_group: true,
        death_signal: None,
    })
    .expect("spawn");
    drop(writer);
    let mut out = String::new();
    reader.read_to_string(&mut out).expect("read");
    assert!(child.wait().expect("wait").success(), "{out}");
    // "lrwx------ 1 u u 64 Dec  7 16:00 3 -> /proc/1234/fd": the one `ls` opened to list them is left out.
    let in_child: BTreeSet<i32> = out
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter(|(_, target)| !target.ends_with("/fd"))
        .filter_map(|(left, _)| left.split_whitespace().last()?.parse().ok())
        .collect();
    for fd in [0, 1, 2] {
        assert!(in_child.contains(&fd), "{fd} missing: {out}");
    }
    for fd in &in_child {
        assert!(*fd <= 2 || inheritable.contains(fd), "descriptor {fd} leaked into the child: {out}");
    }
    for fd in ours {
        assert!(fd <= 2 || !in_child.contains(&fd), "our pipe end {fd} reached the child: {out}");
    }
}

#[test]
fn threads_may_spawn_at_the_same_time() {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..25 {
                    let (_, status, out) = run("/bin/sh", &["-c", "echo $$"], Path::new("/"), 0o022);
                    assert!(status.success() && out.trim().parse::<u32>().is_ok(), "{status:?} {out}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}

#[test]
fn kill_and_try_wait() {
    let mut child = spawn(&Request {
        program: "/bin/sleep".as_ref(),
        args: &["60".into()],
        env: &path_env(),
        cwd: Path::new("/"),
        stdin: None,
        stdout: None,
        stderr: None,
        umask: 0o022,
        own_group: true,
        death_signal: None,
    })
    .expect("spawn");
    assert!(child.try_wait().expect("try_wait").is_none(), "still sleeping");
    child.kill().expect("kill");
    assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
    assert_eq!(child.try_wait().expect("try_wait").and_then(|s| s.signal()), Some(libc::SIGKILL));
    child.kill().expect("killing a reaped child is a no-op");
}
