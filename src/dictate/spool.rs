//! Clips on disk, so that nothing said is lost.
//!
//! Every clip long enough to send is written to `dictation/pending/<id>.wav`
//! before it is uploaded (without fsync: a few hundred kilobytes, and the
//! point is surviving a daemon crash, not a power cut). A clip that is typed
//! is deleted. One whose transcription fails for good moves to
//! `dictation/failed/` with a `.json` note of why, for `ptt dictate retry`.
//! At start-up, clips left in `pending/` by a daemon that died mid-upload
//! join the failed ones. The directories are 0700: a clip is the user's voice.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A clip kept after a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Kept {
    pub(crate) id: String,
    /// Why it failed (the last error).
    pub(crate) error: String,
    /// Unix seconds when it was recorded.
    pub(crate) recorded: u64,
    pub(crate) duration_ms: u64,
}

pub(crate) struct Spool {
    root: PathBuf,
}

impl Spool {
    /// The spool under `state_dir/dictation`.
    pub(crate) fn new(state_dir: &Path) -> Spool {
        Spool { root: state_dir.join("dictation") }
    }

    fn dir(&self, which: &str) -> std::io::Result<PathBuf> {
        let dir = self.root.join(which);
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        }
        Ok(dir)
    }

    /// A new clip id: `d` + Unix milliseconds (sorts by time), unique in the spool.
    pub(crate) fn new_id(&self) -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let mut id = format!("d{ms}");
        let mut n = 1;
        while self.root.join("pending").join(format!("{id}.wav")).exists()
            || self.root.join("failed").join(format!("{id}.wav")).exists()
        {
            n += 1;
            id = format!("d{ms}-{n}");
        }
        id
    }

    /// Writes the clip to `pending/` before it is sent.
    pub(crate) fn save_pending(&self, id: &str, wav: &[u8]) -> std::io::Result<()> {
        let path = self.dir("pending")?.join(format!("{id}.wav"));
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        if let Err(e) = f.write_all(wav) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(())
    }

    /// The clip was typed (or was a command): its files go.
    pub(crate) fn done(&self, id: &str) {
        for (dir, ext) in [("pending", "wav"), ("failed", "wav"), ("failed", "json")] {
            let _ = std::fs::remove_file(self.root.join(dir).join(format!("{id}.{ext}")));
        }
    }

    /// The transcription failed for good: the clip moves to `failed/` with a
    /// note. `wav` is written there when the pending copy is missing (it could
    /// not be written, or this is a retry of a clip held in memory).
    pub(crate) fn fail(&self, id: &str, error: &str, wav: &[u8]) -> std::io::Result<Kept> {
        let failed = self.dir("failed")?;
        let pending = self.root.join("pending").join(format!("{id}.wav"));
        let target = failed.join(format!("{id}.wav"));
        if !target.exists() && std::fs::rename(&pending, &target).is_err() {
            std::fs::write(&target, wav)?;
        }
        let kept = Kept {
            id: id.to_string(),
            error: error.to_string(),
            recorded: recorded_at(id),
            duration_ms: crate::dictate::wav::duration_ms(wav).unwrap_or(0),
        };
        let note = serde_json::to_vec_pretty(&kept).map_err(std::io::Error::other)?;
        std::fs::write(failed.join(format!("{id}.json")), note)?;
        Ok(kept)
    }

    /// The kept clips, oldest first.
    pub(crate) fn failed(&self) -> std::io::Result<Vec<Kept>> {
        let dir = self.root.join("failed");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut kept = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("wav") {
                continue;
            }
            let Some(id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
            let note = std::fs::read(dir.join(format!("{id}.json"))).ok();
            let k = note.and_then(|n| serde_json::from_slice::<Kept>(&n).ok()).unwrap_or_else(|| Kept {
                id: id.clone(),
                error: "no note (kept by an earlier daemon)".into(),
                recorded: recorded_at(&id),
                duration_ms: std::fs::read(&path).ok().and_then(|w| crate::dictate::wav::duration_ms(&w)).unwrap_or(0),
            });
            kept.push(Kept { id, ..k });
        }
        kept.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(kept)
    }

    /// How many clips are kept: directory entries only, no notes read (cheap enough for every `ptt status`).
    pub(crate) fn count_failed(&self) -> usize {
        std::fs::read_dir(self.root.join("failed"))
            .map_or(0, |entries| entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "wav")).count())
    }

    /// The WAV of a kept clip.
    pub(crate) fn read_failed(&self, id: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.root.join("failed").join(format!("{id}.wav")))
    }

    /// Clips a previous daemon left in `pending/` (it stopped mid-upload) become failed clips.
    pub(crate) fn recover(&self) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(self.root.join("pending")) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
            let wav = std::fs::read(&path)?;
            self.fail(&id, "not transcribed: the daemon stopped before the answer came", &wav)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Unix seconds from an id made by [`Spool::new_id`].
fn recorded_at(id: &str) -> u64 {
    id.trim_start_matches('d').split('-').next().and_then(|ms| ms.parse::<u64>().ok()).map_or(0, |ms| ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clip_lives_until_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path());
        let id = spool.new_id();
        assert!(id.starts_with('d'));
        let wav = crate::dictate::wav::encode(&[5; 2400], 24_000);
        spool.save_pending(&id, &wav).expect("save");
        let mode = std::fs::metadata(dir.path().join("dictation/pending")).expect("dir");
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o700);
        assert_ne!(spool.new_id(), id, "ids are unique while a clip is pending");
        spool.done(&id);
        assert!(!dir.path().join(format!("dictation/pending/{id}.wav")).exists());
        assert!(spool.failed().expect("list").is_empty());
    }

    #[test]
    fn failures_are_kept_with_a_note_and_listed_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path());
        let wav = crate::dictate::wav::encode(&[5; 4800], 24_000);
        spool.save_pending("d2000", &wav).expect("save");
        spool.fail("d2000", "HTTP 401", &wav).expect("fail");
        // A clip whose pending copy could not be written is still kept.
        spool.fail("d1000", "disk was full", &wav).expect("fail from memory");
        let kept = spool.failed().expect("list");
        assert_eq!(kept.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["d1000", "d2000"]);
        assert_eq!(kept[1].error, "HTTP 401");
        assert_eq!(kept[1].duration_ms, 200);
        assert_eq!(spool.count_failed(), 2);
        assert_eq!(kept[1].recorded, 2);
        assert_eq!(spool.read_failed("d2000").expect("read"), wav);
        spool.done("d2000");
        assert_eq!(spool.failed().expect("list").len(), 1);
    }

    #[test]
    fn pending_clips_of_a_dead_daemon_are_recovered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::new(dir.path());
        let wav = crate::dictate::wav::encode(&[1; 240], 24_000);
        spool.save_pending("d42", &wav).expect("save");
        assert_eq!(Spool::new(dir.path()).recover().expect("recover"), 1);
        let kept = spool.failed().expect("list");
        assert_eq!(kept.len(), 1);
        assert!(kept[0].error.contains("daemon stopped"));
        assert_eq!(spool.recover().expect("again"), 0);
    }
}
