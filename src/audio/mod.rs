//! Audio in and out: the microphone, the speaker, sound cues, and what `ptt doctor` says about them.
//!
//! The shape follows the daemon's rule that threads own I/O handles and report facts:
//!
//! - [`capture::Capture`] owns the input stream on its own thread (`audio-in`). The stream is read by a
//!   loop of ours on the ALSA PCM (`alsa_in`, thread `alsa-in`; cpal's own worker busy-polls behind the
//!   pulse plugin, see [`capture`]); its callback converts whatever the device delivers to 24 kHz mono PCM16
//!   ([`resample`]), cuts it into 20 ms chunks ([`chunker`]) and `try_send`s them on a bounded channel: the
//!   callback never blocks, a full channel is a counted drop. The stream stays open between turns
//!   (`audio.keep_open`) and an atomic gate decides what is forwarded, with a 300 ms pre-roll so the first
//!   word is not lost.
//! - [`playback::Playback`] owns the output stream (`audio-out`). The loop pushes 24 kHz PCM16; a small
//!   jitter buffer starts playing once 60 ms are queued; [`playback::Playback::flush`] drops everything at
//!   once (barge-in); atomics count what was really handed to the device, underruns and backend errors. The
//!   stream is paused after half a second with nothing to play and resumed by the next push.
//! - [`cues`] synthesizes the five cues as 24 kHz PCM16, played through the same path.
//!
//! Degrading well: no sound server, no device, a device that vanishes — none of these is an error for the
//! daemon. Opening fails with an [`AudioError`] whose text says why ("no audio device: is
//! PulseAudio/PipeWire running? cpal said: …"), the failure is reported as an [`AudioEvent`], the actor's
//! [`DeviceState`] shows it for `ptt status`, and the next use (gate opened, audio pushed) tries again with a
//! fresh cpal host, so a sound server started later is picked up. Nothing here panics on a device result.
//!
//! Device names: `audio.input` / `audio.output` match a cpal device by id (the ALSA PCM name: `default`,
//! `pulse`, `hw:CARD=…`) or by description, exactly or as a unique substring. With PulseAudio or PipeWire
//! the ALSA `default` device follows the sound server's default source/sink; to pick another server-side
//! device set `PULSE_SOURCE` / `PULSE_SINK` in the daemon's environment.
//!
//! libasound prints its own diagnostics ("ALSA lib confmisc.c:855:(parse_card) cannot find card '0'", a dozen
//! lines per device probe on a machine without a sound card) straight to stderr. Everything it can tell us also
//! comes back as an error code that cpal turns into an [`AudioError`], so [`silence_alsa_errors`] replaces the
//! printer with one that drops the text (and counts the calls), and the device list shows only devices a user
//! would pick ([`is_real_device`]), not ALSA's plugin pseudo-devices.

mod alsa_in;
pub mod analysis;
pub(crate) mod capture;
pub(crate) mod chunker;
pub mod cues;
mod health;
pub(crate) mod playback;
pub mod resample;

use cpal::traits::{DeviceTrait, HostTrait};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

pub use capture::{Capture, CaptureConfig, Captured};
pub use chunker::CHUNK_SAMPLES;
pub use playback::{Playback, PlaybackConfig};

/// The `[audio]` section of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioConfig {
    /// Input device by name; `None` is the default device.
    pub input: Option<String>,
    /// Output device by name; `None` is the default device.
    pub output: Option<String>,
    /// Keep the streams open between turns (no lost first word, no open latency).
    pub keep_open: bool,
    /// 0.0-1.0.
    pub cue_volume: f32,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self { input: None, output: None, keep_open: true, cue_volume: 0.6 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// Why audio is unavailable. The `Display` text is meant for `ptt status` and `ptt doctor` as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioError {
    /// No sound server or no device (cpal's `DeviceNotAvailable`, `HostUnavailable`, no default device).
    NoDevice(String),
    /// The configured device name matches no device (or several).
    NotFound { direction: Direction, wanted: String, available: Vec<String> },
    /// The device is held by another program.
    Busy(String),
    /// The device offers nothing we can convert (format, rate, channels).
    Unsupported(String),
    /// Anything else the backend said.
    Backend(String),
}

