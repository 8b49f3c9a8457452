//! The registry's journal: one small record per change, appended on the loop;
//! the snapshot (`tasks.json`) is rewritten off the loop.
//!
//! Rewriting the whole registry (134 KB with 200 tasks) on every start and end
//! cost the loop 0.6-0.9 ms, and ext4 flushes a file renamed over another, so
//! the tails reached 5 ms, on the way to a reply or an event. Now a change is
//! one line, `{"seq":N,"next_id":M,"task":{…}}`, appended to `tasks.journal`
//! with `O_APPEND` (opened per append, so a read-only remount finds no file
//! open for writing; 0600, never through a symlink). A second after a first
//! change the loop hands a copy of the registry to the keeper thread, which
//! writes it as the snapshot (temp file, fsync, rename; it carries the last
//! `seq` it includes), then removes the journal if nothing was appended since.
//! (A mirror kept by the keeper would cost no copy on the loop, but hold a
//! second registry in memory for good; the copy is made at most once a second.) Loading reads
//! the snapshot and replays the journal's records with a higher `seq`
//! ([`replay`]); a record is a whole task, so replaying one twice is harmless.
//!
//! Crash guarantees (also in ARCHITECTURE.md):
//! - a started task's record is in the journal (the page cache) before anyone
//!   hears "started"; a start whose record the disk refuses is not started;
//! - an ended task's record is appended right after its event is published
//!   (microseconds later), and fsynced by the keeper right after that;
//! - other changes (activity, announced) are appended within a second;
//! - a torn last line (a crash mid-append) is skipped on load; a failed append
//!   is cut off again, so later records never follow a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

use super::registry::{Registry, TaskRecord, sync_path};

/// How long after a first change the loop hands the keeper a copy to write: one write serves a burst.
pub(crate) const SNAPSHOT_AFTER: Duration = Duration::from_secs(1);
/// How long the keeper waits before trying a failed snapshot again (a new change tries at once).
const SNAPSHOT_RETRY: Duration = Duration::from_secs(5);

/// `tasks.journal` next to `tasks.json`.
pub(crate) fn journal_path(registry: &Path) -> PathBuf {
    registry.with_extension("journal")
}

#[derive(Serialize)]
struct LineRef<'a> {
    seq: u64,
    next_id: u64,
    task: &'a TaskRecord,
}

#[derive(Deserialize)]
struct Line {
    seq: u64,
    next_id: u64,
    task: TaskRecord,
}

/// One journal line (with its newline) for `task`.
pub(crate) fn encode(seq: u64, next_id: u64, task: &TaskRecord) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&LineRef { seq, next_id, task })?;
    line.push(b'\n');
    Ok(line)
}

/// Applies the journal's records newer than the snapshot's `seq` to `registry`.
/// Lines that do not parse (a torn last line) are skipped and logged.
pub(crate) fn replay(registry: &mut Registry, path: &Path) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            log::error!(
                "cannot read the task journal {}: {e}; changes since the last snapshot are lost",
                path.display()
            );
            return;
        }
    };
    let base = registry.seq;
    let mut skipped = 0;
    for raw in bytes.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()) {
        match serde_json::from_slice::<Line>(raw) {
            Ok(line) => {
                registry.next_id = registry.next_id.max(line.next_id);
                if line.seq > base {
                    registry.upsert(line.task);
                    registry.seq = registry.seq.max(line.seq);
                }
            }
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        log::warn!("task journal {}: skipped {skipped} unreadable record(s)", path.display());
    }
}

/// The journal file, shared by the loop (appends) and the keeper (removes it once a snapshot holds it all).
#[derive(Clone)]
pub(crate) struct Journal {
    path: PathBuf,
    /// The last `seq` appended; the lock also keeps an append and a removal apart.
    last: Arc<Mutex<u64>>,
}

impl Journal {
    pub(crate) fn new(path: PathBuf, last_seq: u64) -> Journal {
        Journal { path, last: Arc::new(Mutex::new(last_seq)) }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record. On failure (a full or read-only disk) nothing of it stays.
    pub(crate) fn append(&self, seq: u64, line: &[u8]) -> std::io::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = open_append(&self.path)?;
        let len = file.metadata()?.len();
        if let Err(e) = file.write_all(line) {
            let _ = file.set_len(len);
            return Err(e);
        }
        *last = seq;
        Ok(())
    }

