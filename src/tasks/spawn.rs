//! Starting a Claude Code child: the exact command line, a filtered
//! environment, its own process group, and death with the daemon.
//!
//! The child gets `PTT_TASK_ID=<uuid>` and `PTT_OWNER=<daemon pid>:<start
//! time>`; both are inherited by everything it starts, including the Bash
//! tool's shells that the CLI puts in a session of their own. That is how
//! cancel, timeout, shutdown and the start-up sweep find *all* of a task's
//! processes (see [`super::sweep`]); a process group alone is not enough.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::config::PermissionMode;

/// Variables that never reach a child: a secret, or a marker that makes the
/// CLI believe it runs nested inside another Claude Code.
const DENIED: &[&str] =
    &["OPENAI_API_KEY", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "NOTIFY_SOCKET", "PTT_TASK_ID", "PTT_OWNER"];

const ALLOWED_EXACT: &[&str] =
    &["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "TZ", "TMPDIR", "COLORTERM"];
const ALLOWED_PREFIXES: &[&str] = &["LC_", "XDG_", "ANTHROPIC_", "CLAUDE_"];

/// The short spoken-friendly summary every task is asked to end with.
pub const SUMMARY_PROMPT: &str = "You run unattended in the background for a user who will hear your final message \
read aloud. End with a short plain-text summary (two or three sentences, no markdown, no code) of what you did and \
what the user should know.";

pub fn is_denied_env(name: &str) -> bool {
    DENIED.contains(&name)
}

/// Keeps the allowlisted variables of `vars`, plus `extra_allow`, minus the
/// denied ones.
pub fn filter_env(
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

/// Everything needed to start one run of the CLI.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub claude: PathBuf,
    pub prompt: String,
    pub dir: PathBuf,
    pub permission_mode: PermissionMode,
    pub max_turns: u32,
    pub model: String,
    pub resume: Option<String>,
    pub task_uuid: String,
    pub owner_tag: String,
    pub env_allow: Vec<String>,
    /// With worktree isolation: (repository, branch) to `git worktree add` into
    /// `dir` before the CLI starts (done by the child itself, off the loop).
    pub worktree: Option<(PathBuf, String)>,
}

/// The CLI's arguments, prompt right after `-p` (some later flags are variadic
/// and would swallow it).
pub fn claude_args(spec: &SpawnSpec) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "-p".into(),
        spec.prompt.clone().into(),
        "--output-format".into(),
        "stream-json".into(),
        "--verbose".into(),
        "--permission-mode".into(),
        spec.permission_mode.as_cli_arg().into(),
    ];
    if spec.max_turns > 0 {
        args.push("--max-turns".into());
        args.push(spec.max_turns.to_string().into());
    }
    if !spec.model.is_empty() {
        args.push("--model".into());
        args.push(spec.model.clone().into());
    }
    args.push("--append-system-prompt".into());
    args.push(SUMMARY_PROMPT.into());
    if let Some(session) = &spec.resume {
        args.push("--resume".into());
        args.push(session.into());
    }
    args
}

/// Script run by `sh` for worktree isolation: create the worktree, then exec
/// the CLI inside it. A failure is a line of text and exit status 97.
const WORKTREE_SCRIPT: &str = r#"repo=$1; branch=$2; dir=$3; shift 3
git -C "$repo" worktree add -q -b "$branch" "$dir" HEAD >&2 || { echo "ptt: git worktree add failed for $repo" >&2; exit 97; }
cd "$dir" && exec "$@""#;

/// Finds `cmd` on `path_var` (or checks it directly when it has a slash).
pub fn find_executable(cmd: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
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

/// A started child with the read end of its combined stdout+stderr pipe.
pub struct Spawned {
    pub child: Child,
    pub output: std::io::PipeReader,
}

/// Starts the child. Stdin is null; stdout and stderr share one pipe so that a
/// single reaper thread sees them in order (stderr lines are not JSON and are
/// kept as text).
pub fn spawn(spec: &SpawnSpec) -> std::io::Result<Spawned> {
    let (reader, writer) = std::io::pipe()?;
    let writer_err = writer.try_clone()?;
    let mut cmd = match &spec.worktree {
        None => {
            let mut c = Command::new(&spec.claude);
            c.args(claude_args(spec)).current_dir(&spec.dir);
            c
        }
        Some((repo, branch)) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg(WORKTREE_SCRIPT)
                .arg("ptt-worktree")
                .arg(repo)
                .arg(branch)
                .arg(&spec.dir)
                .arg(&spec.claude)
                .args(claude_args(spec))
                .current_dir(repo);
            c
        }
    };
    cmd.env_clear()
        .envs(filter_env(std::env::vars_os(), &spec.env_allow))
        .env("PTT_TASK_ID", &spec.task_uuid)
        .env("PTT_OWNER", &spec.owner_tag)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (prctl, getppid, kill) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // SIGTERM (not SIGKILL) so the CLI still stops its own tool shells.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon may have died between fork and prctl.
            if libc::getppid() != parent.as_raw() {
                libc::kill(libc::getpid(), libc::SIGTERM);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // `cmd` (and with it the pipe's write ends) is dropped here, so the reaper
    // sees EOF once the child and its descendants close their copies.
    drop(cmd);
    Ok(Spawned { child, output: reader })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SpawnSpec {
        SpawnSpec {
            claude: "claude".into(),
            prompt: "fix the --help text".into(),
            dir: "/tmp".into(),
            permission_mode: PermissionMode::AcceptEdits,
            max_turns: 0,
            model: String::new(),
            resume: None,
            task_uuid: "u".into(),
            owner_tag: "1:2".into(),
            env_allow: vec![],
            worktree: None,
        }
    }

    #[test]
    fn command_line_has_prompt_right_after_p() {
        let args = claude_args(&spec());
        let strs: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            &strs[..7],
            [
                "-p",
                "fix the --help text",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits"
            ]
        );
        assert!(!strs.contains(&"--max-turns".to_string()));
        assert!(!strs.contains(&"--resume".to_string()));
        assert!(strs.contains(&"--append-system-prompt".to_string()));
    }

    #[test]
    fn optional_flags() {
        let mut s = spec();
        s.max_turns = 9;
        s.model = "opus".into();
        s.resume = Some("sess-1".into());
        s.permission_mode = PermissionMode::Plan;
        let strs: Vec<String> = claude_args(&s).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = strs.join(" ");
        assert!(joined.contains("--max-turns 9"), "{joined}");
        assert!(joined.contains("--model opus"), "{joined}");
        assert!(joined.ends_with("--resume sess-1"), "{joined}");
        assert!(joined.contains("--permission-mode plan"), "{joined}");
    }

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
}
