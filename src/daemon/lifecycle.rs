//! The configured OpenAI models as the daemon keeps them: which model each key really uses today, the
//! warnings about retired ones, and the daily `GET /models/{model}` check.
//!
//! Why in the daemon: a config written before 2027 names `gpt-realtime` and `gpt-4o-mini-transcribe`,
//! which OpenAI shuts down on 2027-01-20 and 2027-02-26. The user must hear about it where they look (the
//! journal at start, `ptt status`, `ptt doctor`) with the date and the replacement, and on the day itself
//! ptt must switch to the replacement rather than fail. [`effective`] applies the replacements to the
//! config the subsystems get; [`Lifecycle`] keeps the notices and the check's reports for `status`.
//!
//! The check is I/O, so it runs on a one-shot `model-check` thread ([`crate::models::check::spawn`]);
//! its next run is a deadline the loop keeps (timers are data): at start, then every
//! [`CHECK_EVERY`], and again after a config reload. A check that cannot tell (no key, no network)
//! changes nothing and says so only at debug level. `PTT_MODEL_CHECK=off` in the environment turns the
//! check off (an offline machine, a proxy without `/models`, the test suite).

use std::time::{Duration, Instant};

use crate::control::reply::{CheckedModel, ModelsStatus, UsedModel};
use crossbeam_channel::{Receiver, Sender};

use crate::config::Config;
use crate::models::check::{self, Report, Target};
use crate::models::{Choice, Date, choices};

/// How often the configured models are checked against the API.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The config with every retired model replaced by its successor once its shutdown date has passed,
/// and what was decided for each model key.
pub(crate) fn effective(cfg: &Config, today: Date) -> (Config, Vec<Choice>) {
    let chosen = choices(&cfg.live.model, &cfg.live.transcription_model, &cfg.dictate.model, today);
    let mut out = cfg.clone();
    for c in &chosen {
        match c.key {
            "live.model" => out.live.model = c.model.clone(),
            "live.transcription_model" => out.live.transcription_model = c.model.clone(),
            "dictate.model" => out.dictate.model = c.model.clone(),
            _ => {}
        }
    }
    (out, chosen)
}

/// What to check: each model in use, at the API it is served from (duplicates once).
pub(crate) fn targets(cfg: &Config) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let live_base = cfg.live.api_base();
    let mut add = |key: &'static str, model: &str, api_base: &str| {
        let model = model.trim();
        if !model.is_empty() && !out.iter().any(|t| t.model == model && t.api_base == api_base) {
            out.push(Target { key, model: model.to_owned(), api_base: api_base.to_owned() });
        }
    };
    add("live.model", &cfg.live.model, &live_base);
    add("live.transcription_model", &cfg.live.transcription_model, &live_base);
    // Dictation on the local whisper.cpp engine never calls the API's model.
    if cfg.dictate.engine != crate::config::DictateEngine::Local {
        add("dictate.model", &cfg.dictate.model, cfg.dictate.api_base.trim_end_matches('/'));
    }
    out
}

pub(crate) struct Lifecycle {
    /// The config as written (before replacements), to re-decide when the date changes.
    written: Config,
    choices: Vec<Choice>,
    targets: Vec<Target>,
    reports: Vec<Report>,
    tx: Sender<Vec<Report>>,
    /// The loop selects on this.
    pub(crate) rx: Receiver<Vec<Report>>,
    next_check: Option<Instant>,
    checking: bool,
    checked_on: Option<Date>,
    last_skip: Option<String>,
}

impl Lifecycle {
    /// From the config as written (not yet [`effective`]); logs a warning per retired model. The first
    /// check is due at once.
    pub(crate) fn new(cfg: &Config, today: Date, now: Instant) -> Lifecycle {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let mut l = Lifecycle {
            written: cfg.clone(),
            choices: Vec::new(),
            targets: Vec::new(),
            reports: Vec::new(),
            tx,
            rx,
            next_check: None,
            checking: false,
            checked_on: None,
            last_skip: None,
        };
        l.set_config(cfg, today, now);
        l
    }

