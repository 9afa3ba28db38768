//! Keeping a ring in step with membership.
//!
//! ```text
//!              Alive                 Suspect                Dead / Left
//!   absent --> on ring (weight)      stays absent           stays absent
//!   on ring -> stays (new weight)    STAYS, unchanged       removed
//! ```
//!
//! A suspicion is often wrong (a slow network, a paused process) and is refuted within seconds;
//! moving a suspect's keys away and back would cost two hand-offs for nothing, so only a
//! verdict (Dead or Left) takes a member off the ring, and only Alive puts one on. A suspect not
//! yet on the ring is not added: nothing says it has ever been reachable.
//!
//! Every change builds one new [`Ring`] behind an [`Arc`], so readers hold a snapshot and never
//! rebuild or lock; a batch ([`RingTracker::apply_many`]) builds at most once.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::debug;

use super::hashring::{Points, Ring, VNODES_PER_MEMBER_DEFAULT};
use super::weight::clamp_weight;
use crate::protocol::{NodeName, State};

/// How the ring's member set changed, each list in name order. Net of a whole batch: a member
/// that went and came back within one [`RingTracker::apply_many`] is in no list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingChange {
    /// Members put on the ring.
    pub added: Vec<NodeName>,
    /// Members taken off the ring.
    pub removed: Vec<NodeName>,
    /// Members still on the ring with a different weight (their share of keys moved too).
    pub reweighted: Vec<NodeName>,
}

impl RingChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.reweighted.is_empty()
    }
}

/// Follows membership updates and keeps a [`Ring`] of the members that should own keys.
#[derive(Clone, Debug)]
pub struct RingTracker {
    /// Who is on the ring, with clamped weights; the ring is always built from exactly this.
    members: BTreeMap<NodeName, u32>,
    ring: Arc<Ring>,
    /// A retired ring's point list, for the next rebuild to fill (see [`RingTracker::recycle`]).
    spare: Points,
}

impl RingTracker {
    /// An empty tracker whose rings place `vnodes_per_member` points per unit of weight.
    pub fn new(vnodes_per_member: u32) -> Self {
        RingTracker {
            members: BTreeMap::new(),
            ring: Arc::new(Ring::new(vnodes_per_member)),
            spare: Points::new(),
        }
    }

    /// Hands back a ring this tracker built earlier and no longer holds. If nobody else holds
    /// it either, its point list is kept to build the next ring in, so a node rebuilding its
    /// ring over and over (many members joining) reuses two lists instead of mapping fresh
    /// memory each time. The price: the spare list stays allocated between changes, and a
    /// list is allocated with room for a quarter more points, so the ring's points take up
    /// to two and a half times their size (16 bytes per point: 1 MB per list at 128 members
    /// of weight 1).
    pub fn recycle(&mut self, ring: Arc<Ring>) {
        // The current ring never unwraps: this tracker holds it too.
        if let Ok(ring) = Arc::try_unwrap(ring) {
            self.spare = ring.into_spare();
        }
    }

    /// The current ring. Clone the `Arc` to keep a snapshot that later changes do not touch.
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// Takes one member's new state (and weight, used when Alive; see [`weight_from_meta`]).
    /// Returns what changed if the ring did, and then the ring has been rebuilt; `None` means
    /// the ring, and every key's owner, is as before.
    ///
    /// [`weight_from_meta`]: super::weight_from_meta
    pub fn apply(&mut self, name: &NodeName, state: State, weight: u32) -> Option<RingChange> {
        self.apply_many([(name, state, weight)])
    }

    /// Takes a batch of `(name, state, weight)` updates in order and rebuilds the ring at most
    /// once. Returns the net change, or `None` if the ring ends as it began.
    pub fn apply_many<I, N>(&mut self, updates: I) -> Option<RingChange>
    where
        I: IntoIterator<Item = (N, State, u32)>,
        N: Borrow<NodeName>,
    {
        // What each touched member's weight was before the batch (None: not on the ring).
        let mut before: BTreeMap<NodeName, Option<u32>> = BTreeMap::new();
        for (name, state, weight) in updates {
            let name = name.borrow();
            let held = self.members.get(name).copied();
            let next = match state {
                State::Alive => Some(clamp_weight(weight)),
                State::Suspect => held,
                State::Dead | State::Left => None,
            };
            if next == held {
                continue;
            }
            before.entry(name.clone()).or_insert(held);
            match next {
                Some(weight) => self.members.insert(name.clone(), weight),
                None => self.members.remove(name),
            };
        }

        let mut change = RingChange::default();
        for (name, was) in before {
            match (was, self.members.get(&name).copied()) {
                (None, Some(_)) => change.added.push(name),
                (Some(_), None) => change.removed.push(name),
                (Some(old), Some(new)) if old != new => change.reweighted.push(name),
                _ => {}
            }
        }
        if change.is_empty() {
            return None;
        }

        let members = self.members.iter().map(|(name, &w)| (name.clone(), w));
        let spare = std::mem::take(&mut self.spare);
        self.ring = Arc::new(self.ring.with_members_in(members, spare));
        debug!(
            added = change.added.len(),
            removed = change.removed.len(),
            reweighted = change.reweighted.len(),
            members = self.ring.len(),
            checksum = self.ring.checksum(),
            "ring rebuilt"
        );
        Some(change)
    }
}

