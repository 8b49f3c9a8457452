//! Permission requests: a task's CLI asks ptt whether it may run a tool call
//! that its permission mode does not allow on its own, and waits for the answer.
//!
//! The Claude CLI delegates these decisions to a permission-prompt tool
//! (`--permission-prompt-tool mcp__ptt__ask`), served by `ptt mcp-permission`
//! (see [`crate::mcp`]), which forwards each request to the daemon and blocks
//! until the daemon replies. This module is the daemon's side, pure apart from
//! sending on the reply channels: what a request is ([`Ask`]), how it is said
//! in one redacted line ([`Ask::describe`]), what "remember" allows from then
//! on ([`Rule`]), the answer the CLI understands ([`Decision::answer`]), and
//! the table of waiting requests with their deadlines ([`Board`]). Deadlines
//! are data: the supervisor's `next_deadline` includes [`Board::next_deadline`]
//! and its timer calls [`Board::expire`].
//!
//! Invariant: every request is answered exactly once. A request leaves the
//! board only through an answer (the user's, a remembered rule, the timeout,
//! or "deny" when its task is cancelled or ends), and the reply is sent on its
//! channel as it leaves. A reply channel is bounded(1) and fresh, so sending
//! never blocks; a connection that has gone away just drops the reply.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Instant;

use crossbeam_channel::Sender;
use serde::Serialize;
use serde_json::{Value, json};

use crate::text::{clip, redact};

/// The server's name in `--mcp-config`.
pub(crate) const SERVER_NAME: &str = "ptt";
/// The permission-prompt tool's name.
pub(crate) const TOOL_NAME: &str = "ask";

/// `--permission-prompt-tool`'s value: `mcp__ptt__ask`.
pub(crate) fn prompt_tool() -> String {
    format!("mcp__{SERVER_NAME}__{TOOL_NAME}")
}

/// Longest description of a request, in characters.
const WHAT_CHARS: usize = 120;

/// One request from the CLI: the arguments of its `tools/call`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ask {
    pub(crate) tool_name: String,
    pub(crate) input: Value,
    pub(crate) tool_use_id: Option<String>,
}

impl Ask {
    /// Reads the arguments the CLI sends: `{"tool_name", "input", "tool_use_id"}`.
    pub(crate) fn from_arguments(args: &Value) -> Result<Ask, String> {
        let tool_name = args
            .get("tool_name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .ok_or("the request names no tool (tool_name)")?;
        Ok(Ask {
            tool_name: tool_name.to_string(),
            input: args.get("input").cloned().unwrap_or_else(|| json!({})),
            tool_use_id: args.get("tool_use_id").and_then(Value::as_str).map(str::to_owned),
        })
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.input.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
    }

    /// What the task wants, in one redacted line: "run: npm install left-pad",
    /// "write: ../other-repo/config.yml" (paths relative to the task's
    /// directory when that is shorter).
    pub(crate) fn describe(&self, dir: &Path) -> String {
        let path = || self.field("file_path").or_else(|| self.field("notebook_path")).or_else(|| self.field("path"));
        let text = match self.tool_name.as_str() {
            "Bash" => self.field("command").map(|c| format!("run: {}", one_line(c))),
            "Write" => path().map(|p| format!("write: {}", relative(p, dir))),
            "Edit" | "MultiEdit" | "NotebookEdit" => path().map(|p| format!("edit: {}", relative(p, dir))),
            "Read" => path().map(|p| format!("read: {}", relative(p, dir))),
            "WebFetch" => self.field("url").map(|u| format!("fetch: {u}")),
            "WebSearch" => self.field("query").map(|q| format!("search the web for: {q}")),
            _ => None,
        };
        let text = text.unwrap_or_else(|| format!("use {}", self.tool_name));
        clip(&redact(&text), WHAT_CHARS)
    }

    /// The kind of request "remember" allows from then on: for a shell command,
    /// commands starting with the same program (or this exact command when it
    /// chains several); for anything else, the tool.
    pub(crate) fn rule(&self) -> Rule {
        let prefix = match (self.tool_name.as_str(), self.field("command")) {
            ("Bash", Some(command)) => {
                let command = command.trim();
                let chained = command.contains(['&', ';', '|', '`', '$', '>', '<', '\n']);
                let program = command.split_whitespace().next().unwrap_or("");
                Some(if chained || program.is_empty() { command.to_string() } else { format!("{program} ") })
            }
            _ => None,
        };
        Rule { tool: self.tool_name.clone(), prefix }
    }
}

/// First line of a command, with a marker when there were more.
fn one_line(text: &str) -> String {
    let mut lines = text.trim().lines();
    let first = lines.next().unwrap_or("").trim().to_string();
    if lines.next().is_some() { format!("{first} …") } else { first }
}

/// `path` relative to `dir` when it is under it or next to it ("../x/y").
fn relative(path: &str, dir: &Path) -> String {
    let p = Path::new(path);
    if let Ok(rest) = p.strip_prefix(dir) {
        return rest.display().to_string();
    }
    if let Some(parent) = dir.parent()
        && let Ok(rest) = p.strip_prefix(parent)
    {
        return format!("../{}", rest.display());
    }
    path.to_string()
}

/// What "remember" allowed: a tool, and for shell commands what they start with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) tool: String,
    /// `"python3 "` (a program and a space) or one exact command.
    pub(crate) prefix: Option<String>,
}

