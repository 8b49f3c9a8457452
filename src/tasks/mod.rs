//! The Claude Code task supervisor.
//!
//! [`Supervisor`] is owned by the daemon's main loop and is the only writer of
//! the task registry. It starts children ([`spawn`]), hands each to its own
//! reaper thread ([`reaper`]), and turns what the reapers report into task
//! state. It never blocks: spawning is a fork/exec, killing is a signal, and
//! anything that scans `/proc` runs on a short-lived thread that reports back
//! on the same channel as the reapers. Deadlines (timeouts, kill grace, stall
//! checks, deferred registry writes) are exposed through
//! [`Supervisor::next_deadline`] and fired by [`Supervisor::on_timer`], so the
//! loop owns all waiting.
//!
//! The answers ([`StartOutcome`], [`CancelOutcome`], …) serialize to the JSON
//! that both the control socket and the Realtime tools return.

pub mod reaper;
pub mod reference;
pub mod registry;
pub mod spawn;
pub mod stream_json;
pub mod sweep;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam_channel::Sender;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, Isolation, PermissionMode};
use crate::paths::Paths;
use reaper::{Finished, LogSpec, ReaperMsg, TaskEvent};
use reference::Resolution;
use registry::{Durability, Registry, TaskRecord, TaskState, unix_now};

/// Characters of a spoken summary.
pub const SUMMARY_CHARS: usize = 400;
/// Delay before a non-critical registry change (activity, progress) is written.
const SAVE_DEBOUNCE: Duration = Duration::from_secs(1);
/// Lines of output kept with an ended task in the registry.
const REGISTRY_TAIL_LINES: usize = 10;
/// Delay before retrying a failed registry write.
const SAVE_RETRY: Duration = Duration::from_secs(5);

/// A request to start a task.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub text: String,
    pub name: Option<String>,
    pub project: Option<String>,
    pub dir: Option<PathBuf>,
}

/// Why a start was refused (the contract with the model and the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    LimitReached,
    UnknownProject,
    NotAllowed,
    ClaudeNotFound,
    BudgetExceeded,
    DirectoryBusy,
    NotARepository,
    SpawnFailed,
    BadRequest,
    ShuttingDown,
}

