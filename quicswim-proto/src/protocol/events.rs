//! User events: fire-and-forget named payloads, delivered at most once per node.
//!
//! An event is identified by `(origin, seq)`. Each origin's sequence starts at a floor its
//! runtime gives (wall-clock microseconds), so a restarted origin does not reuse numbers.
//! Per origin a node remembers the highest sequence seen and the recent ones below it
//! (bounded); anything older than that window is dropped as a possible duplicate.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::member::{NameMap, NodeName};

/// Most sequence numbers remembered per origin.
pub const SEEN_PER_ORIGIN_MAX: usize = 1024;
/// Most origins remembered.
pub const ORIGINS_MAX: usize = 16_384;
/// Longest event name in bytes.
pub const EVENT_NAME_LEN_MAX: usize = 128;

/// A user event as it travels and as it is delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// The node that published it.
    pub origin: NodeName,
    /// The origin's sequence number.
    pub seq: u64,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct Window {
    seen: BTreeSet<u64>,
}

/// Remembers which events were delivered, with bounded memory.
#[derive(Debug, Default)]
pub struct Deduplicator {
    origins: NameMap<Window>,
}

impl Deduplicator {
    /// True the first time `(origin, seq)` is offered; false for a repeat, for anything older
    /// than the remembered window, or when too many origins are tracked already.
    pub fn first_sight(&mut self, origin: &NodeName, seq: u64) -> bool {
        if !self.origins.contains_key(origin) && self.origins.len() >= ORIGINS_MAX {
            return false;
        }
        let w = self.origins.entry(origin.clone()).or_default();
        if w.seen.len() >= SEEN_PER_ORIGIN_MAX {
            let oldest = *w.seen.first().expect("window is full");
            if seq <= oldest {
                return false;
            }
        }
        if !w.seen.insert(seq) {
            return false;
        }
        if w.seen.len() > SEEN_PER_ORIGIN_MAX {
            w.seen.pop_first();
        }
        true
    }

    /// Forgets an origin (it was reaped from membership).
    pub fn forget(&mut self, origin: &NodeName) {
        self.origins.remove(origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_delivered_once() {
        let mut d = Deduplicator::default();
        let a = NodeName::new("a").unwrap();
        assert!(d.first_sight(&a, 5));
        assert!(!d.first_sight(&a, 5));
        assert!(d.first_sight(&a, 4), "out of order but new");
        assert!(!d.first_sight(&a, 4));
    }

    #[test]
    fn memory_is_bounded_and_old_events_are_refused() {
        let mut d = Deduplicator::default();
        let a = NodeName::new("a").unwrap();
        for seq in 1..=(SEEN_PER_ORIGIN_MAX as u64 + 10) {
            assert!(d.first_sight(&a, seq));
        }
        assert_eq!(d.origins[&a].seen.len(), SEEN_PER_ORIGIN_MAX);
        assert!(!d.first_sight(&a, 1), "below the window: could be a repeat");
        assert!(d.first_sight(&a, 100_000));
    }
}
