//! Admission: whether a task may start, and where it runs.
//!
//! Every refusal a start can meet before a child exists is decided here: the
//! daily budget, the concurrency limit, the Claude CLI being installed, the
//! directory (a project, an explicit path under the allowed roots), isolation,
//! and one task per directory. Keeping them together keeps the order of the
//! checks in one place, and none of them has side effects beyond creating the
//! scratch or worktrees directory the task will run in.

use std::path::{Path, PathBuf};

use super::Supervisor;
use super::contract::{Notice, RejectReason, StartOutcome, StartRequest};
use super::registry::unix_now;
use crate::config::Isolation;

/// The share of `tasks.budget_usd` at which starts carry a warning.
const BUDGET_WARN_AT: f64 = 0.8;

impl Supervisor {
    /// Budget and concurrency: the refusals that do not depend on the request.
    pub(super) fn admission_check(&self) -> Result<(), StartOutcome> {
        let budget = self.config.budget_usd;
        if budget > 0.0 {
            let spent = self.spent_today();
            if spent >= budget {
                return Err(StartOutcome::Rejected {
                    reason: RejectReason::BudgetExceeded,
                    message: format!(
                        "today's budget of ${budget:.2} is used up (${spent:.2} spent); raise tasks.budget_usd or wait until tomorrow"
                    ),
                });
            }
        }
        let max = self.config.max_concurrent as usize;
        if self.live.len() >= max {
            let running: Vec<String> = self
                .registry
                .tasks
                .iter()
                .filter(|t| self.live.contains_key(&t.id))
                .map(|t| format!("{} '{}'", t.id, t.name))
                .collect();
            return Err(StartOutcome::Rejected {
                reason: RejectReason::LimitReached,
                message: format!(
                    "{max} tasks are already running ({}); wait for one or cancel one",
                    running.join(", ")
                ),
            });
        }
        Ok(())
    }

