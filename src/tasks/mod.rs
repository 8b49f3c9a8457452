//! The Claude Code task supervisor.
//!
//! [`Supervisor`] is owned by the daemon's main loop and is the only writer of
//! the task registry. It starts children ([`spawn`]), hands each to its own
//! reaper thread ([`reaper`]), and turns what the reapers report into task
//! state. It never blocks: spawning is a vfork-style clone + exec, killing is a signal, and
//! anything that scans `/proc` runs on a short-lived thread that reports back
//! on the same channel as the reapers. Deadlines (timeouts, kill grace, stall
//! checks, deferred registry writes) are exposed through
//! [`Supervisor::next_deadline`] and fired by [`Supervisor::on_timer`], so the
//! loop owns all waiting.
//!
//! The supervisor is split by concern: [`contract`] (what callers get back:
//! outcomes, notices, views), [`admission`] (whether and where a task may
//! start), [`judge`] (how a finished run is judged and summarized) and
//! [`lifecycle`] (launch, events, cancel, timers, shutdown). This file holds
//! the state they share and its construction.

pub(crate) mod admission;
pub(crate) mod changes;
pub(crate) mod contract;
pub(crate) mod journal;
pub(crate) mod judge;
pub(crate) mod lifecycle;
pub(crate) mod permission;
pub(crate) mod reaper;
pub(crate) mod reference;
pub(crate) mod registry;
pub(crate) mod spawn;
pub(crate) mod stream_json;
pub mod sweep;
#[cfg(test)]
mod tests;
pub(crate) mod waiting;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::Sender;

use crate::config::TasksConfig;
use crate::paths::Paths;
#[cfg(test)]
pub(crate) use contract::RejectReason;
pub(crate) use contract::{
    CancelOutcome, Candidate, Notice, ShowOutcome, StartOutcome, StartRequest, StartupReport, TaskView,
};
use judge::{StopReason, mark_interrupted};
use reaper::{ReaperMsg, TaskEvent};
use registry::{Registry, unix_now};

/// Delay before a non-critical registry change (activity, progress) is written.
const SAVE_DEBOUNCE: Duration = Duration::from_secs(1);
/// Lines of output kept with an ended task in the registry.
const REGISTRY_TAIL_LINES: usize = 10;
/// Delay before retrying a failed registry write.
const SAVE_RETRY: Duration = Duration::from_secs(5);

/// Bookkeeping for a task whose child is alive.
struct Live {
    pgid: i32,
    deadline: Option<Instant>,
    last_output: Instant,
    stop: Option<StopReason>,
    kill_at: Option<Instant>,
    killed: bool,
}

/// The task supervisor: the registry, the live children and their deadlines.
pub(crate) struct Supervisor {
    /// `[tasks]`: all the supervisor reads of the configuration, with `projects`.
    config: TasksConfig,
    /// Spoken project name → directory (the config's `[projects]`).
    projects: BTreeMap<String, PathBuf>,
    paths: Paths,
    registry: Registry,
    live: HashMap<String, Live>,
    events: Sender<TaskEvent>,
    owner_tag: String,
    uid: u32,
    run_started_at: u64,
    save_at: Option<Instant>,
    /// When the keeper gets a copy of the registry to write as the snapshot.
    snapshot_at: Option<Instant>,
    /// Tasks whose changes are not in the journal yet (appended at `save_at`).
    dirty: BTreeSet<String>,
    save_failed: bool,
    /// Why the journal cannot be written, while it cannot (shown by `ptt status`).
    registry_error: Option<String>,
    /// The registry's journal, appended on the loop (see [`journal`]).
    journal: journal::Journal,
    /// The thread that rewrites the snapshot and fsyncs the journal, off the loop.
    keeper: journal::Keeper,
    /// Asks the sweeper thread to kill processes carrying a task's id.
    sweeper: Sender<sweep::SweepRequest>,
    shutting_down: bool,
    /// Tasks that ended since the last [`Supervisor::after_publish`]: their records and sweeps wait for it.
    ended: Vec<String>,
    budget_warned_day: Option<i64>,
    /// Waiting permission requests and remembered rules.
    board: permission::Board,
    /// How tasks reach `ptt mcp-permission` (`None`: this binary's path is unknown).
    prompt: Option<spawn::PermissionPrompt>,
}

impl Supervisor {
    /// Loads the registry, records tasks that were running as interrupted,
    /// and kills processes left behind by a daemon that is gone.
    pub(crate) fn new(
        config: TasksConfig,
        projects: BTreeMap<String, PathBuf>,
        paths: Paths,
        events: Sender<TaskEvent>,
    ) -> Result<(Supervisor, StartupReport)> {
        paths.ensure_state_dirs()?;
        let (mut registry, load) = Registry::load(&paths.registry(), &paths.logs_dir())?;
        let mut report = StartupReport { registry_moved_aside: load.moved_aside, ..Default::default() };
        let now = unix_now();
        for t in registry.tasks.iter_mut().filter(|t| t.state.is_active()) {
            mark_interrupted(t, now);
            report.interrupted.push(t.id.clone());
        }
        registry.prune(config.keep_ended as usize);
        let owner_tag = sweep::owner_tag_of_self();
        let uid = nix::unistd::geteuid().as_raw();
        report.swept = sweep::sweep_orphans(uid, Some(&owner_tag)).len();
        // The registry as loaded (the journal replayed) becomes the snapshot, and the journal starts afresh.
        let journal = journal::Journal::new(journal::journal_path(&paths.registry()), registry.seq);
        let registry_error = match registry.save(&paths.registry()) {
            Ok(()) => {
                if let Err(e) = journal.remove_if_through(registry.seq) {
                    log::warn!("cannot remove the replayed journal: {e}");
                }
                None
            }
            Err(e) => {
                log::error!("cannot write the task registry at start (the journal keeps what it had): {e:#}");
                if let Err(e) = journal.seal() {
                    log::warn!("cannot end the journal's torn last line: {e}");
                }
                Some(format!("{e:#}"))
            }
        };
        let keeper = journal::spawn_keeper(paths.registry(), journal.clone())?;
        let sweep_events = events.clone();
        let sweeper = sweep::spawn_sweeper(uid, move |id, killed| {
            let _ = sweep_events.send(TaskEvent { id, msg: ReaperMsg::Swept { killed } });
        })?;
        let mut sup = Supervisor {
            config,
            projects,
            paths,
            registry,
            live: HashMap::new(),
            events,
            owner_tag,
            uid,
            run_started_at: now,
            save_at: None,
            snapshot_at: None,
            dirty: BTreeSet::new(),
            save_failed: false,
            registry_error,
            journal,
            keeper,
            sweeper,
            shutting_down: false,
            ended: Vec::new(),
            budget_warned_day: None,
            board: permission::Board::default(),
            prompt: None,
        };
        sup.prompt = match std::env::current_exe() {
            Ok(ptt) => Some(spawn::PermissionPrompt { ptt, socket: sup.paths.socket() }),
            Err(e) => {
                log::warn!("cannot find this program's path ({e}); tasks cannot ask for permission");
                None
            }
        };
        Ok((sup, report))
    }

    /// Applies a reloaded config to tasks started from now on.
    pub(crate) fn set_config(&mut self, config: TasksConfig, projects: BTreeMap<String, PathBuf>) {
        self.config = config;
        self.projects = projects;
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn running_count(&self) -> usize {
        self.live.len()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.live.is_empty()
    }
}
