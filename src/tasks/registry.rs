//! The task registry: every task this user has run, persisted atomically.
//!
//! Only the daemon's main loop owns a [`Registry`]. On disk it is a snapshot,
//! `tasks.json`, written with temp file + fsync + rename (a crash at any
//! moment leaves either the old or the new version, never a torn one), plus
//! the journal of changes since (`tasks.journal`, see [`super::journal`]):
//! loading reads the snapshot and replays the journal's newer records. Ids
//! (`t1`, `t2`, …) keep counting across restarts; a corrupt snapshot is moved
//! aside (the counter is then recovered from the journal and the log files, so
//! ids are never reused).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::changes::Changes;
use super::permission::PermissionEntry;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskState {
    Running,
    /// Running, and waiting for the user to answer a permission request.
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// The daemon stopped (or crashed) while the task ran.
    Interrupted,
}

impl TaskState {
    pub(crate) fn is_active(self) -> bool {
        matches!(self, TaskState::Running | TaskState::Waiting)
    }
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Waiting => "waiting",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::TimedOut => "timed_out",
            TaskState::Interrupted => "interrupted",
        }
    }
}

/// One task, as kept on disk and reported to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TaskRecord {
    /// Short id: `t7`.
    pub(crate) id: String,
    /// The `PTT_TASK_ID` every process of the task carries.
    pub(crate) uuid: String,
    pub(crate) name: String,
    pub(crate) prompt: String,
    pub(crate) project: Option<String>,
    /// Where Claude runs.
    pub(crate) dir: PathBuf,
    /// The directory the task was asked for (differs from `dir` with isolation).
    #[serde(default)]
    pub(crate) origin_dir: Option<PathBuf>,
    #[serde(default)]
    pub(crate) branch: Option<String>,
    pub(crate) state: TaskState,
    pub(crate) pid: Option<i32>,
    pub(crate) pgid: Option<i32>,
    /// Start time of `pid` in clock ticks since boot (`/proc/PID/stat` field
    /// 22): with the pid it identifies the process even after pid reuse.
    pub(crate) proc_start: Option<u64>,
    /// Unix seconds.
    pub(crate) created_at: u64,
    pub(crate) ended_at: Option<u64>,
    pub(crate) session_id: Option<String>,
    pub(crate) model: Option<String>,
    /// The resumed task, for `continue`.
    #[serde(default)]
    pub(crate) continues: Option<String>,
    /// What it is doing now ("editing src/auth.rs").
    pub(crate) activity: Option<String>,
    #[serde(default)]
    pub(crate) stalled: bool,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) num_turns: Option<u64>,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) exit_code: Option<i32>,
    pub(crate) exit_signal: Option<i32>,
    /// Why it failed (or was stopped), in words.
    pub(crate) reason: Option<String>,
    /// The redacted, ear-length summary of the result.
    pub(crate) summary: Option<String>,
    pub(crate) log_path: PathBuf,
    /// The last lines of output (bounded, redacted).
    #[serde(default)]
    pub(crate) tail: Vec<String>,
    #[serde(default)]
    pub(crate) output_bytes: u64,
    /// While waiting: what it wants, in one redacted line ("run: npm install left-pad").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) waiting_for: Option<String>,
    /// Every permission request of the run and its answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) permissions: Vec<PermissionEntry>,
    /// What it changed (files written, the diff stat), known when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) changes: Option<Changes>,
    /// Unix seconds until which the API refuses its requests (a `rate_limit_event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rate_limited_until: Option<u64>,
    /// The user has been told how it ended (by the live session). An ended
    /// task starts unannounced; records from before this field are announced.
    #[serde(default = "announced_by_default")]
    pub(crate) announced: bool,
}

fn announced_by_default() -> bool {
    true
}

impl TaskRecord {
    /// A task that has just started running in `dir`; every other field is
    /// empty until the supervisor fills it in.
    pub(crate) fn new(id: &str, uuid: &str, name: &str, prompt: &str, dir: PathBuf) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            uuid: uuid.into(),
            name: name.into(),
            prompt: prompt.into(),
            project: None,
            dir,
            origin_dir: None,
            branch: None,
            state: TaskState::Running,
            pid: None,
            pgid: None,
            proc_start: None,
            created_at: unix_now(),
            ended_at: None,
            session_id: None,
            model: None,
            continues: None,
            activity: Some("starting".into()),
            stalled: false,
            cost_usd: None,
            num_turns: None,
            duration_ms: None,
            exit_code: None,
            exit_signal: None,
            reason: None,
            summary: None,
            log_path: PathBuf::new(),
            tail: Vec::new(),
            output_bytes: 0,
            waiting_for: None,
            permissions: Vec::new(),
            changes: None,
            rate_limited_until: None,
            announced: true,
        }
    }
}

