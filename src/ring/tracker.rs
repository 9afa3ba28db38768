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

use super::hashring::{Ring, VNODES_PER_MEMBER_DEFAULT};
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
}

impl RingTracker {
    /// An empty tracker whose rings place `vnodes_per_member` points per unit of weight.
    pub fn new(vnodes_per_member: u32) -> Self {
        RingTracker {
            members: BTreeMap::new(),
            ring: Arc::new(Ring::new(vnodes_per_member)),
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
        self.ring = Arc::new(self.ring.with_members(members));
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
