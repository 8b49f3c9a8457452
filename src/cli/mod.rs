//! Command-line interface: argument parsing and the client commands.
//!
//! Everything except `ptt run`, `ptt config` and `ptt task sweep` is a client
//! of the running daemon's control socket. Exit statuses are part of the
//! interface (scripts and status bars rely on them):
//! 0 ok, 1 refused or failed, 2 usage, 3 ambiguous reference, 4 no such task,
//! 69 daemon not running, 78 configuration error.

mod dictate;
mod doctor;
mod follow;
mod live;
mod model;
mod print;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::config::{Config, DEFAULT_CONFIG_TOML};
use crate::control::Request;
use crate::control::client::{self, ClientError};
use crate::control::reply::{self, TaskReply};
use crate::paths::Paths;

pub(crate) const EXIT_FAILED: i32 = 1;
pub(crate) const EXIT_AMBIGUOUS: i32 = 3;
pub(crate) const EXIT_NOT_FOUND: i32 = 4;
pub(crate) const EXIT_NOT_RUNNING: i32 = 69;

#[derive(Parser, Debug)]
#[command(
    name = "ptt",
    version,
    about = "Push-to-talk daemon for Linux, with a supervisor for background Claude Code tasks",
    long_about = "ptt runs as a per-user daemon (`ptt run`, usually under systemd) and supervises Claude Code \
                  tasks: each task is a `claude -p` process in its own process group, with its own log, that \
                  the daemon starts, watches, reports and cleans up. The other commands talk to the daemon \
                  over a Unix socket in $XDG_RUNTIME_DIR/ptt.",
    after_help = "Files: config $XDG_CONFIG_HOME/ptt/config.toml, state $XDG_STATE_HOME/ptt, socket $XDG_RUNTIME_DIR/ptt/control.sock.\n\
                  Exit status: 0 ok, 1 refused/failed, 2 usage, 3 ambiguous task reference, 4 no such task, 69 daemon not running, 78 bad config."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground (what the systemd unit runs).
    Run,
    /// Show the daemon's state: uptime, running tasks, budget.
    Status {
        /// Print the raw JSON (for status bars).
        #[arg(long)]
        json: bool,
        /// Keep running and print one line per change (for status bars; survives daemon restarts).
        #[arg(long)]
        follow: bool,
        /// The line format with --follow: text, json, or waybar ({"text","alt","class","tooltip"}).
        #[arg(long, value_enum, default_value = "text", requires = "follow")]
        format: follow::Format,
    },
    /// List tasks: running ones, this run's, and the last day's.
    Tasks {
        #[arg(long)]
        json: bool,
        /// Every task the registry remembers.
        #[arg(long)]
        all: bool,
    },
    /// Start, inspect, cancel or continue a task.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Talk with the live assistant (OpenAI Realtime) by typing: it can start,
    /// check and cancel tasks. Attaches to the running daemon, or runs one for
    /// the length of the conversation.
    Live {
        /// Text conversation on stdin/stdout (voice comes with the audio path).
        #[arg(long, required = true)]
        text: bool,
    },
    /// Act on a hotkey binding (for compositor key binds): `ptt key toggle live`.
    Key {
        #[arg(value_enum)]
        action: KeyArg,
        /// `live` (the live session), `ptt` (push-to-talk), `interrupt` or `quiet` (quiet mode).
        binding: String,
    },
    /// Dictation from the shell: `--once` records until Enter and prints the text;
    /// `retry` sends clips kept after failed transcriptions again; `list` shows them.
    #[command(args_conflicts_with_subcommands = true)]
    Dictate {
        /// Record from the microphone until Enter, end of input, or the release of the push-to-talk key
        /// (X11/evdev); print the text on stdout.
        #[arg(long)]
        once: bool,
        #[command(subcommand)]
        action: Option<DictateCommand>,
    },
    /// Local speech models (whisper.cpp): list, download, remove, or locate them.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Check that everything ptt needs is in place.
    Doctor,
    /// Print a stream of task events as JSON lines (for status bars).
    Watch,
    /// Print, locate or check the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The permission-prompt server a task's Claude CLI runs (MCP over stdio);
    /// not for humans: it asks the daemon and waits for the user's answer.
    #[command(hide = true)]
    McpPermission {
        /// The task's PTT_TASK_ID.
        #[arg(long)]
        task: String,
        /// The daemon's control socket (default: this user's).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum DictateCommand {
    /// Send the kept clips again: typed by the daemon, or printed here when no daemon runs.
    Retry,
    /// List the clips kept after failed transcriptions.
    List,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum KeyArg {
    Press,
    Release,
    Toggle,
}

#[derive(Subcommand, Debug)]
enum TaskCommand {
    /// Start a Claude Code task in the background; prints its id at once.
    Start(StartArgs),
    /// Show one task: state, activity, cost, summary, log path, last output.
    Show {
        /// An id (t7 or 7), a name, or words of a name.
        #[arg(required = true, num_args = 1..)]
        reference: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a running task: SIGTERM, then SIGKILL to everything it started.
    Cancel {
        #[arg(required = true, num_args = 1..)]
        reference: Vec<String>,
    },
    /// Allow what a waiting task asks for (its oldest request).
    Allow {
        #[arg(required = true, num_args = 1..)]
        reference: Vec<String>,
        /// Also allow the same kind of request for the rest of the task's run.
        #[arg(long)]
        remember: bool,
    },
    /// Deny what a waiting task asks for (its oldest request); Claude is told why.
    Deny {
        #[arg(required = true, num_args = 1..)]
        reference: Vec<String>,
        /// Told to Claude with the refusal.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Continue an ended task's Claude session with a new instruction.
    Continue {
        /// An id, a name, or words of a name (quote several words).
        reference: String,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Kill processes left behind by a daemon that is gone.
    Sweep,
}

#[derive(Args, Debug)]
struct StartArgs {
    /// What Claude should do.
    #[arg(required = true, num_args = 1..)]
    text: Vec<String>,
    /// A short name to refer to the task by (default: from the text).
    #[arg(long)]
    name: Option<String>,
    /// Run in a configured project ([projects] in the config).
    #[arg(long, conflicts_with = "dir")]
    project: Option<String>,
    /// Run in this directory (default: the current one); must be under tasks.allowed_roots.
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// The downloadable models with their sizes, memory and speed; which are installed and which one dictation uses.
    List,
    /// Download a model into $XDG_DATA_HOME/ptt/models (resumable; checked against its SHA-1).
    Download {
        /// A name from `ptt model list`, such as base.en.
        name: String,
        /// The file's SHA-1, for a model the list does not know (or a mirror's own build).
        #[arg(long, value_name = "HEX")]
        sha1: Option<String>,
    },
    /// Delete an installed model.
    Remove { name: String },
    /// Print the models directory, or the file of one model.
    Path { name: Option<String> },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print an annotated configuration with every default.
    Default,
    /// Print the configuration file's path.
    Path,
    /// Check the configuration file; errors name the file, line and key.
    Check,
}

/// Parses the command line, runs it, and returns the exit status.
pub fn main() -> i32 {
    crate::logging::init();
    // No "ALSA lib …" lines in any output: what libasound has to say comes back as errors we report.
    crate::audio::silence_alsa_errors();
    let cli = Cli::parse();
    let paths = match Paths::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ptt: {e:#}");
            return EXIT_FAILED;
        }
    };
    // A client command whose reader goes away (`ptt doctor | head -1`) ends quietly: SIGPIPE's default action
    // (exit status 141, as for `cat`), not a panic in `println!`. Its socket writes use MSG_NOSIGNAL
    // (`client::send_all`), so a daemon going away is still an error it reports. The daemon and the MCP server
    // keep SIGPIPE ignored: a client or a task going away is an EPIPE for them; `status --follow` sees its bar
    // go away as a failed write and exits 0.
    if !matches!(cli.command, Command::Run | Command::McpPermission { .. } | Command::Status { follow: true, .. }) {
        quiet_broken_pipe();
    }
    match run_command(cli.command, &paths) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ptt: {e:#}");
            EXIT_FAILED
        }
    }
}

fn run_command(command: Command, paths: &Paths) -> anyhow::Result<i32> {
    match command {
        Command::Run => crate::daemon::run(paths.clone()),
        Command::Status { follow: true, format, .. } => Ok(follow::run(&paths.socket(), format)),
        Command::Status { json, .. } => Ok(with_daemon(paths, &Request::Status, |v| {
            if json {
                print::json(v);
                return 0;
            }
            match reply::parse::<reply::StatusReply>(v) {
                Ok(status) => {
                    print::status(&status);
                    0
                }
                Err(f) => {
                    eprintln!("ptt: {}", f.message);
                    EXIT_FAILED
                }
            }
        })),
        Command::Tasks { json, all } => Ok(with_daemon(paths, &Request::Tasks { all }, |v| {
            if json {
                print::json(v);
                return 0;
            }
            match reply::parse::<reply::TaskTable>(v) {
                Ok(table) => {
                    print::task_table(&table.tasks);
                    0
                }
                Err(f) => {
                    eprintln!("ptt: {}", crate::text::escape_controls(&f.message));
                    EXIT_FAILED
                }
            }
        })),
        Command::Task(t) => task_command(t, paths),
        Command::Doctor => Ok(doctor::run(paths)),
        Command::Model(m) => Ok(match m {
            ModelCommand::List => model::list(paths),
            ModelCommand::Download { name, sha1 } => model::download(paths, &name, sha1.as_deref()),
            ModelCommand::Remove { name } => model::remove(paths, &name),
            ModelCommand::Path { name } => model::path(paths, name.as_deref()),
        }),
        Command::Dictate { once: true, .. } => Ok(dictate::once(paths)),
        Command::Dictate { action: Some(DictateCommand::Retry), .. } => Ok(dictate::retry(paths)),
        Command::Dictate { action: Some(DictateCommand::List), .. } => Ok(dictate::list(paths)),
        Command::Dictate { .. } => {
            eprintln!("ptt: say what to do: `ptt dictate --once`, `ptt dictate retry` or `ptt dictate list`");
            Ok(2)
        }
        Command::Live { text: _ } => Ok(live::run(paths)),
        Command::Key { action, binding } => {
            let action = match action {
                KeyArg::Press => crate::control::protocol::KeyAction::Press,
                KeyArg::Release => crate::control::protocol::KeyAction::Release,
                KeyArg::Toggle => crate::control::protocol::KeyAction::Toggle,
            };
            let Some(binding) = crate::hotkey::Binding::from_name(&binding) else {
                eprintln!("ptt: unknown binding `{binding}` (known: ptt, live, interrupt, quiet)");
                return Ok(EXIT_FAILED);
            };
            Ok(with_daemon(paths, &Request::Key { action, binding }, |v| match reply::parse::<reply::KeyReply>(v) {
                Ok(answer) if binding == crate::hotkey::Binding::Quiet => {
                    println!("quiet: {}", answer.quiet.name());
                    0
                }
                Ok(answer) => {
                    println!("live: {}", answer.live.name());
                    0
                }
                Err(f) => {
                    eprintln!("ptt: {}", f.message);
                    EXIT_FAILED
                }
            }))
        }
        Command::Watch => match client::subscribe(&paths.socket(), |event| {
            println!("{event}");
            true
        }) {
            Ok(()) => Ok(0),
            Err(e) => Ok(client_error(&e)),
        },
        Command::Config(c) => Ok(config_command(c, paths)),
        Command::McpPermission { task, socket } => {
            crate::mcp::run(socket.unwrap_or_else(|| paths.socket()), task)?;
            Ok(0)
        }
    }
}

fn task_command(command: TaskCommand, paths: &Paths) -> anyhow::Result<i32> {
    match command {
        TaskCommand::Start(args) => {
            let dir = match (&args.project, args.dir) {
                (Some(_), _) => None,
                (None, Some(d)) => Some(absolute(d)?),
                (None, None) => Some(std::env::current_dir()?),
            };
            let req = Request::Start { text: args.text.join(" "), name: args.name, project: args.project, dir };
            Ok(with_daemon(paths, &req, |v| {
                if args.json {
                    print::json(v);
                }
                match TaskReply::of(v) {
                    TaskReply::Started { task_id, name, dir, warning } => {
                        if !args.json {
                            print_started(&task_id, &name, &dir);
                            if let Some(w) = warning {
                                eprintln!("ptt: warning: {}", crate::text::escape_controls(&w));
                            }
                        }
                        0
                    }
                    other => outcome_failure(&other, args.json),
                }
            }))
        }
        TaskCommand::Show { reference, json } => {
            let req = Request::Show { reference: reference.join(" ") };
            Ok(with_daemon(paths, &req, |v| match TaskReply::of(v) {
                TaskReply::Found { task } => {
                    if json {
                        print::json(&v["task"])
                    } else {
                        print::task_details(&task)
                    }
                    0
                }
                other => outcome_failure(&other, json),
            }))
        }
        TaskCommand::Cancel { reference } => {
            let req = Request::Cancel { reference: reference.join(" ") };
            Ok(with_daemon(paths, &req, |v| match TaskReply::of(v) {
                TaskReply::Cancelling { message } => {
                    println!("{}", crate::text::escape_controls(&message));
                    0
                }
                other => outcome_failure(&other, false),
            }))
        }
        TaskCommand::Allow { reference, remember } => {
            let req = Request::Allow { reference: reference.join(" "), remember };
            Ok(with_daemon(paths, &req, answered))
        }
        TaskCommand::Deny { reference, reason } => {
            let req = Request::Deny { reference: reference.join(" "), reason };
            Ok(with_daemon(paths, &req, answered))
        }
        TaskCommand::Continue { reference, text } => {
            let req = Request::Continue { reference, text: text.join(" ") };
            Ok(with_daemon(paths, &req, |v| match TaskReply::of(v) {
                TaskReply::Started { task_id, name, dir, .. } => {
                    print_started(&task_id, &name, &dir);
                    0
                }
                other => outcome_failure(&other, false),
            }))
        }
        TaskCommand::Sweep => {
            // Safe with or without a daemon: only processes whose owning daemon is dead are killed.
            let uid = nix::unistd::geteuid().as_raw();
            let victims = crate::tasks::sweep::sweep_orphans(uid, None);
            if victims.is_empty() {
                println!("no orphaned task processes");
            } else {
                for v in &victims {
                    println!("killed pid {} (task {})", v.pid, v.task_uuid);
                }
                println!("killed {} orphaned process(es)", victims.len());
            }
            Ok(0)
        }
    }
}

/// The reply to `task allow` / `task deny`.
fn answered(v: &Value) -> i32 {
    match TaskReply::of(v) {
        TaskReply::Answered { message } => {
            println!("{}", crate::text::escape_controls(&message));
            0
        }
        other => outcome_failure(&other, false),
    }
}

/// `started t3 'name' in /dir`, control characters escaped.
fn print_started(task_id: &str, name: &str, dir: &std::path::Path) {
    println!("{}", crate::text::escape_controls(&format!("started {task_id} '{name}' in {}", dir.display())));
}

fn config_command(command: ConfigCommand, paths: &Paths) -> i32 {
    match command {
        ConfigCommand::Default => {
            print!("{DEFAULT_CONFIG_TOML}");
            0
        }
        ConfigCommand::Path => {
            println!("{}", paths.config_file.display());
            0
        }
        ConfigCommand::Check => match Config::load(&paths.config_file) {
            Ok(_) if !paths.config_file.exists() => {
                println!("{}: no file; all defaults apply", paths.config_file.display());
                0
            }
            Ok(c) => {
                c.warnings(&paths.config_file).iter().for_each(|w| eprintln!("ptt: warning: {w}"));
                println!("{}: ok", paths.config_file.display());
                0
            }
            Err(e) => {
                eprintln!("ptt: config error: {e}");
                crate::daemon::EXIT_CONFIG
            }
        },
    }
}

/// Sends one request and hands the reply to `on_reply`; maps client errors to
/// messages and exit statuses.
fn with_daemon(paths: &Paths, req: &Request, on_reply: impl FnOnce(&Value) -> i32) -> i32 {
    match client::request(&paths.socket(), req) {
        Ok(v) => on_reply(&v),
        Err(e) => client_error(&e),
    }
}

fn client_error(e: &ClientError) -> i32 {
    eprintln!("ptt: {e}");
    match e {
        ClientError::NotRunning(_) => EXIT_NOT_RUNNING,
        _ => EXIT_FAILED,
    }
}

/// Prints why an outcome is not a success and picks the exit status.
fn outcome_failure(reply: &TaskReply, json: bool) -> i32 {
    let message = match reply {
        TaskReply::Ambiguous { message, .. } | TaskReply::NotFound { message } | TaskReply::Refused { message } => {
            message.as_str()
        }
        _ => "unexpected reply from the daemon",
    };
    if !json {
        eprintln!("ptt: {}", crate::text::escape_controls(message));
        if let TaskReply::Ambiguous { candidates, .. } = reply {
            eprintln!("candidates:");
            for c in candidates {
                let line = format!("  {:<5} {:<11} {}", c.task_id, c.state, c.name);
                eprintln!("{}", crate::text::escape_controls(&line));
            }
        }
    }
    match reply {
        TaskReply::Ambiguous { .. } => EXIT_AMBIGUOUS,
        TaskReply::NotFound { .. } => EXIT_NOT_FOUND,
        _ => EXIT_FAILED,
    }
}

/// Restores SIGPIPE's default action (Rust programs start with it ignored).
fn quiet_broken_pipe() {
    // SAFETY: resetting a signal's disposition to the default has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn absolute(p: PathBuf) -> std::io::Result<PathBuf> {
    if p.is_absolute() || p.starts_with("~") { Ok(p) } else { Ok(std::env::current_dir()?.join(p)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_joins_words_and_rejects_project_with_dir() {
        let cli =
            Cli::try_parse_from(["ptt", "task", "start", "fix", "the", "tests", "--name", "tests"]).expect("parse");
        let Command::Task(TaskCommand::Start(a)) = cli.command else { panic!() };
        assert_eq!(a.text.join(" "), "fix the tests");
        assert!(Cli::try_parse_from(["ptt", "task", "start", "x", "--project", "p", "--dir", "/d"]).is_err());
    }
}