/// A task named in an ambiguous answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub task_id: String,
    pub name: String,
    pub state: TaskState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StartOutcome {
    Started {
        task_id: String,
        name: String,
        dir: PathBuf,
        #[serde(skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    Rejected {
        reason: RejectReason,
        message: String,
    },
    Ambiguous {
        candidates: Vec<Candidate>,
        message: String,
    },
    NotFound {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CancelOutcome {
    Cancelling { task_id: String, name: String, message: String },
    NotRunning { task_id: String, name: String, state: TaskState, message: String },
    Ambiguous { candidates: Vec<Candidate>, message: String },
    NotFound { message: String },
}

/// The result of looking a task up.
pub enum Lookup<'a> {
    Found(&'a TaskRecord),
    Ambiguous(Vec<Candidate>),
    NotFound,
}

/// Something the daemon may want to tell others (subscribers, the live session).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Started(String),
    Activity(String),
    Stalled(String),
    Ended(String),
    BudgetWarning(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancel,
    Timeout,
    Shutdown,
}

/// Bookkeeping for a task whose child is alive.
struct Live {
    pgid: i32,
    deadline: Option<Instant>,
    last_output: Instant,
    stop: Option<StopReason>,
    kill_at: Option<Instant>,
    killed: bool,
}

/// What start-up found and did.
#[derive(Debug, Default)]
pub struct StartupReport {
    pub interrupted: Vec<String>,
    pub swept: usize,
    pub registry_moved_aside: Option<(PathBuf, String)>,
}

pub struct Supervisor {
    config: Config,
    paths: Paths,
    registry: Registry,
    live: HashMap<String, Live>,
    events: Sender<TaskEvent>,
    owner_tag: String,
    uid: u32,
    run_started_at: u64,
    save_at: Option<Instant>,
    save_failed: bool,
    /// Asks the syncer thread to fsync the registry (results must survive a power loss).
    syncer: Sender<()>,
    /// Asks the sweeper thread to kill processes carrying a task's id.
    sweeper: Sender<sweep::SweepRequest>,
    shutting_down: bool,
    budget_warned_day: Option<i64>,
}

impl Supervisor {
    /// Loads the registry, records tasks that were running as interrupted,
    /// and kills processes left behind by a daemon that is gone.
    pub fn new(config: Config, paths: Paths, events: Sender<TaskEvent>) -> Result<(Supervisor, StartupReport)> {
        paths.ensure_state_dirs()?;
        let (mut registry, load) = Registry::load(&paths.registry(), &paths.logs_dir())?;
        let mut report = StartupReport { registry_moved_aside: load.moved_aside, ..Default::default() };
        let now = unix_now();
        for t in registry.tasks.iter_mut().filter(|t| t.state == TaskState::Running) {
            t.state = TaskState::Interrupted;
            t.announced = false;
            t.ended_at = Some(now);
            t.reason = Some("the daemon stopped while the task ran".into());
            t.summary = Some(format!("Task {} was interrupted because the daemon stopped.", t.id));
            t.activity = None;
            report.interrupted.push(t.id.clone());
        }
        let owner_tag = sweep::owner_tag_of_self();
        let uid = nix::unistd::geteuid().as_raw();
        report.swept = sweep::sweep_orphans(uid, Some(&owner_tag)).len();
        let syncer = registry::spawn_syncer(paths.registry())?;
        let sweep_events = events.clone();
        let sweeper = sweep::spawn_sweeper(uid, move |id, killed| {
            let _ = sweep_events.send(TaskEvent { id, msg: ReaperMsg::Swept { killed } });
        })?;
        let mut sup = Supervisor {
            config,
            paths,
            registry,
            live: HashMap::new(),
            events,
            owner_tag,
            uid,
            run_started_at: now,
            save_at: None,
            save_failed: false,
            syncer,
            sweeper,
            shutting_down: false,
            budget_warned_day: None,
        };
        sup.save_now(Durability::Synced);
        Ok((sup, report))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies a reloaded config to tasks started from now on.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn running_count(&self) -> usize {
        self.live.len()
    }

    pub fn is_idle(&self) -> bool {
        self.live.is_empty()
    }

    // ----- starting --------------------------------------------------------

    pub fn start(&mut self, req: StartRequest, now: Instant) -> StartOutcome {
        let reject = |reason, message: String| StartOutcome::Rejected { reason, message };
        let text = req.text.trim().to_string();
        if self.shutting_down {
            return reject(RejectReason::ShuttingDown, "the daemon is shutting down".into());
        }
        if text.is_empty() {
            return reject(RejectReason::BadRequest, "the task text is empty".into());
        }
        if let Some(r) = self.admission_check() {
            return r;
        }
        let claude = match self.claude_path() {
            Ok(p) => p,
            Err(message) => return reject(RejectReason::ClaudeNotFound, message),
        };
        let origin = match self.resolve_dir(&req) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let id = self.registry.allocate_id();
        let (dir, worktree) = match self.isolate(&id, origin.as_deref()) {
            Ok(x) => x,
            Err(r) => return r,
        };
        if let Some(r) = self.directory_busy(&dir) {
            return r;
        }
        let name =
            req.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| derive_name(&text));
        self.launch(
            Launch {
                id,
                name,
                prompt: text,
                project: req.project,
                dir,
                origin,
                worktree,
                resume: None,
                continues: None,
                claude,
            },
            now,
        )
    }

    /// A follow-up run of an ended task in the same directory, with `--resume`.
    pub fn continue_task(&mut self, reference: &str, instruction: &str, now: Instant) -> StartOutcome {
        let instruction = instruction.trim();
        if instruction.is_empty() {
            return StartOutcome::Rejected {
                reason: RejectReason::BadRequest,
                message: "the instruction is empty".into(),
            };
        }
        if self.shutting_down {
            return StartOutcome::Rejected {
                reason: RejectReason::ShuttingDown,
                message: "the daemon is shutting down".into(),
            };
        }
        let parent = match self.lookup(reference, |_| true) {
            Lookup::Found(t) => t.clone(),
            Lookup::Ambiguous(candidates) => {
                let message = ambiguity_message(reference, &candidates);
                return StartOutcome::Ambiguous { candidates, message };
            }
            Lookup::NotFound => return StartOutcome::NotFound { message: format!("no task matches \"{reference}\"") },
        };
        if parent.state.is_active() {
            return StartOutcome::Rejected {
                reason: RejectReason::DirectoryBusy,
                message: format!(
                    "task {} '{}' is still running; wait for it or cancel it first",
                    parent.id, parent.name
                ),
            };
        }
        let Some(session) = parent.session_id.clone() else {
            return StartOutcome::Rejected {
                reason: RejectReason::BadRequest,
                message: format!("task {} never started a Claude session, so it cannot be continued", parent.id),
            };
        };
        if let Some(r) = self.admission_check() {
            return r;
        }
        let claude = match self.claude_path() {
            Ok(p) => p,
            Err(message) => return StartOutcome::Rejected { reason: RejectReason::ClaudeNotFound, message },
        };
        if let Some(r) = self.directory_busy(&parent.dir) {
            return r;
        }
        let id = self.registry.allocate_id();
        let name = format!("{} (continued)", parent.name.trim_end_matches(" (continued)"));
        self.launch(
            Launch {
                id,
                name,
                prompt: instruction.to_string(),
                project: parent.project.clone(),
                dir: parent.dir.clone(),
                origin: parent.origin_dir.clone(),
                worktree: None,
                resume: Some(session),
                continues: Some(parent.id.clone()),
                claude,
            },
            now,
        )
    }

    /// Budget and concurrency: the refusals that do not depend on the request.
    fn admission_check(&mut self) -> Option<StartOutcome> {
        let budget = self.config.tasks.budget_usd;
        if budget > 0.0 {
            let spent = self.spent_today();
            if spent >= budget {
                return Some(StartOutcome::Rejected {
                    reason: RejectReason::BudgetExceeded,
                    message: format!(
                        "today's budget of ${budget:.2} is used up (${spent:.2} spent); raise tasks.budget_usd or wait until tomorrow"
                    ),
                });
            }
        }
        let max = self.config.tasks.max_concurrent as usize;
        if self.live.len() >= max {
            let running: Vec<String> = self
                .registry
                .tasks
                .iter()
                .filter(|t| self.live.contains_key(&t.id))
                .map(|t| format!("{} '{}'", t.id, t.name))
                .collect();
            return Some(StartOutcome::Rejected {
                reason: RejectReason::LimitReached,
                message: format!(
                    "{max} tasks are already running ({}); wait for one or cancel one",
                    running.join(", ")
                ),
            });
        }
        None
    }

    fn claude_path(&self) -> std::result::Result<PathBuf, String> {
        let cmd = &self.config.tasks.claude;
        crate::process::find_executable(cmd, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            format!(
                "the Claude Code CLI `{cmd}` was not found{}; install it (npm install -g @anthropic-ai/claude-code) or set tasks.claude",
                if cmd.contains('/') { "" } else { " on PATH" }
            )
        })
    }

    /// The directory asked for: a project, an explicit directory, or none.
    fn resolve_dir(&self, req: &StartRequest) -> std::result::Result<Option<PathBuf>, StartOutcome> {
        if let Some(project) = req.project.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            let found =
                self.config.projects.iter().find(|(name, _)| name.eq_ignore_ascii_case(project)).or_else(|| {
                    let matches: Vec<_> = self
                        .config
                        .projects
                        .iter()
                        .filter(|(name, _)| name.to_lowercase().contains(&project.to_lowercase()))
                        .collect();
                    (matches.len() == 1).then(|| matches[0])
                });
            let Some((_, dir)) = found else {
                let known: Vec<&str> = self.config.projects.keys().map(String::as_str).collect();
                return Err(StartOutcome::Rejected {
                    reason: RejectReason::UnknownProject,
                    message: if known.is_empty() {
                        format!("there is no project \"{project}\"; none are configured ([projects] in the config)")
                    } else {
                        format!("there is no project \"{project}\"; known projects: {}", known.join(", "))
                    },
                });
            };
            let dir = self.paths.expand_tilde(dir);
            if !dir.is_dir() {
                return Err(StartOutcome::Rejected {
                    reason: RejectReason::NotAllowed,
                    message: format!("project \"{project}\" points at {}, which is not a directory", dir.display()),
                });
            }
            return Ok(Some(dir));
        }
        let Some(dir) = req.dir.as_ref() else { return Ok(None) };
        let dir = self.paths.expand_tilde(dir);
        let canonical = match dir.canonicalize() {
            Ok(c) if c.is_dir() => c,
            _ => {
                return Err(StartOutcome::Rejected {
                    reason: RejectReason::NotAllowed,
                    message: format!("{} is not an existing directory", dir.display()),
                });
            }
        };
        if !self.allowed(&canonical) {
            return Err(StartOutcome::Rejected {
                reason: RejectReason::NotAllowed,
                message: format!(
                    "{} is outside the allowed roots ({}); add it to tasks.allowed_roots or [projects]",
                    canonical.display(),
                    self.config
                        .tasks
                        .allowed_roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(Some(canonical))
    }

    fn allowed(&self, dir: &Path) -> bool {
        let roots = self.config.tasks.allowed_roots.iter().chain(self.config.projects.values());
        roots.filter_map(|r| self.paths.expand_tilde(r).canonicalize().ok()).any(|root| dir.starts_with(&root))
    }

    /// Applies the isolation mode: the directory Claude runs in, and the
    /// worktree to create first.
    #[allow(clippy::type_complexity)]
    fn isolate(
        &self,
        id: &str,
        origin: Option<&Path>,
    ) -> std::result::Result<(PathBuf, Option<(PathBuf, String)>), StartOutcome> {
        let scratch = || -> std::result::Result<PathBuf, StartOutcome> {
            let dir = self.paths.scratch_dir().join(id);
            std::fs::create_dir_all(&dir).map_err(|e| StartOutcome::Rejected {
                reason: RejectReason::SpawnFailed,
                message: format!("cannot create scratch directory {}: {e}", dir.display()),
            })?;
            Ok(dir)
        };
        match (self.config.tasks.isolation, origin) {
            (_, None) => Ok((scratch()?, None)),
            (Isolation::None, Some(dir)) => Ok((dir.to_path_buf(), None)),
            (Isolation::Scratch, Some(_)) => Ok((scratch()?, None)),
            (Isolation::Worktree, Some(repo)) => {
                if !repo.join(".git").exists() {
                    return Err(StartOutcome::Rejected {
                        reason: RejectReason::NotARepository,
                        message: format!("isolation is \"worktree\" but {} is not a git repository", repo.display()),
                    });
                }
                if let Err(e) = std::fs::create_dir_all(self.paths.worktrees_dir()) {
                    return Err(StartOutcome::Rejected {
                        reason: RejectReason::SpawnFailed,
                        message: format!("cannot create {}: {e}", self.paths.worktrees_dir().display()),
                    });
                }
                Ok((self.paths.worktrees_dir().join(id), Some((repo.to_path_buf(), format!("ptt/{id}")))))
            }
        }
    }

    fn directory_busy(&self, dir: &Path) -> Option<StartOutcome> {
        if self.config.tasks.share_dirs {
            return None;
        }
        let busy = self.registry.tasks.iter().find(|t| self.live.contains_key(&t.id) && t.dir == dir)?;
        Some(StartOutcome::Rejected {
            reason: RejectReason::DirectoryBusy,
            message: format!(
                "task {} '{}' is already working in {}; wait for it, cancel it, or use isolation \"worktree\"",
                busy.id,
                busy.name,
                dir.display()
            ),
        })
    }

    fn launch(&mut self, l: Launch, now: Instant) -> StartOutcome {
        if self.config.tasks.permission_mode == PermissionMode::BypassPermissions {
            log::warn!("task {}: running with --permission-mode bypassPermissions (tasks.permission_mode)", l.id);
        }
        let uuid = uuid::Uuid::new_v4().to_string();
        let spec = spawn::SpawnSpec {
            claude: l.claude,
            prompt: l.prompt.clone(),
            dir: l.dir.clone(),
            permission_mode: self.config.tasks.permission_mode,
            max_turns: self.config.tasks.max_turns,
            model: self.config.tasks.model.clone(),
            resume: l.resume,
            task_uuid: uuid.clone(),
            owner_tag: self.owner_tag.clone(),
            env_allow: self.config.tasks.env_allow.clone(),
            worktree: l.worktree.clone(),
        };
        let spawned = match spawn::spawn(&spec) {
            Ok(s) => s,
            Err(e) => {
                return StartOutcome::Rejected {
                    reason: RejectReason::SpawnFailed,
                    message: format!("could not start {}: {e}", spec.claude.display()),
                };
            }
        };
        let pid = spawned.child.id() as i32;
        let log_path = self.paths.task_log(&l.id);
        let mut record = TaskRecord::new(&l.id, &uuid, &l.name, &l.prompt, l.dir.clone());
        record.project = l.project;
        record.origin_dir = l.origin;
        record.branch = l.worktree.map(|(_, b)| b);
        record.pid = Some(pid);
        record.pgid = Some(pid);
        record.proc_start = sweep::proc_start_ticks(pid);
        record.continues = l.continues;
        record.log_path = log_path.clone();
        self.registry.tasks.push(record);
        // Invariant: the child is in the registry file before anyone hears "started". An atomic
        // rename is enough: the file must outlive a crash of this daemon (the page cache does),
        // and after a power loss there is no child left to find.
        self.save_now(Durability::Atomic);
        let timeout = minutes(self.config.tasks.timeout_min);
        self.live.insert(
            l.id.clone(),
            Live {
                pgid: pid,
                deadline: timeout.map(|t| now + t),
                last_output: now,
                stop: None,
                kill_at: None,
                killed: false,
            },
        );
        let log = LogSpec { path: log_path, cap_bytes: u64::from(self.config.tasks.log_max_mb) << 20 };
        if let Err(e) = reaper::start(l.id.clone(), spawned.child, spawned.output, log, self.events.clone()) {
            // Without a reaper nobody would wait for the child: stop it now.
            log::error!("task {}: cannot start its reaper thread: {e}", l.id);
            self.stop(&l.id, StopReason::Cancel, now);
        }
        log::info!("task {} '{}' started in {} (pid {pid})", l.id, l.name, l.dir.display());
        StartOutcome::Started { task_id: l.id, name: l.name, dir: l.dir, warning: self.budget_warning() }
    }

    fn budget_warning(&mut self) -> Option<String> {
        let budget = self.config.tasks.budget_usd;
        let spent = self.spent_today();
        if budget <= 0.0 || spent < 0.8 * budget {
            return None;
        }
        let message = format!("${spent:.2} of today's ${budget:.2} budget is spent");
        let today = local_day(unix_now());
        if self.budget_warned_day != Some(today) {
            self.budget_warned_day = Some(today);
            log::warn!("{message}");
        }
        Some(message)
    }

    /// Sum of the costs of tasks that ended today (local time).
    pub fn spent_today(&self) -> f64 {
        let today = local_day(unix_now());
        self.registry
            .tasks
            .iter()
            .filter(|t| t.ended_at.map(local_day) == Some(today))
            .filter_map(|t| t.cost_usd)
            .fold(0.0, |acc, c| acc + c)
    }

    // ----- looking up and stopping ------------------------------------------

    /// Resolves a reference among the tasks `eligible` accepts (ids always resolve).
    pub fn lookup(&self, reference: &str, eligible: impl Fn(&TaskRecord) -> bool) -> Lookup<'_> {
        let tasks = &self.registry.tasks;
        match reference::resolve(reference, tasks, eligible) {
            Resolution::Found(i) => Lookup::Found(&tasks[i]),
            Resolution::Ambiguous(idx) => Lookup::Ambiguous(
                idx.into_iter()
                    .map(|i| Candidate {
                        task_id: tasks[i].id.clone(),
                        name: tasks[i].name.clone(),
                        state: tasks[i].state,
                    })
                    .collect(),
            ),
            Resolution::NotFound => Lookup::NotFound,
        }
    }

    pub fn cancel(&mut self, reference: &str, now: Instant) -> CancelOutcome {
        // Cancelling only makes sense for running tasks; prefer them when matching names.
        let running_only = self.lookup(reference, |t| t.state.is_active());
        let found = match running_only {
            Lookup::NotFound => self.lookup(reference, |_| true),
            other => other,
        };
        let task = match found {
            Lookup::Found(t) => t.clone(),
            Lookup::Ambiguous(candidates) => {
                let message = ambiguity_message(reference, &candidates);
                return CancelOutcome::Ambiguous { candidates, message };
            }
            Lookup::NotFound => return CancelOutcome::NotFound { message: format!("no task matches \"{reference}\"") },
        };
        if !self.live.contains_key(&task.id) {
            return CancelOutcome::NotRunning {
                message: format!("task {} '{}' is not running (it {})", task.id, task.name, state_phrase(task.state)),
                task_id: task.id,
                name: task.name,
                state: task.state,
            };
        }
        self.stop(&task.id, StopReason::Cancel, now);
        CancelOutcome::Cancelling {
            message: format!("cancelling task {} '{}': stopping its processes", task.id, task.name),
            task_id: task.id,
            name: task.name,
        }
    }

    /// SIGTERM to the task's process group now, SIGKILL to everything that
    /// carries its id after the grace period.
    fn stop(&mut self, id: &str, reason: StopReason, now: Instant) {
        let grace = Duration::from_secs(u64::from(self.config.tasks.kill_grace_s));
        let Some(live) = self.live.get_mut(id) else { return };
        if live.stop.is_none() || reason == StopReason::Shutdown {
            live.stop = Some(reason);
        }
        if live.kill_at.is_none() {
            live.kill_at = Some(now + grace);
            signal_group(live.pgid, nix::sys::signal::Signal::SIGTERM);
            log::info!("task {id}: SIGTERM to process group {} ({reason:?})", live.pgid);
        }
    }

    /// Kills a task's process group and has the sweeper thread kill every
    /// process that carries its id (at once when `urgent`, else batched).
    fn kill_everything(&self, id: &str, live_pgid: Option<i32>, urgent: bool) {
        if let Some(pgid) = live_pgid {
            signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        }
        let Some(uuid) = self.registry.get(id).map(|t| t.uuid.clone()) else { return };
        if self.sweeper.send(sweep::SweepRequest { id: id.to_string(), uuid, urgent }).is_err() {
            log::error!("the sweeper thread is gone; task {id}'s leftover processes were not checked");
        }
    }

    // ----- events and timers --------------------------------------------------

    pub fn on_event(&mut self, ev: TaskEvent, now: Instant) -> Vec<Notice> {
        let id = ev.id;
        match ev.msg {
            ReaperMsg::Init { session_id, model } => {
                if let Some(t) = self.registry.get_mut(&id) {
                    t.session_id = session_id.or(t.session_id.take());
                    t.model = model;
                    self.schedule_save(now);
                }
                vec![]
            }
            ReaperMsg::Progress { activity, output_bytes } => {
                let mut notices = vec![];
                if let Some(live) = self.live.get_mut(&id) {
                    live.last_output = now;
                }
                if let Some(t) = self.registry.get_mut(&id) {
                    t.output_bytes = output_bytes;
                    t.stalled = false;
                    if let Some(a) = activity
                        && t.activity.as_deref() != Some(&a)
                    {
                        t.activity = Some(a);
                        notices.push(Notice::Activity(id.clone()));
                    }
                    self.schedule_save(now);
                }
                notices
            }
            ReaperMsg::Finished(f) => self.on_finished(&id, *f),
            ReaperMsg::Swept { killed } => {
                if killed > 0 {
                    log::info!("task {id}: killed {killed} leftover process(es) carrying its id");
                }
                vec![]
            }
        }
    }

    fn on_finished(&mut self, id: &str, f: Finished) -> Vec<Notice> {
        let Some(live) = self.live.remove(id) else {
            log::debug!("task {id}: exit reported for a task that is not live");
            return vec![];
        };
        let timeout_min = self.config.tasks.timeout_min;
        let (state, reason) = judge(live.stop, &f, timeout_min);
        let Some(t) = self.registry.get_mut(id) else { return vec![] };
        if let Some(r) = &f.result {
            t.cost_usd = r.total_cost_usd;
            t.num_turns = r.num_turns;
            t.duration_ms = r.duration_ms;
            if t.session_id.is_none() {
                t.session_id = r.session_id.clone();
            }
        }
        t.state = state;
        t.ended_at = Some(unix_now());
        // Persisted with the outcome, in the same write: no second fsync on the way to the speaker.
        t.announced = false;
        t.exit_code = f.exit_code;
        t.exit_signal = f.exit_signal;
        t.activity = None;
        t.stalled = false;
        t.output_bytes = f.output_bytes;
        // The registry keeps the last lines; the whole output is in the log.
        let keep = f.tail.len().saturating_sub(REGISTRY_TAIL_LINES);
        t.tail = f.tail.into_iter().skip(keep).collect();
        t.reason = reason.as_deref().map(crate::text::redact);
        t.summary = Some(summarize(t, f.result.as_ref().and_then(|r| r.result.as_deref()), f.last_text.as_deref()));
        if let Some(e) = &f.log_error {
            t.tail.push(format!("[ptt: {e}]"));
        }
        let line = format!(
            "task {} '{}' {}{}",
            t.id,
            t.name,
            state.as_str(),
            t.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        );
        if state == TaskState::Succeeded {
            log::info!("{line}")
        } else {
            log::warn!("{line}")
        }
        self.registry.prune(self.config.tasks.keep_ended as usize);
        // Results must survive a power loss too: the syncer thread fsyncs right after.
        self.save_now(Durability::Atomic);
        let _ = self.syncer.send(());
        // Whatever the task left behind (a Bash command in its own session) goes too, a
        // moment later and batched with other ends: a /proc scan per task would compete
        // with the loop for the CPU.
        self.kill_everything(id, None, false);
        vec![Notice::Ended(id.to_string())]
    }

    /// The earliest moment [`Supervisor::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stall = self.stall_after();
        let per_task = self.live.values().flat_map(|l| {
            let timeout = if l.stop.is_none() { l.deadline } else { None };
            let kill = if l.killed { None } else { l.kill_at };
            let stall_check = stall.map(|s| l.last_output + s);
            [timeout, kill, stall_check]
        });
        per_task.chain([self.save_at]).flatten().min()
    }

    fn stall_after(&self) -> Option<Duration> {
        minutes(self.config.tasks.stall_min)
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Notice> {
        let mut notices = Vec::new();
        let ids: Vec<String> = self.live.keys().cloned().collect();
        let stall = self.stall_after();
        for id in ids {
            let Some(live) = self.live.get(&id) else { continue };
            if live.stop.is_none() && live.deadline.is_some_and(|d| d <= now) {
                log::warn!("task {id}: timed out after {} min", self.config.tasks.timeout_min);
                self.stop(&id, StopReason::Timeout, now);
            }
            let Some(live) = self.live.get_mut(&id) else { continue };
            if !live.killed && live.kill_at.is_some_and(|k| k <= now) {
                live.killed = true;
                let pgid = live.pgid;
                log::warn!("task {id}: still alive after the grace period; SIGKILL");
                self.kill_everything(&id, Some(pgid), true);
            }
            if let (Some(stall), Some(live)) = (stall, self.live.get_mut(&id))
                && live.last_output + stall <= now
            {
                live.last_output = now;
                if let Some(t) = self.registry.get_mut(&id)
                    && !t.stalled
                {
                    t.stalled = true;
                    log::warn!("task {id} '{}' printed nothing for {} min", t.name, self.config.tasks.stall_min);
                    notices.push(Notice::Stalled(id.clone()));
                    self.schedule_save(now);
                }
            }
        }
        if self.save_at.is_some_and(|s| s <= now) {
            self.save_at = None;
            self.save_now(Durability::Atomic);
        }
        notices
    }

    fn schedule_save(&mut self, now: Instant) {
        if self.save_at.is_none() {
            self.save_at = Some(now + SAVE_DEBOUNCE);
        }
    }

    /// Writes the registry. On failure (a full disk) the state stays in memory
    /// and the write is retried in a few seconds and on every change.
    fn save_now(&mut self, durability: Durability) {
        match self.registry.save(&self.paths.registry(), durability) {
            Ok(()) => {
                if self.save_failed {
                    log::info!("the task registry is written again");
                }
                self.save_failed = false;
            }
            Err(e) => {
                if !self.save_failed {
                    log::error!("cannot write the task registry (kept in memory, retrying): {e:#}");
                }
                self.save_failed = true;
                self.save_at = Some(Instant::now() + SAVE_RETRY);
            }
        }
    }

    // ----- shutdown -----------------------------------------------------------

    /// SIGTERM to every task; their exits are recorded as interrupted.
    pub fn begin_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let ids: Vec<String> = self.live.keys().cloned().collect();
        for id in ids {
            self.stop(&id, StopReason::Shutdown, now);
        }
    }

    /// Kills whatever is still alive (synchronously: the loop is ending), and
    /// records every task that was running as interrupted.
    pub fn finish_shutdown(&mut self) {
        let mut uuids = Vec::new();
        for (id, live) in self.live.drain() {
            signal_group(live.pgid, nix::sys::signal::Signal::SIGKILL);
            if let Some(t) = self.registry.get_mut(&id) {
                uuids.push(t.uuid.clone());
                t.state = TaskState::Interrupted;
                t.announced = false;
                t.ended_at = Some(unix_now());
                t.activity = None;
                t.reason = Some("the daemon stopped while the task ran".into());
                t.summary = Some(format!("Task {} was interrupted because the daemon stopped.", t.id));
            }
        }
        // Also anything a finished task of this run may have left.
        uuids.extend(self.registry.tasks.iter().filter(|t| t.state == TaskState::Interrupted).map(|t| t.uuid.clone()));
        let killed = sweep::kill_tasks(self.uid, &uuids);
        if killed > 0 {
            log::info!("shutdown: killed {killed} leftover task process(es)");
        }
        self.save_now(Durability::Synced);
    }

    // ----- announcements --------------------------------------------------------

    /// Ended tasks whose end nobody has heard yet, oldest first: at most
    /// `max` of them, none older than `max_age_s`.
    pub fn unannounced(&self, max: usize, max_age_s: u64) -> Vec<&TaskRecord> {
        let now = unix_now();
        let fresh: Vec<&TaskRecord> = self
            .registry
            .tasks
            .iter()
            .filter(|t| !t.announced && !t.state.is_active())
            .filter(|t| t.ended_at.is_some_and(|e| now.saturating_sub(e) <= max_age_s))
            .collect();
        let skip = fresh.len().saturating_sub(max);
        fresh.into_iter().skip(skip).collect()
    }

    /// The user has heard how task `id` ended.
    pub fn mark_announced(&mut self, id: &str, now: Instant) {
        if let Some(t) = self.registry.get_mut(id)
            && !t.announced
        {
            t.announced = true;
            self.schedule_save(now);
        }
    }

    // ----- views --------------------------------------------------------------

    /// A task as clients see it: the record plus elapsed seconds.
    pub fn view(&self, t: &TaskRecord) -> Value {
        let mut v = serde_json::to_value(t).unwrap_or_else(|_| json!({}));
        let end = t.ended_at.unwrap_or_else(unix_now);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("elapsed_s".into(), json!(end.saturating_sub(t.created_at)));
        }
        v
    }

    /// Tasks of this run and recent ones (a day), or all.
    pub fn list(&self, all: bool) -> Vec<Value> {
        let since = self.run_started_at.min(unix_now().saturating_sub(24 * 3600));
        self.registry
            .tasks
            .iter()
            .filter(|t| all || t.state.is_active() || t.created_at >= since || t.ended_at.is_some_and(|e| e >= since))
            .map(|t| self.view(t))
            .collect()
    }

    pub fn status(&self) -> Value {
        let budget = self.config.tasks.budget_usd;
        json!({
            "running": self.live.len(),
            "max_concurrent": self.config.tasks.max_concurrent,
            "known": self.registry.tasks.len(),
            "next_id": format!("t{}", self.registry.next_id),
            "spent_today_usd": (self.spent_today() * 10000.0).round() / 10000.0,
            "budget_usd": budget,
            "claude": match self.claude_path() { Ok(p) => json!({"path": p}), Err(e) => json!({"error": e}) },
            "shutting_down": self.shutting_down,
        })
    }
}

struct Launch {
    id: String,
    name: String,
    prompt: String,
    project: Option<String>,
    dir: PathBuf,
    origin: Option<PathBuf>,
    worktree: Option<(PathBuf, String)>,
    resume: Option<String>,
    continues: Option<String>,
    claude: PathBuf,
}

/// A positive number of minutes as a duration; 0 (or nonsense) is "never".
fn minutes(m: f64) -> Option<Duration> {
    (m > 0.0 && m.is_finite()).then(|| Duration::from_secs_f64(m * 60.0))
}

fn signal_group(pgid: i32, sig: nix::sys::signal::Signal) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
    }
}

