//! Who transcribes a clip: whisper.cpp on this machine, or OpenAI.
//!
//! `dictate.engine = "auto"` prefers the local model whenever one is installed or configured (no key, no
//! network, nothing leaves the machine), then OpenAI when a key is set; with neither, the answer is a sentence
//! saying how to get either, which `ptt status`, `ptt doctor` and the failed clip's note all show. The choice is
//! made per clip from the configuration and the files as they are then, so a model downloaded while the daemon
//! runs is used from the next dictation on. Pure: the caller passes the key lookup and the local model.

use std::path::PathBuf;

use crate::config::{DictateConfig, DictateEngine};

use super::model_store::LocalModel;

/// The transcriber for one clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Engine {
    /// whisper.cpp with this ggml file.
    Local(PathBuf),
    /// The OpenAI-compatible API with this key.
    OpenAi(String),
}

impl Engine {
    #[cfg(test)]
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Engine::Local(_) => "local",
            Engine::OpenAi(_) => "openai",
        }
    }
}

/// What to do without a model.
pub(crate) const GET_A_MODEL: &str = "run `ptt model download base.en` (offline, private; `ptt model list` shows the sizes) \
                               or set dictate.model_path to a whisper.cpp ggml file";

/// Picks the engine. `key` is the OpenAI key, or why there is none.
pub(crate) fn choose(cfg: &DictateConfig, local: &LocalModel, key: Result<String, String>) -> Result<Engine, String> {
    match (cfg.engine, local.path()) {
        (DictateEngine::Local | DictateEngine::Auto, Some(p)) => Ok(Engine::Local(p.to_path_buf())),
        (DictateEngine::Local, None) => {
            Err(format!("dictate.engine is \"local\" but no model is installed: {GET_A_MODEL}"))
        }
        (DictateEngine::Openai, _) => key.map(Engine::OpenAi),
        (DictateEngine::Auto, None) => {
            key.map(Engine::OpenAi).map_err(|why| format!("no local model and no OpenAI key ({why}): {GET_A_MODEL}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(engine: DictateEngine) -> DictateConfig {
        DictateConfig { engine, ..DictateConfig::default() }
    }

    #[test]
    fn auto_prefers_a_local_model_then_the_key() {
        let model = LocalModel::Installed(PathBuf::from("/m/ggml-base.en.bin"));
        let key = || Ok::<_, String>("sk-x".to_string());
        let no_key = || Err::<String, _>("OPENAI_API_KEY is not set".to_string());
        let auto = cfg(DictateEngine::Auto);
        assert_eq!(choose(&auto, &model, key()), Ok(Engine::Local("/m/ggml-base.en.bin".into())));
        assert_eq!(choose(&auto, &model, no_key()), Ok(Engine::Local("/m/ggml-base.en.bin".into())));
        assert_eq!(choose(&auto, &LocalModel::None, key()), Ok(Engine::OpenAi("sk-x".into())));
        let e = choose(&auto, &LocalModel::None, no_key()).unwrap_err();
        assert!(e.contains("OPENAI_API_KEY is not set") && e.contains("ptt model download base.en"), "{e}");
        // A configured model counts even when its file is missing: loading it then says so.
        let configured = LocalModel::Configured(PathBuf::from("/nowhere.bin"));
        assert_eq!(choose(&auto, &configured, key()), Ok(Engine::Local("/nowhere.bin".into())));
    }

    #[test]
    fn an_explicit_engine_is_obeyed() {
        let model = LocalModel::Installed(PathBuf::from("/m/ggml-tiny.en.bin"));
        let openai = cfg(DictateEngine::Openai);
        assert_eq!(choose(&openai, &model, Ok("k".into())), Ok(Engine::OpenAi("k".into())));
        assert_eq!(choose(&openai, &model, Err("no key".into())), Err("no key".into()));
        let local = cfg(DictateEngine::Local);
        assert_eq!(choose(&local, &model, Err("no key".into())).map(|e| e.name()), Ok("local"));
        let e = choose(&local, &LocalModel::None, Ok("k".into())).unwrap_err();
        assert!(e.contains("\"local\"") && e.contains("ptt model download"), "{e}");
    }
}