impl Rule {
    pub(crate) fn matches(&self, ask: &Ask) -> bool {
        if ask.tool_name != self.tool {
            return false;
        }
        match &self.prefix {
            None => true,
            Some(prefix) => {
                let command = ask.field("command").map(str::trim).unwrap_or("");
                let chained = command.contains(['&', ';', '|', '`', '$', '>', '<', '\n']);
                if prefix.ends_with(' ') { !chained && command.starts_with(prefix.as_str()) } else { command == prefix }
            }
        }
    }

    /// The same rule for the CLI (`updatedPermissions`), so it stops asking.
    fn for_cli(&self) -> Value {
        let mut rule = json!({ "toolName": self.tool });
        if let Some(prefix) = &self.prefix {
            let content = match prefix.strip_suffix(' ') {
                Some(program) => format!("{program}:*"),
                None => prefix.clone(),
            };
            rule["ruleContent"] = json!(content);
        }
        json!([{ "type": "addRules", "behavior": "allow", "destination": "session", "rules": [rule] }])
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Allow { remember: bool },
    Deny { message: String },
}

impl Decision {
    /// The tool result the CLI reads: `{"behavior":"allow","updatedInput":…}`
    /// or `{"behavior":"deny","message":…}`.
    pub(crate) fn answer(&self, ask: &Ask) -> Value {
        match self {
            Decision::Allow { remember } => {
                let mut v = json!({ "behavior": "allow", "updatedInput": ask.input });
                if *remember {
                    v["updatedPermissions"] = ask.rule().for_cli();
                }
                v
            }
            Decision::Deny { message } => json!({ "behavior": "deny", "message": message }),
        }
    }

    /// For the task's log and `task show`: "allowed", "allowed (remembered)",
    /// "denied: <why>".
    pub(crate) fn describe(&self) -> String {
        match self {
            Decision::Allow { remember: false } => "allowed".into(),
            Decision::Allow { remember: true } => "allowed, and the same kind from now on".into(),
            Decision::Deny { message } => format!("denied: {}", clip(&redact(message), 200)),
        }
    }
}

/// A request and its answer, as kept with the task (`task show`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct PermissionEntry {
    /// Unix seconds.
    pub(crate) asked_at: u64,
    pub(crate) what: String,
    /// Unix seconds; `None` while it waits.
    #[serde(default)]
    pub(crate) answered_at: Option<u64>,
    /// "allowed", "denied: …"; `None` while it waits.
    #[serde(default)]
    pub(crate) answer: Option<String>,
    /// Who answered: "shell", "voice", "remembered", "timeout", "cancel", "end".
    #[serde(default)]
    pub(crate) by: Option<String>,
}

