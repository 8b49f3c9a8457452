//! `ptt dictate`: dictation from a shell.
//!
//! - `ptt dictate --once` records from the microphone until Enter, the end of
//!   input, or the release of the push-to-talk key (when X11 or evdev can be
//!   read), transcribes, and prints the text on stdout: for scripts and SSH
//!   sessions, with no daemon needed. A clip that cannot be
//!   transcribed is kept like the daemon's, for `ptt dictate retry`. With the
//!   local engine the model loads on a helper thread while the user speaks.
//! - `ptt dictate retry` asks the daemon to send the kept clips again (their
//!   text is typed as it comes back); with no daemon running it transcribes
//!   them here and prints the text, oldest first.
//! - `ptt dictate list` shows the kept clips.

use std::time::{Duration, Instant};

use crate::audio::AudioEvent;
use crate::audio::capture::{Capture, CaptureConfig, Captured};
use crate::config::Config;
use crate::config::KeySource;
use crate::control::Request;
use crate::control::client::{self, ClientError};
use crate::dictate::engine::{self, Engine};
use crate::dictate::local;
use crate::dictate::spool::Spool;
use crate::dictate::transcribe::{self, Endpoint};
use crate::dictate::{model_store, vocabulary, wav};
use crate::hotkey::{Bindings, Chord, Key, KeyState, Source, SourceEvent};
use crate::paths::Paths;

const RATE: u32 = crate::audio::resample::API_RATE;

fn load_config(paths: &Paths) -> Result<Config, i32> {
    Config::load(&paths.config_file).map_err(|e| {
        eprintln!("ptt: config error: {e}");
        crate::daemon::EXIT_CONFIG
    })
}

fn hints(config: &Config, paths: &Paths) -> transcribe::Hints {
    let words = vocabulary::load(&config.dictate.vocabulary_path(paths)).unwrap_or_default();
    transcribe::Hints { words, recent: Vec::new(), languages: config.dictate.languages() }
}

/// Transcribes one WAV with the config's settings (a retired model is replaced after its date).
fn transcribe_wav(config: &Config, paths: &Paths, endpoint: &Endpoint, wav: &[u8]) -> Result<String, String> {
    let hints = hints(config, paths);
    let choice = crate::models::choose("dictate.model", &config.dictate.model, crate::models::Date::today());
    if let Some(w) = choice.warning() {
        eprintln!("ptt: {w}");
    }
    let req = transcribe::Request { wav, model: &choice.model, hints: &hints };
    transcribe::transcribe(endpoint, &req).map(|t| t.text).map_err(|f| f.to_string())
}

/// Who transcribes clips in this process: the API, or the local model (loaded once, on a helper thread so that
/// it loads while the user speaks).
enum Here {
    OpenAi(Endpoint),
    Local {
        path: std::path::PathBuf,
        loading: Option<std::thread::JoinHandle<Result<local::Model, String>>>,
        model: Option<Result<local::Model, String>>,
    },
}

impl Here {
    fn new(config: &Config, paths: &Paths) -> Result<Here, String> {
        let key = crate::secrets::load_key(&config.live, paths);
        match engine::choose(&config.dictate, &model_store::local_model(&config.dictate, paths), key)? {
            Engine::OpenAi(key) => Ok(Here::OpenAi(Endpoint::new(&config.dictate, key))),
            Engine::Local(path) => {
                let p = path.clone();
                let loading = std::thread::Builder::new()
                    .name("model-load".into())
                    .spawn(move || local::Model::load(&p))
                    .map_err(|e| format!("cannot start the model-load thread: {e}"))?;
                Ok(Here::Local { path, loading: Some(loading), model: None })
            }
        }
    }

    fn transcribe(&mut self, config: &Config, paths: &Paths, wav: &[u8]) -> Result<String, String> {
        match self {
            Here::OpenAi(endpoint) => transcribe_wav(config, paths, endpoint, wav),
            Here::Local { path, loading, model } => {
                if let Some(handle) = loading.take() {
                    *model = Some(handle.join().unwrap_or_else(|_| Err(format!("loading {} crashed", path.display()))));
                }
                let model = match model {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(e.clone()),
                    None => return Err(format!("{} was not loaded", path.display())),
                };
                let pcm = local::prepare(wav)?;
                if !local::has_sound(&pcm) {
                    return Ok(String::new());
                }
                let hints = hints(config, paths);
                let language = local::one_language(&hints.languages);
                let threads = local::threads(config.dictate.threads);
                let t = model.transcribe(&pcm, hints.vocabulary_prompt().as_deref(), language.as_deref(), threads)?;
                log::debug!("transcribed locally in {} ms (audio_ctx {})", t.took.as_millis(), t.audio_ctx);
                Ok(t.text)
            }
        }
    }
}

