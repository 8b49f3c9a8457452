//! The eight function tools the live assistant may call (design §4, plus `answer_permission`, `set_quiet` and
//! `catch_up`). Names and argument shapes are a
//! contract: the dispatcher in `daemon/`, the tests and the instructions all rely on them.
//!
//! Why the descriptions insist on "started": `start_task` and `continue_task` answer at once, long before
//! Claude has done anything. A realtime model left to itself happily narrates results it has not seen (the
//! upstream app's "the model answered before the tool ran"). The descriptions therefore say what the answer
//! means, tell the model to confirm the start in a few words, and that the outcome arrives later as a system
//! message. `get_task_result` may come back `ambiguous`; the model must then ask, not guess.
//!
//! `answer_permission` exists because a task can stop and ask ("t4 wants to run rm -rf build"): the question
//! arrives as a system message, the model asks the user, and passes on the user's answer, never its own.
//!
//! `set_quiet` and `catch_up` are the conversation's manners (issue 16): the user says "not now" (a call, a
//! meeting) and later "what did I miss". While quiet, nothing is spoken; results wait, unannounced on disk.
//! `catch_up` hands every result and question not yet heard to the model in one output, oldest first, and
//! they count as heard only once the response that speaks it is done. Both are answered at once by the
//! daemon itself (no task is involved).

use crate::realtime::events::{FunctionTool, ToolKind};
use serde_json::{Value, json};

/// `start_task {task, name, project?}`.
pub(crate) const START_TASK: &str = "start_task";
/// `list_tasks {}`.
pub(crate) const LIST_TASKS: &str = "list_tasks";
/// `get_task_result {task}`.
pub(crate) const GET_TASK_RESULT: &str = "get_task_result";
/// `cancel_task {task}`.
pub(crate) const CANCEL_TASK: &str = "cancel_task";
/// `continue_task {task, instruction}`.
pub(crate) const CONTINUE_TASK: &str = "continue_task";

/// `answer_permission {task, allow, remember?}`.
pub(crate) const ANSWER_PERMISSION: &str = "answer_permission";

/// `set_quiet {on}`.
pub(crate) const SET_QUIET: &str = "set_quiet";
/// `catch_up {}`.
pub(crate) const CATCH_UP: &str = "catch_up";

#[cfg(test)]
/// Every tool name, in the order [`all`] returns them.
pub(crate) const NAMES: [&str; 8] =
    [START_TASK, LIST_TASKS, GET_TASK_RESULT, CANCEL_TASK, CONTINUE_TASK, ANSWER_PERMISSION, SET_QUIET, CATCH_UP];

const TASK_REF: &str = "Which task: its id (\"t3\") or words from its name (\"the auth refactor\").";