/// One waiting request.
#[derive(Debug)]
struct Pending {
    ask: Ask,
    what: String,
    deadline: Option<Instant>,
    reply: Sender<Value>,
}

#[derive(Debug, Default)]
struct TaskAsks {
    pending: VecDeque<Pending>,
    remembered: Vec<Rule>,
}

/// What became of a request when it was made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Asked {
    /// A rule the user remembered allows it: already answered.
    Remembered,
    /// It waits for an answer.
    Waiting,
}

/// A request that left the board, for the log and the record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answered {
    pub(crate) task: String,
    pub(crate) what: String,
    pub(crate) decision: Decision,
}

/// Waiting requests per task (by task id), oldest first, and the rules each
/// task's user chose to remember.
#[derive(Debug, Default)]
pub(crate) struct Board {
    tasks: HashMap<String, TaskAsks>,
}

impl Board {
    /// Takes a request of `task`. Allowed at once when a remembered rule
    /// covers it; otherwise it waits until `deadline` (`None`: forever).
    pub(crate) fn ask(
        &mut self,
        task: &str,
        ask: Ask,
        what: String,
        deadline: Option<Instant>,
        reply: Sender<Value>,
    ) -> Asked {
        let entry = self.tasks.entry(task.to_string()).or_default();
        if entry.remembered.iter().any(|r| r.matches(&ask)) {
            let _ = reply.try_send(Decision::Allow { remember: false }.answer(&ask));
            return Asked::Remembered;
        }
        entry.pending.push_back(Pending { ask, what, deadline, reply });
        Asked::Waiting
    }

    /// What `task`'s oldest waiting request wants, if it waits.
    pub(crate) fn waiting(&self, task: &str) -> Option<&str> {
        self.tasks.get(task).and_then(|t| t.pending.front()).map(|p| p.what.as_str())
    }

    /// Answers `task`'s oldest waiting request. With "remember", later
    /// requests of the same kind are allowed without asking, including any
    /// already waiting.
    pub(crate) fn answer(&mut self, task: &str, decision: Decision) -> Vec<Answered> {
        let Some(entry) = self.tasks.get_mut(task) else { return Vec::new() };
        let Some(first) = entry.pending.pop_front() else { return Vec::new() };
        let _ = first.reply.try_send(decision.answer(&first.ask));
        let mut answered = vec![Answered { task: task.to_string(), what: first.what, decision: decision.clone() }];
        if let Decision::Allow { remember: true } = decision {
            let rule = first.ask.rule();
            let (covered, rest): (VecDeque<Pending>, VecDeque<Pending>) =
                entry.pending.drain(..).partition(|p| rule.matches(&p.ask));
            entry.pending = rest;
            for p in covered {
                let d = Decision::Allow { remember: false };
                let _ = p.reply.try_send(d.answer(&p.ask));
                answered.push(Answered { task: task.to_string(), what: p.what, decision: d });
            }
            entry.remembered.push(rule);
        }
        answered
    }

    /// Denies every waiting request of `task` with `message` and forgets what
    /// it remembered (the task is ending).
    pub(crate) fn close(&mut self, task: &str, message: &str) -> Vec<Answered> {
        let Some(entry) = self.tasks.remove(task) else { return Vec::new() };
        entry
            .pending
            .into_iter()
            .map(|p| {
                let d = Decision::Deny { message: message.to_string() };
                let _ = p.reply.try_send(d.answer(&p.ask));
                Answered { task: task.to_string(), what: p.what, decision: d }
            })
            .collect()
    }

