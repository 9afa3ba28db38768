//! How a key/value entry proves that its owner wrote it: one signature per batch.
//!
//! Signing each entry costs every receiver one signature check per entry (~70 µs of CPU),
//! so 5,000 writes a second over 31 receivers would take ten cores. Instead the owner
//! collects the entries it wrote since it last sent any (a *batch*, at most
//! [`BATCH_LEAVES_MAX`]), hashes them into a Merkle tree and signs the root once. Each entry
//! travels with the path from its leaf to that root and the root's signature, so it is
//! still checked on its own, by anyone, whichever relayer brings it:
//!
//! ```text
//!                 root ── signed by the owner: signed_bytes(KvBatch, (owner, root))
//!               /      \
//!           h01          h23            leaf  = SHA-256(0x00 ‖ entry.signed_bytes())
//!          /   \        /   \           inner = SHA-256(0x01 ‖ left ‖ right)
//!        e0    e1     e2    e3          e2's proof: index 2, path [h(e3), h01], signature
//! ```
//!
//! A receiver folds an entry's leaf up its path and checks the root's signature only the
//! first time it meets that root ([`RootCache`]); the batch's other entries then cost two to
//! six hashes each. A batch of one has an empty path and signs its single leaf, so a quiet
//! cluster pays what it paid for one signature per entry (plus the index byte).

use std::collections::{HashMap, HashSet};

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Deserializer, Serialize};

use super::super::bounded;
use super::super::member::NodeName;
use super::super::signing::{signed_bytes, Keyring, RecordKind, Signature};
use super::KvEntry;

/// Most entries one signature covers. More would cut the checks further but lengthen every
/// entry's path by 32 bytes per doubling: at 32 (a path of five hashes) a burst of writes
/// costs a receiver a 32nd of a signature check per entry.
pub const BATCH_LEAVES_MAX: usize = 32;

/// Longest path the decoder accepts: a tree of 256 leaves, more than any batch made here.
pub const PATH_LEN_MAX: usize = 8;

/// Verified roots a node remembers; emptied when full (a rogue owner can only make its
/// own roots, so flooding this costs the flooder's entries a signature check each).
const ROOTS_REMEMBERED_MAX: usize = 4096;

/// A SHA-256 digest: a leaf, an inner node or a root.
pub type Hash = [u8; 32];

/// An entry's proof: its place in its batch, the sibling hashes up to the root, and the
/// owner's signature of the root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryProof {
    /// The leaf's position in the batch: bit `i` set means it is the right child at level
    /// `i` (leaves are level 0).
    pub index: u32,
    /// Sibling hashes, the leaf's first.
    #[serde(deserialize_with = "wire_path")]
    pub path: Vec<Hash>,
    /// The owner's signature over [`root_bytes`] of the root.
    pub signature: Signature,
}

fn wire_path<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
    bounded::seq(d, "proof path", PATH_LEN_MAX)
}

impl EntryProof {
    /// No proof yet: an entry this node wrote and has not sent since. It verifies nowhere.
    pub fn unsealed() -> Self {
        EntryProof {
            index: 0,
            path: Vec::new(),
            signature: Signature(Vec::new()),
        }
    }

    /// Whether this is [`EntryProof::unsealed`].
    pub fn is_unsealed(&self) -> bool {
        self.signature.0.is_empty()
    }

    /// Bytes it adds to an entry on the wire (about).
    pub fn wire_len(&self) -> usize {
        5 + self.path.len() * 32 + self.signature.0.len()
    }

    /// The root `entry` leads to through this proof, or `None` when the index does not fit
    /// the path (a tree of `2^path.len()` leaves).
    pub fn root(&self, entry: &KvEntry) -> Option<Hash> {
        if self.path.len() < 32 && self.index >> self.path.len() != 0 {
            return None;
        }
        let mut node = leaf_hash(entry);
        for (level, sibling) in self.path.iter().enumerate() {
            node = if self.index >> level & 1 == 0 {
                inner_hash(&node, sibling)
            } else {
                inner_hash(sibling, &node)
            };
        }
        Some(node)
    }
}

