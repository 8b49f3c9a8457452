//! `ptt doctor`: checks what ptt needs and says what to do about each problem.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::control::{Request, client};
use crate::paths::Paths;

#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

fn say(v: Verdict, what: &str, detail: &str) {
    let tag = match v {
        Verdict::Ok => "ok  ",
        Verdict::Warn => "warn",
        Verdict::Fail => "FAIL",
    };
    println!("[{tag}] {what}: {detail}");
}

/// Dictation: which typer `auto` would use in this session, clips kept after failures, the legacy import.
fn dictation_checks(config: &Config, paths: &Paths, check: &mut impl FnMut(Verdict, &str, String)) {
    use crate::dictate::typer;
    if !config.dictate.enabled {
        check(Verdict::Ok, "dictation", "off (dictate.enabled = false)".into());
        return;
    }
    let session = crate::dictate::worker::current_session();
    let where_ = match (&session.wayland_display, &session.display) {
        (Some(w), Some(d)) => format!("Wayland session {w} (with XWayland {d})"),
        (Some(w), None) => format!("Wayland session {w}"),
        (None, Some(d)) => format!("X11 session {d}"),
        (None, None) => "no graphical session (neither DISPLAY nor WAYLAND_DISPLAY is set)".to_string(),
    };
    let configured = format!("{:?}", config.dictate.typer).to_lowercase();
    match typer::choose(config.dictate.typer, &session).map(|b| b.with_paste_keys(config.dictate.paste_keys)) {
        Ok(b) => {
            let with = backend_name(&b);
            check(
                Verdict::Ok,
                "dictation",
                format!(
                    "types with {with} here ({where_}; dictate.typer = {configured}; auto decides again each time)"
                ),
            )
        }
        Err(e) => check(Verdict::Warn, "dictation", format!("cannot type here ({where_}): {e}")),
    }
    for (kind, verdict) in typer::report(&session) {
        let name = format!("{kind:?}").to_lowercase();
        match verdict.map(|b| b.with_paste_keys(config.dictate.paste_keys)) {
            Ok(b) => println!("       typer {name}: usable ({})", backend_name(&b)),
            Err(e) => println!("       typer {name}: not usable: {e}"),
        }
    }
    match crate::dictate::spool::Spool::new(&paths.state_dir).failed() {
        Ok(k) if k.is_empty() => {}
        Ok(k) => check(
            Verdict::Warn,
            "dictation",
            format!("{} clip(s) kept after failed transcriptions; `ptt dictate retry` sends them again", k.len()),
        ),
        Err(e) => check(Verdict::Warn, "dictation", format!("cannot list kept clips: {e}")),
    }
    if let Ok(record) = std::fs::read_to_string(crate::dictate::legacy::record_file(paths)) {
        check(Verdict::Ok, "legacy import", "settings of the Python app were imported:".into());
        for line in record.lines() {
            println!("       {line}");
        }
    }
}

/// A backend as the user configures it, with the tools it runs.
/// The configured models: retired ones (date and replacement), then what the API says about each
/// (`GET {api_base}/models/{model}`: a shutdown date within 30 days, or gone).
fn model_checks(config: &Config, paths: &Paths, check: &mut impl FnMut(Verdict, &str, String)) {
    use crate::models::check::{Outcome, check_all};
    let today = crate::models::Date::today();
    let (used, choices) = crate::daemon::lifecycle::effective(config, today);
    for c in &choices {
        match c.warning() {
            Some(w) => check(Verdict::Warn, "model", w),
            None => check(Verdict::Ok, "model", format!("{} = \"{}\"", c.key, c.model)),
        }
    }
    if std::env::var("PTT_MODEL_CHECK").is_ok_and(|v| v == "off") {
        return;
    }
    let Ok(key) = crate::secrets::load_key(&config.live, paths) else { return };
    for r in check_all(&crate::daemon::lifecycle::targets(&used), &key, today) {
        let what = format!("{} at the API", r.key);
        match (&r.outcome, r.problem()) {
            (_, Some(p)) if r.is_error() => check(Verdict::Fail, &what, p),
            (_, Some(p)) => check(Verdict::Warn, &what, p),
            (Outcome::Current { shutdown: Some(d) }, None) => {
                check(Verdict::Ok, &what, format!("\"{}\" is served (shutdown announced for {d})", r.model))
            }
            (Outcome::Current { shutdown: None }, None) => {
                check(Verdict::Ok, &what, format!("\"{}\" is served, no shutdown announced", r.model))
            }
            (Outcome::Unknown { reason }, None) => {
                check(Verdict::Warn, &what, format!("could not check \"{}\": {reason}", r.model))
            }
            (_, None) => {}
        }
    }
}

fn backend_name(b: &crate::dictate::typer::Backend) -> String {
    use crate::dictate::typer::{Backend, Clipboard, Paste, PasteKeys};
    match b {
        Backend::Xdotool => "xdotool".into(),
        Backend::Wtype => "wtype".into(),
        Backend::Ydotool => "ydotool".into(),
        Backend::Stdout => "stdout".into(),
        Backend::Clipboard(clip, paste, keys) => {
            let clip = match clip {
                Clipboard::Xclip => "xclip",
                Clipboard::Xsel => "xsel",
                Clipboard::WlCopy => "wl-copy/wl-paste",
            };
            let paste = match paste {
                Paste::Xdotool => "xdotool",
                Paste::Wtype => "wtype",
                Paste::Ydotool => "ydotool",
            };
            let keys = match keys {
                PasteKeys::CtrlV => "Ctrl+V",
                PasteKeys::CtrlShiftV => "Ctrl+Shift+V",
                PasteKeys::ShiftInsert => "Shift+Insert",
            };
            format!("the clipboard: {clip}, pasted with {keys} from {paste}")
        }
    }
}

