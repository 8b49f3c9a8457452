//! Where ptt keeps its files, following the XDG base-directory spec.
//!
//! Every path is derived from the environment at start-up (`XDG_CONFIG_HOME`,
//! `XDG_STATE_HOME`, `XDG_DATA_HOME`, `XDG_RUNTIME_DIR`, `HOME`), never hard-coded, so that tests
//! can run whole daemons side by side in temporary homes and a user can move
//! things with the usual variables.
//!
//! The runtime directory holds the control socket, so whoever controls it can
//! answer our clients. It is therefore never adopted on trust: it is created
//! with `mkdir` 0700 and then checked through a descriptor opened with
//! `O_NOFOLLOW` (owner = us, mode 0700, a directory). An existing path is never
//! chmodded: a symlink planted by another user, or a directory we did not make
//! private, is refused with a message that says what to do. Without
//! `XDG_RUNTIME_DIR`, `/run/user/<uid>` is used when it is ours and private,
//! else a private `$TMPDIR/ptt-runtime-<uid>` checked the same way.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// All the paths one daemon (and its clients) agree on.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// The user's home directory (`$HOME`).
    pub(crate) home: PathBuf,
    /// `$XDG_CONFIG_HOME/ptt/config.toml`.
    pub(crate) config_file: PathBuf,
    /// `$XDG_STATE_HOME/ptt`: registry, task logs, scratch directories.
    pub(crate) state_dir: PathBuf,
    /// `$XDG_DATA_HOME/ptt`: downloaded speech models (`models/`).
    pub(crate) data_dir: PathBuf,
    /// `$XDG_RUNTIME_DIR/ptt`: the control socket and the daemon lock (0700).
    pub(crate) runtime_dir: PathBuf,
    /// Without `XDG_RUNTIME_DIR`: the private base directory we create and check
    /// ourselves (`$TMPDIR/ptt-runtime-<uid>`), if `/run/user/<uid>` would not do.
    pub(crate) runtime_fallback: Option<PathBuf>,
}

impl Paths {
    /// Every directory under `dir` (`home`, `config`, `state`, `data`, `run`), for unit tests.
    #[cfg(test)]
    pub(crate) fn under(dir: &Path) -> Paths {
        Paths::from_vars(|k| match k {
            "HOME" => Some(dir.join("home").into()),
            "XDG_CONFIG_HOME" => Some(dir.join("config").into()),
            "XDG_STATE_HOME" => Some(dir.join("state").into()),
            "XDG_DATA_HOME" => Some(dir.join("data").into()),
            "XDG_RUNTIME_DIR" => Some(dir.join("run").into()),
            _ => None,
        })
        .expect("paths")
    }

    /// Reads the XDG variables from the process environment.
    pub(crate) fn from_env() -> Result<Paths> {
        Paths::from_vars(|name| std::env::var_os(name).filter(|v| !v.is_empty()))
    }

