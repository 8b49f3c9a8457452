//! The TOML configuration: every key has a default, every error names the file,
//! the line and the key.
//!
//! Parsing goes through `serde_path_to_error` on top of `toml`'s deserializer so
//! that a mistake deep in the file comes back as
//! `~/.config/ptt/config.toml:12: tasks.max_concurrent: invalid type ...`
//! rather than a bare serde message. Unknown keys are errors too (a typo that
//! silently falls back to a default is worse than a refusal to start).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// The whole configuration, with defaults filled in.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) tasks: TasksConfig,
    pub(crate) live: LiveConfig,
    pub(crate) keys: KeysConfig,
    pub(crate) audio: AudioSection,
    pub(crate) dictate: DictateConfig,
    pub(crate) notify: NotifyConfig,
    pub(crate) models: ModelsConfig,
    /// Spoken project name → directory (`~` is expanded).
    pub(crate) projects: BTreeMap<String, PathBuf>,
}

/// `[notify]`: desktop notifications (through `notify-send`, where a session bus exists).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NotifyConfig {
    /// A notification when a task ends and when a dictation fails.
    pub(crate) enabled: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig { enabled: true }
    }
}

/// `[tasks]`: how Claude Code tasks are started and supervised.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TasksConfig {
    /// The Claude Code CLI: a command on PATH or an absolute path.
    pub(crate) claude: String,
    pub(crate) permission_mode: PermissionMode,
    /// What happens when a task wants something its permission mode does not
    /// allow: ask the user (`ptt mcp-permission` as the CLI's permission
    /// prompt), or deny it at once (the CLI's own headless behaviour).
    pub(crate) permissions: PermissionPolicy,
    /// Minutes a permission request waits for an answer before it is denied.
    #[serde(deserialize_with = "positive_f64")]
    pub(crate) permission_timeout_min: f64,
    /// Spending limit of one task in USD (`--max-budget-usd`); 0: none.
    #[serde(deserialize_with = "non_negative")]
    pub(crate) max_task_usd: f64,
    /// `--max-turns`; 0 leaves it to the CLI.
    pub(crate) max_turns: u32,
    /// `--model`; empty leaves it to the CLI.
    pub(crate) model: String,
    #[serde(deserialize_with = "at_least_one")]
    pub(crate) max_concurrent: u32,
    /// Minutes before a task is stopped (fractions allowed); 0 disables the timeout.
    #[serde(deserialize_with = "non_negative")]
    pub(crate) timeout_min: f64,
    /// Minutes of silence before a task is flagged as stalled; 0 disables.
    #[serde(deserialize_with = "non_negative")]
    pub(crate) stall_min: f64,
    /// Daily spending limit in USD (sum of the CLI's reported costs, local
    /// day); 0 disables. A warning is logged at 80 %.
    #[serde(deserialize_with = "non_negative")]
    pub(crate) budget_usd: f64,
    pub(crate) isolation: Isolation,
    /// Directories under which a task may run (besides configured projects).
    pub(crate) allowed_roots: Vec<PathBuf>,
    /// Extra environment variables passed to Claude (the base allowlist is
    /// PATH, HOME, USER, LOGNAME, SHELL, LANG, LC_*, TERM, TZ, TMPDIR,
    /// XDG_*, ANTHROPIC_* and CLAUDE_*).
    pub(crate) env_allow: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL when a task is stopped.
    pub(crate) kill_grace_s: u32,
    /// Cap of each task's log file in MiB (a note marks the cut).
    #[serde(deserialize_with = "at_least_one")]
    pub(crate) log_max_mb: u32,
    /// Several tasks may work in the same directory (only with isolation "none").
    pub(crate) share_dirs: bool,
    /// How many ended tasks the registry keeps.
    pub(crate) keep_ended: u32,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            claude: "claude".into(),
            permission_mode: PermissionMode::AcceptEdits,
            permissions: PermissionPolicy::Ask,
            permission_timeout_min: 10.0,
            max_task_usd: 0.0,
            max_turns: 0,
            model: String::new(),
            max_concurrent: 4,
            timeout_min: 30.0,
            stall_min: 5.0,
            budget_usd: 25.0,
            isolation: Isolation::None,
            allowed_roots: vec![PathBuf::from("~")],
            env_allow: Vec::new(),
            kill_grace_s: 5,
            log_max_mb: 10,
            share_dirs: false,
            keep_ended: 200,
        }
    }
}

