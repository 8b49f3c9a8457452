//! A small stderr logger that the journal understands.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line starts with the syslog
//! priority in angle brackets (`<4>` = warning), which journald turns into the
//! entry's priority; elsewhere lines read `ptt: warn: …`. The level comes from
//! `PTT_LOG` or `RUST_LOG` (`error`, `warn`, `info`, `debug`, `trace`; default
//! `info`). Secrets never reach this logger: callers log redacted text.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    journal: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A name or a child's output with a newline or an escape sequence must not forge a log line
        // or drive the terminal: one record is one line of printable text.
        let message = one_line(&record.args().to_string());
        let line = if self.journal {
            let prio = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{prio}>{message}\n")
        } else {
            format!("ptt: {}: {message}\n", record.level().as_str().to_lowercase())
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `s` with control characters escaped (`\n`, `\u{1b}`): the same rule as
/// `text::escape_controls`, repeated here because the logger is a leaf that
/// every module, `text` included, may use.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Parses a level name; unknown names fall back to `info`.
pub(crate) fn parse_level(s: &str) -> LevelFilter {
    // Accept `RUST_LOG`-style `ptt=debug,other=info` by taking our entry or the bare level.
    let pick = s.split(',').map(str::trim).find_map(|part| match part.split_once('=') {
        Some(("ptt", level)) => Some(level),
        None => Some(part),
        _ => None,
    });
    match pick.unwrap_or("info").to_ascii_lowercase().as_str() {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

/// Installs the logger once (later calls are ignored).
pub(crate) fn init() {
    let level = std::env::var("PTT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .map(|s| parse_level(&s))
        .unwrap_or(LevelFilter::Info);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if log::set_boxed_logger(Box::new(StderrLogger { journal })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("debug"), LevelFilter::Debug);
        assert_eq!(parse_level("WARN"), LevelFilter::Warn);
        assert_eq!(parse_level("other=trace,ptt=error"), LevelFilter::Error);
        assert_eq!(parse_level("nonsense"), LevelFilter::Info);
    }

    #[test]
    fn one_record_is_one_line() {
        assert_eq!(
            one_line("task t1 'a\nptt: info: task t9 forged' \x1b[2J"),
            "task t1 'a\\nptt: info: task t9 forged' \\u{1b}[2J"
        );
    }
}
