//! Voice commands: a whole dictation that matches a configured phrase is an
//! instruction, not text.
//!
//! Matching is exact after normalisation (lowercase, punctuation dropped,
//! whitespace collapsed), because the transcriber adds capitals and a full
//! stop ("Live mode.") but a command hidden inside a sentence must still be
//! typed as words: "switch to live mode tomorrow" is text.

use crate::config::DictateCommands;
use crate::text::normalise;

/// What a dictation means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Meaning {
    LiveMode,
    DictateMode,
    NewLine,
    /// Quiet mode on ("quiet mode"): nothing is spoken, results wait.
    QuietOn,
    /// Quiet mode off ("you can talk again").
    QuietOff,
    /// "add word Kubernetes": the word as spoken (capitals kept, punctuation at the ends dropped).
    AddWord(String),
    /// Anything else: typed as it is.
    Text(String),
}

/// Decides what a transcription means.
pub(crate) fn interpret(text: &str, commands: &DictateCommands) -> Meaning {
    let said = normalise(text);
    let is = |phrases: &[String]| phrases.iter().any(|p| normalise(p) == said);
    if said.is_empty() {
        return Meaning::Text(text.trim().to_string());
    }
    if is(&commands.live_mode) {
        return Meaning::LiveMode;
    }
    if is(&commands.dictate_mode) {
        return Meaning::DictateMode;
    }
    if is(&commands.new_line) {
        return Meaning::NewLine;
    }
    if is(&commands.quiet_mode) {
        return Meaning::QuietOn;
    }
    if is(&commands.talk_again) {
        return Meaning::QuietOff;
    }
    for phrase in &commands.add_word {
        let phrase = normalise(phrase);
        if let Some(rest) = said.strip_prefix(&phrase).and_then(|r| r.strip_prefix(' ')) {
            // Keep the spelling as transcribed: skip as many words of the original as the phrase has.
            let skip = phrase.split(' ').count();
            let word: Vec<&str> = text.split_whitespace().skip(skip).collect();
            let word = word.join(" ");
            let word = word.trim_matches(|c: char| !c.is_alphanumeric()).to_string();
            if !word.is_empty() && !rest.is_empty() {
                return Meaning::AddWord(word);
            }
        }
    }
    Meaning::Text(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Meaning {
        interpret(text, &DictateCommands::default())
    }

    #[test]
    fn commands_are_whole_utterances() {
        assert_eq!(m("Live mode."), Meaning::LiveMode);
        assert_eq!(m("live MODE"), Meaning::LiveMode);
        assert_eq!(m("Dictate mode!"), Meaning::DictateMode);
        assert_eq!(m("Dictation mode."), Meaning::DictateMode);
        assert_eq!(m("New line."), Meaning::NewLine);
        assert_eq!(m("Quiet mode."), Meaning::QuietOn);
        assert_eq!(m("You can talk again!"), Meaning::QuietOff);
        assert_eq!(m("quiet mode is nice"), Meaning::Text("quiet mode is nice".into()));
        assert_eq!(m("Switch to live mode tomorrow."), Meaning::Text("Switch to live mode tomorrow.".into()));
        assert_eq!(m("a new line of code"), Meaning::Text("a new line of code".into()));
    }

    #[test]
    fn add_word_keeps_the_spelling() {
        assert_eq!(m("Add word Kubernetes."), Meaning::AddWord("Kubernetes".into()));
        assert_eq!(m("add word, PostgreSQL"), Meaning::AddWord("PostgreSQL".into()));
        assert_eq!(m("Add word New York."), Meaning::AddWord("New York".into()));
        assert_eq!(m("Add word."), Meaning::Text("Add word.".into()), "no word: typed");
        assert_eq!(m("Add wordy text"), Meaning::Text("Add wordy text".into()));
    }

    #[test]
    fn phrases_are_configurable() {
        let cfg = DictateCommands {
            live_mode: vec!["Hey assistant".into()],
            new_line: vec!["next line".into(), "Absatz".into()],
            add_word: vec!["remember the word".into()],
            ..DictateCommands::default()
        };
        assert_eq!(interpret("Hey, assistant!", &cfg), Meaning::LiveMode);
        assert_eq!(interpret("live mode", &cfg), Meaning::Text("live mode".into()));
        assert_eq!(interpret("Absatz.", &cfg), Meaning::NewLine);
        assert_eq!(interpret("Remember the word Tokio.", &cfg), Meaning::AddWord("Tokio".into()));
    }

    #[test]
    fn empty_text_is_empty_text() {
        assert_eq!(m("  "), Meaning::Text(String::new()));
        assert_eq!(m("..."), Meaning::Text("...".into()));
    }
}