/// The outcome from how the run ended. Failure is judged by `is_error`, the
/// exit status and why we stopped it, never by `subtype`.
fn judge(stop: Option<StopReason>, f: &Finished, timeout_min: f64) -> (TaskState, Option<String>) {
    match stop {
        Some(StopReason::Cancel) => return (TaskState::Cancelled, Some("cancelled".into())),
        Some(StopReason::Timeout) => {
            return (TaskState::TimedOut, Some(format!("stopped after the {timeout_min} min timeout")));
        }
        Some(StopReason::Shutdown) => {
            return (TaskState::Interrupted, Some("the daemon stopped while the task ran".into()));
        }
        None => {}
    }
    let how = match (f.exit_code, f.exit_signal) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "ended in an unknown way".into(),
    };
    match &f.result {
        Some(r) if r.is_error => {
            let why = r
                .result
                .clone()
                .filter(|s| !s.trim().is_empty())
                .or_else(|| r.terminal_reason.clone())
                .or_else(|| r.subtype.clone())
                .unwrap_or_else(|| "Claude reported an error".into());
            (TaskState::Failed, Some(crate::text::clip(&why, 500)))
        }
        Some(_) if f.exit_code == Some(0) => (TaskState::Succeeded, None),
        Some(_) => (TaskState::Failed, Some(format!("claude {how} after reporting a result"))),
        None => {
            let detail = f.last_plain.as_deref().map(|l| format!(": {l}")).unwrap_or_default();
            (TaskState::Failed, Some(crate::text::clip(&format!("claude {how} without a result{detail}"), 500)))
        }
    }
}

