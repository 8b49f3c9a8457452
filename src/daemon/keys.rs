//! Hotkeys in the daemon: picking a source, feeding the binding machine, and
//! what each binding does.
//!
//! Key edges arrive from the X11 or evdev listener thread (or as `ptt key …`
//! requests on the control socket, for compositor bindings) and go through the
//! pure [`Machine`] (chords, debounce, a lost release never leaving a key
//! held). Its binding events are handled by the daemon loop.

use std::time::{Duration, Instant};

use crate::control::reply::HotkeysStatus;
use crossbeam_channel::Receiver;

use crate::config::{KeySource, KeysConfig};
use crate::hotkey::{Binding, BindingEvent, Bindings, Detection, Machine, Source, SourceEvent, Timing};

pub(crate) struct Hotkeys {
    pub(crate) machine: Machine,
    pub(crate) rx: Receiver<SourceEvent>,
    pub(crate) source: Source,
    /// Why each source is or is not usable (for status and doctor).
    pub(crate) report: Vec<String>,
    pub(crate) stopped: Option<String>,
}

impl Hotkeys {
    /// Detects the sources, starts the chosen listener thread (falling back to
    /// the control socket alone), and builds the machine.
    pub(crate) fn start(cfg: &KeysConfig) -> Hotkeys {
        let bindings = match Bindings::parse(&cfg.ptt, &cfg.live, &cfg.interrupt).and_then(|b| b.with_quiet(&cfg.quiet))
        {
            Ok(b) => b,
            Err(e) => {
                // The config was validated at load; this is only reachable with a changed default.
                log::error!("{e}; using the default bindings");
                Bindings::default()
            }
        };
        let timing = Timing {
            debounce: Duration::from_millis(cfg.debounce_ms),
            max_hold: Duration::from_secs(cfg.max_hold_s),
            ..Timing::default()
        };
        let (tx, rx) = crossbeam_channel::bounded(256);
        let detection: Option<Detection> = match cfg.source {
            KeySource::Socket => None,
            _ => Some(crate::hotkey::detect(&bindings.keys())),
        };
        let wanted = match (cfg.source, &detection) {
            (KeySource::Socket, _) => Source::Socket,
            (KeySource::X11, _) => Source::X11,
            (KeySource::Evdev, _) => Source::Evdev,
            (KeySource::Auto, Some(d)) => d.chosen,
            (KeySource::Auto, None) => Source::Socket,
        };
        let mut report = detection.as_ref().map(Detection::report).unwrap_or_else(|| {
            vec!["hotkeys: socket is active (keys.source = \"socket\": only `ptt key …` drives the bindings)".into()]
        });
        let source = match crate::hotkey::start(wanted, &bindings, tx) {
            Ok(_) => wanted,
            Err(e) => {
                log::warn!("hotkeys: cannot use {wanted}: {e}; only `ptt key …` will work");
                report.push(format!("hotkeys: {wanted} failed to start: {e}; falling back to the socket"));
                Source::Socket
            }
        };
        log::info!("hotkeys: {source}");
        Hotkeys { machine: Machine::new(&bindings, timing), rx, source, report, stopped: None }
    }

    /// Feeds a source event; returns the binding events it completes.
    pub(crate) fn on_source(&mut self, ev: SourceEvent) -> Vec<BindingEvent> {
        match ev {
            SourceEvent::Key(k) => self.machine.key(k.key, k.state, k.at),
            SourceEvent::Reset { source, reason } => {
                log::info!("hotkeys: {source} lost key state ({reason}); releasing everything");
                self.machine.reset()
            }
            SourceEvent::Stopped { source, error } => {
                log::warn!("hotkeys: the {source} listener stopped ({error}); only `ptt key …` works now");
                self.stopped = Some(format!("{source} listener stopped: {error}"));
                self.source = Source::Socket;
                self.machine.reset()
            }
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.machine.next_deadline()
    }

    pub(crate) fn status(&self) -> HotkeysStatus {
        HotkeysStatus {
            source: self.source.to_string(),
            report: self.report.clone(),
            stopped: self.stopped.clone(),
            // What the machine holds now, and whether an edge still waits out its debounce (tests wait for both).
            held: Binding::ALL.into_iter().filter(|b| self.machine.is_held(*b)).map(|b| b.name().to_string()).collect(),
            settling: self.machine.next_deadline().is_some(),
        }
    }
}