/// `[live]`: the voice (or text) conversation over the OpenAI Realtime API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LiveConfig {
    /// The Realtime endpoint; `?model=` is added unless the URL has one.
    pub(crate) url: String,
    pub(crate) model: String,
    pub(crate) voice: String,
    /// A file whose text replaces the built-in instructions (the task table is appended).
    pub(crate) instructions_file: Option<PathBuf>,
    /// A file holding the OpenAI API key (must be mode 0600); `OPENAI_API_KEY` wins when set.
    pub(crate) key_file: Option<PathBuf>,
    /// Open a session just to speak task results when none is open.
    pub(crate) announce_when_idle: bool,
    /// `"vad"` (the server detects turns) or `"ptt"` (hold the key to speak).
    pub(crate) turn: LiveTurn,
    /// With server VAD, keep the microphone open while the assistant speaks
    /// (needs echo cancellation, e.g. a headset); otherwise it is gated.
    pub(crate) full_duplex: bool,
    /// Seconds between WebSocket pings.
    #[serde(deserialize_with = "positive_f64")]
    pub(crate) ping_interval_s: f64,
    /// Seconds without a pong before the link counts as dead.
    #[serde(deserialize_with = "positive_f64")]
    pub(crate) pong_timeout_s: f64,
    /// Renew the session this many seconds before it expires (when the floor is free).
    #[serde(deserialize_with = "positive_f64")]
    pub(crate) renew_before_s: f64,
    /// Model for transcribing the user's speech into the conversation log; empty turns it off.
    pub(crate) transcription_model: String,
    /// `session.reasoning.effort`, sent only to models that take it (the 2.x family).
    pub(crate) reasoning_effort: ReasoningEffort,
    /// Let the model call several tools in one response (2.x models only).
    pub(crate) parallel_tool_calls: bool,
    /// Fraction of the conversation kept when the context overflows (`truncation: retention_ratio`), so
    /// long sessions keep their prompt cache; 0 leaves it to the server (`truncation: "auto"`).
    #[serde(deserialize_with = "unit_interval_f64")]
    pub(crate) retention_ratio: f64,
    /// With `turn = "semantic_vad"`: how soon the model answers ("low" waits longest).
    pub(crate) vad_eagerness: VadEagerness,
    /// The REST API the models are checked against (`GET {api_base}/models/{model}`); empty: derived
    /// from `url` (`wss://HOST/v1/realtime` → `https://HOST/v1`).
    pub(crate) api_base: String,
    /// Minutes a task runs (since it started or its last update) before the session gets a short progress
    /// update to say in a pause; 0: never.
    #[serde(deserialize_with = "non_negative")]
    pub(crate) progress_min: f64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            url: "wss://api.openai.com/v1/realtime".into(),
            model: crate::models::DEFAULT_LIVE_MODEL.into(),
            voice: "marin".into(),
            instructions_file: None,
            key_file: None,
            announce_when_idle: false,
            turn: LiveTurn::Vad,
            full_duplex: false,
            ping_interval_s: 15.0,
            pong_timeout_s: 10.0,
            renew_before_s: 300.0,
            transcription_model: crate::models::DEFAULT_TRANSCRIBE_MODEL.into(),
            reasoning_effort: ReasoningEffort::Low,
            parallel_tool_calls: true,
            retention_ratio: 0.8,
            vad_eagerness: VadEagerness::Auto,
            api_base: String::new(),
            progress_min: 5.0,
        }
    }
}

impl LiveConfig {
    /// The WebSocket URL with the model as a query parameter.
    pub(crate) fn endpoint(&self) -> String {
        if self.url.contains("model=") {
            self.url.clone()
        } else {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}model={}", self.url, self.model)
        }
    }

    /// The REST base for model checks: `api_base`, else derived from `url` (`wss://HOST/v1/realtime?…` →
    /// `https://HOST/v1`, `ws://` → `http://`).
    pub(crate) fn api_base(&self) -> String {
        let explicit = self.api_base.trim();
        if !explicit.is_empty() {
            return explicit.trim_end_matches('/').to_string();
        }
        let url = self.url.split(['?', '#']).next().unwrap_or("");
        let url = if let Some(rest) = url.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = url.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            url.to_string()
        };
        let url = url.trim_end_matches('/');
        url.strip_suffix("/realtime").unwrap_or(url).to_string()
    }
}

/// `live.reasoning_effort`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReasoningEffort {
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

impl ReasoningEffort {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::Minimal => "minimal",
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
            ReasoningEffort::Xhigh => "xhigh",
        }
    }
}

/// `live.vad_eagerness` (semantic VAD only).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum VadEagerness {
    Low,
    Medium,
    High,
    Auto,
}

impl VadEagerness {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            VadEagerness::Low => "low",
            VadEagerness::Medium => "medium",
            VadEagerness::High => "high",
            VadEagerness::Auto => "auto",
        }
    }
}

/// `[audio]`: devices and sound cues.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AudioSection {
    /// Input device by name (`ptt doctor` lists them); empty: the default device.
    pub(crate) input: String,
    /// Output device by name; empty: the default device.
    pub(crate) output: String,
    /// Keep the streams open between turns (no lost first word, no open latency).
    pub(crate) keep_open: bool,
    /// Play short sounds when a task starts, succeeds or fails, and when live mode goes on or off.
    pub(crate) cues: bool,
    /// Loudness of the cues, 0.0 to 1.0.
    #[serde(deserialize_with = "unit_interval")]
    pub(crate) cue_volume: f32,
}

impl Default for AudioSection {
    fn default() -> Self {
        AudioSection { input: String::new(), output: String::new(), keep_open: true, cues: true, cue_volume: 0.6 }
    }
}

impl AudioSection {
    pub(crate) fn to_audio_config(&self) -> crate::audio::AudioConfig {
        let name = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        crate::audio::AudioConfig {
            input: name(&self.input),
            output: name(&self.output),
            keep_open: self.keep_open,
            cue_volume: self.cue_volume,
        }
    }
}

fn unit_interval_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(serde::de::Error::custom("must be between 0.0 and 1.0"));
    }
    Ok(v)
}

fn unit_interval<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let v = f32::deserialize(d)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(serde::de::Error::custom("must be between 0.0 and 1.0"));
    }
    Ok(v)
}

