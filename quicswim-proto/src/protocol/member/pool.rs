//! [`MemberPool`]: one shared copy of each distinct member for the tables of many nodes in one
//! process (a simulation).

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};

use super::super::signing::Signature;
use super::{Member, NameHasher};

/// Identical members shared between the tables of many nodes in one process.
///
/// In a simulation every node holds an entry for every member, and at any moment nearly all
/// of them hold the same `Member` (same name, address, incarnation, state and metadata).
/// Handing out one shared copy per distinct value makes a table entry a pointer: at 10,000
/// nodes that is 10⁸ entries, 88 bytes each when every node keeps its own copy. A node on
/// its own has no use for one. Sharing is by value only, so no outcome depends on it.
#[derive(Clone, Debug, Default)]
pub struct MemberPool(Arc<Mutex<PoolInner>>);

#[derive(Debug, Default)]
struct PoolInner {
    members: HashSet<Arc<Member>, BuildHasherDefault<NameHasher>>,
    /// Size after the last sweep; the next comes when the pool has doubled.
    swept_len: usize,
    /// The members' signatures over their records, shared the same way: every table holds
    /// one per member (64 bytes and a heap block each).
    signatures: HashSet<Signature>,
    /// Size of `signatures` after its last sweep.
    signatures_swept_len: usize,
    /// Encoded updates waiting in the nodes' piggyback queues, shared the same way: a
    /// joining node queues one signed record (about 110 bytes) per member it learns, the
    /// same bytes as every other node queues for that member.
    bytes: HashSet<Arc<[u8]>>,
    /// Size of `bytes` after its last sweep.
    bytes_swept_len: usize,
}

/// Fewest members a pool holds before it sweeps out those no table uses any more.
const POOL_SWEEP_MIN: usize = 4096;

impl MemberPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of `member`, added if the pool has none.
    pub fn share(&self, member: Member) -> Arc<Member> {
        let mut inner = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = inner.members.get(&member) {
            return Arc::clone(held);
        }
        let PoolInner {
            members, swept_len, ..
        } = &mut *inner;
        sweep_if_doubled(members, swept_len, |m| Arc::strong_count(m) > 1);
        let shared = Arc::new(member);
        inner.members.insert(Arc::clone(&shared));
        shared
    }

    /// The shared copy of `signature`, added if the pool has none.
    pub fn share_signature(&self, signature: Signature) -> Signature {
        let mut inner = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = inner.signatures.get(&signature) {
            return held.clone();
        }
        let PoolInner {
            signatures,
            signatures_swept_len,
            ..
        } = &mut *inner;
        sweep_if_doubled(signatures, signatures_swept_len, Signature::is_shared);
        inner.signatures.insert(signature.clone());
        signature
    }

    /// The shared copy of `bytes`, added if the pool has none.
    pub fn share_bytes(&self, bytes: Vec<u8>) -> Arc<[u8]> {
        let mut inner = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = inner.bytes.get(bytes.as_slice()) {
            return Arc::clone(held);
        }
        let PoolInner {
            bytes: held,
            bytes_swept_len,
            ..
        } = &mut *inner;
        sweep_if_doubled(held, bytes_swept_len, |b| Arc::strong_count(b) > 1);
        let shared: Arc<[u8]> = Arc::from(bytes);
        inner.bytes.insert(Arc::clone(&shared));
        shared
    }

    /// Distinct members held.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .members
            .len()
    }

    /// Holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops from `set` what only the pool still holds (`in_use` false), once the set has
/// doubled since the last sweep (`swept_len`), and at least [`POOL_SWEEP_MIN`] in it.
fn sweep_if_doubled<T, S>(
    set: &mut HashSet<T, S>,
    swept_len: &mut usize,
    in_use: impl Fn(&T) -> bool,
) where
    T: Eq + std::hash::Hash,
    S: std::hash::BuildHasher,
{
    if set.len() >= (2 * *swept_len).max(POOL_SWEEP_MIN) {
        set.retain(|v| in_use(v));
        *swept_len = set.len();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Incarnation, NodeName, State};
    use super::*;

    #[test]
    fn pool_hands_out_one_copy_per_distinct_member_and_sweeps_unused_ones() {
        let pool = MemberPool::new();
        let member = |i: usize, incarnation: u64| Member {
            name: NodeName::new(format!("n{i}")).unwrap(),
            addr: "127.0.0.1:1".parse().unwrap(),
            incarnation: Incarnation(incarnation),
            state: State::Alive,
            meta: Vec::new(),
        };
        let a = pool.share(member(1, 0));
        let b = pool.share(member(1, 0));
        assert!(Arc::ptr_eq(&a, &b));
        let c = pool.share(member(1, 1));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(pool.len(), 2);
        drop(c);
        for i in 0..POOL_SWEEP_MIN {
            let _unused = pool.share(member(i + 10, 0));
        }
        // The sweep kept only what is still used elsewhere: `a` (and `b`).
        assert!(pool.len() < POOL_SWEEP_MIN);
        assert!(Arc::ptr_eq(&a, &pool.share(member(1, 0))));
    }

    #[test]
    fn pool_hands_out_one_copy_per_distinct_byte_string_and_sweeps_unused_ones() {
        let pool = MemberPool::new();
        let a = pool.share_bytes(vec![1; 100]);
        let b = pool.share_bytes(vec![1; 100]);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &pool.share_bytes(vec![2; 100])));
        for i in 0..POOL_SWEEP_MIN {
            let _unused = pool.share_bytes((i as u64).to_le_bytes().to_vec());
        }
        let held = pool.0.lock().unwrap().bytes.len();
        assert!(held < POOL_SWEEP_MIN, "unused strings swept, {held} held");
        assert!(Arc::ptr_eq(&a, &pool.share_bytes(vec![1; 100])));
    }

    #[test]
    fn pool_hands_out_one_copy_per_distinct_signature() {
        let pool = MemberPool::new();
        let a = pool.share_signature(Signature::new(vec![1; 64]));
        let b = pool.share_signature(Signature::new(vec![1; 64]));
        assert!(std::ptr::eq(a.as_bytes(), b.as_bytes()));
        let c = pool.share_signature(Signature::new(vec![2; 64]));
        assert!(!std::ptr::eq(a.as_bytes(), c.as_bytes()));
        assert_eq!(a, b);
    }
}
