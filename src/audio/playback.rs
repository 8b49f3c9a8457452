//! The speaker: 24 kHz PCM16 in, an output stream owned by the `audio-out` thread.
//!
//! Why it looks like this:
//! - **One shared queue of 24 kHz samples** ([`Queue`], behind a mutex held for microseconds). The loop
//!   pushes the assistant's audio deltas and cues as they come; the output callback takes what it needs,
//!   resamples it to the device rate ([`FromApi`]) and writes it to every channel. Keeping the queue at
//!   24 kHz makes it independent of the device: pushes before the device is open are kept, and a reopened
//!   device at another rate changes nothing upstream.
//! - **A small jitter buffer.** Deltas arrive in bursts over the network. Playback starts once 60 ms are
//!   queued (or at once after [`Playback::finish`], for a clip shorter than that); running dry before
//!   `finish` is an underrun: it is counted and playback waits for 60 ms again.
//! - **Flush is immediate.** Barge-in empties the queue under the lock and bumps a generation; the
//!   callback, seeing it, drops what it had already resampled. The stream is asked for a 10 ms period
//!   (20 ms buffer; the ALSA pulse plugin makes that three 6.7 ms periods) so that little is left in the
//!   device after a flush. Measured with `tests/live_voice.rs`'s barge-in (the tone's end on the speaker's
//!   monitor after the interrupt; the test allows 100 ms): 21-35 ms with 10 ms periods, 33-53 ms with 20 ms,
//!   64-88 ms with 40 ms. A running output costs about 1.6 % of a core with 10 ms periods (cpal's worker and
//!   the plugin's `threaded-ml` thread, 300-500 wake-ups a second each), 0.9 % with 20 ms, 0.5 % with 40 ms:
//!   longer periods would buy little that the idle pause below does not, at the price of barge-in.
//! - **Paused while idle.** After [`IDLE_PAUSE`] with nothing queued or played, the `audio-out` thread
//!   pauses the stream (the pulse plugin corks it: no callbacks, about one wake-up a second) and the next
//!   push resumes it. The stream stays open: no reopen, the same [`DeviceState`], and the first sample of a
//!   push reaches the speaker's monitor as soon as from a running stream (measured 13-21 ms after the push
//!   from a paused stream, 10-23 ms from a running one, whose 20 ms buffer of silence is ahead of it; a
//!   closed stream reopened on the push took 3-7 ms, but then every response reopens a server connection
//!   and `ptt status` flickers to closed). This took the benchmark's idle-output cost from about 1.6 % of a
//!   core to nothing measurable. A paused stream gets no data callbacks, so stall detection is off while
//!   paused; an error callback while paused resumes the stream, so a vanished device is still noticed (the
//!   resume fails, or no callback comes). A device that cannot pause keeps running, as before.
//! - **Closed when idle outside a voice session.** A paused stream still costs a wake-up a second (the pulse
//!   plugin's thread), so when nothing holds the output open ([`Playback::set_keep_open`], which the daemon
//!   sets for a voice session) the idle stream is closed instead of paused, and the next push opens it again
//!   (3-7 ms, on this thread). With no stream, or a paused one, the `audio-out` thread blocks on its command
//!   channel without a timeout: an idle daemon does not wake up for its speaker.
//! - **A cue does not knock on a missing device.** Opening fails slowly without a device (ALSA reads its
//!   whole configuration again, about 50 file opens per attempt), so [`Playback::push_cue`] drops a cue while
//!   the last attempt failed less than [`CUE_RETRY`] ago; the assistant's own audio ([`Playback::push`])
//!   still asks for a reopen, at most one attempt a second.
//! - **Played time is what reached the device.** The callback counts the real (non-silence) frames it
//!   hands to the device, in 24 kHz samples: [`Playback::played_ms`]. For `conversation.item.truncate` the
//!   loop needs the position inside one item: [`Playback::push`] returns the timeline position of the
//!   pushed audio and [`Playback::flush`] the position reached, both in 24 kHz samples, where dropped
//!   audio counts as passed (so positions stay comparable across flushes).
//! - **Errors are counted, not fatal.** The ALSA pulse plugin reports I/O error (5) during healthy
//!   playback; only a vanished device (or 2 s without a callback) ends the stream, reported as an
//!   [`AudioEvent::Lost`]; the next push opens it again.

