//! Dictation as the daemon runs it: what the push-to-talk key does outside a
//! live session, where each clip is, and what a transcription means.
//!
//! A clip's life: key press → the microphone gate opens (with its 300 ms
//! pre-roll, so the first word is whole) and chunks collect here → key release
//! → the gate closes and, once the audio captured before the release is in,
//! `TurnEnd` → a clip shorter than `dictate.min_ms` is dropped with a short
//! cue; a longer one is written to the spool and queued for the engine
//! `dictate.engine` picks (`dictate::engine`): the upload thread, or the
//! `dictate-local` thread with the local whisper.cpp model → its text comes back → a voice command is carried out, anything
//! else goes to the typing thread → typed, and the clip is deleted.
//!
//! Invariant: a clip long enough to send is deleted only after its text came
//! back; until then it is in `pending/` (or, if the disk refused it, in
//! memory), and after a final failure in `failed/` until `ptt dictate retry`
//! succeeds. Nothing said is lost to a bad key, a dead network, a full disk or
//! a daemon restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use serde_json::{Value, json};

use crate::audio::cues::Cue;
use crate::config::DictateConfig;
use crate::control::reply::{DictationStatus, LocalModelStatus, OkTag, Retried};
use crate::dictate::commands::{Meaning, interpret};
use crate::dictate::engine::{self, Engine};
use crate::dictate::local::{LocalJob, LocalMsg, ModelEvent};
use crate::dictate::spool::Spool;
use crate::dictate::transcribe::Hints;
use crate::dictate::worker::{DictationEvent, Timing, TypeJob, UploadJob, Workers};
use crate::dictate::{model_store, vocabulary, wav};
use crate::paths::Paths;

/// The capture rate (the Realtime API's, which the microphone path produces).
const RATE: u32 = crate::audio::resample::API_RATE;

/// What the daemon must do for dictation (it owns the live session and the speaker).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Cue(Cue),
    LiveOn,
    LiveOff,
    /// Quiet mode on (`true`) or off.
    Quiet(bool),
    Broadcast(Value),
    /// A desktop notification.
    Notify(crate::notify::Note),
}

struct Recording {
    samples: Vec<i16>,
    released_at: Option<Instant>,
}

pub(crate) struct Dictation {
    cfg: DictateConfig,
    paths: Paths,
    spool: Spool,
    workers: Option<Workers>,
    /// The loop selects on this (never ready when the threads could not start).
    pub(crate) rx: Receiver<DictationEvent>,
    recording: Option<Recording>,
    /// Clips sent and not back yet, with their audio (a retry never sends one twice).
    in_flight: HashMap<String, Arc<Vec<u8>>>,
    /// Clips whose text is with the typing thread, with their audio: kept (on disk, or here when the disk
    /// refused them) until the text is typed or saved to `untyped.txt`, so a daemon that dies in between
    /// leaves a clip to retry, and text that can be neither typed nor saved keeps its clip.
    typing: HashMap<String, Arc<Vec<u8>>>,
    recent: VecDeque<String>,
    /// Failed clips the disk would not take: kept here for `ptt dictate retry`.
    held: Vec<(String, Arc<Vec<u8>>)>,
    last_error: Option<String>,
    /// The local model as the `dictate-local` thread last reported it.
    model: Option<ModelEvent>,
    typed: u64,
    dropped: u64,
    failed: u64,
}

impl Dictation {
    pub(crate) fn new(cfg: DictateConfig, paths: &Paths) -> Dictation {
        let spool = Spool::new(&paths.state_dir);
        match spool.recover() {
            Ok(0) => {}
            Ok(n) => log::warn!(
                "dictation: {n} clip(s) were not transcribed before the last daemon stopped; kept for `ptt dictate retry`"
            ),
            Err(e) => log::warn!("dictation: cannot check for clips left by the last daemon: {e}"),
        }
        let (workers, rx) = match Workers::start() {
            Ok(w) => {
                let rx = w.rx.clone();
                (Some(w), rx)
            }
            Err(e) => {
                log::error!("dictation: cannot start its threads ({e}); dictation is off");
                (None, crossbeam_channel::never())
            }
        };
        let d = Dictation {
            cfg,
            paths: paths.clone(),
            spool,
            workers,
            rx,
            recording: None,
            in_flight: HashMap::new(),
            typing: HashMap::new(),
            recent: VecDeque::new(),
            held: Vec::new(),
            last_error: None,
            model: None,
            typed: 0,
            dropped: 0,
            failed: 0,
        };
        d.preload();
        d
    }

