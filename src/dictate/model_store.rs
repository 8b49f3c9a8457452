//! Local speech models: the whisper.cpp ggml files `ptt model` lists, downloads and removes, and which one
//! local dictation uses. (Named `model_store`, not `models`: the crate's `models/` is the OpenAI model-name
//! lifecycle, a different thing that code near dictation also uses.)
//!
//! Why it is shaped like this:
//! - **A table in the code** ([`CATALOG`]): each model's SHA-1 as the whisper.cpp project publishes it, its
//!   size, its memory and its speed on a small machine. A download is installed only when its checksum matches
//!   the table (or a `--sha1` the user gave for a file the table does not know): a cut or tampered file never
//!   becomes the model.
//! - **Resumable and atomic** ([`download`]): bytes go to `ggml-NAME.bin.part`; a cut connection is resumed
//!   with an HTTP `Range` request (in the same run, a few times, and in the next run from the `.part` left on
//!   disk); only a verified file is renamed to `ggml-NAME.bin`, after an `fsync`, so dictation never loads half
//!   a model.
//! - **Blocking ureq, no thread of its own**: downloading is a CLI command (`ptt model download`), never the
//!   daemon's business. An idle-read timeout turns a stalled server into an error that the next run resumes.
//! - **Which model dictation uses** ([`local_model`]): `dictate.model_path` (any ggml file), else
//!   `dictate.local_model` by name, else the model installed last. "Configured" (the first two) counts for
//!   `dictate.engine = "auto"` even when the file is missing: the user then gets a clear error, not a silent
//!   switch to the cloud.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::config::DictateConfig;
use crate::paths::Paths;

/// One downloadable whisper.cpp model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    /// As in `ggml-NAME.bin`: `tiny.en`, `base`, `small.en-q5_1`, …
    pub(crate) name: &'static str,
    /// SHA-1 of the file, from the whisper.cpp project's model list.
    pub(crate) sha1: &'static str,
    /// Size on disk, MiB (approximate: for the listing and the free-space check).
    pub(crate) mib: u32,
    /// Memory while loaded, MB (whisper.cpp's figures; quantized models need less).
    pub(crate) ram_mb: u32,
    /// Seconds to transcribe a 2 s utterance on 2 idle cores with a clip-sized context (tiny.en: whisper.cpp
    /// measured 0.24 s for 1.7 s of speech; the others estimated from their size).
    pub(crate) secs_2s_clip: f32,
}

impl Entry {
    #[cfg(test)]
    pub(crate) fn english_only(&self) -> bool {
        self.name.contains(".en")
    }
}

