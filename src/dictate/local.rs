//! Local dictation: whisper.cpp (through `whisper-rs`) on this machine, with no key and no network.
//!
//! Why it is shaped like this:
//! - **One thread owns the model** (`dictate-local`, [`spawn`]): a loaded model is 100-2000 MB and loading it
//!   takes a noticeable fraction of a second, so it is loaded once, at the first dictation (or when the daemon
//!   starts, with `dictate.preload`), kept while dictations come, and dropped after `dictate.model_idle_min`
//!   without one. The thread waits on its queue with that idle deadline (its own timer, never the loop's);
//!   clips are served in order, like the upload thread's. It reports facts to the loop as
//!   [`DictationEvent`]s and touches no daemon state.
//! - **A clip-sized audio context** ([`audio_ctx`]): whisper.cpp normally encodes a 30 s window whatever the
//!   clip's length; telling it how long the clip is (50 encoder frames per second, plus a margin) makes a 2 s
//!   dictation several times faster. Too small a context gives garbage, hence the margin; clips of nearly 30 s
//!   or more use the full window.
//! - **Audio as whisper wants it** ([`prepare`]): the spooled WAV (24 kHz PCM16) is resampled to 16 kHz f32 with
//!   the same band-limited resampler as the microphone path, and padded with silence to at least 1 s (shorter
//!   input is refused by whisper.cpp).
//! - **The vocabulary as the initial prompt**, not the recent dictations the cloud gets (given its own last
//!   transcript, tiny.en repeats it: one sentence dictated twice came back fourteen times), `dictate.language` (an English-only model is always asked for
//!   English; a multilingual one detects the language when none or several are set), at most 8 tokens per second
//!   of audio and no temperature fallback, so a clip that makes the model loop costs one bounded decode.
//!   Threads: the cores that are free.
//! - **A broken model is a clear error at load** ([`Model::load`]): the file is checked to start like a ggml
//!   model, and whisper.cpp's own complaint (for example "not all tensors loaded" for a truncated file) is put
//!   in the message. The clip is then kept in `failed/` like any failed transcription, and the model is loaded
//!   again at the next attempt, so a fixed file works with `ptt dictate retry` without a restart.
//! - **whisper.cpp's log** goes to ours: errors and warnings only (its info lines describe every tensor).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

use super::transcribe::Failure;
use super::worker::DictationEvent;

/// whisper.cpp's sample rate.
pub(crate) const RATE: u32 = 16_000;
/// Shorter input is padded with silence (whisper.cpp refuses very short input).
const MIN_SAMPLES: usize = RATE as usize;

/// The smallest context used: shorter ones made tiny.en loop on short clips with a prompt ("Send the reports
/// on Friday." five times for a 1.8 s clip with a 160-frame context); voxtype found the same and uses 384.
const MIN_AUDIO_CTX: u64 = 384;

/// The encoder context for `samples` of 16 kHz audio: 50 frames a second, a margin of 64 frames (1.3 s), at
/// least [`MIN_AUDIO_CTX`], rounded up to a multiple of 8; 0 (the model's full 30 s window) for clips of 28 s or
/// more.
pub(crate) fn audio_ctx(samples: usize) -> i32 {
    let frames = (samples as u64 * 50).div_ceil(u64::from(RATE));
    if frames >= 28 * 50 {
        return 0;
    }
    ((frames + 64).max(MIN_AUDIO_CTX).div_ceil(8) * 8).min(1500) as i32
}

/// The context of the second decode after the first looped with `ctx`: twice as wide, or the full window.
pub(crate) fn wider_audio_ctx(ctx: i32) -> i32 {
    if ctx == 0 || ctx * 2 >= 1500 { 0 } else { ctx * 2 }
}

/// The most tokens a clip of `samples` at 16 kHz may produce: 8 a second (speech gives 3-5) plus 16.
pub fn max_tokens(samples: usize) -> i32 {
    ((samples as u64 * 8).div_ceil(u64::from(RATE)) + 16).min(224) as i32
}

