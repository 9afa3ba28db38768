//! Key/value state owned per node, replicated to every member.
//!
//! Each owner's entries carry versions that only grow: a write takes the owner's next
//! version, and a node starts its counter at a floor its runtime gives (wall-clock
//! microseconds), so writes after a restart that lost everything still win over old ones.
//! Deletes are tombstones, collected after a grace period.
//!
//! Anti-entropy reconciles by digest, Scuttlebutt style:
//!
//! ```text
//!   digest per owner: (max_version, fingerprint = xor of h(key, version), gc_floor)
//!   equal digests                 -> nothing to send
//!   theirs.max < ours.max         -> our entries with version > theirs.max
//!   equal max, fingerprints differ -> all our entries of that owner (a hole from gossip loss)
//!   theirs.max < ours.gc_floor    -> all our entries, marked as a reset: they were away
//!                                    longer than the tombstone grace and must drop the rest
//! ```
//!
//! So an exchange costs what differs, per owner, not the cluster's whole state. The same
//! digests drive the key/value rounds that spread new entries ([`KvStore::wants`] names the
//! owners to ask for), and a per-owner version index reads "entries above v" as a range.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};

use super::bounded;
use super::codec::ENTRIES_PER_DELTA_MAX;
use super::member::{NameMap, NodeName};
use super::signing::{signed_bytes, RecordKind};

pub mod proof;

pub use proof::{DeltaProof, Sealed};

/// The highest `value_len_max` a configuration may set (4 MiB).
pub const VALUE_LEN_MAX_CAP: usize = 4 << 20;

/// The highest `key_len_max` a configuration may set.
pub const KEY_LEN_MAX_CAP: usize = 4096;

/// Limits on key/value data, enforced on write and on receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KvLimits {
    /// Longest key in bytes (default 256).
    pub key_len_max: usize,
    /// Largest value in bytes (default 64 KiB, at most [`VALUE_LEN_MAX_CAP`]).
    pub value_len_max: usize,
    /// Most keys one owner may hold, deleted ones still held as tombstones included
    /// (default 10,000).
    pub keys_per_node_max: usize,
    /// Most key+value bytes one owner may hold, the keys of tombstones included
    /// (default 16 MiB).
    pub bytes_per_node_max: usize,
    /// Most owners held (default 16,384).
    pub owners_max: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            key_len_max: 256,
            value_len_max: 64 * 1024,
            keys_per_node_max: 10_000,
            bytes_per_node_max: 16 * 1024 * 1024,
            owners_max: 16_384,
        }
    }
}

/// Why a write or a received entry was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key is empty.
    #[error("key is empty")]
    EmptyKey,
    /// The key is over the limit.
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is over the limit.
    #[error("value is {len} bytes; the limit is {max}")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The owner would hold more keys than allowed (tombstones count until collected).
    #[error("owner {owner} would hold more than {max} keys (kv.keys_per_node_max, deleted keys included until collected)")]
    TooManyKeys {
        /// Whose keys.
        owner: NodeName,
        /// The limit.
        max: usize,
    },
    /// The owner would hold more bytes than allowed.
    #[error(
        "owner {owner} would hold more than {max} bytes of keys and values (kv.bytes_per_node_max)"
    )]
    TooManyBytes {
        /// Whose keys.
        owner: NodeName,
        /// The limit.
        max: usize,
    },
    /// Too many owners.
    #[error("more than {0} owners (kv.owners_max)")]
    TooManyOwners(usize),
}

/// One entry as it travels: a value, or a tombstone (`value: None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The owning node.
    pub owner: NodeName,
    /// The key.
    #[serde(deserialize_with = "wire_key")]
    pub key: String,
    /// The owner's version of it.
    #[serde(deserialize_with = "wire_version")]
    pub version: u64,
    /// The value; `None` for a delete.
    #[serde(deserialize_with = "wire_value")]
    pub value: Option<Vec<u8>>,
    /// Its place in a batch its owner signed (see [`proof`]), once checked (or, for this
    /// node's own entries, once signed). Travels in the delta's [`DeltaProof`].
    #[serde(skip)]
    pub sealed: Option<Sealed>,
}

impl KvEntry {
    /// The bytes its leaf in the owner's signed batch is hashed from: owner, key, version
    /// and value.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(
            RecordKind::KvEntry,
            &(&self.owner, &self.key, self.version, &self.value),
        )
    }
}

