//! The piggyback queue: updates waiting to ride on datagrams.
//!
//! Order is fewest transmissions first, then newest first (memberlist's
//! `TransmitLimitedQueue`). A newer update about the same subject replaces the older one, and
//! an update is dropped once sent `limit` times. Updates keep their encoded bytes, so filling a
//! datagram is copying.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;

use rustc_hash::FxHashMap;

use super::member::{NameHasher, NodeName};

/// What an update is about; one queued update per subject.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A member's state.
    Member(NodeName),
    /// One user event.
    Event(NodeName, u64),
}

#[derive(Debug)]
struct Queued {
    subject: Subject,
    bytes: Vec<u8>,
    transmits: u32,
}

impl Subject {
    fn lane(&self) -> u8 {
        match self {
            Subject::Member(_) => 0,
            Subject::Event(..) => 1,
        }
    }
}

/// How many queued updates that do not fit are passed over before a fill stops looking.
const SKIPS_MAX: usize = 32;

/// Bounded, transmit-limited queue of encoded updates.
#[derive(Debug)]
pub struct BroadcastQueue {
    /// id -> update; ids grow, so a larger id is newer.
    entries: FxHashMap<u64, Queued>,
    by_subject: HashMap<Subject, u64, BuildHasherDefault<NameHasher>>,
    /// (lane, transmits, newest first): the send order. Membership goes in lane 0 and user
    /// events in 1, so a burst of events never delays a suspicion or its refutation (that
    /// delay is what turns a suspicion into a false Dead).
    order: BTreeSet<(u8, u32, Reverse<u64>)>,
    next_id: u64,
    capacity: usize,
    dropped: u64,
}

