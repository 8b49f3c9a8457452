//! The attached text clients (`ptt live --text`, or the local printer of a
//! daemon started by `ptt live --text` itself) and the lines they are shown.
//!
//! A line goes to every client with `try_send`: a client that is merely slow
//! misses it rather than stalling the loop, and one that is gone is dropped.
//! When the last client goes, the caller tells the live session (a session
//! opened for text clients ends with them).

use crossbeam_channel::{Sender, TrySendError};
use serde_json::Value;

#[derive(Default)]
pub(crate) struct Fronts {
    clients: Vec<(u64, Sender<Value>)>,
    next_id: u64,
}

impl Fronts {
    /// Adds a client, sends it `first` and returns its id.
    pub(crate) fn add(&mut self, tx: Sender<Value>, first: Value) -> u64 {
        self.next_id += 1;
        let _ = tx.try_send(first);
        self.clients.push((self.next_id, tx));
        self.next_id
    }

    /// Removes a client; true when none is left.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        self.clients.retain(|(i, _)| *i != id);
        self.clients.is_empty()
    }

    /// Shows a line to every client; true when this found the last one gone.
    pub(crate) fn show(&mut self, line: Value) -> bool {
        let before = self.clients.len();
        self.clients.retain(|(id, tx)| match tx.try_send(line.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log::debug!("live: text client {id} is slow; it misses a line");
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        before > 0 && self.clients.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slow_clients_miss_lines_and_gone_ones_are_dropped() {
        let mut fronts = Fronts::default();
        let (slow_tx, slow_rx) = crossbeam_channel::bounded(1);
        let (gone_tx, gone_rx) = crossbeam_channel::bounded(8);
        let a = fronts.add(slow_tx, json!("hello"));
        let b = fronts.add(gone_tx, json!("hello"));
        assert_ne!(a, b);
        assert!(!fronts.show(json!("one")), "both are still there");
        assert_eq!(slow_rx.try_iter().collect::<Vec<_>>(), [json!("hello")], "the full client missed a line");
        assert_eq!(gone_rx.try_iter().collect::<Vec<_>>(), [json!("hello"), json!("one")]);
        drop(gone_rx);
        assert!(!fronts.show(json!("two")));
        assert_eq!(fronts.len(), 1);
        drop(slow_rx);
        assert!(fronts.show(json!("three")), "the last client is gone");
        assert!(!fronts.show(json!("four")), "reported once");
        let (tx, _rx) = crossbeam_channel::bounded(8);
        let c = fronts.add(tx, json!("hi"));
        assert!(fronts.remove(c));
    }
}
