//! When this node signs its own key/value writes: a batch at a time (see [`proof`]), paced so
//! that the cluster's writers together make a bounded number of batches a second, because
//! every node checks every batch's signature.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::super::kv::proof;
use super::super::kv::KvEntry;
use super::super::member::NodeName;
use super::Swim;

/// Batches a second the cluster's writers together aim to seal, up to
/// [`WRITERS_AT_FULL_BUDGET`] writers. Every node checks each one (~60 µs for a batch of a
/// few entries, criterion `check_kv_delta_64` ~75 µs for 64), so this bounds what other
/// members' writes cost a node: ~10 ms of CPU a second. Up to 32 writers at the default
/// 200 ms round seal every round; beyond, each seals less often and its batches grow.
const BATCHES_PER_SEC_MAX: u32 = 160;

/// Beyond this many writers the budget shrinks as writers grow (`160 · 32 / writers` a
/// second): a node among many writers also receives more entries, each hashed and merged, so
/// the checks must take less. 128 nodes writing 5,000 entries a second on 2 cores: 640
/// batches a second to check on every node saturated the machine and delivered 830-1,160
/// writes a second; 160 a second, 1,800-2,600; this budget (40 a second, 80 with each writer
/// filling a 64-entry batch every 1.6 s) is measured in BENCHMARKS.md.
const WRITERS_AT_FULL_BUDGET: u32 = 32;

/// How long an owner whose batch this node checked still counts as writing, in its own
/// sealing intervals (at least [`WRITERS_WINDOW_MIN`]): long enough to see each writer seal
/// at least once.
const WRITERS_WINDOW_INTERVALS: u32 = 3;
const WRITERS_WINDOW_MIN: Duration = Duration::from_secs(2);

/// This node's writes waiting to be signed, and how often it signs.
#[derive(Debug)]
pub(super) struct Sealing {
    /// Keys written since the last seal.
    unsealed: BTreeSet<String>,
    /// When the last of them was written.
    written_at: Option<Instant>,
    /// When they were last signed.
    sealed_at: Option<Instant>,
    /// At most one seal this often under a burst (a full batch, a quiet spell or a leave
    /// excepted).
    every: Duration,
    /// Other owners with a batch checked here lately: when the last one was.
    writers: BTreeMap<NodeName, Instant>,
}

impl Sealing {
    pub(super) fn new(round: Duration) -> Self {
        Self {
            unsealed: BTreeSet::new(),
            written_at: None,
            sealed_at: None,
            every: round,
            writers: BTreeMap::new(),
        }
    }

    /// A key of ours was written at `now`: it leaves with the next seal.
    pub(super) fn written(&mut self, key: &str, now: Instant) {
        if !self.unsealed.contains(key) {
            self.unsealed.insert(key.to_string());
        }
        self.written_at = Some(now);
    }

    /// When a key written at `now` may be signed at the earliest, and so leave: at once, or
    /// at the next seal the pacing allows. (It is signed then if a peer asks, or later.)
    pub(super) fn leaves_at(&self, now: Instant) -> Instant {
        self.sealed_at.map_or(now, |at| (at + self.every).max(now))
    }

    /// Keys written since the last seal: not signed yet, so they have not left this node.
    pub(super) fn pending(&self) -> impl Iterator<Item = &str> {
        self.unsealed.iter().map(String::as_str)
    }

    /// A batch of `owner`'s was checked here for the first time. Only signed batches count,
    /// so a member can make itself count as one writer, never as others.
    pub(super) fn batch_seen(&mut self, owner: &NodeName, now: Instant) {
        match self.writers.get_mut(owner) {
            Some(at) => *at = now,
            None => {
                self.writers.insert(owner.clone(), now);
            }
        }
    }

    /// Owners who wrote lately, this node included (it is writing when it seals).
    fn writers(&self) -> usize {
        self.writers.len() + 1
    }

    /// Takes the keys to sign now, or none if they wait for a later seal: under a burst,
    /// at most once per `every` unless `now_anyway` or a full batch waits. A burst's last
    /// writes go a round after it ends, not up to `every` later.
    fn take_due(&mut self, now: Instant, now_anyway: bool, round: Duration) -> BTreeSet<String> {
        if self.unsealed.is_empty() {
            return BTreeSet::new();
        }
        let recently = self.sealed_at.is_some_and(|at| now < at + self.every);
        let writing = self.written_at.is_some_and(|at| now < at + round);
        if recently && writing && !now_anyway && self.unsealed.len() < proof::BATCH_LEAVES_MAX {
            return BTreeSet::new();
        }
        self.sealed_at = Some(now);
        self.pace(now, round);
        std::mem::take(&mut self.unsealed)
    }

