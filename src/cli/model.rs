//! `ptt model`: the local speech models (whisper.cpp ggml files) in `$XDG_DATA_HOME/ptt/models`.
//!
//! - `list`: every model ptt can download, with its size, memory and speed on a small machine, which are
//!   installed, and which one dictation uses (and why).
//! - `download NAME [--sha1 HEX]`: fetches `{models.base_url}/ggml-NAME.bin` with a progress bar on a terminal
//!   (lines at each tenth otherwise), resumes a `.part` left by a cut connection, and installs the file only
//!   when its SHA-1 matches the table (or `--sha1` for a model the table does not know).
//! - `remove NAME`, `path [NAME]`.
//!
//! No daemon is needed: a running one uses a new model from its next dictation on.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::dictate::model_store::{self, Download, LocalModel, Progress};
use crate::paths::Paths;

use super::EXIT_FAILED;

fn load_config(paths: &Paths) -> Result<Config, i32> {
    Config::load(&paths.config_file).map_err(|e| {
        eprintln!("ptt: config error: {e}");
        crate::daemon::EXIT_CONFIG
    })
}

fn check_name(name: &str) -> Result<(), i32> {
    if model_store::valid_name(name) {
        return Ok(());
    }
    eprintln!("ptt: `{name}` is not a model name (letters, digits, `.`, `-`, `_`; see `ptt model list`)");
    Err(EXIT_FAILED)
}

