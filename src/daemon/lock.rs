//! One daemon per user: an exclusive `flock` on `$XDG_RUNTIME_DIR/ptt/daemon.lock`.
//!
//! The kernel drops the lock when the process dies, however it dies, so there
//! is no stale-lock cleanup. The holder writes its pid into the file so a
//! second `ptt run` can say who is running.

use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

/// Held for the daemon's lifetime.
pub(crate) struct DaemonLock {
    _lock: Flock<std::fs::File>,
}

/// Takes the lock or explains who holds it.
pub(crate) fn acquire(path: &Path) -> Result<DaemonLock> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0).ok();
            lock.rewind().ok();
            let _ = writeln!(lock, "{}", std::process::id());
            let _ = lock.sync_all();
            Ok(DaemonLock { _lock: lock })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            bail!(
                "another ptt daemon is already running for this user{} (lock {}).\n\
                 Use `ptt status` to talk to it, or stop it first (`systemctl --user stop ptt`).",
                if pid.is_empty() { String::new() } else { format!(" (pid {pid})") },
                path.display()
            )
        }
        Err((_, e)) => bail!("cannot lock {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_pid() {
        let path = std::env::temp_dir().join(format!("ptt-lock-{}", uuid::Uuid::new_v4()));
        let first = acquire(&path).expect("first");
        let err = acquire(&path).err().expect("second must fail").to_string();
        assert!(err.contains("already running"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        assert!(acquire(&path).is_ok(), "free again once dropped");
    }
}
