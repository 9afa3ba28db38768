//! The piggyback queue: updates waiting to ride on datagrams.
//!
//! Order is fewest transmissions first, then newest first (memberlist's
//! `TransmitLimitedQueue`). A newer update about the same subject replaces the older one, and
//! an update is dropped once sent `limit` times. Updates keep their encoded bytes, so filling a
//! datagram is copying.
//!
//! An update may also have a brief form (a member's digest in place of its signed record):
//! it goes in full its first [`FULL_TRANSMITS`] times and brief after. The first copies reach
//! members that lack the update; most later ones reach members that hold it already, and a
//! member that does not asks the sender for the whole record.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::sync::Arc;

use super::member::{MemberPool, NameHasher, NodeName};

/// What an update is about; one queued update per subject.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A member's state.
    Member(NodeName),
    /// One user event.
    Event(NodeName, u64),
}

impl Subject {
    fn lane(&self) -> u8 {
        match self {
            Subject::Member(_) => 0,
            Subject::Event(..) => 1,
        }
    }
}

/// A [`Subject`] as held in the queue: membership updates, which a joining node queues one
/// per member, hold the name inline (16 bytes); the rarer others are boxed.
#[derive(Debug)]
enum Held {
    Member(NodeName),
    Other(Box<Subject>),
}

impl Held {
    fn new(subject: Subject) -> Self {
        match subject {
            Subject::Member(name) => Held::Member(name),
            other => Held::Other(Box::new(other)),
        }
    }

    fn is(&self, subject: &Subject) -> bool {
        match (self, subject) {
            (Held::Member(a), Subject::Member(b)) => a == b,
            (Held::Other(a), b) => **a == *b,
            (Held::Member(_), _) => false,
        }
    }

    fn hash(&self) -> u64 {
        match self {
            Held::Member(name) => member_hash(name),
            Held::Other(subject) => subject_hash(subject),
        }
    }

    fn lane(&self) -> u8 {
        match self {
            Held::Member(_) => 0,
            Held::Other(subject) => subject.lane(),
        }
    }
}

fn subject_hash(subject: &Subject) -> u64 {
    match subject {
        Subject::Member(name) => member_hash(name),
        other => BuildHasherDefault::<NameHasher>::default().hash_one(other),
    }
}

fn member_hash(name: &NodeName) -> u64 {
    BuildHasherDefault::<NameHasher>::default().hash_one(name)
}

/// An update's encoded bytes. One about a member's state (about 20 bytes with a short name)
/// is held inline, saving a heap block per queued update.
#[derive(Debug)]
enum Bytes {
    Inline {
        len: u8,
        data: [u8; BYTES_INLINE_MAX],
    },
    Heap(Box<[u8]>),
    /// Shared with other nodes' queues (a simulation's [`MemberPool`]).
    Shared(Arc<[u8]>),
}

/// Longest update held inline: keeps [`Bytes`] at 24 bytes.
const BYTES_INLINE_MAX: usize = 22;

impl Bytes {
    fn new(bytes: Vec<u8>) -> Self {
        if bytes.len() <= BYTES_INLINE_MAX {
            let mut data = [0u8; BYTES_INLINE_MAX];
            data[..bytes.len()].copy_from_slice(&bytes);
            Bytes::Inline {
                len: bytes.len() as u8,
                data,
            }
        } else {
            Bytes::Heap(bytes.into_boxed_slice())
        }
    }

    /// As [`new`](Self::new) makes them, but where they do not fit inline, the copy in
    /// `pool` that other queues share.
    fn pooled(bytes: Vec<u8>, pool: &MemberPool) -> Self {
        if bytes.len() <= BYTES_INLINE_MAX {
            Self::new(bytes)
        } else {
            Bytes::Shared(pool.share_bytes(bytes))
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, data } => &data[..*len as usize],
            Bytes::Heap(bytes) => bytes,
            Bytes::Shared(bytes) => bytes,
        }
    }
}

