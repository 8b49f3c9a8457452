//! Key names and the bindings (`keys.ptt`, `keys.live`, `keys.interrupt`, and the optional `keys.quiet`) parsed
//! from config strings.
//!
//! A binding is a chord: one or more keys that must all be down, written `right_shift+right_ctrl`. Order in
//! the string does not matter and neither does the order in which the keys go down. The vocabulary is small on
//! purpose: it is the set of keys that both sources (X11 through rdev, and evdev) can name without ambiguity
//! and that make sense as a hotkey (modifiers, escape, space, F-keys, letters, digits). A typo is an error
//! that lists the known names, never a silent fallback to the default: a push-to-talk key that does nothing
//! is worse than a daemon that refuses to start.
//!
//! Which binding wins when chords overlap (the default `live` chord contains the `ptt` key) is the
//! [machine](crate::hotkey::machine)'s business; here two bindings may overlap but may not be the same chord.

use std::fmt;

/// A key the bindings can name. Left and right modifiers are distinct keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    LeftCtrl,
    RightCtrl,
    LeftShift,
    RightShift,
    LeftAlt,
    RightAlt,
    LeftSuper,
    RightSuper,
    Escape,
    Space,
    F1,
    F2,
    F3,
    F4,
    F5,
    F6,
    F7,
    F8,
    F9,
    F10,
    F11,
    F12,
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
    N,
    O,
    P,
    Q,
    R,
    S,
    T,
    U,
    V,
    W,
    X,
    Y,
    Z,
    Digit0,
    Digit1,
    Digit2,
    Digit3,
    Digit4,
    Digit5,
    Digit6,
    Digit7,
    Digit8,
    Digit9,
}

/// Canonical names, as written in config and printed in messages.
const NAMES: [(&str, Key); 58] = [
    ("left_ctrl", Key::LeftCtrl),
    ("right_ctrl", Key::RightCtrl),
    ("left_shift", Key::LeftShift),
    ("right_shift", Key::RightShift),
    ("left_alt", Key::LeftAlt),
    ("right_alt", Key::RightAlt),
    ("left_super", Key::LeftSuper),
    ("right_super", Key::RightSuper),
    ("escape", Key::Escape),
    ("space", Key::Space),
    ("f1", Key::F1),
    ("f2", Key::F2),
    ("f3", Key::F3),
    ("f4", Key::F4),
    ("f5", Key::F5),
    ("f6", Key::F6),
    ("f7", Key::F7),
    ("f8", Key::F8),
    ("f9", Key::F9),
    ("f10", Key::F10),
    ("f11", Key::F11),
    ("f12", Key::F12),
    ("a", Key::A),
    ("b", Key::B),
    ("c", Key::C),
    ("d", Key::D),
    ("e", Key::E),
    ("f", Key::F),
    ("g", Key::G),
    ("h", Key::H),
    ("i", Key::I),
    ("j", Key::J),
    ("k", Key::K),
    ("l", Key::L),
    ("m", Key::M),
    ("n", Key::N),
    ("o", Key::O),
    ("p", Key::P),
    ("q", Key::Q),
    ("r", Key::R),
    ("s", Key::S),
    ("t", Key::T),
    ("u", Key::U),
    ("v", Key::V),
    ("w", Key::W),
    ("x", Key::X),
    ("y", Key::Y),
    ("z", Key::Z),
    ("0", Key::Digit0),
    ("1", Key::Digit1),
    ("2", Key::Digit2),
    ("3", Key::Digit3),
    ("4", Key::Digit4),
    ("5", Key::Digit5),
    ("6", Key::Digit6),
    ("7", Key::Digit7),
    ("8", Key::Digit8),
    ("9", Key::Digit9),
];

/// Other spellings people write; never printed.
const ALIASES: [(&str, Key); 16] = [
    ("esc", Key::Escape),
    ("ctrl_r", Key::RightCtrl),
    ("ctrl_l", Key::LeftCtrl),
    ("shift_r", Key::RightShift),
    ("shift_l", Key::LeftShift),
    ("alt_r", Key::RightAlt),
    ("alt_l", Key::LeftAlt),
    ("super_r", Key::RightSuper),
    ("super_l", Key::LeftSuper),
    ("right_control", Key::RightCtrl),
    ("left_control", Key::LeftCtrl),
    ("altgr", Key::RightAlt),
    ("right_meta", Key::RightSuper),
    ("left_meta", Key::LeftSuper),
    ("right_win", Key::RightSuper),
    ("left_win", Key::LeftSuper),
];

