//! `ptt status --follow`: the stream a status bar reads, checked while tasks start and end and while the daemon
//! stops and comes back.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::TestHome;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

/// `ptt status --follow --format waybar` with its lines on a channel; killed when dropped.
struct Follow {
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
}

impl Follow {
    fn start(home: &TestHome) -> Follow {
        let mut child = home
            .cmd(&["status", "--follow", "--format", "waybar"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ptt status --follow");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Follow { child, lines, seen: Vec::new() }
    }

    /// Waits for a line that satisfies `want`; returns it.
    fn wait(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if want(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("no line with {what} within {T:?}; lines: {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has_class(v: &Value, class: &str) -> bool {
    v["class"].as_array().is_some_and(|c| c.iter().any(|x| x == class))
}

#[test]
fn the_waybar_stream_follows_tasks_and_the_daemon() {
    let home = TestHome::with_fake("");
    let mut follow = Follow::start(&home);
    let first = follow.wait("the stopped state", |v| v["alt"] == "stopped");
    assert_eq!(first["class"], json!(["stopped"]));
    for key in ["text", "alt", "class", "tooltip"] {
        assert!(first.get(key).is_some(), "waybar needs {key}: {first}");
    }

    let daemon = home.start_daemon();
    follow.wait("the idle state once the daemon runs", |v| v["alt"] == "idle");

    let a = home.start_task(&json!({"hang": true}), "one", &home.work("a"));
    let v = follow.wait("one running task", |v| v["alt"] == "busy" && v["text"] == "1 task");
    assert!(has_class(&v, "tasks"), "{v}");
    assert!(v["tooltip"].as_str().unwrap_or("").contains("tasks running: 1"), "{v}");
    let b = home.start_task(&json!({"hang": true}), "two", &home.work("b"));
    follow.wait("two running tasks", |v| v["text"] == "2 tasks");
    for id in [&a, &b] {
        let out = home.run(&["task", "cancel", id]);
        assert!(out.status.success(), "{}", common::describe(&out));
        home.wait_ended(id, T);
    }
    follow.wait("idle again", |v| v["alt"] == "idle" && has_class(v, "idle"));

    // One line per change: consecutive lines always differ.
    for pair in follow.seen.windows(2) {
        assert_ne!(pair[0], pair[1], "a repeated line: {:#?}", follow.seen);
    }

    drop(daemon);
    follow.wait("stopped after the daemon exits", |v| v["alt"] == "stopped");
    let _again = home.start_daemon();
    follow.wait("back once the daemon is", |v| v["alt"] == "idle");
}
