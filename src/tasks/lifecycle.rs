//! A task's life: launch, progress, stop, end, and the supervisor's timers.
//!
//! Everything that changes a task's state happens here, on the main loop, in
//! answer to a request, a reaper's message or a deadline. Nothing blocks:
//! spawning is a vfork-style clone + exec, killing is a signal, and the `/proc` scans and
//! fsyncs are handed to the sweeper and keeper threads. Deadlines (timeouts,
//! kill grace, stall checks, deferred registry writes) are data, returned by
//! [`Supervisor::next_deadline`] and fired by [`Supervisor::on_timer`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::contract::{
    CancelOutcome, Lookup, Notice, RejectReason, StartOutcome, StartRequest, ambiguity_message, not_found_message,
};
use super::journal::SNAPSHOT_AFTER;
use super::judge::{StopReason, derive_name, judge, mark_interrupted, state_phrase, summarize};
use super::reaper::{self, Finished, LogSpec, ReaperMsg, TaskEvent};
use super::registry::{TaskRecord, TaskState, unix_now};
use super::{Live, REGISTRY_TAIL_LINES, SAVE_DEBOUNCE, SAVE_RETRY, Supervisor, spawn, sweep};
use crate::config::PermissionMode;

impl Supervisor {
    // ----- starting --------------------------------------------------------

    /// Starts a task: the answer for the caller, and the notices for everyone
    /// else (`Started`, and `BudgetWarning` the first time in a day).
    pub(crate) fn start(&mut self, req: StartRequest, now: Instant) -> (StartOutcome, Vec<Notice>) {
        match self.admit(req) {
            Ok(launch) => self.launch(launch, now),
            Err(refused) => (refused, vec![]),
        }
    }