/// A spooled clip as whisper.cpp wants it: 16 kHz mono f32, at least one second long.
pub fn prepare(wav: &[u8]) -> Result<Vec<f32>, String> {
    let (samples, rate) = super::wav::decode(wav).map_err(|e| format!("the clip cannot be read: {e}"))?;
    let floats: Vec<f32> = samples.iter().map(|s| f32::from(*s) / 32768.0).collect();
    let mut out = Vec::with_capacity(floats.len() * RATE as usize / rate as usize + RATE as usize);
    let mut resampler = crate::audio::resample::MonoResampler::new(rate, RATE).map_err(|e| e.to_string())?;
    resampler.process(&floats, &mut out);
    resampler.finish(&mut out);
    if out.len() < MIN_SAMPLES {
        out.resize(MIN_SAMPLES, 0.0);
    }
    Ok(out)
}

/// The most threads whisper.cpp is given when `dictate.threads` is not set: whisper.cpp's own default
/// (`min(4, cores)`); a tiny model gains little from more, and every extra thread spins at ggml's barriers.
const MAX_AUTO_THREADS: usize = 4;

/// How long the runnable count is sampled before a transcription, and how often within that window.
const RUNNABLE_WINDOW: Duration = Duration::from_millis(6);
const RUNNABLE_SAMPLES: u32 = 7;

/// The threads whisper.cpp uses: `dictate.threads` when set, else the cores that are free right now (see
/// [`free_cores`]), at most [`MAX_AUTO_THREADS`]. ggml's worker threads spin at their barriers, so one more
/// thread than there are free cores is much slower, not a little faster: measured 1.3 s with one thread
/// against 16 s with two on 2 cores busy with other work, for the same clip.
///
/// "Free right now" is the kernel's count of runnable threads (`/proc/loadavg`'s fourth field, the same
/// number as `/proc/stat`'s `procs_running`), averaged over a few milliseconds, less the caller. The 1-minute
/// load average, used before, lags both ways: a minute after a build it still says one core is busy (one
/// thread on an idle machine), and as a build starts it still says idle.
pub fn threads(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    free_cores(cores, others_runnable()).min(MAX_AUTO_THREADS)
}

/// The threads other than the caller that are runnable (running or waiting for a core), averaged over
/// [`RUNNABLE_WINDOW`]; `None` when `/proc/loadavg` cannot be read.
#[doc(hidden)]
pub fn others_runnable() -> Option<f64> {
    let mut sum = 0.0;
    for i in 0..RUNNABLE_SAMPLES {
        if i > 0 {
            std::thread::sleep(RUNNABLE_WINDOW / (RUNNABLE_SAMPLES - 1));
        }
        // The caller is running while it reads, so it is always one of the count.
        sum += runnable(&std::fs::read_to_string("/proc/loadavg").ok()?)?.saturating_sub(1) as f64;
    }
    Some(sum / f64::from(RUNNABLE_SAMPLES))
}

/// The runnable count of a `/proc/loadavg` line ("0.52 0.71 1.20 3/147 29750": 3).
pub(crate) fn runnable(loadavg: &str) -> Option<usize> {
    loadavg.split_whitespace().nth(3)?.split_once('/')?.0.parse().ok()
}

/// The cores left when `others` threads (on average) want one: `cores` less `others` rounded, at least one.
/// Unknown (`None`) is treated as busy: one thread.
pub(crate) fn free_cores(cores: usize, others: Option<f64>) -> usize {
    match others {
        Some(o) if o.is_finite() && o >= 0.0 => cores.saturating_sub(o.round() as usize).clamp(1, cores.max(1)),
        _ => 1,
    }
}

/// True when a transcript repeats itself the way a looping decoder does: the same run of three or more words
/// three times in a row ("Send the report on Friday. Send the report on Friday. Send the report on Friday."),
/// or of one or two words four times. People do say "no, no" or a sentence twice; a decoder stuck in a loop
/// goes on until its token limit, which [`Transcript::looped`] also checks.
pub fn looks_looped(text: &str) -> bool {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    (1..=words.len() / 2).any(|n| {
        let copies = if n >= 3 { 3 } else { 4 };
        (0..words.len()).any(|start| {
            start + n * copies <= words.len()
                && (1..copies).all(|c| words[start..start + n] == words[start + c * n..start + (c + 1) * n])
        })
    })
}

