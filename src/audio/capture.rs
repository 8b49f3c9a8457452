//! The microphone: an input stream owned by the `audio-in` thread, 20 ms chunks out.
//!
//! Why it looks like this:
//! - **The callback never blocks.** The reader thread (`alsa_in`, thread `alsa-in`) calls it with each
//!   period; a stall there is an overrun and lost speech. It converts ([`ToApi`]), cuts 20 ms chunks
//!   ([`Chunker`]), stamps each with the time it was captured and `try_send`s it on a bounded channel to the
//!   `audio-in` thread; a full channel drops the chunk and counts it. Chunks are arrays moved by value: the steady state allocates nothing.
//! - **The gate lives on the `audio-in` thread, on a timeline.** Opening or closing the gate is a command
//!   stamped with the moment of the key press or release; [`Gate`] forwards the chunks captured between the
//!   two. So a key press sends the 300 ms pre-roll at once (the first word, begun just before the press,
//!   arrives whole, and the first frame is on its way within a millisecond), and a key release still
//!   delivers the audio captured before it that the device had not handed over yet, followed by
//!   [`Captured::TurnEnd`]: commit then, and the turn's tail is not cut.
//! - **Why that matters here:** the input asks for 100 ms periods (the ALSA pulse plugin grants 67 ms: it
//!   wants three periods in the two-period buffer asked for), so the device is read about 15 times a
//!   second, and the timeline gate keeps that from costing latency at the turn's edges: closing the gate
//!   also flushes the reader ([`AlsaInput::flush`]), so the audio up to the release comes at once, not with
//!   the period that completes it.
//! - **The stream is read by our own ALSA loop, not cpal's worker** (cpal still finds the device and its
//!   configuration). Through the pulse plugin, cpal's capture worker busy-polls whenever the plugin signals
//!   data but less than a period is readable: 20-30 % of a core with 10 ms periods; with 100 ms periods a
//!   5-12 ms spin a few times a second, 1.4-2.5 % of a core, and longer periods did not help (1.42, 1.38,
//!   1.27 % with 100, 200, 400 ms asked). `alsa_in` sleeps for the missing frames instead: that thread
//!   costs about 0.3 % (benchmark window, PulseAudio null sinks; the plugin's own `threaded-ml` thread
//!   another 0.8 %, unchanged).
//! - **The stream stays open between turns** (`audio.keep_open`, default on): opening a device through a
//!   sound server takes tens of milliseconds and its first buffers come late, which is where first words
//!   die. With `keep_open = false` the stream closes after each turn's `TurnEnd`.
//! - **The thread owns the stream and nothing else.** The loop's [`Capture`] handle never blocks: it posts
//!   commands. Opening happens on `audio-in` and its outcome comes back as an [`AudioEvent`]; so does a
//!   stream that dies (device gone, sound server gone, or no callback for 2 s). The next use opens again.
//! - **Backend errors are counted, not fatal.** Only "device not available" ends a stream.

use crate::audio::alsa_in::{self, AlsaInput};
use crate::audio::chunker::{CHUNK_MS, Chunk, Chunker};
use crate::audio::health::DeviceHealth;
use crate::audio::resample::{API_RATE, ToApi};
use crate::audio::{
    AudioError, AudioEvent, DeviceState, Direction, StreamInfo, describe, drop_detached, find_device, host,
    stream_configs,
};
use cpal::traits::DeviceTrait;
use cpal::{FromSample, SizedSample};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select, unbounded};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A stream that delivers no callback for this long is treated as lost.
const STALL: Duration = Duration::from_secs(2);
/// After a failed open, further requests within this time are ignored.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The input period asked of the device (see the module docs for why it is this long).
const INPUT_PERIOD: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// `audio.input`; `None` is the default device.
    pub(crate) device: Option<String>,
    /// `audio.keep_open`: when false, the stream closes after each turn.
    pub(crate) keep_open: bool,
    /// How much audio from before the gate opened is sent with it.
    pub(crate) preroll: Duration,
    /// Capacity of the output channel, in 20 ms chunks.
    pub(crate) queue_chunks: usize,
    /// After the gate closes, how long to wait for the audio captured before the close (a period and the
    /// device's latency) before ending the turn anyway.
    pub(crate) tail_grace: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            device: None,
            keep_open: true,
            preroll: Duration::from_millis(300),
            queue_chunks: 50,
            tail_grace: Duration::from_millis(300),
        }
    }
}

