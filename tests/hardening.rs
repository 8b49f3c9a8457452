//! The rest of issue 10's attacks, each reproduced and asserted to fail: a sick
//! state disk (read-only tmpfs, mounted by the test: needs root, as CI has),
//! secrets in what the daemon shows, subscribers that never read, idle
//! connections until descriptors run out, control characters in names and
//! output, a broken pipe, and a config deleted before SIGHUP.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Daemon, TestHome, describe, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &std::path::Path) -> Mount {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a tmpfs and must run as root (CI does; locally: sudo -E cargo test --test hardening)"
    );
    std::fs::create_dir_all(dir).expect("mkdir");
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
        .arg(dir)
        .output()
        .expect("mount");
    assert!(out.status.success(), "mount a tmpfs: {}", describe(&out));
    Mount(dir.to_path_buf())
}

fn remount(dir: &std::path::Path, mode: &str) {
    let out = std::process::Command::new("mount")
        .args(["-o", &format!("remount,{mode}")])
        .arg(dir)
        .output()
        .expect("remount");
    assert!(out.status.success(), "remount {mode}: {}", describe(&out));
}

fn start_json(home: &TestHome, script: &Value, name: &str) -> Value {
    home.start_task_json(script, name, &home.work("w"))
}

/// Processes (of any task) whose environment says this daemon owns them.
fn children_of(daemon_pid: i32) -> Vec<i32> {
    let uid = nix::unistd::geteuid().as_raw();
    let tag = format!("{daemon_pid}:");
    ptt::tasks::sweep::scan(uid)
        .into_iter()
        .filter(|p| p.owner.as_deref().is_some_and(|o| o.starts_with(&tag)))
        .map(|p| p.pid)
        .collect()
}

