//! Finding and killing a task's processes wherever they went.
//!
//! The real CLI runs its Bash tool in a separate session and process group,
//! and a SIGKILLed CLI orphans it. What every process of a task still shares
//! is its environment: `PTT_TASK_ID` (which task) and `PTT_OWNER` (which
//! daemon, as `pid:start-ticks`). This module scans `/proc` for processes of
//! our uid carrying them. It does blocking file reads, so the daemon calls it
//! from a short-lived thread or before its loop starts, never from the loop.

use std::path::Path;

/// A process that carries a task marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedProcess {
    pub pid: i32,
    pub task_uuid: String,
    pub owner: Option<String>,
}

/// Start time (clock ticks since boot) of `pid`, field 22 of `/proc/PID/stat`.
pub(crate) fn proc_start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// `pid:start` for this process: what children carry in `PTT_OWNER`.
pub(crate) fn owner_tag_of_self() -> String {
    let pid = std::process::id() as i32;
    format!("{pid}:{}", proc_start_ticks(pid).unwrap_or(0))
}

/// Is the daemon named by an owner tag still alive (same pid, same start)?
pub(crate) fn owner_alive(tag: &str) -> bool {
    let Some((pid, start)) = tag.split_once(':') else { return false };
    let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else { return false };
    pid > 0 && proc_start_ticks(pid) == Some(start)
}

/// All live processes of `uid` that carry `PTT_TASK_ID`.
pub fn scan(uid: u32) -> Vec<TaggedProcess> {
    scan_root(Path::new("/proc"), uid)
}

fn scan_root(proc_root: &Path, uid: u32) -> Vec<TaggedProcess> {
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else { return found };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        match entry.metadata() {
            Ok(m) if m.uid() == uid => {}
            _ => continue,
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let mut task_uuid = None;
        let mut owner = None;
        for var in environ.split(|&b| b == 0) {
            if let Some(v) = var.strip_prefix(b"PTT_TASK_ID=") {
                task_uuid = Some(String::from_utf8_lossy(v).into_owned());
            } else if let Some(v) = var.strip_prefix(b"PTT_OWNER=") {
                owner = Some(String::from_utf8_lossy(v).into_owned());
            }
        }
        if let Some(task_uuid) = task_uuid {
            found.push(TaggedProcess { pid, task_uuid, owner });
        }
    }
    found
}

/// SIGKILLs every process of ours carrying one of `uuids`, in rounds until
/// none is left (a process may fork while we kill). Returns how many were
/// killed.
pub(crate) fn kill_tasks(uid: u32, uuids: &[String]) -> usize {
    kill_matching(uid, |p| uuids.contains(&p.task_uuid)).len()
}

/// A request to the sweeper thread: kill what carries `uuid` (task `id`).
#[derive(Debug, Clone)]
pub(crate) struct SweepRequest {
    pub(crate) id: String,
    pub(crate) uuid: String,
    /// A stop after the grace period: scan at once. Otherwise (a routine check
    /// after a normal exit) wait a moment so one scan serves several tasks.
    pub(crate) urgent: bool,
}

/// How long routine requests wait to be batched.
pub(crate) const SWEEP_BATCH: std::time::Duration = std::time::Duration::from_millis(500);

/// Starts the sweeper: one thread that scans `/proc` for the requested tasks'
/// processes and kills them, batching requests so a burst of task ends costs
/// one scan, not one each. `report(id, killed)` is called per request.
pub(crate) fn spawn_sweeper(
    uid: u32,
    report: impl Fn(String, usize) + Send + 'static,
) -> std::io::Result<crossbeam_channel::Sender<SweepRequest>> {
    let (tx, rx) = crossbeam_channel::unbounded::<SweepRequest>();
    std::thread::Builder::new().name("sweeper".into()).stack_size(256 * 1024).spawn(move || {
        while let Ok(first) = rx.recv() {
            if !first.urgent {
                std::thread::sleep(SWEEP_BATCH);
            }
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let uuids: Vec<String> = batch.iter().map(|r| r.uuid.clone()).collect();
            let killed = kill_matching(uid, |p| uuids.contains(&p.task_uuid));
            for req in batch {
                report(req.id, killed.iter().filter(|p| p.task_uuid == req.uuid).count());
            }
        }
    })?;
    Ok(tx)
}