impl Key {
    #[cfg(test)]
    /// Every key of the vocabulary, in the order of the docs.
    pub(crate) fn all() -> impl Iterator<Item = Key> {
        NAMES.iter().map(|(_, k)| *k)
    }

    /// The canonical config name (`right_ctrl`).
    pub(crate) fn name(self) -> &'static str {
        NAMES.iter().find(|(_, k)| *k == self).map_or("?", |(n, _)| n)
    }

    /// Parses one key name: case-insensitive, `-` and `_` alike, a few aliases (`esc`, `ctrl_r`, `altgr`).
    pub(crate) fn from_name(name: &str) -> Option<Key> {
        let norm = name.trim().to_ascii_lowercase().replace('-', "_");
        NAMES.iter().chain(ALIASES.iter()).find(|(n, _)| *n == norm).map(|(_, k)| *k)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The things a key can do (named as in `ptt key toggle live`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    /// `keys.ptt`: hold to dictate (or to speak in a `live.turn = "ptt"` session).
    Ptt,
    /// `keys.live`: toggle the live session.
    Live,
    /// `keys.interrupt`: barge in. Only meaningful while the assistant speaks; that condition is the daemon's.
    Interrupt,
    /// `keys.quiet`: toggle quiet mode (nothing is spoken; results wait). Unbound unless configured.
    Quiet,
}

impl Binding {
    pub(crate) const ALL: [Binding; 4] = [Binding::Ptt, Binding::Live, Binding::Interrupt, Binding::Quiet];

    /// The config key it is read from.
    pub(crate) fn config_key(self) -> &'static str {
        match self {
            Binding::Ptt => "keys.ptt",
            Binding::Live => "keys.live",
            Binding::Interrupt => "keys.interrupt",
            Binding::Quiet => "keys.quiet",
        }
    }

    /// The short name used by the control socket (`ptt key press ptt`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Binding::Ptt => "ptt",
            Binding::Live => "live",
            Binding::Interrupt => "interrupt",
            Binding::Quiet => "quiet",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Binding> {
        Binding::ALL.into_iter().find(|b| b.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The default spec string.
    pub(crate) fn default_spec(self) -> &'static str {
        match self {
            Binding::Ptt => "right_ctrl",
            Binding::Live => "right_shift+right_ctrl",
            Binding::Interrupt => "escape",
            // Unbound: `ptt key toggle quiet` (a compositor binding) or a voice command.
            Binding::Quiet => "",
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most keys a chord may have.
pub(crate) const MAX_CHORD: usize = 4;

/// A set of keys that must all be down. Sorted and without duplicates, never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Chord(Vec<Key>);

impl Chord {
    /// Parses `right_shift+right_ctrl`. `config_key` only names the setting in errors.
    pub(crate) fn parse(spec: &str, config_key: &str) -> Result<Chord, BindingError> {
        let err = |kind| BindingError { config_key: config_key.to_string(), spec: spec.to_string(), kind };
        if spec.trim().is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        let mut keys = Vec::new();
        for part in spec.split('+') {
            if part.trim().is_empty() {
                return Err(err(ErrorKind::EmptyPart));
            }
            let key = Key::from_name(part).ok_or_else(|| err(ErrorKind::UnknownKey(part.trim().to_string())))?;
            if keys.contains(&key) {
                return Err(err(ErrorKind::Repeated(key)));
            }
            keys.push(key);
        }
        if keys.len() > MAX_CHORD {
            return Err(err(ErrorKind::TooMany(keys.len())));
        }
        keys.sort();
        Ok(Chord(keys))
    }

    /// One key alone.
    pub(crate) fn single(key: Key) -> Chord {
        Chord(vec![key])
    }

    pub(crate) fn keys(&self) -> &[Key] {
        &self.0
    }

    pub(crate) fn contains(&self, key: Key) -> bool {
        self.0.contains(&key)
    }

    /// True when every key of `self` is in `other` and `other` has more.
    pub(crate) fn is_strict_subset_of(&self, other: &Chord) -> bool {
        self.0.len() < other.0.len() && self.0.iter().all(|k| other.contains(*k))
    }
}

impl fmt::Display for Chord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            f.write_str(k.name())?;
        }
        Ok(())
    }
}

/// The bindings, validated together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bindings {
    pub(crate) ptt: Chord,
    pub(crate) live: Chord,
    pub(crate) interrupt: Chord,
    /// `keys.quiet`, when configured.
    pub(crate) quiet: Option<Chord>,
}

