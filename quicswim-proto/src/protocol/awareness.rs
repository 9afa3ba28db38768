//! Lifeguard's local health multiplier: how much a node distrusts its own timeliness; and the
//! self-check built on it, by which a node that cannot reach its peers takes itself out.
//!
//! The score rises when the node misses Nacks it was owed, fails probes, or has to refute a
//! suspicion about itself, and falls with each successful probe. Probe interval and probe
//! timeout are stretched by `score + 1`, so a slow node accuses others less readily.
//!
//! A score pinned at its maximum says more: Nacks are owed by live helpers whatever the
//! target's state, so missing them over and over means this node's own packets are lost (a
//! gray node that drops most of what it sends or receives, or whose ingress flaps). Such a
//! node holds itself *out*: it accuses nobody, declares nobody Dead, and stops refuting
//! claims about itself, so the rest of the cluster declares it Dead by the ordinary path
//! (Rapid's point: evict exactly the faulty node, and keep it out while it is faulty, rather
//! than letting it refute forever and accuse healthy members from its broken vantage). It
//! comes back, with a new incarnation, once its score has been back at zero for a hold-down,
//! which doubles each time it has to go out again soon after a return (flap damping), so a
//! flapping node is held out until it is stable again.
//!
//! ```text
//!   score reaches max ──> out: no accusations, no Dead declarations, no refutations
//!   out, score back to 0 for `hold` ──> back: refute with a new incarnation
//!   out again within 4·hold of coming back ──> hold doubles (up to 64× its base)
//! ```

use std::time::{Duration, Instant};

/// The hold-down grows to at most this many times its base.
const HOLD_GROWTH_MAX: u32 = 64;

/// Local health score in `0..=max`, and whether the node holds itself out.
#[derive(Debug, Clone)]
pub struct Awareness {
    score: u32,
    max: u32,
    /// Set while this node judges itself faulty.
    out: bool,
    /// While out: since when the score has been zero.
    clear_since: Option<Instant>,
    /// How long the score must stay at zero before an out node comes back.
    hold: Duration,
    hold_base: Duration,
    /// When the node last came back.
    returned: Option<Instant>,
}

impl Awareness {
    /// A healthy node, with the score bounded by `max` (memberlist `AwarenessMaxMultiplier`);
    /// `hold_base` is the first hold-down. With `max == 0` the score never moves and the node
    /// never holds itself out.
    pub fn new(max: u32, hold_base: Duration) -> Self {
        Self {
            score: 0,
            max,
            out: false,
            clear_since: None,
            hold: hold_base,
            hold_base,
            returned: None,
        }
    }

    /// Adds `delta`, clamped to `0..=max`, at `now`.
    pub fn apply(&mut self, now: Instant, delta: i32) {
        let next = (self.score as i64 + delta as i64).clamp(0, self.max as i64);
        self.score = next as u32;
        if self.max == 0 {
            return;
        }
        if self.score == self.max && !self.out {
            self.out = true;
            // Out again soon after coming back: a flapping node; hold it out longer.
            let flapped = self
                .returned
                .is_some_and(|r| now.saturating_duration_since(r) < self.hold * 4);
            self.hold = if flapped {
                (self.hold * 2).min(self.hold_base * HOLD_GROWTH_MAX)
            } else {
                self.hold_base
            };
        }
        if self.out {
            if self.score == 0 {
                self.clear_since.get_or_insert(now);
            } else {
                self.clear_since = None;
            }
        }
    }

    /// Whether this node holds itself out (see the module docs).
    pub fn is_out(&self) -> bool {
        self.out
    }

    /// Ends the hold-down once the score has stayed at zero long enough; true when the node
    /// comes back at this call (the caller then refutes what was said about it meanwhile).
    pub fn try_return(&mut self, now: Instant) -> bool {
        let due = self
            .clear_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.hold);
        if !self.out || !due {
            return false;
        }
        self.out = false;
        self.clear_since = None;
        self.returned = Some(now);
        true
    }

    /// The current score (0 is healthy).
    pub fn score(&self) -> u32 {
        self.score
    }

    /// `base` stretched by the score.
    pub fn scale(&self, base: Duration) -> Duration {
        base * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(10);

    #[test]
    fn score_is_clamped_and_scales_durations() {
        let now = Instant::now();
        let mut a = Awareness::new(8, HOLD);
        a.apply(now, -1);
        assert_eq!(a.score(), 0);
        a.apply(now, 3);
        assert_eq!(a.scale(Duration::from_millis(500)), Duration::from_secs(2));
        a.apply(now, 100);
        assert_eq!(a.score(), 8);
        a.apply(now, -2);
        assert_eq!(a.score(), 6);
    }

    #[test]
    fn node_at_max_score_is_out_until_clear_for_the_hold_down() {
        let t0 = Instant::now();
        let mut a = Awareness::new(8, HOLD);
        a.apply(t0, 7);
        assert!(!a.is_out());
        a.apply(t0, 1);
        assert!(a.is_out());
        a.apply(t0, -8);
        assert!(!a.try_return(t0 + HOLD - Duration::from_millis(1)));
        a.apply(t0 + Duration::from_secs(5), 1);
        a.apply(t0 + Duration::from_secs(6), -1);
        assert!(!a.try_return(t0 + HOLD), "the clock restarts on a relapse");
        assert!(a.try_return(t0 + Duration::from_secs(6) + HOLD));
        assert!(!a.is_out());
    }

    #[test]
    fn going_out_again_soon_after_a_return_doubles_the_hold_down() {
        let t0 = Instant::now();
        let mut a = Awareness::new(8, HOLD);
        a.apply(t0, 8);
        a.apply(t0, -8);
        assert!(a.try_return(t0 + HOLD));
        let t1 = t0 + HOLD + Duration::from_secs(1);
        a.apply(t1, 8);
        a.apply(t1, -8);
        assert!(!a.try_return(t1 + HOLD));
        assert!(a.try_return(t1 + HOLD * 2));
    }

    #[test]
    fn zero_max_never_holds_the_node_out() {
        let now = Instant::now();
        let mut a = Awareness::new(0, HOLD);
        a.apply(now, 5);
        assert!(!a.is_out());
    }
}
