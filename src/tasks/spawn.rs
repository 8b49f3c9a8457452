//! Starting a Claude Code child: the exact command line, a filtered
//! environment, its own process group, and death with the daemon.
//!
//! The child gets `PTT_TASK_ID=<uuid>` and `PTT_OWNER=<daemon pid>:<start
//! time>`; both are inherited by everything it starts, including the Bash
//! tool's shells that the CLI puts in a session of their own. That is how
//! cancel, timeout, shutdown and the start-up sweep find *all* of a task's
//! processes (see [`super::sweep`]); a process group alone is not enough.
//!
//! The process itself is started by [`crate::process::vfork_spawn`]: no fork
//! of the daemon (std forks it as soon as a `pre_exec` hook is needed), with
//! the user's umask, the process group and the death signal set in the child
//! before `execve`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::PermissionMode;
use crate::process::filter_env;
use crate::process::vfork_spawn::{self, Child};

/// The short spoken-friendly summary every task is asked to end with.
pub(crate) const SUMMARY_PROMPT: &str = "You run unattended in the background for a user who will hear your final message \
read aloud. End with a short plain-text summary (two or three sentences, no markdown, no code) of what you did and \
what the user should know.";

/// Everything needed to start one run of the CLI.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSpec {
    pub(crate) claude: PathBuf,
    pub(crate) prompt: String,
    pub(crate) dir: PathBuf,
    pub(crate) permission_mode: PermissionMode,
    pub(crate) max_turns: u32,
    pub(crate) model: String,
    pub(crate) resume: Option<String>,
    pub(crate) task_uuid: String,
    pub(crate) owner_tag: String,
    pub(crate) env_allow: Vec<String>,
    /// `--session-id` for a first run (so `continue` works even when no init
    /// line was read); `None` with `resume`.
    pub(crate) session_id: Option<String>,
    /// `--max-budget-usd`.
    pub(crate) max_budget_usd: Option<f64>,
    /// Permission requests go to `ptt mcp-permission` (see [`PermissionPrompt`]).
    pub(crate) permission_prompt: Option<PermissionPrompt>,
    /// With worktree isolation: (repository, branch) to `git worktree add` into
    /// `dir` before the CLI starts (done by the child itself, off the loop).
    pub(crate) worktree: Option<(PathBuf, String)>,
}

/// The permission-prompt server: the `ptt` binary and the daemon's socket.
#[derive(Debug, Clone)]
pub(crate) struct PermissionPrompt {
    pub(crate) ptt: PathBuf,
    pub(crate) socket: PathBuf,
}

impl PermissionPrompt {
    /// `--mcp-config`'s JSON: `<ptt> mcp-permission --task <uuid> --socket <socket>` as a stdio server.
    pub(crate) fn mcp_config(&self, task_uuid: &str) -> String {
        serde_json::json!({
            "mcpServers": {
                super::permission::SERVER_NAME: {
                    "type": "stdio",
                    "command": self.ptt,
                    "args": ["mcp-permission", "--task", task_uuid, "--socket", self.socket],
                }
            }
        })
        .to_string()
    }
}

/// The CLI's arguments. The prompt is not among them: it goes to the child's
/// standard input, because a command line is visible to every user in `ps`
/// (`claude -p` reads its prompt from stdin when none is given).
pub(crate) fn claude_args(spec: &SpawnSpec) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "-p".into(),
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
    if let Some(budget) = spec.max_budget_usd {
        args.push("--max-budget-usd".into());
        args.push(budget.to_string().into());
    }
    if let Some(prompt) = &spec.permission_prompt {
        // Not in `--help`, but honoured by the CLI (checked with 2.1.329).
        args.push("--mcp-config".into());
        args.push(prompt.mcp_config(&spec.task_uuid).into());
        args.push("--permission-prompt-tool".into());
        args.push(super::permission::prompt_tool().into());
    }
    if let Some(session) = &spec.resume {
        args.push("--resume".into());
        args.push(session.into());
    } else if let Some(session) = &spec.session_id {
        args.push("--session-id".into());
        args.push(session.into());
    }
    args
}