#[derive(Debug)]
struct Queued {
    subject: Held,
    bytes: Bytes,
    /// Sent in place of `bytes` after [`FULL_TRANSMITS`].
    brief: Option<Bytes>,
    /// Grows with each push, so a larger id is newer.
    id: u64,
    transmits: u32,
}

impl Queued {
    fn order_key(&self, slot: u32) -> OrderKey {
        (
            rank(self.subject.lane(), self.transmits),
            Reverse(self.id),
            slot,
        )
    }
}

/// `(lane and transmits, newest first, slot)`; the slot only locates the update.
type OrderKey = (u32, Reverse<u64>, u32);

/// Lane in the top byte, transmits below: one `u32` that sorts as the pair does.
fn rank(lane: u8, transmits: u32) -> u32 {
    (u32::from(lane) << 24) | transmits.min(0x00ff_ffff)
}

/// Transmissions of an update in full before its brief form, if it has one, goes instead.
/// With a limit of 12 a signed member record (~110 bytes) then
/// costs a node 2 · 110 + 10 · 15 bytes to relay instead of 12 · 110: about what the
/// unsigned 40-byte record cost, 12 · 40. Each member sends two full copies, so about one
/// member in e² gets none and asks for the record (a stream round trip).
pub const FULL_TRANSMITS: u32 = 2;

/// How many queued updates that do not fit are passed over before a fill stops looking.
const SKIPS_MAX: usize = 32;

/// Bounded, transmit-limited queue of encoded updates.
///
/// Every node of a cluster of `n` queues about `n` updates while it joins (one per member it
/// learns of), so the per-update cost is paid `n · min(n, capacity)` times in a simulation:
/// each update is stored once, in a slot, and the subject index and send order hold only its
/// slot number.
#[derive(Debug)]
pub struct BroadcastQueue {
    /// Queued updates; a freed slot is reused, so a slot number stays put while queued.
    slots: Vec<Option<Queued>>,
    free: Vec<u32>,
    len: usize,
    /// Slot of the update about each subject, by the subject's hash.
    by_subject: hashbrown::HashTable<u32>,
    /// The send order: fewest transmits first, then newest. Membership goes in lane 0 and
    /// user events in 1, so a burst of events never delays a suspicion or its refutation
    /// (that delay is what turns a suspicion into a false Dead).
    order: BTreeSet<OrderKey>,
    next_id: u64,
    capacity: usize,
    dropped: u64,
}