/// `[dictate]`: hold the push-to-talk key, speak, release: the text is typed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DictateConfig {
    /// The push-to-talk key dictates when no live session is on.
    pub(crate) enabled: bool,
    /// The OpenAI-compatible API; the clip goes to `{api_base}/audio/transcriptions`.
    pub(crate) api_base: String,
    pub(crate) model: String,
    /// ISO-639-1 code ("en", "de"); empty lets the model detect it.
    pub(crate) language: String,
    /// Clips shorter than this are dropped (with a short cue).
    pub(crate) min_ms: u64,
    /// Seconds for one upload attempt, answer included.
    #[serde(deserialize_with = "positive_f64")]
    pub(crate) timeout_s: f64,
    /// Further attempts after a 429, a 5xx or a network error (with backoff, honouring Retry-After).
    pub(crate) retries: u32,
    /// How text reaches the focused window: "auto", "xdotool", "wtype", "ydotool", "clipboard" or "stdout".
    pub(crate) typer: TyperKind,
    /// Milliseconds between typed keys.
    pub(crate) key_delay_ms: u32,
    /// The keys the clipboard typer pastes with: "ctrl+v", "ctrl+shift+v" (terminals) or "shift+insert".
    pub(crate) paste_keys: PasteKeys,
    /// Type a space after each dictation, so consecutive ones do not run together.
    pub(crate) trailing_space: bool,
    /// How many recent dictations go into the prompt (with the vocabulary) as context.
    pub(crate) recent: usize,
    /// Words the transcriber should know, one per line; empty: `$XDG_STATE_HOME/ptt/vocabulary.txt`.
    pub(crate) vocabulary_file: Option<PathBuf>,
    /// Spoken commands: whole utterances, compared after lowercasing and dropping punctuation.
    pub(crate) commands: DictateCommands,
    /// Who transcribes: "auto" (a local model when one is installed or configured, else OpenAI when a key is
    /// set), "local" (whisper.cpp on this machine) or "openai".
    pub(crate) engine: DictateEngine,
    /// The local model by name (`ptt model list`), in `$XDG_DATA_HOME/ptt/models`; empty: the one installed last.
    pub(crate) local_model: String,
    /// Any whisper.cpp ggml file (`~` allowed); wins over `local_model`.
    pub(crate) model_path: Option<PathBuf>,
    /// Load the local model when the daemon starts, not at the first dictation.
    pub(crate) preload: bool,
    /// Minutes without a dictation before the local model is unloaded (its memory returned); 0: never.
    #[serde(deserialize_with = "non_negative")]
    pub(crate) model_idle_min: f64,
    /// Threads for the local model; 0: the cores that are free when a clip comes.
    pub(crate) threads: usize,
}

/// `dictate.engine`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DictateEngine {
    #[default]
    Auto,
    Local,
    Openai,
}

/// `[models]`: where `ptt model download` gets whisper.cpp models.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ModelsConfig {
    /// `ptt model download NAME` fetches `{base_url}/ggml-NAME.bin`.
    pub(crate) base_url: String,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig { base_url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main".into() }
    }
}

impl Default for DictateConfig {
    fn default() -> Self {
        DictateConfig {
            enabled: true,
            api_base: "https://api.openai.com/v1".into(),
            model: crate::models::DEFAULT_TRANSCRIBE_MODEL.into(),
            language: String::new(),
            min_ms: 300,
            timeout_s: 30.0,
            retries: 3,
            typer: TyperKind::Auto,
            key_delay_ms: 2,
            paste_keys: PasteKeys::CtrlV,
            trailing_space: true,
            recent: 3,
            vocabulary_file: None,
            commands: DictateCommands::default(),
            engine: DictateEngine::Auto,
            local_model: String::new(),
            model_path: None,
            preload: false,
            model_idle_min: 10.0,
            threads: 0,
        }
    }
}

impl DictateConfig {
    /// The vocabulary file: `vocabulary_file` (with `~`), else `vocabulary.txt` in the state directory.
    pub(crate) fn vocabulary_path(&self, paths: &crate::paths::Paths) -> PathBuf {
        match &self.vocabulary_file {
            Some(f) => paths.expand_tilde(f),
            None => paths.state_dir.join("vocabulary.txt"),
        }
    }

    /// The languages of `language` (one code, or several separated by commas); empty: detect.
    pub(crate) fn languages(&self) -> Vec<String> {
        self.language.split(',').map(|l| l.trim().to_ascii_lowercase()).filter(|l| !l.is_empty()).collect()
    }
}

/// `dictate.typer`: which tool types the text (`dictate::typer` turns it into commands).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TyperKind {
    /// Pick the best tool for the session at typing time (see `dictate::typer::choose`).
    #[default]
    Auto,
    Xdotool,
    Wtype,
    Ydotool,
    Clipboard,
    Stdout,
}

impl TyperKind {
    /// The name `dictate.typer` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TyperKind::Auto => "auto",
            TyperKind::Xdotool => "xdotool",
            TyperKind::Wtype => "wtype",
            TyperKind::Ydotool => "ydotool",
            TyperKind::Clipboard => "clipboard",
            TyperKind::Stdout => "stdout",
        }
    }
}

/// `dictate.paste_keys`: which keys the clipboard typer pastes with. Ctrl+V in most applications, but terminals
/// (foot, GNOME Terminal, kitty, Konsole) paste with Ctrl+Shift+V and read Ctrl+V as a literal ^V, and
/// Shift+Insert works in both GTK/Qt applications and X11 terminals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) enum PasteKeys {
    #[default]
    #[serde(rename = "ctrl+v")]
    CtrlV,
    #[serde(rename = "ctrl+shift+v")]
    CtrlShiftV,
    #[serde(rename = "shift+insert")]
    ShiftInsert,
}

/// `[dictate.commands]`: the phrases of each voice command.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DictateCommands {
    /// Turn the live session on.
    pub(crate) live_mode: Vec<String>,
    /// Turn the live session off (back to dictation).
    pub(crate) dictate_mode: Vec<String>,
    /// Press Enter.
    pub(crate) new_line: Vec<String>,
    /// Followed by a word: add it to the vocabulary ("add word Kubernetes").
    pub(crate) add_word: Vec<String>,
    /// Quiet mode on: nothing is spoken, results wait (also heard in a live session).
    pub(crate) quiet_mode: Vec<String>,
    /// Quiet mode off: held questions are asked, missed results offered.
    pub(crate) talk_again: Vec<String>,
}

impl Default for DictateCommands {
    fn default() -> Self {
        DictateCommands {
            live_mode: vec!["live mode".into()],
            dictate_mode: vec!["dictate mode".into(), "dictation mode".into()],
            new_line: vec!["new line".into()],
            add_word: vec!["add word".into()],
            quiet_mode: vec!["quiet mode".into()],
            talk_again: vec!["you can talk again".into()],
        }
    }
}