/// `text` with each run of a repeated phrase kept once ("42. 42. 42. 42" → "42."), and a cut-off copy at the
/// end dropped: the last resort for a decode that looped at two context sizes.
pub(crate) fn collapse_repeats(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let norm: Vec<String> =
        words.iter().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()).collect();
    // Where the copies of the `n` words at `i` end: whole copies, then a cut-off one at the very end.
    let copies_end = |i: usize, n: usize| {
        let mut j = i + n;
        while j < words.len() {
            let m = n.min(words.len() - j);
            if norm[j..j + m] != norm[i..i + m] {
                break;
            }
            j += m;
        }
        j
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        // The phrase here whose copies reach furthest (the shortest of equals: "42 42 42 42" is "42").
        let best = (1..=(words.len() - i) / 2)
            .filter(|&n| norm[i..i + n] == norm[i + n..i + 2 * n])
            .map(|n| (copies_end(i, n), n))
            .fold(None, |best: Option<(usize, usize)>, (end, n)| match best {
                Some((e, _)) if e >= end => best,
                _ => Some((end, n)),
            });
        match best {
            Some((end, n)) => {
                kept.extend(&words[i..i + n]);
                i = end;
            }
            None => {
                kept.push(words[i]);
                i += 1;
            }
        }
    }
    kept.join(" ")
}

/// The language to ask whisper for: the one of `dictate.language`, or none (detect) when it lists none or
/// several.
pub(crate) fn one_language(languages: &[String]) -> Option<String> {
    match languages {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The loudest 20 ms of a clip at or below this RMS (-54 dBFS, under any microphone's noise floor with speech
/// in it) is silence: whisper would invent a word ("you") for it, so it is not transcribed.
const SILENCE_RMS: f32 = 0.002;

/// True when the clip has something louder than silence in it.
pub fn has_sound(pcm: &[f32]) -> bool {
    pcm.chunks(RATE as usize / 50).any(|frame| crate::audio::analysis::rms(frame) > SILENCE_RMS)
}

/// whisper.cpp's recent error lines (its load errors explain what is wrong with a file).
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOG_HOOK: Once = Once::new();

unsafe extern "C" fn whisper_log(level: std::ffi::c_uint, text: *const std::ffi::c_char, _: *mut std::ffi::c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: whisper.cpp passes a NUL-terminated string that lives for the call.
    let text = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy();
    let text = text.trim_end();
    match whisper_rs::GGMLLogLevel::from(level) {
        whisper_rs::GGMLLogLevel::Error => {
            log::debug!("whisper.cpp: {text}");
            if let Ok(mut errors) = ERRORS.lock() {
                if errors.len() >= 8 {
                    errors.remove(0);
                }
                errors.push(text.to_string());
            }
        }
        whisper_rs::GGMLLogLevel::Warn => log::warn!("whisper.cpp: {text}"),
        _ => {}
    }
}

fn install_log_hook() {
    LOG_HOOK.call_once(|| {
        // SAFETY: the callback neither panics nor unwinds; it lives for the whole program.
        unsafe { whisper_rs::set_log_callback(Some(whisper_log), std::ptr::null_mut()) };
    });
}

/// A loaded model.
pub struct Model {
    ctx: WhisperContext,
    /// whisper.cpp's working memory for a transcription (KV caches, compute buffers sized for the full 30 s
    /// window, so any audio context fits), made at load and reused: making it took 10-20 ms and freeing it
    /// 1-4 ms of every dictation (measured at load 4). It stays while the model does (about 30 MB).
    state: Option<WhisperState>,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    /// The file's modification time at load: a replaced file is loaded again.
    modified: Option<SystemTime>,
    pub load_time: Duration,
    pub multilingual: bool,
}

/// One transcription's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    pub took: Duration,
    pub audio_ctx: i32,
    /// whisper's probability that the clip holds no speech (the highest of its segments).
    pub(crate) no_speech: f32,
    /// Tokens decoded (all segments); reaching [`max_tokens`] means the decode was cut off.
    pub tokens: usize,
    /// The first decode looped and this is the second, with a wider context ([`Model::transcribe`]).
    pub retried: bool,
}

impl Transcript {
    /// The decode looped: it repeats itself ([`looks_looped`]) or ran into the token limit of a clip of
    /// `samples` (which speech does not reach: the limit is twice the fastest speech).
    pub fn looped(&self, samples: usize) -> bool {
        looks_looped(&self.text) || self.tokens >= max_tokens(samples) as usize
    }
}

fn new_state(ctx: &WhisperContext) -> Result<WhisperState, String> {
    ctx.create_state().map_err(|e| format!("whisper.cpp cannot start a transcription: {e}"))
}

fn stamp(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok()))
}