/// The bytes an owner signs for a batch with root `root`.
pub fn root_bytes(owner: &NodeName, root: &Hash) -> Vec<u8> {
    signed_bytes(RecordKind::KvBatch, &(owner, root))
}

fn leaf_hash(entry: &KvEntry) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0]);
    c.update(&entry.signed_bytes());
    finish(c)
}

fn inner_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[1]);
    c.update(left);
    c.update(right);
    finish(c)
}

fn finish(c: Context) -> Hash {
    let mut out = [0; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// Stands in for the leaves past a batch's end, up to the next power of two. No entry
/// hashes to it (leaves are hashed with a 0x00 prefix over a non-empty encoding).
const EMPTY_LEAF: Hash = [0; 32];

/// Signs `entries` (all of one owner, the keyring's) as batches of at most
/// [`BATCH_LEAVES_MAX`], setting each entry's proof. One signature per batch.
pub fn seal(keyring: &dyn Keyring, entries: &mut [KvEntry]) {
    for batch in entries.chunks_mut(BATCH_LEAVES_MAX) {
        let Some(owner) = batch.first().map(|e| e.owner.clone()) else {
            continue;
        };
        let width = batch.len().next_power_of_two();
        let mut levels: Vec<Vec<Hash>> = vec![batch.iter().map(leaf_hash).collect()];
        levels[0].resize(width, EMPTY_LEAF);
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("checked above");
            let up = below.chunks(2).map(|p| inner_hash(&p[0], &p[1])).collect();
            levels.push(up);
        }
        let root = levels.last().expect("at least the leaves")[0];
        let signature = keyring.sign(&root_bytes(&owner, &root));
        let depth = levels.len() - 1;
        for (i, e) in batch.iter_mut().enumerate() {
            let path = (0..depth)
                .map(|level| levels[level][(i >> level) ^ 1])
                .collect();
            e.proof = EntryProof {
                index: i as u32,
                path,
                signature: signature.clone(),
            };
        }
    }
}

/// Roots whose signatures this node has checked, per owner: a batch's second and later
/// entries cost hashes only.
#[derive(Debug, Default)]
pub struct RootCache {
    roots: HashMap<NodeName, HashSet<Hash>>,
    len: usize,
}

impl RootCache {
    /// Whether `root` of `owner` was checked already.
    pub fn contains(&self, owner: &NodeName, root: &Hash) -> bool {
        self.roots.get(owner).is_some_and(|r| r.contains(root))
    }

    /// Remembers a checked root.
    pub fn insert(&mut self, owner: NodeName, root: Hash) {
        if self.len >= ROOTS_REMEMBERED_MAX {
            self.roots.clear();
            self.len = 0;
        }
        if self.roots.entry(owner).or_default().insert(root) {
            self.len += 1;
        }
    }

    /// Forgets the roots of `owner` (a member reaped, or its certificate replaced).
    pub fn forget(&mut self, owner: &NodeName) {
        if let Some(r) = self.roots.remove(owner) {
            self.len -= r.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::protocol::signing::Verdict;
    use crate::sim::SimAuthority;

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    fn entries(owner: &str, count: usize) -> Vec<KvEntry> {
        (0..count)
            .map(|i| KvEntry {
                owner: n(owner),
                key: format!("k{i}"),
                version: i as u64 + 1,
                value: (i % 3 != 0).then(|| vec![i as u8; i]),
                proof: EntryProof::unsealed(),
            })
            .collect()
    }

    /// What a receiver does: fold the leaf up, check the root's signature by the owner.
    fn verdict(authority: &Arc<SimAuthority>, e: &KvEntry) -> Verdict {
        let checker = authority.keyring(&n("checker"));
        for signer in ["a", "b"] {
            checker
                .learn(&n(signer), &authority.certificate(&n(signer)))
                .unwrap();
        }
        match e.proof.root(e) {
            Some(root) => {
                checker.verify(&e.owner, &root_bytes(&e.owner, &root), &e.proof.signature)
            }
            None => Verdict::Invalid,
        }
    }

    #[test]
    fn every_entry_of_every_batch_size_verifies_alone_with_one_signature_per_batch() {
        let authority = SimAuthority::new(1);
        for count in [1, 2, 3, 5, 16, 31, 32, 33, 70] {
            let mut es = entries("a", count);
            seal(&*authority.keyring(&n("a")), &mut es);
            for e in &es {
                assert_eq!(
                    verdict(&authority, e),
                    Verdict::Valid,
                    "{count} entries: {}",
                    e.key
                );
            }
            let signatures: HashSet<&Signature> = es.iter().map(|e| &e.proof.signature).collect();
            assert_eq!(
                signatures.len(),
                count.div_ceil(BATCH_LEAVES_MAX),
                "{count} entries"
            );
            let longest = es.iter().map(|e| e.proof.path.len()).max().unwrap();
            assert!(longest <= 5, "{count} entries: path of {longest}");
            if count == 1 {
                assert!(es[0].proof.path.is_empty(), "a batch of one signs its leaf");
            }
        }
    }

    #[test]
    fn a_changed_entry_path_index_or_signer_does_not_verify() {
        let authority = SimAuthority::new(2);
        let mut es = entries("a", 8);
        seal(&*authority.keyring(&n("a")), &mut es);
        let e = &es[5];
        let mut value = e.clone();
        value.value = Some(b"forged".to_vec());
        let mut version = e.clone();
        version.version += 1;
        let mut owner = e.clone();
        owner.owner = n("b");
        let mut index = e.clone();
        index.proof.index = 4;
        let mut too_far = e.clone();
        too_far.proof.index = 8; // past a tree of 8 leaves
        let mut path = e.clone();
        path.proof.path[1][0] ^= 1;
        let mut short = e.clone();
        short.proof.path.pop();
        // Another entry's proof, moved over.
        let mut moved = e.clone();
        moved.proof = es[2].proof.clone();
        for (what, forged) in [
            ("value", value),
            ("version", version),
            ("owner", owner),
            ("index", index),
            ("index past the tree", too_far),
            ("path", path),
            ("shorter path", short),
            ("another entry's proof", moved),
        ] {
            assert_ne!(
                verdict(&authority, &forged),
                Verdict::Valid,
                "changed {what}"
            );
        }
        // Signed by another member's key in the owner's name.
        let mut by_other = entries("a", 4);
        seal(&*authority.keyring(&n("b")), &mut by_other);
        assert_eq!(verdict(&authority, &by_other[0]), Verdict::Invalid);
        assert_eq!(verdict(&authority, &es[5]), Verdict::Valid);
    }

    #[test]
    fn an_unsealed_entry_verifies_nowhere() {
        let authority = SimAuthority::new(3);
        let e = &entries("a", 1)[0];
        assert!(e.proof.is_unsealed());
        assert_ne!(verdict(&authority, e), Verdict::Valid);
    }

    #[test]
    fn the_root_cache_is_bounded_and_forgets_an_owner() {
        let mut cache = RootCache::default();
        for i in 0..ROOTS_REMEMBERED_MAX + 10 {
            let mut root = [0; 32];
            root[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(n(if i % 2 == 0 { "a" } else { "b" }), root);
            assert!(cache.len <= ROOTS_REMEMBERED_MAX);
        }
        let last = {
            let mut root = [0; 32];
            root[..8].copy_from_slice(&((ROOTS_REMEMBERED_MAX + 9) as u64).to_le_bytes());
            root
        };
        assert!(cache.contains(&n("b"), &last));
        assert!(!cache.contains(&n("a"), &last));
        cache.forget(&n("b"));
        assert!(!cache.contains(&n("b"), &last));
        assert_eq!(
            cache.len,
            cache.roots.values().map(HashSet::len).sum::<usize>()
        );
    }
}
