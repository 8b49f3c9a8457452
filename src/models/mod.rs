//! OpenAI model lifecycle: which configured models are being shut down, what replaces them, and which
//! models take the 2.x Realtime fields (`reasoning`, `parallel_tool_calls`).
//!
//! Why this exists: OpenAI shuts down `gpt-realtime`/`gpt-realtime-mini` on 2027-01-20 and `whisper-1` and
//! the `gpt-4o*-transcribe` family on 2027-02-26 (docs/openai-2027-models.md). A config written before then
//! names those models, and without this module live mode and dictation would simply stop with an HTTP
//! error nobody can read. So:
//!
//! - [`choose`] is a pure function of the configured model and today's date: before the shutdown date it
//!   keeps the model and returns a warning naming the date and the replacement; on or after it, it uses
//!   the replacement and says so. The daemon logs the notice at start and shows it in `ptt status` and
//!   `ptt doctor`.
//! - The table is only what is known. A model that disappears without notice is caught by the lifecycle
//!   check ([`check`]): `GET {api_base}/models/{model}` reports a `shutdown_date`, or a 404.
//! - [`takes_reasoning`] decides whether `session.reasoning` and `parallel_tool_calls` may be sent: a
//!   reasoning field sent to an older model makes the server refuse the whole update and end the session.
//!
//! Nothing here does I/O except [`check`], which runs on a thread of its own.

pub(crate) mod check;

use std::fmt;

/// A calendar date (UTC), compared as `(year, month, day)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub(crate) year: i32,
    pub(crate) month: u32,
    pub(crate) day: u32,
}

impl Date {
    pub const fn new(year: i32, month: u32, day: u32) -> Date {
        Date { year, month, day }
    }

    /// `YYYY-MM-DD` (the API's `shutdown_date` format). Anything else, or an impossible date, is `None`.
    pub(crate) fn parse(s: &str) -> Option<Date> {
        let s = s.trim();
        let mut parts = s.splitn(3, '-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if !(all_digits(y) && all_digits(m) && all_digits(d)) {
            return None;
        }
        let date = Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        (Date::from_days(date.days()) == date).then_some(date)
    }

    /// Days since 1970-01-01 (negative before), Howard Hinnant's `days_from_civil`.
    pub fn days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The inverse of [`days`](Self::days) (`civil_from_days`).
    pub fn from_days(z: i64) -> Date {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date::new(i32::try_from(year).unwrap_or(i32::MAX), month as u32, day as u32)
    }

    /// The UTC date of a unix time in seconds.
    pub(crate) fn from_unix(secs: i64) -> Date {
        Date::from_days(secs.div_euclid(86_400))
    }