/// `ptt dictate --once`.
pub(crate) fn once(paths: &Paths) -> i32 {
    let config = match load_config(paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut here = match Here::new(&config, paths) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ptt: cannot dictate: {e}");
            return super::EXIT_FAILED;
        }
    };
    let samples = match record_until_stop(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ptt: cannot record: {e}");
            return super::EXIT_FAILED;
        }
    };
    let ms = samples.len() as u64 * 1000 / u64::from(RATE);
    if ms < config.dictate.min_ms {
        eprintln!("ptt: only {ms} ms recorded (dictate.min_ms = {}); nothing sent", config.dictate.min_ms);
        return super::EXIT_FAILED;
    }
    let clip = wav::encode(&samples, RATE);
    match here.transcribe(&config, paths, &clip) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            let spool = Spool::new(&paths.state_dir);
            let id = spool.new_id();
            match spool.fail(&id, &e, &clip) {
                Ok(_) => eprintln!(
                    "ptt: not transcribed: {e}\nptt: the clip is kept ({id}); `ptt dictate retry` sends it again"
                ),
                Err(io) => eprintln!("ptt: not transcribed: {e}; and the clip could not be kept: {io}"),
            }
            super::EXIT_FAILED
        }
    }
}

/// Records from the configured microphone until a line (or the end) of stdin.
fn record_until_stop(config: &Config) -> Result<Vec<i16>, String> {
    let audio = config.audio.to_audio_config();
    let (events_tx, events) = crossbeam_channel::bounded(16);
    let cfg = CaptureConfig { device: audio.input, keep_open: false, ..CaptureConfig::default() };
    let capture = Capture::spawn(cfg, events_tx).map_err(|e| format!("cannot start the capture thread: {e}"))?;
    capture.set_gate(true, false);
    let (line_tx, mut line_rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            let _ = line_tx.send(());
        })
        .map_err(|e| format!("cannot start the stdin thread: {e}"))?;
    let mut keys = release_listener(config);
    let ptt_keys: Vec<Key> = Chord::parse(&config.keys.ptt, "keys.ptt").map(|c| c.keys().to_vec()).unwrap_or_default();
    let debounce = Duration::from_millis(config.keys.debounce_ms);
    // When the key went up, and when that counts (after the debounce).
    let mut release: Option<(Instant, Instant)> = None;
    // Said once the microphone is open (not before: what is spoken earlier is not recorded), on stderr, which
    // scripts leave alone; tests wait for this line.
    let hint = if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        format!("recording… press Enter (or let go of {}) to stop", config.keys.ptt)
    } else {
        format!("recording… (a line or the end of stdin, or letting go of {}, stops)", config.keys.ptt)
    };
    let mut samples: Vec<i16> = Vec::new();
    let mut closing = false;
    let chunks = capture;
    loop {
        crossbeam_channel::select! {
            recv(chunks.receiver()) -> msg => match msg {
                Ok(Captured::Chunk(c)) => samples.extend_from_slice(&c),
                Ok(Captured::TurnEnd) | Err(_) => break,
            },
            recv(line_rx) -> _ => {
                // Once: the stdin thread is done (a closed channel would be ready forever).
                line_rx = crossbeam_channel::never();
                if !closing {
                    closing = true;
                    chunks.set_gate(false, false);
                }
            },
            recv(events) -> ev => match ev {
                Ok(AudioEvent::Unavailable { error, .. }) => return Err(error.to_string()),
                Ok(AudioEvent::Lost { reason, .. }) => return Err(format!("the microphone was lost: {reason}")),
                Ok(AudioEvent::Opened { .. }) => eprintln!("{hint}"),
                _ => {}
            },
            recv(keys) -> ev => match ev {
                // A release of the push-to-talk key (debounced: X11 auto-repeat sends release+press pairs).
                // The machine is not used: the key was usually down before this process started listening.
                Ok(SourceEvent::Key(k)) if ptt_keys.contains(&k.key) => match k.state {
                    KeyState::Released => release = Some((k.at, k.at + debounce)),
                    KeyState::Pressed => release = None,
                },
                Ok(SourceEvent::Key(_)) | Ok(SourceEvent::Reset { .. }) => {}
                Ok(SourceEvent::Stopped { .. }) | Err(_) => keys = crossbeam_channel::never(),
            },
            default(release.map_or(Duration::from_secs(600), |(_, d)| d.saturating_duration_since(Instant::now()))) => {
                if let Some((up, _)) = release.filter(|(_, d)| *d <= Instant::now()) {
                    release = None;
                    if !closing {
                        closing = true;
                        chunks.set_gate_at(false, false, up);
                    }
                } else if release.is_none() {
                    return Err("nothing from the microphone for 10 minutes".into());
                }
            },
        }
    }
    Ok(samples)
}