/// `[keys]`: hotkey bindings and where keys come from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KeysConfig {
    /// Hold to talk (dictation, or a push-to-talk turn in live mode).
    pub(crate) ptt: String,
    /// Toggles the live session: a chord, both keys down in either order.
    pub(crate) live: String,
    /// Cuts the assistant off while it speaks.
    pub(crate) interrupt: String,
    /// Toggles quiet mode (nothing is spoken; results wait); empty: unbound (`ptt key toggle quiet` works).
    pub(crate) quiet: String,
    /// `"auto"` (evdev on Wayland/console, X11 otherwise), `"x11"`, `"evdev"`, or `"socket"` (only `ptt key …`).
    pub(crate) source: KeySource,
    /// A release counts after the key stayed up this long (absorbs bounces and repeat pairs).
    pub(crate) debounce_ms: u64,
    /// A key "held" longer than this is released (a lost release never leaves it stuck).
    pub(crate) max_hold_s: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            ptt: "right_ctrl".into(),
            live: "right_shift+right_ctrl".into(),
            interrupt: "escape".into(),
            quiet: String::new(),
            source: KeySource::Auto,
            debounce_ms: 30,
            max_hold_s: 120,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KeySource {
    Auto,
    X11,
    Evdev,
    Socket,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LiveTurn {
    /// Server VAD: silence ends a turn.
    Vad,
    /// Hold the push-to-talk key to speak.
    Ptt,
    /// Semantic VAD: the model judges when the user has finished (`live.vad_eagerness`).
    SemanticVad,
}

impl LiveTurn {
    /// The server detects turns (either VAD): the microphone streams while live.
    pub(crate) fn is_vad(self) -> bool {
        matches!(self, LiveTurn::Vad | LiveTurn::SemanticVad)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) enum PermissionMode {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "acceptEdits")]
    AcceptEdits,
    #[serde(rename = "plan")]
    Plan,
    #[serde(rename = "dontAsk")]
    DontAsk,
    #[serde(rename = "bypassPermissions")]
    BypassPermissions,
}

impl PermissionMode {
    pub(crate) fn as_cli_arg(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Plan => "plan",
            PermissionMode::DontAsk => "dontAsk",
            PermissionMode::BypassPermissions => "bypassPermissions",
        }
    }
}

/// `tasks.permissions`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PermissionPolicy {
    /// Ask the user (voice, `ptt task allow`/`deny`), deny after the timeout.
    Ask,
    /// Deny at once, as headless Claude does without a prompt tool.
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Isolation {
    /// Run in the project directory itself.
    None,
    /// Run in a fresh empty directory under the state directory.
    Scratch,
    /// Run in a git worktree of the project on a branch of its own.
    Worktree,
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(v)
}

fn positive_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(serde::de::Error::custom("must be a number > 0"));
    }
    Ok(v)
}

fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(serde::de::Error::custom("must be a number >= 0"));
    }
    Ok(v)
}