/// What comes out of the microphone.
// The chunk is inline on purpose: items move by value through a preallocated bounded channel, so the audio
// path never allocates; a boxed chunk would allocate 50 times a second.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured {
    /// 20 ms of 24 kHz mono PCM16.
    Chunk(Chunk),
    /// Everything captured before the gate closed has been sent: commit the turn now.
    TurnEnd,
}

/// Counters and state for `ptt status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureStats {
    pub(crate) state: DeviceState,
    pub(crate) gate_open: bool,
    /// Chunks forwarded to the loop.
    pub(crate) chunks_sent: u64,
    /// Chunks dropped because a channel was full (the callback's or the loop's).
    pub chunks_dropped: u64,
    /// Errors the backend reported (counted, not fatal).
    pub(crate) errors: u64,
    pub(crate) last_error: Option<String>,
}

/// The gate on a timeline: which chunks, by capture time, belong to a turn. Pure; driven by the
/// `audio-in` thread.
#[derive(Debug)]
pub(crate) struct Gate {
    preroll: Duration,
    grace: Duration,
    /// Recent chunks while closed, oldest first, with their capture (start) times.
    ring: VecDeque<(Instant, Chunk)>,
    state: GateState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateState {
    Closed,
    /// Forwarding; chunks captured before `since` only with pre-roll.
    Open {
        since: Instant,
        preroll: bool,
    },
    /// Closed at `at`: still forwarding chunks captured before it, until one after it arrives or the grace
    /// runs out.
    Closing {
        since: Instant,
        preroll: bool,
        at: Instant,
    },
}

impl Gate {
    pub(crate) fn new(preroll: Duration, grace: Duration) -> Self {
        Self { preroll, grace, ring: VecDeque::new(), state: GateState::Closed }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, GateState::Open { .. })
    }

    /// Opens at `at`. With `preroll`, the kept chunks captured within the pre-roll before `at` go out first.
    pub(crate) fn open(&mut self, at: Instant, preroll: bool, out: &mut impl FnMut(Captured)) {
        match self.state {
            GateState::Open { .. } => return,
            GateState::Closing { .. } => out(Captured::TurnEnd),
            GateState::Closed => {}
        }
        let from = at.checked_sub(self.preroll).unwrap_or(at);
        for (t, c) in self.ring.drain(..) {
            if preroll && t >= from {
                out(Captured::Chunk(c));
            }
        }
        self.state = GateState::Open { since: at, preroll };
    }

    /// Closes at `at`; the turn ends with the chunk that reaches `at` (or one captured after it), or at
    /// [`Gate::deadline`].
    pub(crate) fn close(&mut self, at: Instant) {
        if let GateState::Open { since, preroll } = self.state {
            self.state = GateState::Closing { since, preroll, at };
        }
    }

    /// One chunk, captured starting at `t`.
    pub(crate) fn on_chunk(&mut self, t: Instant, chunk: Chunk, out: &mut impl FnMut(Captured)) {
        match self.state {
            GateState::Closed => self.keep(t, chunk),
            GateState::Open { since, preroll } => {
                if t >= since || (preroll && t + self.preroll >= since) {
                    out(Captured::Chunk(chunk));
                }
            }
            GateState::Closing { since, preroll, at } => {
                if t >= at {
                    out(Captured::TurnEnd);
                    self.state = GateState::Closed;
                    self.keep(t, chunk);
                } else {
                    if t >= since || (preroll && t + self.preroll >= since) {
                        out(Captured::Chunk(chunk));
                    }
                    // This chunk reaches the close: the turn is whole, no need to wait for the next
                    // period's callback (up to 100 ms on a long-period input).
                    if t + Duration::from_millis(CHUNK_MS) >= at {
                        out(Captured::TurnEnd);
                        self.state = GateState::Closed;
                    }
                }
            }
        }
    }