/// Key edges, when a key source is usable (X11 or evdev): a script bound to the push-to-talk key can run
/// `ptt dictate --once` on press, and the release ends the recording. Never ready otherwise.
fn release_listener(config: &Config) -> crossbeam_channel::Receiver<SourceEvent> {
    let bindings = Bindings::parse(&config.keys.ptt, &config.keys.live, &config.keys.interrupt).unwrap_or_default();
    let source = match config.keys.source {
        KeySource::Socket => return crossbeam_channel::never(),
        KeySource::X11 => Source::X11,
        KeySource::Evdev => Source::Evdev,
        KeySource::Auto => crate::hotkey::detect(&bindings.keys()).chosen,
    };
    let (tx, rx) = crossbeam_channel::bounded(256);
    match crate::hotkey::start(source, &bindings, tx) {
        Ok(Some(_)) => rx,
        _ => crossbeam_channel::never(),
    }
}

/// `ptt dictate retry`.
pub(crate) fn retry(paths: &Paths) -> i32 {
    match client::request(&paths.socket(), &Request::DictateRetry) {
        Ok(v) => match crate::control::reply::parse::<crate::control::reply::Retried>(&v) {
            Ok(done) => {
                println!("{}", done.message);
                0
            }
            Err(f) => {
                eprintln!("ptt: {}", f.message);
                super::EXIT_FAILED
            }
        },
        Err(ClientError::NotRunning(_)) => retry_here(paths),
        Err(e) => super::client_error(&e),
    }
}

/// No daemon: transcribe the kept clips here and print their text.
fn retry_here(paths: &Paths) -> i32 {
    let config = match load_config(paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let spool = Spool::new(&paths.state_dir);
    let kept = match spool.failed() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("ptt: cannot list the kept clips: {e}");
            return super::EXIT_FAILED;
        }
    };
    if kept.is_empty() {
        println!("no kept clips");
        return 0;
    }
    let mut here = match Here::new(&config, paths) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ptt: cannot transcribe: {e}");
            return super::EXIT_FAILED;
        }
    };
    eprintln!("ptt: the daemon is not running; printing the text of {} kept clip(s) here", kept.len());
    let mut status = 0;
    for k in kept {
        let result = spool.read_failed(&k.id).map_err(|e| e.to_string()).and_then(|w| {
            here.transcribe(&config, paths, &w).inspect_err(|e| {
                let _ = spool.fail(&k.id, e, &w);
            })
        });
        match result {
            Ok(text) => {
                println!("{text}");
                spool.done(&k.id);
            }
            Err(e) => {
                eprintln!("ptt: {}: still not transcribed: {e}", k.id);
                status = super::EXIT_FAILED;
            }
        }
    }
    status
}

/// `ptt dictate list`.
pub(crate) fn list(paths: &Paths) -> i32 {
    match Spool::new(&paths.state_dir).failed() {
        Ok(kept) if kept.is_empty() => {
            println!("no kept clips");
            0
        }
        Ok(kept) => {
            for k in kept {
                println!("{}  {:>6.1} s  {}", k.id, k.duration_ms as f64 / 1000.0, k.error);
            }
            0
        }
        Err(e) => {
            eprintln!("ptt: cannot list the kept clips: {e}");
            super::EXIT_FAILED
        }
    }
}
