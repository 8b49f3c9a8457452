//! Keys from the kernel's evdev devices (`/dev/input/event*`): for Wayland sessions and the console, where no
//! X server will tell us about keys.
//!
//! Why by hand and not the `evdev` crate: all we need is to read 24-byte `struct input_event` records and look
//! at three fields. The parsing is a pure [`Decoder`] tested on recorded bytes (this machine has no
//! `/dev/input`), and the device search takes its directories as arguments ([`Roots`]) so that it is tested on
//! a fake `/sys` and `/dev` tree, down to a reader thread reading a FIFO.
//!
//! We only listen: devices are not grabbed (`EVIOCGRAB`), so the keys still reach the compositor and the
//! focused window. Reading needs read permission on the device nodes, which on most distributions means
//! being in the `input` group; [`detect`] says so in plain words when that is what is missing.
//!
//! New keyboards (hotplug, Bluetooth) are noticed by an inotify watch on `/dev/input` (a node created, or its
//! permissions changed by udev's ACLs), so an idle reader sleeps in `poll` until a key or a device comes; only
//! where the watch cannot be set does it fall back to a rescan every [`RESCAN`].
//!
//! The record layout is the 64-bit one: `struct timeval` (two 8-byte fields), `u16 type`, `u16 code`,
//! `i32 value`, native endian.

use crate::hotkey::bindings::Key;
use crate::hotkey::machine::KeyState;
use crate::hotkey::{KeyEvent, Source, SourceEvent};
use crossbeam_channel::Sender;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::Inotify;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Size of one `struct input_event` on 64-bit Linux.
pub(crate) const RECORD_SIZE: usize = 24;
pub(crate) const EV_SYN: u16 = 0;
pub(crate) const EV_KEY: u16 = 1;
#[cfg(test)]
pub(crate) const SYN_REPORT: u16 = 0;
/// The kernel's buffer overflowed and events were lost: key state must be resynchronised.
pub(crate) const SYN_DROPPED: u16 = 3;
/// How often the reader looks for keyboards that appeared (hotplug, Bluetooth) when it cannot watch the
/// directory.
pub(crate) const RESCAN: Duration = Duration::from_secs(2);

/// One `struct input_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputEvent {
    pub(crate) sec: i64,
    pub(crate) usec: i64,
    pub(crate) kind: u16,
    pub(crate) code: u16,
    pub(crate) value: i32,
}

/// What a record means to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    Key(Key, KeyState),
    /// `SYN_DROPPED`: events were lost, the key state is unknown.
    Dropped,
}

impl InputEvent {
    pub(crate) fn from_bytes(b: &[u8; RECORD_SIZE]) -> Self {
        let i64_at =
            |o: usize| i64::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]]);
        InputEvent {
            sec: i64_at(0),
            usec: i64_at(8),
            kind: u16::from_ne_bytes([b[16], b[17]]),
            code: u16::from_ne_bytes([b[18], b[19]]),
            value: i32::from_ne_bytes([b[20], b[21], b[22], b[23]]),
        }
    }

    #[cfg(test)]
    pub(crate) fn to_bytes(self) -> [u8; RECORD_SIZE] {
        let mut b = [0u8; RECORD_SIZE];
        b[0..8].copy_from_slice(&self.sec.to_ne_bytes());
        b[8..16].copy_from_slice(&self.usec.to_ne_bytes());
        b[16..18].copy_from_slice(&self.kind.to_ne_bytes());
        b[18..20].copy_from_slice(&self.code.to_ne_bytes());
        b[20..24].copy_from_slice(&self.value.to_ne_bytes());
        b
    }

    /// Key edges of keys in our vocabulary (auto-repeat, value 2, is reported as a press) and lost events.
    /// Everything else (`SYN_REPORT`, `EV_MSC` scan codes, LEDs, unknown keys) is `None`.
    pub(crate) fn record(&self) -> Option<Record> {
        match (self.kind, self.code, self.value) {
            (EV_SYN, SYN_DROPPED, _) => Some(Record::Dropped),
            (EV_KEY, code, 0) => key_from_code(code).map(|k| Record::Key(k, KeyState::Released)),
            (EV_KEY, code, 1 | 2) => key_from_code(code).map(|k| Record::Key(k, KeyState::Pressed)),
            _ => None,
        }
    }

    fn micros(&self) -> i128 {
        i128::from(self.sec) * 1_000_000 + i128::from(self.usec)
    }
}