impl AudioError {
    pub(crate) fn from_cpal(e: &cpal::Error) -> Self {
        use cpal::ErrorKind as K;
        match e.kind() {
            // The pulse plugin fails `snd_pcm_open` with "Connection refused" when the server is gone: a
            // backend error while opening is a missing device as far as the user is concerned.
            K::DeviceNotAvailable | K::HostUnavailable | K::StreamInvalidated | K::BackendError => {
                AudioError::NoDevice(e.to_string())
            }
            K::DeviceBusy => AudioError::Busy(e.to_string()),
            K::UnsupportedConfig | K::UnsupportedOperation | K::InvalidInput => AudioError::Unsupported(e.to_string()),
            _ => AudioError::Backend(e.to_string()),
        }
    }
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::NoDevice(m) => write!(f, "no audio device: is PulseAudio/PipeWire running? cpal said: {m}"),
            AudioError::NotFound { direction, wanted, available } => {
                write!(f, "no {direction} device matches {wanted:?} (available: {})", available.join(", "))
            }
            AudioError::Busy(m) => write!(f, "audio device busy (another program holds it): {m}"),
            AudioError::Unsupported(m) => write!(f, "audio device unusable: {m}"),
            AudioError::Backend(m) => write!(f, "audio backend error: {m}"),
        }
    }
}

impl std::error::Error for AudioError {}

/// What an opened stream runs at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The cpal device id (ALSA PCM name).
    pub(crate) device: String,
    /// Its description.
    pub(crate) name: String,
    pub(crate) rate: u32,
    pub(crate) channels: u16,
    pub(crate) format: String,
    /// The period asked for (`None`: the backend's default).
    pub(crate) period_frames: Option<u32>,
}

impl fmt::Display for StreamInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}), {} Hz, {} ch, {}", self.device, self.name, self.rate, self.channels, self.format)?;
        if let Some(p) = self.period_frames {
            write!(f, ", period {p} frames")?;
        }
        Ok(())
    }
}

/// The state of one direction, for `ptt status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeviceState {
    #[default]
    Closed,
    Opening,
    Open(StreamInfo),
    /// Opening failed or the device went away; the next use tries again.
    Unavailable(String),
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceState::Closed => f.write_str("closed"),
            DeviceState::Opening => f.write_str("opening"),
            DeviceState::Open(info) => write!(f, "open: {info}"),
            DeviceState::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// Facts the audio threads report to the daemon's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioEvent {
    Opened {
        direction: Direction,
        info: StreamInfo,
    },
    /// Opening failed: voice is off in this direction until the next use.
    Unavailable {
        direction: Direction,
        error: AudioError,
    },
    /// An open stream died (device unplugged, sound server gone).
    Lost {
        direction: Direction,
        reason: String,
    },
    /// Playback ran out of audio after [`Playback::finish`] or an underrun: the floor may be free.
    PlaybackIdle,
}

/// libasound's error printer, as it calls it: `(file, line, function, err, fmt, ...)`.
type AlsaErrorHandler = unsafe extern "C" fn(
    *const std::ffi::c_char,
    std::ffi::c_int,
    *const std::ffi::c_char,
    std::ffi::c_int,
    *const std::ffi::c_char,
    ...
);

unsafe extern "C" {
    // In libasound, which alsa-sys already links.
    fn snd_lib_error_set_handler(handler: Option<AlsaErrorHandler>) -> std::ffi::c_int;
}

/// Our printer: reads none of its arguments, so it needs none of the variadic ones.
unsafe extern "C" fn drop_alsa_diagnostic(
    _file: *const std::ffi::c_char,
    _line: std::ffi::c_int,
    _function: *const std::ffi::c_char,
    _err: std::ffi::c_int,
    _fmt: *const std::ffi::c_char,
) {
}

