//! Where the OpenAI API key comes from: `OPENAI_API_KEY`, else `live.key_file`.
//!
//! The key is read where it is needed (the live session, the dictation
//! upload, `ptt doctor`, `ptt dictate --once`) and never stored in the
//! configuration, logged or passed to a child. A key file others can read is
//! refused rather than used, with the `chmod` that fixes it: a leaked key costs
//! money. This module knows only the configuration and the paths, so the CLI
//! reads the key without reaching into the daemon.

use crate::config::LiveConfig;
use crate::paths::Paths;

/// `OPENAI_API_KEY`, else the key file (mode 0600 or stricter).
pub(crate) fn load_key(cfg: &LiveConfig, paths: &Paths) -> Result<String, String> {
    load_key_from(std::env::var("OPENAI_API_KEY").ok(), cfg, paths)
}

fn load_key_from(env_key: Option<String>, cfg: &LiveConfig, paths: &Paths) -> Result<String, String> {
    if let Some(k) = env_key.map(|k| k.trim().to_string()).filter(|k| !k.is_empty()) {
        return Ok(k);
    }
    let Some(file) = &cfg.key_file else {
        return Err("no OpenAI API key: set OPENAI_API_KEY or live.key_file".into());
    };
    let path = paths.expand_tilde(file);
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read live.key_file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "live.key_file {} is readable by others; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let key =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read live.key_file {}: {e}", path.display()))?;
    let key = key.trim().to_string();
    if key.is_empty() {
        return Err(format!("live.key_file {} is empty", path.display()));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-file-key\n").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let paths = Paths::from_vars(|k| (k == "HOME").then(|| dir.path().as_os_str().to_owned())).expect("paths");
        let cfg = LiveConfig { key_file: Some(key.clone()), ..LiveConfig::default() };
        let e = load_key_from(None, &cfg, &paths).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(load_key_from(None, &cfg, &paths).as_deref(), Ok("sk-file-key"));
        assert_eq!(load_key_from(Some("sk-env".into()), &cfg, &paths).as_deref(), Ok("sk-env"), "the environment wins");
        assert!(load_key_from(None, &LiveConfig::default(), &paths).unwrap_err().contains("OPENAI_API_KEY"));
    }
}
