//! Gray failures: nodes that are half alive rather than crashed.
//!
//! Clean crashes and uniform loss are the easy cases for a failure detector. What breaks
//! gossip clusters in production is a node that loses most of its packets, whose ingress
//! flips on and off, that stops for seconds (a GC pause, an overloaded host), or a single
//! link that fails while both its ends talk to everyone else (the scenarios of the Rapid
//! paper, USENIX ATC 2018, and of Lifeguard). A [`FaultPlan`] says which of these a run
//! injects and from when; [`Faults`] answers, per message, what they do to it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Which way a gray node's packets are lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Both what it sends and what it receives.
    Both,
    /// Only what it receives.
    Ingress,
    /// Only what it sends.
    Egress,
}

/// A share of nodes with a loss rate of their own.
#[derive(Clone, Debug, PartialEq)]
pub struct GrayPlan {
    /// Share of the nodes that are gray, `0.0..1.0` (at least one when above zero).
    pub fraction: f64,
    /// Their loss rate, `0.0..=1.0`, on top of the network's.
    pub loss: f64,
    /// Which way it applies.
    pub direction: Direction,
}

/// Nodes whose ingress loss flips between 0 and 100 %.
#[derive(Clone, Debug, PartialEq)]
pub struct FlapPlan {
    /// How many nodes flap.
    pub nodes: usize,
    /// How long each state lasts: `period` receiving nothing, then `period` receiving all.
    pub period: Duration,
}

/// Nodes that stop processing for a while, over and over.
#[derive(Clone, Debug, PartialEq)]
pub struct StallPlan {
    /// Share of the nodes that stall, `0.0..1.0` (at least one when above zero).
    pub fraction: f64,
    /// How long each stall lasts.
    pub stall_for: Duration,
    /// One stall starts every this long (each node on its own phase).
    pub every: Duration,
}

/// The gray failures of a run. Faulty nodes are drawn at the start and are never crashed
/// by the run's `crashes` (those come from the healthy nodes); every fault starts at `at`
/// and lasts until `until` (or to the end of the run).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// When the faults start (virtual time since the run began).
    pub at: Duration,
    /// When they all end, if before the end of the run: the faulty nodes are then as
    /// healthy as the rest (is each let back in?).
    pub until: Option<Duration>,
    /// Nodes with a loss rate of their own.
    pub gray: Option<GrayPlan>,
    /// Nodes whose ingress flaps.
    pub flap: Option<FlapPlan>,
    /// Nodes that stall.
    pub stall: Option<StallPlan>,
    /// Links cut, each between two healthy nodes that still reach everyone else.
    pub cut_links: usize,
}