    /// Same as [`Paths::from_env`] with an injectable environment (for tests).
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Paths> {
        let home = match var("HOME") {
            Some(h) => PathBuf::from(h),
            None => bail!("HOME is not set; ptt needs a home directory for its config and state"),
        };
        let absolute = |name: &str| var(name).map(PathBuf::from).filter(|p| p.is_absolute());
        let config_home = absolute("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
        let state_home = absolute("XDG_STATE_HOME").unwrap_or_else(|| home.join(".local/state"));
        let data_home = absolute("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share"));
        let (runtime_base, runtime_fallback) = match absolute("XDG_RUNTIME_DIR") {
            Some(dir) => (dir, None),
            None => {
                let uid = nix::unistd::geteuid().as_raw();
                let run_user = PathBuf::from(format!("/run/user/{uid}"));
                if check_private_dir(&run_user).is_ok() {
                    (run_user, None)
                } else {
                    let tmp = absolute("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
                    let base = tmp.join(format!("ptt-runtime-{uid}"));
                    (base.clone(), Some(base))
                }
            }
        };
        Ok(Paths {
            home,
            config_file: config_home.join("ptt").join("config.toml"),
            state_dir: state_home.join("ptt"),
            data_dir: data_home.join("ptt"),
            runtime_dir: runtime_base.join("ptt"),
            runtime_fallback,
        })
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.runtime_dir.join("control.sock")
    }
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.runtime_dir.join("daemon.lock")
    }
    pub(crate) fn registry(&self) -> PathBuf {
        self.state_dir.join("tasks.json")
    }
    pub(crate) fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        self.state_dir.join("scratch")
    }
    pub(crate) fn worktrees_dir(&self) -> PathBuf {
        self.state_dir.join("worktrees")
    }
    /// Where `ptt model download` puts whisper.cpp models.
    pub(crate) fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }
    pub(crate) fn task_log(&self, task_id: &str) -> PathBuf {
        self.logs_dir().join(format!("{task_id}.log"))
    }

    /// Expands a leading `~` or `~/` against the home directory.
    pub(crate) fn expand_tilde(&self, path: &Path) -> PathBuf {
        if let Ok(rest) = path.strip_prefix("~") { self.home.join(rest) } else { path.to_path_buf() }
    }

    /// Creates the runtime directory (and, without `XDG_RUNTIME_DIR`, its private
    /// base) with mode 0700 and checks, without following links, that it is a
    /// directory of ours with mode 0700: the control socket inside must not be
    /// reachable, or replaceable, by anyone else. Never chmods an existing path.
    pub(crate) fn ensure_runtime_dir(&self) -> Result<()> {
        let hint = "set XDG_RUNTIME_DIR to a private directory of yours (mode 0700), e.g. \
                    `export XDG_RUNTIME_DIR=/run/user/$(id -u)` with systemd-logind";
        if let Some(base) = &self.runtime_fallback {
            ensure_private_dir(base).with_context(|| format!("XDG_RUNTIME_DIR is not set; {hint}"))?;
        } else if let Some(base) = self.runtime_dir.parent() {
            check_shared_base(base).with_context(|| format!("unsafe XDG_RUNTIME_DIR; {hint}"))?;
        }
        ensure_private_dir(&self.runtime_dir).with_context(|| format!("refusing the runtime directory; {hint}"))
    }

    /// Creates the state directories (registry, logs, scratch) private to us and
    /// tightens what an older version left readable (see [`tighten_state`]).
    pub(crate) fn ensure_state_dirs(&self) -> Result<()> {
        for dir in [self.state_dir.clone(), self.logs_dir(), self.scratch_dir()] {
            create_private_dir_all(&dir)?;
        }
        tighten_state(&self.state_dir);
        Ok(())
    }
}

/// The umask the daemon was started with, restored in task children (their
/// files belong to the user's project, not to ptt's private state).
static USER_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0o022);

/// Makes everything this process creates private (umask 077: directories 0700,
/// files 0600), remembering the user's umask for children.
pub(crate) fn set_private_umask() {
    // SAFETY: umask has no memory-safety preconditions.
    let old = unsafe { libc::umask(0o077) };
    USER_UMASK.store(old as u32, std::sync::atomic::Ordering::Relaxed);
}

/// The umask to give children (see [`set_private_umask`]).
pub(crate) fn user_umask() -> libc::mode_t {
    USER_UMASK.load(std::sync::atomic::Ordering::Relaxed) as libc::mode_t
}

/// `mkdir -p` with mode 0700 for every component it creates (existing ones are
/// left alone). For state under the user's home, which no one else can replace.
pub(crate) fn create_private_dir_all(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Existing state is made private at start-up: the state directory and its
/// direct subdirectories 0700, the files of the state directory, `logs/` and
/// `dictation/` 0600. Only what we own, never through a symlink (descriptors
/// opened `O_NOFOLLOW`), and never inside task directories (`scratch/`,
/// `worktrees/` hold the user's work; their 0700 parent keeps others out).
pub(crate) fn tighten_state(state_dir: &Path) {
    fn tighten(path: &Path, dir: bool) {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | if dir { libc::O_DIRECTORY } else { 0 };
        let Ok(f) = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path) else { return };
        let Ok(meta) = f.metadata() else { return };
        let want = if dir { 0o700 } else { 0o600 };
        if meta.uid() == nix::unistd::geteuid().as_raw()
            && meta.is_dir() == dir
            && (dir || meta.is_file())
            && meta.mode() & 0o077 != 0
            && let Err(e) = f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & want))
        {
            log::warn!("cannot make {} private: {e}", path.display());
        }
    }
    tighten(state_dir, true);
    let Ok(entries) = std::fs::read_dir(state_dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() {
            tighten(&path, true);
            let name = entry.file_name();
            if name == "logs" || name == "dictation" {
                tighten_files(&path, 2, &tighten);
            }
        } else if kind.is_file() {
            tighten(&path, false);
        }
    }
    fn tighten_files(dir: &Path, depth: u32, tighten: &dyn Fn(&Path, bool)) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_file() {
                tighten(&entry.path(), false);
            } else if kind.is_dir() && depth > 0 {
                tighten(&entry.path(), true);
                tighten_files(&entry.path(), depth - 1, tighten);
            }
        }
    }
}