/// The models `ptt model download` knows. Checksums are the whisper.cpp project's
/// (`models/README.md` there and the published files); speeds are for 2 cores without a GPU.
pub(crate) const CATALOG: &[Entry] = &[
    Entry {
        name: "tiny.en",
        sha1: "c78c86eb1a8faa21b369bcd33207cc90d64ae9df",
        mib: 75,
        ram_mb: 273,
        secs_2s_clip: 0.25,
    },
    Entry { name: "tiny", sha1: "bd577a113a864445d4c299885e0cb97d4ba92b5f", mib: 75, ram_mb: 273, secs_2s_clip: 0.25 },
    Entry {
        name: "tiny.en-q5_1",
        sha1: "3fb92ec865cbbc769f08137f22470d6b66e071b6",
        mib: 31,
        ram_mb: 180,
        secs_2s_clip: 0.3,
    },
    Entry {
        name: "base.en",
        sha1: "137c40403d78fd54d454da0f9bd998f78703390c",
        mib: 142,
        ram_mb: 388,
        secs_2s_clip: 0.5,
    },
    Entry { name: "base", sha1: "465707469ff3a37a2b9b8d8f89f2f99de7299dac", mib: 142, ram_mb: 388, secs_2s_clip: 0.5 },
    Entry {
        name: "base.en-q5_1",
        sha1: "d26d7ce5a1b6e57bea5d0431b9c20ae49423c94a",
        mib: 57,
        ram_mb: 250,
        secs_2s_clip: 0.6,
    },
    Entry {
        name: "small.en",
        sha1: "db8a495a91d927739e50b3fc1cc4c6b8f6c2d022",
        mib: 466,
        ram_mb: 852,
        secs_2s_clip: 1.6,
    },
    Entry { name: "small", sha1: "55356645c2b361a969dfd0ef2c5a50d530afd8d5", mib: 466, ram_mb: 852, secs_2s_clip: 1.6 },
    Entry {
        name: "small.en-q5_1",
        sha1: "20f54878d608f94e4a8ee3ae56016571d47cba34",
        mib: 181,
        ram_mb: 500,
        secs_2s_clip: 1.8,
    },
    Entry {
        name: "medium.en",
        sha1: "8c30f0e44ce9560643ebd10bbe50cd20eafd3723",
        mib: 1536,
        ram_mb: 2100,
        secs_2s_clip: 5.0,
    },
    Entry {
        name: "medium",
        sha1: "fd9727b6e1217c2f614f9b698455c4ffd82463b4",
        mib: 1536,
        ram_mb: 2100,
        secs_2s_clip: 5.0,
    },
    Entry {
        name: "medium.en-q5_0",
        sha1: "bb3b5281bddd61605d6fc76bc5b92d8f20284c3b",
        mib: 514,
        ram_mb: 1000,
        secs_2s_clip: 5.5,
    },
    Entry {
        name: "large-v3-turbo",
        sha1: "4af2b29d7ec73d781377bfd1758ca957a807e941",
        mib: 1536,
        ram_mb: 2300,
        secs_2s_clip: 6.0,
    },
    Entry {
        name: "large-v3-turbo-q5_0",
        sha1: "e050f7970618a659205450ad97eb95a18d69c9ee",
        mib: 547,
        ram_mb: 1200,
        secs_2s_clip: 6.5,
    },
];

/// The table entry for `name`.
pub(crate) fn find(name: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.name == name)
}

/// A name safe to put in a file name and a URL (no path, no hidden file).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `ggml-NAME.bin`.
pub(crate) fn file_name(name: &str) -> String {
    format!("ggml-{name}.bin")
}

/// Where `name` is (or would be) installed.
pub(crate) fn path_of(paths: &Paths, name: &str) -> PathBuf {
    paths.models_dir().join(file_name(name))
}

/// A model file in the models directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Installed {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) modified: SystemTime,
}

/// The installed models (`ggml-*.bin`), newest first. A missing directory is an empty list.
pub(crate) fn installed(dir: &Path) -> Vec<Installed> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<Installed> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_string();
            let name = file.strip_prefix("ggml-")?.strip_suffix(".bin")?.to_string();
            let meta = std::fs::metadata(e.path()).ok().filter(|m| m.is_file())?;
            Some(Installed { name, path: e.path(), bytes: meta.len(), modified: meta.modified().ok()? })
        })
        .collect();
    found.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.name.cmp(&b.name)));
    found
}

/// The local model dictation would use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalModel {
    /// `dictate.model_path`, or `dictate.local_model` (the file may be missing: a configured model is still
    /// the user's choice, and loading it says what is wrong).
    Configured(PathBuf),
    /// None configured: the one installed last.
    Installed(PathBuf),
    /// Nothing configured, nothing installed.
    None,
}

impl LocalModel {
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            LocalModel::Configured(p) | LocalModel::Installed(p) => Some(p),
            LocalModel::None => None,
        }
    }
}

/// Which local model dictation uses: `model_path`, else `local_model`, else the newest installed.
pub(crate) fn local_model(cfg: &DictateConfig, paths: &Paths) -> LocalModel {
    if let Some(p) = &cfg.model_path {
        return LocalModel::Configured(paths.expand_tilde(p));
    }
    let name = cfg.local_model.trim();
    if !name.is_empty() {
        return LocalModel::Configured(path_of(paths, name));
    }
    match installed(&paths.models_dir()).into_iter().next() {
        Some(m) => LocalModel::Installed(m.path),
        None => LocalModel::None,
    }
}