/// Turns a byte stream into records, carrying a partial record over to the next read.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    partial: Vec<u8>,
}

impl Decoder {
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<InputEvent> {
        self.partial.extend_from_slice(bytes);
        let whole = self.partial.len() / RECORD_SIZE * RECORD_SIZE;
        let events = self.partial[..whole]
            .chunks_exact(RECORD_SIZE)
            .filter_map(|c| <&[u8; RECORD_SIZE]>::try_from(c).ok())
            .map(InputEvent::from_bytes)
            .collect();
        self.partial.drain(..whole);
        events
    }

    #[cfg(test)]
    /// Bytes of an incomplete record waiting for the rest.
    pub(crate) fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// Linux key codes (`linux/input-event-codes.h`) of our vocabulary.
const CODES: [(u16, Key); 58] = [
    (29, Key::LeftCtrl),
    (97, Key::RightCtrl),
    (42, Key::LeftShift),
    (54, Key::RightShift),
    (56, Key::LeftAlt),
    (100, Key::RightAlt),
    (125, Key::LeftSuper),
    (126, Key::RightSuper),
    (1, Key::Escape),
    (57, Key::Space),
    (59, Key::F1),
    (60, Key::F2),
    (61, Key::F3),
    (62, Key::F4),
    (63, Key::F5),
    (64, Key::F6),
    (65, Key::F7),
    (66, Key::F8),
    (67, Key::F9),
    (68, Key::F10),
    (87, Key::F11),
    (88, Key::F12),
    (30, Key::A),
    (48, Key::B),
    (46, Key::C),
    (32, Key::D),
    (18, Key::E),
    (33, Key::F),
    (34, Key::G),
    (35, Key::H),
    (23, Key::I),
    (36, Key::J),
    (37, Key::K),
    (38, Key::L),
    (50, Key::M),
    (49, Key::N),
    (24, Key::O),
    (25, Key::P),
    (16, Key::Q),
    (19, Key::R),
    (31, Key::S),
    (20, Key::T),
    (22, Key::U),
    (47, Key::V),
    (17, Key::W),
    (45, Key::X),
    (21, Key::Y),
    (44, Key::Z),
    (11, Key::Digit0),
    (2, Key::Digit1),
    (3, Key::Digit2),
    (4, Key::Digit3),
    (5, Key::Digit4),
    (6, Key::Digit5),
    (7, Key::Digit6),
    (8, Key::Digit7),
    (9, Key::Digit8),
    (10, Key::Digit9),
];

pub(crate) fn key_from_code(code: u16) -> Option<Key> {
    CODES.iter().find(|(c, _)| *c == code).map(|(_, k)| *k)
}

pub(crate) fn code_of(key: Key) -> u16 {
    CODES.iter().find(|(_, k)| *k == key).map_or(0, |(c, _)| *c)
}

/// Parses a `capabilities/key` bitmap as sysfs prints it: hex words of `unsigned long`, most significant
/// first. Returns the words least significant first, or `None` if it is not such a bitmap.
pub(crate) fn parse_caps(text: &str) -> Option<Vec<u64>> {
    let words: Result<Vec<u64>, _> = text.split_whitespace().rev().map(|w| u64::from_str_radix(w, 16)).collect();
    words.ok().filter(|w| !w.is_empty())
}

pub(crate) fn caps_have(words: &[u64], code: u16) -> bool {
    words.get(usize::from(code / 64)).is_some_and(|w| w & (1u64 << (code % 64)) != 0)
}

/// Where to look: the real ones are `/sys/class/input` and `/dev/input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Roots {
    pub(crate) sys_class_input: PathBuf,
    pub(crate) dev_input: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots { sys_class_input: PathBuf::from("/sys/class/input"), dev_input: PathBuf::from("/dev/input") }
    }
}

/// An event device that can report at least one of the keys we watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub(crate) path: PathBuf,
    /// The kernel's name for it ("AT Translated Set 2 keyboard"), or empty.
    pub(crate) name: String,
}