/// A configuration error that points at the file, line and key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigError {
    pub(crate) file: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) key: Option<String>,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads the file; a missing file means all defaults.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        match read_capped(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(ConfigError { file: path.to_path_buf(), line: None, key: None, message: e.to_string() }),
        }
    }

    /// Loads the file, which must exist (a reload: a missing file is not "all defaults").
    pub(crate) fn reload(path: &Path) -> Result<Config, ConfigError> {
        match read_capped(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) => Err(ConfigError { file: path.to_path_buf(), line: None, key: None, message: e.to_string() }),
        }
    }

    /// What is allowed but probably a mistake (an unknown voice), one line each.
    pub(crate) fn warnings(&self, path: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if !KNOWN_VOICES.contains(&self.live.voice.as_str()) {
            out.push(format!(
                "{}: key `live.voice`: unknown voice `{}` (known: {}); the server may refuse the session",
                path.display(),
                self.live.voice,
                KNOWN_VOICES.join(", ")
            ));
        }
        out
    }

    /// Parses TOML text; `path` is only used in error messages.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let line_of = |span: Option<std::ops::Range<usize>>| {
            span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        };
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: line_of(e.span()),
            key: None,
            message: e.message().trim().to_string(),
        })?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError {
                file: path.to_path_buf(),
                line: line_of(inner.span()),
                key: (key != "." && !key.is_empty()).then_some(key),
                message: inner.message().trim().to_string(),
            }
        })?;
        config.validate(text, path)?;
        Ok(config)
    }

    /// Checks that cannot be expressed as types.
    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            file: path.to_path_buf(),
            line: find_key_line(text, key),
            key: Some(key.to_string()),
            message,
        };
        if self.tasks.claude.trim().is_empty() {
            return Err(err("tasks.claude", "must name the Claude Code CLI".into()));
        }
        for (name, dir) in &self.projects {
            if name.trim().is_empty() {
                return Err(err("projects", "a project name is empty".into()));
            }
            if dir.as_os_str().is_empty() {
                return Err(err(&format!("projects.{name}"), "directory is empty".into()));
            }
        }
        if let Err(e) = crate::hotkey::bindings::Bindings::parse(&self.keys.ptt, &self.keys.live, &self.keys.interrupt)
            .and_then(|b| b.with_quiet(&self.keys.quiet))
        {
            let key = e.config_key.clone();
            return Err(err(&key, e.to_string()));
        }
        if !(self.dictate.api_base.starts_with("https://") || self.dictate.api_base.starts_with("http://")) {
            return Err(err(
                "dictate.api_base",
                format!("`{}` is not an http:// or https:// URL", self.dictate.api_base),
            ));
        }
        if !(self.models.base_url.starts_with("https://") || self.models.base_url.starts_with("http://")) {
            return Err(err(
                "models.base_url",
                format!("`{}` is not an http:// or https:// URL", self.models.base_url),
            ));
        }
        let name = self.dictate.local_model.trim();
        if name.contains('/') || name.starts_with('.') {
            return Err(err(
                "dictate.local_model",
                format!(
                    "`{name}` is a model name such as \"base.en\" (`ptt model list`); a file goes in dictate.model_path"
                ),
            ));
        }
        if self.dictate.model.trim().is_empty() {
            return Err(err("dictate.model", "must name a transcription model".into()));
        }
        let commands = &self.dictate.commands;
        for (key, phrases) in [
            ("live_mode", &commands.live_mode),
            ("dictate_mode", &commands.dictate_mode),
            ("new_line", &commands.new_line),
            ("add_word", &commands.add_word),
        ] {
            if phrases.iter().any(|p| crate::text::normalise(p).is_empty()) {
                return Err(err(
                    &format!("dictate.commands.{key}"),
                    "a phrase is empty (after dropping punctuation)".into(),
                ));
            }
        }
        if !(self.live.url.starts_with("wss://") || self.live.url.starts_with("ws://")) {
            return Err(err("live.url", format!("`{}` is not a ws:// or wss:// URL", self.live.url)));
        }
        if self.live.model.trim().is_empty() {
            return Err(err("live.model", "must name a Realtime model (e.g. \"gpt-realtime-2.1\")".into()));
        }
        let base = self.live.api_base.trim();
        if !(base.is_empty() || base.starts_with("https://") || base.starts_with("http://")) {
            return Err(err("live.api_base", format!("`{base}` is not an http:// or https:// URL")));
        }
        for code in self.dictate.languages() {
            if !(2..=3).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(err(
                    "dictate.language",
                    format!("`{code}` is not an ISO-639-1 code; use two letters such as \"en\" (several: \"en, de\")"),
                ));
            }
        }
        for var in &self.tasks.env_allow {
            if var.is_empty() || var.contains('=') {
                return Err(err("tasks.env_allow", format!("`{var}` is not a variable name")));
            }
            if crate::process::is_denied_env(var) {
                return Err(err(
                    "tasks.env_allow",
                    format!("`{var}` is never passed to Claude (it is a secret or breaks the CLI)"),
                ));
            }
        }
        self.check_ranges(text, path)
    }

    /// Every numeric key within a sane range: a typo like `log_max_mb = 4294967295` is an error
    /// that names the file, the line, the key and the range, not a daemon that fills the disk.
    fn check_ranges(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let (t, l, d, k) = (&self.tasks, &self.live, &self.dictate, &self.keys);
        let ranges: [(&str, f64, f64, f64); 20] = [
            ("tasks.max_turns", t.max_turns.into(), 0.0, 1000.0),
            ("tasks.max_concurrent", t.max_concurrent.into(), 1.0, 256.0),
            ("tasks.timeout_min", t.timeout_min, 0.0, 10080.0),
            ("tasks.stall_min", t.stall_min, 0.0, 1440.0),
            ("tasks.budget_usd", t.budget_usd, 0.0, 100_000.0),
            ("tasks.kill_grace_s", t.kill_grace_s.into(), 0.0, 600.0),
            ("tasks.log_max_mb", t.log_max_mb.into(), 1.0, 4096.0),
            ("tasks.keep_ended", t.keep_ended.into(), 0.0, 100_000.0),
            ("live.ping_interval_s", l.ping_interval_s, 0.1, 300.0),
            ("live.pong_timeout_s", l.pong_timeout_s, 0.1, 120.0),
            ("live.renew_before_s", l.renew_before_s, 1.0, 3600.0),
            ("live.progress_min", l.progress_min, 0.0, 1440.0),
            ("dictate.min_ms", d.min_ms as f64, 0.0, 10_000.0),
            ("dictate.timeout_s", d.timeout_s, 1.0, 600.0),
            ("dictate.retries", d.retries.into(), 0.0, 20.0),
            ("dictate.key_delay_ms", d.key_delay_ms.into(), 0.0, 1000.0),
            ("dictate.recent", d.recent as f64, 0.0, 50.0),
            ("keys.debounce_ms", k.debounce_ms as f64, 0.0, 1000.0),
            ("keys.max_hold_s", k.max_hold_s as f64, 1.0, 3600.0),
            ("audio.cue_volume", self.audio.cue_volume.into(), 0.0, 1.0),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    line: find_key_line(text, key),
                    key: Some(key.to_string()),
                    message: format!("{value} is out of range: allowed {min} to {max}"),
                });
            }
        }
        Ok(())
    }
}

/// Longest configuration file read; anything larger is a mistake, not a config.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The Realtime API's voices; another name is accepted with a warning (new voices appear).
pub(crate) const KNOWN_VOICES: &[&str] =
    &["alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse"];

/// Reads at most [`MAX_CONFIG_BYTES`] (a 1 GB file, or `/dev/zero`, is refused, not read whole).
fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB: not a configuration file",
            MAX_CONFIG_BYTES >> 10
        )));
    }
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8 text"))
}

/// Best-effort line of `section.key` in the text, for semantic errors.
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        if current == section && line.split('=').next().map(|k| k.trim().trim_matches('"')) == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

/// The annotated default configuration printed by `ptt config default`.
pub(crate) const DEFAULT_CONFIG_TOML: &str = r#"# ptt configuration: $XDG_CONFIG_HOME/ptt/config.toml (usually ~/.config/ptt/config.toml).
# Every key is optional; the values below are the defaults.
# Check a file with `ptt config check`; reload a running daemon with `systemctl --user reload ptt`
# (SIGHUP). Task settings apply to tasks started after the reload.