/// A size for people: `75.0 MiB`, `1.5 GiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 { format!("{:.1} GiB", mib / 1024.0) } else { format!("{mib:.1} MiB") }
}

/// The lowercase hex SHA-1 of a file.
pub fn sha1_file(path: &Path) -> std::io::Result<String> {
    use sha1::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What a model file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub(crate) bytes: u64,
    pub(crate) n_vocab: i32,
    /// Encoder layers: 4 tiny, 6 base, 12 small, 24 medium, 32 large.
    pub(crate) n_audio_layer: i32,
    pub(crate) tensors: u32,
}

impl FileInfo {
    /// Multilingual models have the larger vocabulary (51865 or more tokens).
    pub(crate) fn multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// "tiny", "base", … from the encoder's depth.
    pub(crate) fn size_class(&self) -> &'static str {
        match self.n_audio_layer {
            4 => "tiny",
            6 => "base",
            12 => "small",
            24 => "medium",
            32 => "large",
            _ => "unknown size",
        }
    }
}

/// Bytes per block and elements per block of the ggml tensor types whisper models use.
fn ggml_type_size(ttype: i32) -> Option<(u64, u64)> {
    Some(match ttype {
        0 => (4, 1),      // f32
        1 => (2, 1),      // f16
        2 => (18, 32),    // q4_0
        3 => (20, 32),    // q4_1
        6 => (22, 32),    // q5_0
        7 => (24, 32),    // q5_1
        8 => (34, 32),    // q8_0
        9 => (36, 32),    // q8_1
        10 => (84, 256),  // q2_K
        11 => (110, 256), // q3_K
        12 => (144, 256), // q4_K
        13 => (176, 256), // q5_K
        14 => (210, 256), // q6_K
        30 => (2, 1),     // bf16
        _ => return None,
    })
}