    /// Today (UTC). `PTT_TODAY=YYYY-MM-DD` overrides it, so tests can check what happens after a shutdown
    /// date without waiting for it.
    pub fn today() -> Date {
        if let Some(d) = std::env::var("PTT_TODAY").ok().and_then(|v| Date::parse(&v)) {
            return d;
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Date::from_unix(secs)
    }

    /// Days from `self` until `later` (negative when `later` is earlier).
    pub(crate) fn days_until(self, later: Date) -> i64 {
        later.days() - self.days()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A model OpenAI has announced a shutdown date for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retirement {
    pub(crate) model: &'static str,
    pub(crate) shutdown: Date,
    pub(crate) replacement: &'static str,
}

const REALTIME_SHUTDOWN: Date = Date::new(2027, 1, 20);
const TRANSCRIBE_SHUTDOWN: Date = Date::new(2027, 2, 26);

/// Announced shutdowns (docs/openai-2027-models.md §1). Snapshot ids are listed with their alias.
pub(crate) const RETIRED: &[Retirement] = &[
    Retirement { model: "gpt-realtime", shutdown: REALTIME_SHUTDOWN, replacement: "gpt-realtime-2.1" },
    Retirement { model: "gpt-realtime-2025-08-28", shutdown: REALTIME_SHUTDOWN, replacement: "gpt-realtime-2.1" },
    Retirement { model: "gpt-realtime-mini", shutdown: REALTIME_SHUTDOWN, replacement: "gpt-realtime-2.1-mini" },
    Retirement {
        model: "gpt-realtime-mini-2025-10-06",
        shutdown: REALTIME_SHUTDOWN,
        replacement: "gpt-realtime-2.1-mini",
    },
    Retirement {
        model: "gpt-realtime-mini-2025-12-15",
        shutdown: REALTIME_SHUTDOWN,
        replacement: "gpt-realtime-2.1-mini",
    },
    Retirement { model: "whisper-1", shutdown: TRANSCRIBE_SHUTDOWN, replacement: "gpt-transcribe" },
    Retirement { model: "gpt-4o-transcribe", shutdown: TRANSCRIBE_SHUTDOWN, replacement: "gpt-transcribe" },
    Retirement { model: "gpt-4o-mini-transcribe", shutdown: TRANSCRIBE_SHUTDOWN, replacement: "gpt-transcribe" },
    Retirement {
        model: "gpt-4o-mini-transcribe-2025-12-15",
        shutdown: TRANSCRIBE_SHUTDOWN,
        replacement: "gpt-transcribe",
    },
    Retirement { model: "gpt-4o-transcribe-diarize", shutdown: TRANSCRIBE_SHUTDOWN, replacement: "gpt-transcribe" },
];

/// The default live model.
pub(crate) const DEFAULT_LIVE_MODEL: &str = "gpt-realtime-2.1";
/// The cheaper live model the README names.
pub(crate) const CHEAP_LIVE_MODEL: &str = "gpt-realtime-2.1-mini";
/// The default transcription model, for dictation and for the live session's input transcription.
pub(crate) const DEFAULT_TRANSCRIBE_MODEL: &str = "gpt-transcribe";

/// The announced shutdown of `model`, if any (exact id, case-insensitive).
pub(crate) fn retirement(model: &str) -> Option<&'static Retirement> {
    let model = model.trim();
    RETIRED.iter().find(|r| r.model.eq_ignore_ascii_case(model))
}

/// The replacement to suggest for a model the API says is gone: the table's, else the default of the
/// config key's kind.
pub(crate) fn replacement_for(key: &str, model: &str) -> &'static str {
    match retirement(model) {
        Some(r) => r.replacement,
        None if key == "live.model" && model.contains("mini") => CHEAP_LIVE_MODEL,
        None if key == "live.model" => DEFAULT_LIVE_MODEL,
        None => DEFAULT_TRANSCRIBE_MODEL,
    }
}

/// The line for a model the API refused: which model, and what to set instead.
pub(crate) fn gone_message(key: &str, model: &str, detail: &str) -> String {
    let detail = detail.trim();
    let why = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
    format!("{key} = \"{model}\" is not available{why}; set {key} = \"{}\" in config.toml", replacement_for(key, model))
}

/// What [`choose`] says about a configured model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Still served until `shutdown`: keep using it, but change the config.
    Retiring { shutdown: Date, replacement: &'static str },
    /// Shut down on `shutdown`: the replacement is used instead.
    Replaced { shutdown: Date, replacement: &'static str },
}

/// The model a config key resolves to today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    /// The config key, e.g. `live.model`.
    pub(crate) key: &'static str,
    pub(crate) configured: String,
    /// What is actually used.
    pub(crate) model: String,
    pub(crate) notice: Option<Notice>,
}

impl Choice {
    /// The warning line for the journal, `ptt status` and `ptt doctor`, if any.
    pub(crate) fn warning(&self) -> Option<String> {
        let (key, configured) = (self.key, &self.configured);
        Some(match self.notice.as_ref()? {
            Notice::Retiring { shutdown, replacement } => {
                format!("{key} = \"{configured}\" shuts down on {shutdown}; set {key} = \"{replacement}\" before then")
            }
            Notice::Replaced { shutdown, replacement } => format!(
                "{key} = \"{configured}\" was shut down on {shutdown}; using \"{replacement}\" instead \
                 (set {key} = \"{replacement}\" to make this permanent)"
            ),
        })
    }
}

/// Resolves `configured` (the value of config key `key`) on `today`.
pub(crate) fn choose(key: &'static str, configured: &str, today: Date) -> Choice {
    let configured = configured.trim().to_owned();
    match retirement(&configured) {
        Some(r) if today >= r.shutdown => Choice {
            key,
            model: r.replacement.to_owned(),
            notice: Some(Notice::Replaced { shutdown: r.shutdown, replacement: r.replacement }),
            configured,
        },
        Some(r) => Choice {
            key,
            model: configured.clone(),
            notice: Some(Notice::Retiring { shutdown: r.shutdown, replacement: r.replacement }),
            configured,
        },
        None => Choice { key, model: configured.clone(), notice: None, configured },
    }
}

/// The configured models (`live.model`, `live.transcription_model`, `dictate.model`), resolved for
/// `today`. An empty transcription model (live input transcription off) is left out.
pub(crate) fn choices(live_model: &str, transcription_model: &str, dictate_model: &str, today: Date) -> Vec<Choice> {
    let mut out = vec![choose("live.model", live_model, today)];
    if !transcription_model.trim().is_empty() {
        out.push(choose("live.transcription_model", transcription_model, today));
    }
    out.push(choose("dictate.model", dictate_model, today));
    out
}

/// Whether a Realtime model takes `session.reasoning` and `parallel_tool_calls`: the 2.x family
/// (`gpt-realtime-2`, `-2.1`, `-2.1-mini`, their snapshots, later majors). Older models refuse the whole
/// `session.update` (and the server ends the session) when they get a reasoning field.
pub(crate) fn takes_reasoning(model: &str) -> bool {
    let Some(rest) = model.trim().to_ascii_lowercase().strip_prefix("gpt-realtime-").map(str::to_owned) else {
        return false;
    };
    let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let major = version.split('.').next().and_then(|m| m.parse::<u32>().ok());
    // A four-digit number is a snapshot date of the 2025 model (`gpt-realtime-2025-08-28`), not a version.
    major.is_some_and(|m| (2..1000).contains(&m))
}

/// Whether a transcription model takes `keywords[]` and `languages[]` (and refuses `language` next to
/// `languages`): `gpt-transcribe` and `gpt-live-transcribe`.
pub(crate) fn is_keyword_transcriber(model: &str) -> bool {
    let m = model.trim().to_ascii_lowercase();
    m == "gpt-transcribe"
        || m == "gpt-live-transcribe"
        || m.starts_with("gpt-transcribe-")
        || m.starts_with("gpt-live-transcribe-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_print_and_count() {
        let d = Date::parse("2027-01-20").expect("date");
        assert_eq!(d, Date::new(2027, 1, 20));
        assert_eq!(d.to_string(), "2027-01-20");
        for bad in ["2027-1-20", "2027-02-30", "2027-13-01", "20270120", "", "2027-01-2x", "+027-01-20"] {
            assert_eq!(Date::parse(bad), None, "{bad}");
        }
        assert_eq!(Date::parse("2028-02-29"), Some(Date::new(2028, 2, 29)));
        assert_eq!(Date::new(1970, 1, 1).days(), 0);
        assert_eq!(Date::from_unix(1_798_761_600), Date::new(2027, 1, 1));
        assert_eq!(Date::from_unix(-1), Date::new(1969, 12, 31));
        assert_eq!(Date::new(2026, 12, 21).days_until(Date::new(2027, 1, 20)), 30);
        for z in [-800_000, -1, 0, 1, 20_000, 2_000_000] {
            assert_eq!(Date::from_days(z).days(), z);
        }
    }

    #[test]
    fn old_models_warn_before_and_are_replaced_after_their_date() {
        let before = Date::new(2026, 12, 7);
        let c = choose("live.model", "gpt-realtime", before);
        assert_eq!(c.model, "gpt-realtime");
        let w = c.warning().expect("warning");
        assert!(w.contains("2027-01-20") && w.contains("gpt-realtime-2.1"), "{w}");
        let c = choose("live.model", "gpt-realtime", Date::new(2027, 1, 20));
        assert_eq!(c.model, "gpt-realtime-2.1", "replaced on the day");
        assert!(c.warning().expect("warning").contains("using \"gpt-realtime-2.1\" instead"));
        let c = choose("live.model", "gpt-realtime-mini", Date::new(2027, 3, 1));
        assert_eq!(c.model, "gpt-realtime-2.1-mini");
        let c = choose("dictate.model", "whisper-1", Date::new(2027, 2, 25));
        assert_eq!((c.model.as_str(), c.notice.is_some()), ("whisper-1", true));
        let c = choose("dictate.model", "gpt-4o-mini-transcribe", Date::new(2027, 2, 26));
        assert_eq!(c.model, "gpt-transcribe");
        let c = choose("live.model", "gpt-realtime-2.1", Date::new(2030, 1, 1));
        assert_eq!((c.model.as_str(), c.warning()), ("gpt-realtime-2.1", None));
    }

    #[test]
    fn the_defaults_are_current_models() {
        for c in choices(DEFAULT_LIVE_MODEL, DEFAULT_TRANSCRIBE_MODEL, DEFAULT_TRANSCRIBE_MODEL, Date::new(2030, 1, 1))
        {
            assert_eq!(c.notice, None, "{} = {} is retired", c.key, c.configured);
        }
        let old = choices("gpt-realtime", "", "whisper-1", Date::new(2026, 12, 7));
        assert_eq!(old.iter().map(|c| c.key).collect::<Vec<_>>(), ["live.model", "dictate.model"]);
        assert!(old.iter().all(|c| c.warning().is_some()));
    }

    #[test]
    fn reasoning_only_for_2x_models() {
        for m in [
            "gpt-realtime-2",
            "gpt-realtime-2.1",
            "gpt-realtime-2.1-mini",
            "gpt-realtime-2.1-2026-11-01",
            "gpt-realtime-3",
        ] {
            assert!(takes_reasoning(m), "{m}");
        }
        for m in [
            "gpt-realtime",
            "gpt-realtime-mini",
            "gpt-realtime-1.5",
            "gpt-realtime-2025-08-28",
            "gpt-4o-realtime-preview",
            "",
        ] {
            assert!(!takes_reasoning(m), "{m}");
        }
    }

    #[test]
    fn keyword_transcribers() {
        assert!(is_keyword_transcriber("gpt-transcribe"));
        assert!(is_keyword_transcriber("gpt-live-transcribe"));
        assert!(!is_keyword_transcriber("gpt-4o-mini-transcribe"));
        assert!(!is_keyword_transcriber("whisper-1"));
    }

    #[test]
    fn replacements_for_unknown_gone_models() {
        assert_eq!(replacement_for("live.model", "gpt-realtime"), "gpt-realtime-2.1");
        assert_eq!(replacement_for("live.model", "gpt-realtime-9-mini"), CHEAP_LIVE_MODEL);
        assert_eq!(replacement_for("live.model", "nope"), DEFAULT_LIVE_MODEL);
        assert_eq!(replacement_for("dictate.model", "nope"), DEFAULT_TRANSCRIBE_MODEL);
    }
}