[tasks]
# The Claude Code CLI: a command on PATH or an absolute path.
claude = "claude"
# Passed as --permission-mode: "default", "acceptEdits", "plan", "dontAsk" or
# "bypassPermissions" (logged loudly at start-up; the CLI refuses it as root).
permission_mode = "acceptEdits"
# When a task wants something that mode does not allow (a shell command that is
# not read-only, a write outside the project): "ask" puts the task in state
# "waiting" and asks you (spoken in live mode, `ptt task allow/deny` otherwise);
# "deny" refuses at once, as headless Claude does by itself.
permissions = "ask"
# Minutes a request waits for an answer before it is denied.
permission_timeout_min = 10.0
# Spending limit of one task in USD (--max-budget-usd); the task is stopped and
# fails with "stopped at its budget of $X". 0: none.
max_task_usd = 0.0
# --max-turns for each task; 0 leaves it to the CLI.
max_turns = 0
# --model for each task ("sonnet", "opus", a full id); empty leaves it to the CLI.
model = ""
# Tasks that may run at once; more are refused with "limit_reached".
max_concurrent = 4
# A task still running after this many minutes is stopped (0: never; fractions allowed).
timeout_min = 30.0
# A task that prints nothing for this many minutes is flagged as stalled (0: never).
stall_min = 5.0
# Daily spending limit in USD, summed from the costs Claude reports (local day).
# New tasks are refused once it is reached; a warning is logged at 80 %. 0: no limit.
budget_usd = 25.0
# Where a task runs: "none" (the project directory itself; one task per directory
# unless share_dirs = true), "scratch" (a fresh empty directory under the state
# directory) or "worktree" (a git worktree of the project on a branch ptt/<id>).
isolation = "none"
# Tasks may only run under these directories (and in configured projects).
allowed_roots = ["~"]
# Environment variables passed to Claude besides the built-in allowlist
# (PATH, HOME, USER, LOGNAME, SHELL, LANG, LC_*, TERM, TZ, TMPDIR, XDG_*,
# ANTHROPIC_*, CLAUDE_*). OPENAI_API_KEY, CLAUDECODE and CLAUDE_CODE_ENTRYPOINT
# are never passed.
env_allow = []
# Seconds between SIGTERM and SIGKILL when a task is cancelled or timed out.
kill_grace_s = 5
# Each task's full output is kept in $XDG_STATE_HOME/ptt/logs/<id>.log, cut at this size.
log_max_mb = 10
# Allow several tasks in the same directory with isolation = "none".
share_dirs = false
# How many ended tasks are remembered.
keep_ended = 200

[live]
# The OpenAI Realtime endpoint (GA); "?model=<model>" is added.
url = "wss://api.openai.com/v1/realtime"
# "gpt-realtime-2.1", or "gpt-realtime-2.1-mini" (about a third of the price). "gpt-realtime" and
# "gpt-realtime-mini" shut down on 2027-01-20: ptt warns until then and uses the 2.1 model after.
model = "gpt-realtime-2.1"
# The REST API the configured models are checked against (GET {api_base}/models/{model}, at start,
# daily and in `ptt doctor`); empty: derived from url (wss://HOST/v1/realtime -> https://HOST/v1).
api_base = ""
# How hard the 2.x models think before answering: "minimal", "low", "medium", "high" or "xhigh".
# Sent only to models that take it.
reasoning_effort = "low"
# Let the model call several tools in one response (2.x models).
parallel_tool_calls = true
# When the conversation outgrows the context, keep this fraction of it (so later turns keep
# their prompt cache); 0 leaves it to the server ("auto").
retention_ratio = 0.8
# alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar
voice = "marin"
# A text file replacing the built-in instructions (the task table is always appended).
# instructions_file = "~/.config/ptt/instructions.txt"
# The OpenAI API key: OPENAI_API_KEY from the environment, or this file (mode 0600).
# key_file = "~/.config/ptt/openai.key"
# Open a session just to speak task results when no session is open.
announce_when_idle = false
# "vad": the server hears when you stop talking; "semantic_vad": the model judges when you have
# finished (fewer cut-offs mid-thought); "ptt": hold the push-to-talk key to speak.
turn = "vad"
# With "semantic_vad": "low" (waits up to 8 s), "medium" (4 s), "high" (2 s) or "auto".
vad_eagerness = "auto"
# With "vad": keep the microphone open while the assistant speaks (only with a headset or echo
# cancellation, or the assistant hears itself).
full_duplex = false
# Keepalive: a WebSocket ping every ping_interval_s; no pong within pong_timeout_s = reconnect.
ping_interval_s = 15.0
pong_timeout_s = 10.0
# Sessions last 60 minutes; a new one is opened this many seconds before (when nobody is talking).
renew_before_s = 300.0
# A task that has run this many minutes (since it started or its last update) gets a short spoken
# update in the next pause ("t3 has run 12 minutes; it is running cargo test"); tasks due together
# share one. A stalled task is said once. 0: never.
progress_min = 5.0
# Transcribes what you say into the conversation log (used to re-seed a reconnected session);
# empty: off. If the server refuses the model, ptt transcribes each turn with a separate text
# request instead.
transcription_model = "gpt-transcribe"

[audio]
# Devices by name (`ptt doctor` lists them); empty: the system default.
input = ""
output = ""
# Keep the microphone stream open between turns so the first word is never lost.
keep_open = true
# Short sounds when a task starts, succeeds or fails, and when live mode goes on or off.
cues = true
cue_volume = 0.6

[keys]
# Hold to talk. Names: left_/right_ ctrl, shift, alt, super; escape, space, f1..f12, a..z, 0..9.
ptt = "right_ctrl"
# Toggle the live session: a chord (both keys down, either order).
live = "right_shift+right_ctrl"
# Cut the assistant off while it speaks.
interrupt = "escape"
# Toggle quiet mode (nothing is spoken; results wait for "what did I miss"). Empty: unbound;
# `ptt key toggle quiet` and the voice commands work either way.
quiet = ""
# Where keys come from: "auto" (evdev on Wayland and the console, X11 otherwise), "x11",
# "evdev" (needs membership in the input group), or "socket" (only `ptt key ...` from a
# compositor binding). `ptt doctor` says which is active and why the others are not.
source = "auto"
# A release counts after the key stayed up this long (bounces, auto-repeat pairs).
debounce_ms = 30
# A key seemingly held longer than this is released: a lost release never leaves it stuck.
max_hold_s = 120

