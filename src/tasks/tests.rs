//! The supervisor's contract, tested on a real `Supervisor` in a throw-away
//! home: typed answers, the notices it builds itself, and ids that only a
//! started task consumes. The "Claude CLI" is a shell script that sleeps, so a
//! start spawns a real child (reaped at the end) and nothing talks to Claude.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_channel::Receiver;
use serde_json::json;

use super::reaper::{Finished, ReaperMsg, TaskEvent};
use super::registry::{TaskRecord, TaskState, sample, unix_now};
use super::stream_json::ResultInfo;
use super::*;
use crate::config::TasksConfig;
use crate::paths::Paths;

struct Fixture {
    sup: Supervisor,
    /// A directory tasks may run in (under the allowed root).
    work: PathBuf,
    _events: Receiver<TaskEvent>,
    _home: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.sup.begin_shutdown(Instant::now());
        self.sup.finish_shutdown();
    }
}

fn fixture(edit: impl FnOnce(&mut TasksConfig)) -> Fixture {
    let home = tempfile::tempdir().expect("tempdir");
    let root = home.path().canonicalize().expect("canonical home");
    let claude = root.join("claude");
    std::fs::write(&claude, "#!/bin/sh\nexec sleep 30\n").expect("write the fake CLI");
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut config = TasksConfig {
        claude: claude.display().to_string(),
        allowed_roots: vec![work.clone()],
        ..TasksConfig::default()
    };
    edit(&mut config);
    let vars_root = root.clone();
    let paths = Paths::from_vars(move |name| match name {
        "HOME" => Some(vars_root.clone().into()),
        "XDG_RUNTIME_DIR" => Some(vars_root.join("run").into()),
        _ => None,
    })
    .expect("paths");
    let (tx, rx) = crossbeam_channel::unbounded();
    let (sup, _) = Supervisor::new(config, BTreeMap::new(), paths, tx).expect("supervisor");
    Fixture { sup, work, _events: rx, _home: home }
}

fn request(text: &str, dir: Option<&Path>) -> StartRequest {
    StartRequest { text: text.into(), dir: dir.map(Path::to_path_buf), ..Default::default() }
}

fn started_id(outcome: &StartOutcome) -> &str {
    match outcome {
        StartOutcome::Started { task_id, .. } => task_id,
        other => panic!("expected started, got {other:?}"),
    }
}