impl BroadcastQueue {
    /// A queue holding at most `capacity` updates.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: FxHashMap::default(),
            by_subject: HashMap::default(),
            order: BTreeSet::new(),
            next_id: 0,
            capacity,
            dropped: 0,
        }
    }

    /// Queues `bytes` about `subject`, replacing any older update about it. When full, the
    /// most-sent, oldest update is dropped to make room.
    pub fn push(&mut self, subject: Subject, bytes: Vec<u8>) {
        self.remove(&subject);
        if self.entries.len() >= self.capacity {
            if let Some(&(_, _, Reverse(id))) = self.order.iter().next_back() {
                self.remove_id(id);
                self.dropped += 1;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.order.insert((subject.lane(), 0, Reverse(id)));
        self.by_subject.insert(subject.clone(), id);
        self.entries.insert(
            id,
            Queued {
                subject,
                bytes,
                transmits: 0,
            },
        );
    }

    /// Drops the queued update about `subject`, if any.
    pub fn remove(&mut self, subject: &Subject) {
        if let Some(&id) = self.by_subject.get(subject) {
            self.remove_id(id);
        }
    }

    fn remove_id(&mut self, id: u64) {
        if let Some(q) = self.entries.remove(&id) {
            self.order
                .remove(&(q.subject.lane(), q.transmits, Reverse(id)));
            self.by_subject.remove(&q.subject);
        }
    }

    /// Takes updates in send order while they fit in `budget` bytes, counting one transmission
    /// each and dropping those that reach `limit`. Returns how many were taken and their
    /// bytes, concatenated.
    pub fn take(&mut self, budget: usize, limit: u32, max_count: usize) -> (usize, Vec<u8>) {
        let mut body = Vec::with_capacity(budget.min(64 * 1024));
        let mut picked: Vec<(u8, u32, Reverse<u64>)> = Vec::new();
        let mut skips = 0;
        for key in &self.order {
            if picked.len() >= max_count || skips >= SKIPS_MAX {
                break;
            }
            let q = &self.entries[&key.2 .0];
            if body.len() + q.bytes.len() <= budget {
                body.extend_from_slice(&q.bytes);
                picked.push(*key);
            } else {
                skips += 1;
            }
        }
        for key in &picked {
            self.order.remove(key);
            let id = key.2 .0;
            let q = self.entries.get_mut(&id).expect("ordered key has an entry");
            q.transmits += 1;
            if q.transmits >= limit {
                self.remove_id(id);
            } else {
                self.order.insert((key.0, q.transmits, Reverse(id)));
            }
        }
        (picked.len(), body)
    }

    /// Updates waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Updates dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// memberlist's retransmit limit: `mult · ceil(log10(n + 1))`.
pub fn retransmit_limit(mult: u32, n: usize) -> u32 {
    let scale = ((n as f64) + 1.0).log10().ceil() as u32;
    mult * scale.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subj(s: &str) -> Subject {
        Subject::Member(NodeName::new(s).unwrap())
    }

    /// The updates a fill takes, split back into their 10- or 100-byte pieces.
    fn take(q: &mut BroadcastQueue, budget: usize, limit: u32) -> Vec<Vec<u8>> {
        let (count, body) = q.take(budget, limit, 100);
        let mut out = Vec::new();
        let mut rest = body.as_slice();
        while !rest.is_empty() {
            let len = if rest[0] == 2 && rest.len() >= 100 && rest[..100].iter().all(|b| *b == 2) {
                100
            } else {
                10
            };
            out.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        assert_eq!(out.len(), count);
        out
    }

    #[test]
    fn least_sent_then_newest_go_first() {
        let mut q = BroadcastQueue::new(16);
        q.push(subj("a"), vec![1; 10]);
        q.push(subj("b"), vec![2; 10]);
        // b is newest; a budget for one takes b.
        assert_eq!(take(&mut q, 12, 5), vec![vec![2; 10]]);
        // Now a has 0 sends, b has 1: a goes first, then b.
        assert_eq!(take(&mut q, 100, 5), vec![vec![1; 10], vec![2; 10]]);
    }

    #[test]
    fn newer_update_about_same_subject_replaces_older() {
        let mut q = BroadcastQueue::new(16);
        q.push(subj("a"), vec![1; 10]);
        q.push(subj("a"), vec![9; 10]);
        assert_eq!(q.len(), 1);
        assert_eq!(take(&mut q, 100, 5), vec![vec![9; 10]]);
    }

    #[test]
    fn updates_are_dropped_after_limit_sends() {
        let mut q = BroadcastQueue::new(16);
        q.push(subj("a"), vec![1; 10]);
        for _ in 0..3 {
            assert_eq!(take(&mut q, 100, 3).len(), 1);
        }
        assert!(q.is_empty());
        assert!(take(&mut q, 100, 3).is_empty());
    }

    #[test]
    fn fill_skips_what_does_not_fit_and_takes_smaller_ones() {
        let mut q = BroadcastQueue::new(16);
        q.push(subj("small"), vec![1; 10]);
        q.push(subj("big"), vec![2; 100]);
        assert_eq!(take(&mut q, 50, 5), vec![vec![1; 10]]);
    }

    #[test]
    fn full_queue_drops_the_most_sent() {
        let mut q = BroadcastQueue::new(2);
        q.push(subj("a"), vec![1; 10]);
        let _ = take(&mut q, 100, 9); // a sent once
        q.push(subj("b"), vec![2; 10]);
        q.push(subj("c"), vec![3; 10]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 1);
        let got = take(&mut q, 100, 9);
        assert_eq!(got, vec![vec![3; 10], vec![2; 10]]);
    }

    #[test]
    fn membership_goes_before_application_data() {
        let mut q = BroadcastQueue::new(16);
        q.push(Subject::Member(NodeName::new("m").unwrap()), vec![1; 10]);
        q.push(Subject::Event(NodeName::new("o").unwrap(), 1), vec![2; 10]);
        let _ = take(&mut q, 100, 9); // both sent once
        q.push(Subject::Event(NodeName::new("o").unwrap(), 2), vec![3; 10]);
        // The member update (sent once) still beats the fresh event.
        assert_eq!(take(&mut q, 12, 9), vec![vec![1; 10]]);
    }

    #[test]
    fn retransmit_limit_scales_with_log_of_size() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 999), 12);
        assert_eq!(retransmit_limit(4, 1000), 16);
    }
}