[dictate]
# Hold the push-to-talk key (keys.ptt) while no live session is on: what you say is typed.
enabled = true
# An OpenAI-compatible API: the clip goes to {api_base}/audio/transcriptions. The key is the
# live section's (OPENAI_API_KEY or live.key_file).
api_base = "https://api.openai.com/v1"
# "gpt-transcribe" gets the vocabulary as keywords and the recent dictations as context.
# whisper-1 and gpt-4o(-mini)-transcribe shut down on 2027-02-26 (ptt then uses gpt-transcribe).
model = "gpt-transcribe"
# ISO-639-1 code such as "en", or several ("en, de"); empty: detected.
language = ""
# Shorter clips are dropped with a short cue (a tap of the key is not a dictation).
min_ms = 300
# Seconds for one upload attempt; 429, 5xx and network errors are retried this many more times
# (backoff, honouring Retry-After). A clip that still fails is kept: `ptt dictate retry`.
timeout_s = 30.0
retries = 3
# "auto" (decided when typing: wtype on Wayland, xdotool on X11, else ydotool, else the
# clipboard), "xdotool", "wtype", "ydotool", "clipboard" (paste, then restore) or "stdout".
typer = "auto"
key_delay_ms = 2
# The clipboard typer's paste keys: "ctrl+v", "ctrl+shift+v" (what terminals use) or "shift+insert".
paste_keys = "ctrl+v"
# A space after each dictation, so consecutive ones do not run together.
trailing_space = true
# How many recent dictations are sent as context, with the vocabulary.
recent = 3
# Words the transcriber should know, one per line ("add word X" appends here).
# vocabulary_file = "~/.local/state/ptt/vocabulary.txt"
# Who transcribes: "auto" (a local model when one is installed or configured, else OpenAI when a
# key is set), "local" (whisper.cpp on this machine: no key, no network) or "openai".
engine = "auto"
# The local model by name, from `ptt model download NAME` (`ptt model list` shows sizes and
# speeds); empty: the one downloaded last.
local_model = ""
# Or any whisper.cpp ggml file:
# model_path = "~/models/ggml-base.en.bin"
# Load the local model when the daemon starts (otherwise at the first dictation, which then
# takes the load time longer), and unload it after this many idle minutes (0: never).
preload = false
model_idle_min = 10.0
# Threads for the local model; 0: the cores that are free when a clip comes.
threads = 0

# Voice commands: a whole dictation equal to one of these phrases (case and punctuation
# ignored) is a command, not text.
[dictate.commands]
live_mode = ["live mode"]
dictate_mode = ["dictate mode", "dictation mode"]
new_line = ["new line"]
add_word = ["add word"]
# Quiet mode on and off (in dictation and in a live session).
quiet_mode = ["quiet mode"]
talk_again = ["you can talk again"]

# Desktop notifications (notify-send, libnotify-bin) when a task ends or a dictation fails;
# only where a session bus exists.
[notify]
enabled = true

# Where `ptt model download NAME` gets {base_url}/ggml-NAME.bin (checked against the SHA-1 in ptt).
[models]
base_url = "https://huggingface.co/ggerganov/whisper.cpp/resolve/main"

