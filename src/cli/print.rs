//! Human-readable output of the client commands.
//!
//! Names, task text, summaries and a child's output come from other programs
//! and other people: every line printed here goes through
//! [`text::escape_controls`](crate::text::escape_controls), so an escape
//! sequence cannot clear the screen or recolour the terminal and a newline
//! cannot forge a table row. (`--json` output is JSON, which escapes them.)

use serde_json::Value;

use crate::control::reply::{AudioStatus, Device, StatusReply, TaskInfo};

/// `println!` with control characters escaped.
macro_rules! out {
    ($($arg:tt)*) => {
        println!("{}", crate::text::escape_controls(&format!($($arg)*)))
    };
}

pub(crate) fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// `4m12s`, `1h03m`, `12s`.
pub(crate) fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn cost(usd: Option<f64>) -> String {
    usd.map(|c| format!("${c:.2}")).unwrap_or_else(|| "-".into())
}

pub(crate) fn status(v: &StatusReply) {
    let (d, t) = (&v.daemon, &v.tasks);
    out!("ptt {} running (pid {}, up {})", d.version, d.pid, duration(d.uptime_s));
    out!("tasks: {} running (max {}), {} remembered, next id {}", t.running, t.max_concurrent, t.known, t.next_id);
    if let Some(e) = &t.registry_error {
        out!("tasks.json CANNOT BE WRITTEN, new tasks are refused: {e}");
    }
    let (budget, spent) = (t.budget_usd, t.spent_today_usd);
    if budget > 0.0 {
        out!("spent today: ${spent:.2} of ${budget:.2}");
    } else {
        out!("spent today: ${spent:.2} (no daily limit)");
    }
    for w in &t.waiting {
        let what = w.waiting_for.as_deref().unwrap_or("");
        out!("waiting: {} '{}' wants to {what} (ptt task allow|deny {})", w.task_id, w.name, w.task_id);
    }
    if let Some(r) = &t.rate_limited {
        out!("claude: {r}");
    }
    match &t.claude.path {
        Some(p) => out!("claude: {p}"),
        None => out!("claude: NOT FOUND: {}", t.claude.error.as_deref().unwrap_or("")),
    }
    let live = &v.live;
    let mut line = format!("live: {}", live.state.as_deref().unwrap_or(""));
    if let Some(e) = &live.error {
        line.push_str(&format!(" ({e})"));
    } else if let Some(k) = live.key.as_deref().filter(|k| *k != "present") {
        line.push_str(&format!(" ({k})"));
    }
    if live.quiet {
        line.push_str(&format!(", quiet mode ({} waiting)", live.waiting));
    } else if live.pending_notifications > 0 {
        line.push_str(&format!(", {} task result(s) not yet announced", live.pending_notifications));
    }
    out!("{line}");
    if let Some(t) = &live.transcription {
        out!("live transcription: {t}");
    }
    for w in &v.models.warnings {
        out!("models: warning: {w}");
    }
    for e in &v.models.errors {
        out!("models: ERROR: {e}");
    }
    if let Some(audio) = &v.audio {
        out!("{}", voice_line(audio));
    }
    match &v.dictation {
        Some(dict) if dict.enabled => {
            let mut line = format!("dictation: on (typer {}), {} typed", dict.typer.name(), dict.typed);
            if dict.kept_clips > 0 {
                line.push_str(&format!(", {} clip(s) kept after failures (`ptt dictate retry`)", dict.kept_clips));
            }
            if let Some(e) = &dict.last_error {
                line.push_str(&format!("; last error: {e}"));
            }
            out!("{line}");
        }
        Some(_) => out!("dictation: off (dictate.enabled = false)"),
        None => {}
    }
    out!("config: {}", d.config.display());
}

