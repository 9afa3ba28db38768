//! What gray failures did to the cluster, as healthy members saw it.
//!
//! Nodes are *healthy* (neither faulty nor crashed) or *faulty* (gray, flapping or stalling;
//! see [`Faults`](super::faults::Faults)). Every healthy, live node is an observer: the
//! tracker keeps the state it holds each member in (one byte per pair), so it can say who was
//! ever suspected or declared Dead, how often a faulty member's state changed, and when the
//! healthy nodes' views last came to agree, without scanning views per step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::protocol::Event;

const UNKNOWN: u8 = 0;
const ALIVE: u8 = 1;
const SUSPECT: u8 = 2;
const DEAD: u8 = 3;
const LEFT: u8 = 4;

fn active(c: u8) -> bool {
    c == ALIVE || c == SUSPECT
}

/// A stable, well-spread fingerprint of one member, XORed into a view's fingerprint.
fn member_key(j: usize) -> u64 {
    crate::hash::xxh64(&(j as u64).to_le_bytes(), 0x7669_6577)
}

/// The figures the [`HealthTracker`] gathered.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct HealthFigures {
    /// Healthy members ever held Suspect by anyone.
    pub healthy_suspected: usize,
    /// Healthy members ever held Dead by anyone.
    pub healthy_declared_dead: usize,
    /// State changes of healthy members seen by healthy observers once the faults started.
    pub healthy_state_changes: u64,
    /// Faulty members ever held Dead by a healthy observer.
    pub faulty_declared_dead: usize,
    /// Over the faulty members, the longest time from the faults' start until every healthy
    /// node held it Dead at once; `None` when one never was (or there are none).
    pub faulty_dead_everywhere_max_s: Option<f64>,
    /// Most state changes of one faulty member seen by one healthy observer.
    pub faulty_state_changes_max: u32,
    /// Most returns (Dead or Left, then active again) of one faulty member at one healthy
    /// observer.
    pub faulty_returns_max: u32,
    /// When the healthy nodes' views (their sets of active members) last came to agree;
    /// `None` if they disagree at the end.
    pub healthy_views_agree_s: Option<f64>,
    /// State changes (any member) seen by healthy observers once the faults started, per
    /// healthy node.
    pub membership_changes_per_healthy_node: f64,
}

/// Follows every membership event at every node.
pub struct HealthTracker {
    n: usize,
    epoch: Instant,
    faults_at: Instant,
    faulty: Vec<bool>,
    crashed: Vec<bool>,
    observer: Vec<bool>,
    /// `states[i * n + j]`: the state observer `i` holds member `j` in.
    states: Vec<u8>,
    /// A dense index per faulty member, for the counters below.
    faulty_index: Vec<Option<usize>>,
    /// `[f * n + i]`: state changes and returns of faulty member `f` at observer `i`.
    faulty_changes: Vec<u32>,
    faulty_returns: Vec<u32>,
    /// Per faulty member: observers holding it Dead now, and when all first did.
    faulty_dead_count: Vec<usize>,
    faulty_dead_all: Vec<Option<Instant>>,
    observers: usize,
    healthy_total: usize,
    fingerprints: Vec<u64>,
    /// How many observers hold each distinct view.
    views: BTreeMap<u64, usize>,
    agree_since: Option<Instant>,
    healthy_suspected: BTreeSet<usize>,
    healthy_dead: BTreeSet<usize>,
    faulty_dead: BTreeSet<usize>,
    healthy_changes: u64,
    changes_after: u64,
}

impl HealthTracker {
    /// Tracks `n` nodes, those marked in `faulty` faulty from `faults_at`.
    pub fn new(faulty: Vec<bool>, epoch: Instant, faults_at: Instant) -> Self {
        let n = faulty.len();
        let mut faulty_index = vec![None; n];
        let mut count = 0;
        for (i, f) in faulty.iter().enumerate() {
            if *f {
                faulty_index[i] = Some(count);
                count += 1;
            }
        }
        Self {
            n,
            epoch,
            faults_at,
            healthy_total: n - count,
            faulty,
            crashed: vec![false; n],
            observer: vec![false; n],
            states: vec![UNKNOWN; n * n],
            faulty_index,
            faulty_changes: vec![0; count * n],
            faulty_returns: vec![0; count * n],
            faulty_dead_count: vec![0; count],
            faulty_dead_all: vec![None; count],
            observers: 0,
            fingerprints: vec![0; n],
            views: BTreeMap::new(),
            agree_since: None,
            healthy_suspected: BTreeSet::new(),
            healthy_dead: BTreeSet::new(),
            faulty_dead: BTreeSet::new(),
            healthy_changes: 0,
            changes_after: 0,
        }
    }