#[derive(Debug)]
pub(crate) enum EvdevError {
    /// No `/dev/input` at all (a container, or no input devices).
    NoDevInput(PathBuf),
    /// Devices exist but none has any of the keys we watch.
    NoKeyboard(PathBuf),
    /// Every keyboard device refused to open for lack of permission.
    PermissionDenied(Vec<PathBuf>),
    /// Opening failed for another reason.
    Open(Vec<(PathBuf, io::Error)>),
    Io(PathBuf, io::Error),
}

impl fmt::Display for EvdevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvdevError::NoDevInput(p) => write!(f, "{} does not exist: no input devices are visible here", p.display()),
            EvdevError::NoKeyboard(p) => {
                write!(f, "no keyboard in {}: no event device reports the bound keys", p.display())
            }
            EvdevError::PermissionDenied(paths) => {
                let first = paths.first().map(|p| p.display().to_string()).unwrap_or_default();
                let more = if paths.len() > 1 { format!(" (and {} more)", paths.len() - 1) } else { String::new() };
                write!(
                    f,
                    "permission denied on {first}{more}: add yourself to the input group \
                     (`sudo usermod -aG input $USER`, then log out and back in)"
                )
            }
            EvdevError::Open(errs) => {
                let parts: Vec<String> = errs.iter().map(|(p, e)| format!("{}: {e}", p.display())).collect();
                write!(f, "cannot open keyboard devices: {}", parts.join("; "))
            }
            EvdevError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for EvdevError {}

/// Finds event devices that report any of `wanted`, from the capability bitmaps in `sys_class_input`. A
/// device whose capabilities cannot be read is kept (opening it is the real test); if the sysfs directory
/// is missing, every `event*` node in `dev_input` is a candidate.
pub(crate) fn find_devices(roots: &Roots, wanted: &[Key]) -> Result<Vec<Device>, EvdevError> {
    let dev = &roots.dev_input;
    if !dev.is_dir() {
        return Err(EvdevError::NoDevInput(dev.clone()));
    }
    let nodes = event_names(dev).map_err(|e| EvdevError::Io(dev.clone(), e))?;
    let mut found = Vec::new();
    for name in nodes {
        let sys = roots.sys_class_input.join(&name).join("device");
        let caps = std::fs::read_to_string(sys.join("capabilities/key")).ok().and_then(|t| parse_caps(&t));
        let usable = match caps {
            Some(words) => wanted.iter().any(|k| caps_have(&words, code_of(*k))),
            None => true,
        };
        if usable {
            let label = std::fs::read_to_string(sys.join("name")).map(|s| s.trim().to_string()).unwrap_or_default();
            found.push(Device { path: dev.join(&name), name: label });
        }
    }
    Ok(found)
}

/// `event0`, `event1`, … in `dir`, in numeric order.
fn event_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<(u32, String)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("event").and_then(|d| d.parse().ok()).map(|d: u32| (d, n.clone())))
        .collect();
    names.sort();
    Ok(names.into_iter().map(|(_, n)| n).collect())
}

fn open_device(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(path)
}

/// Sums up an attempt to open the devices: usable if one opened; "permission denied" (with the group hint)
/// only when that is why every one of them failed.
pub(crate) fn summarize(opened: usize, failures: Vec<(PathBuf, io::Error)>, dev: &Path) -> Result<usize, EvdevError> {
    if opened > 0 {
        return Ok(opened);
    }
    if failures.is_empty() {
        return Err(EvdevError::NoKeyboard(dev.to_path_buf()));
    }
    if failures.iter().all(|(_, e)| e.kind() == io::ErrorKind::PermissionDenied) {
        return Err(EvdevError::PermissionDenied(failures.into_iter().map(|(p, _)| p).collect()));
    }
    Err(EvdevError::Open(failures))
}

/// Whether evdev can be used: the keyboards that report `wanted` and open for reading.
pub(crate) fn detect(roots: &Roots, wanted: &[Key]) -> Result<Vec<Device>, EvdevError> {
    let devices = find_devices(roots, wanted)?;
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for d in devices {
        match open_device(&d.path) {
            Ok(_) => ok.push(d),
            Err(e) => failures.push((d.path, e)),
        }
    }
    summarize(ok.len(), failures, &roots.dev_input)?;
    Ok(ok)
}

