//! User events: fire-and-forget named payloads, delivered at most once per node.
//!
//! An event is identified by `(origin, seq)`. Each origin's sequence starts at a floor its
//! runtime gives (wall-clock microseconds), so a restarted origin does not reuse numbers.
//! Per origin a node remembers the highest sequence seen and the recent ones below it
//! (bounded); anything older than that window is dropped as a possible duplicate.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::bounded;
use super::member::{NameMap, NodeName};

/// Most sequence numbers remembered per origin.
pub const SEEN_PER_ORIGIN_MAX: usize = 1024;
/// Most origins remembered.
pub const ORIGINS_MAX: usize = 16_384;
/// Longest event name in bytes.
pub const EVENT_NAME_LEN_MAX: usize = 128;
/// The highest `event_payload_len_max` a configuration may set.
pub const EVENT_PAYLOAD_LEN_MAX_CAP: usize = 1024;

/// A user event as it travels and as it is delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// The node that published it.
    pub origin: NodeName,
    /// The origin's sequence number.
    #[serde(deserialize_with = "wire_seq")]
    pub seq: u64,
    /// Its name.
    #[serde(deserialize_with = "wire_name")]
    pub name: String,
    /// Its payload.
    #[serde(deserialize_with = "wire_payload")]
    pub payload: Vec<u8>,
}

// Bounds of the wire fields, applied as they are decoded (see `protocol::bounded`), on
// datagrams and streams alike.

fn wire_seq<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded::counter(d, "event seq")
}

fn wire_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    bounded::string(d, "event name", EVENT_NAME_LEN_MAX)
}

fn wire_payload<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    bounded::bytes(d, "event payload", EVENT_PAYLOAD_LEN_MAX_CAP)
}

/// Sequence numbers remembered per origin: the highest seen and which of the
/// [`SEEN_PER_ORIGIN_MAX`] below it were seen, one bit each.
#[derive(Debug)]
struct Window {
    high: u64,
    /// Bit `i` of word `i / 64` is set when `high - i` was seen.
    bits: [u64; SEEN_PER_ORIGIN_MAX / 64],
    /// When the origin was last heard from, on the deduplicator's own clock (its key in
    /// `by_use`).
    last_use: u64,
}

impl Window {
    fn new(seq: u64, last_use: u64) -> Self {
        let mut bits = [0; SEEN_PER_ORIGIN_MAX / 64];
        bits[0] = 1;
        Self {
            high: seq,
            bits,
            last_use,
        }
    }

    /// Marks `seq` seen; false when it was seen already or is below the window.
    fn see(&mut self, seq: u64) -> bool {
        if seq > self.high {
            self.shift(seq - self.high);
            self.high = seq;
            self.bits[0] |= 1;
            return true;
        }
        let back = self.high - seq;
        let Ok(back) = usize::try_from(back) else {
            return false;
        };
        if back >= SEEN_PER_ORIGIN_MAX {
            return false; // older than the window: could be a repeat
        }
        let (word, bit) = (back / 64, back % 64);
        let was = self.bits[word] & (1 << bit) != 0;
        self.bits[word] |= 1 << bit;
        !was
    }

    /// Moves every mark `by` places further back, forgetting those that fall off the end.
    fn shift(&mut self, by: u64) {
        let words = self.bits.len();
        let Ok(by) = usize::try_from(by) else {
            self.bits = [0; SEEN_PER_ORIGIN_MAX / 64];
            return;
        };
        if by >= SEEN_PER_ORIGIN_MAX {
            self.bits = [0; SEEN_PER_ORIGIN_MAX / 64];
            return;
        }
        let (word_shift, bit_shift) = (by / 64, by % 64);
        for i in (0..words).rev() {
            let from = i.checked_sub(word_shift);
            let hi = from.map_or(0, |j| self.bits[j] << bit_shift);
            let lo = match from.and_then(|j| j.checked_sub(1)) {
                Some(j) if bit_shift > 0 => self.bits[j] >> (64 - bit_shift),
                _ => 0,
            };
            self.bits[i] = hi | lo;
        }
    }
}

