//! What a task changed: the files its tool calls wrote, and in a git
//! repository a diff stat against the commit it started from.
//!
//! Two sources, because each misses something. The `Write` / `Edit` /
//! `MultiEdit` / `NotebookEdit` calls in the stream name files anywhere (also
//! outside a repository, also when a later step deleted them), but not what a
//! shell command did. Git sees everything under the repository, but plain
//! `git diff --stat` leaves out new untracked files, so those are listed with
//! `git ls-files --others --exclude-standard` and their lines counted here.
//!
//! Git runs on the task's reaper thread, never on the loop: the start commit
//! when the reaper starts (the CLI needs far longer than that before its first
//! tool call) and the diff after the child exits, before `Finished` is sent.
//! Every git call has a deadline; a repository git cannot read in time gives
//! "no diff" rather than a stuck reaper. The parsing is pure and tested on
//! git's own output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::text::redact;

/// Files remembered from the stream per task.
pub(crate) const MAX_FILES: usize = 200;
/// Lines of an untracked file counted at most (bigger files say "at least").
const MAX_COUNT_BYTES: u64 = 8 << 20;
/// Untracked files counted at most.
const MAX_UNTRACKED: usize = 200;
/// How long one git command may take.
const GIT_DEADLINE: Duration = Duration::from_secs(10);

/// One file in a diff stat. Binary files have no line counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileStat {
    pub(crate) path: String,
    pub(crate) added: Option<u64>,
    pub(crate) removed: Option<u64>,
    /// Not tracked by git (a new file the task created).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) untracked: bool,
}

/// A diff stat against the commit the task started from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DiffStat {
    /// The start commit.
    pub(crate) base: String,
    pub(crate) files: Vec<FileStat>,
    /// "3 files changed, 10 insertions(+), 2 deletions(-)".
    pub(crate) summary: String,
}

/// What a task changed, as kept with the task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Changes {
    /// Files written or edited by the task's tool calls, in order, relative to
    /// its directory when inside it.
    #[serde(default)]
    pub(crate) files: Vec<String>,
    /// More files were written than are listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) files_cut: bool,
    /// The diff stat, when the task ran in a git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) diff: Option<DiffStat>,
}

impl Changes {
    /// Remembers a file a tool call wrote (each once, at most [`MAX_FILES`]).
    pub(crate) fn note_file(&mut self, path: &str, dir: &Path) {
        let shown = match Path::new(path).strip_prefix(dir) {
            Ok(rest) if !rest.as_os_str().is_empty() => rest.display().to_string(),
            _ => path.to_string(),
        };
        let shown = redact(&shown);
        if self.files.contains(&shown) {
            return;
        }
        if self.files.len() >= MAX_FILES {
            self.files_cut = true;
            return;
        }
        self.files.push(shown);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.diff.as_ref().is_none_or(|d| d.files.is_empty())
    }

    /// Every changed path: the diff's, then written files it does not list.
    pub(crate) fn all_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = self.diff.iter().flat_map(|d| d.files.iter().map(|f| f.path.clone())).collect();
        for f in &self.files {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        out
    }

    /// "it changed two files: notes/a.txt and b.txt" (empty when nothing changed).
    pub(crate) fn spoken(&self) -> String {
        let paths = self.all_paths();
        match paths.len() {
            0 => String::new(),
            1 => format!("it changed one file: {}", paths[0]),
            n => {
                let shown: Vec<&str> = paths.iter().take(3).map(String::as_str).collect();
                let list = match (shown.as_slice(), n > 3) {
                    ([a, b], false) => format!("{a} and {b}"),
                    ([a, b, c], false) => format!("{a}, {b} and {c}"),
                    (many, _) => format!("{} and {} more", many.join(", "), n - many.len()),
                };
                format!("it changed {} files: {list}", count_words(n))
            }
        }
    }
}

fn count_words(n: usize) -> String {
    const WORDS: [&str; 11] = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    WORDS.get(n).map(|w| (*w).to_string()).unwrap_or_else(|| n.to_string())
}

