//! Task notifications waiting to be spoken, persisted so none is lost.
//!
//! When a task ends, the daemon writes a short line about it here
//! (`$XDG_STATE_HOME/ptt/notifications.json`, atomically) whether or not a
//! live session is open. A session takes the pending ones when it starts and
//! whenever a new one arrives; a line leaves the file only when the session
//! machine reports it delivered (the server finished the response that spoke
//! it). So a dropped connection, an expired session or a daemon restart in
//! between loses nothing. Old lines are not kept forever: a user who never
//! opens a live session should not hear yesterday's news.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::tasks::registry::{TaskRecord, TaskState, unix_now, write_atomic};

/// At most this many wait; the oldest go first.
pub const MAX_PENDING: usize = 20;
/// Lines older than this are dropped unheard (the task's result stays in the registry).
pub const MAX_AGE_S: u64 = 6 * 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Unique per notification: `<task id>-<unix time>`.
    pub id: String,
    pub task_id: String,
    pub text: String,
    pub created_at: u64,
}

#[derive(Debug)]
pub struct NotificationStore {
    path: PathBuf,
    pending: Vec<Pending>,
}

impl NotificationStore {
    /// Loads the file; a missing or unreadable one starts empty (with a warning).
    pub fn load(path: PathBuf) -> NotificationStore {
        let pending = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                log::warn!("ignoring unreadable {}: {e}", path.display());
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        let mut store = NotificationStore { path, pending };
        store.expire(unix_now());
        store
    }

    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    /// Adds a line about an ended task; returns it.
    pub fn push_task_end(&mut self, task: &TaskRecord) -> Pending {
        let now = unix_now();
        let p = Pending {
            id: format!("{}-{now}", task.id),
            task_id: task.id.clone(),
            text: describe_end(task),
            created_at: now,
        };
        self.pending.retain(|q| q.id != p.id);
        self.pending.push(p.clone());
        if self.pending.len() > MAX_PENDING {
            let excess = self.pending.len() - MAX_PENDING;
            self.pending.drain(..excess);
        }
        self.save();
        p
    }

    /// Removes a delivered (or given up) line.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| p.id != id);
        let removed = self.pending.len() != before;
        if removed {
            self.save();
        }
        removed
    }

    /// Drops lines older than [`MAX_AGE_S`].
    pub fn expire(&mut self, now: u64) {
        let before = self.pending.len();
        self.pending.retain(|p| now.saturating_sub(p.created_at) <= MAX_AGE_S);
        if self.pending.len() != before {
            self.save();
        }
    }

    fn save(&self) {
        let bytes = serde_json::to_vec_pretty(&self.pending).unwrap_or_default();
        if let Err(e) = write_atomic(&self.path, &bytes) {
            log::error!("cannot write {}: {e:#} (notifications stay in memory)", self.path.display());
        }
    }
}

/// "[task t7 'auth refactor' finished in 4m12s, $0.31: <summary>]"
pub fn describe_end(t: &TaskRecord) -> String {
    let took = t.ended_at.unwrap_or_else(unix_now).saturating_sub(t.created_at);
    let took = crate::cli::duration_words(took);
    let cost = t.cost_usd.map(|c| format!(", ${c:.2}")).unwrap_or_default();
    let what = match t.state {
        TaskState::Succeeded => "finished",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "was cancelled",
        TaskState::TimedOut => "timed out",
        TaskState::Interrupted => "was interrupted",
        TaskState::Running => "is running",
    };
    let summary = t.summary.as_deref().unwrap_or("");
    format!("[task {} '{}' {what} after {took}{cost}: {summary}]", t.id, t.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::registry::sample;

    #[test]
    fn persisted_until_removed_and_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.json");
        let mut s = NotificationStore::load(path.clone());
        let mut t = sample("t7", "auth refactor", TaskState::Succeeded);
        t.created_at = unix_now() - 252;
        t.ended_at = Some(unix_now());
        t.cost_usd = Some(0.31);
        t.summary = Some("All tests pass.".into());
        let p = s.push_task_end(&t);
        assert_eq!(p.text, "[task t7 'auth refactor' finished after 4 minutes 12 seconds, $0.31: All tests pass.]");
        let reloaded = NotificationStore::load(path.clone());
        assert_eq!(reloaded.pending(), std::slice::from_ref(&p));
        assert!(s.remove(&p.id));
        assert!(NotificationStore::load(path.clone()).pending().is_empty());
        for i in 0..(MAX_PENDING + 5) {
            let mut t = sample(&format!("t{i}"), "x", TaskState::Failed);
            t.ended_at = Some(unix_now());
            s.push_task_end(&t);
        }
        assert_eq!(s.pending().len(), MAX_PENDING);
        assert_eq!(s.pending()[0].task_id, "t5", "oldest dropped first");
    }

    #[test]
    fn old_lines_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = NotificationStore::load(dir.path().join("n.json"));
        let t = sample("t1", "x", TaskState::Failed);
        s.push_task_end(&t);
        s.expire(unix_now() + MAX_AGE_S + 10);
        assert!(s.pending().is_empty());
    }
}
