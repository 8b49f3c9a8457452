//! Child processes' surroundings: which program runs, and which of the
//! daemon's variables it may see.
//!
//! A leaf module (it knows no other module of the crate): the task supervisor,
//! the typing tools, the `systemctl` probe, the configuration check and `ptt
//! doctor` all need the same answers, and none of them should import another
//! to get them. Two environments exist on purpose: a Claude task gets an
//! allowlist with room for the user's `tasks.env_allow` ([`filter_env`]), a
//! typing tool gets only what it needs to reach the session
//! ([`inherited_env`]). Both exclude `OPENAI_API_KEY`. How a task child is
//! started cheaply, with its umask and death signal, is [`vfork_spawn`].

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

pub(crate) mod vfork_spawn;

/// Variables that never reach a child: a secret, or a marker that makes the
/// CLI believe it runs nested inside another Claude Code.
const DENIED: &[&str] =
    &["OPENAI_API_KEY", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "NOTIFY_SOCKET", "PTT_TASK_ID", "PTT_OWNER"];

/// What a Claude task's environment keeps, besides the user's `tasks.env_allow`.
const ALLOWED_EXACT: &[&str] =
    &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "TZ", "TMPDIR", "COLORTERM"];
const ALLOWED_PREFIXES: &[&str] = &["LC_", "XDG_", "ANTHROPIC_", "CLAUDE_"];

/// True for variables no child may get, whatever the configuration says.
pub(crate) fn is_denied_env(name: &str) -> bool {
    DENIED.contains(&name)
}

/// Keeps the allowlisted variables of `vars`, plus `extra_allow`, minus the
/// denied ones.
pub(crate) fn filter_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    extra_allow: &[String],
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(k, _)| {
            let Some(k) = k.to_str() else { return false };
            if is_denied_env(k) {
                return false;
            }
            ALLOWED_EXACT.contains(&k)
                || ALLOWED_PREFIXES.iter().any(|p| k.starts_with(p))
                || extra_allow.iter().any(|a| a == k)
        })
        .collect()
}

/// Finds `cmd` on `path_var` (or checks it directly when it has a slash).
pub(crate) fn find_executable(cmd: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return is_exec(&p).then_some(p);
    }
    // An empty or relative PATH entry means "relative to the current directory": never look there, the
    // daemon's working directory is arbitrary.
    std::env::split_paths(path_var?).filter(|d| d.is_absolute()).map(|d| d.join(cmd)).find(|p| is_exec(p))
}

/// The daemon's variables a typing command (or the `systemctl` probe) inherits; the session's own come on top,
/// from the typer's `SessionInfo::command_env`.
pub(crate) fn child_may_inherit(name: &str) -> bool {
    matches!(
        name,
        "PATH"
            | "HOME"
            | "USER"
            | "LOGNAME"
            | "LANG"
            | "LANGUAGE"
            | "XDG_RUNTIME_DIR"
            | "XAUTHORITY"
            | "DISPLAY"
            | "WAYLAND_DISPLAY"
            | "YDOTOOL_SOCKET"
            | "DBUS_SESSION_BUS_ADDRESS"
            | "TMPDIR"
    ) || name.starts_with("LC_")
}

/// The part of `vars` (the daemon's environment) a typing command gets.
pub(crate) fn inherited_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    vars.into_iter().filter(|(k, _)| k.to_str().is_some_and(child_may_inherit)).collect()
}

/// Turns `O_NONBLOCK` on or off for a pipe end we hold (a child's stdin written without blocking the loop,
/// then handed to a thread; a typing tool's pipes read by one thread).
pub(crate) fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>, on: bool) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    let flags = if on { flags | OFlag::O_NONBLOCK } else { flags - OFlag::O_NONBLOCK };
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_filtered() {
        let vars = [
            ("PATH", "/bin"),
            ("HOME", "/h"),
            ("OPENAI_API_KEY", "sk-secret"),
            ("CLAUDECODE", "1"),
            ("CLAUDE_CODE_ENTRYPOINT", "cli"),
            ("CLAUDE_CONFIG_DIR", "/c"),
            ("ANTHROPIC_API_KEY", "a"),
            ("LC_ALL", "C"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("MY_TOOL", "y"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<String> =
            filter_env(vars, &["MY_TOOL".into()]).into_iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        assert_eq!(kept, ["PATH", "HOME", "CLAUDE_CONFIG_DIR", "ANTHROPIC_API_KEY", "LC_ALL", "MY_TOOL"]);
    }

    #[test]
    fn finds_executables() {
        assert!(find_executable("sh", Some(OsStr::new("/usr/bin:/bin"))).is_some());
        assert!(find_executable("definitely-not-a-command-xyz", Some(OsStr::new("/usr/bin:/bin"))).is_none());
        assert!(find_executable("/bin/sh", None).is_some());
        let plain = std::env::temp_dir().join(format!("ptt-not-exec-{}", std::process::id()));
        std::fs::write(&plain, b"x").expect("write");
        assert!(find_executable(plain.to_str().expect("utf8"), None).is_none(), "not executable");
        let _ = std::fs::remove_file(plain);
        // Relative PATH entries name the current directory, which is arbitrary for a daemon: skipped.
        assert!(find_executable("sh", Some(OsStr::new("../../../../../../../../bin"))).is_none());
    }

    #[test]
    fn typing_commands_never_inherit_secrets() {
        for secret in ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "CLAUDECODE"] {
            assert!(!child_may_inherit(secret), "{secret}");
        }
        for needed in ["PATH", "HOME", "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "XDG_RUNTIME_DIR", "LC_ALL", "LANG"]
        {
            assert!(child_may_inherit(needed), "{needed}");
        }
        let daemon_env = [("OPENAI_API_KEY", "sk-x"), ("PATH", "/usr/bin"), ("DISPLAY", ":0"), ("SECRET_TOKEN", "t")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<_> =
            inherited_env(daemon_env).into_iter().map(|(k, _)| k.into_string().unwrap_or_default()).collect();
        assert_eq!(kept, ["PATH", "DISPLAY"]);
    }
}
