//! Where ptt keeps its files, following the XDG base-directory spec.
//!
//! Every path is derived from the environment at start-up (`XDG_CONFIG_HOME`,
//! `XDG_STATE_HOME`, `XDG_RUNTIME_DIR`, `HOME`), never hard-coded, so that tests
//! can run whole daemons side by side in temporary homes and a user can move
//! things with the usual variables.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// All the paths one daemon (and its clients) agree on.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The user's home directory (`$HOME`).
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME/ptt/config.toml`.
    pub config_file: PathBuf,
    /// `$XDG_STATE_HOME/ptt`: registry, task logs, scratch directories.
    pub state_dir: PathBuf,
    /// `$XDG_RUNTIME_DIR/ptt`: the control socket and the daemon lock (0700).
    pub runtime_dir: PathBuf,
}

impl Paths {
    /// Reads the XDG variables from the process environment.
    pub fn from_env() -> Result<Paths> {
        Paths::from_vars(|name| std::env::var_os(name).filter(|v| !v.is_empty()))
    }

    /// Same as [`Paths::from_env`] with an injectable environment (for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Paths> {
        let home = match var("HOME") {
            Some(h) => PathBuf::from(h),
            None => bail!("HOME is not set; ptt needs a home directory for its config and state"),
        };
        let absolute = |name: &str| var(name).map(PathBuf::from).filter(|p| p.is_absolute());
        let config_home = absolute("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
        let state_home = absolute("XDG_STATE_HOME").unwrap_or_else(|| home.join(".local/state"));
        let runtime_base = match absolute("XDG_RUNTIME_DIR") {
            Some(dir) => dir,
            None => {
                let uid = nix::unistd::geteuid().as_raw();
                let run_user = PathBuf::from(format!("/run/user/{uid}"));
                if run_user.is_dir() { run_user } else { std::env::temp_dir().join(format!("ptt-runtime-{uid}")) }
            }
        };
        Ok(Paths {
            home,
            config_file: config_home.join("ptt").join("config.toml"),
            state_dir: state_home.join("ptt"),
            runtime_dir: runtime_base.join("ptt"),
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("control.sock")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.runtime_dir.join("daemon.lock")
    }
    pub fn registry(&self) -> PathBuf {
        self.state_dir.join("tasks.json")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
    pub fn scratch_dir(&self) -> PathBuf {
        self.state_dir.join("scratch")
    }
    pub fn worktrees_dir(&self) -> PathBuf {
        self.state_dir.join("worktrees")
    }
    pub fn task_log(&self, task_id: &str) -> PathBuf {
        self.logs_dir().join(format!("{task_id}.log"))
    }

    /// Expands a leading `~` or `~/` against the home directory.
    pub fn expand_tilde(&self, path: &Path) -> PathBuf {
        if let Ok(rest) = path.strip_prefix("~") { self.home.join(rest) } else { path.to_path_buf() }
    }

    /// Creates the runtime directory with mode 0700 and checks that it belongs
    /// to us: the control socket inside must not be reachable by anyone else.
    pub fn ensure_runtime_dir(&self) -> Result<()> {
        ensure_private_dir(&self.runtime_dir)
    }

    /// Creates the state directories (registry, logs, scratch).
    pub fn ensure_state_dirs(&self) -> Result<()> {
        for dir in [self.state_dir.clone(), self.logs_dir(), self.scratch_dir()] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create state directory {}", dir.display()))?;
        }
        Ok(())
    }
}

/// `mkdir -p` then force mode 0700 and check ownership.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        bail!(
            "{} belongs to uid {}, not to us (uid {uid}); refusing to put the control socket there",
            dir.display(),
            meta.uid()
        );
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot chmod 0700 {}", dir.display()))?;
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
        ]);
        assert_eq!(p.config_file, PathBuf::from("/cfg/ptt/config.toml"));
        assert_eq!(p.state_dir, PathBuf::from("/st/ptt"));
        assert_eq!(p.socket(), PathBuf::from("/run/x/ptt/control.sock"));
    }

    #[test]
    fn defaults_follow_home_and_relative_xdg_is_ignored() {
        let p = paths(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "relative")]);
        assert_eq!(p.config_file, PathBuf::from("/home/u/.config/ptt/config.toml"));
        assert_eq!(p.registry(), PathBuf::from("/home/u/.local/state/ptt/tasks.json"));
        assert_eq!(p.expand_tilde(Path::new("~/code")), PathBuf::from("/home/u/code"));
        assert_eq!(p.expand_tilde(Path::new("/abs")), PathBuf::from("/abs"));
    }

    #[test]
    fn missing_home_is_a_clear_error() {
        let err = Paths::from_vars(|_| None).unwrap_err().to_string();
        assert!(err.contains("HOME is not set"), "{err}");
    }
}