/// An owner's summary for anti-entropy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerDigest {
    /// The owner.
    pub owner: NodeName,
    /// Highest version held.
    #[serde(deserialize_with = "wire_max_version")]
    pub max_version: u64,
    /// Xor of a hash of every (key, version) held, tombstones included.
    pub fingerprint: u64,
    /// Tombstones up to this version have been collected here.
    #[serde(deserialize_with = "wire_gc_floor")]
    pub gc_floor: u64,
}

/// Entries one side sends the other, per owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerDelta {
    /// Set when the receiver must first drop every entry of the owner not in `entries` with
    /// a version at or below `gc_floor` (it was away past the tombstone grace).
    pub reset: bool,
    /// The sender's collection floor for the owner.
    #[serde(deserialize_with = "wire_gc_floor")]
    pub gc_floor: u64,
    /// The entries.
    #[serde(deserialize_with = "wire_entries")]
    pub entries: Vec<KvEntry>,
    /// That their owner wrote them: the batches they belong to.
    pub proof: DeltaProof,
}

impl OwnerDelta {
    /// A delta of `entries` with their proof. An entry not sealed is left out: nothing
    /// could prove it.
    pub fn new(reset: bool, gc_floor: u64, mut entries: Vec<KvEntry>) -> Self {
        entries.retain(|e| e.sealed.is_some());
        OwnerDelta {
            reset,
            gc_floor,
            proof: proof::prove(&entries),
            entries,
        }
    }
}

// Bounds of the wire fields, applied as they are decoded (see `protocol::bounded`): the
// configurable limits are checked on receipt; these are the most any configuration allows.

fn wire_key<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    bounded::string(d, "key", KEY_LEN_MAX_CAP)
}

fn wire_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    bounded::option_bytes(d, "value", VALUE_LEN_MAX_CAP)
}

fn wire_version<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded::counter(d, "version")
}

fn wire_max_version<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded::counter(d, "max version")
}

fn wire_gc_floor<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    bounded::counter(d, "gc floor")
}

fn wire_entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KvEntry>, D::Error> {
    bounded::seq(d, "entries", ENTRIES_PER_DELTA_MAX)
}

/// A batch's share of a delta's size, besides its missing leaves: the signature, the
/// leaf count and framing (see [`proof`]).
const PROOF_BATCH_BYTES: usize = 72;

/// One missing leaf in a delta: its index and hash.
const PROOF_LEAF_BYTES: usize = 34;

#[derive(Debug, Clone)]
struct Slot {
    version: u64,
    value: Option<Vec<u8>>,
    /// When the tombstone was made or learned here, for collection.
    deleted_at: Option<Instant>,
    /// The owner's batch, so the entry can be passed on as it signed it; `None` for an
    /// entry of this node's not sealed yet.
    sealed: Option<Sealed>,
}

#[derive(Debug, Default)]
struct Owner {
    entries: BTreeMap<String, Slot>,
    /// (version, key) for every entry held: a delta above a version is a range, not a scan
    /// of the owner's entries. Keyed by both, because a peer can send two keys at one
    /// version: an index by version alone would keep one and lose the other, and the
    /// replicas would never agree again.
    by_version: BTreeSet<(u64, String)>,
    max_version: u64,
    fingerprint: u64,
    gc_floor: u64,
    live_keys: usize,
    live_bytes: usize,
    /// Key and value bytes of every entry held, tombstones' keys included: what the byte
    /// quota counts (`entries.len()` is what the key quota counts).
    held_bytes: usize,
}

impl Owner {
    /// Forgets one entry, keeping every figure in step.
    fn remove(&mut self, key: &str) -> Option<Slot> {
        let slot = self.entries.remove(key)?;
        self.by_version.remove(&(slot.version, key.to_owned()));
        self.fingerprint ^= entry_hash(key, slot.version);
        self.held_bytes -= key.len() + slot.value.as_ref().map_or(0, Vec::len);
        if let Some(v) = &slot.value {
            self.live_keys -= 1;
            self.live_bytes -= key.len() + v.len();
        }
        Some(slot)
    }
}

fn entry_hash(key: &str, version: u64) -> u64 {
    let mut h = super::member::NameHasher::default();
    key.hash(&mut h);
    version.hash(&mut h);
    h.finish()
}

/// What applying a received entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It was new and is now held.
    Changed,
    /// It was not newer than what is held (or was collected already).
    Stale,
}

/// Key and value bytes after which a page of a listing ends: a listing of a large store is
/// copied on the node's driver a page at a time, and 10,000 entries of 64 KiB would be 625 MiB.
pub const PAGE_BYTES: usize = 4 << 20;