/// Remembers which events were delivered, with bounded memory: at most [`ORIGINS_MAX`]
/// origins of [`SEEN_PER_ORIGIN_MAX`] bits each; past that, the origin heard from least
/// recently is forgotten.
#[derive(Debug, Default)]
pub struct Deduplicator {
    origins: NameMap<Window>,
    /// Origins by last use, oldest first.
    by_use: BTreeMap<u64, NodeName>,
    clock: u64,
    evicted: u64,
}

impl Deduplicator {
    /// True the first time `(origin, seq)` is offered; false for a repeat, or for anything
    /// older than the remembered window.
    pub fn first_sight(&mut self, origin: &NodeName, seq: u64) -> bool {
        self.clock += 1;
        let now = self.clock;
        if let Some(w) = self.origins.get_mut(origin) {
            self.by_use.remove(&w.last_use);
            w.last_use = now;
            self.by_use.insert(now, origin.clone());
            return w.see(seq);
        }
        if self.origins.len() >= ORIGINS_MAX {
            if let Some((_, oldest)) = self.by_use.pop_first() {
                self.origins.remove(&oldest);
                self.evicted += 1;
            }
        }
        self.origins.insert(origin.clone(), Window::new(seq, now));
        self.by_use.insert(now, origin.clone());
        true
    }

    /// Whether [`first_sight`](Self::first_sight) would take `(origin, seq)` as new, without
    /// marking it: an event is checked (its signature) only when it would be delivered.
    pub fn would_be_new(&self, origin: &NodeName, seq: u64) -> bool {
        let Some(w) = self.origins.get(origin) else {
            return true;
        };
        if seq > w.high {
            return true;
        }
        let Ok(back) = usize::try_from(w.high - seq) else {
            return false;
        };
        back < SEEN_PER_ORIGIN_MAX && w.bits[back / 64] & (1 << (back % 64)) == 0
    }

    /// Forgets an origin (it was reaped from membership).
    pub fn forget(&mut self, origin: &NodeName) {
        if let Some(w) = self.origins.remove(origin) {
            self.by_use.remove(&w.last_use);
        }
    }

    /// Origins remembered.
    pub fn origins(&self) -> usize {
        self.origins.len()
    }

    /// Origins forgotten to make room for another, since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
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
        assert!(!d.first_sight(&a, 1), "below the window: could be a repeat");
        assert!(!d.first_sight(&a, 500), "inside the window and seen");
        assert!(d.first_sight(&a, 100_000));
        assert!(!d.first_sight(&a, 100_000 - SEEN_PER_ORIGIN_MAX as u64));
        assert!(
            d.first_sight(&a, 100_000 - 3),
            "inside the window, not seen yet"
        );
        assert!(!d.first_sight(&a, 100_000 - 3));
    }

    #[test]
    fn marks_move_with_the_window_across_words() {
        let mut d = Deduplicator::default();
        let a = NodeName::new("a").unwrap();
        for seq in [10, 75, 140] {
            assert!(d.first_sight(&a, seq));
        }
        assert!(d.first_sight(&a, 1_000));
        for seq in [10, 75, 140, 1_000] {
            assert!(!d.first_sight(&a, seq), "{seq} was seen");
        }
        for seq in [11, 74, 139, 999] {
            assert!(d.first_sight(&a, seq), "{seq} was not seen");
        }
        assert!(d.first_sight(&a, u64::MAX));
        assert!(!d.first_sight(&a, 1_000), "far below the window now");
    }

    #[test]
    fn the_least_recently_heard_origin_is_forgotten_first() {
        let mut d = Deduplicator::default();
        let names: Vec<NodeName> = (0..=ORIGINS_MAX)
            .map(|i| NodeName::new(format!("n{i}")).unwrap())
            .collect();
        for n in &names[..ORIGINS_MAX] {
            assert!(d.first_sight(n, 1));
        }
        // n0 heard again: n1 is now the least recently heard.
        assert!(!d.first_sight(&names[0], 1));
        assert!(d.first_sight(&names[ORIGINS_MAX], 1));
        assert_eq!(d.origins(), ORIGINS_MAX);
        assert_eq!(d.evicted(), 1);
        assert!(!d.first_sight(&names[0], 1), "n0 kept");
        assert!(
            d.first_sight(&names[1], 1),
            "n1 forgotten: its event looks new"
        );
    }
}