impl BroadcastQueue {
    /// A queue holding at most `capacity` updates.
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            by_subject: hashbrown::HashTable::new(),
            order: BTreeSet::new(),
            next_id: 0,
            capacity,
            dropped: 0,
        }
    }

    fn slot(&self, slot: u32) -> &Queued {
        self.slots[slot as usize]
            .as_ref()
            .expect("indexed slots are occupied")
    }

    /// Queues `bytes` about `subject`, replacing any older update about it. When full, the
    /// most-sent, oldest update is dropped to make room.
    pub fn push(&mut self, subject: Subject, bytes: Vec<u8>) {
        self.push_with_brief(subject, bytes, None);
    }

    /// As [`push`](Self::push), with `brief` to send in place of `bytes` once they have gone
    /// [`FULL_TRANSMITS`] times.
    pub fn push_with_brief(&mut self, subject: Subject, bytes: Vec<u8>, brief: Option<Vec<u8>>) {
        self.push_bytes(subject, Bytes::new(bytes), brief.map(Bytes::new));
    }

    /// As [`push_with_brief`](Self::push_with_brief), keeping `bytes` that do not fit
    /// inline as `pool`'s copy, which other nodes' queues share, rather than a copy of
    /// their own.
    pub fn push_pooled_with_brief(
        &mut self,
        subject: Subject,
        bytes: Vec<u8>,
        brief: Option<Vec<u8>>,
        pool: &MemberPool,
    ) {
        self.push_bytes(subject, Bytes::pooled(bytes, pool), brief.map(Bytes::new));
    }

    fn push_bytes(&mut self, subject: Subject, bytes: Bytes, brief: Option<Bytes>) {
        self.remove(&subject);
        if self.len >= self.capacity {
            if let Some(&(_, _, slot)) = self.order.iter().next_back() {
                self.remove_slot(slot);
                self.dropped += 1;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let queued = Queued {
            subject: Held::new(subject),
            bytes,
            brief,
            id,
            transmits: 0,
        };
        let hash = queued.subject.hash();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(queued);
                slot
            }
            None => {
                self.slots.push(Some(queued));
                u32::try_from(self.slots.len() - 1).expect("queue capacity fits a u32")
            }
        };
        self.len += 1;
        self.order.insert(self.slot(slot).order_key(slot));
        let slots = &self.slots;
        self.by_subject.insert_unique(hash, slot, |&s| {
            slots[s as usize]
                .as_ref()
                .expect("indexed slots are occupied")
                .subject
                .hash()
        });
    }

    /// Updates queued since the queue was made (replacements included).
    pub fn pushed(&self) -> u64 {
        self.next_id
    }

    /// Drops the queued update about `subject`, if any.
    pub fn remove(&mut self, subject: &Subject) {
        let slots = &self.slots;
        let found = self.by_subject.find(subject_hash(subject), |&s| {
            slots[s as usize]
                .as_ref()
                .is_some_and(|q| q.subject.is(subject))
        });
        if let Some(&slot) = found {
            self.remove_slot(slot);
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        let Some(q) = self.slots[slot as usize].take() else {
            return;
        };
        self.order.remove(&q.order_key(slot));
        if let Ok(entry) = self.by_subject.find_entry(q.subject.hash(), |&s| s == slot) {
            entry.remove();
        }
        self.free.push(slot);
        self.len -= 1;
        if self.len == 0 {
            // Give back the room a burst (a join) took.
            self.slots = Vec::new();
            self.free = Vec::new();
            self.by_subject = hashbrown::HashTable::new();
        }
    }

    /// Takes updates in send order while they fit in `budget` bytes, counting one transmission
    /// each and dropping those that reach `limit`. Returns how many were taken and their
    /// bytes, concatenated.
    pub fn take(&mut self, budget: usize, limit: u32, max_count: usize) -> (usize, Vec<u8>) {
        self.take_new(budget, limit, max_count, &mut Vec::new())
    }

    /// As [`take`](Self::take), passing over the updates in `sent` (ids from earlier takes
    /// for the same peer) and adding the ids of those taken: further datagrams to one peer
    /// carry updates the first did not.
    pub fn take_new(
        &mut self,
        budget: usize,
        limit: u32,
        max_count: usize,
        sent: &mut Vec<u64>,
    ) -> (usize, Vec<u8>) {
        let mut body = Vec::with_capacity(budget.min(64 * 1024));
        let mut picked: Vec<OrderKey> = Vec::new();
        let mut skips = 0;
        for key in &self.order {
            if picked.len() >= max_count || skips >= SKIPS_MAX {
                break;
            }
            let q = self.slot(key.2);
            if sent.contains(&q.id) {
                continue;
            }
            let bytes = match &q.brief {
                Some(brief) if q.transmits >= FULL_TRANSMITS => brief.as_slice(),
                _ => q.bytes.as_slice(),
            };
            if body.len() + bytes.len() <= budget {
                body.extend_from_slice(bytes);
                picked.push(*key);
                sent.push(q.id);
            } else {
                skips += 1;
            }
        }
        for key in &picked {
            let slot = key.2;
            let q = self.slots[slot as usize]
                .as_mut()
                .expect("ordered slots are occupied");
            q.transmits += 1;
            if q.transmits >= limit {
                q.transmits -= 1; // so remove_slot finds its order key
                self.remove_slot(slot);
            } else {
                let new_key = q.order_key(slot);
                self.order.remove(key);
                self.order.insert(new_key);
            }
        }
        (picked.len(), body)
    }

    /// Updates waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Updates dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// How many times each node sends an update: `mult · (ceil(log10(n + 1)) + 1)`, one step of
/// `mult` above memberlist's `mult · ceil(log10(n + 1))`.
///
/// Every node that learns an update sends it this many times, each to another member (the
/// gossip walk), so a member misses every copy with a probability of about e^-limit. At
/// memberlist's limit (8 from 10 to 99 members, 12 to 999) that happened to one member in
/// 15 of 200 seeded 50-node simulations (5 updates each; it then waited up to 18 s for a
/// push-pull) and in 2 of 200 at 100 nodes; one step more (12, then 16) left none over 1 s at
/// any size from 8 to 200. A copy after the first [`FULL_TRANSMITS`] is a member's digest
/// (about 15 bytes), so the step costs each node 4 digests an update.
pub fn retransmit_limit(mult: u32, n: usize) -> u32 {
    let scale = ((n as f64) + 1.0).log10().ceil() as u32;
    mult * (scale.max(1) + 1)
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
    fn pooled_updates_are_one_copy_for_every_queue_and_go_out_the_same() {
        let pool = MemberPool::new();
        let (mut a, mut b) = (BroadcastQueue::new(16), BroadcastQueue::new(16));
        a.push_pooled_with_brief(subj("x"), vec![2; 100], None, &pool);
        b.push_pooled_with_brief(subj("x"), vec![2; 100], None, &pool);
        b.push_pooled_with_brief(subj("y"), vec![1; 10], None, &pool);
        let held = |q: &BroadcastQueue, at: usize| match &q.slot(at as u32).bytes {
            Bytes::Shared(bytes) => Some(Arc::clone(bytes)),
            _ => None,
        };
        let (from_a, from_b) = (held(&a, 0).unwrap(), held(&b, 0).unwrap());
        assert!(Arc::ptr_eq(&from_a, &from_b), "one copy for both queues");
        assert!(held(&b, 1).is_none(), "a short update stays inline");
        assert_eq!(take(&mut b, 200, 5), vec![vec![1; 10], vec![2; 100]]);
    }

    #[test]
    fn brief_form_goes_after_the_full_transmissions() {
        let mut q = BroadcastQueue::new(16);
        q.push_with_brief(subj("a"), vec![2; 100], Some(vec![1; 10]));
        for _ in 0..FULL_TRANSMITS {
            assert_eq!(take(&mut q, 200, 12), vec![vec![2; 100]]);
        }
        assert_eq!(take(&mut q, 200, 12), vec![vec![1; 10]]);
        // The brief form fits where the full one would not.
        assert_eq!(take(&mut q, 20, 12), vec![vec![1; 10]]);
        // Without one, the full form goes every time.
        q.push(subj("b"), vec![2; 100]);
        for _ in 0..FULL_TRANSMITS + 1 {
            assert_eq!(take(&mut q, 105, 12), vec![vec![2; 100]]);
        }
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
        assert_eq!(retransmit_limit(4, 1), 8);
        assert_eq!(retransmit_limit(4, 9), 8);
        assert_eq!(retransmit_limit(4, 10), 12);
        assert_eq!(retransmit_limit(4, 999), 16);
        assert_eq!(retransmit_limit(4, 1000), 20);
        assert_eq!(retransmit_limit(1, 0), 2);
    }

    #[test]
    fn short_and_long_updates_come_out_as_queued() {
        let mut q = BroadcastQueue::new(16);
        let short: Vec<u8> = (0..BYTES_INLINE_MAX as u8).collect();
        let long: Vec<u8> = (0..=BYTES_INLINE_MAX as u8).collect();
        q.push(subj("short"), short.clone());
        q.push(subj("long"), long.clone());
        let (count, body) = q.take(1000, 5, 10);
        assert_eq!(count, 2);
        assert_eq!(body, [long, short].concat());
        assert_eq!(std::mem::size_of::<Bytes>(), 24);
    }
}
