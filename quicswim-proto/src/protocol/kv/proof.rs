//! How a key/value entry proves that its owner wrote it: one signature per batch.
//!
//! Signing each entry costs every receiver one signature check per entry (~70 µs of CPU),
//! so 5,000 writes a second over 31 receivers would take ten cores. Instead the owner
//! collects the entries it wrote since it last sent any (a *batch*, at most
//! [`BATCH_LEAVES_MAX`]) and signs the hash of their hashes once. A delta carries each
//! batch its entries belong to once: the signature, the number of leaves, and the hashes of
//! the leaves it does not carry (entries overwritten since, or sent in another delta). The
//! receiver hashes the entries it got, fills in the rest, and checks the signature of each
//! batch once (and not again while it remembers the root, [`RootCache`]):
//!
//! ```text
//!   owner signs    signed_bytes(KvBatch, (owner, root))
//!                  root = SHA-256(0x01 ‖ leaf0 ‖ leaf1 ‖ ... ‖ leafN-1)
//!                  leaf = SHA-256(0x00 ‖ entry.signed_bytes())     (owner, key, version, value)
//!
//!   OwnerDelta { entries: [e0, e2, e3],
//!                proof: { places:  [(0, 0), (0, 2), (0, 3)]        batch, leaf per entry
//!                         batches: [{ leaves: 4, missing: [(1, h1)], signature }] } }
//! ```
//!
//! Every holder keeps each batch's leaf hashes (32 bytes per entry, shared by the batch's
//! entries, [`Batch`]), so it can pass any entry on with the proof the next receiver needs,
//! whatever else it sends. A burst of writes costs the wire a signature per batch and a few
//! bytes per entry, less than a signature per entry; an entry sent long after the rest of
//! its batch was overwritten costs 32 bytes per other leaf (at most 63).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Deserializer, Serialize};

use super::super::bounded;
use super::super::codec::ENTRIES_PER_DELTA_MAX;
use super::super::member::NodeName;
use super::super::signing::{signed_bytes, Keyring, RecordKind, Signature};
use super::KvEntry;

/// Most entries one signature covers: a receiver checks one signature per this many
/// entries of a burst; an entry sent without the rest of its batch costs up to this many
/// hashes of 32 bytes.
pub const BATCH_LEAVES_MAX: usize = 64;

/// Most leaves of a batch a receiver accepts: what this build makes. Each entry held keeps
/// its batch's leaf hashes (shared with the batch's other entries), so this bounds what one
/// entry can pin: 2 KiB.
pub const BATCH_LEAVES_DECODE_MAX: usize = BATCH_LEAVES_MAX;

/// Verified roots a node remembers; emptied when full (a rogue owner can only make its
/// own roots, so flooding this costs the flooder's entries a signature check each).
const ROOTS_REMEMBERED_MAX: usize = 4096;

/// A SHA-256 digest: a leaf or a root.
pub type Hash = [u8; 32];

/// A batch as a node holds it: its leaves' hashes in order and the owner's signature.
/// Shared by the batch's entries the node holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    /// The leaves' hashes.
    pub leaves: Vec<Hash>,
    /// The owner's signature over [`root_bytes`].
    pub signature: Signature,
}

/// An entry's place in its batch, as held. Not sent as such: a delta carries each batch
/// once ([`DeltaProof`]).
#[derive(Clone, Debug)]
pub struct Sealed {
    /// The batch.
    pub batch: Arc<Batch>,
    /// The entry's leaf in it.
    pub leaf: u16,
}

impl PartialEq for Sealed {
    fn eq(&self, other: &Self) -> bool {
        self.leaf == other.leaf && self.batch == other.batch
    }
}

impl Eq for Sealed {}

/// What proves a delta's entries: their places in the batches, and each batch once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaProof {
    /// For each entry of the delta, in order: its batch (an index into `batches`) and its
    /// leaf in that batch.
    #[serde(deserialize_with = "wire_places")]
    pub places: Vec<(u16, u16)>,
    /// The batches.
    #[serde(deserialize_with = "wire_batches")]
    pub batches: Vec<BatchProof>,
}

/// One batch as a delta carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProof {
    /// How many leaves it has.
    pub leaves: u16,
    /// The hashes of the leaves whose entries the delta does not carry.
    #[serde(deserialize_with = "wire_missing")]
    pub missing: Vec<(u16, Hash)>,
    /// The owner's signature over [`root_bytes`].
    pub signature: Signature,
}