/// Starts the reader thread (`hotkey-evdev`). It fails at once (and sends nothing) if no keyboard opens;
/// after that it runs until the receiver is dropped: it reports key edges, a [`SourceEvent::Reset`] when
/// events were lost or a device went away, and picks up keyboards that appear, every `rescan`.
pub(crate) fn spawn(
    roots: Roots,
    wanted: Vec<Key>,
    rescan: Duration,
    tx: Sender<SourceEvent>,
) -> Result<JoinHandle<()>, EvdevError> {
    let mut reader = Reader { roots, wanted, open: Vec::new() };
    // The watch before the first scan: a keyboard appearing in between is not missed.
    let watch = reader.watch();
    let (opened, failures) = reader.scan();
    for (p, e) in &failures {
        log::warn!("evdev: cannot open {}: {e}", p.display());
    }
    summarize(opened, failures, &reader.roots.dev_input)?;
    std::thread::Builder::new()
        .name("hotkey-evdev".into())
        .spawn(move || reader.run(watch, rescan, &tx))
        .map_err(|e| EvdevError::Io(PathBuf::from("hotkey-evdev thread"), e))
}

struct Open {
    path: PathBuf,
    file: File,
    decoder: Decoder,
}

struct Reader {
    roots: Roots,
    wanted: Vec<Key>,
    open: Vec<Open>,
}

impl Reader {
    /// Opens keyboards not open yet. Returns how many are open and what failed.
    fn scan(&mut self) -> (usize, Vec<(PathBuf, io::Error)>) {
        let mut failures = Vec::new();
        let devices = match find_devices(&self.roots, &self.wanted) {
            Ok(d) => d,
            Err(e) => {
                log::debug!("evdev: {e}");
                Vec::new()
            }
        };
        let known: BTreeSet<PathBuf> = self.open.iter().map(|o| o.path.clone()).collect();
        for d in devices.into_iter().filter(|d| !known.contains(&d.path)) {
            match open_device(&d.path) {
                Ok(file) => {
                    log::info!("evdev: listening on {} ({})", d.path.display(), d.name);
                    self.open.push(Open { path: d.path, file, decoder: Decoder::default() });
                }
                Err(e) => failures.push((d.path, e)),
            }
        }
        (self.open.len(), failures)
    }

    /// An inotify watch on the device directory: a node appearing or changing permissions wakes the reader.
    fn watch(&self) -> Option<Inotify> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags};
        let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC);
        let added = watch.as_ref().map_err(|e| *e).and_then(|w| {
            w.add_watch(
                &self.roots.dev_input,
                AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ATTRIB | AddWatchFlags::IN_MOVED_TO,
            )
        });
        match added {
            Ok(_) => watch.ok(),
            Err(e) => {
                log::debug!("evdev: cannot watch {} ({e}); rescanning it periodically", self.roots.dev_input.display());
                None
            }
        }
    }

    fn run(mut self, watch: Option<Inotify>, rescan: Duration, tx: &Sender<SourceEvent>) {
        let mut last_scan = Instant::now();
        let mut buf = [0u8; RECORD_SIZE * 64];
        loop {
            // With the watch, nothing but a key or a new device wakes the thread.
            let timeout = match watch {
                Some(_) => PollTimeout::NONE,
                None => PollTimeout::try_from(rescan.saturating_sub(last_scan.elapsed())).unwrap_or(PollTimeout::MAX),
            };
            let (ready, changed): (Vec<bool>, bool) = {
                let mut fds: Vec<PollFd> =
                    self.open.iter().map(|o| PollFd::new(o.file.as_fd(), PollFlags::POLLIN)).collect();
                if let Some(w) = &watch {
                    fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {
                        let ready: Vec<bool> = fds.iter().map(|p| p.any().unwrap_or(false)).collect();
                        let changed = watch.is_some() && ready.last().copied().unwrap_or(false);
                        (ready, changed)
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        let _ = tx.send(SourceEvent::Stopped { source: Source::Evdev, error: format!("poll: {e}") });
                        return;
                    }
                }
            };
            let mut gone = Vec::new();
            for (i, o) in self.open.iter_mut().enumerate().filter(|(i, _)| ready[*i]) {
                let now = Instant::now();
                let events = match (&o.file).read(&mut buf) {
                    Ok(0) => {
                        gone.push((i, "end of file".to_string()));
                        continue;
                    }
                    Ok(n) => o.decoder.feed(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                        continue;
                    }
                    Err(e) => {
                        gone.push((i, e.to_string()));
                        continue;
                    }
                };
                for msg in messages(&events, now) {
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
            }
            for (i, why) in gone.into_iter().rev() {
                let o = self.open.remove(i);
                log::warn!("evdev: {} went away: {why}", o.path.display());
                let reason = format!("{} went away: {why}", o.path.display());
                if tx.send(SourceEvent::Reset { source: Source::Evdev, reason }).is_err() {
                    return;
                }
            }
            if let (Some(w), true) = (&watch, changed) {
                // Drain the directory's events; what they name is found by the scan.
                while w.read_events().is_ok_and(|events| !events.is_empty()) {}
            }
            if changed || (watch.is_none() && last_scan.elapsed() >= rescan) {
                let (_, failures) = self.scan();
                for (p, e) in failures {
                    log::debug!("evdev: cannot open {}: {e}", p.display());
                }
                last_scan = Instant::now();
            }
        }
    }
}