impl FaultPlan {
    /// No faults, starting at `at` (fill in the ones wanted).
    pub fn starting_at(at: Duration) -> Self {
        Self {
            at,
            until: None,
            gray: None,
            flap: None,
            stall: None,
            cut_links: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum NodeFault {
    Healthy,
    Gray {
        ingress: f64,
        egress: f64,
    },
    /// Receives nothing during `[start + 2k·period, start + (2k+1)·period)`.
    Flap {
        start: Instant,
        period: Duration,
    },
    /// Stalls during `[start + k·every, start + k·every + stall_for)`.
    Stall {
        start: Instant,
        every: Duration,
        stall_for: Duration,
    },
}

/// The faults in force: which node has which, and what they do to a message.
#[derive(Debug)]
pub struct Faults {
    at: Instant,
    until: Option<Instant>,
    nodes: Vec<NodeFault>,
    cut: BTreeSet<(usize, usize)>,
}

/// How many nodes a share of `n` is: rounded, at least one when the share is above zero.
fn share(n: usize, fraction: f64) -> usize {
    if fraction <= 0.0 {
        return 0;
    }
    ((n as f64 * fraction).round() as usize).max(1)
}

impl Faults {
    /// No faults at all.
    pub fn none(n: usize, epoch: Instant) -> Self {
        Self {
            at: epoch,
            until: Some(epoch),
            nodes: vec![NodeFault::Healthy; n],
            cut: BTreeSet::new(),
        }
    }

    /// Draws the faulty nodes of `plan` among `n`. Draws from an RNG of its own, derived
    /// from `seed`, so a run without faults makes exactly the draws it made before faults
    /// existed, and its figures stay as they were.
    pub fn new(plan: &FaultPlan, n: usize, seed: u64, epoch: Instant) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x6772_6179_6661_756c);
        let at = epoch + plan.at;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let mut nodes = vec![NodeFault::Healthy; n];
        let mut next = order.into_iter();
        if let Some(g) = &plan.gray {
            let (ingress, egress) = match g.direction {
                Direction::Both => (g.loss, g.loss),
                Direction::Ingress => (g.loss, 0.0),
                Direction::Egress => (0.0, g.loss),
            };
            for i in next.by_ref().take(share(n, g.fraction)) {
                nodes[i] = NodeFault::Gray { ingress, egress };
            }
        }
        if let Some(f) = &plan.flap {
            let flapping: Vec<usize> = next.by_ref().take(f.nodes).collect();
            for i in flapping {
                let phase = f.period.mul_f64(rng.random::<f64>());
                nodes[i] = NodeFault::Flap {
                    start: at + phase,
                    period: f.period,
                };
            }
        }
        if let Some(s) = &plan.stall {
            let stalling: Vec<usize> = next.by_ref().take(share(n, s.fraction)).collect();
            for i in stalling {
                let phase = s.every.mul_f64(rng.random::<f64>());
                nodes[i] = NodeFault::Stall {
                    start: at + phase,
                    every: s.every,
                    stall_for: s.stall_for,
                };
            }
        }
        let healthy: Vec<usize> = next.collect();
        let mut cut = BTreeSet::new();
        for pair in healthy.chunks_exact(2).take(plan.cut_links) {
            cut.insert((pair[0].min(pair[1]), pair[0].max(pair[1])));
        }
        Self {
            at,
            until: plan.until.map(|u| epoch + u),
            nodes,
            cut,
        }
    }

    /// Whether the faults are in force at `now`.
    fn active(&self, now: Instant) -> bool {
        now >= self.at && self.until.is_none_or(|u| now < u)
    }

    /// Whether node `i` has a fault of its own (gray, flapping or stalling). The ends of a
    /// cut link are healthy: each still reaches every other node.
    pub fn is_faulty(&self, i: usize) -> bool {
        self.nodes[i] != NodeFault::Healthy
    }

    /// The nodes with a fault of their own.
    pub fn faulty(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.is_faulty(i))
    }

    /// The cut links, each as (smaller index, larger).
    pub fn cut_links(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.cut.iter().copied()
    }