impl Model {
    /// Loads a ggml model; a missing, foreign, damaged or truncated file is a clear error.
    pub fn load(path: &Path) -> Result<Model, String> {
        install_log_hook();
        let started = Instant::now();
        let shown = path.display();
        if let Err(e) = std::fs::metadata(path)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            return Err(format!("the model {shown} does not exist: {}", super::engine::GET_A_MODEL));
        }
        let info = super::model_store::check_file(path)?;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let utf8 = path.to_str().ok_or_else(|| format!("the model path {shown} is not UTF-8"))?;
        if let Ok(mut e) = ERRORS.lock() {
            e.clear();
        }
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(utf8, params).map_err(|e| {
            let said = ERRORS.lock().map(|e| e.join("; ")).unwrap_or_default();
            let said = if said.is_empty() { String::new() } else { format!(": {said}") };
            format!(
                "whisper.cpp cannot load {shown} ({e}){said}; the file is damaged or truncated ({}): \
                 download it again with `ptt model download NAME`",
                super::model_store::human_bytes(info.bytes)
            )
        })?;
        let multilingual = ctx.is_multilingual();
        let state = new_state(&ctx)?;
        Ok(Model {
            ctx,
            state: Some(state),
            path: path.to_path_buf(),
            bytes: info.bytes,
            modified,
            load_time: started.elapsed(),
            multilingual,
        })
    }

    /// True when `path` is this model's file as it was loaded.
    fn is(&self, path: &Path) -> bool {
        self.path == path && stamp(path) == Some((self.bytes, self.modified))
    }

    /// Transcribes 16 kHz mono audio (from [`prepare`]).
    pub fn transcribe(
        &mut self,
        pcm: &[f32],
        prompt: Option<&str>,
        language: Option<&str>,
        threads: usize,
    ) -> Result<Transcript, String> {
        let ctx = audio_ctx(pcm.len());
        let first = self.transcribe_with_audio_ctx(pcm, prompt, language, threads, ctx)?;
        if !first.looped(pcm.len()) {
            return Ok(first);
        }
        // A loop is a property of this context size, not of the clip: a wider one decodes it properly (a
        // 1 s "forty two" looped at 384 and 512 frames and was "42." at 768 and 1500).
        let wider = wider_audio_ctx(ctx);
        let mut second = self.transcribe_with_audio_ctx(pcm, prompt, language, threads, wider)?;
        second.took += first.took;
        second.retried = true;
        if second.looped(pcm.len()) {
            log::warn!(
                "dictation: whisper.cpp repeated itself with audio_ctx {ctx} and again with {wider}; \
                 the repetition is collapsed"
            );
            second.text = collapse_repeats(&second.text);
        } else {
            log::info!("dictation: whisper.cpp repeated itself with audio_ctx {ctx}; decoded again with {wider}");
        }
        Ok(second)
    }

    /// [`Model::transcribe`] with a given audio context (in 20 ms frames; 0 = the full 30 s window): for
    /// `benches/local.rs`, which measures what the [`MIN_AUDIO_CTX`] floor costs against a clip-sized one.
    #[doc(hidden)]
    pub fn transcribe_with_audio_ctx(
        &mut self,
        pcm: &[f32],
        prompt: Option<&str>,
        language: Option<&str>,
        threads: usize,
        ctx: i32,
    ) -> Result<Transcript, String> {
        let started = Instant::now();
        // The state is taken for this transcription and put back after it; one that failed is not reused.
        let mut state = match self.state.take() {
            Some(state) => state,
            None => new_state(&self.ctx)?,
        };
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(threads.max(1) as i32);
        params.set_audio_ctx(ctx);
        // A dictation is one utterance: one segment, no timestamps, no carried context beyond our prompt.
        params.set_single_segment(ctx != 0);
        params.set_no_timestamps(true);
        // At most ~8 tokens per second of audio (speech is 3-5), and no temperature fallback (up to 5 more
        // decodes of a looping transcript): a bad clip costs one bounded decode, never tens of seconds.
        params.set_max_tokens(max_tokens(pcm.len()));
        params.set_temperature_inc(0.0);
        params.set_no_context(true);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        let language = if self.multilingual { language.unwrap_or("auto") } else { "en" };
        params.set_language(Some(language));
        if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
            params.set_initial_prompt(p);
        }
        state.full(params, pcm).map_err(|e| format!("whisper.cpp failed to transcribe: {e}"))?;
        let mut text = String::new();
        let mut no_speech: f32 = 0.0;
        let mut tokens = 0;
        for segment in state.as_iter() {
            no_speech = no_speech.max(segment.no_speech_probability());
            tokens += usize::try_from(segment.n_tokens()).unwrap_or(0);
            text.push_str(&segment.to_str_lossy().map_err(|e| format!("whisper.cpp gave no text: {e}"))?);
        }
        self.state = Some(state);
        Ok(Transcript {
            text: text.trim().to_string(),
            took: started.elapsed(),
            audio_ctx: ctx,
            no_speech,
            tokens,
            retried: false,
        })
    }
}

