//! Lifeguard's local health multiplier: how much a node distrusts its own timeliness.
//!
//! It rises when the node misses Nacks it was owed, fails probes, or has to refute a
//! suspicion about itself, and falls with each successful probe. Probe interval and probe
//! timeout are stretched by `score + 1`, so a slow node accuses others less readily.

use std::time::Duration;

/// Local health score in `0..=max`.
#[derive(Debug, Clone)]
pub struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    /// A healthy node, with the score bounded by `max` (memberlist `AwarenessMaxMultiplier`).
    pub fn new(max: u32) -> Self {
        Self { score: 0, max }
    }

    /// Adds `delta`, clamped to `0..=max`.
    pub fn apply(&mut self, delta: i32) {
        let next = (self.score as i64 + delta as i64).clamp(0, self.max as i64);
        self.score = next as u32;
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

    #[test]
    fn score_is_clamped_and_scales_durations() {
        let mut a = Awareness::new(8);
        a.apply(-1);
        assert_eq!(a.score(), 0);
        a.apply(3);
        assert_eq!(a.scale(Duration::from_millis(500)), Duration::from_secs(2));
        a.apply(100);
        assert_eq!(a.score(), 8);
        a.apply(-2);
        assert_eq!(a.score(), 6);
    }
}