    pub(crate) fn set_config(&mut self, cfg: DictateConfig) {
        self.cfg = cfg;
        self.preload();
    }

    /// `dictate.preload`: the local model is loaded now, not at the first dictation.
    fn preload(&self) {
        if !self.cfg.enabled || !self.cfg.preload || self.cfg.engine == crate::config::DictateEngine::Openai {
            return;
        }
        if let (Some(w), Some(model)) = (&self.workers, model_store::local_model(&self.cfg, &self.paths).path()) {
            w.local(LocalMsg::Preload { model: model.to_path_buf(), idle: self.model_idle() });
        }
    }

    /// `dictate.model_idle_min` as a duration (`None`: keep the model loaded).
    fn model_idle(&self) -> Option<std::time::Duration> {
        Some(self.cfg.model_idle_min)
            .filter(|m| *m > 0.0)
            .map(|m| std::time::Duration::from_secs_f64((m * 60.0).min(1e9)))
    }

    /// The engine for a clip now (`key` is the OpenAI key, or why there is none).
    fn engine(&self, key: Result<String, String>) -> Result<Engine, String> {
        engine::choose(&self.cfg, &model_store::local_model(&self.cfg, &self.paths), key)
    }

    pub(crate) fn enabled(&self) -> bool {
        self.cfg.enabled && self.workers.is_some()
    }

    pub(crate) fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    fn vocabulary_file(&self) -> std::path::PathBuf {
        self.cfg.vocabulary_path(&self.paths)
    }

    /// The key went down: a clip starts (the caller opens the microphone gate).
    pub(crate) fn press(&mut self) {
        self.recording = Some(Recording { samples: Vec::with_capacity(RATE as usize * 10), released_at: None });
    }

    /// The key went up at `at`: the clip ends when the audio before it is in (`TurnEnd`).
    pub(crate) fn release(&mut self, at: Instant) {
        if let Some(r) = &mut self.recording {
            r.released_at.get_or_insert(at);
        }
    }

    /// The live chord took over the key: the clip is not a dictation.
    pub(crate) fn cancel(&mut self) {
        if self.recording.take().is_some() {
            log::debug!("dictation: clip discarded (the live chord took over the key)");
        }
    }

    pub(crate) fn chunk(&mut self, pcm: &[i16]) {
        if let Some(r) = &mut self.recording {
            // At most 10 minutes (a stuck key is released by keys.max_hold_s long before).
            if r.samples.len() < RATE as usize * 600 {
                r.samples.extend_from_slice(pcm);
            }
        }
    }

    /// The clip is complete. `key` is the OpenAI key (or why there is none: the
    /// local engine needs none); `mic_problem` why the microphone gave nothing, if known.
    pub(crate) fn turn_end(&mut self, key: Result<String, String>, mic_problem: Option<&str>) -> Vec<Step> {
        let Some(rec) = self.recording.take() else { return vec![] };
        let timing = Timing { clip_end: Some(Instant::now()), ..Timing::released(rec.released_at) };
        let ms = rec.samples.len() as u64 * 1000 / u64::from(RATE);
        if ms < self.cfg.min_ms {
            self.dropped += 1;
            let (why, cue) = match mic_problem.filter(|_| rec.samples.is_empty()) {
                Some(p) => {
                    log::warn!("dictation: nothing recorded: no microphone ({p})");
                    let why = format!("no microphone: {p}");
                    self.last_error = Some(why.clone());
                    (why, Cue::DictationFailed)
                }
                None => {
                    log::info!("dictation: {ms} ms clip dropped (shorter than dictate.min_ms = {})", self.cfg.min_ms);
                    ("too short".to_string(), Cue::TooShort)
                }
            };
            return vec![Step::Cue(cue), Step::Broadcast(json!({"event": "dictation_dropped", "ms": ms, "why": why}))];
        }
        let id = self.spool.new_id();
        let wav = Arc::new(wav::encode(&rec.samples, RATE));
        if let Err(e) = self.spool.save_pending(&id, &wav) {
            log::warn!("dictation: cannot keep a copy of clip {id} on disk ({e}); sending it from memory");
        }
        log::info!("dictation: clip {id} ({ms} ms) recorded");
        match self.engine(key) {
            Ok(engine) => {
                self.send(id, wav, &engine, timing);
                vec![]
            }
            Err(why) => self.fail(&id, &why, wav),
        }
    }