/// The ear-length summary stored with the task.
fn summarize(t: &TaskRecord, result: Option<&str>, last_text: Option<&str>) -> String {
    let body = match t.state {
        TaskState::Succeeded => {
            result.or(last_text).filter(|s| !s.trim().is_empty()).unwrap_or("It finished without a summary.")
        }
        _ => t.reason.as_deref().unwrap_or("No reason was given."),
    };
    crate::text::for_the_ear(body, SUMMARY_CHARS)
}

fn state_phrase(s: TaskState) -> &'static str {
    match s {
        TaskState::Running => "is running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "was cancelled",
        TaskState::TimedOut => "timed out",
        TaskState::Interrupted => "was interrupted",
    }
}

pub fn ambiguity_message(reference: &str, candidates: &[Candidate]) -> String {
    let list: Vec<String> =
        candidates.iter().map(|c| format!("{} '{}' ({})", c.task_id, c.name, c.state.as_str())).collect();
    format!("\"{reference}\" matches several tasks: {}; which one?", list.join(", "))
}

/// A short name from the task text: its first few meaningful words.
pub fn derive_name(text: &str) -> String {
    const SKIP: &[&str] =
        &["the", "a", "an", "please", "can", "you", "could", "to", "in", "of", "and", "for", "on", "my"];
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| !w.is_empty() && !SKIP.contains(&w.as_str()))
        .take(4)
        .collect();
    if words.is_empty() { "task".into() } else { crate::text::clip(&words.join(" "), 40) }
}