/// Whether voice (the microphone and the speaker) works, and why not.
fn voice_line(audio: &AudioStatus) -> String {
    let side = |what: &str, d: &Device| -> Result<String, String> {
        match (d.ok.as_deref(), d.error.as_deref()) {
            (Some(ok), _) => Ok(format!("{what} {ok}")),
            (None, Some("not opened yet")) => Err(format!("{what} not opened yet (opens on first use)")),
            (None, Some(e)) => Err(format!("{what}: {e}")),
            (None, None) => Err(format!("{what}: unknown")),
        }
    };
    let mic = side("microphone", &audio.input);
    let speaker = side("speaker", &audio.output);
    match (mic, speaker) {
        (Ok(m), Ok(s)) => format!("voice: on ({m}; {s})"),
        (Err(m), Err(s)) if m.contains("not opened yet") && s.contains("not opened yet") => {
            "voice: not used yet (the microphone and speaker open on first use)".to_string()
        }
        (m, s) => format!("voice: off: {}", [m, s].map(|r| r.unwrap_or_else(|e| e)).join("; ")),
    }
}

pub(crate) fn task_table(tasks: &[TaskInfo]) {
    if tasks.is_empty() {
        out!("no tasks (start one with `ptt task start \"...\"`)");
        return;
    }
    out!("{:<5} {:<11} {:<28} {:>7} {:>7}  ACTIVITY / SUMMARY", "ID", "STATE", "NAME", "TIME", "COST");
    for t in tasks {
        let mut state = t.state.clone();
        if t.stalled {
            state.push('!');
        }
        let waiting = format!("wants to {}", t.waiting_for.as_deref().unwrap_or(""));
        let detail = match t.state.as_str() {
            "waiting" => waiting.as_str(),
            "running" => t.rate_limited.as_deref().or(t.activity.as_deref()).unwrap_or(""),
            _ => t.summary.as_deref().unwrap_or(""),
        };
        out!(
            "{:<5} {:<11} {:<28} {:>7} {:>7}  {}",
            t.id,
            state,
            crate::text::clip(&t.name, 28),
            duration(t.elapsed_s),
            cost(t.cost_usd),
            crate::text::clip(detail, 70)
        );
    }
}

pub(crate) fn task_details(t: &TaskInfo) {
    out!("{} '{}': {}{}", t.id, t.name, t.state, if t.stalled { " (stalled)" } else { "" });
    out!("  task:     {}", t.prompt);
    out!("  dir:      {}", t.dir.display());
    if let Some(b) = &t.branch {
        out!("  branch:   {b}");
    }
    out!("  time:     {}", duration(t.elapsed_s));
    out!("  cost:     {}", cost(t.cost_usd));
    if let Some(n) = t.num_turns {
        out!("  turns:    {n}");
    }
    if let Some(w) = &t.waiting_for {
        out!("  waiting:  wants to {w} (ptt task allow|deny {})", t.id);
    }
    if let Some(a) = &t.activity {
        out!("  activity: {a}");
    }
    if let Some(r) = &t.rate_limited {
        out!("  limits:   {r}");
    }
    if let Some(r) = &t.reason {
        out!("  reason:   {r}");
    }
    if let Some(sm) = &t.summary {
        out!("  summary:  {sm}");
    }
    let changes = t.changes.clone().unwrap_or_default();
    if !changes.files.is_empty() {
        out!("  wrote:    {}", changes.files.join(", "));
    }
    if let Some(diff) = &changes.diff {
        let base: String = diff.base.chars().take(12).collect();
        out!("  diff:     {} (since {base})", diff.summary);
        for f in &diff.files {
            let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
            let new = if f.untracked { " (new)" } else { "" };
            out!("    {:>5} {:>5}  {}{new}", format!("+{}", count(f.added)), format!("-{}", count(f.removed)), f.path);
        }
    }
    if !t.permissions.is_empty() {
        out!("  permission requests:");
        for a in &t.permissions {
            let answer = match &a.answer {
                Some(ans) => format!("{ans} (by {})", a.by.as_deref().unwrap_or("")),
                None => "waiting".into(),
            };
            out!("    {}: {answer}", a.what);
        }
    }
    if let Some(sess) = &t.session_id {
        out!("  session:  {sess}");
    }
    out!("  log:      {}", t.log_path.display());
    if !t.tail.is_empty() {
        out!("  last output:");
        for line in t.tail.iter().rev().take(10).rev() {
            out!("    {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::duration(5), "5s");
        assert_eq!(super::duration(252), "4m12s");
        assert_eq!(super::duration(3780), "1h03m");
    }
}