    /// Node `i` started (or restarted with no state): it holds only itself.
    pub fn node_started(&mut self, now: Instant, i: usize) {
        self.clear_row(i);
        self.crashed[i] = false;
        if self.faulty[i] {
            return;
        }
        self.states[i * self.n + i] = ALIVE;
        self.fingerprints[i] = member_key(i);
        *self.views.entry(self.fingerprints[i]).or_default() += 1;
        self.observer[i] = true;
        self.observers += 1;
        self.check_agreement(now);
    }

    /// Node `i` crashed: it observes nothing any more, and is no longer a healthy member.
    pub fn node_crashed(&mut self, now: Instant, i: usize) {
        self.clear_row(i);
        self.crashed[i] = true;
        self.check_agreement(now);
        for f in 0..self.faulty_dead_count.len() {
            self.check_dead_everywhere(now, f);
        }
    }

    fn clear_row(&mut self, i: usize) {
        if !self.observer[i] {
            return;
        }
        for f in 0..self.faulty_dead_count.len() {
            let j = self.faulty_member(f);
            if self.states[i * self.n + j] == DEAD {
                self.faulty_dead_count[f] -= 1;
            }
        }
        self.states[i * self.n..(i + 1) * self.n].fill(UNKNOWN);
        self.remove_view(i);
        self.observer[i] = false;
        self.observers -= 1;
    }

    fn faulty_member(&self, f: usize) -> usize {
        self.faulty_index
            .iter()
            .position(|x| *x == Some(f))
            .expect("every dense index has its member")
    }

    fn remove_view(&mut self, i: usize) {
        let fp = self.fingerprints[i];
        if let Some(c) = self.views.get_mut(&fp) {
            *c -= 1;
            if *c == 0 {
                self.views.remove(&fp);
            }
        }
    }

    /// Observer `i` emitted `event` about member `j` (its index) at `now`.
    pub fn event(&mut self, now: Instant, i: usize, j: usize, event: &Event) {
        let new = match event {
            Event::Joined(_) | Event::Recovered(_) | Event::Updated(_) => ALIVE,
            Event::Suspect(_) => SUSPECT,
            Event::Dead(_) => DEAD,
            Event::Left(_) => LEFT,
            Event::KvChanged { .. } | Event::User(_) => return,
        };
        let healthy_subject = !self.faulty[j] && !self.crashed[j];
        // "By anyone": a faulty node's accusations count against a healthy member too.
        if healthy_subject && new == SUSPECT {
            self.healthy_suspected.insert(j);
        }
        if healthy_subject && new == DEAD {
            self.healthy_dead.insert(j);
        }
        if !self.observer[i] || j >= self.n {
            return;
        }
        let at = i * self.n + j;
        let old = self.states[at];
        if old == new {
            return;
        }
        self.states[at] = new;
        let after = now >= self.faults_at;
        if old != UNKNOWN && after {
            self.changes_after += 1;
            if healthy_subject {
                self.healthy_changes += 1;
            }
        }
        if let Some(f) = self.faulty_index[j] {
            if new == DEAD {
                self.faulty_dead.insert(j);
                self.faulty_dead_count[f] += 1;
            }
            if old == DEAD {
                self.faulty_dead_count[f] -= 1;
            }
            if after && old != UNKNOWN {
                self.faulty_changes[f * self.n + i] += 1;
                if (old == DEAD || old == LEFT) && active(new) {
                    self.faulty_returns[f * self.n + i] += 1;
                }
            }
            self.check_dead_everywhere(now, f);
        }
        if active(old) != active(new) {
            self.remove_view(i);
            self.fingerprints[i] ^= member_key(j);
            *self.views.entry(self.fingerprints[i]).or_default() += 1;
            self.check_agreement(now);
        }
    }