    /// When the loop must call [`Gate::on_timeout`].
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            GateState::Closing { at, .. } => Some(at + self.grace),
            _ => None,
        }
    }

    pub(crate) fn on_timeout(&mut self, now: Instant, out: &mut impl FnMut(Captured)) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.end(out);
        }
    }

    /// No more audio will come (stream closed or lost): end a closing or open turn now.
    pub(crate) fn end(&mut self, out: &mut impl FnMut(Captured)) {
        if !matches!(self.state, GateState::Closed) {
            out(Captured::TurnEnd);
            self.state = GateState::Closed;
        }
    }

    fn keep(&mut self, t: Instant, chunk: Chunk) {
        let cap = (self.preroll.as_millis() as u64).div_ceil(CHUNK_MS) as usize;
        if cap == 0 {
            return;
        }
        while self.ring.len() >= cap {
            self.ring.pop_front();
        }
        self.ring.push_back((t, chunk));
    }
}

struct Shared {
    gate_open: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
    health: DeviceHealth,
}

impl Shared {
    fn new() -> Self {
        Self {
            gate_open: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            health: DeviceHealth::new(),
        }
    }
}

enum Cmd {
    Open,
    Close,
    Gate {
        open: bool,
        preroll: bool,
        at: Instant,
    },
    /// The stream of this generation reported that its device is gone.
    Lost(u64, String),
    Stop,
}

/// Handle to the `audio-in` thread. Dropping it stops the thread and closes the stream.
pub struct Capture {
    cmd: Sender<Cmd>,
    out: Receiver<Captured>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts the `audio-in` thread. Nothing is opened until [`Capture::open`] or [`Capture::set_gate`].
    pub fn spawn(cfg: CaptureConfig, events: Sender<AudioEvent>) -> std::io::Result<Capture> {
        let (out_tx, out) = bounded(cfg.queue_chunks.max(1));
        let (cmd, cmd_rx) = unbounded();
        let shared = Arc::new(Shared::new());
        let worker = Worker { cfg, shared: shared.clone(), out: out_tx, cmd_tx: cmd.clone(), events };
        let thread = std::thread::Builder::new().name("audio-in".into()).spawn(move || worker.run(cmd_rx))?;
        Ok(Capture { cmd, out, shared, thread: Some(thread) })
    }

    /// Opens the stream if it is not open (the outcome arrives as an [`AudioEvent`]).
    pub fn open(&self) {
        let _ = self.cmd.send(Cmd::Open);
    }

    /// Closes the stream (ending a turn in progress).
    pub(crate) fn close(&self) {
        let _ = self.cmd.send(Cmd::Close);
    }

    /// Opens or closes the gate, as of now. Opening also opens the stream if needed (reopen on next use).
    /// `preroll: false` discards the audio from before the gate opened (e.g. the assistant's own voice when
    /// the mic reopens after playback). Every close of an open gate is followed by [`Captured::TurnEnd`].
    pub fn set_gate(&self, open: bool, preroll: bool) {
        self.set_gate_at(open, preroll, Instant::now());
    }

    /// [`Capture::set_gate`] as of `at` (a key edge seen a moment ago): the turn starts or ends there, so
    /// a release reported after a debounce still ends the clip when the key went up.
    pub(crate) fn set_gate_at(&self, open: bool, preroll: bool, at: Instant) {
        self.shared.gate_open.store(open, Ordering::SeqCst);
        let _ = self.cmd.send(Cmd::Gate { open, preroll, at });
    }

    pub fn gate_open(&self) -> bool {
        self.shared.gate_open.load(Ordering::SeqCst)
    }

    /// The chunks that passed the gate and the turn ends, for the loop's `select!`.
    pub fn receiver(&self) -> &Receiver<Captured> {
        &self.out
    }

    pub fn state(&self) -> DeviceState {
        self.shared.health.state()
    }