/// Script run by `sh` for worktree isolation: create the worktree, then exec
/// the CLI inside it. A failure is a line of text and exit status 97.
const WORKTREE_SCRIPT: &str = r#"repo=$1; branch=$2; dir=$3; shift 3
git -C "$repo" worktree add -q -b "$branch" "$dir" HEAD </dev/null >&2 || { echo "ptt: git worktree add failed for $repo" >&2; exit 97; }
cd "$dir" && exec "$@""#;

/// A started child with the read end of its combined stdout+stderr pipe.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) output: std::io::PipeReader,
}

/// Starts the child. The prompt is written to its stdin at once, without
/// blocking; only the part of a prompt longer than the pipe holds (64 KiB) is
/// left to a short-lived thread (it would block the loop); stdout and stderr
/// share one pipe so that a single reaper thread sees them in order (stderr
/// lines are not JSON and are kept as text).
///
/// Call it from the daemon's loop thread: the child's death signal is tied to
/// the thread that spawned it (see [`crate::process::vfork_spawn`]).
pub(crate) fn spawn(spec: &SpawnSpec) -> std::io::Result<Spawned> {
    spawn_with_env(spec, std::env::vars_os())
}

/// [`spawn`] with `daemon_env` standing for the daemon's environment.
fn spawn_with_env(
    spec: &SpawnSpec,
    daemon_env: impl IntoIterator<Item = (OsString, OsString)>,
) -> std::io::Result<Spawned> {
    use std::os::fd::AsFd;
    // All four ends are close-on-exec (std's pipe): only the copies on 0, 1 and 2 reach the program.
    let (stdin_read, stdin) = std::io::pipe()?;
    let (reader, writer) = std::io::pipe()?;
    let (program, args, cwd) = match &spec.worktree {
        None => (spec.claude.clone(), claude_args(spec), spec.dir.clone()),
        Some((repo, branch)) => {
            let mut args: Vec<OsString> = vec![
                "-c".into(),
                WORKTREE_SCRIPT.into(),
                "ptt-worktree".into(),
                repo.into(),
                branch.into(),
                spec.dir.clone().into(),
                spec.claude.clone().into(),
            ];
            args.extend(claude_args(spec));
            (PathBuf::from("/bin/sh"), args, repo.clone())
        }
    };
    let mut env = filter_env(daemon_env, &spec.env_allow);
    env.push(("PTT_TASK_ID".into(), spec.task_uuid.clone().into()));
    env.push(("PTT_OWNER".into(), spec.owner_tag.clone().into()));
    let mut child = vfork_spawn::spawn(&vfork_spawn::Request {
        program: &program,
        args: &args,
        env: &env,
        cwd: &cwd,
        stdin: Some(stdin_read.as_fd()),
        stdout: Some(writer.as_fd()),
        stderr: Some(writer.as_fd()),
        // The daemon's files are private (umask 077); the task's files are the user's.
        umask: crate::paths::user_umask(),
        own_group: true,
        // SIGTERM (not SIGKILL) so the CLI still stops its own tool shells.
        death_signal: Some(libc::SIGTERM),
    })?;
    // Our copies of the child's ends go, so the reaper sees EOF once the child and its descendants close theirs.
    drop(stdin_read);
    drop(writer);
    // Most prompts fit in the pipe (64 KiB): written here without blocking, no thread to start.
    let rest = match write_nonblocking(&stdin, spec.prompt.as_bytes()) {
        Ok(written) => &spec.prompt.as_bytes()[written..],
        // A child that exits without reading gives EPIPE (SIGPIPE is ignored by Rust programs): fine.
        Err(_) => &[][..],
    };
    if !rest.is_empty() {
        let rest = rest.to_vec();
        let fed = std::thread::Builder::new().name("task-stdin".into()).stack_size(64 * 1024).spawn(move || {
            use std::io::Write;
            let mut stdin = stdin;
            if crate::process::set_nonblocking(std::os::fd::AsFd::as_fd(&stdin), false).is_ok() {
                let _ = stdin.write_all(&rest);
            }
        });
        if let Err(e) = fed {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    }
    Ok(Spawned { child, output: reader })
}

/// Writes as much of `bytes` as the pipe takes now (it is left non-blocking); how much that was.
fn write_nonblocking(pipe: &std::io::PipeWriter, bytes: &[u8]) -> std::io::Result<usize> {
    use std::io::Write;
    use std::os::fd::AsFd;
    crate::process::set_nonblocking(pipe.as_fd(), true)?;
    let mut written = 0;
    let mut w = pipe;
    while written < bytes.len() {
        match w.write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
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
            session_id: None,
            max_budget_usd: None,
            permission_prompt: None,
            worktree: None,
        }
    }

    #[test]
    fn the_prompt_reaches_stdin_whole_short_or_longer_than_the_pipe() {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let counter = d.path().join("count");
        std::fs::write(&counter, "#!/bin/sh\nexec wc -c\n").expect("write");
        std::fs::set_permissions(&counter, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for len in [10, 200_000] {
            let mut s = spec();
            s.claude = counter.clone();
            s.dir = d.path().to_path_buf();
            s.prompt = "x".repeat(len);
            let mut spawned = spawn(&s).expect("spawn");
            let mut out = String::new();
            spawned.output.read_to_string(&mut out).expect("read");
            assert!(spawned.child.wait().expect("wait").success());
            assert_eq!(out.trim(), len.to_string());
        }
    }

    #[test]
    fn the_child_gets_the_users_umask_a_filtered_environment_and_its_directory() {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let report = d.path().join("report");
        std::fs::write(&report, "#!/bin/sh\numask; pwd -P; env\n").expect("write");
        std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut s = spec();
        s.claude = report;
        s.dir = d.path().to_path_buf();
        let daemon_env = [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/u"),
            ("OPENAI_API_KEY", "sk-test-secret"),
            ("PTT_TASK_ID", "inherited"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let mut spawned = spawn_with_env(&s, daemon_env).expect("spawn");
        let mut out = String::new();
        spawned.output.read_to_string(&mut out).expect("read");
        assert!(spawned.child.wait().expect("wait").success(), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        // Not the daemon's 077: the task's files are the user's.
        assert_eq!(lines.first().copied(), Some(format!("{:04o}", crate::paths::user_umask()).as_str()));
        assert_eq!(lines.get(1).map(PathBuf::from), Some(d.path().canonicalize().expect("canonical")));
        assert!(!out.contains("OPENAI_API_KEY") && !out.contains("sk-test-secret"), "{out}");
        for wanted in ["PTT_TASK_ID=u", "PTT_OWNER=1:2", "HOME=/home/u", "PATH=/usr/bin:/bin"] {
            assert!(lines.contains(&wanted), "{wanted} missing: {out}");
        }
        assert!(!out.contains("inherited"), "{out}");
    }

    #[test]
    fn command_line_never_holds_the_prompt() {
        let args = claude_args(&spec());
        let strs: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(!strs.iter().any(|a| a.contains("fix the --help")), "{strs:?}");
        assert_eq!(
            &strs[..6],
            ["-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits"]
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
        assert!(!joined.contains("--session-id"), "a resumed run keeps its session");
        s.resume = None;
        s.session_id = Some("0b6a…".into());
        s.max_budget_usd = Some(0.5);
        s.permission_prompt = Some(PermissionPrompt { ptt: "/bin/ptt".into(), socket: "/run/p.sock".into() });
        let strs: Vec<String> = claude_args(&s).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let after = |flag: &str| strs.iter().position(|a| a == flag).and_then(|i| strs.get(i + 1)).cloned();
        assert_eq!(after("--session-id").as_deref(), Some("0b6a…"));
        assert_eq!(after("--max-budget-usd").as_deref(), Some("0.5"));
        assert_eq!(after("--permission-prompt-tool").as_deref(), Some("mcp__ptt__ask"));
        let config: serde_json::Value = serde_json::from_str(&after("--mcp-config").unwrap_or_default()).expect("json");
        assert_eq!(
            config["mcpServers"]["ptt"]["args"],
            serde_json::json!(["mcp-permission", "--task", "u", "--socket", "/run/p.sock"])
        );
        assert!(joined.contains("--permission-mode plan"), "{joined}");
    }
}