#[derive(Debug, Deserialize)]
struct RegistryFile {
    #[allow(dead_code)] // part of the file format (serde reads it); nothing branches on it yet
    version: u32,
    next_id: u64,
    /// The last journal record this snapshot includes (0: none, or a file from before the journal).
    #[serde(default)]
    seq: u64,
    tasks: Vec<TaskRecord>,
}

/// The same shape, serialized by reference: saving never copies the records.
#[derive(Serialize)]
struct RegistryFileRef<'a> {
    version: u32,
    next_id: u64,
    seq: u64,
    tasks: &'a [TaskRecord],
}

/// The in-memory registry.
#[derive(Debug, Default, Clone)]
pub(crate) struct Registry {
    pub(crate) next_id: u64,
    /// The last journal record applied (see [`super::journal`]).
    pub(crate) seq: u64,
    pub(crate) tasks: Vec<TaskRecord>,
}

/// What loading found besides the tasks.
#[derive(Debug, Default)]
pub(crate) struct LoadReport {
    /// Set when the file was corrupt and moved aside.
    pub(crate) moved_aside: Option<(PathBuf, String)>,
}

impl Registry {
    /// Loads the registry. A missing file is an empty registry; a corrupt one is
    /// renamed to `tasks.json.corrupt-<unix time>` and reported, and the id
    /// counter is recovered from `logs_dir`.
    pub(crate) fn load(path: &Path, logs_dir: &Path) -> Result<(Registry, LoadReport)> {
        let (mut registry, report) = Registry::load_snapshot(path)?;
        super::journal::replay(&mut registry, &super::journal::journal_path(path));
        let max_seen = registry.tasks.iter().filter_map(|t| numeric_id(&t.id)).max().unwrap_or(0);
        registry.next_id = registry.next_id.max(max_seen.saturating_add(1)).max(next_id_from_logs(logs_dir)).max(1);
        Ok((registry, report))
    }