impl Default for Bindings {
    fn default() -> Self {
        let parse = |b: Binding| Chord::parse(b.default_spec(), b.config_key());
        match (parse(Binding::Ptt), parse(Binding::Live), parse(Binding::Interrupt)) {
            (Ok(ptt), Ok(live), Ok(interrupt)) => Bindings { ptt, live, interrupt, quiet: None },
            // The defaults are constants covered by a test; this arm is unreachable in practice.
            _ => Bindings {
                ptt: Chord::single(Key::RightCtrl),
                live: Chord(vec![Key::RightCtrl, Key::RightShift]),
                interrupt: Chord::single(Key::Escape),
                quiet: None,
            },
        }
    }
}

impl Bindings {
    /// Parses the three config strings (`keys.ptt`, `keys.live`, `keys.interrupt`). Two bindings may share
    /// keys (the default live chord contains the ptt key) but may not be the same chord.
    pub(crate) fn parse(ptt: &str, live: &str, interrupt: &str) -> Result<Bindings, BindingError> {
        let b = Bindings {
            ptt: Chord::parse(ptt, Binding::Ptt.config_key())?,
            live: Chord::parse(live, Binding::Live.config_key())?,
            interrupt: Chord::parse(interrupt, Binding::Interrupt.config_key())?,
            quiet: None,
        };
        b.check_distinct()
    }

    /// Adds `keys.quiet` (empty: unbound).
    pub(crate) fn with_quiet(mut self, quiet: &str) -> Result<Bindings, BindingError> {
        self.quiet =
            if quiet.trim().is_empty() { None } else { Some(Chord::parse(quiet, Binding::Quiet.config_key())?) };
        self.check_distinct()
    }

    fn check_distinct(self) -> Result<Bindings, BindingError> {
        for (i, x) in Binding::ALL.into_iter().enumerate() {
            for y in Binding::ALL.into_iter().skip(i + 1) {
                if let (Some(a), Some(b)) = (self.get(x), self.get(y))
                    && a == b
                {
                    return Err(BindingError {
                        config_key: y.config_key().to_string(),
                        spec: b.to_string(),
                        kind: ErrorKind::SameAs(x),
                    });
                }
            }
        }
        Ok(self)
    }

    /// A binding's chord; `None` for an optional binding left unbound.
    pub(crate) fn get(&self, binding: Binding) -> Option<&Chord> {
        match binding {
            Binding::Ptt => Some(&self.ptt),
            Binding::Live => Some(&self.live),
            Binding::Interrupt => Some(&self.interrupt),
            Binding::Quiet => self.quiet.as_ref(),
        }
    }

    /// Every key some binding uses, sorted, once each: what a source needs to watch.
    pub(crate) fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> =
            Binding::ALL.iter().filter_map(|b| self.get(*b)).flat_map(|c| c.keys().iter().copied()).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// A binding spec that cannot be used, with the setting it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindingError {
    pub(crate) config_key: String,
    pub(crate) spec: String,
    pub(crate) kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Empty,
    EmptyPart,
    UnknownKey(String),
    Repeated(Key),
    TooMany(usize),
    SameAs(Binding),
}

impl fmt::Display for BindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.config_key;
        match &self.kind {
            ErrorKind::Empty => write!(f, "{key} is empty; write a key name such as `right_ctrl`"),
            ErrorKind::EmptyPart => {
                write!(
                    f,
                    "{key} = `{}` has an empty part; write keys joined by `+`, e.g. `right_shift+right_ctrl`",
                    self.spec
                )
            }
            ErrorKind::UnknownKey(name) => {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                write!(f, "unknown key `{name}` in {key}; known: {}", known.join(", "))
            }
            ErrorKind::Repeated(k) => write!(f, "{key} = `{}` names `{k}` twice", self.spec),
            ErrorKind::TooMany(n) => write!(f, "{key} = `{}` has {n} keys; a chord has at most {MAX_CHORD}", self.spec),
            ErrorKind::SameAs(other) => {
                write!(
                    f,
                    "{key} = `{}` is the same chord as {}; each binding needs its own",
                    self.spec,
                    other.config_key()
                )
            }
        }
    }
}