    pub fn stats(&self) -> CaptureStats {
        CaptureStats {
            state: self.state(),
            gate_open: self.gate_open(),
            chunks_sent: self.shared.sent.load(Ordering::Relaxed),
            chunks_dropped: self.shared.dropped.load(Ordering::Relaxed),
            errors: self.shared.health.errors(),
            last_error: self.shared.health.last_error(),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    cfg: CaptureConfig,
    shared: Arc<Shared>,
    out: Sender<Captured>,
    cmd_tx: Sender<Cmd>,
    events: Sender<AudioEvent>,
}

/// The stream and the channel its callback feeds.
struct Open {
    stream: AlsaInput,
    chunks: Receiver<(Instant, Chunk)>,
}

impl Worker {
    fn run(self, cmd_rx: Receiver<Cmd>) {
        let mut open: Option<Open> = None;
        let mut generation = 0u64;
        let mut last_failure: Option<(Instant, AudioError)> = None;
        let mut gate = Gate::new(self.cfg.preroll, self.cfg.tail_grace);
        let never = crossbeam_channel::never();
        let mut flushing = false;
        loop {
            // While a turn is closing, the audio up to its end may sit in a part-filled period: the reader
            // hands it over as it comes, and goes back to whole periods once the turn is complete.
            let closing = open.is_some() && gate.deadline().is_some();
            if closing != flushing {
                if let Some(o) = &open {
                    if closing { o.stream.flush() } else { o.stream.end_flush() }
                }
                flushing = closing;
            }
            let timeout = gate.deadline().map_or(Duration::from_millis(500), |d| {
                d.saturating_duration_since(Instant::now()).min(Duration::from_millis(500))
            });
            let chunks = open.as_ref().map_or(&never, |o| &o.chunks);
            let cmd = select! {
                recv(cmd_rx) -> cmd => match cmd {
                    Ok(cmd) => cmd,
                    Err(_) => Cmd::Stop,
                },
                recv(chunks) -> msg => {
                    if let Ok((t, c)) = msg {
                        gate.on_chunk(t, c, &mut |x| self.forward(x));
                        if !self.cfg.keep_open && !gate.is_open() && gate.deadline().is_none() && open.is_some() {
                            self.close_stream(&mut open, &mut gate);
                        }
                    }
                    continue;
                },
                default(timeout) => {
                    let ending = gate.deadline().is_some();
                    gate.on_timeout(Instant::now(), &mut |x| self.forward(x));
                    if ending && gate.deadline().is_none() && !self.cfg.keep_open {
                        self.close_stream(&mut open, &mut gate);
                    }
                    let silent_for = self.shared.health.silent_for_ms();
                    if open.is_some() && silent_for > STALL.as_millis() as u64 {
                        Cmd::Lost(generation, format!("no audio from the input device for {silent_for} ms"))
                    } else {
                        continue;
                    }
                },
            };
            match cmd {
                Cmd::Open | Cmd::Gate { open: true, .. } if open.is_none() => {
                    if let Cmd::Gate { preroll, at, .. } = cmd {
                        gate.open(at, preroll, &mut |x| self.forward(x));
                    }
                    if let Some((_, error)) = last_failure.as_ref().filter(|(t, _)| t.elapsed() < RETRY_AFTER) {
                        // Tried a moment ago: say so again rather than hammer the backend; no turn without
                        // a device. The gate is shut before anyone hears why.
                        self.shared.gate_open.store(false, Ordering::SeqCst);
                        if matches!(cmd, Cmd::Gate { .. }) {
                            let error = error.clone();
                            let _ =
                                self.events.try_send(AudioEvent::Unavailable { direction: Direction::Input, error });
                        }
                        gate.end(&mut |x| self.forward(x));
                        self.shared.gate_open.store(false, Ordering::SeqCst);
                        continue;
                    }
                    generation += 1;
                    match self.open_stream(generation) {
                        Ok(o) => {
                            open = Some(o);
                            last_failure = None;
                        }
                        Err(error) => {
                            last_failure = Some((Instant::now(), error));
                            gate.end(&mut |x| self.forward(x));
                            self.shared.gate_open.store(false, Ordering::SeqCst);
                        }
                    }
                }
                Cmd::Open => {}
                Cmd::Gate { open: true, preroll, at } => gate.open(at, preroll, &mut |x| self.forward(x)),
                Cmd::Gate { open: false, at, .. } => {
                    gate.close(at);
                    if open.is_none() {
                        gate.end(&mut |x| self.forward(x));
                    }
                }
                Cmd::Close => self.close_stream(&mut open, &mut gate),
                Cmd::Lost(g, reason) if g == generation && open.is_some() => {
                    log::warn!("audio input lost: {reason}");
                    if let Some(o) = open.take() {
                        drop_detached(o.stream);
                    }
                    gate.end(&mut |x| self.forward(x));
                    self.shared.gate_open.store(false, Ordering::SeqCst);
                    self.shared.health.set_state(DeviceState::Unavailable(reason.clone()));
                    let _ = self.events.try_send(AudioEvent::Lost { direction: Direction::Input, reason });
                }
                Cmd::Lost(..) => {}
                Cmd::Stop => break,
            }
        }
        drop(open);
    }

    fn forward(&self, item: Captured) {
        match self.out.try_send(item) {
            Ok(()) => {
                if matches!(item, Captured::Chunk(_)) {
                    self.shared.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn close_stream(&self, open: &mut Option<Open>, gate: &mut Gate) {
        if let Some(o) = open.take() {
            // What the callback already captured still belongs to the turn.
            for (t, c) in o.chunks.try_iter() {
                gate.on_chunk(t, c, &mut |x| self.forward(x));
            }
            self.shared.health.set_state(DeviceState::Closed);
        }
        gate.end(&mut |x| self.forward(x));
    }

    fn open_stream(&self, generation: u64) -> Result<Open, AudioError> {
        self.shared.health.set_state(DeviceState::Opening);
        let (tx, chunks) = bounded(50);
        match open_stream(&self.cfg, &self.shared, tx, &self.cmd_tx, generation) {
            Ok((stream, info)) => {
                log::info!("audio input open: {info}");
                self.shared.health.set_state(DeviceState::Open(info.clone()));
                let _ = self.events.try_send(AudioEvent::Opened { direction: Direction::Input, info });
                Ok(Open { stream, chunks })
            }
            Err(error) => {
                log::warn!("audio input unavailable: {error}");
                // State first, event second: whoever gets the event sees a shut gate and the reason.
                self.shared.gate_open.store(false, Ordering::SeqCst);
                self.shared.health.set_state(DeviceState::Unavailable(error.to_string()));
                let _ =
                    self.events.try_send(AudioEvent::Unavailable { direction: Direction::Input, error: error.clone() });
                Err(error)
            }
        }
    }
}

/// What the input callback owns.
struct Pipeline {
    conv: ToApi,
    scratch: Vec<i16>,
    chunker: Chunker,
    tx: Sender<(Instant, Chunk)>,
    shared: Arc<Shared>,
}

impl Pipeline {
    fn on_data<T>(&mut self, data: &[T], now: Instant)
    where
        T: SizedSample,
        f32: FromSample<T>,
    {
        let shared = &self.shared;
        shared.health.callback_ran();
        self.scratch.clear();
        self.conv.push(data, &mut self.scratch);
        // The last converted sample was captured about now. A chunk also holds the samples left over from
        // earlier callbacks, so its end lies `pending` samples before its length into this buffer.
        let total = self.scratch.len() as i64;
        let mut end = -(self.chunker.pending() as i64);
        let tx = &self.tx;
        self.chunker.push(&self.scratch, |chunk| {
            end += chunk.len() as i64;
            let ago_samples = (total - end + chunk.len() as i64).max(0) as u64;
            let ago = Duration::from_micros(ago_samples * 1_000_000 / u64::from(API_RATE));
            let t = now.checked_sub(ago).unwrap_or(now);
            if tx.try_send((t, chunk)).is_err() {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

fn open_stream(
    cfg: &CaptureConfig,
    shared: &Arc<Shared>,
    tx: Sender<(Instant, Chunk)>,
    cmd_tx: &Sender<Cmd>,
    generation: u64,
) -> Result<(AlsaInput, StreamInfo), AudioError> {
    let host = host()?;
    let (supported, id, name) = {
        let device = find_device(&host, cfg.device.as_deref(), Direction::Input)?;
        let supported = device.default_input_config().map_err(|e| AudioError::from_cpal(&e))?;
        let (id, name) = describe(&device);
        (supported, id, name)
    };
    let format = supported.sample_format();
    let mut last_err = AudioError::Unsupported("no stream configuration to try".into());
    for (config, period) in stream_configs(&supported, INPUT_PERIOD) {
        let conv =
            ToApi::new(config.sample_rate, config.channels).map_err(|e| AudioError::Unsupported(e.to_string()))?;
        let mut pipeline = Pipeline {
            conv,
            scratch: Vec::with_capacity(8192),
            chunker: Chunker::default(),
            tx: tx.clone(),
            shared: shared.clone(),
        };
        let on_data = move |data: alsa_in::Data<'_>, now: Instant| match data {
            alsa_in::Data::F32(d) => pipeline.on_data(d, now),
            alsa_in::Data::I16(d) => pipeline.on_data(d, now),
            alsa_in::Data::U16(d) => pipeline.on_data(d, now),
            alsa_in::Data::I32(d) => pipeline.on_data(d, now),
            alsa_in::Data::U32(d) => pipeline.on_data(d, now),
            alsa_in::Data::I8(d) => pipeline.on_data(d, now),
            alsa_in::Data::U8(d) => pipeline.on_data(d, now),
            alsa_in::Data::F64(d) => pipeline.on_data(d, now),
        };
        let on_error = error_callback(shared.clone(), cmd_tx.clone(), generation);
        shared.health.callback_ran();
        match alsa_in::start(&id, config.sample_rate, config.channels, format, period, on_data, on_error) {
            Ok((mut stream, opened)) => {
                log::debug!("input period granted: {} frames", opened.period);
                // cpal frees ALSA's global configuration when its last host goes; keep one while we use ALSA.
                stream.hold(host);
                let info = StreamInfo {
                    device: id,
                    name,
                    rate: config.sample_rate,
                    channels: config.channels,
                    format: format.to_string(),
                    period_frames: period,
                };
                return Ok((stream, info));
            }
            Err(e) => {
                log::debug!("input config {config:?} refused: {e}");
                last_err = e;
            }
        }
    }
    Err(last_err)
}

/// The reader's error callback: count, and report the stream lost when the device is gone (see
/// [`DeviceHealth::on_error`]).
fn error_callback(shared: Arc<Shared>, cmd_tx: Sender<Cmd>, generation: u64) -> impl FnMut(cpal::Error) + Send {
    let mut reported = false;
    move |e: cpal::Error| {
        shared.health.on_error(&e, shared.health.stale(), || {
            if !reported {
                reported = true;
                let _ = cmd_tx.send(Cmd::Lost(generation, e.to_string()));
            }
        })
    }
}

/// Builds (does not start) an input stream on the device, for `ptt doctor`.
pub(crate) fn probe(device: Option<&str>) -> Result<StreamInfo, AudioError> {
    let cfg = CaptureConfig { device: device.map(str::to_string), ..CaptureConfig::default() };
    let shared = Arc::new(Shared::new());
    let (tx, _rx) = bounded(1);
    let (cmd_tx, _cmd_rx) = unbounded();
    open_stream(&cfg, &shared, tx, &cmd_tx, 0).map(|(stream, info)| {
        drop(stream);
        info
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::chunker::CHUNK_SAMPLES;

    fn chunk(v: i16) -> Chunk {
        [v; CHUNK_SAMPLES]
    }

    /// Feeds chunk `i` captured at `t0 + 20 ms × i`.
    fn feed(g: &mut Gate, t0: Instant, range: std::ops::Range<i16>, out: &mut Vec<Captured>) {
        for i in range {
            g.on_chunk(t0 + Duration::from_millis(20 * i as u64), chunk(i), &mut |x| out.push(x));
        }
    }

    fn ids(out: &[Captured]) -> Vec<i16> {
        out.iter()
            .map(|c| match c {
                Captured::Chunk(c) => c[0],
                Captured::TurnEnd => -1,
            })
            .collect()
    }

    #[test]
    fn preroll_then_live_then_the_tail_then_turn_end() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_millis(300), Duration::from_millis(300));
        let mut out = Vec::new();
        feed(&mut g, t0, 0..20, &mut out);
        assert!(out.is_empty());
        // Key press at 400 ms: chunks 5..20 (from 100 ms) go out at once, oldest first.
        g.open(t0 + Duration::from_millis(400), true, &mut |x| out.push(x));
        assert_eq!(ids(&out), (5..20).collect::<Vec<_>>());
        out.clear();
        feed(&mut g, t0, 20..30, &mut out);
        // Key release at 700 ms, but the device hands over 100 ms batches: chunks up to 34 were captured
        // before the release and still belong to the turn.
        g.close(t0 + Duration::from_millis(700));
        assert!(g.deadline().is_some());
        feed(&mut g, t0, 30..40, &mut out);
        assert_eq!(ids(&out), (20..35).chain([-1]).collect::<Vec<_>>());
        assert!(g.deadline().is_none());
    }

    #[test]
    fn the_turn_ends_with_the_chunk_that_reaches_the_release() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_millis(300), Duration::from_millis(300));
        let mut out = Vec::new();
        g.open(t0, false, &mut |x| out.push(x));
        feed(&mut g, t0, 0..10, &mut out);
        g.close(t0 + Duration::from_millis(290));
        out.clear();
        // Chunk 14 covers 280..300 ms: the turn is whole once it is in, before any later batch arrives.
        feed(&mut g, t0, 10..15, &mut out);
        assert_eq!(ids(&out), (10..15).chain([-1]).collect::<Vec<_>>());
        assert!(g.deadline().is_none(), "no waiting for the grace period");
    }

    #[test]
    fn no_preroll_when_not_wanted_and_late_chunks_from_before_the_press_are_dropped() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_millis(300), Duration::from_millis(300));
        let mut out = Vec::new();
        feed(&mut g, t0, 0..10, &mut out);
        g.open(t0 + Duration::from_millis(300), false, &mut |x| out.push(x));
        assert!(out.is_empty());
        feed(&mut g, t0, 10..20, &mut out);
        assert_eq!(ids(&out), (15..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_close_without_later_audio_ends_at_the_deadline() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_millis(300), Duration::from_millis(300));
        let mut out = Vec::new();
        g.open(t0, true, &mut |x| out.push(x));
        g.close(t0 + Duration::from_millis(100));
        g.on_timeout(t0 + Duration::from_millis(200), &mut |x| out.push(x));
        assert!(out.is_empty());
        g.on_timeout(t0 + Duration::from_millis(400), &mut |x| out.push(x));
        assert_eq!(out, vec![Captured::TurnEnd]);
        // Closing a closed gate ends nothing.
        g.close(t0 + Duration::from_millis(500));
        g.end(&mut |x| out.push(x));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn reopening_while_closing_ends_the_previous_turn_first() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_millis(300), Duration::from_millis(300));
        let mut out = Vec::new();
        g.open(t0, true, &mut |x| out.push(x));
        g.close(t0 + Duration::from_millis(100));
        g.open(t0 + Duration::from_millis(150), true, &mut |x| out.push(x));
        assert_eq!(out, vec![Captured::TurnEnd]);
        assert!(g.is_open());
    }

    #[test]
    fn callback_stamps_chunks_in_capture_order_and_counts_drops() {
        let (tx, rx) = bounded(10);
        let shared = Arc::new(Shared::new());
        let mut p = Pipeline {
            conv: ToApi::new(48_000, 2).expect("resampler"),
            scratch: Vec::new(),
            chunker: Chunker::default(),
            tx,
            shared: shared.clone(),
        };
        let now = Instant::now() + Duration::from_secs(1);
        // 100 ms of stereo at 48 kHz in one callback: 5 chunks (4 and a remainder after the resampler trim).
        p.on_data(&vec![0.1f32; 2 * 4800], now);
        let got: Vec<(Instant, Chunk)> = rx.try_iter().collect();
        assert!(got.len() >= 4, "{}", got.len());
        for w in got.windows(2) {
            assert_eq!(w[1].0 - w[0].0, Duration::from_millis(20));
        }
        let last_end = got.last().map(|(t, _)| *t + Duration::from_millis(20));
        assert!(last_end.is_some_and(|e| e <= now && now - e < Duration::from_millis(20)));
        // The next 100 ms continue the timeline: its first chunk starts where the previous one ended,
        // although part of it came with the first callback.
        let later = now + Duration::from_millis(100);
        p.on_data(&vec![0.1f32; 2 * 4800], later);
        let next: Vec<(Instant, Chunk)> = rx.try_iter().collect();
        let gap = next.first().zip(got.last()).map(|(b, a)| b.0 - a.0);
        assert_eq!(gap, Some(Duration::from_millis(20)));
        // A full channel drops and counts; the callback returns at once.
        for _ in 0..5 {
            p.on_data(&vec![0.1f32; 2 * 4800], later);
        }
        assert_eq!(rx.len(), 10);
        assert!(shared.dropped.load(Ordering::Relaxed) > 0);
    }
}