    /// Ends a torn last line (a crash in the middle of an append) with a newline, so that the next append
    /// starts a line of its own instead of joining the unreadable one (and being skipped with it). For a
    /// journal kept across a start (when the start's snapshot could not be written).
    pub(crate) fn seal(&self) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        let _last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() == 0 {
            return Ok(());
        }
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Removes the journal when nothing after `seq` was appended (a snapshot through `seq` is on disk).
    pub(crate) fn remove_if_through(&self, seq: u64) -> std::io::Result<()> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last > seq {
            return Ok(());
        }
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Opens the journal for appending (0600, never through a symlink: a link planted in its place is removed).
fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            std::fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

/// What the loop tells the keeper.
pub(crate) enum KeeperMsg {
    /// Write this copy of the registry as the snapshot (the loop sends one a moment after a change).
    Snapshot(Box<Registry>),
    /// Make the journal durable now: an ended task's result must survive a power loss.
    Flush,
    /// Write this registry as the snapshot now, and answer (shutdown).
    Final(Box<Registry>, Sender<Result<(), String>>),
    /// Hand free heap pages back to the system (the daemon is idle again).
    Trim,
}

/// The loop's handle on the keeper thread.
pub(crate) struct Keeper {
    tx: Sender<KeeperMsg>,
    error: Arc<Mutex<Option<String>>>,
}

impl Keeper {
    pub(crate) fn send(&self, msg: KeeperMsg) {
        if self.tx.send(msg).is_err() {
            log::error!("the registry keeper thread is gone; the snapshot is not rewritten (the journal keeps all)");
        }
    }

    /// Why the last snapshot could not be written, while it cannot.
    pub(crate) fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Has the keeper write `registry` as the snapshot, and waits for it.
    pub(crate) fn write_final(&self, registry: Registry) -> Result<(), String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx.send(KeeperMsg::Final(Box::new(registry), tx)).map_err(|_| "the keeper thread is gone".to_string())?;
        rx.recv_timeout(Duration::from_secs(30)).map_err(|_| "the keeper thread did not answer".to_string())?
    }
}