impl std::error::Error for BindingError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_overlap() {
        let b = Bindings::default();
        assert_eq!(b.ptt.keys(), [Key::RightCtrl]);
        assert_eq!(b.live.keys(), [Key::RightCtrl, Key::RightShift]);
        assert_eq!(b.interrupt.keys(), [Key::Escape]);
        assert!(b.ptt.is_strict_subset_of(&b.live));
        assert!(!b.live.is_strict_subset_of(&b.ptt));
        assert!(!b.ptt.is_strict_subset_of(&b.ptt));
        assert_eq!(b.keys(), vec![Key::RightCtrl, Key::RightShift, Key::Escape]);
        let parsed = Bindings::parse(
            Binding::Ptt.default_spec(),
            Binding::Live.default_spec(),
            Binding::Interrupt.default_spec(),
        );
        assert_eq!(parsed, Ok(b));
    }

    #[test]
    fn chord_order_case_and_spacing_do_not_matter() {
        let a = Chord::parse("right_shift+right_ctrl", "keys.live");
        let b = Chord::parse(" Right-Ctrl + RIGHT_SHIFT ", "keys.live");
        assert_eq!(a, b);
        assert_eq!(a.map(|c| c.to_string()), Ok("right_ctrl+right_shift".to_string()));
    }

    #[test]
    fn every_name_round_trips() {
        assert_eq!(Key::all().count(), 58);
        for k in Key::all() {
            assert_eq!(Key::from_name(k.name()), Some(k), "{k}");
        }
        assert_eq!(Key::from_name("esc"), Some(Key::Escape));
        assert_eq!(Key::from_name("ctrl_r"), Some(Key::RightCtrl));
        assert_eq!(Key::from_name("AltGr"), Some(Key::RightAlt));
        assert_eq!(Key::from_name("F12"), Some(Key::F12));
        assert_eq!(Key::from_name("7"), Some(Key::Digit7));
        assert_eq!(Key::from_name("f13"), None);
        assert_eq!(Key::from_name(""), None);
    }

    #[test]
    fn unknown_key_names_the_setting_and_lists_known_keys() {
        let e = Bindings::parse("right_ctrl", "right_shift+rigth_ctrl", "escape").err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("unknown key `rigth_ctrl` in keys.live; known: left_ctrl, right_ctrl,"), "{msg}");
        assert!(msg.contains("escape") && msg.contains("f12") && msg.ends_with("9"), "{msg}");
    }

    #[test]
    fn malformed_specs_are_refused_with_reasons() {
        let kind = |s: &str| Chord::parse(s, "keys.ptt").map_err(|e| e.kind);
        assert_eq!(kind(""), Err(ErrorKind::Empty));
        assert_eq!(kind("  "), Err(ErrorKind::Empty));
        assert_eq!(kind("right_ctrl+"), Err(ErrorKind::EmptyPart));
        assert_eq!(kind("+a"), Err(ErrorKind::EmptyPart));
        assert_eq!(kind("a+A"), Err(ErrorKind::Repeated(Key::A)));
        assert_eq!(kind("a+b+c+d+e"), Err(ErrorKind::TooMany(5)));
        assert!(kind("a+b+c+d").is_ok());
        let msg = Chord::parse("a+a", "keys.ptt").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg, "keys.ptt = `a+a` names `a` twice");
    }

    #[test]
    fn two_bindings_may_not_be_the_same_chord() {
        let e = Bindings::parse("right_ctrl", "ctrl_r", "escape").err();
        assert_eq!(e.as_ref().map(|e| &e.kind), Some(&ErrorKind::SameAs(Binding::Ptt)));
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg, "keys.live = `right_ctrl` is the same chord as keys.ptt; each binding needs its own");
        assert!(Bindings::parse("f9", "f10", "f9").is_err());
        assert!(Bindings::parse("left_ctrl+space", "left_ctrl+space+left_shift", "escape").is_ok());
        let b = Bindings::default();
        assert_eq!(b.clone().with_quiet("").map(|b| b.quiet), Ok(None), "unbound by default");
        let q = b.clone().with_quiet("right_alt+q").expect("a quiet chord");
        assert_eq!(q.get(Binding::Quiet).map(|c| c.to_string()).as_deref(), Some("right_alt+q"));
        assert!(q.keys().contains(&Key::Q));
        let e = b.with_quiet("escape").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("keys.quiet = `escape` is the same chord as keys.interrupt; each binding needs its own")
        );
    }

    #[test]
    fn binding_names() {
        for b in Binding::ALL {
            assert_eq!(Binding::from_name(b.name()), Some(b));
        }
        assert_eq!(Binding::from_name(" LIVE "), Some(Binding::Live));
        assert_eq!(Binding::from_name("dictate"), None);
    }
}
