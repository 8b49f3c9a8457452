//! A bounded ring of the recent conversation, as text.
//!
//! Why: a Realtime session cannot be resumed. After a reconnect (network drop, `session_expired`, renewal)
//! the server has a fresh, empty conversation, and prior assistant audio cannot be injected. What can be
//! injected is one system message saying what was recently said and done, so "and how is that task going?"
//! still makes sense. The ring is bounded by turns and by characters so the summary stays a small fraction of
//! the 32k-token context.

use std::collections::VecDeque;

/// Longest text kept for one turn.
const MAX_TURN_CHARS: usize = 400;
/// Longest summary produced.
const MAX_SUMMARY_CHARS: usize = 3000;

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Speaker {
    User,
    Assistant,
    /// Things that happened: tool results, delivered notifications.
    Event,
}

impl Speaker {
    fn label(self) -> &'static str {
        match self {
            Speaker::User => "User",
            Speaker::Assistant => "Assistant",
            Speaker::Event => "Event",
        }
    }
}

/// The ring.
#[derive(Debug, Clone)]
pub(crate) struct Transcript {
    turns: VecDeque<(Speaker, String)>,
    capacity: usize,
}

impl Transcript {
    /// A ring keeping at most `capacity` turns (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Transcript { turns: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Records a turn; blank text is ignored, long text is cut at a char boundary.
    pub(crate) fn push(&mut self, who: Speaker, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let kept = match text.char_indices().nth(MAX_TURN_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        };
        if self.turns.len() == self.capacity {
            self.turns.pop_front();
        }
        self.turns.push_back((who, kept));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.turns.len()
    }

    /// The text of the reconnect summary item, or `None` when nothing was said. Keeps the most recent
    /// turns that fit in the size limit.
    pub(crate) fn summary(&self) -> Option<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut size = 0;
        for (who, text) in self.turns.iter().rev() {
            let line = format!("{}: {}", who.label(), text);
            size += line.len() + 1;
            if size > MAX_SUMMARY_CHARS && !lines.is_empty() {
                break;
            }
            lines.push(line);
        }
        if lines.is_empty() {
            return None;
        }
        lines.reverse();
        Some(format!(
            "The connection was re-established and this is a new session. Recent conversation before \
             it, oldest first (for context only; do not repeat it to the user):\n{}",
            lines.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_latest_turns() {
        let mut t = Transcript::new(2);
        assert_eq!(t.summary(), None);
        t.push(Speaker::User, "one");
        t.push(Speaker::Assistant, "  ");
        t.push(Speaker::Assistant, "two");
        t.push(Speaker::Event, "three");
        assert_eq!(t.len(), 2);
        let s = t.summary().unwrap();
        assert!(!s.contains("User: one"));
        assert!(s.ends_with("Assistant: two\nEvent: three"));
    }

    #[test]
    fn long_turns_and_summaries_are_bounded() {
        let mut t = Transcript::new(100);
        for _ in 0..100 {
            t.push(Speaker::User, &"é".repeat(10_000));
        }
        let s = t.summary().unwrap();
        assert!(s.len() < MAX_SUMMARY_CHARS + 1200, "{}", s.len());
        assert!(s.contains('…'));
    }
}