    /// Every check a new task must pass, in order; the launch it may make.
    /// Takes no id: the id is allocated only once the child exists.
    fn admit(&mut self, req: StartRequest) -> Result<Launch, StartOutcome> {
        let reject = |reason, message: String| StartOutcome::Rejected { reason, message };
        let text = req.text.trim().to_string();
        if self.shutting_down {
            return Err(reject(RejectReason::ShuttingDown, "the daemon is shutting down".into()));
        }
        if text.is_empty() {
            return Err(reject(RejectReason::BadRequest, "the task text is empty".into()));
        }
        self.admission_check()?;
        let claude = self.claude_path().map_err(|message| reject(RejectReason::ClaudeNotFound, message))?;
        let origin = self.resolve_dir(&req)?;
        self.ids_left()?;
        let id = self.registry.next_task_id();
        let (dir, worktree) = self.isolate(&id, origin.as_deref())?;
        self.directory_busy(&dir)?;
        // A name is one line of printable text: a newline would forge a table row or a log line.
        let name = req
            .name
            .map(|n| crate::text::single_line(&n))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| crate::text::single_line(&derive_name(&text)));
        Ok(Launch {
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
        })
    }

    /// A follow-up run of an ended task in the same directory, with `--resume`.
    pub(crate) fn continue_task(
        &mut self,
        reference: &str,
        instruction: &str,
        now: Instant,
    ) -> (StartOutcome, Vec<Notice>) {
        match self.admit_continuation(reference, instruction) {
            Ok(launch) => self.launch(launch, now),
            Err(refused) => (refused, vec![]),
        }
    }

    fn admit_continuation(&mut self, reference: &str, instruction: &str) -> Result<Launch, StartOutcome> {
        let instruction = instruction.trim();
        if instruction.is_empty() {
            return Err(StartOutcome::Rejected {
                reason: RejectReason::BadRequest,
                message: "the instruction is empty".into(),
            });
        }
        if self.shutting_down {
            return Err(StartOutcome::Rejected {
                reason: RejectReason::ShuttingDown,
                message: "the daemon is shutting down".into(),
            });
        }
        let parent = match self.lookup(reference, |_| true) {
            Lookup::Found(t) => t.clone(),
            Lookup::Ambiguous(candidates) => {
                let message = ambiguity_message(reference, &candidates);
                return Err(StartOutcome::Ambiguous { candidates, message });
            }
            Lookup::NotFound => return Err(StartOutcome::NotFound { message: not_found_message(reference) }),
        };
        if parent.state.is_active() {
            return Err(StartOutcome::Rejected {
                reason: RejectReason::DirectoryBusy,
                message: format!(
                    "task {} '{}' is still running; wait for it or cancel it first",
                    parent.id, parent.name
                ),
            });
        }
        let Some(session) = parent.session_id.clone() else {
            return Err(StartOutcome::Rejected {
                reason: RejectReason::BadRequest,
                message: format!("task {} never started a Claude session, so it cannot be continued", parent.id),
            });
        };
        self.admission_check()?;
        let claude = self
            .claude_path()
            .map_err(|message| StartOutcome::Rejected { reason: RejectReason::ClaudeNotFound, message })?;
        self.directory_busy(&parent.dir)?;
        self.ids_left()?;
        Ok(Launch {
            id: self.registry.next_task_id(),
            name: format!("{} (continued)", parent.name.trim_end_matches(" (continued)")),
            prompt: instruction.to_string(),
            project: parent.project,
            dir: parent.dir,
            origin: parent.origin_dir,
            worktree: None,
            resume: Some(session),
            continues: Some(parent.id),
            claude,
        })
    }

    /// Spawns the child and records it; the one place a task starts, so the one
    /// place `Started` is built.
    fn launch(&mut self, l: Launch, now: Instant) -> (StartOutcome, Vec<Notice>) {
        if self.config.permission_mode == PermissionMode::BypassPermissions {
            log::warn!("task {}: running with --permission-mode bypassPermissions (tasks.permission_mode)", l.id);
        }
        let uuid = uuid::Uuid::new_v4().to_string();
        // A first run gets its session id from us, so `continue` works even if no init line is read.
        let session_id = l.resume.is_none().then(|| uuid::Uuid::new_v4().to_string());
        let budget = self.config.max_task_usd;
        let prompt = match self.config.permissions {
            crate::config::PermissionPolicy::Ask => self.prompt.clone(),
            crate::config::PermissionPolicy::Deny => None,
        };
        let spec = spawn::SpawnSpec {
            claude: l.claude,
            prompt: l.prompt.clone(),
            dir: l.dir.clone(),
            permission_mode: self.config.permission_mode,
            max_turns: self.config.max_turns,
            model: self.config.model.clone(),
            resume: l.resume,
            task_uuid: uuid.clone(),
            owner_tag: self.owner_tag.clone(),
            env_allow: self.config.env_allow.clone(),
            session_id: session_id.clone(),
            max_budget_usd: (budget > 0.0 && budget.is_finite()).then_some(budget),
            permission_prompt: prompt,
            worktree: l.worktree.clone(),
        };
        let spawned = match spawn::spawn(&spec) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("could not start {}: {e}", spec.claude.display());
                return (StartOutcome::Rejected { reason: RejectReason::SpawnFailed, message }, vec![]);
            }
        };
        // Only now is the id taken: a refused start leaves the counter where it was.
        let counter_before = self.registry.next_id;
        let allocated = self.registry.allocate_id();
        debug_assert_eq!(allocated.as_deref(), Some(l.id.as_str()), "the id checked at admission is the one allocated");
        let pid = spawned.child.id() as i32;
        let log_path = self.paths.task_log(&l.id);
        let mut record = TaskRecord::new(&l.id, &uuid, &l.name, &l.prompt, l.dir.clone());
        record.project = l.project;
        record.origin_dir = l.origin;
        record.branch = l.worktree.as_ref().map(|(_, b)| b.clone());
        record.pid = Some(pid);
        record.pgid = Some(pid);
        record.proc_start = sweep::proc_start_ticks(pid);
        record.continues = l.continues;
        record.log_path = log_path.clone();
        record.session_id = session_id;
        let changes = reaper::ChangeSpec {
            dir: l.dir.clone(),
            base: l.worktree.as_ref().map(|(repo, _)| repo.clone()).unwrap_or_else(|| l.dir.clone()),
        };
        self.registry.tasks.push(record);
        // Invariant: the child is on disk (its record appended to the journal) before anyone hears
        // "started". The page cache is enough: the record must outlive a crash of this daemon, and
        // after a power loss there is no child left to find. If the journal cannot be written,
        // the task does not start: a child no restart could find is killed, nobody hears of it,
        // and the counter goes back (the id was never handed out).
        if let Err(e) = self.save_task(&l.id) {
            self.dirty.remove(&l.id);
            self.registry.tasks.pop();
            self.registry.next_id = counter_before;
            signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            let mut child = spawned.child;
            // Reaped off the loop (a SIGKILLed child exits at once, but `wait` is still a wait).
            let _ = std::thread::Builder::new().name("task-unstarted".into()).stack_size(64 * 1024).spawn(move || {
                let _ = child.wait();
            });
            log::error!("task {} '{}' not started: the task registry cannot be written: {e}", l.id, l.name);
            let message = format!(
                "not started: the task registry cannot be written ({e}); a task nobody could find after a restart \
                 is not run. Free some space or fix {}",
                self.paths.state_dir.display()
            );
            return (StartOutcome::Rejected { reason: RejectReason::StateUnwritable, message }, vec![]);
        }
        let timeout = minutes(self.config.timeout_min);
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
        let log = LogSpec { path: log_path, cap_bytes: u64::from(self.config.log_max_mb) << 20 };
        if let Err(e) = reaper::start(l.id.clone(), spawned.child, spawned.output, log, changes, self.events.clone()) {
            // Without a reaper nobody would wait for the child: stop it now.
            log::error!("task {}: cannot start its reaper thread: {e}", l.id);
            self.stop(&l.id, StopReason::Cancel, now);
        }
        log::info!("task {} '{}' started in {} (pid {pid})", l.id, l.name, l.dir.display());
        let mut notices = vec![Notice::Started(l.id.clone())];
        notices.extend(self.budget_notice());
        (StartOutcome::Started { task_id: l.id, name: l.name, dir: l.dir, warning: self.budget_warning() }, notices)
    }

    pub(crate) fn cancel(&mut self, reference: &str, now: Instant) -> CancelOutcome {
        // Cancelling only makes sense for running tasks; prefer them when matching names.
        let task = match self.lookup_preferring(reference, |t| t.state.is_active()) {
            Lookup::Found(t) => t.clone(),
            Lookup::Ambiguous(candidates) => {
                let message = ambiguity_message(reference, &candidates);
                return CancelOutcome::Ambiguous { candidates, message };
            }
            Lookup::NotFound => return CancelOutcome::NotFound { message: not_found_message(reference) },
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
        let grace = Duration::from_secs(u64::from(self.config.kill_grace_s));
        let Some(live) = self.live.get_mut(id) else { return };
        if live.stop.is_none() || reason == StopReason::Shutdown {
            live.stop = Some(reason);
        }
        if live.kill_at.is_none() {
            live.kill_at = Some(now + grace);
            signal_group(live.pgid, nix::sys::signal::Signal::SIGTERM);
            log::info!("task {id}: SIGTERM to process group {} ({reason:?})", live.pgid);
        }
        // Nothing may hang on a question nobody will answer now.
        let (message, by) = match reason {
            StopReason::Cancel => ("the task was cancelled", "cancel"),
            StopReason::Timeout => ("the task timed out", "timeout"),
            StopReason::Shutdown => ("the ptt daemon is stopping", "shutdown"),
        };
        self.close_permissions(id, message, by);
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

    pub(crate) fn on_event(&mut self, ev: TaskEvent, now: Instant) -> Vec<Notice> {
        let id = ev.id;
        match ev.msg {
            ReaperMsg::Init { session_id, model } => {
                if let Some(t) = self.registry.get_mut(&id) {
                    t.session_id = session_id.or(t.session_id.take());
                    t.model = model;
                    self.schedule_save(&id, now);
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
                    self.schedule_save(&id, now);
                }
                notices
            }
            ReaperMsg::RateLimit { until } => {
                if let Some(t) = self.registry.get_mut(&id)
                    && t.rate_limited_until != until
                {
                    t.rate_limited_until = until;
                    self.schedule_save(&id, now);
                    return vec![Notice::Activity(id)];
                }
                vec![]
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
        // A request still open (the CLI died while asking) is answered too.
        self.close_permissions(id, "the task ended", "end");
        let timeout_min = self.config.timeout_min;
        let (state, reason) = judge(live.stop, &f, timeout_min, self.config.max_task_usd);
        let Some(t) = self.registry.get_mut(id) else { return vec![] };
        t.waiting_for = None;
        t.rate_limited_until = None;
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
        // Persisted with the outcome, in the same record: no second write on the way to the speaker.
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
        t.summary =
            Some(summarize(t, f.result.as_ref().and_then(|r| r.result.as_deref()), f.last_text.as_deref(), &f.changes));
        t.changes = Some(f.changes);
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
        self.registry.prune(self.config.keep_ended as usize);
        // Written, and its leftovers swept, once the end has been published (`after_publish`).
        self.ended.push(id.to_string());
        let mut notices = vec![Notice::Ended(id.to_string())];
        // Spending only grows when a task ends: the moment to warn about the budget.
        notices.extend(self.budget_notice());
        notices
    }

    /// What follows the publication of this round's notices: the records of the tasks that
    /// ended are appended to the journal (results must survive a power loss too: the keeper fsyncs
    /// right after), and whatever they left behind (a Bash command in its own session) is
    /// swept, a moment later and batched with other ends (a /proc scan per task would
    /// compete with the loop for the CPU).
    pub(crate) fn after_publish(&mut self, _now: Instant) {
        if self.ended.is_empty() {
            return;
        }
        let ended = std::mem::take(&mut self.ended);
        for id in &ended {
            let _ = self.save_task(id);
        }
        self.keeper.send(super::journal::KeeperMsg::Flush);
        for id in &ended {
            self.kill_everything(id, None, false);
        }
    }

    /// Has the keeper thread hand free heap pages back to the system (the daemon is idle).
    pub(crate) fn trim_memory(&self) {
        self.keeper.send(super::journal::KeeperMsg::Trim);
    }

    /// The earliest moment [`Supervisor::on_timer`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let stall = self.stall_after();
        let per_task = self.live.values().flat_map(|l| {
            let timeout = if l.stop.is_none() { l.deadline } else { None };
            let kill = if l.killed { None } else { l.kill_at };
            let stall_check = stall.map(|s| l.last_output + s);
            [timeout, kill, stall_check]
        });
        per_task.chain([self.save_at, self.snapshot_at, self.permission_deadline()]).flatten().min()
    }

    fn stall_after(&self) -> Option<Duration> {
        minutes(self.config.stall_min)
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> Vec<Notice> {
        let mut notices = Vec::new();
        let ids: Vec<String> = self.live.keys().cloned().collect();
        let stall = self.stall_after();
        for id in ids {
            let Some(live) = self.live.get(&id) else { continue };
            if live.stop.is_none() && live.deadline.is_some_and(|d| d <= now) {
                log::warn!("task {id}: timed out after {} min", self.config.timeout_min);
                self.stop(&id, StopReason::Timeout, now);
            }
            let Some(live) = self.live.get_mut(&id) else { continue };
            if !live.killed && live.kill_at.is_some_and(|k| k <= now) {
                live.killed = true;
                let pgid = live.pgid;
                log::warn!("task {id}: still alive after the grace period; SIGKILL");
                self.kill_everything(&id, Some(pgid), true);
            }
            let waiting = self.is_waiting(&id);
            if let (Some(stall), Some(live)) = (stall, self.live.get_mut(&id))
                && live.last_output + stall <= now
            {
                live.last_output = now;
                if waiting {
                    // Silence while the user decides is not a stall.
                    continue;
                }
                live.last_output = now;
                if let Some(t) = self.registry.get_mut(&id)
                    && !t.stalled
                {
                    t.stalled = true;
                    log::warn!("task {id} '{}' printed nothing for {} min", t.name, self.config.stall_min);
                    notices.push(Notice::Stalled(id.clone()));
                    self.schedule_save(&id, now);
                }
            }
        }
        notices.extend(self.expire_permissions(now));
        if self.save_at.is_some_and(|s| s <= now) {
            self.save_at = None;
            let _ = self.save_dirty();
        }
        if self.snapshot_at.is_some_and(|s| s <= now) {
            self.snapshot_at = None;
            // A copy, written off the loop (serializing 200 tasks and renaming over the old file took 0.6-5 ms).
            self.keeper.send(super::journal::KeeperMsg::Snapshot(Box::new(self.registry.clone())));
        }
        notices
    }

    /// Task `id` changed in a way that may wait a moment to reach the journal.
    pub(super) fn schedule_save(&mut self, id: &str, now: Instant) {
        self.dirty.insert(id.to_string());
        if self.save_at.is_none() {
            self.save_at = Some(now + SAVE_DEBOUNCE);
        }
    }

    /// Refuses a start once every id has been handed out (the counter never wraps).
    fn ids_left(&self) -> Result<(), StartOutcome> {
        if self.registry.ids_left() {
            return Ok(());
        }
        Err(StartOutcome::Rejected {
            reason: RejectReason::IdsExhausted,
            message: "every task id has been handed out (the counter never wraps); move tasks.json and the logs \
                      aside to start again from t1"
                .into(),
        })
    }

    /// Appends task `id`'s record to the journal now, and hands it to the keeper. On failure
    /// (a full or read-only disk) the state stays in memory and the record is retried in a
    /// few seconds and with every change; the error is returned (a start is refused on it)
    /// and shown by `ptt status`. A task no longer in the registry (pruned) has nothing to write.
    pub(super) fn save_task(&mut self, id: &str) -> Result<(), String> {
        let Some(task) = self.registry.get(id) else {
            self.dirty.remove(id);
            return Ok(());
        };
        let seq = self.registry.seq + 1;
        let next_id = self.registry.next_id;
        let written = super::journal::encode(seq, next_id, task).map_err(anyhow::Error::from).and_then(|line| {
            self.journal.append(seq, &line).map_err(|e| {
                anyhow::Error::from(e).context(format!("cannot append to {}", self.journal.path().display()))
            })
        });
        match written {
            Ok(()) => {
                self.registry.seq = seq;
                self.dirty.remove(id);
                if self.snapshot_at.is_none() {
                    // At once while the snapshot cannot be written: the disk may be back.
                    let wait = if self.keeper.error().is_some() { Duration::ZERO } else { SNAPSHOT_AFTER };
                    self.snapshot_at = Some(Instant::now() + wait);
                }
                if self.save_failed {
                    log::info!("the task registry is written again");
                }
                self.save_failed = false;
                self.registry_error = None;
                Ok(())
            }
            Err(e) => {
                let why = format!("{e:#}");
                if !self.save_failed {
                    log::error!(
                        "cannot write the task registry (kept in memory, retrying; new tasks are refused): {why}"
                    );
                }
                self.dirty.insert(id.to_string());
                self.save_failed = true;
                self.registry_error = Some(why.clone());
                self.save_at = Some(Instant::now() + SAVE_RETRY);
                Err(why)
            }
        }
    }

    /// Appends every task changed since the last append (stops at the first failure, which retries later).
    pub(super) fn save_dirty(&mut self) -> Result<(), String> {
        let ids: Vec<String> = self.dirty.iter().cloned().collect();
        for id in ids {
            self.save_task(&id)?;
        }
        Ok(())
    }

    /// Writes the whole registry as the snapshot now, through the keeper, and waits (shutdown).
    pub(super) fn save_all(&mut self) -> Result<(), String> {
        match self.keeper.write_final(self.registry.clone()) {
            Ok(()) => {
                self.dirty.clear();
                self.save_failed = false;
                self.registry_error = None;
                Ok(())
            }
            Err(why) => {
                self.registry_error = Some(why.clone());
                Err(why)
            }
        }
    }

    // ----- shutdown -----------------------------------------------------------

    /// SIGTERM to every task; their exits are recorded as interrupted.
    pub(crate) fn begin_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let ids: Vec<String> = self.live.keys().cloned().collect();
        for id in ids {
            self.stop(&id, StopReason::Shutdown, now);
        }
    }

    /// Kills whatever is still alive (synchronously: the loop is ending), and
    /// records every task that was running as interrupted.
    pub(crate) fn finish_shutdown(&mut self) {
        let mut uuids = Vec::new();
        let ids: Vec<String> = self.live.keys().cloned().collect();
        for id in &ids {
            self.close_permissions(id, "the ptt daemon is stopping", "shutdown");
        }
        for (id, live) in self.live.drain() {
            signal_group(live.pgid, nix::sys::signal::Signal::SIGKILL);
            if let Some(t) = self.registry.get_mut(&id) {
                t.waiting_for = None;
                uuids.push(t.uuid.clone());
                mark_interrupted(t, unix_now());
            }
        }
        // Also anything a finished task of this run may have left.
        uuids.extend(self.registry.tasks.iter().filter(|t| t.state == TaskState::Interrupted).map(|t| t.uuid.clone()));
        let killed = sweep::kill_tasks(self.uid, &uuids);
        if killed > 0 {
            log::info!("shutdown: killed {killed} leftover task process(es)");
        }
        if let Err(e) = self.save_all() {
            log::error!(
                "shutdown: the task registry could not be written ({e}); what changed since the last good write \
                 (ended tasks, results) is lost"
            );
        }
    }

    // ----- announcements --------------------------------------------------------

    /// Ended tasks whose end nobody has heard yet, oldest first: at most
    /// `max` of them, none older than `max_age_s`.
    pub(crate) fn unannounced(&self, max: usize, max_age_s: u64) -> Vec<&TaskRecord> {
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
    pub(crate) fn mark_announced(&mut self, id: &str, now: Instant) {
        if let Some(t) = self.registry.get_mut(id)
            && !t.announced
        {
            t.announced = true;
            self.schedule_save(id, now);
        }
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