    fn check_dead_everywhere(&mut self, now: Instant, f: usize) {
        if self.faulty_dead_all[f].is_none()
            && self.observers > 0
            && self.faulty_dead_count[f] == self.observers
        {
            self.faulty_dead_all[f] = Some(now);
        }
    }

    fn check_agreement(&mut self, now: Instant) {
        let live_healthy = self.healthy_total - self.crashed.iter().filter(|c| **c).count();
        let agree = self.views.len() == 1 && self.observers == live_healthy;
        match (agree, self.agree_since) {
            (true, None) => self.agree_since = Some(now),
            (false, Some(_)) => self.agree_since = None,
            _ => {}
        }
    }

    /// The figures so far.
    pub fn figures(&self) -> HealthFigures {
        let max_of = |v: &[u32]| v.iter().copied().max().unwrap_or(0);
        let dead_everywhere = if self.faulty_dead_all.is_empty() {
            None
        } else {
            self.faulty_dead_all.iter().try_fold(0.0f64, |acc, t| {
                t.map(|t| acc.max(t.saturating_duration_since(self.faults_at).as_secs_f64()))
            })
        };
        HealthFigures {
            healthy_suspected: self.healthy_suspected.len(),
            healthy_declared_dead: self.healthy_dead.len(),
            healthy_state_changes: self.healthy_changes,
            faulty_declared_dead: self.faulty_dead.len(),
            faulty_dead_everywhere_max_s: dead_everywhere,
            faulty_state_changes_max: max_of(&self.faulty_changes),
            faulty_returns_max: max_of(&self.faulty_returns),
            healthy_views_agree_s: self.agree_since.map(|t| (t - self.epoch).as_secs_f64()),
            membership_changes_per_healthy_node: self.changes_after as f64
                / self.healthy_total.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    use crate::protocol::{Incarnation, Member, NodeName, State};

    fn member(j: usize) -> Member {
        Member {
            name: NodeName::new(format!("n{j}")).expect("a DNS label"),
            addr: SocketAddr::from(([127, 0, 0, 1], 7946)),
            incarnation: Incarnation(0),
            state: State::Alive,
            meta: Vec::new(),
        }
    }

    #[test]
    fn faulty_member_dead_at_every_healthy_observer_is_timed_and_views_agree() {
        let t0 = Instant::now();
        let at = t0 + Duration::from_secs(10);
        let mut t = HealthTracker::new(vec![false, false, true], t0, at);
        for i in 0..3 {
            t.node_started(t0, i);
        }
        for i in 0..2 {
            for j in 0..3 {
                if i != j {
                    t.event(t0, i, j, &Event::Joined(member(j)));
                }
            }
        }
        assert_eq!(t.figures().healthy_views_agree_s, Some(0.0));
        t.event(at, 0, 2, &Event::Suspect(member(2)));
        assert_eq!(
            t.figures().healthy_views_agree_s,
            Some(0.0),
            "suspect is active"
        );
        t.event(at, 0, 2, &Event::Dead(member(2)));
        assert_eq!(t.figures().healthy_views_agree_s, None);
        t.event(at + Duration::from_secs(5), 1, 2, &Event::Dead(member(2)));
        let f = t.figures();
        assert_eq!(f.healthy_views_agree_s, Some(15.0));
        assert_eq!(f.faulty_dead_everywhere_max_s, Some(5.0));
        assert_eq!((f.faulty_declared_dead, f.faulty_state_changes_max), (1, 2));
        assert_eq!((f.healthy_suspected, f.healthy_declared_dead), (0, 0));
        t.event(at, 0, 2, &Event::Joined(member(2)));
        assert_eq!(t.figures().faulty_returns_max, 1);
    }

    #[test]
    fn accusation_of_a_healthy_member_by_a_faulty_node_counts() {
        let t0 = Instant::now();
        let mut t = HealthTracker::new(vec![false, true], t0, t0);
        t.node_started(t0, 0);
        t.node_started(t0, 1);
        t.event(t0, 1, 0, &Event::Suspect(member(0)));
        let f = t.figures();
        assert_eq!((f.healthy_suspected, f.healthy_state_changes), (1, 0));
    }
}
