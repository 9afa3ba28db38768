//! The piggyback queue: updates waiting to ride on datagrams.
//!
//! Order is fewest transmissions first, then newest first (memberlist's
//! `TransmitLimitedQueue`). A newer update about the same subject replaces the older one, and
//! an update is dropped once sent `limit` times. Updates keep their encoded bytes, so filling a
//! datagram is copying.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::member::NodeName;

/// What an update is about; one queued update per subject.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A member's state.
    Member(NodeName),
}

#[derive(Debug)]
struct Queued {
    bytes: Vec<u8>,
    transmits: u32,
    id: u64,
}

/// Bounded, transmit-limited queue of encoded updates.
#[derive(Debug)]
pub struct BroadcastQueue {
    by_subject: BTreeMap<Subject, Queued>,
    /// (transmits, newest first) -> subject; the send order.
    order: BTreeSet<(u32, Reverse<u64>, Subject)>,
    next_id: u64,
    capacity: usize,
    dropped: u64,
}

impl BroadcastQueue {
    /// A queue holding at most `capacity` updates.
    pub fn new(capacity: usize) -> Self {
        Self {
            by_subject: BTreeMap::new(),
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
        if self.by_subject.len() >= self.capacity {
            if let Some(last) = self.order.iter().next_back().cloned() {
                self.remove(&last.2);
                self.dropped += 1;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.order.insert((0, Reverse(id), subject.clone()));
        self.by_subject.insert(
            subject,
            Queued {
                bytes,
                transmits: 0,
                id,
            },
        );
    }

    /// Drops the queued update about `subject`, if any.
    pub fn remove(&mut self, subject: &Subject) {
        if let Some(q) = self.by_subject.remove(subject) {
            self.order
                .remove(&(q.transmits, Reverse(q.id), subject.clone()));
        }
    }

    /// Takes updates in send order while they fit in `budget` bytes, counting one transmission
    /// each and dropping those that reach `limit`. Returns their bytes, concatenation-ready.
    pub fn take(&mut self, budget: usize, limit: u32, max_count: usize) -> Vec<Vec<u8>> {
        let mut left = budget;
        let mut picked = Vec::new();
        for key in &self.order {
            if picked.len() >= max_count || left < 8 {
                break;
            }
            let q = &self.by_subject[&key.2];
            if q.bytes.len() <= left {
                left -= q.bytes.len();
                picked.push(key.clone());
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for key in picked {
            self.order.remove(&key);
            let subject = key.2;
            let q = self
                .by_subject
                .get_mut(&subject)
                .expect("ordered key has an entry");
            q.transmits += 1;
            out.push(q.bytes.clone());
            if q.transmits >= limit {
                self.by_subject.remove(&subject);
            } else {
                self.order.insert((q.transmits, Reverse(q.id), subject));
            }
        }
        out
    }

    /// Updates waiting.
    pub fn len(&self) -> usize {
        self.by_subject.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty()
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

    #[test]
    fn least_sent_then_newest_go_first() {
        let mut q = BroadcastQueue::new(16);
        q.push(subj("a"), vec![1; 10]);
        q.push(subj("b"), vec![2; 10]);
        // b is newest; a budget for one takes b.
        assert_eq!(q.take(12, 5, 100), vec![vec![2; 10]]);
        // Now a has 0 sends, b has 1: a goes first, then b.
        assert_eq!(q.take(100, 5, 100), vec![vec![1; 10], vec![2; 10]]);
    }

    #[test]
    fn newer_update_about_same_subject_replaces_older() {
        let mut q = BroadcastQueue::new(16);
        q.push(subj("a"), vec![1; 10]);
        q.push(subj("a"), vec![9; 10]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.take(100, 5, 100), vec![vec![9; 10]]);
    }

    #[test]
    fn updates_are_dropped_after_limit_sends() {
        let mut q = BroadcastQueue::new(16);
        q.push(subj("a"), vec![1; 10]);
        for _ in 0..3 {
            assert_eq!(q.take(100, 3, 100).len(), 1);
        }
        assert!(q.is_empty());
        assert!(q.take(100, 3, 100).is_empty());
    }

    #[test]
    fn fill_skips_what_does_not_fit_and_takes_smaller_ones() {
        let mut q = BroadcastQueue::new(16);
        q.push(subj("small"), vec![1; 10]);
        q.push(subj("big"), vec![2; 100]);
        assert_eq!(q.take(50, 5, 100), vec![vec![1; 10]]);
    }

    #[test]
    fn full_queue_drops_the_most_sent() {
        let mut q = BroadcastQueue::new(2);
        q.push(subj("a"), vec![1; 10]);
        let _ = q.take(100, 9, 100); // a sent once
        q.push(subj("b"), vec![2; 10]);
        q.push(subj("c"), vec![3; 10]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(), 1);
        let got = q.take(100, 9, 100);
        assert_eq!(got, vec![vec![3; 10], vec![2; 10]]);
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