fn rejected(outcome: &StartOutcome) -> RejectReason {
    match outcome {
        StartOutcome::Rejected { reason, .. } => *reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// An ended task in the registry (ids stay unique: the counter moves past it).
fn add_ended(f: &mut Fixture, id: &str, name: &str, edit: impl FnOnce(&mut TaskRecord)) {
    let mut t = sample(id, name, TaskState::Succeeded);
    t.created_at = 1_000;
    t.ended_at = Some(1_060);
    edit(&mut t);
    let n = registry::numeric_id(id).expect("a t<N> id");
    f.sup.registry.next_id = f.sup.registry.next_id.max(n + 1);
    f.sup.registry.tasks.push(t);
}

#[test]
fn show_finds_one_asks_between_several_and_says_when_none() {
    let mut f = fixture(|_| {});
    add_ended(&mut f, "t1", "fix login bug", |_| {});
    add_ended(&mut f, "t2", "fix logout bug", |t| t.state = TaskState::Failed);

    match f.sup.show("t1") {
        ShowOutcome::Found { task } => {
            assert_eq!(task.record.id, "t1");
            assert_eq!(task.elapsed_s, 60);
        }
        other => panic!("expected found, got {other:?}"),
    }
    let v = serde_json::to_value(f.sup.show("login")).expect("json");
    assert_eq!(v["status"], "found", "{v}");
    assert_eq!(v["task"]["id"], "t1", "{v}");
    assert_eq!(v["task"]["elapsed_s"], 60, "{v}");
    assert_eq!(v["task"]["prompt"], "prompt of fix login bug", "the whole record is shown: {v}");

    match f.sup.show("fix") {
        ShowOutcome::Ambiguous { candidates, message } => {
            let ids: Vec<&str> = candidates.iter().map(|c| c.task_id.as_str()).collect();
            assert_eq!(ids, ["t2", "t1"], "newest first");
            assert_eq!(candidates[0].state, TaskState::Failed);
            assert!(message.contains("t1 'fix login bug'") && message.ends_with("which one?"), "{message}");
        }
        other => panic!("expected ambiguous, got {other:?}"),
    }
    let v = serde_json::to_value(f.sup.show("fix")).expect("json");
    assert_eq!(v["status"], "ambiguous", "{v}");
    assert_eq!(v["candidates"][1], json!({"task_id": "t1", "name": "fix login bug", "state": "succeeded"}));

    let v = serde_json::to_value(f.sup.show("deploy")).expect("json");
    assert_eq!(v, json!({"status": "not_found", "message": "no task matches \"deploy\""}));
}

#[test]
fn a_start_and_a_continuation_each_announce_started_once() {
    let mut f = fixture(|_| {});
    let (outcome, notices) = f.sup.start(request("refactor the parser", None), Instant::now());
    assert_eq!(started_id(&outcome), "t1");
    assert_eq!(notices, [Notice::Started("t1".into())]);

    add_ended(&mut f, "t2", "write docs", |t| t.session_id = Some("session-2".into()));
    let (outcome, notices) = f.sup.continue_task("t2", "add examples", Instant::now());
    assert_eq!(started_id(&outcome), "t3");
    assert_eq!(notices, [Notice::Started("t3".into())]);
    let t3 = f.sup.registry().get("t3").expect("recorded");
    assert_eq!((t3.continues.as_deref(), t3.name.as_str()), (Some("t2"), "write docs (continued)"));

    let (outcome, notices) = f.sup.continue_task("t2", "", Instant::now());
    assert_eq!(rejected(&outcome), RejectReason::BadRequest);
    assert!(notices.is_empty(), "a refusal announces nothing: {notices:?}");
}

#[test]
fn a_refused_start_keeps_the_next_id() {
    let mut f = fixture(|_| {});
    let work = f.work.clone();
    let now = Instant::now();
    add_ended(&mut f, "t1", "older in work", |t| {
        t.dir = work.clone();
        t.session_id = Some("s".into());
    });

    let (outcome, notices) = f.sup.start(request("x", Some(&work.join("missing"))), now);
    assert_eq!(rejected(&outcome), RejectReason::NotAllowed);
    assert!(notices.is_empty());
    assert_eq!(f.sup.registry().next_task_id(), "t2");

    assert_eq!(started_id(&f.sup.start(request("first", Some(&work)), now).0), "t2");
    // The directory check comes after isolation, which needs the id: it used to burn one.
    let (outcome, notices) = f.sup.start(request("second", Some(&work)), now);
    assert_eq!(rejected(&outcome), RejectReason::DirectoryBusy);
    assert!(notices.is_empty());
    assert_eq!(f.sup.registry().next_task_id(), "t3");
    assert_eq!(rejected(&f.sup.start(request("  ", None), now).0), RejectReason::BadRequest);
    // A continuation into the busy directory is refused the same way.
    assert_eq!(rejected(&f.sup.continue_task("t1", "more", now).0), RejectReason::DirectoryBusy);
    assert_eq!(f.sup.registry().next_task_id(), "t3");

    let (outcome, _) = f.sup.start(request("elsewhere", None), now);
    assert_eq!(started_id(&outcome), "t3", "no id was consumed by the refusals");
}

#[test]
fn the_budget_warning_is_a_notice_once_a_day() {
    let mut f = fixture(|c| c.budget_usd = 1.0);
    add_ended(&mut f, "t1", "spent most", |t| {
        t.ended_at = Some(unix_now());
        t.cost_usd = Some(0.85);
    });
    let now = Instant::now();
    let (outcome, notices) = f.sup.start(request("one more", None), now);
    let warning = "$0.85 of today's $1.00 budget is spent";
    match &outcome {
        StartOutcome::Started { task_id, warning: w, .. } => {
            assert_eq!(task_id, "t2");
            assert_eq!(w.as_deref(), Some(warning));
        }
        other => panic!("expected started, got {other:?}"),
    }
    assert_eq!(notices, [Notice::Started("t2".into()), Notice::BudgetWarning(warning.into())]);

    let (outcome, notices) = f.sup.start(request("and another", None), now);
    assert!(matches!(&outcome, StartOutcome::Started { warning: Some(_), .. }), "every start carries it: {outcome:?}");
    assert_eq!(notices, [Notice::Started("t3".into())], "the notice comes once a day");
}

#[test]
fn a_task_end_that_crosses_80_percent_warns_once() {
    let mut f = fixture(|c| c.budget_usd = 1.0);
    let now = Instant::now();
    let (_, notices) = f.sup.start(request("costly", None), now);
    assert_eq!(notices, [Notice::Started("t1".into())], "nothing spent yet");
    let (_, _) = f.sup.start(request("cheap", None), now);
    let end = |cost: f64| {
        let result = ResultInfo { result: Some("done".into()), total_cost_usd: Some(cost), ..Default::default() };
        ReaperMsg::Finished(Box::new(Finished { result: Some(result), exit_code: Some(0), ..Default::default() }))
    };
    let notices = f.sup.on_event(TaskEvent { id: "t1".into(), msg: end(0.9) }, now);
    assert_eq!(
        notices,
        [Notice::Ended("t1".into()), Notice::BudgetWarning("$0.90 of today's $1.00 budget is spent".into())]
    );
    let notices = f.sup.on_event(TaskEvent { id: "t2".into(), msg: end(0.05) }, now);
    assert_eq!(notices, [Notice::Ended("t2".into())]);
    assert_eq!(f.sup.registry().get("t1").map(|t| t.state), Some(TaskState::Succeeded));
}

#[test]
fn shutdown_and_restart_record_running_tasks_as_interrupted_alike() {
    let mut f = fixture(|_| {});
    let (outcome, _) = f.sup.start(request("long job", None), Instant::now());
    assert_eq!(started_id(&outcome), "t1");
    f.sup.begin_shutdown(Instant::now());
    f.sup.finish_shutdown();
    let after_shutdown = f.sup.registry().get("t1").cloned().expect("kept");

    // A daemon that died without its shutdown: the next one finds the task running.
    let paths = f.sup.paths.clone();
    let mut crashed = after_shutdown.clone();
    crashed.state = TaskState::Running;
    crashed.summary = None;
    f.sup.registry.tasks = vec![crashed];
    f.sup.save_all().expect("save");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let (restarted, report) = Supervisor::new(TasksConfig::default(), BTreeMap::new(), paths, tx).expect("restart");
    assert_eq!(report.interrupted, ["t1"]);
    let after_restart = restarted.registry().get("t1").expect("kept");
    for t in [&after_shutdown, after_restart] {
        assert_eq!(t.state, TaskState::Interrupted);
        assert!(!t.announced && t.activity.is_none());
        assert_eq!(t.reason.as_deref(), Some("the daemon stopped while the task ran"));
        assert_eq!(t.summary.as_deref(), Some("Task t1 was interrupted because the daemon stopped."));
    }
}