    /// A (re)loaded config: new notices, and a check soon.
    pub(crate) fn set_config(&mut self, cfg: &Config, today: Date, now: Instant) {
        self.written = cfg.clone();
        let (used, choices) = effective(cfg, today);
        for w in choices.iter().filter_map(Choice::warning) {
            log::warn!("{w}");
        }
        self.choices = choices;
        self.targets = targets(&used);
        self.reports.retain(|r| self.targets.iter().any(|t| t.model == r.model));
        self.next_check = Some(now);
    }

    /// Re-decides the models for `today` (a daemon running across a shutdown date): the effective config
    /// when a model changed, to hand to the subsystems.
    pub(crate) fn refresh(&mut self, today: Date) -> Option<Config> {
        let (used, choices) = effective(&self.written, today);
        if choices == self.choices {
            return None;
        }
        for w in choices.iter().filter_map(Choice::warning) {
            log::warn!("{w}");
        }
        self.choices = choices;
        self.targets = targets(&used);
        Some(used)
    }

    /// When the next check is due (none while one runs).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.checking { None } else { self.next_check }
    }

    /// Starts the check when it is due. `key` is the API key, or why there is none (then the check is
    /// skipped until the next deadline).
    pub(crate) fn poll(&mut self, now: Instant, today: Date, key: Result<String, String>) {
        if self.checking || self.next_check.is_none_or(|t| now < t) {
            return;
        }
        self.next_check = now.checked_add(CHECK_EVERY);
        if std::env::var("PTT_MODEL_CHECK").is_ok_and(|v| v == "off") {
            self.last_skip = Some("turned off (PTT_MODEL_CHECK=off)".into());
            return;
        }
        let key = match key {
            Ok(k) => k,
            Err(why) => {
                log::debug!("model check skipped: {why}");
                self.last_skip = Some(why);
                return;
            }
        };
        match check::spawn(self.targets.clone(), key, today, self.tx.clone()) {
            Ok(()) => {
                self.checking = true;
                self.last_skip = None;
            }
            Err(e) => log::warn!("cannot start the model check thread: {e}"),
        }
    }

    /// The check's reports: problems go to the journal.
    pub(crate) fn on_reports(&mut self, reports: Vec<Report>, today: Date) {
        self.checking = false;
        self.checked_on = Some(today);
        for r in &reports {
            match r.problem() {
                Some(p) if r.is_error() => log::error!("{p}"),
                Some(p) => log::warn!("{p}"),
                None => {
                    if let check::Outcome::Unknown { reason } = &r.outcome {
                        log::debug!("model check of {} = {}: {reason}", r.key, r.model);
                    }
                }
            }
        }
        self.reports = reports;
    }

    /// Warning lines (retired models in the config, shutdowns the API announced) for status and doctor.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.choices.iter().filter_map(Choice::warning).collect();
        out.extend(self.reports.iter().filter(|r| !r.is_error()).filter_map(Report::problem));
        out
    }

    /// Error lines (models the API says are gone).
    pub(crate) fn errors(&self) -> Vec<String> {
        self.reports.iter().filter(|r| r.is_error()).filter_map(Report::problem).collect()
    }

    /// The `models` section of `ptt status --json`.
    pub(crate) fn status(&self) -> ModelsStatus {
        ModelsStatus {
            used: self
                .choices
                .iter()
                .map(|c| UsedModel { key: c.key.into(), configured: c.configured.clone(), model: c.model.clone() })
                .collect(),
            warnings: self.warnings(),
            errors: self.errors(),
            checked: self
                .reports
                .iter()
                .map(|r| CheckedModel { key: r.key.to_string(), model: r.model.clone(), state: r.state().into() })
                .collect(),
            checked_on: self.checked_on.map(|d| d.to_string()),
            check_skipped: self.last_skip.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::check::Outcome;

    fn old_config() -> Config {
        let mut c = Config::default();
        c.live.model = "gpt-realtime".into();
        c.live.transcription_model = "gpt-4o-mini-transcribe".into();
        c.dictate.model = "whisper-1".into();
        c
    }

    #[test]
    fn yesterdays_config_is_warned_then_replaced() {
        let cfg = old_config();
        let (used, chosen) = effective(&cfg, Date::new(2026, 12, 7));
        assert_eq!((used.live.model.as_str(), used.dictate.model.as_str()), ("gpt-realtime", "whisper-1"));
        assert_eq!(chosen.iter().filter(|c| c.warning().is_some()).count(), 3);
        let (used, _) = effective(&cfg, Date::new(2027, 1, 20));
        assert_eq!(used.live.model, "gpt-realtime-2.1", "live replaced on its date");
        assert_eq!(used.dictate.model, "whisper-1", "dictation has until 2027-02-26");
        let (used, _) = effective(&cfg, Date::new(2027, 2, 26));
        assert_eq!(
            (used.live.transcription_model.as_str(), used.dictate.model.as_str()),
            ("gpt-transcribe", "gpt-transcribe")
        );
        let (used, chosen) = effective(&Config::default(), Date::new(2027, 6, 1));
        assert_eq!(used, Config::default());
        assert!(chosen.iter().all(|c| c.warning().is_none()), "no config: every default is current");
    }

    #[test]
    fn targets_derive_the_live_api_base_and_skip_duplicates() {
        let mut cfg = Config::default();
        cfg.live.url = "ws://127.0.0.1:4321/v1/realtime".into();
        cfg.dictate.api_base = "http://127.0.0.1:9/v1/".into();
        let t = targets(&cfg);
        let got: Vec<(&str, &str, &str)> = t.iter().map(|t| (t.key, t.model.as_str(), t.api_base.as_str())).collect();
        assert_eq!(
            got,
            [
                ("live.model", "gpt-realtime-2.1", "http://127.0.0.1:4321/v1"),
                ("live.transcription_model", "gpt-transcribe", "http://127.0.0.1:4321/v1"),
                ("dictate.model", "gpt-transcribe", "http://127.0.0.1:9/v1"),
            ]
        );
        cfg.dictate.api_base = "http://127.0.0.1:4321/v1".into();
        assert_eq!(targets(&cfg).len(), 2, "the same model at the same API once");
    }

    #[test]
    fn checks_are_daily_deadlines_and_reports_reach_status() {
        let t0 = Instant::now();
        let today = Date::new(2026, 12, 21);
        let mut l = Lifecycle::new(&old_config(), today, t0);
        assert_eq!(l.next_deadline(), Some(t0));
        // No key: skipped, the next try a day later.
        l.poll(t0, today, Err("no OpenAI API key".into()));
        assert_eq!(l.next_deadline(), Some(t0 + CHECK_EVERY));
        assert_eq!(l.status().check_skipped.as_deref(), Some("no OpenAI API key"));
        assert_eq!(l.warnings().len(), 3, "the retired models, from the table");
        l.on_reports(
            vec![
                Report {
                    key: "live.model",
                    model: "gpt-realtime".into(),
                    outcome: Outcome::ShutdownSoon { shutdown: Date::new(2027, 1, 20), days: 30 },
                },
                Report {
                    key: "dictate.model",
                    model: "whisper-1".into(),
                    outcome: Outcome::NotFound { message: "HTTP 404".into() },
                },
            ],
            today,
        );
        let s = l.status();
        assert_eq!(s.warnings.len(), 4);
        assert!(s.errors[0].contains("whisper-1") && s.errors[0].contains("gpt-transcribe"), "{s:?}");
        assert_eq!(s.checked_on.as_deref(), Some("2026-12-21"));
        assert_eq!(s.used[0].model, "gpt-realtime");
        // The daemon is still running on the shutdown day: the live model switches.
        assert!(l.refresh(today).is_none());
        let used = l.refresh(Date::new(2027, 1, 20)).expect("changed");
        assert_eq!(used.live.model, "gpt-realtime-2.1");
        assert!(l.refresh(Date::new(2027, 1, 21)).is_none());
    }
}
