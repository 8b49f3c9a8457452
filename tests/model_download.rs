//! `ptt model download` against a local HTTP server (`common::model_server`): progress on stderr, a cut
//! connection resumed with a `Range` request (in the same run, and from the `.part` a previous run left), the
//! file installed only once complete and verified (never visible half-written), a checksum mismatch refused
//! with nothing installed; then `list`, `path` and `remove`.

mod common;

use std::sync::{Arc, Mutex};

use common::model_server::ModelServer;
use common::{TestHome, describe};

/// Deterministic bytes that are not a repeating pattern.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha1_of(home: &TestHome, bytes: &[u8]) -> String {
    let f = home.scratch("sha1-input");
    std::fs::write(&f, bytes).expect("write");
    ptt::dictate::model_store::sha1_file(&f).expect("sha1")
}

fn home_for(server: &ModelServer) -> TestHome {
    let home = TestHome::empty();
    home.write_config(&format!("[models]\nbase_url = \"{}\"\n", server.base));
    home
}

fn models_dir(home: &TestHome) -> std::path::PathBuf {
    home.home().join(".local/share/ptt/models")
}

#[test]
fn a_cut_download_resumes_and_is_installed_only_when_complete_and_verified() {
    let server = ModelServer::start();
    let data = payload(3 << 20);
    server.put("ggml-custom.bin", data.clone());
    server.cut(0, 1_000_000);
    let home = home_for(&server);
    let dest = models_dir(&home).join("ggml-custom.bin");
    let part = models_dir(&home).join("ggml-custom.bin.part");
    // What the disk holds when the client comes back for the rest.
    let observed = Arc::new(Mutex::new(Vec::new()));
    let (o, d, p) = (observed.clone(), dest.clone(), part.clone());
    server.on_request(move |n, _| {
        let part_len = std::fs::metadata(&p).map(|m| m.len()).ok();
        o.lock().expect("lock").push((n, d.exists(), part_len));
    });
    let sha1 = sha1_of(&home, &data);

    let out = home.run(&["model", "download", "custom", "--sha1", &sha1]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("download:") && err.contains("100%"), "progress is shown: {err}");
    assert!(err.contains("resuming at"), "the resume is shown: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("installed custom"), "{}", describe(&out));

    let seen = server.seen();
    assert_eq!(seen.len(), 2, "one cut, one resumed request: {seen:?}");
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[1].range.as_deref(), Some("bytes=1000000-"), "resumed where the cut left off");
    let observed = observed.lock().expect("lock").clone();
    assert_eq!(observed[1], (1, false, Some(1_000_000)), "while incomplete: only the .part, never the model file");
    assert_eq!(std::fs::read(&dest).expect("installed"), data, "the installed file is the served one, byte for byte");
    assert!(!part.exists(), "the .part is gone after the rename");

    // list / path / remove.
    let list = home.run(&["model", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.lines().any(|l| l.starts_with("custom") && l.contains("installed") && l.contains("in use")), "{text}");
    let path = home.run(&["model", "path", "custom"]);
    assert_eq!(String::from_utf8_lossy(&path.stdout).trim(), dest.display().to_string());
    let again = home.run(&["model", "download", "custom", "--sha1", &sha1]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already installed"), "{}", describe(&again));
    assert_eq!(server.seen().len(), 2, "an installed model is not fetched again");
    let rm = home.run(&["model", "remove", "custom"]);
    assert!(rm.status.success() && !dest.exists(), "{}", describe(&rm));
    let rm = home.run(&["model", "remove", "custom"]);
    assert_eq!(rm.status.code(), Some(1), "{}", describe(&rm));
}

#[test]
fn a_part_left_by_an_earlier_run_is_resumed() {
    let server = ModelServer::start();
    let data = payload(2 << 20);
    server.put("ggml-custom.bin", data.clone());
    let home = home_for(&server);
    std::fs::create_dir_all(models_dir(&home)).expect("mkdir");
    let half = data.len() / 2;
    std::fs::write(models_dir(&home).join("ggml-custom.bin.part"), &data[..half]).expect("part");
    let sha1 = sha1_of(&home, &data);
    let out = home.run(&["model", "download", "custom", "--sha1", &sha1]);
    assert!(out.status.success(), "{}", describe(&out));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].range, Some(format!("bytes={half}-")), "only the missing half is fetched");
    assert_eq!(std::fs::read(models_dir(&home).join("ggml-custom.bin")).expect("installed"), data);
}

#[test]
fn a_checksum_mismatch_is_refused_and_nothing_is_installed() {
    let server = ModelServer::start();
    // Not the file whose SHA-1 the table has for tiny.en.
    server.put("ggml-tiny.en.bin", payload(1 << 20));
    let home = home_for(&server);
    let out = home.run(&["model", "download", "tiny.en"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum mismatch") && err.contains("c78c86eb1a8faa21b369bcd33207cc90d64ae9df"), "{err}");
    let left: Vec<_> = std::fs::read_dir(models_dir(&home)).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(left.is_empty(), "nothing installed, no .part left: {left:?}");

    let out = home.run(&["model", "download", "base.en"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 404"), "{}", describe(&out));
    let out = home.run(&["model", "download", "nonesuch"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("--sha1") && err.contains("base.en"), "{err}");
    let out = home.run(&["model", "download", "../escape", "--sha1", &"0".repeat(40)]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(server.seen().iter().all(|s| !s.path.contains("..")), "{:?}", server.seen());
}