# Spoken project names and their directories, used by `--project NAME` and by voice.
[projects]
# website = "~/code/site"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/cfg/config.toml"))
    }

    #[test]
    fn default_file_parses_to_defaults() {
        assert_eq!(parse(DEFAULT_CONFIG_TOML).expect("defaults"), Config::default());
        assert_eq!(parse("").expect("empty"), Config::default());
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            "[tasks]\nmax_concurrent = 7\nisolation = \"worktree\"\npermission_mode = \"plan\"\n\
             [projects]\nwebsite = \"~/code/site\"\n",
        )
        .expect("parse");
        assert_eq!(c.tasks.max_concurrent, 7);
        assert_eq!(c.tasks.isolation, Isolation::Worktree);
        assert_eq!(c.tasks.permission_mode, PermissionMode::Plan);
        assert_eq!(c.projects["website"], PathBuf::from("~/code/site"));
        assert_eq!(c.tasks.timeout_min, 30.0, "unset keys keep defaults");
    }

    #[test]
    fn type_error_names_file_line_and_key() {
        let e = parse("# c\n[tasks]\nmodel = \"x\"\nmax_concurrent = \"four\"\n").unwrap_err();
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key.as_deref(), Some("tasks.max_concurrent"));
        let shown = e.to_string();
        assert!(shown.starts_with("/cfg/config.toml:4: key `tasks.max_concurrent`: "), "{shown}");
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let e = parse("[tasks]\nmax_concurent = 3\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("tasks.max_concurent"));
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn bad_enum_and_range_values() {
        let e = parse("[tasks]\nisolation = \"docker\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tasks.isolation"));
        assert_eq!(e.line, Some(2));
        let e = parse("[tasks]\n\nmax_concurrent = 0\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("tasks.max_concurrent")));
        assert!(e.message.contains("at least 1"));
        let e = parse("[tasks]\nbudget_usd = -1.0\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tasks.budget_usd"));
    }

    #[test]
    fn live_section() {
        let c = parse("[live]\nurl = \"ws://127.0.0.1:9/v1/realtime\"\nturn = \"ptt\"\n").expect("parse");
        assert_eq!(c.live.endpoint(), "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime-2.1");
        assert_eq!(c.live.turn, LiveTurn::Ptt);
        let e = parse("[live]\nurl = \"https://x\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("live.url")));
        let e = parse("[live]\npong_timeout_s = 0\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("live.pong_timeout_s"));
    }

    #[test]
    fn models_and_2x_settings() {
        let c = Config::default();
        assert_eq!(
            (c.live.model.as_str(), c.live.transcription_model.as_str()),
            ("gpt-realtime-2.1", "gpt-transcribe")
        );
        assert_eq!(c.dictate.model, "gpt-transcribe");
        assert_eq!(c.live.api_base(), "https://api.openai.com/v1");
        let c = parse(
            "[live]\nurl = \"ws://127.0.0.1:9/v1/realtime?x=1\"\nturn = \"semantic_vad\"\nvad_eagerness = \"high\"\n\
             reasoning_effort = \"xhigh\"\nretention_ratio = 0\nparallel_tool_calls = false\n\
             [dictate]\nlanguage = \"en, DE\"\n",
        )
        .expect("parse");
        assert_eq!(c.live.api_base(), "http://127.0.0.1:9/v1");
        assert_eq!((c.live.turn, c.live.vad_eagerness), (LiveTurn::SemanticVad, VadEagerness::High));
        assert!(c.live.turn.is_vad());
        assert_eq!((c.live.reasoning_effort, c.live.retention_ratio), (ReasoningEffort::Xhigh, 0.0));
        assert_eq!(c.dictate.languages(), ["en", "de"]);
        let c = parse("[live]\napi_base = \"https://proxy/v1/\"\n").expect("parse");
        assert_eq!(c.live.api_base(), "https://proxy/v1");
        for (text, key) in [
            ("[live]\nreasoning_effort = \"max\"\n", "live.reasoning_effort"),
            ("[live]\nretention_ratio = 1.5\n", "live.retention_ratio"),
            ("[live]\nvad_eagerness = \"eager\"\n", "live.vad_eagerness"),
            ("[live]\nmodel = \" \"\n", "live.model"),
            ("[live]\napi_base = \"api.openai.com\"\n", "live.api_base"),
            ("[dictate]\nlanguage = \"en-US\"\n", "dictate.language"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(2)), "{text}: {e}");
        }
    }

    #[test]
    fn key_bindings_are_checked() {
        let c = parse("[keys]\nptt = \"f9\"\nlive = \"left_alt+space\"\n").expect("parse");
        assert_eq!(c.keys.ptt, "f9");
        let e = parse("[keys]\nlive = \"rigth_ctrl+right_shift\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("keys.live")));
        assert!(e.message.contains("rigth_ctrl"), "{}", e.message);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("[tasks]\nmodel = \n").unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = parse("[tasks\n").unwrap_err();
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn secret_env_cannot_be_allowed() {
        let e = parse("[tasks]\nenv_allow = [\"FOO\", \"OPENAI_API_KEY\"]\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tasks.env_allow"));
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("OPENAI_API_KEY"));
    }

    #[test]
    fn missing_file_is_defaults_but_unreadable_is_an_error() {
        let c = Config::load(Path::new("/nonexistent/ptt/config.toml")).expect("defaults");
        assert_eq!(c, Config::default());
        let dir = std::env::temp_dir();
        let e = Config::load(&dir).unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
        // A reload needs the file: a deleted config is not silently "all defaults".
        assert!(Config::reload(Path::new("/nonexistent/ptt/config.toml")).is_err());
    }

    #[test]
    fn a_huge_or_endless_file_is_refused_without_reading_it_whole() {
        let e = Config::load(Path::new("/dev/zero")).unwrap_err();
        assert!(e.message.contains("larger than 1024 KiB"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("config.toml");
        std::fs::write(&big, format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES as usize))).expect("write");
        assert!(Config::load(&big).unwrap_err().message.contains("larger than"));
    }

    #[test]
    fn numbers_out_of_range_name_file_line_key_and_range() {
        let cases = [
            ("[tasks]\nlog_max_mb = 4294967295\n", "tasks.log_max_mb", 2),
            ("[tasks]\nmax_concurrent = 100000\n", "tasks.max_concurrent", 2),
            ("[tasks]\ntimeout_min = 1e300\n", "tasks.timeout_min", 2),
            ("[tasks]\nkill_grace_s = 86400\n", "tasks.kill_grace_s", 2),
            ("[live]\n\nping_interval_s = 0.001\n", "live.ping_interval_s", 3),
            ("[live]\npong_timeout_s = 100000\n", "live.pong_timeout_s", 2),
            ("[dictate]\nretries = 1000\n", "dictate.retries", 2),
            ("[keys]\nmax_hold_s = 0\n", "keys.max_hold_s", 2),
            ("[live]\nprogress_min = 2000\n", "live.progress_min", 2),
        ];
        for (text, key, line) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(line)), "{text}: {e}");
            let shown = e.to_string();
            assert!(shown.starts_with(&format!("/cfg/config.toml:{line}: key `{key}`")), "{shown}");
            assert!(shown.contains("allowed"), "{shown}");
        }
        assert_eq!(parse(DEFAULT_CONFIG_TOML).expect("defaults"), Config::default());
        let e = parse("[live]\nprogress_min = -1\n").unwrap_err();
        assert_eq!((e.key.as_deref(), e.line), (Some("live.progress_min"), Some(2)), "{e}");
        let c = parse("[live]\nprogress_min = 0.03\n[keys]\nquiet = \"right_alt+q\"\n").expect("accepted");
        assert_eq!((c.live.progress_min, c.keys.quiet.as_str()), (0.03, "right_alt+q"));
        let e = parse("[keys]\nquiet = \"escape\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("keys.quiet"), "{e}");
    }

    #[test]
    fn unknown_voice_is_a_warning() {
        let c = parse("[live]\nvoice = \"darth\"\n").expect("accepted");
        let w = c.warnings(Path::new("/cfg/config.toml"));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("live.voice") && w[0].contains("darth"), "{w:?}");
        assert!(Config::default().warnings(Path::new("/c")).is_empty());
    }
}