/// A clip for the local model.
#[derive(Debug, Clone)]
pub(crate) struct LocalJob {
    pub(crate) id: String,
    pub(crate) wav: Arc<Vec<u8>>,
    pub(crate) model: PathBuf,
    pub(crate) prompt: Option<String>,
    pub(crate) language: Option<String>,
    /// When the dictation passed each stage so far.
    pub(crate) timing: super::worker::Timing,
    /// Unload the model after this long without a clip (`None`: keep it).
    pub(crate) idle: Option<Duration>,
    /// `dictate.threads` (0: the free cores).
    pub(crate) threads: usize,
}

/// What the `dictate-local` thread is asked to do.
#[derive(Debug, Clone)]
pub(crate) enum LocalMsg {
    Transcribe(Box<LocalJob>),
    /// Load now (`dictate.preload`), so the first dictation does not wait for it.
    Preload {
        model: PathBuf,
        idle: Option<Duration>,
    },
}

/// What happened to the model (for `ptt status`, the journal, and tests that wait for facts).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ModelEvent {
    Loaded { path: PathBuf, bytes: u64, load_ms: u64 },
    Unloaded { path: PathBuf },
    LoadFailed { path: PathBuf, error: String },
}

/// Starts the `dictate-local` thread; its reports go to `to_loop`.
pub(crate) fn spawn(to_loop: Sender<DictationEvent>) -> std::io::Result<Sender<LocalMsg>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new().name("dictate-local".into()).spawn(move || run(&rx, &to_loop))?;
    Ok(tx)
}

fn run(rx: &Receiver<LocalMsg>, to_loop: &Sender<DictationEvent>) {
    let mut model: Option<Model> = None;
    let mut idle: Option<Duration> = None;
    let mut last_used = Instant::now();
    loop {
        let msg = match (&model, idle) {
            (Some(_), Some(idle)) => match rx.recv_deadline(last_used + idle) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(m) = model.take() {
                        log::info!(
                            "dictation: local model unloaded after {:.0} idle minute(s)",
                            idle.as_secs_f64() / 60.0
                        );
                        let _ = to_loop.send(DictationEvent::Model(ModelEvent::Unloaded { path: m.path.clone() }));
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
            _ => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        let event = match msg {
            LocalMsg::Preload { model: path, idle: i } => {
                idle = i;
                let _ = ensure_loaded(&mut model, &path, to_loop);
                None
            }
            LocalMsg::Transcribe(job) => {
                idle = job.idle;
                Some(transcribe_job(&mut model, *job, to_loop))
            }
        };
        last_used = Instant::now();
        if let Some(e) = event
            && to_loop.send(e).is_err()
        {
            return;
        }
    }
}

/// The model at `path`, loading it (again) when needed; load reports go to the loop.
fn ensure_loaded<'m>(
    model: &'m mut Option<Model>,
    path: &Path,
    to_loop: &Sender<DictationEvent>,
) -> Result<&'m mut Model, String> {
    if !model.as_ref().is_some_and(|m| m.is(path)) {
        // Drop the old one first: two models need not fit in memory at once.
        *model = None;
        match Model::load(path) {
            Ok(m) => {
                log::info!(
                    "dictation: local model {} ({}) loaded in {} ms",
                    path.display(),
                    super::model_store::human_bytes(m.bytes),
                    m.load_time.as_millis()
                );
                let _ = to_loop.send(DictationEvent::Model(ModelEvent::Loaded {
                    path: path.to_path_buf(),
                    bytes: m.bytes,
                    load_ms: m.load_time.as_millis() as u64,
                }));
                *model = Some(m);
            }
            Err(error) => {
                log::error!("dictation: {error}");
                let _ = to_loop.send(DictationEvent::Model(ModelEvent::LoadFailed {
                    path: path.to_path_buf(),
                    error: error.clone(),
                }));
                return Err(error);
            }
        }
    }
    model.as_mut().ok_or_else(|| "no model".to_string())
}