    /// Whether the link between `a` and `b` is cut at `now`.
    pub fn is_cut(&self, a: usize, b: usize, now: Instant) -> bool {
        self.active(now) && self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// The loss of a datagram from `from` to `to` at `now`: `base` (the network's) combined
    /// with the sender's egress and the receiver's ingress loss, each independent.
    pub fn loss(&self, base: f64, from: usize, to: usize, now: Instant) -> f64 {
        if !self.active(now) {
            return base;
        }
        let egress = match self.nodes[from] {
            NodeFault::Gray { egress, .. } => egress,
            _ => 0.0,
        };
        let ingress = match self.nodes[to] {
            NodeFault::Gray { ingress, .. } => ingress,
            NodeFault::Flap { start, period } if flap_down(start, period, now) => 1.0,
            _ => 0.0,
        };
        if egress == 0.0 && ingress == 0.0 {
            return base; // exactly the network's, so draws compare the same
        }
        1.0 - (1.0 - base) * (1.0 - egress) * (1.0 - ingress)
    }

    /// When node `i`'s current stall ends, if it is stalled at `now`.
    pub fn stalled_until(&self, i: usize, now: Instant) -> Option<Instant> {
        let NodeFault::Stall {
            start,
            every,
            stall_for,
        } = self.nodes[i]
        else {
            return None;
        };
        // A stall under way when the faults end ends with them.
        if now < start || every.is_zero() || !self.active(now) {
            return None;
        }
        let since = now - start;
        let cycles = (since.as_nanos() / every.as_nanos()) as u32;
        let began = start + every * cycles;
        let ends = began + stall_for;
        (now < ends).then_some(ends)
    }
}

fn flap_down(start: Instant, period: Duration, now: Instant) -> bool {
    if now < start || period.is_zero() {
        return false;
    }
    let k = (now - start).as_nanos() / period.as_nanos();
    k.is_multiple_of(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> FaultPlan {
        FaultPlan {
            gray: Some(GrayPlan {
                fraction: 0.1,
                loss: 0.8,
                direction: Direction::Ingress,
            }),
            flap: Some(FlapPlan {
                nodes: 2,
                period: Duration::from_secs(20),
            }),
            stall: Some(StallPlan {
                fraction: 0.1,
                stall_for: Duration::from_secs(2),
                every: Duration::from_secs(30),
            }),
            cut_links: 1,
            ..FaultPlan::starting_at(Duration::from_secs(10))
        }
    }

    #[test]
    fn faulty_nodes_are_disjoint_and_the_cut_link_joins_healthy_ones() {
        let t0 = Instant::now();
        let f = Faults::new(&plan(), 100, 7, t0);
        assert_eq!(f.faulty().count(), 10 + 2 + 10);
        let cut: Vec<_> = f.cut_links().collect();
        assert_eq!(cut.len(), 1);
        let (a, b) = cut[0];
        assert!(!f.is_faulty(a) && !f.is_faulty(b) && a < b);
        assert!(!f.is_cut(a, b, t0), "not before the faults start");
        assert!(f.is_cut(b, a, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn gray_ingress_loss_applies_only_to_what_the_node_receives() {
        let t0 = Instant::now();
        let f = Faults::new(&plan(), 100, 7, t0);
        let gray = (0..100)
            .find(|&i| matches!(f.nodes[i], NodeFault::Gray { .. }))
            .expect("one gray node");
        let healthy = (0..100).find(|&i| !f.is_faulty(i)).expect("one healthy");
        let later = t0 + Duration::from_secs(11);
        assert_eq!(f.loss(0.0, healthy, gray, t0), 0.0, "not before the start");
        assert!((f.loss(0.0, healthy, gray, later) - 0.8).abs() < 1e-9);
        assert!((f.loss(0.5, healthy, gray, later) - 0.9).abs() < 1e-9);
        assert_eq!(f.loss(0.1, gray, healthy, later), 0.1);
    }

    #[test]
    fn flapping_node_alternates_deaf_and_hearing_each_period() {
        let t0 = Instant::now();
        let start = t0 + Duration::from_secs(3);
        let period = Duration::from_secs(20);
        assert!(!flap_down(start, period, t0));
        assert!(flap_down(start, period, start));
        assert!(flap_down(start, period, start + Duration::from_secs(19)));
        assert!(!flap_down(start, period, start + Duration::from_secs(20)));
        assert!(flap_down(start, period, start + Duration::from_secs(45)));
    }

    #[test]
    fn stall_ends_after_its_length_and_recurs() {
        let t0 = Instant::now();
        let f = Faults::new(&plan(), 100, 7, t0);
        let i = (0..100)
            .find(|&i| matches!(f.nodes[i], NodeFault::Stall { .. }))
            .expect("one stalling node");
        let NodeFault::Stall { start, .. } = f.nodes[i] else {
            unreachable!()
        };
        assert_eq!(f.stalled_until(i, start - Duration::from_millis(1)), None);
        let s = Duration::from_secs(2);
        assert_eq!(f.stalled_until(i, start), Some(start + s));
        assert_eq!(f.stalled_until(i, start + s), None);
        let next = start + Duration::from_secs(30);
        assert_eq!(
            f.stalled_until(i, next + Duration::from_secs(1)),
            Some(next + s)
        );
    }
}