/// Creates `dir` (its parent must exist) with mode 0700 if it is missing, then
/// checks it with [`check_private_dir`]. Never chmods: a directory that is not
/// already private is refused.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    check_private_dir(dir)
}

/// Is `dir` (not followed if it is a symlink) a directory owned by us with mode 0700?
pub(crate) fn check_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                anyhow::anyhow!("{} is a symlink or not a directory", dir.display())
            }
            _ => anyhow::anyhow!("cannot open {}: {e}", dir.display()),
        })?;
    let meta = f.metadata().with_context(|| format!("cannot stat {}", dir.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if meta.uid() != uid {
        bail!("{} belongs to uid {}, not to us (uid {uid})", dir.display(), meta.uid());
    }
    if meta.mode() & 0o777 != 0o700 {
        bail!(
            "{} has mode {:04o}, not 0700 (ptt never changes the mode of a directory it did not create; \
             remove it or `chmod 700` it if it is yours)",
            dir.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

/// A runtime base named by `XDG_RUNTIME_DIR` may be shared only if no one else
/// can rename what is inside: ours or root's, and not writable by others unless
/// sticky (like `/tmp`).
fn check_shared_base(base: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(base).with_context(|| format!("cannot stat {}", base.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        bail!("{} is not a directory", base.display());
    }
    if meta.uid() != uid && meta.uid() != 0 {
        bail!("{} belongs to uid {}, not to us (uid {uid})", base.display(), meta.uid());
    }
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        bail!("{} is writable by other users (mode {:04o})", base.display(), meta.mode() & 0o7777);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn paths(vars: &[(&str, &str)]) -> Paths {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Paths::from_vars(|k| map.get(k).cloned()).expect("paths")
    }

    #[test]
    fn xdg_variables_win_over_home() {
        let p = paths(&[
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "/cfg"),
            ("XDG_STATE_HOME", "/st"),
            ("XDG_RUNTIME_DIR", "/run/x"),
            ("XDG_DATA_HOME", "/data"),
        ]);
        assert_eq!(p.config_file, PathBuf::from("/cfg/ptt/config.toml"));
        assert_eq!(p.models_dir(), PathBuf::from("/data/ptt/models"));
        assert_eq!(p.state_dir, PathBuf::from("/st/ptt"));
        assert_eq!(p.socket(), PathBuf::from("/run/x/ptt/control.sock"));
    }

    #[test]
    fn defaults_follow_home_and_relative_xdg_is_ignored() {
        let p = paths(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "relative")]);
        assert_eq!(p.config_file, PathBuf::from("/home/u/.config/ptt/config.toml"));
        assert_eq!(p.registry(), PathBuf::from("/home/u/.local/state/ptt/tasks.json"));
        assert_eq!(p.models_dir(), PathBuf::from("/home/u/.local/share/ptt/models"));
        assert_eq!(p.expand_tilde(Path::new("~/code")), PathBuf::from("/home/u/code"));
        assert_eq!(p.expand_tilde(Path::new("/abs")), PathBuf::from("/abs"));
    }

    #[test]
    fn missing_home_is_a_clear_error() {
        let err = Paths::from_vars(|_| None).unwrap_err().to_string();
        assert!(err.contains("HOME is not set"), "{err}");
    }
}
