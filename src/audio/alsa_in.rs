//! The microphone's reader: an ALSA capture PCM read on a thread of our own (`alsa-in`), in place of cpal's
//! input worker.
//!
//! Why not cpal's worker: through the ALSA pulse plugin (the `default` device on a PulseAudio desktop and in
//! the tests), cpal's capture worker busy-polls. The plugin wakes `poll()` as soon as PulseAudio holds a
//! period's worth of bytes, counting a fragment the previous read only half consumed; ALSA's `avail` does
//! not count that half, so it is still short of a period, and cpal polls again at once (about every 4 µs)
//! until the server's next fragment arrives: 5-12 ms on the test server, whose fragments come every 5 ms.
//! The shortfall drifts by a few dozen frames a period, so this happens every few periods whatever their
//! length: cpal's worker cost 1.4-2.5 % of a core in the benchmark window with 100 ms periods asked, and
//! 1.42, 1.38, 1.27 % (one run each) with 100, 200, 400 ms.
//!
//! This loop does what cpal does (poll, check `avail`, read one period, hand it to the callback; recover
//! overruns; report a vanished device) but, when it is woken short of a period, it sleeps for the missing
//! frames (at least 1 ms) instead of polling again, which delays a read by at most a millisecond past the
//! fragment that completes it. On a device whose wake-ups are exact (hardware, most plugins) that branch
//! never runs. Measured in the benchmark window: this thread about 0.3 % of a core (about 60 wake-ups a
//! second); the plugin's own `threaded-ml` thread, unchanged, 0.8 %.
//!
//! A turn that ends does not wait for its last period: while [`AlsaInput::flush`] is on, the reader hands
//! over what is readable as it comes, part of a period (the pulse plugin passes the server's fragments on as
//! they come), polling every 2 ms, so the chunk that reaches the key release is in a few milliseconds after
//! the gate closes instead of up to a period later (release → clip complete: p50 72 → 30 ms in
//! `benches/local.rs`, the 30 ms key debounce now nearly all of it). [`AlsaInput::end_flush`] goes back to
//! whole periods once the turn is complete.
//!
//! cpal still finds the device and its default configuration; only the stream is ours. The formats are the
//! ones the capture module converted before (8/16/32-bit integers, 32/64-bit floats, native endianness).

use crate::audio::AudioError;
use alsa::pcm::{Access, HwParams, IoFormat, PCM, State};
use alsa::poll::Descriptors;
use cpal::{ErrorKind, SampleFormat};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one `poll()` waits before the loop checks the PCM's state anyway.
const POLL_TIMEOUT_MS: i32 = 500;
/// While flushing, the reader looks for new frames this often (the device wakes `poll()` only for whole
/// periods).
const FLUSH_POLL_MS: i32 = 2;
/// After an error the loop waits this long before trying again (the pulse plugin fails every call at once
/// after the server went away; the caller decides when that means the device is lost).
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// What the stream was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Frames per read (the period ALSA granted, which may differ from the one asked for: the pulse plugin
    /// wants at least 3 periods per buffer, so a buffer of two asked periods becomes three shorter ones).
    pub(crate) period: usize,
}

/// A running capture stream. Dropping it stops the reader thread and closes the PCM.
pub(crate) struct AlsaInput {
    stop: Arc<AtomicBool>,
    /// On between [`AlsaInput::flush`] and [`AlsaInput::end_flush`]: read what is readable, even short of a
    /// period.
    flush: Arc<AtomicBool>,
    /// An eventfd in the reader's poll set: written to on drop, so that it does not wait for the timeout.
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    /// Dropped after the PCM is closed (see [`AlsaInput::hold`]).
    host: Option<cpal::Host>,
}

impl AlsaInput {
    /// Asks the reader to hand over what the device has now and then whatever comes, without waiting for
    /// whole periods, until [`AlsaInput::end_flush`]: a turn that just ended needs only the audio up to its
    /// end, which may sit in a part-filled period for up to a period (67 ms through the pulse plugin).
    pub(crate) fn flush(&self) {
        self.flush.store(true, Ordering::SeqCst);
        wake(&self.wake);
    }

    /// Back to whole periods (the turn is complete).
    pub(crate) fn end_flush(&self) {
        self.flush.store(false, Ordering::SeqCst);
    }

    /// Keeps a cpal host (and so cpal's reference to ALSA's global configuration, which cpal frees when its
    /// last host is dropped) for as long as the stream is open.
    pub(crate) fn hold(&mut self, host: cpal::Host) {
        self.host = Some(host);
    }
}