    fn send(&mut self, id: String, wav: Arc<Vec<u8>>, engine: &Engine, timing: Timing) {
        let Some(workers) = &self.workers else { return };
        if self.in_flight.contains_key(&id) {
            return;
        }
        self.in_flight.insert(id.clone(), wav.clone());
        let words = vocabulary::load(&self.vocabulary_file()).unwrap_or_else(|e| {
            log::warn!("dictation: cannot read the vocabulary {}: {e}", self.vocabulary_file().display());
            Vec::new()
        });
        let hints = Hints { words, recent: self.recent.iter().cloned().collect(), languages: self.cfg.languages() };
        let timing = Timing { queued: Some(Instant::now()), ..timing };
        match engine {
            Engine::Local(model) => workers.local(LocalMsg::Transcribe(Box::new(LocalJob {
                id,
                wav,
                model: model.clone(),
                prompt: hints.vocabulary_prompt(),
                language: crate::dictate::local::one_language(&hints.languages),
                timing,
                idle: self.model_idle(),
                threads: self.cfg.threads,
            }))),
            Engine::OpenAi(key) => workers.transcribe(UploadJob {
                id,
                wav,
                endpoint: crate::dictate::transcribe::Endpoint::new(&self.cfg, key.clone()),
                // A retired model is replaced after its shutdown date (the daemon warned at start).
                model: crate::models::choose("dictate.model", &self.cfg.model, crate::models::Date::today()).model,
                hints,
                timing,
            }),
        }
    }

    /// A final failure: the clip is kept (disk, else memory) and the user hears it.
    fn fail(&mut self, id: &str, why: &str, wav: Arc<Vec<u8>>) -> Vec<Step> {
        self.failed += 1;
        self.last_error = Some(why.to_string());
        match self.spool.fail(id, why, &wav) {
            Ok(_) => log::error!("dictation: clip {id} not transcribed: {why}; kept for `ptt dictate retry`"),
            Err(e) => {
                log::error!(
                    "dictation: clip {id} not transcribed: {why}; the disk refused it too ({e}), kept in memory"
                );
                self.held.push((id.to_string(), wav));
            }
        }
        vec![
            Step::Cue(Cue::DictationFailed),
            Step::Notify(crate::notify::Note {
                key: "dictation".into(),
                summary: "ptt: dictation not transcribed".into(),
                body: format!("{why}\nThe clip is kept: `ptt dictate retry` sends it again."),
                urgency: crate::notify::Urgency::Critical,
            }),
            Step::Broadcast(json!({"event": "dictation_failed", "id": id, "error": why})),
        ]
    }