/// Stops libasound from printing to stderr, for the whole process (every thread). Call once at start-up, before
/// any device is touched; later calls do nothing.
pub(crate) fn silence_alsa_errors() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Stable Rust cannot define a variadic function, so the handler is a fixed-argument one called through
        // the variadic pointer type libasound declares. On x86-64 (System V) and AArch64 Linux the fixed
        // arguments of a variadic call are passed exactly as those of a plain call (the extra ones go to
        // registers and stack slots the callee never reads; x86-64's %al count is ignored by a non-variadic
        // callee), which is what Python's well-known ctypes recipe for the same handler relies on. Elsewhere
        // the printer is left alone.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            let fixed: unsafe extern "C" fn(
                *const std::ffi::c_char,
                std::ffi::c_int,
                *const std::ffi::c_char,
                std::ffi::c_int,
                *const std::ffi::c_char,
            ) = drop_alsa_diagnostic;
            // SAFETY: see above: same fixed-argument layout, and the callee reads no variadic argument.
            let handler: AlsaErrorHandler = unsafe { std::mem::transmute(fixed) };
            // SAFETY: the handler is a plain function that lives as long as the program.
            unsafe {
                snd_lib_error_set_handler(Some(handler));
            }
        }
    });
}

/// Whether an ALSA device id names something a user would pick: the `default` device, the sound servers
/// (`pulse`, `pipewire`), and sound cards (`hw:`, `plughw:`, `sysdefault:` with a card). ALSA's plugin pseudo-devices (`null`, `lavrate`,
/// `speexrate`, `upmix`, `oss`, `jack`, ...) and per-card variants (`front:`, `surround51:`, `dmix:`, ...) are
/// not shown; they still work when named in `audio.input` / `audio.output`.
pub(crate) fn is_real_device(id: &str) -> bool {
    matches!(id, "default" | "pulse" | "pipewire")
        || ["hw:CARD=", "plughw:CARD=", "sysdefault:CARD="].iter().any(|p| id.starts_with(p))
}

/// One device as cpal lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub id: String,
    pub(crate) name: String,
    pub(crate) input: bool,
    pub(crate) output: bool,
}

/// A fresh cpal host. Fresh on purpose: the ALSA configuration (which decides whether `default` goes to
/// PulseAudio) is read when the first host is created, so a daemon that keeps one host forever would never
/// see a sound server started after it.
pub(crate) fn host() -> Result<cpal::Host, AudioError> {
    cpal::host_from_id(cpal::HostId::Alsa).map_err(|e| AudioError::NoDevice(e.to_string()))
}

/// Every device of the host, with the directions it claims.
pub(crate) fn list_devices() -> Result<Vec<DeviceEntry>, AudioError> {
    let host = host()?;
    let devices = host.devices().map_err(|e| AudioError::from_cpal(&e))?;
    Ok(devices.filter_map(|d| entry(&d)).collect())
}

fn entry(d: &cpal::Device) -> Option<DeviceEntry> {
    let id = d.id().ok()?.id().to_string();
    let name = d.description().map(|desc| desc.name().to_string()).unwrap_or_else(|_| id.clone());
    Some(DeviceEntry { id, name, input: d.supports_input(), output: d.supports_output() })
}

/// Finds the device for `wanted` (by id or description, exact first, then a unique substring), or the
/// default device.
pub(crate) fn find_device(
    host: &cpal::Host,
    wanted: Option<&str>,
    direction: Direction,
) -> Result<cpal::Device, AudioError> {
    let Some(wanted) = wanted.map(str::trim).filter(|w| !w.is_empty()) else {
        let device = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return device.ok_or_else(|| AudioError::NoDevice(format!("no default {direction} device")));
    };
    let devices = host.devices().map_err(|e| AudioError::from_cpal(&e))?;
    let candidates: Vec<(DeviceEntry, cpal::Device)> = devices
        .filter_map(|d| entry(&d).map(|e| (e, d)))
        .filter(|(e, _)| match direction {
            Direction::Input => e.input,
            Direction::Output => e.output,
        })
        .collect();
    let entries: Vec<DeviceEntry> = candidates.iter().map(|(e, _)| e.clone()).collect();
    let pick = pick_device(&entries, wanted);
    match pick {
        Some(i) => candidates
            .into_iter()
            .nth(i)
            .map(|(_, d)| d)
            .ok_or_else(|| AudioError::Backend("device list changed".into())),
        None => Err(AudioError::NotFound {
            direction,
            wanted: wanted.to_string(),
            available: entries.iter().map(|e| e.id.clone()).collect(),
        }),
    }
}