/// The eight tool definitions for `session.update`.
pub(crate) fn all() -> Vec<FunctionTool> {
    vec![
        tool(
            START_TASK,
            "Start a Claude Code task that runs in the background (coding, refactoring, running tests, \
             research in a project). Returns immediately with {\"status\":\"started\",\"task_id\",\"name\"} \
             or {\"status\":\"rejected\",\"reason\",\"message\"}. When started, nothing has been done yet: \
             say in a few words that it has started (for example \"Started t7, the auth refactor\") and \
             never describe, guess or invent its results. When the task ends you will receive a system \
             message with its summary; report it then. When rejected, tell the user the message.",
            json!({
                "type": "object",
                "properties": {
                    "task": {
                        "type": "string",
                        "description": "The complete instruction for Claude Code, in the user's words plus \
                                        any context from this conversation it needs."
                    },
                    "name": {
                        "type": "string",
                        "description": "A short spoken name for the task, two to four words \
                                        (\"auth refactor\")."
                    },
                    "project": {
                        "type": "string",
                        "description": "Optional: a configured project name (\"website\") or a path. \
                                        Omit it when the user named no project."
                    }
                },
                "required": ["task", "name"],
                "additionalProperties": false
            }),
        ),
        tool(
            LIST_TASKS,
            "List the tasks of this run and recent ones: id, name, state, elapsed time, current activity \
             and cost. Use it when the user asks what the tasks are doing and the task table in your \
             instructions is not enough. Report only what it returns.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        tool(
            GET_TASK_RESULT,
            "Get a task's result: state, summary, cost and the path of its full log. If the answer is \
             {\"status\":\"ambiguous\",\"candidates\":[...]}, ask the user which one they mean; never pick \
             one yourself. Report the summary as returned; do not add details it does not contain.",
            task_only(),
        ),
        tool(
            CANCEL_TASK,
            "Cancel a running task: its processes are stopped. Returns what was done; tell the user. If \
             the answer is ambiguous, ask which task they mean.",
            task_only(),
        ),
        tool(
            CONTINUE_TASK,
            "Give a task a follow-up instruction: a new run in the same directory that resumes the task's \
             Claude session. Returns immediately like start_task: say that it continues, do not invent \
             results; its outcome arrives later as a system message.",
            json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": TASK_REF},
                    "instruction": {
                        "type": "string",
                        "description": "What Claude Code should do next in that task."
                    }
                },
                "required": ["task", "instruction"],
                "additionalProperties": false
            }),
        ),
        tool(
            ANSWER_PERMISSION,
            "Answer a task that is waiting for permission (a system message said what it wants, for              example \"t4 wants to run: rm -rf build\"). Call it only with the user's own answer to that              question: allow true when the user said yes, false when they said no; never decide yourself.              remember true only when the user said to allow that kind of request from now on. Returns              {\"status\":\"answered\",\"message\"}: confirm it in a few words. If the task is not              waiting or the reference is ambiguous, tell the user the message.",
            json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": TASK_REF},
                    "allow": {"type": "boolean", "description": "The user's answer: true for yes, false for no."},
                    "remember": {
                        "type": "boolean",
                        "description": "Optional: also allow the same kind of request for the rest of the task's \
                                        run (only when the user asked for that)."
                    }
                },
                "required": ["task", "allow"],
                "additionalProperties": false
            }),
        ),
        tool(
            SET_QUIET,
            "Turn quiet mode on or off. Call it with on true when the user asks you to be quiet for a while \
             (\"quiet mode\", \"not now, I'm in a call\"), and on false when they say you can talk again. \
             While quiet, task results, progress and questions are not spoken (a short sound marks each and \
             they wait); the user hears them later through catch_up. Returns {\"status\":\"ok\",\"quiet\", \
             \"waiting\"}: confirm in a few words, then say nothing more until the user speaks.",
            json!({
                "type": "object",
                "properties": {
                    "on": {"type": "boolean", "description": "true: be quiet; false: talk again."}
                },
                "required": ["on"],
                "additionalProperties": false
            }),
        ),
        tool(
            CATCH_UP,
            "Get every task result and question the user has not heard yet, oldest first (\"what did I \
             miss?\", or yes to your offer after quiet mode). Returns {\"status\":\"ok\",\"items\":[{\"kind\", \
             \"text\"}],\"message\"}. Tell the user each item in order, briefly; add nothing the items do \
             not say. If items is empty, say nothing was missed.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
    ]
}

fn task_only() -> Value {
    json!({
        "type": "object",
        "properties": {"task": {"type": "string", "description": TASK_REF}},
        "required": ["task"],
        "additionalProperties": false
    })
}

fn tool(name: &str, description: &str, parameters: Value) -> FunctionTool {
    FunctionTool { kind: ToolKind::Function, name: name.to_owned(), description: description.to_owned(), parameters }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn required(t: &FunctionTool) -> Vec<&str> {
        t.parameters["required"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
    }

    fn props(t: &FunctionTool) -> Vec<&str> {
        let mut p: Vec<&str> =
            t.parameters["properties"].as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        p.sort_unstable();
        p
    }

    #[test]
    fn eight_tools_with_the_contracted_shapes() {
        let tools = all();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, NAMES);
        let by = |n: &str| tools.iter().find(|t| t.name == n).unwrap();
        assert_eq!(props(by(START_TASK)), ["name", "project", "task"]);
        assert_eq!(required(by(START_TASK)), ["task", "name"]);
        assert!(props(by(LIST_TASKS)).is_empty());
        assert_eq!(props(by(GET_TASK_RESULT)), ["task"]);
        assert_eq!(props(by(CANCEL_TASK)), ["task"]);
        assert_eq!(props(by(CONTINUE_TASK)), ["instruction", "task"]);
        assert_eq!(required(by(CONTINUE_TASK)), ["task", "instruction"]);
        assert_eq!(props(by(ANSWER_PERMISSION)), ["allow", "remember", "task"]);
        assert_eq!(required(by(ANSWER_PERMISSION)), ["task", "allow"]);
        assert_eq!(by(ANSWER_PERMISSION).parameters["properties"]["allow"]["type"], "boolean");
        assert_eq!(props(by(SET_QUIET)), ["on"]);
        assert_eq!(required(by(SET_QUIET)), ["on"]);
        assert_eq!(by(SET_QUIET).parameters["properties"]["on"]["type"], "boolean");
        assert!(props(by(CATCH_UP)).is_empty());
        for t in &tools {
            assert_eq!(t.parameters["type"], "object");
            assert_eq!(serde_json::to_value(t).unwrap()["type"], "function");
        }
    }

    #[test]
    fn descriptions_forbid_invented_results() {
        let tools = all();
        let start = &tools[0].description;
        assert!(start.contains("started") && start.contains("never"));
        assert!(tools[2].description.contains("ambiguous"));
        assert!(tools[5].description.contains("never decide yourself"));
        assert!(tools[7].description.contains("add nothing"));
    }
}