use crate::audio::health::DeviceHealth;
use crate::audio::resample::{API_RATE, FromApi, write_frames};
use crate::audio::{
    AudioError, AudioEvent, DeviceState, Direction, StreamInfo, describe, drop_detached, find_device, host, lock,
    stream_configs,
};
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const STALL: Duration = Duration::from_secs(2);
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A short output period: little audio sits in the device after a flush.
const OUTPUT_PERIOD: Duration = Duration::from_millis(10);
/// Nothing queued or played for this long: the output stream is paused until the next push.
const IDLE_PAUSE: Duration = Duration::from_millis(500);
/// A cue is dropped without trying the device again while its last open failed less than this long ago.
pub(crate) const CUE_RETRY: Duration = Duration::from_secs(60);
/// How often a running (not paused) stream is checked for idleness and stalls.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// 24 kHz samples per millisecond.
const PER_MS: u64 = API_RATE as u64 / 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackConfig {
    /// `audio.output`; `None` is the default device.
    pub(crate) device: Option<String>,
    /// Audio queued before playback starts.
    pub(crate) prebuffer: Duration,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        Self { device: None, prebuffer: Duration::from_millis(60) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlaybackStats {
    pub state: DeviceState,
    /// Audio handed to the device since start, in ms.
    pub(crate) played_ms: u64,
    /// Audio waiting in the queue, in ms.
    pub(crate) queued_ms: u64,
    /// Audio thrown away by flushes (or because no device could be opened), in ms.
    pub dropped_ms: u64,
    pub(crate) playing: bool,
    pub(crate) underruns: u64,
    /// Errors the backend reported (counted, not fatal).
    pub(crate) errors: u64,
    pub(crate) last_error: Option<String>,
}

/// What [`Queue::take`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Not playing: less than the pre-buffer is queued and no `finish` yet.
    Waiting,
    /// This many samples; more may follow.
    Audio(usize),
    /// This many samples, the last ones before `finish`: flush the resampler's tail.
    Ended(usize),
    /// This many samples, then the queue ran dry without a `finish`.
    Underrun(usize),
}

/// The jitter buffer: pure, shared between the loop (push, finish, flush) and the callback (take).
#[derive(Debug)]
pub(crate) struct Queue {
    samples: VecDeque<i16>,
    playing: bool,
    finished: bool,
    prebuffer: usize,
    /// Bumped by every flush; the callback drops what it holds when it changes.
    generation: u64,
    /// Samples ever pushed (the timeline's end).
    pushed: u64,
    /// Samples dropped by flushes, including what the callback held.
    dropped: u64,
    underruns: u64,
}

impl Queue {
    pub(crate) fn new(prebuffer: Duration) -> Self {
        Self {
            samples: VecDeque::new(),
            playing: false,
            finished: false,
            prebuffer: (prebuffer.as_millis() as usize * PER_MS as usize).max(1),
            generation: 0,
            pushed: 0,
            dropped: 0,
            underruns: 0,
        }
    }

    /// Queues audio; returns the timeline position of its first sample.
    pub(crate) fn push(&mut self, pcm: &[i16]) -> u64 {
        let at = self.pushed;
        self.samples.extend(pcm);
        self.pushed += pcm.len() as u64;
        self.finished = false;
        at
    }

    /// No more audio for now: play what is queued even if it is less than the pre-buffer.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }

    /// Drops everything queued.
    pub(crate) fn flush(&mut self) {
        self.dropped += self.samples.len() as u64;
        self.samples.clear();
        self.playing = false;
        self.finished = false;
        self.generation += 1;
    }

    /// Moves up to `max` samples to `out`.
    pub(crate) fn take(&mut self, max: usize, out: &mut Vec<i16>) -> Take {
        if !self.playing {
            if self.samples.len() >= self.prebuffer || (self.finished && !self.samples.is_empty()) {
                self.playing = true;
            } else {
                return Take::Waiting;
            }
        }
        let n = max.min(self.samples.len());
        out.extend(self.samples.drain(..n));
        if !self.samples.is_empty() {
            return Take::Audio(n);
        }
        self.playing = false;
        if self.finished {
            self.finished = false;
            Take::Ended(n)
        } else if n < max {
            self.underruns += 1;
            Take::Underrun(n)
        } else {
            // Exactly drained by this take; the next take tells whether more came.
            self.playing = true;
            Take::Audio(n)
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn underruns(&self) -> u64 {
        self.underruns
    }
}

/// The callback's side: resampler state and device-rate audio ready to be written.
pub(crate) struct Renderer {
    conv: FromApi,
    rate: u64,
    /// Device-rate mono samples ready to hand out (all real audio).
    ready: VecDeque<f32>,
    scratch24: Vec<i16>,
    scratch: Vec<f32>,
    generation: u64,
    /// 24 kHz samples taken from the queue since the last stream start, and how many of them were handed
    /// out (converted from device frames).
    taken: u64,
    handed: u64,
    /// Remainder of the device-frame → 24 kHz conversion.
    frac: u64,
    ending: bool,
    was_active: bool,
}

/// What one render produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// Device frames of real audio at the start of the buffer (the rest is silence).
    pub(crate) frames: usize,
    /// 24 kHz samples this counts as played.
    pub(crate) played: u64,
    /// Playback went idle in this render (the queue ran out).
    pub(crate) went_idle: bool,
}

impl Renderer {
    pub(crate) fn new(device_rate: u32) -> Result<Self, AudioError> {
        Ok(Self {
            conv: FromApi::new(device_rate).map_err(|e| AudioError::Unsupported(e.to_string()))?,
            rate: u64::from(device_rate),
            ready: VecDeque::new(),
            scratch24: Vec::new(),
            scratch: Vec::new(),
            generation: 0,
            taken: 0,
            handed: 0,
            frac: 0,
            ending: false,
            was_active: false,
        })
    }

    /// Produces up to `frames` device frames of mono audio into `out` (cleared first) from the queue, and
    /// adds what that counts as played to `played` while still holding the queue's lock, so that a flush
    /// sees played and dropped audio consistently.
    pub(crate) fn render(
        &mut self,
        queue: &Mutex<Queue>,
        played_total: &AtomicU64,
        frames: usize,
        out: &mut Vec<f32>,
    ) -> Rendered {
        out.clear();
        let mut q = lock(queue);
        if q.generation != self.generation {
            self.generation = q.generation;
            q.dropped += self.taken.saturating_sub(self.handed);
            self.restart();
        }
        while self.ready.len() < frames && !self.ending {
            let missing = (frames - self.ready.len()) as u64;
            let want = (missing * u64::from(API_RATE)).div_ceil(self.rate).max(PER_MS * 10) as usize;
            self.scratch24.clear();
            let took = q.take(want, &mut self.scratch24);
            let n = match took {
                Take::Waiting => break,
                Take::Audio(n) | Take::Ended(n) | Take::Underrun(n) => n,
            };
            self.taken += n as u64;
            self.scratch.clear();
            self.conv.push(&self.scratch24, &mut self.scratch);
            if matches!(took, Take::Ended(_)) {
                self.conv.finish(&mut self.scratch);
                self.ending = true;
            }
            self.ready.extend(self.scratch.iter());
            if matches!(took, Take::Underrun(_)) {
                break;
            }
        }
        let n = frames.min(self.ready.len());
        out.extend(self.ready.drain(..n));
        self.frac += n as u64 * u64::from(API_RATE);
        let mut played = self.frac / self.rate;
        self.frac %= self.rate;
        self.handed += played;
        if self.ending && self.ready.is_empty() {
            // End of a stream: every sample taken has now been handed out; settle the rounding.
            played += self.taken.saturating_sub(self.handed);
            self.restart();
        }
        played_total.fetch_add(played, Ordering::SeqCst);
        let active = n > 0 || !q.is_empty();
        let went_idle = self.was_active && !active;
        self.was_active = active;
        Rendered { frames: n, played, went_idle }
    }

    fn restart(&mut self) {
        self.ready.clear();
        self.conv.reset();
        self.taken = 0;
        self.handed = 0;
        self.frac = 0;
        self.ending = false;
    }
}

struct Shared {
    queue: Mutex<Queue>,
    played: AtomicU64,
    rendering: AtomicBool,
    /// The stream is paused (corked) because nothing was queued for [`IDLE_PAUSE`]; the next push resumes it.
    /// Written under the queue's lock, so that a push either lands before the pause (which then does not
    /// happen) or sees it (and asks for a resume).
    paused: AtomicBool,
    /// The error callback asked to resume a paused stream (once per pause).
    wake_asked: AtomicBool,
    /// Milliseconds (on `health`'s clock) when the callback last handed real audio to the device (or the stream
    /// started or resumed).
    last_audio_ms: AtomicU64,
    /// Milliseconds (on `health`'s clock) of the last failed open; `u64::MAX` when the last open succeeded
    /// or none was tried.
    failed_at_ms: AtomicU64,
    /// Keep the idle stream open (paused) rather than closing it: a voice session is on.
    keep_open: AtomicBool,
    /// Opens tried by the worker, failed or not.
    open_attempts: AtomicU64,
    health: DeviceHealth,
}

impl Shared {
    fn new(prebuffer: Duration) -> Self {
        Self {
            queue: Mutex::new(Queue::new(prebuffer)),
            played: AtomicU64::new(0),
            rendering: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            wake_asked: AtomicBool::new(false),
            last_audio_ms: AtomicU64::new(0),
            failed_at_ms: AtomicU64::new(u64::MAX),
            keep_open: AtomicBool::new(false),
            open_attempts: AtomicU64::new(0),
            health: DeviceHealth::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.health.now_ms()
    }
}

enum Cmd {
    Open,
    /// Audio was queued while the stream was paused.
    Resume,
    /// Nothing holds the output open any more: close it if it is paused.
    Release,
    Lost(u64, String),
    Stop,
}

/// Handle to the `audio-out` thread. Its methods never block on the device.
pub struct Playback {
    cmd: Sender<Cmd>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Playback {
    pub fn spawn(cfg: PlaybackConfig, events: Sender<AudioEvent>) -> std::io::Result<Playback> {
        let (cmd, cmd_rx) = unbounded();
        let shared = Arc::new(Shared::new(cfg.prebuffer));
        let worker = Worker { cfg, shared: shared.clone(), cmd_tx: cmd.clone(), events };
        let thread = std::thread::Builder::new().name("audio-out".into()).spawn(move || worker.run(cmd_rx))?;
        Ok(Playback { cmd, shared, thread: Some(thread) })
    }

    /// Opens the stream if it is not open (the outcome arrives as an [`AudioEvent`]).
    pub fn open(&self) {
        let _ = self.cmd.send(Cmd::Open);
    }

    /// While `keep` is set (a voice session is on) the idle stream is paused and stays open; otherwise it is
    /// closed when idle, so that nothing of it wakes the process.
    pub fn set_keep_open(&self, keep: bool) {
        self.shared.keep_open.store(keep, Ordering::SeqCst);
        if !keep {
            let _ = self.cmd.send(Cmd::Release);
        }
    }

    /// Queues a cue like [`Playback::push`], except while the output is unavailable and its last open failed
    /// less than [`CUE_RETRY`] ago: then the cue is dropped (and counted) without trying the device again.
    /// Returns whether it was queued.
    pub(crate) fn push_cue(&self, pcm: &[i16]) -> bool {
        if matches!(self.shared.health.state(), DeviceState::Unavailable(_)) {
            let failed_at = self.shared.failed_at_ms.load(Ordering::SeqCst);
            if failed_at != u64::MAX && self.shared.now_ms().saturating_sub(failed_at) < CUE_RETRY.as_millis() as u64 {
                let mut q = lock(&self.shared.queue);
                q.push(pcm);
                q.flush();
                return false;
            }
        }
        self.push(pcm);
        true
    }

    #[cfg(test)]
    /// Opens the worker has tried so far (failed or not).
    pub(crate) fn open_attempts(&self) -> u64 {
        self.shared.open_attempts.load(Ordering::SeqCst)
    }

    /// Queues 24 kHz mono PCM16. Returns the timeline position of its first sample (24 kHz samples; see
    /// [`Playback::flush`]). Opens the device if it is not open. While the device is unavailable the audio
    /// is dropped (and counted), so nothing piles up.
    pub fn push(&self, pcm: &[i16]) -> u64 {
        let mut q = lock(&self.shared.queue);
        // Read under the queue's lock: the worker closes an idle stream under it too.
        let state = self.shared.health.state();
        let at = q.push(pcm);
        match state {
            DeviceState::Open(_) if self.shared.paused.load(Ordering::SeqCst) => {
                drop(q);
                let _ = self.cmd.send(Cmd::Resume);
            }
            DeviceState::Open(_) | DeviceState::Opening => {}
            DeviceState::Closed => {
                drop(q);
                self.open();
            }
            DeviceState::Unavailable(_) => {
                q.flush();
                drop(q);
                self.open();
            }
        }
        at
    }

    /// The audio pushed so far is complete (e.g. `response.output_audio.done`): play it out even if it is
    /// shorter than the pre-buffer.
    pub fn finish(&self) {
        lock(&self.shared.queue).finish();
    }

    /// Barge-in: drops every queued sample at once. Returns the timeline position reached (24 kHz samples):
    /// `(flush() - push_position_of_item) / 24` is the milliseconds of that item actually played.
    pub fn flush(&self) -> u64 {
        let mut q = lock(&self.shared.queue);
        let reached = self.shared.played.load(Ordering::SeqCst) + q.dropped;
        q.flush();
        self.shared.rendering.store(false, Ordering::SeqCst);
        reached
    }

    /// The timeline position now (24 kHz samples): played plus dropped.
    pub fn position(&self) -> u64 {
        let q = lock(&self.shared.queue);
        self.shared.played.load(Ordering::SeqCst) + q.dropped
    }

    /// Milliseconds of audio handed to the device since start.
    pub fn played_ms(&self) -> u64 {
        self.shared.played.load(Ordering::SeqCst) / PER_MS
    }

    /// Audio is queued or being played (for the notification floor).
    pub fn is_playing(&self) -> bool {
        self.shared.rendering.load(Ordering::SeqCst) || !lock(&self.shared.queue).is_empty()
    }

    pub fn state(&self) -> DeviceState {
        self.shared.health.state()
    }

    pub fn stats(&self) -> PlaybackStats {
        let (queued, dropped, underruns) = {
            let q = lock(&self.shared.queue);
            (q.len() as u64, q.dropped, q.underruns)
        };
        PlaybackStats {
            state: self.state(),
            played_ms: self.played_ms(),
            queued_ms: queued / PER_MS,
            dropped_ms: dropped / PER_MS,
            playing: self.is_playing(),
            underruns,
            errors: self.shared.health.errors(),
            last_error: self.shared.health.last_error(),
        }
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    cfg: PlaybackConfig,
    shared: Arc<Shared>,
    cmd_tx: Sender<Cmd>,
    events: Sender<AudioEvent>,
}

impl Worker {
    fn run(self, cmd_rx: Receiver<Cmd>) {
        let mut stream: Option<cpal::Stream> = None;
        let mut generation = 0u64;
        let mut last_failure: Option<Instant> = None;
        // Pausing failed once on this stream (the device cannot pause): it keeps running.
        let mut cannot_pause = false;
        loop {
            // Only a running stream needs watching (idle pause, stalls); otherwise block until told something.
            let running = stream.is_some() && !self.shared.paused.load(Ordering::SeqCst);
            let received = if running {
                cmd_rx.recv_timeout(CHECK_EVERY)
            } else {
                cmd_rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            let cmd = match received {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => {
                    if stream.is_some()
                        && self.idle_for_ms() >= IDLE_PAUSE.as_millis() as u64
                        && !self.shared.keep_open.load(Ordering::SeqCst)
                        && self.close_if_idle()
                    {
                        drop(stream.take());
                        continue;
                    }
                    if let Some(s) = &stream
                        && !cannot_pause
                        && !self.shared.paused.load(Ordering::SeqCst)
                    {
                        cannot_pause = !self.pause_if_idle(s);
                    }
                    let silent_for = self.shared.health.silent_for_ms();
                    if stream.is_some()
                        && !self.shared.paused.load(Ordering::SeqCst)
                        && silent_for > STALL.as_millis() as u64
                    {
                        Cmd::Lost(generation, format!("the output device took no audio for {silent_for} ms"))
                    } else {
                        continue;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => Cmd::Stop,
            };
            match cmd {
                Cmd::Open if stream.is_none() => {
                    if last_failure.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
                        lock(&self.shared.queue).flush();
                        continue;
                    }
                    generation += 1;
                    self.shared.open_attempts.fetch_add(1, Ordering::SeqCst);
                    self.shared.health.set_state(DeviceState::Opening);
                    match open_stream(&self.cfg, &self.shared, &self.events, &self.cmd_tx, generation) {
                        Ok((s, info)) => {
                            log::info!("audio output open: {info}");
                            stream = Some(s);
                            last_failure = None;
                            self.shared.failed_at_ms.store(u64::MAX, Ordering::SeqCst);
                            cannot_pause = false;
                            self.shared.last_audio_ms.store(self.shared.now_ms(), Ordering::SeqCst);
                            self.shared.health.set_state(DeviceState::Open(info.clone()));
                            let _ = self.events.try_send(AudioEvent::Opened { direction: Direction::Output, info });
                        }
                        Err(error) => {
                            log::warn!("audio output unavailable: {error}");
                            last_failure = Some(Instant::now());
                            self.shared.failed_at_ms.store(self.shared.now_ms(), Ordering::SeqCst);
                            lock(&self.shared.queue).flush();
                            self.shared.health.set_state(DeviceState::Unavailable(error.to_string()));
                            let _ =
                                self.events.try_send(AudioEvent::Unavailable { direction: Direction::Output, error });
                        }
                    }
                }
                Cmd::Open => {}
                Cmd::Resume => {
                    if let Some(s) = &stream
                        && self.shared.paused.load(Ordering::SeqCst)
                    {
                        let now = self.shared.now_ms();
                        self.shared.health.callback_ran();
                        self.shared.last_audio_ms.store(now, Ordering::SeqCst);
                        match s.play() {
                            Ok(()) => {
                                self.shared.paused.store(false, Ordering::SeqCst);
                                log::debug!("audio output resumed");
                            }
                            Err(e) => {
                                let _ = self.cmd_tx.send(Cmd::Lost(generation, format!("resuming failed: {e}")));
                            }
                        }
                    }
                }
                Cmd::Release => {
                    if stream.is_some()
                        && self.shared.paused.load(Ordering::SeqCst)
                        && !self.shared.keep_open.load(Ordering::SeqCst)
                        && self.close_if_idle()
                    {
                        drop(stream.take());
                    }
                }
                Cmd::Lost(g, reason) if g == generation && stream.is_some() => {
                    log::warn!("audio output lost: {reason}");
                    if let Some(s) = stream.take() {
                        drop_detached(s);
                    }
                    self.shared.paused.store(false, Ordering::SeqCst);
                    lock(&self.shared.queue).flush();
                    self.shared.rendering.store(false, Ordering::SeqCst);
                    self.shared.health.set_state(DeviceState::Unavailable(reason.clone()));
                    let _ = self.events.try_send(AudioEvent::Lost { direction: Direction::Output, reason });
                }
                Cmd::Lost(..) => {}
                Cmd::Stop => break,
            }
        }
        drop(stream);
    }

    fn idle_for_ms(&self) -> u64 {
        self.shared.now_ms().saturating_sub(self.shared.last_audio_ms.load(Ordering::SeqCst))
    }

    /// Marks the idle stream closed when nothing is queued or rendering (the caller drops it); a push racing
    /// with this sees `Closed` and asks for an open, which the worker handles after the close.
    fn close_if_idle(&self) -> bool {
        let q = lock(&self.shared.queue);
        if !q.is_empty() || self.shared.rendering.load(Ordering::SeqCst) {
            return false;
        }
        self.shared.paused.store(false, Ordering::SeqCst);
        self.shared.health.set_state(DeviceState::Closed);
        drop(q);
        log::debug!("audio output closed after {} ms without audio", self.idle_for_ms());
        true
    }

    /// Pauses the stream when nothing was queued or played for [`IDLE_PAUSE`]. Returns false when the
    /// device refused to pause (it then keeps running, as before).
    fn pause_if_idle(&self, stream: &cpal::Stream) -> bool {
        let idle_for = self.shared.now_ms().saturating_sub(self.shared.last_audio_ms.load(Ordering::SeqCst));
        if idle_for < IDLE_PAUSE.as_millis() as u64 {
            return true;
        }
        {
            let q = lock(&self.shared.queue);
            if !q.is_empty() || self.shared.rendering.load(Ordering::SeqCst) {
                return true;
            }
            self.shared.wake_asked.store(false, Ordering::SeqCst);
            self.shared.paused.store(true, Ordering::SeqCst);
        }
        match stream.pause() {
            Ok(()) => {
                log::debug!("audio output paused after {idle_for} ms without audio");
                true
            }
            Err(e) => {
                log::debug!("audio output cannot pause ({e}); it keeps running");
                // A push that saw the short-lived flag asked for a resume: harmless, the stream runs.
                self.shared.paused.store(false, Ordering::SeqCst);
                false
            }
        }
    }
}

/// What the output callback owns.
struct Output {
    renderer: Renderer,
    mono: Vec<f32>,
    channels: usize,
    shared: Arc<Shared>,
    events: Sender<AudioEvent>,
}

impl Output {
    fn fill<T>(&mut self, data: &mut [T])
    where
        T: SizedSample + FromSample<f32>,
    {
        let shared = &self.shared;
        shared.health.callback_ran();
        let frames = data.len() / self.channels;
        let r = self.renderer.render(&shared.queue, &shared.played, frames, &mut self.mono);
        let written = write_frames(&self.mono, data, self.channels);
        for s in &mut data[written * self.channels..] {
            *s = T::EQUILIBRIUM;
        }
        shared.rendering.store(r.frames > 0, Ordering::SeqCst);
        if r.frames > 0 {
            shared.last_audio_ms.store(shared.now_ms(), Ordering::SeqCst);
        }
        if r.went_idle {
            let _ = self.events.try_send(AudioEvent::PlaybackIdle);
        }
    }
}

fn open_stream(
    cfg: &PlaybackConfig,
    shared: &Arc<Shared>,
    events: &Sender<AudioEvent>,
    cmd_tx: &Sender<Cmd>,
    generation: u64,
) -> Result<(cpal::Stream, StreamInfo), AudioError> {
    let host = host()?;
    let device = find_device(&host, cfg.device.as_deref(), Direction::Output)?;
    let supported = device.default_output_config().map_err(|e| AudioError::from_cpal(&e))?;
    let (id, name) = describe(&device);
    let mut last_err = AudioError::Unsupported("no stream configuration to try".into());
    for (config, period) in stream_configs(&supported, OUTPUT_PERIOD) {
        let mut renderer = Renderer::new(config.sample_rate)?;
        // Continue the queue's generation: a flush before this open must not count twice.
        renderer.generation = lock(&shared.queue).generation;
        let output = Output {
            renderer,
            mono: Vec::with_capacity(8192),
            channels: usize::from(config.channels.max(1)),
            shared: shared.clone(),
            events: events.clone(),
        };
        match build(&device, &config, supported.sample_format(), output, shared.clone(), cmd_tx.clone(), generation) {
            Ok(stream) => {
                shared.health.callback_ran();
                stream.play().map_err(|e| AudioError::from_cpal(&e))?;
                let info = StreamInfo {
                    device: id,
                    name,
                    rate: config.sample_rate,
                    channels: config.channels,
                    format: supported.sample_format().to_string(),
                    period_frames: period,
                };
                return Ok((stream, info));
            }
            Err(e) => {
                log::debug!("output config {config:?} refused: {e}");
                last_err = e;
            }
        }
    }
    Err(last_err)
}

fn build(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    format: SampleFormat,
    output: Output,
    shared: Arc<Shared>,
    cmd_tx: Sender<Cmd>,
    generation: u64,
) -> Result<cpal::Stream, AudioError> {
    fn typed<T>(
        device: &cpal::Device,
        config: &cpal::StreamConfig,
        mut output: Output,
        on_error: impl FnMut(cpal::Error) + Send + 'static,
    ) -> Result<cpal::Stream, AudioError>
    where
        T: SizedSample + FromSample<f32>,
    {
        device
            .build_output_stream::<T, _, _>(*config, move |data: &mut [T], _| output.fill(data), on_error, None)
            .map_err(|e| AudioError::from_cpal(&e))
    }
    let mut reported = false;
    let on_error = move |e: cpal::Error| {
        let paused = shared.paused.load(Ordering::SeqCst);
        if paused && !shared.wake_asked.swap(true, Ordering::SeqCst) {
            // A paused stream has no data callbacks to tell a dead device from a healthy one: run it again,
            // and the usual checks apply (resuming fails, or no callback comes).
            let _ = cmd_tx.send(Cmd::Resume);
        }
        let stale = !paused && shared.health.stale();
        shared.health.on_error(&e, stale, || {
            if !reported {
                reported = true;
                let _ = cmd_tx.send(Cmd::Lost(generation, e.to_string()));
            }
        })
    };
    match format {
        SampleFormat::F32 => typed::<f32>(device, config, output, on_error),
        SampleFormat::I16 => typed::<i16>(device, config, output, on_error),
        SampleFormat::U16 => typed::<u16>(device, config, output, on_error),
        SampleFormat::I32 => typed::<i32>(device, config, output, on_error),
        SampleFormat::U32 => typed::<u32>(device, config, output, on_error),
        SampleFormat::I8 => typed::<i8>(device, config, output, on_error),
        SampleFormat::U8 => typed::<u8>(device, config, output, on_error),
        SampleFormat::F64 => typed::<f64>(device, config, output, on_error),
        other => Err(AudioError::Unsupported(format!("sample format {other}"))),
    }
}

/// Builds (does not start) an output stream on the device, for `ptt doctor`.
pub(crate) fn probe(device: Option<&str>) -> Result<StreamInfo, AudioError> {
    let cfg = PlaybackConfig { device: device.map(str::to_string), ..PlaybackConfig::default() };
    let shared = Arc::new(Shared::new(cfg.prebuffer));
    let (events, _events_rx) = unbounded();
    let (cmd_tx, _cmd_rx) = unbounded();
    open_stream(&cfg, &shared, &events, &cmd_tx, 0).map(|(stream, info)| {
        drop(stream);
        info
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::analysis::zero_crossing_hz;
    use crate::audio::resample::f32_to_i16;
    use std::f32::consts::TAU;

    fn tone(ms: usize) -> Vec<i16> {
        (0..ms * 24).map(|i| f32_to_i16(0.5 * (TAU * 1000.0 * i as f32 / 24_000.0).sin())).collect()
    }

    #[test]
    fn a_cue_is_skipped_not_retried_while_the_output_is_missing() {
        let (tx, rx) = unbounded();
        let cfg = PlaybackConfig { device: Some("ptt-test-no-such-device".into()), ..PlaybackConfig::default() };
        let p = Playback::spawn(cfg, tx).expect("spawn audio-out");
        assert!(p.push_cue(&[1; 2400]), "the first cue tries the device");
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(AudioEvent::Unavailable { direction: Direction::Output, .. }) => {}
            other => panic!("expected the output to be unavailable, got {other:?}"),
        }
        assert_eq!(p.open_attempts(), 1);
        for _ in 0..5 {
            assert!(!p.push_cue(&[1; 2400]), "a cue while the device is missing is dropped without an attempt");
        }
        assert!(!p.is_playing(), "nothing piles up");
        // The cues that were dropped still count on the timeline.
        assert_eq!(p.position(), 6 * 2400);
        // The assistant's own audio still asks for the device (the worker throttles it to one attempt a second).
        p.push(&[1; 2400]);
        drop(p);
    }

    #[test]
    fn jitter_buffer_waits_for_60ms_then_plays() {
        let mut q = Queue::new(Duration::from_millis(60));
        let mut out = Vec::new();
        q.push(&[1; 1000]);
        assert_eq!(q.take(480, &mut out), Take::Waiting);
        q.push(&[1; 440]);
        assert_eq!(q.take(480, &mut out), Take::Audio(480));
        assert_eq!(q.take(480, &mut out), Take::Audio(480));
        // 480 left: drained exactly, more may come.
        assert_eq!(q.take(480, &mut out), Take::Audio(480));
        assert_eq!(q.take(480, &mut out), Take::Underrun(0));
        assert_eq!(q.underruns(), 1);
        // After an underrun it buffers again.
        q.push(&[1; 100]);
        assert_eq!(q.take(480, &mut out), Take::Waiting);
        q.finish();
        assert_eq!(q.take(480, &mut out), Take::Ended(100));
        assert_eq!(q.take(480, &mut out), Take::Waiting);
    }

    #[test]
    fn short_clip_plays_after_finish() {
        let mut q = Queue::new(Duration::from_millis(60));
        let mut out = Vec::new();
        q.push(&[1; 240]);
        assert_eq!(q.take(480, &mut out), Take::Waiting);
        q.finish();
        assert_eq!(q.take(480, &mut out), Take::Ended(240));
    }

    #[test]
    fn flush_drops_everything_and_positions_continue() {
        let mut q = Queue::new(Duration::from_millis(60));
        assert_eq!(q.push(&[1; 2400]), 0);
        assert_eq!(q.push(&[1; 2400]), 2400);
        q.flush();
        assert!(q.is_empty());
        assert_eq!(q.dropped, 4800);
        assert_eq!(q.push(&[1; 10]), 4800);
    }

    /// Drives a renderer like a 44.1 kHz device with 441-frame callbacks.
    fn run(q: &Mutex<Queue>, r: &mut Renderer, callbacks: usize) -> (Vec<f32>, u64) {
        let mut all = Vec::new();
        let mut played = 0;
        let mut buf = Vec::new();
        for _ in 0..callbacks {
            let res = r.render(q, &AtomicU64::new(0), 441, &mut buf);
            assert_eq!(res.frames, buf.len());
            all.extend_from_slice(&buf);
            played += res.played;
        }
        (all, played)
    }

    #[test]
    fn renderer_plays_a_tone_exactly() {
        let q = Mutex::new(Queue::new(Duration::from_millis(60)));
        let mut r = Renderer::new(44_100).expect("renderer");
        lock(&q).push(&tone(500));
        lock(&q).finish();
        let (out, played) = run(&q, &mut r, 100);
        assert_eq!(played, 12_000, "500 ms of 24 kHz samples");
        assert!(out.len().abs_diff(22_050) <= 1, "{} device frames", out.len());
        let hz = zero_crossing_hz(&out[2000..20_000], 44_100);
        assert!((hz - 1000.0).abs() < 3.0, "{hz} Hz");
        assert_eq!(lock(&q).underruns(), 0);
    }

    #[test]
    fn renderer_drops_what_it_holds_on_flush() {
        let q = Mutex::new(Queue::new(Duration::from_millis(60)));
        let mut r = Renderer::new(48_000).expect("renderer");
        lock(&q).push(&tone(1000));
        let (_, played) = run(&q, &mut r, 20); // 20 × 441 frames at 48 kHz ≈ 184 ms
        assert!(played.abs_diff(4410) <= 24, "{played}");
        lock(&q).flush();
        let (after, more) = run(&q, &mut r, 5);
        assert!(after.is_empty());
        assert_eq!(more, 0);
        // Played plus dropped is the whole second: the timeline is consistent.
        assert_eq!(played + lock(&q).dropped, 24_000);
        // A new item starts cleanly.
        let at = lock(&q).push(&tone(100));
        assert_eq!(at, 24_000);
        lock(&q).finish();
        let (_, p) = run(&q, &mut r, 20);
        assert_eq!(p, 2400);
    }

    #[test]
    fn renderer_counts_underruns_and_goes_idle() {
        let q = Mutex::new(Queue::new(Duration::from_millis(60)));
        let mut r = Renderer::new(24_000).expect("renderer");
        lock(&q).push(&tone(80));
        let mut buf = Vec::new();
        let first = r.render(&q, &AtomicU64::new(0), 441, &mut buf);
        assert_eq!(first.frames, 441);
        let mut idle = false;
        for _ in 0..10 {
            idle |= r.render(&q, &AtomicU64::new(0), 441, &mut buf).went_idle;
        }
        assert!(idle);
        assert_eq!(lock(&q).underruns(), 1);
    }
}