    /// The snapshot alone (`tasks.json`): missing is empty, corrupt is moved aside.
    fn load_snapshot(path: &Path) -> Result<(Registry, LoadReport)> {
        let mut report = LoadReport::default();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Registry::default(), report)),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        match serde_json::from_slice::<RegistryFile>(&bytes) {
            Ok(file) => Ok((Registry { next_id: file.next_id, seq: file.seq, tasks: file.tasks }, report)),
            Err(e) => {
                let aside = path.with_extension(format!("json.corrupt-{}", unix_now()));
                std::fs::rename(path, &aside)
                    .with_context(|| format!("cannot move corrupt {} aside", path.display()))?;
                report.moved_aside = Some((aside, e.to_string()));
                Ok((Registry::default(), report))
            }
        }
    }

    /// Writes the registry atomically and durably (see [`write_atomic`]). Only
    /// the keeper thread does, and the daemon at start, never the loop.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let file = RegistryFileRef { version: 1, next_id: self.next_id, seq: self.seq, tasks: &self.tasks };
        let bytes = serde_json::to_vec(&file).context("cannot serialize the registry")?;
        write_atomic(path, &bytes)
    }

    /// The id [`Registry::allocate_id`] hands out next, without taking it.
    pub(crate) fn next_task_id(&self) -> String {
        format!("t{}", self.next_id.max(1))
    }

    /// Is there an id left to hand out? The counter never wraps (an id is never
    /// handed out twice), so at its end starts are refused.
    pub(crate) fn ids_left(&self) -> bool {
        self.next_id.max(1).checked_add(1).is_some()
    }

    /// Allocates the next id (`t<N>`); `None` once the counter is exhausted.
    pub(crate) fn allocate_id(&mut self) -> Option<String> {
        let n = self.next_id.max(1);
        self.next_id = n.checked_add(1)?;
        Some(format!("t{n}"))
    }

    pub(crate) fn get(&self, id: &str) -> Option<&TaskRecord> {
        self.tasks.iter().find(|t| t.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut TaskRecord> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }

    /// Puts `task` in place of the record with its id, or after the others when it is new.
    pub(crate) fn upsert(&mut self, task: TaskRecord) {
        match self.tasks.iter_mut().find(|t| t.id == task.id) {
            Some(t) => *t = task,
            None => self.tasks.push(task),
        }
    }

    /// Drops the oldest ended tasks beyond `keep` (their logs stay on disk).
    pub(crate) fn prune(&mut self, keep: usize) {
        let ended = self.tasks.iter().filter(|t| !t.state.is_active()).count();
        let mut excess = ended.saturating_sub(keep);
        if excess == 0 {
            return;
        }
        self.tasks.retain(|t| {
            if excess > 0 && !t.state.is_active() {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// Writes `bytes` to `path` so that readers see the old or the new content
/// (temp file, rename), whatever happens to this process, and after a power
/// loss too (`fdatasync` of the file, fsync of the directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut f = create_exclusive(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_data().with_context(|| format!("cannot fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot rename onto {}", path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `tmp` afresh (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600): a leftover of a
/// crash, or a symlink someone planted, is removed (the link itself, never its
/// target) and never written through.
fn create_exclusive(tmp: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(tmp)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(tmp)?;
            open()
        }
        other => other,
    }
}

/// Flushes `path` and its directory to the disk (what [`write_atomic`]
/// does for its own file), for a file another writer keeps replacing: it
/// flushes whichever version is current, and never writes content itself.
pub(crate) fn sync_path(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_data()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `t12` → 12.
pub(crate) fn numeric_id(id: &str) -> Option<u64> {
    id.strip_prefix('t')?.parse().ok()
}

/// One more than the highest `t<N>.log` in the logs directory (at least 1).
fn next_id_from_logs(logs_dir: &Path) -> u64 {
    let max = std::fs::read_dir(logs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            numeric_id(name.strip_suffix(".log")?)
        })
        .max()
        .unwrap_or(0);
    max.saturating_add(1)
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
pub(crate) fn sample(id: &str, name: &str, state: TaskState) -> TaskRecord {
    let mut t = TaskRecord::new(id, &format!("uuid-{id}"), name, &format!("prompt of {name}"), "/tmp".into());
    t.state = state;
    t.created_at = 1;
    t.log_path = PathBuf::from(format!("/tmp/{id}.log"));
    t.activity = None;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ptt-reg-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(d.join("logs")).expect("mkdir");
        d
    }

    #[test]
    fn save_and_load_keep_tasks_and_counter() {
        let d = tempdir("roundtrip");
        let mut r = Registry { next_id: 1, ..Default::default() };
        let id = r.allocate_id().expect("id");
        assert_eq!(id, "t1");
        r.tasks.push(sample(&id, "auth refactor", TaskState::Succeeded));
        assert_eq!(r.allocate_id().as_deref(), Some("t2"));
        r.save(&d.join("tasks.json")).expect("save");
        let (loaded, report) = Registry::load(&d.join("tasks.json"), &d.join("logs")).expect("load");
        assert!(report.moved_aside.is_none());
        assert_eq!(loaded.tasks, r.tasks);
        assert_eq!(loaded.next_id, 3);
        let leftovers: Vec<_> = std::fs::read_dir(&d).expect("ls").flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temp files left: {leftovers:?}");
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_ids_continue_from_logs() {
        let d = tempdir("corrupt");
        std::fs::write(d.join("tasks.json"), b"{\"version\":1,\"next_id\":").expect("write");
        std::fs::write(d.join("logs/t41.log"), b"x").expect("write");
        let (r, report) = Registry::load(&d.join("tasks.json"), &d.join("logs")).expect("load");
        let (aside, why) = report.moved_aside.expect("moved aside");
        assert!(aside.exists() && !d.join("tasks.json").exists());
        assert!(!why.is_empty());
        assert_eq!(r.next_id, 42);
    }

    #[test]
    fn prune_drops_oldest_ended_only() {
        let mut r = Registry::default();
        r.tasks.push(sample("t1", "a", TaskState::Succeeded));
        r.tasks.push(sample("t2", "b", TaskState::Running));
        r.tasks.push(sample("t3", "c", TaskState::Failed));
        r.tasks.push(sample("t4", "d", TaskState::Cancelled));
        r.prune(1);
        let ids: Vec<_> = r.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["t2", "t4"]);
    }

    #[test]
    fn the_counter_never_wraps() {
        let mut r = Registry { next_id: u64::MAX - 1, ..Default::default() };
        assert!(r.ids_left());
        assert_eq!(r.allocate_id().as_deref(), Some("t18446744073709551614"));
        assert!(!r.ids_left());
        assert_eq!(r.allocate_id(), None, "exhausted, not t1 again");
        assert_eq!(r.allocate_id(), None);
        // A registry or a log naming the last id loads without overflow, and hands out nothing after it.
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("logs")).expect("mkdir");
        std::fs::write(d.path().join("logs/t18446744073709551615.log"), b"x").expect("write");
        let (mut r, _) = Registry::load(&d.path().join("tasks.json"), &d.path().join("logs")).expect("load");
        assert_eq!(r.allocate_id(), None);
        std::fs::write(d.path().join("tasks.json"), br#"{"version":1,"next_id":18446744073709551615,"tasks":[]}"#)
            .expect("write");
        let (mut r, _) = Registry::load(&d.path().join("tasks.json"), &d.path().join("nologs")).expect("load");
        assert_eq!(r.allocate_id(), None);
    }

    #[test]
    fn the_temp_file_never_follows_a_planted_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let path = d.path().join("tasks.json");
        let tmp = d.path().join(format!(".tasks.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).expect("symlink");
        write_atomic(&path, b"{}").expect("write");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious", "written through the link");
        assert_eq!(std::fs::read(&path).expect("registry"), b"{}");
        assert!(!tmp.exists(), "no temp file left");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    }
}