    pub(super) fn claude_path(&self) -> std::result::Result<PathBuf, String> {
        let cmd = &self.config.claude;
        crate::process::find_executable(cmd, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            format!(
                "the Claude Code CLI `{cmd}` was not found{}; install it (npm install -g @anthropic-ai/claude-code) or set tasks.claude",
                if cmd.contains('/') { "" } else { " on PATH" }
            )
        })
    }

    /// The directory asked for: a project, an explicit directory, or none.
    pub(super) fn resolve_dir(&self, req: &StartRequest) -> std::result::Result<Option<PathBuf>, StartOutcome> {
        if let Some(project) = req.project.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            let found = self.projects.iter().find(|(name, _)| name.eq_ignore_ascii_case(project)).or_else(|| {
                let matches: Vec<_> = self
                    .projects
                    .iter()
                    .filter(|(name, _)| name.to_lowercase().contains(&project.to_lowercase()))
                    .collect();
                (matches.len() == 1).then(|| matches[0])
            });
            let Some((_, dir)) = found else {
                let known: Vec<&str> = self.projects.keys().map(String::as_str).collect();
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
                    self.config.allowed_roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Ok(Some(canonical))
    }

    fn allowed(&self, dir: &Path) -> bool {
        let roots = self.config.allowed_roots.iter().chain(self.projects.values());
        roots.filter_map(|r| self.paths.expand_tilde(r).canonicalize().ok()).any(|root| dir.starts_with(&root))
    }

    /// Applies the isolation mode: the directory Claude runs in, and the
    /// worktree to create first.
    #[allow(clippy::type_complexity)]
    pub(super) fn isolate(
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
        match (self.config.isolation, origin) {
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

    /// One task per directory, unless `tasks.share_dirs`.
    pub(super) fn directory_busy(&self, dir: &Path) -> Result<(), StartOutcome> {
        if self.config.share_dirs {
            return Ok(());
        }
        let Some(busy) = self.registry.tasks.iter().find(|t| self.live.contains_key(&t.id) && t.dir == dir) else {
            return Ok(());
        };
        Err(StartOutcome::Rejected {
            reason: RejectReason::DirectoryBusy,
            message: format!(
                "task {} '{}' is already working in {}; wait for it, cancel it, or use isolation \"worktree\"",
                busy.id,
                busy.name,
                dir.display()
            ),
        })
    }

    /// The warning every start carries while today's spending is at 80 % of
    /// `tasks.budget_usd` or more (design.md §5: warn at 80 %, refuse at 100 %).
    pub(super) fn budget_warning(&self) -> Option<String> {
        let budget = self.config.budget_usd;
        if budget <= 0.0 {
            return None;
        }
        let spent = self.spent_today();
        (spent >= BUDGET_WARN_AT * budget).then(|| format!("${spent:.2} of today's ${budget:.2} budget is spent"))
    }

    /// [`Notice::BudgetWarning`] (and a log line) the first time in a local day
    /// that spending reaches 80 % of the budget; `None` after that, and below.
    pub(super) fn budget_notice(&mut self) -> Option<Notice> {
        let message = self.budget_warning()?;
        let today = local_day(unix_now());
        if self.budget_warned_day == Some(today) {
            return None;
        }
        self.budget_warned_day = Some(today);
        log::warn!("{message}");
        Some(Notice::BudgetWarning(message))
    }

    /// Sum of the costs of tasks that ended today (local time).
    pub(crate) fn spent_today(&self) -> f64 {
        let today = local_day(unix_now());
        self.registry
            .tasks
            .iter()
            .filter(|t| t.ended_at.map(local_day) == Some(today))
            .filter_map(|t| t.cost_usd)
            .fold(0.0, |acc, c| acc + c)
    }
}

/// Days since the epoch in local time (for the daily budget).
pub(crate) fn local_day(unix: u64) -> i64 {
    let t = unix as libc::time_t;
    // SAFETY: localtime_r writes only into the struct we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    let offset = if ok { tm.tm_gmtoff } else { 0 };
    (unix as i64 + offset).div_euclid(86_400)
}

/// "14:05": a unix time as a local wall-clock time.
pub(crate) fn local_hhmm(unix: u64) -> String {
    let t = unix as libc::time_t;
    // SAFETY: localtime_r writes only into the struct we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    let secs = if ok { unix as i64 + tm.tm_gmtoff } else { unix as i64 };
    let of_day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}", of_day / 3600, (of_day % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `localtime_r` reads `TZ` from the process environment, which parallel tests share: the zone is set in a
    /// child, this test binary running only [`local_day_in_a_fixed_zone`]. A POSIX rule, so no tzdata is needed:
    /// Central European time, summer time from the last Sunday of March to the last Sunday of October.
    #[test]
    fn local_day_follows_the_zone_across_daylight_saving_changes() {
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args(["tasks::admission::tests::local_day_in_a_fixed_zone", "--exact", "--ignored", "--test-threads=1"])
            .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[ignore = "run by local_day_follows_the_zone_across_daylight_saving_changes, with TZ set"]
    fn local_day_in_a_fixed_zone() {
        assert_eq!(std::env::var("TZ").as_deref(), Ok("CET-1CEST,M3.5.0,M10.5.0/3"));
        // 2026-03-28 23:30 CET: day 20540. 24 hours later it is 00:30 CEST on the 30th, two days on: the clock
        // skipped an hour, so `now + 86_400` is not "tomorrow".
        let before_spring = 1_774_737_000;
        assert_eq!(local_day(before_spring), 20_540);
        assert_eq!(local_day(before_spring + 86_400), 20_542);
        // Local midnight, not UTC midnight, starts a day: 2026-03-29 00:00 CET is 23:00 UTC on the 28th.
        assert_eq!(local_day(1_774_738_800 - 1), 20_540);
        assert_eq!(local_day(1_774_738_800), 20_541);
        // The first midnight in summer time is 22:00 UTC.
        assert_eq!(local_day(1_774_821_600 - 1), 20_541);
        assert_eq!(local_day(1_774_821_600), 20_542);
        // 2026-10-25 00:30 CEST: 24 hours later it is 23:30 CET on the same day (the clock went back).
        let autumn = 1_792_881_000;
        assert_eq!(local_day(autumn), 20_751);
        assert_eq!(local_day(autumn + 86_400), 20_751);
        // Wall-clock times for "rate-limited until HH:MM".
        assert_eq!(local_hhmm(before_spring), "23:30");
        assert_eq!(local_hhmm(autumn), "00:30");
        assert_eq!(local_hhmm(autumn + 86_400), "23:30");
    }
}