impl Drop for AlsaInput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        wake(&self.wake);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wakes the reader's `poll()`.
fn wake(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a valid u64 to an eventfd we own.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Opens `pcm` for capture at the device's `rate`/`channels`/`format`, asking for `period` frames per read
/// (`None`: the device's default), and starts the reader: `on_data` gets each period (interleaved) with the
/// time it was read, `on_error` every error (`ErrorKind::DeviceNotAvailable` when the device is gone; the
/// reader then stops).
pub(crate) fn start(
    pcm: &str,
    rate: u32,
    channels: u16,
    format: SampleFormat,
    period: Option<u32>,
    on_data: impl FnMut(Data<'_>, Instant) + Send + 'static,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<(AlsaInput, Opened), AudioError> {
    match format {
        SampleFormat::F32 => typed::<f32>(pcm, rate, channels, period, on_data, on_error),
        SampleFormat::I16 => typed::<i16>(pcm, rate, channels, period, on_data, on_error),
        SampleFormat::U16 => typed::<u16>(pcm, rate, channels, period, on_data, on_error),
        SampleFormat::I32 => typed::<i32>(pcm, rate, channels, period, on_data, on_error),
        SampleFormat::U32 => typed::<u32>(pcm, rate, channels, period, on_data, on_error),
        SampleFormat::I8 => typed::<i8>(pcm, rate, channels, period, on_data, on_error),
        SampleFormat::U8 => typed::<u8>(pcm, rate, channels, period, on_data, on_error),
        SampleFormat::F64 => typed::<f64>(pcm, rate, channels, period, on_data, on_error),
        other => Err(AudioError::Unsupported(format!("sample format {other}"))),
    }
}

/// One period of interleaved samples, in the device's format.
pub(crate) enum Data<'a> {
    F32(&'a [f32]),
    I16(&'a [i16]),
    U16(&'a [u16]),
    I32(&'a [i32]),
    U32(&'a [u32]),
    I8(&'a [i8]),
    U8(&'a [u8]),
    F64(&'a [f64]),
}

/// A sample type the reader can hand out.
trait Sample: IoFormat + Default + Send + 'static {
    fn data(buf: &[Self]) -> Data<'_>;
}

macro_rules! sample {
    ($t:ty, $v:ident) => {
        impl Sample for $t {
            fn data(buf: &[Self]) -> Data<'_> {
                Data::$v(buf)
            }
        }
    };
}
sample!(f32, F32);
sample!(i16, I16);
sample!(u16, U16);
sample!(i32, I32);
sample!(u32, U32);
sample!(i8, I8);
sample!(u8, U8);
sample!(f64, F64);

fn open_error(what: &str, e: alsa::Error) -> AudioError {
    let msg = format!("{what}: {e}");
    match e.errno() {
        libc::EBUSY | libc::EAGAIN => AudioError::Busy(msg),
        libc::EINVAL => AudioError::Unsupported(msg),
        _ => AudioError::NoDevice(msg),
    }
}

fn typed<T: Sample>(
    name: &str,
    rate: u32,
    channels: u16,
    period: Option<u32>,
    on_data: impl FnMut(Data<'_>, Instant) + Send + 'static,
    on_error: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<(AlsaInput, Opened), AudioError> {
    let pcm = PCM::new(name, alsa::Direction::Capture, true).map_err(|e| open_error("opening the PCM", e))?;
    {
        let hw = HwParams::any(&pcm).map_err(|e| open_error("hw params", e))?;
        hw.set_access(Access::RWInterleaved).map_err(|e| open_error("access", e))?;
        hw.set_format(T::FORMAT).map_err(|e| open_error("sample format", e))?;
        hw.set_rate(rate, alsa::ValueOr::Nearest).map_err(|e| open_error("rate", e))?;
        hw.set_channels(u32::from(channels)).map_err(|e| open_error("channels", e))?;
        if let Some(p) = period {
            // As cpal does: a buffer of two periods asked for, then the period nearest the one wanted.
            let p = alsa::pcm::Frames::from(p);
            hw.set_buffer_size_near(2 * p).map_err(|e| open_error("buffer size", e))?;
            hw.set_period_size_near(p, alsa::ValueOr::Nearest).map_err(|e| open_error("period size", e))?;
        }
        pcm.hw_params(&hw).map_err(|e| open_error("applying hw params", e))?;
    }
    let (_, period) = pcm.get_params().map_err(|e| open_error("reading back the period", e))?;
    let period = usize::try_from(period).unwrap_or(0).max(1);
    {
        let sw = pcm.sw_params_current().map_err(|e| open_error("sw params", e))?;
        sw.set_start_threshold(1).map_err(|e| open_error("start threshold", e))?;
        sw.set_avail_min(period as alsa::pcm::Frames).map_err(|e| open_error("avail min", e))?;
        pcm.sw_params(&sw).map_err(|e| open_error("applying sw params", e))?;
    }
    // Checked here so that the reader's reads cannot fail on the format.
    pcm.io_checked::<T>().map_err(|e| open_error("sample format", e))?;
    pcm.prepare().map_err(|e| open_error("prepare", e))?;
    pcm.start().map_err(|e| open_error("start", e))?;

    // SAFETY: eventfd returns a new descriptor (or -1, checked) that nothing else owns.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(AudioError::Backend(format!("eventfd: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: `fd` is a fresh, valid descriptor owned by nobody else.
    let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
    let stop = Arc::new(AtomicBool::new(false));
    let flush = Arc::new(AtomicBool::new(false));
    let reader =
        Reader { pcm, period, channels: usize::from(channels.max(1)), rate, stop: stop.clone(), flush: flush.clone() };
    let wake_fd = wake.clone();
    let thread = std::thread::Builder::new()
        .name("alsa-in".into())
        .spawn(move || reader.run::<T>(&wake_fd, on_data, on_error))
        .map_err(|e| AudioError::Backend(format!("spawning the capture thread: {e}")))?;
    Ok((AlsaInput { stop, flush, wake, thread: Some(thread), host: None }, Opened { period }))
}

struct Reader {
    pcm: PCM,
    period: usize,
    channels: usize,
    rate: u32,
    stop: Arc<AtomicBool>,
    flush: Arc<AtomicBool>,
}

/// What one turn of the loop found.
enum Step {
    /// Nothing to do yet; wait this long before polling again (zero: poll at once).
    Wait(Duration),
    /// A period was read.
    Read,
    /// This many frames, less than a period, were read while flushing ([`AlsaInput::flush`]).
    ReadPart(usize),
    /// The device is gone: report and stop.
    Gone(String),
}

impl Reader {
    fn run<T: Sample>(
        self,
        wake: &OwnedFd,
        mut on_data: impl FnMut(Data<'_>, Instant),
        mut on_error: impl FnMut(cpal::Error),
    ) {
        let mut buf = vec![T::default(); self.period * self.channels];
        let mut fds = vec![libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        match self.pcm.get() {
            Ok(pcm_fds) => fds.extend(pcm_fds),
            Err(e) => {
                on_error(cpal::Error::with_message(ErrorKind::DeviceNotAvailable, format!("poll descriptors: {e}")));
                return;
            }
        }
        while !self.stop.load(Ordering::SeqCst) {
            let step = match self.step(&mut fds, &mut buf) {
                Ok(step) => step,
                Err(e) => {
                    on_error(e);
                    Step::Wait(ERROR_BACKOFF)
                }
            };
            match step {
                Step::Read => on_data(T::data(&buf), Instant::now()),
                Step::ReadPart(frames) => on_data(T::data(&buf[..frames * self.channels]), Instant::now()),
                Step::Wait(d) if !d.is_zero() => std::thread::sleep(d),
                Step::Wait(_) => {}
                Step::Gone(why) => {
                    on_error(cpal::Error::with_message(ErrorKind::DeviceNotAvailable, why));
                    return;
                }
            }
        }
    }

    fn step<T: Sample>(&self, fds: &mut [libc::pollfd], buf: &mut [T]) -> Result<Step, cpal::Error> {
        let flushing = self.flush.load(Ordering::SeqCst);
        let timeout = if flushing { FLUSH_POLL_MS } else { POLL_TIMEOUT_MS };
        let ready = alsa::poll::poll(fds, timeout).map_err(|e| backend("poll", e))?;
        if fds[0].revents != 0 {
            // Woken to stop (the loop checks the flag) or to flush. The eventfd is read so that it stops
            // waking the poll.
            let mut count: u64 = 0;
            // SAFETY: reading 8 bytes into a valid u64 from a non-blocking eventfd we hold.
            unsafe { libc::read(fds[0].fd, (&mut count as *mut u64).cast(), 8) };
            if flushing && !self.stop.load(Ordering::SeqCst) {
                return self.read_part(buf);
            }
            return Ok(Step::Wait(Duration::ZERO));
        }
        if ready == 0 && flushing {
            return self.read_part(buf);
        }
        if ready == 0 {
            // No event for a while: look at the state in case an error was not signalled.
            return match self.pcm.state() {
                State::Disconnected => Ok(Step::Gone("device disconnected".into())),
                State::XRun => self.recover(libc::EPIPE),
                State::Suspended => self.recover(libc::ESTRPIPE),
                _ => Ok(Step::Wait(Duration::ZERO)),
            };
        }
        let revents = self.pcm.revents(&fds[1..]).map_err(|e| backend("poll revents", e))?;
        if revents.intersects(alsa::poll::Flags::HUP | alsa::poll::Flags::NVAL) {
            return Ok(Step::Gone("device disconnected".into()));
        }
        if revents.is_empty() {
            // A wake-up with nothing to do (the plugin's descriptor fired early): do not spin on it.
            return Ok(Step::Wait(Duration::from_millis(1)));
        }
        let avail = match self.pcm.avail_update() {
            Ok(a) => usize::try_from(a).unwrap_or(0),
            Err(e) if matches!(e.errno(), libc::EPIPE | libc::ESTRPIPE) => return self.recover(e.errno()),
            Err(e) => return Err(backend("avail", e)),
        };
        if avail < self.period && flushing {
            return self.read_part(buf);
        }
        if avail < self.period {
            // Woken short of a period (see the module docs): sleep for the missing frames.
            let missing = (self.period - avail) as u64;
            let wait = Duration::from_micros(missing * 1_000_000 / u64::from(self.rate.max(1)));
            let period = Duration::from_micros(self.period as u64 * 1_000_000 / u64::from(self.rate.max(1)));
            return Ok(Step::Wait(wait.clamp(Duration::from_millis(1), period.max(Duration::from_millis(1)))));
        }
        let io = self.pcm.io_checked::<T>().map_err(|e| backend("sample format", e))?;
        let mut got = 0;
        while got < self.period {
            match io.readi(&mut buf[got * self.channels..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.errno() == libc::EAGAIN && got == 0 => return Ok(Step::Wait(Duration::from_millis(1))),
                Err(e) if matches!(e.errno(), libc::EPIPE | libc::ESTRPIPE | libc::EAGAIN) => {
                    return self.recover(e.errno());
                }
                Err(e) => return Err(backend("read", e)),
            }
        }
        Ok(if got == self.period { Step::Read } else { Step::Wait(Duration::from_millis(1)) })
    }

    /// A flush: what is readable now, up to a period, without waiting for more.
    fn read_part<T: Sample>(&self, buf: &mut [T]) -> Result<Step, cpal::Error> {
        let avail = match self.pcm.avail_update() {
            Ok(a) => usize::try_from(a).unwrap_or(0).min(self.period),
            Err(e) if matches!(e.errno(), libc::EPIPE | libc::ESTRPIPE) => return self.recover(e.errno()),
            Err(e) => return Err(backend("avail", e)),
        };
        if avail == 0 {
            return Ok(Step::Wait(Duration::ZERO));
        }
        let io = self.pcm.io_checked::<T>().map_err(|e| backend("sample format", e))?;
        match io.readi(&mut buf[..avail * self.channels]) {
            Ok(n) if n == self.period => Ok(Step::Read),
            Ok(n) if n > 0 => Ok(Step::ReadPart(n)),
            Ok(_) => Ok(Step::Wait(Duration::ZERO)),
            Err(e) if e.errno() == libc::EAGAIN => Ok(Step::Wait(Duration::ZERO)),
            Err(e) if matches!(e.errno(), libc::EPIPE | libc::ESTRPIPE) => self.recover(e.errno()),
            Err(e) => Err(backend("read", e)),
        }
    }

    /// Overrun (`EPIPE`, or a short read) or suspend (`ESTRPIPE`): counted as an error, then the stream is
    /// restarted. A stream that cannot be restarted is gone.
    fn recover(&self, errno: i32) -> Result<Step, cpal::Error> {
        if errno == libc::ESTRPIPE {
            loop {
                match self.pcm.resume() {
                    Ok(()) => break,
                    Err(e) if e.errno() == libc::EAGAIN => std::thread::sleep(ERROR_BACKOFF),
                    Err(_) => break,
                }
                if self.stop.load(Ordering::SeqCst) {
                    return Ok(Step::Wait(Duration::ZERO));
                }
            }
        }
        if let Err(e) = self.pcm.prepare().and_then(|_| self.pcm.start()) {
            return Ok(Step::Gone(format!("restarting after an overrun failed: {e}")));
        }
        Err(cpal::Error::with_message(ErrorKind::Xrun, if errno == libc::ESTRPIPE { "suspended" } else { "overrun" }))
    }
}

fn backend(what: &str, e: alsa::Error) -> cpal::Error {
    cpal::Error::with_message(ErrorKind::BackendError, format!("{what}: {e}"))
}