/// Kills processes whose owning daemon is dead (or unknown), except those of
/// `owned_by_us` (tasks the calling daemon still runs). Returns the victims.
pub(crate) fn sweep_orphans(uid: u32, own_tag: Option<&str>) -> Vec<TaggedProcess> {
    let mut victims = Vec::new();
    for _round in 0..5 {
        let batch: Vec<TaggedProcess> = scan(uid)
            .into_iter()
            .filter(|p| match &p.owner {
                Some(o) if Some(o.as_str()) == own_tag => false,
                Some(o) => !owner_alive(o),
                None => true,
            })
            .collect();
        if batch.is_empty() {
            break;
        }
        for p in &batch {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL);
        }
        victims.extend(batch);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    victims.sort_by_key(|p| p.pid);
    victims.dedup_by_key(|p| p.pid);
    victims
}

/// SIGKILLs matching processes in rounds until none is left; returns them.
fn kill_matching(uid: u32, matches: impl Fn(&TaggedProcess) -> bool) -> Vec<TaggedProcess> {
    let mut killed: Vec<TaggedProcess> = Vec::new();
    for _round in 0..5 {
        let batch: Vec<TaggedProcess> = scan(uid).into_iter().filter(|p| matches(p)).collect();
        if batch.is_empty() {
            break;
        }
        for p in batch {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL);
            if !killed.iter().any(|k| k.pid == p.pid) {
                killed.push(p);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Waits (up to 10 s) until the scan sees at least `n` processes tagged with each of `uuids`, and returns
    /// the counts. `spawn` returns once the child's exec cannot fail, but `/proc/PID/environ` shows the new
    /// environment only after the kernel has laid out the new program's memory: a scan right after `spawn`
    /// can miss the tag on a loaded machine.
    fn wait_tagged(uid: u32, uuids: &[&str], n: usize) -> Vec<usize> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let found = scan(uid);
            let counts: Vec<usize> = uuids.iter().map(|u| found.iter().filter(|p| p.task_uuid == *u).count()).collect();
            if counts.iter().all(|&c| c >= n) || std::time::Instant::now() >= deadline {
                return counts;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn own_start_ticks_and_owner_liveness() {
        let tag = owner_tag_of_self();
        assert!(owner_alive(&tag), "{tag}");
        let (pid, start) = tag.split_once(':').expect("tag");
        assert!(!owner_alive(&format!("{pid}:{}", start.parse::<u64>().expect("n") + 1)), "other start time");
        assert!(!owner_alive("garbage"));
        assert!(!owner_alive("0:0"));
    }

    #[test]
    fn finds_and_kills_tagged_processes_including_other_sessions() {
        let uuid = format!("test-{}", uuid::Uuid::new_v4());
        // A child that starts a grandchild in its own session, like the CLI's Bash tool.
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg("setsid sleep 30 & sleep 30")
            .env("PTT_TASK_ID", &uuid)
            .env("PTT_OWNER", owner_tag_of_self())
            .spawn()
            .expect("spawn");
        let uid = nix::unistd::geteuid().as_raw();
        let seen = wait_tagged(uid, &[&uuid], 3)[0];
        assert!(seen >= 3, "sh, sleep and the setsid sleep: saw {seen}");
        let killed = kill_tasks(uid, std::slice::from_ref(&uuid));
        assert!(killed >= 3, "killed {killed}");
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(scan(uid).iter().filter(|p| p.task_uuid == uuid).count(), 0);
    }

    #[test]
    fn orphan_sweep_spares_live_owners() {
        let uuid = format!("test-{}", uuid::Uuid::new_v4());
        let own = owner_tag_of_self();
        let mut mine =
            Command::new("sleep").arg("30").env("PTT_TASK_ID", &uuid).env("PTT_OWNER", &own).spawn().expect("spawn");
        let dead_uuid = format!("test-{}", uuid::Uuid::new_v4());
        let mut orphan = Command::new("sleep")
            .arg("30")
            .env("PTT_TASK_ID", &dead_uuid)
            .env("PTT_OWNER", "999999999:1")
            .spawn()
            .expect("spawn");
        let uid = nix::unistd::geteuid().as_raw();
        // Both children carry their tags before the sweep looks (see `wait_tagged`).
        assert_eq!(wait_tagged(uid, &[&uuid, &dead_uuid], 1), [1, 1], "the tagged children were never seen");
        // Only look at our two test processes: other tests may run tagged processes too.
        let victims = sweep_orphans(uid, None);
        assert!(victims.iter().any(|v| v.task_uuid == dead_uuid), "orphan killed: {victims:?}");
        assert!(!victims.iter().any(|v| v.task_uuid == uuid), "live owner spared");
        assert!(orphan.wait().is_ok());
        assert!(mine.try_wait().expect("try_wait").is_none(), "still running");
        let _ = mine.kill();
        let _ = mine.wait();
    }
}