fn wire_places<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u16, u16)>, D::Error> {
    bounded::seq(d, "proof places", ENTRIES_PER_DELTA_MAX)
}

fn wire_batches<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BatchProof>, D::Error> {
    bounded::seq(d, "proof batches", ENTRIES_PER_DELTA_MAX)
}

fn wire_missing<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u16, Hash)>, D::Error> {
    bounded::seq(d, "missing leaves", BATCH_LEAVES_DECODE_MAX)
}

/// The bytes an owner signs for a batch with root `root`.
pub fn root_bytes(owner: &NodeName, root: &Hash) -> Vec<u8> {
    signed_bytes(RecordKind::KvBatch, &(owner, root))
}

/// The hash of one entry, as a leaf.
pub fn leaf_hash(entry: &KvEntry) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0]);
    c.update(&entry.signed_bytes());
    finish(c)
}

/// The root of a batch with `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[1]);
    for leaf in leaves {
        c.update(leaf);
    }
    finish(c)
}

fn finish(c: Context) -> Hash {
    let mut out = [0; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// Signs `entries` (all of one owner, the keyring's) as batches of at most
/// [`BATCH_LEAVES_MAX`], sealing each. One signature per batch.
pub fn seal(keyring: &dyn Keyring, entries: &mut [KvEntry]) {
    for chunk in entries.chunks_mut(BATCH_LEAVES_MAX) {
        let Some(owner) = chunk.first().map(|e| e.owner.clone()) else {
            continue;
        };
        let leaves: Vec<Hash> = chunk.iter().map(leaf_hash).collect();
        let signature = keyring.sign(&root_bytes(&owner, &root(&leaves)));
        let batch = Arc::new(Batch { leaves, signature });
        for (i, e) in chunk.iter_mut().enumerate() {
            e.sealed = Some(Sealed {
                batch: batch.clone(),
                leaf: i as u16,
            });
        }
    }
}

/// The proof of `entries` (one owner's, as a delta holds them): each batch once, with the
/// hashes of its leaves not among `entries`. Entries not sealed have no place: the
/// receiver refuses a delta that holds one ([`OwnerDelta::new`](super::OwnerDelta::new)
/// leaves them out).
pub fn prove(entries: &[KvEntry]) -> DeltaProof {
    let mut batches: Vec<(Arc<Batch>, Vec<bool>)> = Vec::new();
    // By address: an owner that writes a key a round has a batch per entry, and a scan per
    // entry would make a delta of 10,000 of them cost 50 million comparisons.
    let mut index: HashMap<*const Batch, usize> = HashMap::new();
    let mut places = Vec::with_capacity(entries.len());
    for e in entries {
        let Some(sealed) = e.sealed.as_ref() else {
            continue;
        };
        let b = *index.entry(Arc::as_ptr(&sealed.batch)).or_insert_with(|| {
            let len = sealed.batch.leaves.len();
            batches.push((sealed.batch.clone(), vec![false; len]));
            batches.len() - 1
        });
        if let Some(present) = batches[b].1.get_mut(usize::from(sealed.leaf)) {
            *present = true;
        }
        places.push((b as u16, sealed.leaf));
    }
    let batches = batches
        .into_iter()
        .map(|(batch, present)| BatchProof {
            leaves: batch.leaves.len() as u16,
            missing: (0..batch.leaves.len())
                .filter(|&i| !present[i])
                .map(|i| (i as u16, batch.leaves[i]))
                .collect(),
            signature: batch.signature.clone(),
        })
        .collect();
    DeltaProof { places, batches }
}

/// Why a delta's proof could not be put together. The whole delta is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not one place per entry.
    Places,
    /// A place names a batch or leaf that does not exist, or a leaf twice.
    Place,
    /// A batch with no leaves, too many, or a leaf left without a hash.
    Batch,
}

/// A batch put together from a delta: its root, to check the signature of, and the batch
/// to keep with its entries once checked.
#[derive(Debug)]
pub struct Rebuilt {
    /// The root the signature must be over.
    pub root: Hash,
    /// The batch.
    pub batch: Arc<Batch>,
}

/// Puts together the batches of a received delta from its entries and the missing leaves.
/// Every check is on what the peer sent: indices against lengths, each leaf filled once.
pub fn rebuild(entries: &[KvEntry], proof: &DeltaProof) -> Result<Vec<Rebuilt>, Malformed> {
    if proof.places.len() != entries.len() {
        return Err(Malformed::Places);
    }
    let mut leaves: Vec<Vec<Option<Hash>>> = Vec::with_capacity(proof.batches.len());
    for b in &proof.batches {
        let len = usize::from(b.leaves);
        if len == 0 || len > BATCH_LEAVES_DECODE_MAX {
            return Err(Malformed::Batch);
        }
        let mut filled = vec![None; len];
        for (i, hash) in &b.missing {
            let slot = filled.get_mut(usize::from(*i)).ok_or(Malformed::Place)?;
            if slot.replace(*hash).is_some() {
                return Err(Malformed::Place);
            }
        }
        leaves.push(filled);
    }
    for (e, &(b, leaf)) in entries.iter().zip(&proof.places) {
        let slot = leaves
            .get_mut(usize::from(b))
            .and_then(|l| l.get_mut(usize::from(leaf)))
            .ok_or(Malformed::Place)?;
        if slot.replace(leaf_hash(e)).is_some() {
            return Err(Malformed::Place);
        }
    }
    leaves
        .into_iter()
        .zip(&proof.batches)
        .map(|(filled, b)| {
            let leaves: Vec<Hash> = filled
                .into_iter()
                .collect::<Option<_>>()
                .ok_or(Malformed::Batch)?;
            Ok(Rebuilt {
                root: root(&leaves),
                batch: Arc::new(Batch {
                    leaves,
                    signature: b.signature.clone(),
                }),
            })
        })
        .collect()
}

/// Roots whose signatures this node has checked, per owner: a batch met again (another
/// relayer, another part of it) costs its hashes only.
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
    use super::*;
    use crate::protocol::kv::OwnerDelta;
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
                sealed: None,
            })
            .collect()
    }

    fn sealed(owner: &str, count: usize, by: &str, authority: &Arc<SimAuthority>) -> Vec<KvEntry> {
        let mut es = entries(owner, count);
        seal(&*authority.keyring(&n(by)), &mut es);
        es
    }

    /// What a receiver does: rebuild the batches, check each root's signature by `owner`.
    fn verdicts(
        authority: &Arc<SimAuthority>,
        owner: &str,
        delta: &OwnerDelta,
    ) -> Result<Vec<Verdict>, Malformed> {
        let checker = authority.keyring(&n("checker"));
        for signer in ["a", "b"] {
            checker
                .learn(&n(signer), &authority.certificate(&n(signer)))
                .unwrap();
        }
        let batches = rebuild(&delta.entries, &delta.proof)?;
        Ok(batches
            .iter()
            .map(|b| {
                checker.verify(
                    &n(owner),
                    &root_bytes(&n(owner), &b.root),
                    &b.batch.signature,
                )
            })
            .collect())
    }

    #[test]
    fn a_burst_is_signed_once_per_batch_and_every_part_of_it_verifies() {
        let authority = SimAuthority::new(1);
        for count in [1, 2, 63, 64, 65, 150] {
            let es = sealed("a", count, "a", &authority);
            let whole = OwnerDelta::new(false, 0, es.clone());
            let batches = count.div_ceil(BATCH_LEAVES_MAX);
            assert_eq!(whole.proof.batches.len(), batches, "{count} entries");
            assert!(whole.proof.batches.iter().all(|b| b.missing.is_empty()));
            let v = verdicts(&authority, "a", &whole).unwrap();
            assert_eq!(v, vec![Verdict::Valid; batches], "{count} entries");
            // Any part of it, as a relayer sends what a peer lacks: the other leaves travel
            // as hashes.
            let part: Vec<KvEntry> = es.iter().skip(count / 2).step_by(3).cloned().collect();
            let part = OwnerDelta::new(false, 0, part);
            let missing: usize = part.proof.batches.iter().map(|b| b.missing.len()).sum();
            let carried = part.entries.len();
            let in_batches: usize = part
                .proof
                .batches
                .iter()
                .map(|b| usize::from(b.leaves))
                .sum();
            assert_eq!(missing + carried, in_batches, "{count} entries");
            let v = verdicts(&authority, "a", &part).unwrap();
            assert!(
                v.iter().all(|v| *v == Verdict::Valid),
                "{count} entries: {v:?}"
            );
        }
    }

    #[test]
    fn a_changed_entry_or_another_signer_fails_the_signature() {
        let authority = SimAuthority::new(2);
        let es = sealed("a", 8, "a", &authority);
        type Change = fn(&mut KvEntry);
        let changes: [(&str, Change); 4] = [
            ("value", |e| e.value = Some(b"forged".to_vec())),
            ("version", |e| e.version += 1),
            ("key", |e| e.key.push('x')),
            ("tombstone", |e| e.value = None),
        ];
        for (what, change) in changes {
            let mut delta = OwnerDelta::new(false, 0, es.clone());
            change(&mut delta.entries[5]);
            let v = verdicts(&authority, "a", &delta).unwrap();
            assert_eq!(v, vec![Verdict::Invalid], "changed {what}");
        }
        // A missing leaf's hash changed.
        let mut delta = OwnerDelta::new(false, 0, es[..4].to_vec());
        delta.proof.batches[0].missing[0].1[0] ^= 1;
        assert_eq!(
            verdicts(&authority, "a", &delta).unwrap(),
            vec![Verdict::Invalid]
        );
        // Two entries swapped in their places.
        let mut delta = OwnerDelta::new(false, 0, es.clone());
        delta.proof.places.swap(1, 2);
        assert_eq!(
            verdicts(&authority, "a", &delta).unwrap(),
            vec![Verdict::Invalid]
        );
        // Signed by another member's key in the owner's name.
        let by_b = OwnerDelta::new(false, 0, sealed("a", 4, "b", &authority));
        assert_eq!(
            verdicts(&authority, "a", &by_b).unwrap(),
            vec![Verdict::Invalid]
        );
        let good = OwnerDelta::new(false, 0, es);
        assert_eq!(
            verdicts(&authority, "a", &good).unwrap(),
            vec![Verdict::Valid]
        );
    }

    #[test]
    fn a_proof_that_does_not_hold_together_is_refused_before_any_signature_check() {
        let authority = SimAuthority::new(3);
        let es = sealed("a", 6, "a", &authority);
        let good = OwnerDelta::new(false, 0, es[..4].to_vec());
        type Break = fn(&mut DeltaProof);
        let cases: [(&str, Break, Malformed); 8] = [
            (
                "a place too few",
                |p| {
                    p.places.pop();
                },
                Malformed::Places,
            ),
            (
                "a batch out of range",
                |p| p.places[0].0 = 1,
                Malformed::Place,
            ),
            (
                "a leaf out of range",
                |p| p.places[0].1 = 6,
                Malformed::Place,
            ),
            (
                "a leaf twice",
                |p| p.places[1].1 = p.places[0].1,
                Malformed::Place,
            ),
            (
                "a missing leaf given twice",
                |p| p.batches[0].missing[1].0 = 4,
                Malformed::Place,
            ),
            (
                "a carried leaf also given",
                |p| p.batches[0].missing[0].0 = 0,
                Malformed::Place,
            ),
            (
                "a leaf with no hash",
                |p| {
                    p.batches[0].missing.pop();
                },
                Malformed::Batch,
            ),
            (
                "an empty batch",
                |p| p.batches[0].leaves = 0,
                Malformed::Batch,
            ),
        ];
        for (what, break_it, expected) in cases {
            let mut delta = good.clone();
            break_it(&mut delta.proof);
            assert_eq!(
                rebuild(&delta.entries, &delta.proof).unwrap_err(),
                expected,
                "{what}"
            );
        }
        let mut huge = good.clone();
        huge.proof.batches[0].leaves = (BATCH_LEAVES_DECODE_MAX + 1) as u16;
        assert_eq!(
            rebuild(&huge.entries, &huge.proof).unwrap_err(),
            Malformed::Batch
        );
        assert!(rebuild(&good.entries, &good.proof).is_ok());
    }

    #[test]
    fn the_root_cache_is_bounded_and_forgets_an_owner() {
        let mut cache = RootCache::default();
        let root_of = |i: usize| {
            let mut root = [0; 32];
            root[..8].copy_from_slice(&(i as u64).to_le_bytes());
            root
        };
        for i in 0..ROOTS_REMEMBERED_MAX + 10 {
            cache.insert(n(if i % 2 == 0 { "a" } else { "b" }), root_of(i));
            assert!(cache.len <= ROOTS_REMEMBERED_MAX);
        }
        let last = root_of(ROOTS_REMEMBERED_MAX + 9);
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