impl Default for RingTracker {
    /// An empty tracker with [`VNODES_PER_MEMBER_DEFAULT`].
    fn default() -> Self {
        RingTracker::new(VNODES_PER_MEMBER_DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_name as name;

    /// A tracker with `node-1..=node-{n}` Alive at weight 1 (few vnodes: tests stay fast).
    fn tracker_with(n: usize) -> RingTracker {
        let mut tracker = RingTracker::new(32);
        let joined = (1..=n).map(|i| (name(&format!("node-{i}")), State::Alive, 1));
        tracker.apply_many(joined);
        tracker
    }

    fn owners(ring: &Ring) -> Vec<NodeName> {
        (0..2_000u64)
            .map(|k| ring.owner(&k.to_le_bytes()).expect("non-empty").clone())
            .collect()
    }

    #[test]
    fn alive_member_joins_the_ring() {
        let mut tracker = RingTracker::default();
        assert!(tracker.ring().is_empty());
        let change = tracker.apply(&name("a"), State::Alive, 1);
        assert_eq!(
            change,
            Some(RingChange {
                added: vec![name("a")],
                ..RingChange::default()
            })
        );
        assert_eq!(tracker.ring().members(), &[name("a")]);
        assert_eq!(
            tracker.ring().vnodes_per_member(),
            VNODES_PER_MEMBER_DEFAULT
        );
    }

    #[test]
    fn suspect_member_keeps_its_place_and_its_keys() {
        let mut tracker = tracker_with(8);
        let before = Arc::clone(tracker.ring());
        let suspect = name("node-3");
        // A flapping suspicion: suspected, refuted, suspected again.
        assert_eq!(tracker.apply(&suspect, State::Suspect, 1), None);
        assert_eq!(tracker.apply(&suspect, State::Alive, 1), None);
        assert_eq!(tracker.apply(&suspect, State::Suspect, 1), None);
        assert!(
            Arc::ptr_eq(&before, tracker.ring()),
            "no rebuild for a suspicion"
        );
        assert!(tracker.ring().contains(&suspect));
        assert_eq!(owners(&before), owners(tracker.ring()));
    }

    #[test]
    fn suspect_member_not_on_the_ring_is_not_added() {
        let mut tracker = tracker_with(2);
        assert_eq!(tracker.apply(&name("stranger"), State::Suspect, 1), None);
        assert!(!tracker.ring().contains(&name("stranger")));
        assert_eq!(tracker.ring().len(), 2);
    }

    #[test]
    fn dead_and_left_members_are_removed() {
        let mut tracker = tracker_with(4);
        let change = tracker.apply(&name("node-2"), State::Dead, 1);
        assert_eq!(change.map(|c| c.removed), Some(vec![name("node-2")]));
        let change = tracker.apply(&name("node-4"), State::Left, 1);
        assert_eq!(change.map(|c| c.removed), Some(vec![name("node-4")]));
        assert_eq!(tracker.ring().members(), &[name("node-1"), name("node-3")]);
        // Hearing the verdict again, or about a member never seen, changes nothing.
        assert_eq!(tracker.apply(&name("node-2"), State::Dead, 1), None);
        assert_eq!(tracker.apply(&name("ghost"), State::Left, 1), None);
    }

    #[test]
    fn suspect_then_dead_removes_the_member() {
        let mut tracker = tracker_with(3);
        assert_eq!(tracker.apply(&name("node-1"), State::Suspect, 1), None);
        let change = tracker.apply(&name("node-1"), State::Dead, 1);
        assert_eq!(change.map(|c| c.removed), Some(vec![name("node-1")]));
    }

    #[test]
    fn recovered_member_comes_back_to_the_same_keys() {
        let mut tracker = tracker_with(6);
        let before = owners(tracker.ring());
        tracker.apply(&name("node-5"), State::Dead, 1);
        assert_ne!(owners(tracker.ring()), before);
        let change = tracker.apply(&name("node-5"), State::Alive, 1);
        assert_eq!(change.map(|c| c.added), Some(vec![name("node-5")]));
        assert_eq!(owners(tracker.ring()), before);
    }

    #[test]
    fn repeated_alive_is_not_a_change() {
        let mut tracker = tracker_with(3);
        let before = Arc::clone(tracker.ring());
        assert_eq!(tracker.apply(&name("node-1"), State::Alive, 1), None);
        // 0 clamps to 1: the same weight, so still no change.
        assert_eq!(tracker.apply(&name("node-1"), State::Alive, 0), None);
        assert!(Arc::ptr_eq(&before, tracker.ring()));
    }

    #[test]
    fn new_weight_while_alive_is_a_reweight() {
        let mut tracker = tracker_with(3);
        let change = tracker.apply(&name("node-2"), State::Alive, 4);
        assert_eq!(
            change,
            Some(RingChange {
                reweighted: vec![name("node-2")],
                ..RingChange::default()
            })
        );
        assert_eq!(tracker.ring().weight(&name("node-2")), Some(4));
        // A suspect's weight stays as it was: suspicion never moves keys.
        assert_eq!(tracker.apply(&name("node-2"), State::Suspect, 1), None);
        assert_eq!(tracker.ring().weight(&name("node-2")), Some(4));
    }

    #[test]
    fn batch_reports_its_net_change() {
        let mut tracker = tracker_with(4);
        let change = tracker.apply_many([
            (name("node-1"), State::Dead, 1),
            (name("node-9"), State::Alive, 1),
            (name("node-2"), State::Left, 1),
            (name("node-8"), State::Alive, 1),
            (name("node-3"), State::Suspect, 1),
        ]);
        assert_eq!(
            change,
            Some(RingChange {
                added: vec![name("node-8"), name("node-9")],
                removed: vec![name("node-1"), name("node-2")],
                reweighted: vec![],
            })
        );
        let names: Vec<&str> = tracker
            .ring()
            .members()
            .iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(names, ["node-3", "node-4", "node-8", "node-9"]);
    }

    #[test]
    fn batch_that_ends_where_it_began_is_no_change() {
        let mut tracker = tracker_with(4);
        let before = Arc::clone(tracker.ring());
        let n = name("node-2");
        let change = tracker.apply_many([
            (&n, State::Dead, 1),
            (&n, State::Alive, 3),
            (&n, State::Alive, 1),
        ]);
        assert_eq!(change, None);
        assert!(Arc::ptr_eq(&before, tracker.ring()));
    }

    #[test]
    fn a_reader_snapshot_is_untouched_by_later_changes() {
        let mut tracker = tracker_with(4);
        let snapshot = Arc::clone(tracker.ring());
        tracker.apply(&name("node-1"), State::Dead, 1);
        assert_eq!(snapshot.len(), 4);
        assert_eq!(tracker.ring().len(), 3);
    }

    #[test]
    fn a_ring_built_in_a_recycled_list_routes_as_one_built_afresh() {
        let mut tracker = tracker_with(6);
        let first = Arc::clone(tracker.ring());
        tracker.apply(&name("node-7"), State::Alive, 1);
        // Nobody else holds the first ring now: its list is kept for the next one...
        tracker.recycle(first);
        assert!(tracker.spare.capacity() >= 6 * 32, "the list was kept");
        tracker.apply(&name("node-2"), State::Dead, 1);
        // ...which took it.
        assert_eq!(tracker.spare.capacity(), 0);
        tracker.apply(&name("node-8"), State::Alive, 2);
        let members = [1, 3, 4, 5, 6, 7].map(|i| (name(&format!("node-{i}")), 1));
        let afresh = Ring::new(32).with_members(members.into_iter().chain([(name("node-8"), 2)]));
        assert_eq!(tracker.ring().len(), afresh.len());
        assert_eq!(owners(tracker.ring()), owners(&afresh));
    }

    #[test]
    fn recycling_a_ring_someone_still_holds_leaves_it_whole() {
        let mut tracker = tracker_with(4);
        let held = Arc::clone(tracker.ring());
        let routes = owners(&held);
        tracker.apply(&name("node-5"), State::Alive, 1);
        tracker.recycle(Arc::clone(&held));
        // The current ring is not given up either.
        tracker.recycle(Arc::clone(tracker.ring()));
        assert_eq!(
            tracker.spare.capacity(),
            0,
            "nothing kept while others hold it"
        );
        tracker.apply(&name("node-1"), State::Dead, 1);
        assert_eq!(owners(&held), routes);
        assert_eq!(held.len(), 4);
        assert_eq!(tracker.ring().len(), 4);
    }
}