/// Starts the keeper thread. It holds a copy of the registry only from the moment the loop hands
/// it one until it is written (or, while the disk refuses it, until a newer copy replaces it).
pub(crate) fn spawn_keeper(registry_path: PathBuf, journal: Journal) -> std::io::Result<Keeper> {
    let (tx, rx) = crossbeam_channel::unbounded::<KeeperMsg>();
    let error = Arc::new(Mutex::new(None::<String>));
    let shown = Arc::clone(&error);
    std::thread::Builder::new().name("registry-keeper".into()).stack_size(256 * 1024).spawn(move || {
        let mut unwritten: Option<Box<Registry>> = None;
        let mut failed = false;
        loop {
            let msg = if unwritten.is_some() {
                rx.recv_timeout(SNAPSHOT_RETRY)
            } else {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match msg {
                Ok(KeeperMsg::Snapshot(registry)) => {
                    // Copies sent while this one was written are newer: the last one is enough.
                    let mut latest = registry;
                    let mut rest = Vec::new();
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            KeeperMsg::Snapshot(r) => latest = r,
                            other => rest.push(other),
                        }
                    }
                    unwritten = write_snapshot(&registry_path, latest, &journal, &shown, &mut failed);
                    trim();
                    for m in rest {
                        if let KeeperMsg::Flush = m {
                            flush(&journal);
                        } else if let KeeperMsg::Final(r, answer) = m {
                            unwritten = write_snapshot(&registry_path, r, &journal, &shown, &mut failed);
                            let _ = answer.send(result_of(&unwritten, &shown));
                        }
                    }
                }
                Ok(KeeperMsg::Flush) => flush(&journal),
                Ok(KeeperMsg::Final(registry, answer)) => {
                    unwritten = write_snapshot(&registry_path, registry, &journal, &shown, &mut failed);
                    let _ = answer.send(result_of(&unwritten, &shown));
                }
                Ok(KeeperMsg::Trim) => trim(),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(registry) = unwritten.take() {
                        unwritten = write_snapshot(&registry_path, registry, &journal, &shown, &mut failed);
                        trim();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    })?;
    Ok(Keeper { tx, error })
}

fn flush(journal: &Journal) {
    match sync_path(journal.path()) {
        // Gone: a snapshot (fsynced) holds everything it had.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot fsync {}: {e}", journal.path().display()),
        Ok(()) => {}
    }
}

fn result_of(unwritten: &Option<Box<Registry>>, shown: &Mutex<Option<String>>) -> Result<(), String> {
    match unwritten {
        None => Ok(()),
        Some(_) => Err(shown.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()),
    }
}

/// Returns free heap pages of every thread's arena to the system.
fn trim() {
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Writes `registry` as the snapshot (durably), then removes the journal it makes redundant;
/// gives the registry back when the disk refused it (it is tried again).
fn write_snapshot(
    path: &Path,
    registry: Box<Registry>,
    journal: &Journal,
    shown: &Mutex<Option<String>>,
    failed: &mut bool,
) -> Option<Box<Registry>> {
    match registry.save(path) {
        Ok(()) => {
            if *failed {
                log::info!("the task registry is written again");
            }
            *failed = false;
            *shown.lock().unwrap_or_else(|p| p.into_inner()) = None;
            if let Err(e) = journal.remove_if_through(registry.seq) {
                log::warn!("cannot remove the compacted journal {}: {e}", journal.path().display());
            }
            None
        }
        Err(e) => {
            let why = format!("{e:#}");
            if !*failed {
                log::error!(
                    "cannot write the task registry snapshot (retrying; the journal keeps every change while it \
                     can be written): {why}"
                );
            }
            *failed = true;
            *shown.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            Some(registry)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::registry::{TaskState, sample};
    use std::time::Instant;

    #[test]
    fn the_journal_replays_over_an_older_snapshot() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("logs")).expect("mkdir");
        let path = d.path().join("tasks.json");
        let mut r = Registry { next_id: 3, seq: 4, tasks: vec![sample("t1", "a", TaskState::Succeeded)] };
        r.tasks.push(sample("t2", "b", TaskState::Running));
        r.save(&path).expect("snapshot");
        let journal = Journal::new(journal_path(&path), 4);
        // A record the snapshot already has (seq 4) is not applied again: t2 stays running there.
        let mut stale = sample("t2", "b", TaskState::Failed);
        stale.summary = Some("stale".into());
        journal.append(4, &encode(4, 3, &stale).expect("encode")).expect("append");
        let ended = sample("t2", "b", TaskState::Succeeded);
        journal.append(5, &encode(5, 3, &ended).expect("encode")).expect("append");
        let started = sample("t3", "c", TaskState::Running);
        journal.append(6, &encode(6, 4, &started).expect("encode")).expect("append");
        // A crash in the middle of an append: the torn line is skipped.
        let mut torn = encode(7, 5, &sample("t4", "d", TaskState::Running)).expect("encode");
        torn.truncate(torn.len() / 2);
        std::fs::OpenOptions::new().append(true).open(journal.path()).expect("open").write_all(&torn).expect("tear");

        let (loaded, _) = Registry::load(&path, &d.path().join("logs")).expect("load");
        let states: Vec<(&str, TaskState)> = loaded.tasks.iter().map(|t| (t.id.as_str(), t.state)).collect();
        assert_eq!(states, [("t1", TaskState::Succeeded), ("t2", TaskState::Succeeded), ("t3", TaskState::Running)]);
        assert_eq!(loaded.seq, 6);
        assert_eq!(loaded.next_id, 4, "t3 was handed out");

        // The journal is kept across a start (its snapshot could not be written): sealed, the next append is
        // a line of its own, not part of the torn one.
        journal.seal().expect("seal");
        journal.seal().expect("sealing twice adds nothing");
        let after = sample("t5", "e", TaskState::Running);
        journal.append(7, &encode(7, 6, &after).expect("encode")).expect("append");
        let (loaded, _) = Registry::load(&path, &d.path().join("logs")).expect("load");
        assert!(loaded.tasks.iter().any(|t| t.id == "t5"), "the record after the torn line is read");
        assert_eq!(loaded.seq, 7);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(journal.path()).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_compacted_journal_goes_only_when_nothing_came_after() {
        let d = tempfile::tempdir().expect("tempdir");
        let journal = Journal::new(d.path().join("tasks.journal"), 0);
        let line = encode(1, 2, &sample("t1", "a", TaskState::Running)).expect("encode");
        journal.append(1, &line).expect("append");
        journal.append(2, &line).expect("append");
        journal.remove_if_through(1).expect("kept");
        assert!(journal.path().exists(), "record 2 is in no snapshot");
        journal.remove_if_through(2).expect("removed");
        assert!(!journal.path().exists());
        journal.remove_if_through(2).expect("already gone is fine");
    }

    #[test]
    fn the_journal_never_follows_a_planted_symlink() {
        let d = tempfile::tempdir().expect("tempdir");
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let journal = Journal::new(d.path().join("tasks.journal"), 0);
        std::os::unix::fs::symlink(&victim, journal.path()).expect("symlink");
        journal.append(1, b"{}\n").expect("append");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious", "written through the link");
        assert_eq!(std::fs::read(journal.path()).expect("journal"), b"{}\n");
    }

    #[test]
    fn the_keeper_writes_the_snapshot_and_drops_the_journal() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("logs")).expect("mkdir");
        let path = d.path().join("tasks.json");
        let journal = Journal::new(journal_path(&path), 0);
        let keeper = spawn_keeper(path.clone(), journal.clone()).expect("keeper");
        let mut t = sample("t1", "a", TaskState::Succeeded);
        t.summary = Some("kept".into());
        let line = encode(1, 2, &t).expect("encode");
        journal.append(1, &line).expect("append");
        keeper.send(KeeperMsg::Flush);
        let registry = Registry { next_id: 2, seq: 1, tasks: vec![t.clone()] };
        keeper.send(KeeperMsg::Snapshot(Box::new(registry)));
        let deadline = Instant::now() + Duration::from_secs(20);
        while journal.path().exists() {
            assert!(Instant::now() < deadline, "the keeper never compacted the journal");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (loaded, _) = Registry::load(&path, &d.path().join("logs")).expect("load");
        assert_eq!(loaded.tasks, vec![t]);
        assert_eq!((loaded.seq, loaded.next_id), (1, 2));
        assert!(keeper.error().is_none());
    }
}