fn transcribe_job(model: &mut Option<Model>, job: LocalJob, to_loop: &Sender<DictationEvent>) -> DictationEvent {
    let mut timing = job.timing;
    let failed = |message: String| DictationEvent::Failed {
        id: job.id.clone(),
        failure: Failure { message, status: None, attempts: 1 },
        wav: job.wav.clone(),
    };
    let pcm = match prepare(&job.wav) {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let m = match ensure_loaded(model, &job.model, to_loop) {
        Ok(m) => m,
        Err(e) => return failed(e),
    };
    if !has_sound(&pcm) {
        log::info!("dictation: {}: the clip is silent; nothing to transcribe", job.id);
        timing.transcribed = Some(Instant::now());
        return DictationEvent::Transcribed { id: job.id, text: String::new(), timing };
    }
    log::debug!("dictation: {}: local transcription, prompt {:?}", job.id, job.prompt.as_deref().unwrap_or(""));
    let threads = threads(job.threads);
    timing.engine_start = Some(Instant::now());
    match m.transcribe(&pcm, job.prompt.as_deref(), job.language.as_deref(), threads) {
        Ok(t) => {
            log::info!(
                "dictation: {} transcribed locally in {} ms ({:.1} s of audio, audio_ctx {}, {threads} threads)",
                job.id,
                t.took.as_millis(),
                pcm.len() as f64 / f64::from(RATE),
                t.audio_ctx,
            );
            timing.engine = Some(t.took);
            timing.transcribed = Some(Instant::now());
            DictationEvent::Transcribed { id: job.id, text: t.text, timing }
        }
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audio_context_follows_the_clip_with_a_margin() {
        // Short clips get the minimum (smaller contexts made the model loop).
        assert_eq!(audio_ctx(2 * 16_000), 384);
        assert_eq!(audio_ctx(1), 384);
        // A 7 s clip needs 350 frames: 256 gave garbage in measurements; this gives 416.
        assert_eq!(audio_ctx(7 * 16_000), 416);
        assert_eq!(audio_ctx(20 * 16_000), 1064);
        for secs in 1..28 {
            let ctx = audio_ctx(secs * 16_000);
            assert!(ctx as usize >= secs * 50 + 64 && ctx % 8 == 0 && ctx <= 1500, "{secs} s → {ctx}");
        }
        assert_eq!(audio_ctx(28 * 16_000), 0, "long clips use the full window");
        assert_eq!(audio_ctx(120 * 16_000), 0);
    }

    #[test]
    fn a_clip_becomes_16_khz_and_at_least_a_second() {
        // 2 s of a 440 Hz tone at 24 kHz → 2 s at 16 kHz, same loudness.
        let tone: Vec<i16> = (0..48_000)
            .map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / 24_000.0).sin() * 8000.0) as i16)
            .collect();
        let pcm = prepare(&crate::dictate::wav::encode(&tone, 24_000)).expect("prepare");
        assert!((pcm.len() as i64 - 32_000).abs() <= 16, "{}", pcm.len());
        let rms = (pcm[1000..31_000].iter().map(|s| s * s).sum::<f32>() / 30_000.0).sqrt();
        assert!((rms - 8000.0 / 32768.0 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
        // 0.3 s is padded to 1 s.
        let short = prepare(&crate::dictate::wav::encode(&tone[..7200], 24_000)).expect("prepare");
        assert_eq!(short.len(), 16_000);
        assert!(prepare(b"garbage").unwrap_err().contains("cannot be read"));
    }

    #[test]
    fn a_looping_transcript_is_recognised_and_collapsed() {
        for looped in [
            "42. 42. 42. 42. 42. 42. 42. 42. 42. 42. 42. 42. 42",
            "Send the reports on Friday. Send the reports on Friday. Send the reports on Friday.",
            "stop stop stop stop",
            "Yes. Yes. Yes. Yes.",
        ] {
            assert!(looks_looped(looped), "{looped}");
        }
        for speech in [
            "Please send the quarterly report before Friday afternoon.",
            "Yes, yes.",
            "No, no, no.",
            "Call me back. Call me back.",
            "It is very very good.",
            "The meeting is at half past nine tomorrow morning in the big room upstairs.",
            "",
            "No.",
        ] {
            assert!(!looks_looped(speech), "{speech}");
        }
        assert_eq!(collapse_repeats("42. 42. 42. 42. 42. 42. 42"), "42.");
        assert_eq!(
            collapse_repeats("Send the reports on Friday. Send the reports on Friday. Send the"),
            "Send the reports on Friday."
        );
        assert_eq!(collapse_repeats("It is very very good. It is very very good."), "It is very very good.");
        assert_eq!(collapse_repeats("Please send it."), "Please send it.");
        assert_eq!(collapse_repeats(""), "");
        assert_eq!(wider_audio_ctx(384), 768);
        assert_eq!(wider_audio_ctx(768), 0, "the full window");
        assert_eq!(wider_audio_ctx(0), 0);
    }

    #[test]
    fn tokens_are_bounded_by_the_clip() {
        assert_eq!(max_tokens(2 * 16_000), 32);
        assert_eq!(max_tokens(0), 16);
        assert_eq!(max_tokens(600 * 16_000), 224, "whisper's own limit for one window");
    }

    #[test]
    fn threads_follow_the_free_cores_and_silence_is_recognised() {
        assert_eq!(free_cores(2, Some(0.0)), 2, "an idle machine");
        assert_eq!(free_cores(2, Some(0.3)), 2, "a blip of another thread");
        assert_eq!(free_cores(2, Some(0.7)), 1);
        assert_eq!(free_cores(2, Some(1.0)), 1, "one busy loop");
        assert_eq!(free_cores(2, Some(14.0)), 1, "never fewer than one");
        assert_eq!(free_cores(8, Some(2.2)), 6);
        assert_eq!(free_cores(4, Some(f64::NAN)), 1, "unknown is busy");
        assert_eq!(free_cores(4, None), 1);
        assert_eq!(runnable("0.52 0.71 1.20 3/147 29750"), Some(3));
        assert_eq!(runnable("0.52 0.71 1.20"), None);
        assert_eq!(runnable("a b c x/1 2"), None);
        assert_eq!(threads(3), 3, "dictate.threads wins");
        assert!(!has_sound(&[0.0; 16_000]));
        assert!(!has_sound(&vec![0.001; 16_000]), "a quiet hiss is not speech");
        let mut blip = vec![0.0; 16_000];
        blip[8000..8320].fill(0.05);
        assert!(has_sound(&blip), "20 ms of sound is enough");
    }

    #[test]
    fn foreign_and_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = Model::load(&dir.path().join("ggml-none.bin")).err().expect("missing");
        assert!(missing.contains("does not exist") && missing.contains("ptt model download"), "{missing}");
        let html = dir.path().join("ggml-html.bin");
        std::fs::write(&html, b"<!doctype html><p>Not found</p>").expect("write");
        let e = Model::load(&html).err().expect("html");
        assert!(e.contains("is not a whisper.cpp model"), "{e}");
        let empty = dir.path().join("ggml-empty.bin");
        std::fs::write(&empty, b"").expect("write");
        assert!(Model::load(&empty).err().expect("empty").contains("is truncated"));
        // The right magic and a header that would make whisper.cpp allocate without bound: refused before it.
        let mut bad = b"lmgg".to_vec();
        for v in [51864i32, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1, 2_000_000_000, 2_000_000_000] {
            bad.extend_from_slice(&v.to_le_bytes());
        }
        let stub = dir.path().join("ggml-stub.bin");
        std::fs::write(&stub, &bad).expect("write");
        let e = Model::load(&stub).err().expect("stub");
        assert!(e.contains("is damaged: mel filters"), "{e}");
    }
}