/// Whether a page of `len` entries holding `bytes` of keys and values, asked for `limit`
/// entries, is full: more may follow it.
pub fn page_is_full(len: usize, bytes: usize, limit: usize) -> bool {
    len >= limit || bytes >= PAGE_BYTES
}

/// Every owner's entries.
#[derive(Debug)]
pub struct KvStore {
    limits: KvLimits,
    owners: NameMap<Owner>,
}

impl KvStore {
    /// An empty store.
    pub fn new(limits: KvLimits) -> Self {
        Self {
            limits,
            owners: NameMap::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &KvLimits {
        &self.limits
    }

    /// Checks key and value sizes.
    pub fn check(&self, key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(KvError::EmptyKey);
        }
        if key.len() > self.limits.key_len_max {
            return Err(KvError::KeyTooLong {
                len: key.len(),
                max: self.limits.key_len_max,
            });
        }
        if let Some(v) = value {
            if v.len() > self.limits.value_len_max {
                return Err(KvError::ValueTooLarge {
                    len: v.len(),
                    max: self.limits.value_len_max,
                });
            }
        }
        Ok(())
    }

    /// A live value.
    pub fn get(&self, owner: &NodeName, key: &str) -> Option<&[u8]> {
        self.owners.get(owner)?.entries.get(key)?.value.as_deref()
    }

    /// The version held for `(owner, key)`, tombstones included.
    pub fn version(&self, owner: &NodeName, key: &str) -> Option<u64> {
        self.owners.get(owner)?.entries.get(key).map(|s| s.version)
    }

    /// Highest version held for `owner`.
    pub fn max_version(&self, owner: &NodeName) -> u64 {
        self.owners.get(owner).map_or(0, |o| o.max_version)
    }

    /// Every entry `owner` has here, tombstones (`None`) included, by key.
    pub fn entries_of(&self, owner: &NodeName) -> Vec<(String, Option<Vec<u8>>)> {
        self.owners.get(owner).map_or_else(Vec::new, |o| {
            o.entries
                .iter()
                .map(|(k, s)| (k.clone(), s.value.clone()))
                .collect()
        })
    }

    /// Every live entry, sorted by owner then key.
    pub fn iter(&self) -> Vec<(&NodeName, &str, &[u8], u64)> {
        let mut owners: Vec<(&NodeName, &Owner)> = self.owners.iter().collect();
        owners.sort_by(|a, b| a.0.cmp(b.0));
        owners
            .into_iter()
            .flat_map(|(name, o)| {
                o.entries.iter().filter_map(move |(k, s)| {
                    s.value.as_deref().map(|v| (name, k.as_str(), v, s.version))
                })
            })
            .collect()
    }

    /// At most `limit` live entries after `after` (an owner and key), in the order of
    /// [`iter`](Self::iter): one page of a listing. Costs the owners' names and the page,
    /// never a copy of the whole store. The page also ends once its keys and values reach
    /// [`PAGE_BYTES`], so it holds at most that plus one entry, and always at least one
    /// entry when any is left; see [`page_is_full`].
    pub fn page(
        &self,
        after: Option<(&NodeName, &str)>,
        limit: usize,
    ) -> Vec<(&NodeName, &str, &[u8], u64)> {
        use std::ops::Bound;
        let mut owners: Vec<(&NodeName, &Owner)> = self
            .owners
            .iter()
            .filter(|(name, _)| after.is_none_or(|(first, _)| *name >= first))
            .collect();
        owners.sort_by(|a, b| a.0.cmp(b.0));
        let mut page = Vec::new();
        let mut bytes = 0usize;
        if limit == 0 {
            return page;
        }
        for (name, owner) in owners {
            let start = match after {
                Some((first, key)) if first == name => Bound::Excluded(key),
                _ => Bound::Unbounded,
            };
            let live = owner
                .entries
                .range::<str, _>((start, Bound::Unbounded))
                .filter_map(|(k, s)| s.value.as_deref().map(|v| (name, k.as_str(), v, s.version)));
            for entry in live {
                bytes = bytes.saturating_add(entry.1.len() + entry.2.len());
                page.push(entry);
                if page_is_full(page.len(), bytes, limit) {
                    return page;
                }
            }
        }
        page
    }

    /// Live keys and their key+value bytes, over every owner.
    pub fn totals(&self) -> (usize, usize) {
        self.owners
            .values()
            .fold((0, 0), |(k, b), o| (k + o.live_keys, b + o.live_bytes))
    }

    /// `owner`'s entry for `key` as it travels, tombstones included.
    pub fn entry(&self, owner: &NodeName, key: &str) -> Option<KvEntry> {
        let slot = self.owners.get(owner)?.entries.get(key)?;
        Some(KvEntry {
            owner: owner.clone(),
            key: key.to_owned(),
            version: slot.version,
            value: slot.value.clone(),
            sealed: slot.sealed.clone(),
        })
    }

    /// Seals `owner`'s entry for `key` at `version` (an entry this node wrote, now signed in
    /// a batch); nothing if the entry held is another version.
    pub fn set_sealed(&mut self, owner: &NodeName, key: &str, version: u64, sealed: Sealed) {
        let slot = self
            .owners
            .get_mut(owner)
            .and_then(|o| o.entries.get_mut(key));
        if let Some(slot) = slot.filter(|s| s.version == version) {
            slot.sealed = Some(sealed);
        }
    }

    /// Whether applying `e` could change anything: it is newer than the entry held, and not
    /// a collected tombstone's key at or below the owner's floor. Only such entries are worth
    /// checking the signature of.
    pub fn would_change(&self, e: &KvEntry) -> bool {
        let Some(owner) = self.owners.get(&e.owner) else {
            return true;
        };
        match owner.entries.get(&e.key) {
            Some(held) => held.version < e.version,
            None => e.version > owner.gc_floor,
        }
    }

    /// Applies `e` if it is newer than what is held and within the limits. Deletes count
    /// against the owner's quotas like values, until their tombstones are collected.
    pub fn apply(&mut self, now: Instant, e: &KvEntry) -> Result<Applied, KvError> {
        self.check(&e.key, e.value.as_deref())?;
        if !self.owners.contains_key(&e.owner) && self.owners.len() >= self.limits.owners_max {
            return Err(KvError::TooManyOwners(self.limits.owners_max));
        }
        let limits = &self.limits;
        let owner = self.owners.entry(e.owner.clone()).or_default();
        let held = owner.entries.get(&e.key);
        if held.is_some_and(|s| s.version >= e.version) {
            return Ok(Applied::Stale);
        }
        if held.is_none() && e.version <= owner.gc_floor {
            return Ok(Applied::Stale); // collected tombstone: do not resurrect
        }
        let old_bytes = held.map(|s| e.key.len() + s.value.as_ref().map_or(0, Vec::len));
        let new_bytes = e.key.len() + e.value.as_ref().map_or(0, Vec::len);
        let keys_after = owner.entries.len() + usize::from(held.is_none());
        let bytes_after = owner.held_bytes - old_bytes.unwrap_or(0) + new_bytes;
        // A write that shrinks what the owner holds is always let through, so an owner over
        // a quota that was lowered can still delete.
        if keys_after > limits.keys_per_node_max && held.is_none() {
            let err = KvError::TooManyKeys {
                owner: e.owner.clone(),
                max: limits.keys_per_node_max,
            };
            self.drop_if_empty(&e.owner);
            return Err(err);
        }
        if bytes_after > limits.bytes_per_node_max && Some(new_bytes) > old_bytes {
            let err = KvError::TooManyBytes {
                owner: e.owner.clone(),
                max: limits.bytes_per_node_max,
            };
            self.drop_if_empty(&e.owner);
            return Err(err);
        }
        owner.remove(&e.key);
        owner.fingerprint ^= entry_hash(&e.key, e.version);
        owner.by_version.insert((e.version, e.key.clone()));
        owner.held_bytes += new_bytes;
        if let Some(v) = &e.value {
            owner.live_keys += 1;
            owner.live_bytes += e.key.len() + v.len();
        }
        owner.max_version = owner.max_version.max(e.version);
        let deleted_at = e.value.is_none().then_some(now);
        owner.entries.insert(
            e.key.clone(),
            Slot {
                version: e.version,
                value: e.value.clone(),
                deleted_at,
                sealed: e.sealed.clone(),
            },
        );
        Ok(Applied::Changed)
    }

    /// Drops an owner that a refused first write left with nothing.
    fn drop_if_empty(&mut self, name: &NodeName) {
        if self
            .owners
            .get(name)
            .is_some_and(|o| o.entries.is_empty() && o.gc_floor == 0)
        {
            self.owners.remove(name);
        }
    }

    /// Checks that every owner is within the quotas and its figures agree with its entries
    /// (for the fuzz targets and property tests).
    #[doc(hidden)]
    pub fn check_quotas(&self) -> Result<(), String> {
        if self.owners.len() > self.limits.owners_max {
            return Err(format!("{} owners", self.owners.len()));
        }
        for (name, o) in self.owners.iter() {
            let held: usize = o
                .entries
                .iter()
                .map(|(k, s)| k.len() + s.value.as_ref().map_or(0, Vec::len))
                .sum();
            let live = o.entries.values().filter(|s| s.value.is_some()).count();
            let index_agrees = o.by_version.len() == o.entries.len()
                && o.by_version
                    .iter()
                    .all(|(v, k)| o.entries.get(k).is_some_and(|s| s.version == *v));
            let fingerprint = o
                .entries
                .iter()
                .fold(0, |f, (k, s)| f ^ entry_hash(k, s.version));
            if o.entries.len() > self.limits.keys_per_node_max
                || held > self.limits.bytes_per_node_max
                || held != o.held_bytes
                || live != o.live_keys
                || !index_agrees
                || fingerprint != o.fingerprint
            {
                return Err(format!("owner {name} out of its quotas or out of step"));
            }
        }
        Ok(())
    }

    /// Whether anything of `owner` is held.
    pub fn holds_owner(&self, owner: &NodeName) -> bool {
        self.owners.contains_key(owner)
    }

    /// Owners held.
    pub fn owner_count(&self) -> usize {
        self.owners.len()
    }

    /// Forgets tombstones older than `grace`, raising each owner's collection floor.
    pub fn collect_tombstones(&mut self, now: Instant, grace: Duration) -> usize {
        let mut collected = 0;
        for owner in self.owners.values_mut() {
            let expired: Vec<(String, u64)> = owner
                .entries
                .iter()
                .filter(|(_, s)| s.deleted_at.is_some_and(|t| now.duration_since(t) >= grace))
                .map(|(k, s)| (k.clone(), s.version))
                .collect();
            for (key, version) in expired {
                owner.remove(&key);
                owner.gc_floor = owner.gc_floor.max(version);
                collected += 1;
            }
        }
        collected
    }

    /// Drops every entry of `owner` (it was reaped from membership).
    pub fn remove_owner(&mut self, owner: &NodeName) {
        self.owners.remove(owner);
    }

    /// The digest of every owner held.
    pub fn digest(&self) -> Vec<OwnerDigest> {
        let mut d: Vec<OwnerDigest> = self
            .owners
            .iter()
            .map(|(name, o)| OwnerDigest {
                owner: name.clone(),
                max_version: o.max_version,
                fingerprint: o.fingerprint,
                gc_floor: o.gc_floor,
            })
            .collect();
        d.sort_by(|a, b| a.owner.cmp(&b.owner));
        d
    }

    /// Our digest of the owners where the holder of `theirs` is ahead of us or holds a
    /// different set at the same version (all zeros for an owner we lack): what to ask
    /// them for, answered by [`delta_for_listed`](Self::delta_for_listed).
    pub fn wants(&self, theirs: &[OwnerDigest]) -> Vec<OwnerDigest> {
        theirs
            .iter()
            .filter_map(|t| match self.owners.get(&t.owner) {
                None => Some(OwnerDigest {
                    owner: t.owner.clone(),
                    max_version: 0,
                    fingerprint: 0,
                    gc_floor: 0,
                }),
                Some(o)
                    if t.max_version > o.max_version
                        || (t.max_version == o.max_version && t.fingerprint != o.fingerprint) =>
                {
                    Some(OwnerDigest {
                        owner: t.owner.clone(),
                        max_version: o.max_version,
                        fingerprint: o.fingerprint,
                        gc_floor: o.gc_floor,
                    })
                }
                Some(_) => None,
            })
            .collect()
    }

    /// What the holder of `theirs` lacks from us, at most about `budget` bytes of values.
    /// Owners missing from `theirs` are sent whole.
    pub fn delta_for(&self, theirs: &[OwnerDigest], budget: usize) -> Vec<OwnerDelta> {
        self.delta(theirs, budget, true)
    }

    /// As [`delta_for`](Self::delta_for), but only for the owners `wants` lists.
    pub fn delta_for_listed(&self, wants: &[OwnerDigest], budget: usize) -> Vec<OwnerDelta> {
        self.delta(wants, budget, false)
    }

    fn delta(&self, theirs: &[OwnerDigest], budget: usize, unlisted: bool) -> Vec<OwnerDelta> {
        let known: NameMap<&OwnerDigest> = theirs.iter().map(|d| (d.owner.clone(), d)).collect();
        let mut owners: Vec<(&NodeName, &Owner)> = self
            .owners
            .iter()
            .filter(|(name, _)| unlisted || known.contains_key(*name))
            .collect();
        owners.sort_by(|a, b| a.0.cmp(b.0));
        let mut left = budget;
        let mut out = Vec::new();
        for (name, o) in owners {
            let (reset, since) = match known.get(name) {
                None => (false, 0),
                Some(t) if t.max_version == o.max_version && t.fingerprint == o.fingerprint => {
                    continue
                }
                Some(t) if t.max_version < o.gc_floor => (true, 0),
                Some(t) if t.max_version < o.max_version => (false, t.max_version),
                Some(t) if t.max_version == o.max_version => (false, 0),
                Some(_) => continue, // they are ahead: they will send to us
            };
            let mut entries = Vec::new();
            let mut complete = true;
            // Batches already in this delta: a batch's proof is counted in full (signature
            // and every other leaf's hash) with its first entry, and each further entry of
            // it takes back the hash its leaf no longer needs. So the budget bounds the
            // proof too: an owner whose surviving entries each sit in a batch of 64 with
            // the rest overwritten sends ~2 KiB of hashes per entry.
            let mut batches = std::collections::HashSet::new();
            // Oldest first, so an exchange cut short by the budget still leaves a prefix that
            // the next exchange continues from.
            let Some(first) = since.checked_add(1) else {
                continue; // nothing can be above the largest version
            };
            for (version, key) in o.by_version.range((first, String::new())..) {
                let version = *version;
                let slot = &o.entries[key];
                let Some(sealed) = &slot.sealed else {
                    // This node's own writes since the last seal: the newest, so the rest of
                    // the range is unsealed too. They go once sealed.
                    complete = false;
                    break;
                };
                let entry_bytes = key.len() + slot.value.as_ref().map_or(0, Vec::len) + 16;
                let ptr = std::sync::Arc::as_ptr(&sealed.batch);
                let (size, refund) = if batches.contains(&ptr) {
                    (entry_bytes, PROOF_LEAF_BYTES)
                } else {
                    let leaves = sealed.batch.leaves.len();
                    let proof = PROOF_BATCH_BYTES + PROOF_LEAF_BYTES * leaves.saturating_sub(1);
                    (entry_bytes + proof, 0)
                };
                let room = left.saturating_add(refund);
                if size > room && (!entries.is_empty() || !out.is_empty()) {
                    complete = false;
                    break;
                }
                left = room.saturating_sub(size);
                batches.insert(ptr);
                entries.push(KvEntry {
                    owner: name.clone(),
                    key: key.clone(),
                    version,
                    value: slot.value.clone(),
                    sealed: slot.sealed.clone(),
                });
            }
            // A reset is only safe with the owner's full set in hand.
            out.push(OwnerDelta::new(reset && complete, o.gc_floor, entries));
            if left == 0 {
                break;
            }
        }
        out
    }

    /// Applies a peer's delta; returns the entries that changed here.
    pub fn apply_delta(&mut self, now: Instant, delta: Vec<OwnerDelta>) -> (Vec<KvEntry>, usize) {
        let mut changed = Vec::new();
        let mut refused = 0;
        for d in delta {
            let Some(owner_name) = d.entries.first().map(|e| e.owner.clone()) else {
                continue;
            };
            if d.reset {
                if let Some(o) = self.owners.get_mut(&owner_name) {
                    let keep: std::collections::BTreeSet<&str> =
                        d.entries.iter().map(|e| e.key.as_str()).collect();
                    let drop: Vec<String> = o
                        .entries
                        .iter()
                        .filter(|(k, s)| s.version <= d.gc_floor && !keep.contains(k.as_str()))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in drop {
                        let Some(slot) = o.remove(&key) else { continue };
                        if slot.value.is_some() {
                            changed.push(KvEntry {
                                owner: owner_name.clone(),
                                key,
                                version: slot.version,
                                value: None,
                                sealed: slot.sealed,
                            });
                        }
                    }
                    o.gc_floor = o.gc_floor.max(d.gc_floor);
                }
            }
            for e in d.entries {
                if e.owner != owner_name {
                    refused += 1;
                    continue;
                }
                match self.apply(now, &e) {
                    Ok(Applied::Changed) => changed.push(e),
                    Ok(Applied::Stale) => {}
                    Err(_) => refused += 1,
                }
            }
        }
        (changed, refused)
    }
}

#[cfg(test)]
mod tests;