/// The index of the device `wanted` names: exact id, `alsa:<id>`, or exact description (case-insensitive),
/// else the only one whose id or description contains it.
pub(crate) fn pick_device(entries: &[DeviceEntry], wanted: &str) -> Option<usize> {
    let w = wanted.to_lowercase();
    let w = w.strip_prefix("alsa:").unwrap_or(&w);
    if let Some(i) = entries.iter().position(|e| e.id.to_lowercase() == w) {
        return Some(i);
    }
    if let Some(i) = entries.iter().position(|e| e.name.to_lowercase() == w) {
        return Some(i);
    }
    let partial: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.id.to_lowercase().contains(w) || e.name.to_lowercase().contains(w))
        .map(|(i, _)| i)
        .collect();
    match partial.as_slice() {
        [only] => Some(*only),
        _ => None,
    }
}

/// What `ptt doctor` shows: the device list and whether each direction really opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub devices: Result<Vec<DeviceEntry>, AudioError>,
    pub input: Result<StreamInfo, AudioError>,
    pub output: Result<StreamInfo, AudioError>,
}

impl Report {
    pub fn voice_available(&self) -> bool {
        self.input.is_ok() && self.output.is_ok()
    }

    /// Why voice is off, if it is.
    pub fn reason(&self) -> Option<String> {
        match (&self.input, &self.output) {
            (Ok(_), Ok(_)) => None,
            (Err(a), Err(b)) if a == b => Some(a.to_string()),
            (Err(a), Err(b)) => Some(format!("input: {a}; output: {b}")),
            (Err(a), Ok(_)) => Some(format!("input: {a}")),
            (Ok(_), Err(b)) => Some(format!("output: {b}")),
        }
    }

    /// Human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, r) in [("input", &self.input), ("output", &self.output)] {
            out.push(match r {
                Ok(info) => format!("audio {what}: ok: {info}"),
                Err(e) => format!("audio {what}: {e}"),
            });
        }
        match &self.devices {
            Ok(list) => {
                let hidden = list.iter().filter(|d| !is_real_device(&d.id)).count();
                for d in list.iter().filter(|d| is_real_device(&d.id)) {
                    let dirs = match (d.input, d.output) {
                        (true, true) => "in/out",
                        (true, false) => "in",
                        (false, true) => "out",
                        (false, false) => "-",
                    };
                    out.push(format!("  device {} [{dirs}]: {}", d.id, d.name));
                }
                if hidden > 0 {
                    out.push(format!("  ({hidden} ALSA plugin pseudo-device(s) not shown)"));
                }
            }
            Err(e) => out.push(format!("  devices: {e}")),
        }
        out
    }
}

/// Opens (builds, does not start) an input and an output stream on the configured devices and closes them
/// again. Blocking for as long as the backend takes (milliseconds with a sound server): call it from the
/// doctor command or a worker thread, not from the daemon's loop.
pub fn probe(cfg: &AudioConfig) -> Report {
    Report {
        devices: list_devices(),
        input: capture::probe(cfg.input.as_deref()),
        output: playback::probe(cfg.output.as_deref()),
    }
}

/// The stream configurations to try, best first: the wanted period (fixed buffer of two periods), then the
/// backend's default.
pub(crate) fn stream_configs(
    supported: &cpal::SupportedStreamConfig,
    period: std::time::Duration,
) -> Vec<(cpal::StreamConfig, Option<u32>)> {
    let base = supported.config();
    let frames = ((u64::from(supported.sample_rate()) * period.as_millis() as u64 / 1000) as u32).max(16);
    let fits = match supported.buffer_size() {
        cpal::SupportedBufferSize::Range { min, max } => (*min..=*max).contains(&frames),
        cpal::SupportedBufferSize::Unknown => true,
    };
    let mut out = Vec::new();
    if fits {
        out.push((cpal::StreamConfig { buffer_size: cpal::BufferSize::Fixed(frames), ..base }, Some(frames)));
    }
    out.push((cpal::StreamConfig { buffer_size: cpal::BufferSize::Default, ..base }, None));
    out
}