/// The messages for one read's worth of records, read at `now`. Each key edge is stamped with `now` minus
/// how much older its kernel timestamp is than the batch's newest (at most 1 s), so a bounce inside one
/// batch keeps its real spacing.
pub(crate) fn messages(events: &[InputEvent], now: Instant) -> Vec<SourceEvent> {
    let newest = events.iter().map(InputEvent::micros).max().unwrap_or(0);
    events
        .iter()
        .filter_map(|e| {
            let age = u64::try_from((newest - e.micros()).clamp(0, 1_000_000)).unwrap_or(0);
            let at = now.checked_sub(Duration::from_micros(age)).unwrap_or(now);
            match e.record()? {
                Record::Key(key, state) => Some(SourceEvent::Key(KeyEvent { key, state, at })),
                Record::Dropped => {
                    Some(SourceEvent::Reset { source: Source::Evdev, reason: "kernel dropped input events".into() })
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rec(usec: i64, kind: u16, code: u16, value: i32) -> InputEvent {
        InputEvent { sec: 1_700_000_000, usec, kind, code, value }
    }

    /// What a keyboard sends for one key edge: MSC_SCAN, the key, SYN_REPORT.
    fn edge(usec: i64, code: u16, value: i32) -> Vec<InputEvent> {
        vec![rec(usec, 4, 4, 0x700e4), rec(usec, EV_KEY, code, value), rec(usec, EV_SYN, SYN_REPORT, 0)]
    }

    fn bytes(events: &[InputEvent]) -> Vec<u8> {
        events.iter().flat_map(|e| e.to_bytes()).collect()
    }

    fn records(events: &[InputEvent]) -> Vec<Record> {
        events.iter().filter_map(InputEvent::record).collect()
    }

    #[test]
    fn layout_is_the_64_bit_struct() {
        // Right Ctrl pressed at 1700000000.000123, written out field by field (little endian here).
        let mut raw = Vec::new();
        raw.extend_from_slice(&1_700_000_000i64.to_ne_bytes());
        raw.extend_from_slice(&123i64.to_ne_bytes());
        raw.extend_from_slice(&1u16.to_ne_bytes());
        raw.extend_from_slice(&97u16.to_ne_bytes());
        raw.extend_from_slice(&1i32.to_ne_bytes());
        assert_eq!(raw.len(), RECORD_SIZE);
        let mut d = Decoder::default();
        let evs = d.feed(&raw);
        assert_eq!(evs, vec![rec(123, EV_KEY, 97, 1)]);
        assert_eq!(evs[0].to_bytes().to_vec(), raw);
        assert_eq!(records(&evs), vec![Record::Key(Key::RightCtrl, KeyState::Pressed)]);
    }

    #[test]
    fn a_recorded_hold_with_autorepeat_decodes() {
        let mut evs = edge(0, 97, 1);
        evs.extend(edge(500_000, 97, 2));
        evs.extend(edge(533_000, 97, 2));
        evs.extend(edge(600_000, 97, 0));
        let mut d = Decoder::default();
        let got = d.feed(&bytes(&evs));
        assert_eq!(got.len(), 12);
        use KeyState::{Pressed, Released};
        assert_eq!(
            records(&got),
            vec![
                Record::Key(Key::RightCtrl, Pressed),
                Record::Key(Key::RightCtrl, Pressed),
                Record::Key(Key::RightCtrl, Pressed),
                Record::Key(Key::RightCtrl, Released),
            ]
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn records_split_across_reads_at_every_boundary() {
        let mut evs = edge(0, 54, 1);
        evs.extend(edge(10, 97, 1));
        evs.extend(edge(20, 1, 1));
        let raw = bytes(&evs);
        for cut in 0..=raw.len() {
            for second in cut..=raw.len() {
                let mut d = Decoder::default();
                let mut got = d.feed(&raw[..cut]);
                got.extend(d.feed(&raw[cut..second]));
                got.extend(d.feed(&raw[second..]));
                assert_eq!(got, evs, "cuts at {cut} and {second}");
                assert_eq!(d.pending(), 0);
            }
        }
        let mut d = Decoder::default();
        assert!(d.feed(&raw[..30]).len() == 1 && d.pending() == 6);
    }

    #[test]
    fn syn_dropped_other_types_and_unknown_codes() {
        let evs = vec![
            rec(0, EV_SYN, SYN_REPORT, 0),
            rec(0, EV_SYN, SYN_DROPPED, 0),
            rec(0, 4, 4, 0x700e4),  // EV_MSC scan code
            rec(0, 17, 1, 1),       // EV_LED caps lock
            rec(0, EV_KEY, 272, 1), // BTN_LEFT: not in our vocabulary
            rec(0, EV_KEY, 97, 7),  // not a key value
            rec(0, EV_KEY, 1, 0),   // escape up
        ];
        assert_eq!(records(&evs), vec![Record::Dropped, Record::Key(Key::Escape, KeyState::Released)]);
    }

    #[test]
    fn code_table_covers_the_vocabulary() {
        for k in Key::all() {
            let c = code_of(k);
            assert_ne!(c, 0, "{k} has no code");
            assert_eq!(key_from_code(c), Some(k));
        }
        assert_eq!(key_from_code(97), Some(Key::RightCtrl));
        assert_eq!(key_from_code(54), Some(Key::RightShift));
        assert_eq!(key_from_code(29), Some(Key::LeftCtrl));
        assert_eq!(key_from_code(1), Some(Key::Escape));
        assert_eq!(key_from_code(88), Some(Key::F12));
        assert_eq!(key_from_code(0), None);
    }

    #[test]
    fn messages_keep_spacing_inside_a_batch() {
        let mut evs = edge(0, 97, 1);
        evs.extend(edge(20_000, 97, 0));
        evs.extend(edge(25_000, 97, 1));
        evs.push(rec(25_000, EV_SYN, SYN_DROPPED, 0));
        let now = Instant::now() + Duration::from_secs(5);
        let msgs = messages(&evs, now);
        let ats: Vec<Duration> = msgs
            .iter()
            .filter_map(|m| match m {
                SourceEvent::Key(k) => Some(now.duration_since(k.at)),
                _ => None,
            })
            .collect();
        assert_eq!(ats, vec![Duration::from_millis(25), Duration::from_millis(5), Duration::ZERO]);
        assert!(matches!(msgs.last(), Some(SourceEvent::Reset { source: Source::Evdev, .. })));
    }

    #[test]
    fn capability_bitmaps() {
        // A laptop keyboard, a power button, a mouse, as sysfs prints them.
        let kbd = parse_caps("120013 803078f800d001 feffffdfffefffff fffffffffffffffe\n");
        let Some(kbd) = kbd else { panic!("keyboard caps") };
        for k in [Key::RightCtrl, Key::RightShift, Key::Escape, Key::A, Key::F12] {
            assert!(caps_have(&kbd, code_of(k)), "{k}");
        }
        let power = parse_caps("10000000000000 0").unwrap_or_default();
        assert!(caps_have(&power, 116) && !caps_have(&power, 97) && !caps_have(&power, 1));
        let mouse = parse_caps("1f0000 0 0 0 0").unwrap_or_default();
        assert!(caps_have(&mouse, 272) && !caps_have(&mouse, 97));
        assert!(!caps_have(&mouse, 9999), "beyond the bitmap");
        assert_eq!(parse_caps(""), None);
        assert_eq!(parse_caps("zz"), None);
    }

    /// A fake `/sys/class/input` + `/dev/input` tree.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Self {
            Tree { dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")) }
        }

        fn roots(&self) -> Roots {
            Roots { sys_class_input: self.dir.path().join("sys"), dev_input: self.dir.path().join("dev") }
        }

        fn sys(&self, event: &str, name: &str, caps: Option<&str>) {
            let d = self.roots().sys_class_input.join(event).join("device");
            std::fs::create_dir_all(d.join("capabilities")).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(d.join("name"), format!("{name}\n")).unwrap_or_else(|e| panic!("{e}"));
            if let Some(c) = caps {
                std::fs::write(d.join("capabilities/key"), format!("{c}\n")).unwrap_or_else(|e| panic!("{e}"));
            }
        }

        fn node(&self, event: &str) -> PathBuf {
            let dev = self.roots().dev_input;
            std::fs::create_dir_all(&dev).unwrap_or_else(|e| panic!("{e}"));
            let p = dev.join(event);
            std::fs::write(&p, b"").unwrap_or_else(|e| panic!("{e}"));
            p
        }
    }

    const KBD: &str = "120013 803078f800d001 feffffdfffefffff fffffffffffffffe";

    #[test]
    fn finds_keyboards_by_capability() {
        let t = Tree::new();
        t.sys("event0", "Power Button", Some("10000000000000 0"));
        t.sys("event2", "AT Translated Set 2 keyboard", Some(KBD));
        t.sys("event3", "Mouse", Some("1f0000 0 0 0 0"));
        t.sys("event10", "Odd device", None);
        t.sys("event11", "Keyboard without node", Some(KBD));
        for e in ["event0", "event2", "event3", "event10", "mice", "js0"] {
            t.node(e);
        }
        let wanted = [Key::RightCtrl, Key::RightShift, Key::Escape];
        let found = find_devices(&t.roots(), &wanted).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<(String, String)> = found
            .iter()
            .map(|d| (d.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), d.name.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("event2".to_string(), "AT Translated Set 2 keyboard".to_string()),
                ("event10".to_string(), "Odd device".to_string()),
            ]
        );
        // Only F-keys wanted: the power button still does not qualify, the keyboard does.
        let found = find_devices(&t.roots(), &[Key::F12]).unwrap_or_default();
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn without_sysfs_every_event_node_is_a_candidate() {
        let t = Tree::new();
        t.node("event1");
        t.node("event0");
        let found = find_devices(&t.roots(), &[Key::RightCtrl]).unwrap_or_default();
        assert_eq!(found.len(), 2);
        assert!(found[0].path.ends_with("event0"));
        assert!(detect(&t.roots(), &[Key::RightCtrl]).is_ok_and(|d| d.len() == 2));
    }

    #[test]
    fn missing_dev_input_and_no_keyboard_are_explained() {
        let t = Tree::new();
        let e = detect(&t.roots(), &[Key::RightCtrl]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.ends_with("dev does not exist: no input devices are visible here"), "{e}");
        t.sys("event0", "Power Button", Some("10000000000000 0"));
        t.node("event0");
        let e = detect(&t.roots(), &[Key::RightCtrl]).err();
        assert!(matches!(e, Some(EvdevError::NoKeyboard(_))), "{e:?}");
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("no event device reports the bound keys"), "{msg}");
    }

    #[test]
    fn permission_denied_says_join_the_input_group() {
        let denied = |p: &str| (PathBuf::from(p), io::Error::from(io::ErrorKind::PermissionDenied));
        let dev = Path::new("/dev/input");
        let e = summarize(0, vec![denied("/dev/input/event2"), denied("/dev/input/event5")], dev);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "permission denied on /dev/input/event2 (and 1 more): add yourself to the input group \
             (`sudo usermod -aG input $USER`, then log out and back in)"
        );
        // One keyboard opened: usable, whatever happened to the others.
        assert!(summarize(1, vec![denied("/dev/input/event5")], dev).is_ok());
        // Mixed failures are not blamed on the group.
        let mixed =
            vec![denied("/dev/input/event2"), (PathBuf::from("/dev/input/event3"), io::Error::from_raw_os_error(19))];
        assert!(matches!(summarize(0, mixed, dev), Err(EvdevError::Open(_))));
    }

    #[test]
    fn a_keyboard_that_appears_is_picked_up_without_a_rescan() {
        let t = Tree::new();
        t.sys("event4", "First keyboard", Some(KBD));
        std::fs::create_dir_all(t.roots().dev_input).unwrap_or_else(|e| panic!("{e}"));
        let mode = nix::sys::stat::Mode::S_IRWXU;
        nix::unistd::mkfifo(&t.roots().dev_input.join("event4"), mode).unwrap_or_else(|e| panic!("mkfifo: {e}"));
        let (tx, rx) = crossbeam_channel::unbounded();
        // The periodic rescan is an hour away: only the directory watch can find the second keyboard.
        let _h = spawn(t.roots(), vec![Key::RightCtrl], Duration::from_secs(3600), tx)
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        // The second one is made elsewhere and opened read-write (so that it has a writer from the start: a
        // FIFO without one reads as ended), then moved in, as udev moves nodes in.
        t.sys("event7", "Plugged in later", Some(KBD));
        let staged = t.roots().dev_input.with_file_name("event7.new");
        nix::unistd::mkfifo(&staged, mode).unwrap_or_else(|e| panic!("mkfifo: {e}"));
        let mut w = OpenOptions::new().read(true).write(true).open(&staged).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&staged, t.roots().dev_input.join("event7")).unwrap_or_else(|e| panic!("{e}"));
        w.write_all(&bytes(&edge(0, 97, 1))).unwrap_or_else(|e| panic!("{e}"));
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(SourceEvent::Key(k)) => assert_eq!((k.key, k.state), (Key::RightCtrl, KeyState::Pressed)),
            other => panic!("expected the key from the new keyboard, got {other:?}"),
        }
    }

    #[test]
    fn reader_thread_reads_a_fifo_device() {
        let t = Tree::new();
        t.sys("event4", "Test keyboard", Some(KBD));
        std::fs::create_dir_all(t.roots().dev_input).unwrap_or_else(|e| panic!("{e}"));
        let fifo = t.roots().dev_input.join("event4");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap_or_else(|e| panic!("mkfifo: {e}"));
        let (tx, rx) = crossbeam_channel::unbounded();
        let wanted = vec![Key::RightCtrl, Key::RightShift];
        let _h = spawn(t.roots(), wanted, Duration::from_secs(3600), tx).unwrap_or_else(|e| panic!("spawn: {e}"));
        // Opening the write end blocks until the reader has the FIFO open.
        let mut w = OpenOptions::new().write(true).open(&fifo).unwrap_or_else(|e| panic!("{e}"));
        let mut evs = edge(0, 54, 1);
        evs.extend(edge(40_000, 97, 1));
        evs.extend(edge(900_000, 97, 2));
        let raw = bytes(&evs);
        // Half a record first: nothing may come out until the rest arrives.
        w.write_all(&raw[..30]).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(50));
        w.write_all(&raw[30..]).unwrap_or_else(|e| panic!("{e}"));
        w.write_all(&bytes(&[rec(950_000, EV_KEY, 97, 0)])).unwrap_or_else(|e| panic!("{e}"));
        drop(w);
        let mut got = Vec::new();
        while let Ok(m) = rx.recv_timeout(Duration::from_secs(5)) {
            let end = matches!(m, SourceEvent::Reset { .. });
            got.push(match m {
                SourceEvent::Key(k) => format!("{} {:?}", k.key, k.state),
                SourceEvent::Reset { .. } => "reset".to_string(),
                SourceEvent::Stopped { error, .. } => format!("stopped {error}"),
            });
            if end {
                break;
            }
        }
        assert_eq!(
            got,
            vec!["right_shift Pressed", "right_ctrl Pressed", "right_ctrl Pressed", "right_ctrl Released", "reset"]
        );
    }
}