/// `ptt model list`.
pub(crate) fn list(paths: &Paths) -> i32 {
    let config = match load_config(paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dir = paths.models_dir();
    let installed = model_store::installed(&dir);
    let in_use = model_store::local_model(&config.dictate, paths);
    let used = in_use.path().map(std::path::Path::to_path_buf);
    println!("{:<22} {:>9} {:>8} {:>10}  ", "model", "download", "memory", "2 s clip*");
    for e in model_store::CATALOG {
        let path = model_store::path_of(paths, e.name);
        let mut state = String::new();
        if let Some(i) = installed.iter().find(|i| i.path == path) {
            state = format!("installed ({})", model_store::human_bytes(i.bytes));
        }
        if used.as_deref() == Some(path.as_path()) {
            state.push_str(if state.is_empty() { "in use, NOT installed" } else { ", in use" });
        }
        println!("{:<22} {:>5} MiB {:>5} MB {:>8.2} s  {state}", e.name, e.mib, e.ram_mb, e.secs_2s_clip);
    }
    for i in installed.iter().filter(|i| model_store::find(&i.name).is_none()) {
        let mark = if used.as_deref() == Some(i.path.as_path()) { ", in use" } else { "" };
        println!(
            "{:<22} {:>9} {:>8} {:>10}  installed ({}){mark}",
            i.name,
            "-",
            "-",
            "-",
            model_store::human_bytes(i.bytes)
        );
    }
    println!();
    println!("* transcription time on 2 idle cores without a GPU (tiny.en measured; the others estimated from size).");
    println!("  `.en` models are English-only (and better at it); `-q5_*` are quantized: smaller, nearly as accurate.");
    println!("models directory: {}", dir.display());
    match &in_use {
        LocalModel::Configured(p) if config.dictate.model_path.is_some() => {
            println!("dictation uses: {} (dictate.model_path)", p.display())
        }
        LocalModel::Configured(p) => println!("dictation uses: {} (dictate.local_model)", p.display()),
        LocalModel::Installed(p) => println!("dictation uses: {} (the model installed last)", p.display()),
        LocalModel::None => {
            println!("dictation uses: no local model yet; `ptt model download base.en` gets a good one")
        }
    }
    if config.dictate.engine == crate::config::DictateEngine::Openai {
        println!("(dictate.engine = \"openai\": local models are not used)");
    }
    0
}

/// `ptt model path [NAME]`.
pub(crate) fn path(paths: &Paths, name: Option<&str>) -> i32 {
    match name {
        None => println!("{}", paths.models_dir().display()),
        Some(n) => {
            if let Err(code) = check_name(n) {
                return code;
            }
            println!("{}", model_store::path_of(paths, n).display());
        }
    }
    0
}

/// `ptt model remove NAME`.
pub(crate) fn remove(paths: &Paths, name: &str) -> i32 {
    if let Err(code) = check_name(name) {
        return code;
    }
    let file = model_store::path_of(paths, name);
    let part = model_store::part_path(&file);
    let _ = std::fs::remove_file(&part);
    match std::fs::remove_file(&file) {
        Ok(()) => {
            println!("removed {}", file.display());
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("ptt: {name} is not installed ({} does not exist)", file.display());
            EXIT_FAILED
        }
        Err(e) => {
            eprintln!("ptt: cannot remove {}: {e}", file.display());
            EXIT_FAILED
        }
    }
}

/// `ptt model download NAME [--sha1 HEX]`.
pub(crate) fn download(paths: &Paths, name: &str, sha1: Option<&str>) -> i32 {
    let config = match load_config(paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = check_name(name) {
        return code;
    }
    let entry = model_store::find(name);
    let sha1 = match (sha1, entry) {
        (Some(h), _) if h.len() == 40 && h.chars().all(|c| c.is_ascii_hexdigit()) => h.to_ascii_lowercase(),
        (Some(h), _) => {
            eprintln!("ptt: --sha1 `{h}` is not 40 hexadecimal digits");
            return EXIT_FAILED;
        }
        (None, Some(e)) => e.sha1.to_string(),
        (None, None) => {
            let names: Vec<&str> = model_store::CATALOG.iter().map(|e| e.name).collect();
            eprintln!(
                "ptt: no model `{name}` in the list ({}); for another whisper.cpp model give its checksum with --sha1",
                names.join(", ")
            );
            return EXIT_FAILED;
        }
    };
    let dest = model_store::path_of(paths, name);
    if dest.exists() {
        println!("{name} is already installed: {}", dest.display());
        return 0;
    }
    let url = format!("{}/{}", config.models.base_url.trim_end_matches('/'), model_store::file_name(name));
    let d = Download { url: url.clone(), dest, sha1, retries: 5, read_timeout: Duration::from_secs(30) };
    eprintln!("downloading {url}");
    let mut bar = Bar::new(nix::unistd::isatty(std::io::stderr()).unwrap_or(false));
    let result = model_store::download(&d, &mut |p| bar.show(p));
    bar.end();
    match result {
        Ok(path) => {
            println!("installed {name}: {} (SHA-1 checked)", path.display());
            let used = model_store::local_model(&config.dictate, paths);
            if used.path() != Some(path.as_path()) {
                let p = used.path().map(|p| p.display().to_string()).unwrap_or_default();
                println!("note: dictation uses {p} (dictate.model_path or dictate.local_model)");
            }
            0
        }
        Err(e) => {
            eprintln!("ptt: download failed: {e}");
            EXIT_FAILED
        }
    }
}

/// The progress display: a bar redrawn in place on a terminal, a line at each tenth otherwise.
struct Bar {
    tty: bool,
    started: Instant,
    last_draw: Option<Instant>,
    last_tenth: Option<u64>,
    resumed: Option<u64>,
}

impl Bar {
    fn new(tty: bool) -> Bar {
        Bar { tty, started: Instant::now(), last_draw: None, last_tenth: None, resumed: None }
    }

    fn show(&mut self, p: Progress) {
        let mut err = std::io::stderr().lock();
        if p.resumed_from > 0 && self.resumed != Some(p.resumed_from) {
            self.resumed = Some(p.resumed_from);
            let _ = write!(err, "{}", if self.tty { "\r\x1b[K" } else { "" });
            let _ =
                writeln!(err, "resuming at {} (a partial download was kept)", model_store::human_bytes(p.resumed_from));
        }
        let percent = p.total.filter(|t| *t > 0).map(|t| p.done.min(t) * 100 / t);
        let size = match p.total {
            Some(t) => format!("{} of {}", model_store::human_bytes(p.done), model_store::human_bytes(t)),
            None => model_store::human_bytes(p.done),
        };
        if self.tty {
            if self.last_draw.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) && percent != Some(100) {
                return;
            }
            self.last_draw = Some(Instant::now());
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            let rate = (p.done - p.resumed_from) as f64 / secs;
            let filled = percent.unwrap_or(0) as usize * 30 / 100;
            let _ = write!(
                err,
                "\r\x1b[K[{}{}] {:>3}% {size} {}/s",
                "#".repeat(filled),
                " ".repeat(30 - filled),
                percent.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                model_store::human_bytes(rate as u64)
            );
        } else if let Some(pc) = percent {
            let tenth = pc / 10;
            if self.last_tenth != Some(tenth) {
                self.last_tenth = Some(tenth);
                let _ = writeln!(err, "download: {pc:>3}% ({size})");
            }
        }
        let _ = err.flush();
    }

    fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// How a `ptt doctor` line about local dictation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Ok,
    Warn,
    Fail,
}

/// `ptt doctor`'s lines about dictation's engine: which one transcribes, and for the local one the model file,
/// its size, and a measured load and transcription of one second of silence.
pub(crate) fn doctor(config: &Config, paths: &Paths) -> Vec<(Health, &'static str, String)> {
    use crate::dictate::engine::{self, Engine};
    let mut out = Vec::new();
    if !config.dictate.enabled {
        return out;
    }
    let local = model_store::local_model(&config.dictate, paths);
    let key = crate::secrets::load_key(&config.live, paths);
    let setting = format!(
        "dictate.engine = \"{}\"",
        serde_json::to_value(config.dictate.engine).unwrap_or_default().as_str().unwrap_or("?")
    );
    let path = match engine::choose(&config.dictate, &local, key) {
        Ok(Engine::OpenAi(_)) => {
            let why = if local.path().is_none() { "no local model installed" } else { "chosen" };
            out.push((Health::Ok, "dictation engine", format!("OpenAI ({setting}; {why})")));
            return out;
        }
        Ok(Engine::Local(p)) => {
            out.push((
                Health::Ok,
                "dictation engine",
                format!("local whisper.cpp, no key or network needed ({setting})"),
            ));
            p
        }
        Err(e) => {
            out.push((Health::Warn, "dictation engine", format!("none: {e}")));
            return out;
        }
    };
    let mut model = match crate::dictate::local::Model::load(&path) {
        Ok(m) => m,
        Err(e) => {
            out.push((Health::Fail, "local model", e));
            return out;
        }
    };
    let kind = model_store::check_file(&path)
        .map(|i| format!(", {}{}", i.size_class(), if i.multilingual() { ", multilingual" } else { ", English-only" }))
        .unwrap_or_default();
    out.push((
        Health::Ok,
        "local model",
        format!(
            "{} ({}{kind}), loaded in {} ms",
            path.display(),
            model_store::human_bytes(model.bytes),
            model.load_time.as_millis()
        ),
    ));
    let silence = vec![0.0f32; crate::dictate::local::RATE as usize];
    let threads = crate::dictate::local::threads(config.dictate.threads);
    let language = crate::dictate::local::one_language(&config.dictate.languages());
    match model.transcribe(&silence, None, language.as_deref(), threads) {
        Ok(t) => out.push((
            Health::Ok,
            "local model",
            format!("1 s of silence transcribed in {} ms on {threads} thread(s)", t.took.as_millis()),
        )),
        Err(e) => out.push((Health::Fail, "local model", format!("cannot transcribe: {e}"))),
    }
    out
}