/// Describes a device for [`StreamInfo`].
pub(crate) fn describe(device: &cpal::Device) -> (String, String) {
    let id = device.id().map(|i| i.id().to_string()).unwrap_or_else(|_| "?".into());
    let name = device.description().map(|d| d.name().to_string()).unwrap_or_else(|_| id.clone());
    (id, name)
}

/// Drops a stream whose device died on a short-lived thread of its own: closing a PCM whose sound server
/// vanished can block inside the ALSA plugin, and the audio thread must stay responsive.
pub(crate) fn drop_detached<S: Send + 'static>(stream: S) {
    let spawned = std::thread::Builder::new().name("audio-drop".into()).spawn(move || drop(stream));
    if let Err(e) = spawned {
        log::warn!("could not spawn a thread to close a dead stream ({e}); it was closed inline");
    }
}

/// A stream whose data callback has not run for this long while its error callback keeps firing is dead
/// (the ALSA pulse plugin spins on EIO after the server went away).
pub(crate) const ERROR_STALL_MS: u64 = 500;

/// Locks a mutex whatever a panicking holder left behind: the data here (queues, counters, strings) stays
/// usable, and audio must not take the daemon down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, name: &str) -> DeviceEntry {
        DeviceEntry { id: id.into(), name: name.into(), input: true, output: true }
    }

    #[test]
    fn device_names_match_exactly_then_uniquely() {
        let list = [
            e("default", "Playback/recording through the PulseAudio sound server"),
            e("pulse", "PulseAudio Sound Server"),
            e("hw:CARD=USB,DEV=0", "USB Headset, USB Audio"),
        ];
        assert_eq!(pick_device(&list, "pulse"), Some(1));
        assert_eq!(pick_device(&list, "alsa:default"), Some(0));
        assert_eq!(pick_device(&list, "usb headset"), Some(2));
        assert_eq!(pick_device(&list, "PulseAudio"), None, "ambiguous");
        assert_eq!(pick_device(&list, "nope"), None);
    }

    #[test]
    fn only_devices_a_user_would_pick_are_listed() {
        let ids = ["default", "pulse", "pipewire", "hw:CARD=USB,DEV=0", "sysdefault:CARD=PCH", "null", "lavrate"];
        let ids2 = ["speexrate", "jack", "oss", "upmix", "vdownmix", "front:CARD=PCH,DEV=0", "dmix:CARD=PCH"];
        let real: Vec<&str> = ids.iter().chain(&ids2).copied().filter(|id| is_real_device(id)).collect();
        assert_eq!(real, ["default", "pulse", "pipewire", "hw:CARD=USB,DEV=0", "sysdefault:CARD=PCH"]);
        let r = Report {
            devices: Ok(vec![e("default", "Default"), e("null", "Discard all samples"), e("oss", "OSS")]),
            input: Err(AudioError::NoDevice("none".into())),
            output: Err(AudioError::NoDevice("none".into())),
        };
        let lines = r.lines();
        assert!(lines.iter().any(|l| l.contains("device default")), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("null") || l.contains("OSS")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("2 ALSA plugin pseudo-device(s) not shown")), "{lines:?}");
    }

    #[test]
    fn reasons_are_readable() {
        let no = AudioError::NoDevice("DeviceNotAvailable".into());
        assert!(no.to_string().starts_with("no audio device: is PulseAudio/PipeWire running? cpal said: "));
        let r = Report { devices: Ok(vec![]), input: Err(no.clone()), output: Err(no.clone()) };
        assert_eq!(r.reason(), Some(no.to_string()));
        assert!(!r.voice_available());
        let nf = AudioError::NotFound {
            direction: Direction::Input,
            wanted: "usb".into(),
            available: vec!["default".into()],
        };
        assert_eq!(nf.to_string(), "no input device matches \"usb\" (available: default)");
    }
}
