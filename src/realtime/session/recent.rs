//! A bounded "seen recently" set of string ids.
//!
//! Why bounded: a live session can run for hours and see thousands of call ids; the dedupe only has to
//! cover the window in which a duplicate can plausibly arrive (the same frame repeated, or the same event
//! described twice), not all of history.

use std::collections::{HashSet, VecDeque};

#[derive(Debug, Clone)]
pub(crate) struct RecentSet {
    order: VecDeque<String>,
    set: HashSet<String>,
    capacity: usize,
}

impl RecentSet {
    pub(crate) fn new(capacity: usize) -> Self {
        RecentSet { order: VecDeque::new(), set: HashSet::new(), capacity: capacity.max(1) }
    }

    /// Inserts `id`; `false` when it was already there.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        let evicted = (self.order.len() == self.capacity).then(|| self.order.pop_front()).flatten();
        if let Some(old) = evicted {
            self.set.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.set.insert(id.to_owned());
        true
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupes_and_forgets_the_oldest() {
        let mut r = RecentSet::new(2);
        assert!(r.insert("a"));
        assert!(!r.insert("a"));
        assert!(r.insert("b"));
        assert!(r.insert("c"));
        assert!(!r.contains("a"));
        assert!(r.contains("b") && r.contains("c"));
    }
}