    /// Sets the interval between seals from the writers seen lately: one round, or long
    /// enough that all of them together seal [`BATCHES_PER_SEC_MAX`] batches a second
    /// (fewer beyond [`WRITERS_AT_FULL_BUDGET`] writers).
    fn pace(&mut self, now: Instant, round: Duration) {
        let window = (self.every * WRITERS_WINDOW_INTERVALS).max(WRITERS_WINDOW_MIN);
        self.writers.retain(|_, at| now < *at + window);
        let writers = u32::try_from(self.writers()).unwrap_or(u32::MAX);
        let budget = (BATCHES_PER_SEC_MAX * WRITERS_AT_FULL_BUDGET
            / writers.max(WRITERS_AT_FULL_BUDGET))
        .max(1);
        let spread = Duration::from_secs(1) * writers / budget;
        self.every = round.max(spread);
    }
}

impl Swim {
    /// Signs what this node wrote since it last sent key/value data, one signature per
    /// batch (see [`proof`]): called before any entry of ours can leave. Under a burst of
    /// writes, at most once per key/value round, or less often when many members write
    /// ([`BATCHES_PER_SEC_MAX`]), unless `now_anyway` or a full batch waits: every receiver
    /// checks one signature per batch, and peers ask for news many times a round, so
    /// sealing at each ask would make batches of a few entries. What waits goes with the
    /// next round's exchanges. A write after a quiet spell is sealed at the first ask.
    /// (32 nodes, 5,000 writes/s: sealing at each ask cost 61 ms of CPU per node per
    /// second, at most twice a round 51 ms, once a round 35 ms; lag p99 the same, 0.57 s.)
    pub(super) fn seal_own_entries(&mut self, now: Instant, now_anyway: bool) {
        let keys = self
            .sealing
            .take_due(now, now_anyway, self.config.kv_sync_interval);
        if keys.is_empty() {
            return;
        }
        let mut entries: Vec<KvEntry> = keys
            .iter()
            .filter_map(|k| self.kv.entry(&self.me.name, k))
            .filter(|e| e.sealed.is_none())
            .collect();
        proof::seal(self.keyring.as_ref(), &mut entries);
        for e in entries {
            if let Some(sealed) = e.sealed {
                self.kv.set_sealed(&self.me.name, &e.key, e.version, sealed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: usize) -> NodeName {
        NodeName::new(format!("w{i:03}")).unwrap()
    }

    #[test]
    fn few_writers_seal_every_round_many_seal_less_often() {
        let round = Duration::from_millis(200);
        let t0 = Instant::now();
        let mut s = Sealing::new(round);
        assert_eq!(s.leaves_at(t0), t0, "never sealed: at once");
        for i in 0..31 {
            s.batch_seen(&name(i), t0);
        }
        s.written("a", t0);
        assert_eq!(s.take_due(t0, false, round).len(), 1);
        assert_eq!(s.every, round, "32 writers: one seal a round");

        for i in 31..127 {
            s.batch_seen(&name(i), t0);
        }
        let t1 = t0 + round;
        s.written("b", t1);
        assert_eq!(s.take_due(t1, false, round).len(), 1);
        assert_eq!(s.writers(), 128);
        assert_eq!(
            s.every,
            Duration::from_millis(3200),
            "128 writers: 40 batches/s"
        );
        // What pushback counts from: a write now may leave only at the next seal.
        assert_eq!(s.leaves_at(t1), t1 + Duration::from_millis(3200));
        let past = t1 + Duration::from_secs(4);
        assert_eq!(s.leaves_at(past), past);

        // Within the longer interval a write waits while writes go on, unless a batch is
        // full or the node leaves.
        let t2 = t1 + round;
        s.written("c", t2);
        assert!(s.take_due(t2, false, round).is_empty());
        assert!(s.take_due(t2 + round / 2, false, round).is_empty());
        assert_eq!(s.take_due(t2, true, round).len(), 1);
        for k in 0..proof::BATCH_LEAVES_MAX {
            s.written(&format!("k{k}"), t2);
        }
        assert_eq!(
            s.take_due(t1 + round * 2, false, round).len(),
            proof::BATCH_LEAVES_MAX
        );

        // When the writes stop, what waits goes a round after the last one.
        let t3 = t2 + round * 2;
        s.written("e", t3);
        assert!(s.take_due(t3 + round / 2, false, round).is_empty());
        assert_eq!(s.take_due(t3 + round, false, round).len(), 1);

        // Writers not seen for three intervals no longer count.
        let later = t1 + Duration::from_secs(10);
        s.batch_seen(&name(0), later);
        s.written("d", later);
        assert_eq!(s.take_due(later, false, round).len(), 1);
        assert_eq!(s.writers(), 2);
        assert_eq!(s.every, round);
    }

    #[test]
    fn a_key_written_twice_before_a_seal_is_signed_once() {
        let round = Duration::from_millis(200);
        let mut s = Sealing::new(round);
        let now = Instant::now();
        s.written("a", now);
        s.written("a", now);
        assert_eq!(s.take_due(now, false, round).len(), 1);
    }
}