/// Days since the epoch in local time (for the daily budget).
pub fn local_day(unix: u64) -> i64 {
    let t = unix as libc::time_t;
    // SAFETY: localtime_r writes only into the struct we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    let offset = if ok { tm.tm_gmtoff } else { 0 };
    (unix as i64 + offset).div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_json::ResultInfo;

    fn finished(result: Option<ResultInfo>, code: Option<i32>) -> Finished {
        Finished { result, exit_code: code, ..Default::default() }
    }

    #[test]
    fn judged_by_is_error_not_subtype() {
        let r = ResultInfo {
            is_error: true,
            subtype: Some("success".into()),
            result: Some("Not logged in · Please run /login".into()),
            ..Default::default()
        };
        let (state, reason) = judge(None, &finished(Some(r), Some(1)), 30.0);
        assert_eq!(state, TaskState::Failed);
        assert_eq!(reason.as_deref(), Some("Not logged in · Please run /login"));
    }

    #[test]
    fn success_needs_result_and_clean_exit() {
        let ok = ResultInfo { result: Some("done".into()), ..Default::default() };
        assert_eq!(judge(None, &finished(Some(ok.clone()), Some(0)), 30.0).0, TaskState::Succeeded);
        let (s, why) = judge(None, &finished(Some(ok), Some(2)), 30.0);
        assert_eq!(s, TaskState::Failed);
        assert!(why.unwrap_or_default().contains("status 2"));
        let f = Finished { exit_code: Some(1), last_plain: Some("No conversation found".into()), ..Default::default() };
        let (s, why) = judge(None, &f, 30.0);
        assert_eq!(s, TaskState::Failed);
        assert_eq!(why.as_deref(), Some("claude exited with status 1 without a result: No conversation found"));
        let f = Finished { exit_signal: Some(9), ..Default::default() };
        assert!(judge(None, &f, 30.0).1.unwrap_or_default().contains("signal 9"));
    }

    #[test]
    fn our_stops_win() {
        let ok = ResultInfo::default();
        assert_eq!(judge(Some(StopReason::Cancel), &finished(Some(ok.clone()), Some(0)), 30.0).0, TaskState::Cancelled);
        assert_eq!(judge(Some(StopReason::Timeout), &finished(None, None), 30.0).0, TaskState::TimedOut);
        assert_eq!(judge(Some(StopReason::Shutdown), &finished(None, Some(143)), 30.0).0, TaskState::Interrupted);
    }

    #[test]
    fn names_from_text() {
        assert_eq!(
            derive_name("Please refactor the auth module in the website project"),
            "refactor auth module website"
        );
        assert_eq!(derive_name("!!!"), "task");
    }

    #[test]
    fn local_day_is_stable_within_a_day() {
        let now = unix_now();
        let d = local_day(now);
        assert!(d > 19_000, "{d}");
        assert_eq!(local_day(now + 86_400), d + 1);
    }
}