/// Walks a whisper.cpp ggml file's structure (header, mel filters, vocabulary, every tensor's header and the
/// room for its data) without loading it. whisper.cpp trusts the sizes it reads, so a damaged header could
/// make it allocate without bound (an abort, not an error); a truncated file is reported here with where it
/// ends.
pub(crate) fn check_file(path: &Path) -> Result<FileInfo, String> {
    let shown = path.display();
    let bytes = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?.len();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, file);
    let mut pos: u64 = 0;
    let truncated = |what: &str, at: u64| {
        format!("{shown} is truncated: it ends at byte {bytes}, inside {what} (at byte {at}); download it again")
    };
    let read_i32 = |r: &mut std::io::BufReader<std::fs::File>, pos: &mut u64, what: &str| -> Result<i32, String> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|_| truncated(what, *pos))?;
        *pos += 4;
        Ok(i32::from_le_bytes(b))
    };
    let magic = read_i32(&mut r, &mut pos, "the header")?;
    if magic.to_le_bytes() != *b"lmgg" {
        return Err(format!(
            "{shown} is not a whisper.cpp model (a ggml file starts with \"lmgg\"; this one with {:02x?})",
            magic.to_le_bytes()
        ));
    }
    let mut h = [0i32; 11];
    for v in h.iter_mut() {
        *v = read_i32(&mut r, &mut pos, "the header")?;
    }
    let [n_vocab, n_audio_ctx, n_audio_state, _, n_audio_layer, n_text_ctx, n_text_state, _, n_text_layer, n_mels, _] =
        h;
    let sane = (1..=1_000_000).contains(&n_vocab)
        && (1..=100_000).contains(&n_audio_ctx)
        && (1..=100_000).contains(&n_audio_state)
        && (1..=1000).contains(&n_audio_layer)
        && (1..=100_000).contains(&n_text_ctx)
        && (1..=100_000).contains(&n_text_state)
        && (1..=1000).contains(&n_text_layer)
        && (1..=1024).contains(&n_mels);
    if !sane {
        return Err(format!("{shown} is damaged: its header makes no sense ({h:?})"));
    }
    let n_mel = read_i32(&mut r, &mut pos, "the mel filters")?;
    let n_fft = read_i32(&mut r, &mut pos, "the mel filters")?;
    if !(1..=1024).contains(&n_mel) || !(1..=4096).contains(&n_fft) {
        return Err(format!("{shown} is damaged: mel filters of {n_mel}×{n_fft}"));
    }
    let skip = |r: &mut std::io::BufReader<std::fs::File>, pos: &mut u64, n: u64, what: &str| -> Result<(), String> {
        if *pos + n > bytes {
            return Err(truncated(what, *pos));
        }
        r.seek_relative(n as i64).map_err(|e| format!("cannot read {shown}: {e}"))?;
        *pos += n;
        Ok(())
    };
    skip(&mut r, &mut pos, n_mel as u64 * n_fft as u64 * 4, "the mel filters")?;
    let tokens = read_i32(&mut r, &mut pos, "the vocabulary")?;
    if !(0..=1_000_000).contains(&tokens) {
        return Err(format!("{shown} is damaged: a vocabulary of {tokens} tokens"));
    }
    for _ in 0..tokens {
        let len = read_i32(&mut r, &mut pos, "the vocabulary")?;
        if !(0..=4096).contains(&len) {
            return Err(format!("{shown} is damaged: a token of {len} bytes at byte {pos}"));
        }
        skip(&mut r, &mut pos, len as u64, "the vocabulary")?;
    }
    let mut tensors = 0u32;
    while pos < bytes {
        let n_dims = read_i32(&mut r, &mut pos, "a tensor header")?;
        let name_len = read_i32(&mut r, &mut pos, "a tensor header")?;
        let ttype = read_i32(&mut r, &mut pos, "a tensor header")?;
        if !(1..=4).contains(&n_dims) || !(1..=1024).contains(&name_len) {
            return Err(format!("{shown} is damaged: tensor {tensors} has a bad header at byte {pos}"));
        }
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            let d = read_i32(&mut r, &mut pos, "a tensor header")?;
            if d < 1 {
                return Err(format!("{shown} is damaged: tensor {tensors} has a dimension of {d}"));
            }
            elements = elements.saturating_mul(d as u64);
        }
        skip(&mut r, &mut pos, name_len as u64, "a tensor name")?;
        let Some((block_bytes, block_len)) = ggml_type_size(ttype) else {
            // A type this check does not know: whisper.cpp decides about the rest.
            tensors += 1;
            break;
        };
        skip(&mut r, &mut pos, elements.div_ceil(block_len).saturating_mul(block_bytes), "a tensor's data")?;
        tensors += 1;
    }
    if tensors == 0 {
        return Err(format!("{shown} has no weights (it ends after the vocabulary, at byte {bytes})"));
    }
    Ok(FileInfo { bytes, n_vocab, n_audio_layer, tensors })
}

/// How far a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) done: u64,
    /// From `Content-Length` (plus what was resumed), when the server says.
    pub(crate) total: Option<u64>,
    /// Bytes that were already on disk from an earlier attempt.
    pub(crate) resumed_from: u64,
}

/// What to fetch and how to check it.
#[derive(Debug, Clone)]
pub(crate) struct Download {
    pub(crate) url: String,
    /// Where the verified file goes (`…/ggml-NAME.bin`); `….part` beside it while downloading.
    pub(crate) dest: PathBuf,
    /// Lowercase hex.
    pub(crate) sha1: String,
    /// Attempts after a cut connection (each resumes where the last one stopped).
    pub(crate) retries: u32,
    /// A read that waits longer than this counts as a cut connection.
    pub(crate) read_timeout: Duration,
}

/// The `.part` file of a download.
pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// How one request ended.
enum Attempt {
    Complete,
    /// The connection broke after `got` new bytes: try again from where the file ends.
    Cut {
        why: String,
        got: u64,
    },
    /// No point in trying again (HTTP 404, a full disk, …).
    Final(String),
}