/// "started" means on disk: with the state on a read-only disk, a start is refused with
/// `state_unwritable`, its child is killed, `ptt status` says why; ids are never handed out twice.
#[test]
fn a_start_the_disk_refuses_is_not_started() {
    let home = TestHome::with_fake("share_dirs = true");
    let state = home.home().join(".local/state");
    let _mount = mount_tmpfs(&state);
    let d = home.start_daemon();
    let first = start_json(&home, &json!({"result": {"result": "First."}}), "first");
    assert_eq!(first["status"], "started", "{first}");
    let first_id = first["task_id"].as_str().expect("id").to_string();
    home.wait_ended(&first_id, T);

    remount(&state, "ro");
    let pid_file = home.scratch("refused.pid");
    let refused = start_json(&home, &json!({"pid_file": pid_file, "sleep": 60}), "refused");
    assert_eq!(refused["status"], "rejected", "{refused}");
    assert_eq!(refused["reason"], "state_unwritable", "{refused}");
    wait_until(T, "no child of the refused start left", || children_of(d.pid()).is_empty());
    let status = home.json(&["status", "--json"]);
    assert!(status["tasks"]["registry_error"].as_str().is_some_and(|e| !e.is_empty()), "{status:#}");
    let human = home.run(&["status"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("CANNOT BE WRITTEN"), "{}", describe(&human));
    assert!(d.log_text().contains("not started: the task registry cannot be written"), "{}", d.log_text());
    assert!(home.run(&["tasks", "--json"]).stdout.windows(7).all(|w| w != b"refused"), "a refused task is listed");

    // Writable again: the next task starts, is on disk, and survives a restart with a new id.
    remount(&state, "rw");
    let again = start_json(&home, &json!({"result": {"result": "Again."}}), "again");
    assert_eq!(again["status"], "started", "{again}");
    let again_id = again["task_id"].as_str().expect("id").to_string();
    assert_ne!(again_id, first_id);
    home.wait_ended(&again_id, T);
    assert!(home.json(&["status", "--json"])["tasks"]["registry_error"].is_null());
    drop(d);
    let _d2 = home.start_daemon();
    assert_eq!(home.task(&again_id)["summary"], "Again.");
    let third = start_json(&home, &json!({}), "third");
    let third_id = third["task_id"].as_str().expect("id");
    assert!(third_id != first_id && third_id != again_id, "an id handed out twice: {third_id}");
}

/// A counter at its end refuses, it does not wrap to t1.
#[test]
fn the_id_counter_never_wraps() {
    let home = TestHome::with_fake("");
    std::fs::create_dir_all(home.state_dir()).expect("mkdir");
    std::fs::write(
        home.state_dir().join("tasks.json"),
        format!(r#"{{"version":1,"next_id":{},"tasks":[]}}"#, u64::MAX - 1),
    )
    .expect("write");
    let _d = home.start_daemon();
    let last = start_json(&home, &json!({}), "last");
    assert_eq!(last["task_id"], format!("t{}", u64::MAX - 1), "{last}");
    let none = start_json(&home, &json!({}), "none");
    assert_eq!(none["status"], "rejected", "{none}");
    assert_eq!(none["reason"], "ids_exhausted", "{none}");
    let ids: Vec<String> = home.json(&["tasks", "--json", "--all"])["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, [format!("t{}", u64::MAX - 1)]);
}

/// Secrets in a task's text and output never leave the daemon: not in `task show`, `tasks --json`
/// or `watch`; the log keeps them (it is private). Subscribers never get the prompt at all.
#[test]
fn what_leaves_the_daemon_is_redacted() {
    let home = TestHome::with_fake("");
    let _d = home.start_daemon();
    let secrets = [
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "correcthorse",
        "with space secret",
        "glpat-AbCdEfGhIjKlMnOpQrSt",
        "rk_live_51AbCdEfGhIjKlMnOp",
        "npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    ];
    let text = format!(
        "aws {} PASSWORD: '{}' {{\"password\": \"{}\"}} {} {} {}",
        secrets[0], secrets[1], secrets[2], secrets[3], secrets[4], secrets[5]
    );
    let mut events = UnixStream::connect(home.runtime_dir().join("control.sock")).expect("connect");
    events.write_all(b"{\"cmd\":\"subscribe\"}\n").expect("subscribe");
    let mut reader = BufReader::new(events.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("subscribed");
    assert!(line.contains("subscribed"), "{line}");

    let script = json!({"note": text, "lines": [format!("leaked {}", secrets[3])], "result": {"result": format!("Done; PASSWORD: '{}'.", secrets[1])}});
    let id = home.start_task(&script, "secretive", &home.work("s"));
    home.wait_ended(&id, T);
    let mut seen = String::new();
    events.set_read_timeout(Some(T)).expect("timeout");
    while !seen.contains("task_ended") {
        let mut l = String::new();
        assert!(reader.read_line(&mut l).expect("event") > 0, "subscription ended early");
        seen.push_str(&l);
    }
    for event in seen.lines() {
        let v: Value = serde_json::from_str(event).expect("event JSON");
        assert!(v["task"].get("prompt").is_none() && v["task"].get("tail").is_none(), "a status bar event: {v}");
        assert!(v["task"]["id"] == id.as_str() && v["task"]["state"].is_string(), "{v}");
    }
    let shown = [
        String::from_utf8_lossy(&home.run(&["task", "show", &id, "--json"]).stdout).into_owned(),
        String::from_utf8_lossy(&home.run(&["task", "show", &id]).stdout).into_owned(),
        String::from_utf8_lossy(&home.run(&["tasks", "--json"]).stdout).into_owned(),
        seen,
    ];
    for (what, out) in ["show --json", "show", "tasks --json", "watch"].iter().zip(&shown) {
        assert!(out.contains(&id), "{what}: {out}");
        for secret in secrets {
            assert!(!out.contains(secret), "{what} shows {secret:?}: {out}");
        }
    }
    let log = std::fs::read_to_string(home.state_dir().join(format!("logs/{id}.log"))).expect("log");
    assert!(log.contains(secrets[3]), "the log stays verbatim: {log}");
}

/// 20 subscribers that never read, and tasks with 120 KB prompts: memory stays bounded
/// (events carry no prompt) and comes back when they go.
#[test]
fn subscribers_that_never_read_cost_little() {
    let home = TestHome::with_fake("share_dirs = true\nmax_concurrent = 64\nbudget_usd = 0");
    let d = home.start_daemon();
    let rss = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    };
    let before = rss("VmRSS:");
    let mut stuck = Vec::new();
    for _ in 0..20 {
        let mut s = UnixStream::connect(home.runtime_dir().join("control.sock")).expect("connect");
        s.write_all(b"{\"cmd\":\"subscribe\"}\n").expect("subscribe");
        stuck.push(s);
    }
    let big = "x".repeat(120 * 1024);
    let dir = home.work("big");
    let mut ids = Vec::new();
    for i in 0..20 {
        let script = json!({"note": big, "lines": [{"type": "assistant", "message": {"content": [{"type": "text", "text": format!("step {i}")}]}}]});
        let v: Value = serde_json::from_slice(
            &home
                .run(&[
                    "task",
                    "start",
                    &script.to_string(),
                    "--name",
                    &format!("big {i}"),
                    "--dir",
                    dir.to_str().expect("utf8"),
                    "--json",
                ])
                .stdout,
        )
        .expect("start");
        assert_eq!(v["status"], "started", "{v}");
        ids.push(v["task_id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        home.wait_ended(id, T);
    }
    let peak = rss("VmHWM:");
    eprintln!("daemon RSS: {before} kB before, peak {peak} kB with 20 stuck subscribers");
    // Before the fix every event carried the 120 KB prompt: 20 subscribers x ~60 events x 120 KB = 140 MB.
    assert!(peak < before + 40 * 1024, "peak RSS {peak} kB from {before} kB");
    drop(stuck);
    wait_until(T, "the daemon to answer", || home.run(&["status"]).status.success());
    // The memory comes back once the queues are gone and the keeper has trimmed the heap (a moment after
    // the last task): wait for that fact rather than reading RSS once.
    let mut after = 0;
    wait_until(T, &format!("RSS back within 20 MB of {before} kB"), || {
        after = rss("VmRSS:");
        after < before + 20 * 1024
    });
    eprintln!("daemon RSS after the subscribers left: {after} kB");
}

/// Idle connections until the daemon runs out of descriptors: it caps connections, lets silent
/// ones go, logs the accept failure once, and keeps answering.
#[test]
fn idle_connections_do_not_lock_out_the_owner() {
    let home = TestHome::with_fake("");
    let log = home.dir.path().join("daemon.log");
    let mut cmd = home.cmd(&["run"]);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("ptt run");
    let d = Daemon { child: Some(child), log };
    wait_until(T, "the daemon to answer", || home.run(&["status", "--json"]).status.success());
    // More idle connections than the daemon has descriptors for.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(UnixStream::connect(home.runtime_dir().join("control.sock")).expect("connect"));
    }
    let started = Instant::now();
    let out = home.run(&["status", "--json"]);
    assert!(out.status.success(), "{}\n{}", describe(&out), d.log_text());
    eprintln!("status answered {:?} after 100 idle connections", started.elapsed());
    let text = d.log_text();
    let warned = text.lines().filter(|l| l.contains("warn: control: accept failed")).count();
    assert!(warned <= 1, "logged more than once:\n{text}");
    // The silent connections were let go.
    let mut buf = [0u8; 1];
    for s in idle.iter_mut().take(5) {
        s.set_read_timeout(Some(T)).expect("timeout");
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "an idle connection is closed by the daemon");
    }
}

/// Names with newlines and escape sequences, and child output that clears the screen: folded or
/// escaped wherever they are printed; the daemon's log gets one line per record.
#[test]
fn control_characters_never_reach_the_terminal_raw() {
    let home = TestHome::with_fake("");
    let d = home.start_daemon();
    let name = "evil\nt9    running   forged\x1b]0;owned\x07\x1b[31m";
    let script = json!({"lines": ["\u{1b}[2J\u{1b}[Hscreen cleared"], "result": {"result": "Bell \u{7} done."}});
    let id = home.start_task(&script, name, &home.work("c"));
    home.wait_ended(&id, T);
    let t = home.task(&id);
    assert!(!t["name"].as_str().unwrap_or("").contains('\n'), "a name is one line: {t}");
    for args in [vec!["tasks"], vec!["task", "show", id.as_str()]] {
        let out = home.run(&args);
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
            "raw control bytes in ptt {args:?}: {}",
            describe(&out)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.lines().any(|l| l.trim_start().starts_with("t9")), "a forged row: {text}");
    }
    assert!(
        !d.log_text().lines().any(|l| l.starts_with("t9") || l.contains("forged") && !l.starts_with("ptt: ")),
        "a forged log line: {}",
        d.log_text()
    );
    assert!(!d.log_text().contains('\x1b'), "raw ESC in the log");
}

/// `ptt tasks --json | head -c0`: the reader is gone before we print; we end quietly (0 or SIGPIPE).
#[test]
fn a_broken_pipe_ends_the_cli_quietly() {
    let home = TestHome::with_fake("");
    let _d = home.start_daemon();
    home.start_task(&json!({}), "piped", &home.work("p"));
    for args in [
        vec!["tasks", "--json"],
        vec!["tasks"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["task", "show", "piped"],
        vec!["config", "default"],
        vec!["doctor"],
        vec!["model", "list"],
        vec!["dictate", "list"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = home.cmd(&args).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped()).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "ptt {args:?} panicked: {err}");
        assert!(
            out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE),
            "ptt {args:?}: {:?} {err}",
            out.status
        );
    }
}

/// SIGHUP after the config file was deleted keeps the old config and says so (it used to load
/// the defaults silently).
#[test]
fn sighup_with_the_config_gone_keeps_the_old_one() {
    let home = TestHome::with_fake("max_concurrent = 1");
    let d = home.start_daemon();
    assert_eq!(home.json(&["status", "--json"])["tasks"]["max_concurrent"], 1);
    std::fs::remove_file(home.config_path()).expect("rm config");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(T, "the reload to be refused", || d.log_text().contains("keeping the old one"));
    assert_eq!(home.json(&["status", "--json"])["tasks"]["max_concurrent"], 1, "defaults were loaded");
}