    /// A report from the upload or typing thread.
    pub(crate) fn on_event(&mut self, ev: DictationEvent) -> Vec<Step> {
        match ev {
            DictationEvent::Transcribed { id, text, timing } => {
                let wav = self.in_flight.remove(&id).unwrap_or_default();
                self.held.retain(|(h, _)| *h != id);
                let steps = self.on_text(id.clone(), text, timing, wav);
                // A command or nothing heard is done here; text to type keeps its clip until it is typed.
                if !self.typing.contains_key(&id) {
                    self.spool.done(&id);
                }
                steps
            }
            DictationEvent::Failed { id, failure, wav } => {
                self.in_flight.remove(&id);
                self.fail(&id, &failure.to_string(), wav)
            }
            DictationEvent::Typed { id, backend, waited_for_modifiers, timing } => {
                self.typing.remove(&id);
                self.spool.done(&id);
                self.typed += 1;
                let ms = timing.total_ms();
                let stages = timing.stages();
                log::info!(
                    "dictation: {id} typed with {backend}{}",
                    ms.map(|m| format!(
                        " {m:.0} ms after the key was released ({})",
                        stages.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", ")
                    ))
                    .unwrap_or_default()
                );
                let stages: serde_json::Map<String, Value> =
                    stages.into_iter().map(|(k, v)| (k.to_string(), json!((v * 10.0).round() / 10.0))).collect();
                vec![Step::Broadcast(json!({
                    "event": "dictation_typed",
                    "id": id,
                    "backend": backend,
                    "release_to_typed_ms": ms,
                    "stages_ms": stages,
                    "waited_for_modifiers_ms": waited_for_modifiers.as_millis() as u64,
                }))]
            }
            DictationEvent::Model(ev) => {
                self.model = Some(ev);
                vec![]
            }
            DictationEvent::TypeFailed { id, error, text } => {
                self.last_error = Some(format!("typing failed: {error}"));
                let wav = self.typing.remove(&id).unwrap_or_default();
                let saved = match self.save_untyped(&text) {
                    Ok(path) => {
                        self.spool.done(&id);
                        path
                    }
                    Err(why) => {
                        // Neither typed nor saved: the clip stays, for `ptt dictate retry` (in memory if the disk
                        // refuses it too).
                        if let Err(e) = self.spool.fail(&id, &format!("typing failed: {error}"), &wav) {
                            log::error!("dictation: cannot keep clip {id} on disk ({e}); kept in memory for a retry");
                            self.held.push((id.clone(), wav));
                        }
                        why
                    }
                };
                log::error!("dictation: {id} could not be typed: {error}; the text is in {saved}");
                vec![
                    Step::Cue(Cue::DictationFailed),
                    Step::Broadcast(json!({"event": "dictation_failed", "id": id, "error": error, "text_in": saved})),
                ]
            }
        }
    }

    fn on_text(&mut self, id: String, text: String, timing: Timing, wav: Arc<Vec<u8>>) -> Vec<Step> {
        let meaning = interpret(&text, &self.cfg.commands);
        let command = |name: &str| Step::Broadcast(json!({"event": "dictation_command", "id": id, "command": name}));
        match meaning {
            Meaning::Text(t) if t.is_empty() => {
                log::info!("dictation: {id}: nothing was heard");
                vec![Step::Broadcast(json!({"event": "dictation_empty", "id": id}))]
            }
            Meaning::Text(t) => {
                self.recent.push_back(t.clone());
                while self.recent.len() > self.cfg.recent {
                    self.recent.pop_front();
                }
                let text = if self.cfg.trailing_space { format!("{t} ") } else { t };
                self.type_text(id, text, timing, wav);
                vec![]
            }
            Meaning::NewLine => {
                self.type_text(id.clone(), "\n".into(), timing, wav);
                vec![command("new_line")]
            }
            Meaning::LiveMode => {
                log::info!("dictation: voice command: live mode");
                vec![command("live_mode"), Step::LiveOn]
            }
            Meaning::DictateMode => {
                log::info!("dictation: voice command: dictate mode");
                vec![command("dictate_mode"), Step::LiveOff]
            }
            Meaning::QuietOn => {
                log::info!("dictation: voice command: quiet mode");
                vec![command("quiet_mode"), Step::Quiet(true)]
            }
            Meaning::QuietOff => {
                log::info!("dictation: voice command: you can talk again");
                vec![command("talk_again"), Step::Quiet(false)]
            }
            Meaning::AddWord(word) => {
                let file = self.vocabulary_file();
                match vocabulary::add(&file, &word) {
                    Ok(added) => {
                        log::info!(
                            "dictation: \"{word}\" {} the vocabulary ({})",
                            if added { "added to" } else { "is already in" },
                            file.display()
                        );
                        vec![
                            Step::Cue(Cue::Done),
                            Step::Broadcast(
                                json!({"event": "dictation_command", "id": id, "command": "add_word", "word": word, "added": added}),
                            ),
                        ]
                    }
                    Err(e) => {
                        self.last_error = Some(format!("cannot add \"{word}\" to {}: {e}", file.display()));
                        log::error!("dictation: cannot add \"{word}\" to {}: {e}", file.display());
                        vec![Step::Cue(Cue::DictationFailed)]
                    }
                }
            }
        }
    }

    fn type_text(&mut self, id: String, text: String, timing: Timing, wav: Arc<Vec<u8>>) {
        if let Some(w) = &self.workers {
            self.typing.insert(id.clone(), wav);
            w.type_text(TypeJob {
                id,
                text,
                kind: self.cfg.typer,
                key_delay_ms: self.cfg.key_delay_ms,
                paste_keys: self.cfg.paste_keys,
                timing,
            });
        }
    }

    /// Text that could not be typed is appended to `dictation/untyped.txt` (0600), never dropped: where it went,
    /// or (the file could not be written) where else it is.
    fn save_untyped(&self, text: &str) -> Result<String, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.paths.state_dir.join("dictation").join("untyped.txt");
        let written = std::fs::create_dir_all(self.paths.state_dir.join("dictation")).and_then(|_| {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
            f.write_all(format!("{}\n", text.trim_end()).as_bytes())
        });
        match written {
            Ok(()) => Ok(path.display().to_string()),
            Err(e) => Err(format!("the journal only (cannot write {}: {e}): {text}", path.display())),
        }
    }

    /// `ptt dictate retry`: every kept clip goes to the upload thread again, oldest first.
    pub(crate) fn retry(&mut self, key: Result<String, String>) -> Result<Retried, String> {
        let engine = self.engine(key)?;
        let kept = self.spool.failed().map_err(|e| format!("cannot list the kept clips: {e}"))?;
        let mut sent = Vec::new();
        let kept: Vec<_> = kept
            .into_iter()
            .filter(|k| !self.in_flight.contains_key(&k.id) && !self.typing.contains_key(&k.id))
            .collect();
        for k in kept {
            match self.spool.read_failed(&k.id) {
                Ok(wav) => {
                    sent.push(k.id.clone());
                    self.send(k.id, Arc::new(wav), &engine, Timing::default());
                }
                Err(e) => log::warn!("dictation: cannot read kept clip {}: {e}", k.id),
            }
        }
        for (id, wav) in std::mem::take(&mut self.held) {
            sent.push(id.clone());
            self.send(id, wav, &engine, Timing::default());
        }
        if sent.is_empty() {
            return Ok(Retried { status: OkTag::Ok, retried: sent, message: "no kept clips".into() });
        }
        log::info!("dictation: retrying {} kept clip(s)", sent.len());
        let message = format!("sent {} clip(s) again; their text is typed as it comes back", sent.len());
        Ok(Retried { status: OkTag::Ok, retried: sent, message })
    }

    pub(crate) fn status(&self) -> DictationStatus {
        // Counted on disk, not kept here: `ptt dictate --once` may add clips while the daemon runs.
        let kept = self.spool.count_failed() + self.held.len();
        let state = |state: &str, path: &std::path::Path| LocalModelStatus {
            state: state.into(),
            path: Some(path.to_path_buf()),
            ..LocalModelStatus::default()
        };
        DictationStatus {
            enabled: self.cfg.enabled,
            recording: self.recording.is_some(),
            in_flight: self.in_flight.len() as u64,
            kept_clips: kept as u64,
            typed: self.typed,
            typing: self.typing.len() as u64,
            dropped: self.dropped,
            failed: self.failed,
            typer: self.cfg.typer,
            last_error: self.last_error.clone(),
            engine: self.cfg.engine,
            local_model: model_store::local_model(&self.cfg, &self.paths).path().map(std::path::Path::to_path_buf),
            model: match &self.model {
                Some(ModelEvent::Loaded { path, bytes, load_ms }) => {
                    LocalModelStatus { bytes: Some(*bytes), load_ms: Some(*load_ms), ..state("loaded", path) }
                }
                Some(ModelEvent::Unloaded { path }) => state("unloaded", path),
                Some(ModelEvent::LoadFailed { path, error }) => {
                    LocalModelStatus { error: Some(error.clone()), ..state("failed", path) }
                }
                None => LocalModelStatus { state: "not loaded".into(), ..LocalModelStatus::default() },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dictation(dir: &Path) -> Dictation {
        // `stdout`: the typing thread never touches a real display in a test.
        let cfg = DictateConfig { typer: crate::config::TyperKind::Stdout, ..DictateConfig::default() };
        Dictation::new(cfg, &Paths::under(dir))
    }

    fn pending(dir: &Path, id: &str) -> std::path::PathBuf {
        dir.join("state/ptt/dictation/pending").join(format!("{id}.wav"))
    }

    /// The text of a clip that was sent (as `send` does, with its audio in flight) comes back.
    fn transcribed(d: &mut Dictation, id: &str, text: &str) {
        d.in_flight.insert(id.into(), Arc::new(format!("RIFF {id}").into_bytes()));
        d.on_event(DictationEvent::Transcribed { id: id.into(), text: text.into(), timing: Timing::default() });
    }

    #[test]
    fn a_clip_stays_on_disk_until_its_text_is_typed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = dictation(dir.path());
        let id = d.spool.new_id();
        d.spool.save_pending(&id, b"RIFF").expect("save");
        transcribed(&mut d, &id, "send the report");
        assert!(pending(dir.path(), &id).exists(), "text back but not typed yet: the clip stays");
        // A retry meanwhile does not send it again.
        assert!(d.typing.contains_key(&id));
        d.on_event(DictationEvent::Typed {
            id: id.clone(),
            backend: "stdout".into(),
            waited_for_modifiers: std::time::Duration::ZERO,
            timing: Timing::default(),
        });
        assert!(!pending(dir.path(), &id).exists(), "typed: the clip is deleted");
        assert!(d.typing.is_empty());
    }

    #[test]
    fn a_command_or_silence_is_done_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = dictation(dir.path());
        let id = d.spool.new_id();
        d.spool.save_pending(&id, b"RIFF").expect("save");
        transcribed(&mut d, &id, "");
        assert!(!pending(dir.path(), &id).exists(), "nothing to type: nothing to keep");
    }

    #[test]
    fn text_that_cannot_be_typed_is_saved_or_its_clip_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = dictation(dir.path());
        let id = d.spool.new_id();
        d.spool.save_pending(&id, b"RIFF").expect("save");
        transcribed(&mut d, &id, "first");
        d.on_event(DictationEvent::TypeFailed { id: id.clone(), error: "no display".into(), text: "first ".into() });
        let untyped = dir.path().join("state/ptt/dictation/untyped.txt");
        assert_eq!(std::fs::read_to_string(&untyped).expect("untyped.txt"), "first\n");
        assert!(!pending(dir.path(), &id).exists(), "the text is saved: the clip is done");

        // untyped.txt cannot be written (a directory in its place): the clip is kept for a retry.
        std::fs::remove_file(&untyped).expect("rm");
        std::fs::create_dir(&untyped).expect("mkdir");
        let id = d.spool.new_id();
        d.spool.save_pending(&id, b"RIFF").expect("save");
        transcribed(&mut d, &id, "second");
        d.on_event(DictationEvent::TypeFailed { id: id.clone(), error: "no display".into(), text: "second ".into() });
        let kept = d.spool.failed().expect("failed");
        assert!(kept.iter().any(|k| k.id == id), "kept for `ptt dictate retry`: {kept:?}");

        // The same when the disk never held the clip (`pending/` refused it): its audio is written, not nothing.
        let id = d.spool.new_id();
        transcribed(&mut d, &id, "third");
        assert!(!pending(dir.path(), &id).exists());
        d.on_event(DictationEvent::TypeFailed { id: id.clone(), error: "no display".into(), text: "third ".into() });
        assert_eq!(d.spool.read_failed(&id).expect("kept clip"), format!("RIFF {id}").into_bytes());
    }
}