/// Runs every check; exit status 1 when one fails.
pub(crate) fn run(paths: &Paths) -> i32 {
    let mut failed = false;
    let mut check = |v: Verdict, what: &str, detail: String| {
        failed |= v == Verdict::Fail;
        say(v, what, &detail);
    };

    let config = match Config::load(&paths.config_file) {
        Ok(c) => {
            let where_ = if paths.config_file.exists() { "valid" } else { "no file, defaults apply" };
            check(Verdict::Ok, "config", format!("{} ({where_})", paths.config_file.display()));
            c
        }
        Err(e) => {
            check(Verdict::Fail, "config", e.to_string());
            Config::default()
        }
    };

    let claude = &config.tasks.claude;
    match crate::process::find_executable(claude, std::env::var_os("PATH").as_deref()) {
        Some(path) => match version_of(&path) {
            Ok(v) => check(Verdict::Ok, "claude", format!("{} ({v})", path.display())),
            Err(e) => check(Verdict::Fail, "claude", format!("{} does not answer --version: {e}", path.display())),
        },
        None => check(
            Verdict::Fail,
            "claude",
            format!(
                "`{claude}` not found; install it with `npm install -g @anthropic-ai/claude-code` or set tasks.claude"
            ),
        ),
    }

    for (what, dir) in [("state dir", paths.state_dir.clone()), ("runtime dir", paths.runtime_dir.clone())] {
        match writable(&dir) {
            Ok(()) => check(Verdict::Ok, what, format!("{} is writable", dir.display())),
            Err(e) => check(Verdict::Fail, what, format!("{}: {e}", dir.display())),
        }
    }

    let audio = crate::audio::probe(&config.audio.to_audio_config());
    if audio.voice_available() {
        check(Verdict::Ok, "audio", "microphone and speaker open".into());
    } else {
        let why = audio.reason().unwrap_or_else(|| "unknown".into());
        check(Verdict::Warn, "audio", format!("voice is off: {why}; tasks and text mode work without it"));
    }
    for line in audio.lines() {
        println!("       {line}");
    }

    match crate::secrets::load_key(&config.live, paths) {
        Ok(_) => check(Verdict::Ok, "openai key", "present (live mode and dictation can connect)".into()),
        Err(e) => check(
            Verdict::Warn,
            "openai key",
            format!("{e}; live mode and dictation are off until then (tasks work without it)"),
        ),
    }

    dictation_checks(&config, paths, &mut check);
    for (health, what, detail) in super::model::doctor(&config, paths) {
        let verdict = match health {
            super::model::Health::Ok => Verdict::Ok,
            super::model::Health::Warn => Verdict::Warn,
            super::model::Health::Fail => Verdict::Fail,
        };
        check(verdict, what, detail);
    }
    model_checks(&config, paths, &mut check);

    match client::request(&paths.socket(), &Request::Status) {
        Ok(v) => match crate::control::reply::parse::<crate::control::reply::StatusReply>(&v) {
            Ok(status) => {
                check(
                    Verdict::Ok,
                    "daemon",
                    format!("running (pid {}, {} task(s) running)", status.daemon.pid, status.tasks.running),
                );
                for line in &status.hotkeys.report {
                    println!("       {line}");
                }
                if let Some(stopped) = status.hotkeys.stopped {
                    check(Verdict::Warn, "hotkeys", stopped);
                }
                let live = &status.live;
                match live.state.as_deref() {
                    Some("failed") => check(
                        Verdict::Fail,
                        "live",
                        format!(
                            "stopped: {} (fix it, then `ptt key toggle live`)",
                            live.error.as_deref().unwrap_or("?")
                        ),
                    ),
                    Some(state) => {
                        let last = live.last_close.as_ref().map(|c| format!("; last close: {c}")).unwrap_or_default();
                        check(Verdict::Ok, "live", format!("{state}{last}"))
                    }
                    None => {}
                }
            }
            Err(f) => check(Verdict::Fail, "daemon", f.message),
        },
        Err(client::ClientError::NotRunning(_)) => {
            check(
                Verdict::Warn,
                "daemon",
                "not running; start it with `ptt run` or `systemctl --user start ptt`".into(),
            );
            // What the daemon would find from this environment.
            if let Ok(b) = crate::hotkey::Bindings::parse(&config.keys.ptt, &config.keys.live, &config.keys.interrupt) {
                for line in crate::hotkey::detect(&b.keys()).report() {
                    println!("       {line}");
                }
            }
        }
        Err(e) => check(Verdict::Fail, "daemon", e.to_string()),
    }
    if failed { 1 } else { 0 }
}

fn writable(dir: &std::path::Path) -> std::io::Result<()> {
    // Private, like the daemon makes them: a runtime directory created here with the umask's 0755 would be
    // refused by the daemon started next (it never changes the mode of a directory it did not create).
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(dir)?;
    let probe = dir.join(format!(".ptt-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"ok")?;
    std::fs::remove_file(&probe)
}

/// `claude --version`, with a timeout (a broken install must not hang the doctor).
fn version_of(path: &std::path::Path) -> Result<String, String> {
    let mut child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("OPENAI_API_KEY")
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut so) = child.stdout.take() {
                    use std::io::Read;
                    let _ = so.read_to_string(&mut out);
                }
                return if status.success() {
                    Ok(out.trim().to_string())
                } else {
                    Err(format!("exited with {status}"))
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out".into());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