/// Downloads, verifies and installs one model; blocks. `progress` is called as bytes arrive.
pub(crate) fn download(d: &Download, progress: &mut dyn FnMut(Progress)) -> Result<PathBuf, String> {
    let dir = d.dest.parent().ok_or_else(|| format!("{} has no directory", d.dest.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let part = part_path(&d.dest);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(d.read_timeout))
        .http_status_as_error(false)
        .user_agent(concat!("ptt/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut failures = 0;
    loop {
        match attempt(&agent, d, &part, progress) {
            Attempt::Complete => break,
            Attempt::Final(why) => return Err(why),
            Attempt::Cut { why, got } => {
                // An attempt that brought bytes resets the count: only a connection that keeps failing gives up.
                failures = if got > 0 { 1 } else { failures + 1 };
                if failures > d.retries {
                    return Err(format!(
                        "{why}; {} kept in {}: run the command again to resume",
                        human_bytes(file_len(&part)),
                        part.display()
                    ));
                }
                log::warn!("model download: {why}; resuming");
                std::thread::sleep(Duration::from_millis(500 * u64::from(failures.min(4))));
            }
        }
    }
    let got = sha1_file(&part).map_err(|e| format!("cannot read {} back: {e}", part.display()))?;
    if !got.eq_ignore_ascii_case(&d.sha1) {
        let _ = std::fs::remove_file(&part);
        return Err(format!(
            "checksum mismatch: {} has SHA-1 {got}, expected {}; the download was deleted, nothing was installed",
            d.url, d.sha1
        ));
    }
    let sync = std::fs::File::open(&part).and_then(|f| f.sync_all());
    sync.map_err(|e| format!("cannot flush {}: {e}", part.display()))?;
    std::fs::rename(&part, &d.dest).map_err(|e| format!("cannot install {}: {e}", d.dest.display()))?;
    if let Ok(dirf) = std::fs::File::open(dir) {
        let _ = dirf.sync_all();
    }
    Ok(d.dest.clone())
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The start of a `Content-Range: bytes START-END/TOTAL` answer.
pub(crate) fn content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

fn attempt(agent: &ureq::Agent, d: &Download, part: &Path, progress: &mut dyn FnMut(Progress)) -> Attempt {
    let have = file_len(part);
    let mut req = agent.get(&d.url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let response = match req.call() {
        Ok(r) => r,
        Err(e) => return Attempt::Cut { why: format!("cannot reach {}: {e}", d.url), got: 0 },
    };
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let length: Option<u64> = header("content-length").and_then(|v| v.trim().parse().ok());
    let start = match status {
        206 => match header("content-range").as_deref().and_then(content_range_start) {
            Some(s) if s == have => have,
            other => {
                // A range we did not ask for: start over rather than splice bytes at the wrong place.
                log::warn!("model download: the server resumed at {other:?}, not at byte {have}; starting over");
                0
            }
        },
        200 => 0,
        // The part is already complete (or longer than the file): let the checksum decide.
        416 if have > 0 => return Attempt::Complete,
        404 => return Attempt::Final(format!("no such model file: {} answered HTTP 404", d.url)),
        s if s == 408 || s == 429 || s >= 500 => {
            return Attempt::Cut { why: format!("{} answered HTTP {s}", d.url), got: 0 };
        }
        s => return Attempt::Final(format!("{} answered HTTP {s}", d.url)),
    };
    if status == 206 && start == 0 {
        return restart(part);
    }
    let open = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(part).and_then(|mut f| {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        if start == 0 {
            f.set_len(0)?;
        }
        f.seek(std::io::SeekFrom::Start(start))?;
        Ok(f)
    });
    let mut file = match open {
        Ok(f) => f,
        Err(e) => return Attempt::Final(format!("cannot write {}: {e}", part.display())),
    };
    let total = length.map(|l| l + start);
    let mut done = start;
    let mut got = 0u64;
    progress(Progress { done, total, resumed_from: start });
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut last_report = Instant::now();
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = file.flush();
                progress(Progress { done, total, resumed_from: start });
                return Attempt::Cut { why: format!("the connection broke after {}: {e}", human_bytes(done)), got };
            }
        };
        if let Err(e) = file.write_all(&buf[..n]) {
            return Attempt::Final(format!("cannot write {}: {e}", part.display()));
        }
        done += n as u64;
        got += n as u64;
        if last_report.elapsed() >= Duration::from_millis(100) {
            last_report = Instant::now();
            progress(Progress { done, total, resumed_from: start });
        }
    }
    progress(Progress { done, total, resumed_from: start });
    if let Some(t) = total.filter(|t| done < *t) {
        return Attempt::Cut { why: format!("the connection closed at {done} of {t} bytes"), got };
    }
    Attempt::Complete
}

fn restart(part: &Path) -> Attempt {
    match std::fs::remove_file(part) {
        Ok(()) => Attempt::Cut { why: "the server resumed at the wrong place".into(), got: 0 },
        Err(e) => Attempt::Final(format!("cannot remove {}: {e}", part.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        let mut names = std::collections::HashSet::new();
        for e in CATALOG {
            assert!(valid_name(e.name), "{}", e.name);
            assert!(names.insert(e.name), "{} twice", e.name);
            assert_eq!(e.sha1.len(), 40, "{}", e.name);
            assert!(e.sha1.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{}", e.name);
        }
        for required in ["tiny.en", "base.en", "small.en", "medium.en", "tiny", "base", "small", "medium"] {
            assert!(find(required).is_some(), "{required} is downloadable");
        }
        assert!(find("base.en").is_some_and(|e| e.english_only()));
        assert!(find("base").is_some_and(|e| !e.english_only()));
    }

    #[test]
    fn names_never_escape_the_models_directory() {
        for bad in ["", "../x", "a/b", ".hidden", "x y", "ä"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name("large-v3-turbo-q5_0"));
        assert_eq!(file_name("tiny.en"), "ggml-tiny.en.bin");
        assert_eq!(part_path(Path::new("/m/ggml-x.bin")), PathBuf::from("/m/ggml-x.bin.part"));
    }

    #[test]
    fn content_range_is_read() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes  0-9/10"), Some(0));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }

    #[test]
    fn the_model_in_use_is_configured_else_the_newest_installed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = Paths::under(dir.path());
        let mut cfg = DictateConfig::default();
        assert_eq!(local_model(&cfg, &paths), LocalModel::None);
        let models = paths.models_dir();
        std::fs::create_dir_all(&models).expect("mkdir");
        let old = models.join("ggml-tiny.en.bin");
        std::fs::write(&old, b"old").expect("write");
        let past = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&old).and_then(|f| f.set_modified(past)).expect("mtime");
        std::fs::write(models.join("ggml-base.en.bin"), b"new").expect("write");
        std::fs::write(models.join("ggml-small.en.bin.part"), b"half").expect("write");
        std::fs::write(models.join("notes.txt"), b"x").expect("write");
        let listed: Vec<String> = installed(&models).into_iter().map(|m| m.name).collect();
        assert_eq!(listed, ["base.en", "tiny.en"], "newest first; no .part, no other files");
        assert_eq!(local_model(&cfg, &paths), LocalModel::Installed(models.join("ggml-base.en.bin")));
        cfg.local_model = "tiny.en".into();
        assert_eq!(local_model(&cfg, &paths), LocalModel::Configured(old.clone()));
        cfg.local_model = "medium.en".into();
        assert_eq!(
            local_model(&cfg, &paths),
            LocalModel::Configured(models.join("ggml-medium.en.bin")),
            "a configured model that is not installed stays the choice (loading it says what is missing)"
        );
        cfg.model_path = Some(PathBuf::from("~/m.bin"));
        assert_eq!(local_model(&cfg, &paths), LocalModel::Configured(dir.path().join("home/m.bin")));
    }

    #[test]
    fn sha1_of_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("abc");
        std::fs::write(&f, b"abc").expect("write");
        assert_eq!(sha1_file(&f).expect("sha1"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(human_bytes(77_704_715), "74.1 MiB");
        assert_eq!(human_bytes(1_610_612_736), "1.5 GiB");
    }
}