    /// Denies the requests whose deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant, message: &str) -> Vec<Answered> {
        let mut out = Vec::new();
        for (task, entry) in &mut self.tasks {
            let (due, rest): (VecDeque<Pending>, VecDeque<Pending>) =
                entry.pending.drain(..).partition(|p| p.deadline.is_some_and(|d| d <= now));
            entry.pending = rest;
            for p in due {
                let d = Decision::Deny { message: message.to_string() };
                let _ = p.reply.try_send(d.answer(&p.ask));
                out.push(Answered { task: task.clone(), what: p.what, decision: d });
            }
        }
        out
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.tasks.values().flat_map(|t| t.pending.iter().filter_map(|p| p.deadline)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn bash(command: &str) -> Ask {
        Ask::from_arguments(&json!({
            "tool_name": "Bash",
            "input": { "command": command, "description": "d" },
            "tool_use_id": "toolu_1",
        }))
        .expect("ask")
    }

    fn channel() -> (Sender<Value>, crossbeam_channel::Receiver<Value>) {
        crossbeam_channel::bounded(1)
    }

    #[test]
    fn arguments_as_the_cli_sends_them() {
        let a = bash("python3 -c 'print(1)'");
        assert_eq!(a.tool_name, "Bash");
        assert_eq!(a.tool_use_id.as_deref(), Some("toolu_1"));
        assert!(Ask::from_arguments(&json!({"input": {}})).is_err());
        assert!(Ask::from_arguments(&json!("nonsense")).is_err());
        let bare = Ask::from_arguments(&json!({"tool_name": "Mystery"})).expect("no input is fine");
        assert_eq!(bare.input, json!({}));
    }

    #[test]
    fn one_redacted_line_of_what_it_wants() {
        let dir = PathBuf::from("/home/u/website");
        assert_eq!(bash("npm install left-pad").describe(&dir), "run: npm install left-pad");
        assert_eq!(bash("rm -rf build\necho done").describe(&dir), "run: rm -rf build …");
        let write = Ask {
            tool_name: "Write".into(),
            input: json!({"file_path": "/home/u/other-repo/config.yml"}),
            tool_use_id: None,
        };
        assert_eq!(write.describe(&dir), "write: ../other-repo/config.yml");
        let edit = Ask {
            tool_name: "Edit".into(),
            input: json!({"file_path": "/home/u/website/src/a.rs"}),
            tool_use_id: None,
        };
        assert_eq!(edit.describe(&dir), "edit: src/a.rs");
        let secret = bash("curl -H 'Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz' https://x");
        assert!(!secret.describe(&dir).contains("sk-abcdefghijklmnop"), "{}", secret.describe(&dir));
        let long = bash(&"x".repeat(500));
        assert!(long.describe(&dir).chars().count() <= WHAT_CHARS + 1);
        let other = Ask { tool_name: "mcp__x__y".into(), input: json!(null), tool_use_id: None };
        assert_eq!(other.describe(&dir), "use mcp__x__y");
    }

    #[test]
    fn answers_in_the_shape_the_cli_reads() {
        let a = bash("python3 x.py");
        let allow = Decision::Allow { remember: false }.answer(&a);
        assert_eq!(
            allow,
            json!({"behavior": "allow", "updatedInput": {"command": "python3 x.py", "description": "d"}})
        );
        let remember = Decision::Allow { remember: true }.answer(&a);
        assert_eq!(
            remember["updatedPermissions"],
            json!([{"type": "addRules", "behavior": "allow", "destination": "session",
                    "rules": [{"toolName": "Bash", "ruleContent": "python3:*"}]}])
        );
        let deny = Decision::Deny { message: "no".into() }.answer(&a);
        assert_eq!(deny, json!({"behavior": "deny", "message": "no"}));
    }

    #[test]
    fn remembered_rules_cover_the_same_program_only() {
        let rule = bash("python3 a.py").rule();
        assert!(rule.matches(&bash("python3 b.py")));
        assert!(!rule.matches(&bash("python3x b.py")));
        assert!(!rule.matches(&bash("python3 a.py && rm -rf /")), "a chained command is asked again");
        assert!(!rule.matches(&bash("rm -rf build")));
        let chained = bash("cd x && make");
        assert_eq!(chained.rule().prefix.as_deref(), Some("cd x && make"));
        assert!(chained.rule().matches(&bash("cd x && make")));
        assert!(!chained.rule().matches(&bash("cd x && make install")));
        let write = Ask { tool_name: "Write".into(), input: json!({"file_path": "/a"}), tool_use_id: None };
        assert!(write.rule().matches(&Ask { input: json!({"file_path": "/b"}), ..write.clone() }));
        assert!(!write.rule().matches(&bash("python3 a.py")));
    }

    #[test]
    fn a_request_waits_until_answered_once() {
        let mut board = Board::default();
        let (tx, rx) = channel();
        assert_eq!(board.ask("t1", bash("python3 a.py"), "run: python3 a.py".into(), None, tx), Asked::Waiting);
        assert_eq!(board.waiting("t1"), Some("run: python3 a.py"));
        assert!(rx.try_recv().is_err(), "nothing answered yet");
        let answered = board.answer("t1", Decision::Allow { remember: false });
        assert_eq!(answered.len(), 1);
        assert_eq!(rx.try_recv().expect("answer")["behavior"], "allow");
        assert_eq!(board.waiting("t1"), None);
        assert!(board.answer("t1", Decision::Allow { remember: false }).is_empty(), "nothing left to answer");
        assert!(board.answer("t9", Decision::Allow { remember: false }).is_empty());
    }

    #[test]
    fn remember_allows_waiting_and_later_requests_of_the_same_kind() {
        let mut board = Board::default();
        let (tx1, rx1) = channel();
        let (tx2, rx2) = channel();
        let (tx3, rx3) = channel();
        board.ask("t1", bash("python3 a.py"), "a".into(), None, tx1);
        board.ask("t1", bash("rm -rf build"), "b".into(), None, tx2);
        board.ask("t1", bash("python3 c.py"), "c".into(), None, tx3);
        let answered = board.answer("t1", Decision::Allow { remember: true });
        let whats: Vec<&str> = answered.iter().map(|a| a.what.as_str()).collect();
        assert_eq!(whats, ["a", "c"]);
        assert!(rx1.try_recv().is_ok() && rx3.try_recv().is_ok());
        assert!(rx2.try_recv().is_err(), "a different command still waits");
        assert_eq!(board.waiting("t1"), Some("b"));
        let (tx4, rx4) = channel();
        assert_eq!(board.ask("t1", bash("python3 d.py"), "d".into(), None, tx4), Asked::Remembered);
        assert_eq!(rx4.try_recv().expect("answered at once")["behavior"], "allow");
        let (tx5, _rx5) = channel();
        assert_eq!(board.ask("t2", bash("python3 d.py"), "d".into(), None, tx5), Asked::Waiting, "per task");
    }

    #[test]
    fn timeouts_and_ends_deny() {
        let mut board = Board::default();
        let now = Instant::now();
        let (tx1, rx1) = channel();
        let (tx2, rx2) = channel();
        board.ask("t1", bash("python3 a.py"), "a".into(), Some(now + Duration::from_secs(60)), tx1);
        board.ask("t2", bash("python3 b.py"), "b".into(), Some(now + Duration::from_secs(120)), tx2);
        assert_eq!(board.next_deadline(), Some(now + Duration::from_secs(60)));
        assert!(board.expire(now + Duration::from_secs(59), "late").is_empty());
        let expired = board.expire(now + Duration::from_secs(60), "no answer within 1 min");
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].task, "t1");
        assert_eq!(rx1.try_recv().expect("denied")["message"], "no answer within 1 min");
        assert_eq!(board.next_deadline(), Some(now + Duration::from_secs(120)));
        let closed = board.close("t2", "the task was cancelled");
        assert_eq!(closed[0].decision.describe(), "denied: the task was cancelled");
        assert_eq!(rx2.try_recv().expect("denied")["behavior"], "deny");
        assert_eq!(board.next_deadline(), None);
        assert!(board.close("t2", "again").is_empty());
    }

    #[test]
    fn a_vanished_asker_does_not_block_the_board() {
        let mut board = Board::default();
        let (tx, rx) = channel();
        drop(rx);
        board.ask("t1", bash("python3 a.py"), "a".into(), None, tx);
        assert_eq!(board.answer("t1", Decision::Allow { remember: false }).len(), 1);
    }
}