/// Parses `git diff --numstat -z` output: `added\tremoved\tpath\0`, with
/// `-\t-\t` for binary files and, for renames, an empty path followed by the
/// old and new paths as separate fields.
pub(crate) fn parse_numstat_z(out: &[u8]) -> Vec<FileStat> {
    let mut fields = out.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    let mut stats = Vec::new();
    while let Some(record) = fields.next() {
        if record.is_empty() {
            continue;
        }
        let mut parts = record.splitn(3, '\t');
        let (Some(a), Some(r), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let path = if path.is_empty() {
            // A rename: old path, new path.
            let _old = fields.next();
            match fields.next() {
                Some(new) => new,
                None => continue,
            }
        } else {
            path.to_string()
        };
        stats.push(FileStat { path: redact(&path), added: a.parse().ok(), removed: r.parse().ok(), untracked: false });
    }
    stats
}

/// git's own summary line for `files`.
pub(crate) fn summary_line(files: &[FileStat]) -> String {
    let n = files.len();
    let added: u64 = files.iter().filter_map(|f| f.added).sum();
    let removed: u64 = files.iter().filter_map(|f| f.removed).sum();
    let mut s = format!("{n} file{} changed", if n == 1 { "" } else { "s" });
    if added > 0 || removed == 0 {
        s.push_str(&format!(", {added} insertion{}(+)", if added == 1 { "" } else { "s" }));
    }
    if removed > 0 {
        s.push_str(&format!(", {removed} deletion{}(-)", if removed == 1 { "" } else { "s" }));
    }
    s
}

/// Lines in `bytes` as git counts them (a last line without a newline counts);
/// `None` for binary content (a NUL byte).
pub(crate) fn count_lines(bytes: &[u8]) -> Option<u64> {
    if bytes.contains(&0) {
        return None;
    }
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    Some(newlines + u64::from(bytes.last().is_some_and(|&b| b != b'\n')))
}

/// Runs `git -C dir args…` with a deadline; stdout on success. Waits for the end of git's output, then for its
/// exit: no polling interval is added to what git itself takes.
fn git(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_clear()
        .envs(crate::process::inherited_env(std::env::vars_os()))
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let reader = std::thread::Builder::new().name("git-out".into()).stack_size(64 * 1024).spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(64 << 20).read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    if reader.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let deadline = Instant::now() + GIT_DEADLINE;
    let out = rx.recv_deadline(deadline).ok();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            // Its output is complete: git is exiting.
            Ok(None) if out.is_some() && Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    status.filter(|s| s.success()).and(out)
}

/// Could `dir` be inside a git repository? git finds one by looking for `.git` in `dir` and each parent (the
/// environment that would point it elsewhere, `GIT_DIR` and the like, is not passed on), or `dir` is a bare
/// repository. A task outside any repository then costs no git process at all.
fn maybe_in_repository(dir: &Path) -> bool {
    if ["HEAD", "objects", "refs"].iter().all(|e| dir.join(e).exists()) {
        return true;
    }
    dir.ancestors().any(|d| d.join(".git").symlink_metadata().is_ok())
}

/// The commit `dir` is at, when it is inside a git repository with a commit.
pub(crate) fn start_commit(dir: &Path) -> Option<String> {
    if !maybe_in_repository(dir) {
        return None;
    }
    let out = git(dir, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?;
    let sha = String::from_utf8_lossy(&out).trim().to_string();
    (sha.len() >= 40 && sha.chars().all(|c| c.is_ascii_hexdigit())).then_some(sha)
}

/// The diff stat of `dir`'s working tree against `base`, new untracked files
/// included.
pub(crate) fn diff_stat(dir: &Path, base: &str) -> Option<DiffStat> {
    let tracked = git(dir, &["diff", "--numstat", "-z", "-M", base, "--", "."])?;
    let mut files = parse_numstat_z(&tracked);
    let untracked = git(dir, &["ls-files", "-z", "--others", "--exclude-standard", "--", "."]).unwrap_or_default();
    // ls-files prints paths relative to `dir`, as `diff --relative` would; the diff's are from the top.
    let top = git(dir, &["rev-parse", "--show-prefix"]).map(|p| String::from_utf8_lossy(&p).trim().to_string());
    let prefix = top.unwrap_or_default();
    for path in untracked.split(|&b| b == 0).filter(|p| !p.is_empty()).take(MAX_UNTRACKED) {
        let rel = String::from_utf8_lossy(path).into_owned();
        let full: PathBuf = dir.join(&rel);
        let mut bytes = Vec::new();
        let added = std::fs::File::open(&full)
            .and_then(|f| f.take(MAX_COUNT_BYTES).read_to_end(&mut bytes))
            .ok()
            .and_then(|_| count_lines(&bytes));
        files.push(FileStat { path: redact(&format!("{prefix}{rel}")), added, removed: Some(0), untracked: true });
    }
    let summary = summary_line(&files);
    Some(DiffStat { base: base.to_string(), files, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numstat_with_binaries_and_renames() {
        let out = b"3\t1\tsrc/a.rs\0-\t-\timg.png\x000\t0\t\0old/name.txt\0new/name.txt\0";
        let stats = parse_numstat_z(out);
        assert_eq!(stats.len(), 3);
        assert_eq!((stats[0].added, stats[0].removed), (Some(3), Some(1)));
        assert_eq!((stats[1].path.as_str(), stats[1].added), ("img.png", None));
        assert_eq!(stats[2].path, "new/name.txt");
        assert_eq!(summary_line(&stats), "3 files changed, 3 insertions(+), 1 deletion(-)");
        assert!(parse_numstat_z(b"").is_empty());
        assert!(parse_numstat_z(b"garbage\0").is_empty());
    }

    #[test]
    fn lines_are_counted_like_git() {
        assert_eq!(count_lines(b"a\nb\n"), Some(2));
        assert_eq!(count_lines(b"a\nb"), Some(2));
        assert_eq!(count_lines(b""), Some(0));
        assert_eq!(count_lines(b"\0bin"), None);
    }

    #[test]
    fn written_files_are_listed_once_and_bounded() {
        let dir = Path::new("/home/u/site");
        let mut c = Changes::default();
        c.note_file("/home/u/site/src/a.rs", dir);
        c.note_file("/home/u/site/src/a.rs", dir);
        c.note_file("/etc/hosts", dir);
        assert_eq!(c.files, ["src/a.rs", "/etc/hosts"]);
        for i in 0..MAX_FILES + 5 {
            c.note_file(&format!("/x/{i}"), dir);
        }
        assert_eq!(c.files.len(), MAX_FILES);
        assert!(c.files_cut);
    }

    #[test]
    fn said_in_words() {
        let mut c = Changes::default();
        assert_eq!(c.spoken(), "");
        assert!(c.is_empty());
        c.files = vec!["a.txt".into()];
        assert_eq!(c.spoken(), "it changed one file: a.txt");
        c.files.push("b.txt".into());
        assert_eq!(c.spoken(), "it changed two files: a.txt and b.txt");
        c.diff = Some(DiffStat {
            base: "x".into(),
            files: vec![FileStat { path: "c.rs".into(), added: Some(1), removed: Some(0), untracked: false }],
            summary: String::new(),
        });
        assert_eq!(c.spoken(), "it changed three files: c.rs, a.txt and b.txt");
        c.files.extend(["d".to_string(), "e".to_string()]);
        assert_eq!(c.spoken(), "it changed five files: c.rs, a.txt, b.txt and 2 more");
    }

    fn sh(dir: &Path, script: &str) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .expect("sh")
            .success();
        assert!(ok, "{script}");
    }

    #[test]
    fn a_real_repository_with_new_untracked_files() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        assert_eq!(start_commit(dir), None, "not a repository");
        assert!(!maybe_in_repository(dir) || dir.ancestors().skip(1).any(|d| d.join(".git").exists()));
        sh(
            dir,
            "git init -q . && printf 'a\\nb\\n' > kept.txt && printf 'x\\n' > gone.txt && git add . && git commit -qm one",
        );
        let base = start_commit(dir).expect("a commit");
        sh(
            dir,
            "printf 'a\\nc\\nd\\n' > kept.txt && rm gone.txt && mkdir -p new && printf '1\\n2\\n3' > new/file.txt && echo ignored > .hidden && printf '.hidden\\n' > .git/info/exclude",
        );
        let d = diff_stat(dir, &base).expect("diff");
        let by_path = |p: &str| d.files.iter().find(|f| f.path == p).unwrap_or_else(|| panic!("{p} in {d:?}")).clone();
        assert_eq!((by_path("kept.txt").added, by_path("kept.txt").removed), (Some(2), Some(1)));
        assert_eq!((by_path("gone.txt").added, by_path("gone.txt").removed), (Some(0), Some(1)));
        let new = by_path("new/file.txt");
        assert!(new.untracked);
        assert_eq!(new.added, Some(3));
        assert!(d.files.iter().all(|f| f.path != ".hidden"), "ignored files are not changes");
        assert_eq!(d.summary, "3 files changed, 5 insertions(+), 2 deletions(-)");
        // From a subdirectory, paths stay relative to the repository's top.
        let sub = diff_stat(&dir.join("new"), &base).expect("diff");
        assert_eq!(sub.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["new/file.txt"]);
    }
}
