//! Lifeguard's dynamic suspicion timeout.
//!
//! A suspicion starts at the max timeout and shrinks towards the min as independent members
//! confirm it: `max(min, max - (max - min) · log(C + 1) / log(K + 1))`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::member::NodeName;

/// One open suspicion about a member.
#[derive(Debug, Clone)]
pub struct Suspicion {
    start: Instant,
    min: Duration,
    max: Duration,
    /// Confirmations wanted to reach the min timeout.
    k: u32,
    /// Distinct accusers seen so far (the first included).
    accusers: BTreeSet<NodeName>,
    /// When this node asked the suspect itself, a probe timeout before declaring it Dead
    /// (see `Swim::suspect_timed_out`).
    last_call: Option<Instant>,
}

impl Suspicion {
    /// Opens a suspicion raised by `accuser`, which does not count as a confirmation.
    pub fn new(start: Instant, min: Duration, max: Duration, k: u32, accuser: NodeName) -> Self {
        Self {
            start,
            min,
            max,
            k,
            accusers: BTreeSet::from([accuser]),
            last_call: None,
        }
    }

    /// Records `accuser`; true when it is a new, independent confirmation.
    pub fn confirm(&mut self, accuser: NodeName) -> bool {
        if self.accusers.len() as u32 > self.k {
            return false; // already at the min timeout; bounded memory.
        }
        self.accusers.insert(accuser)
    }

    /// Whether a confirmation from `accuser` would count: it is not counted yet and the
    /// suspicion is not at its minimum timeout already.
    pub fn would_confirm(&self, accuser: &NodeName) -> bool {
        self.accusers.len() as u32 <= self.k && !self.accusers.contains(accuser)
    }

    /// Independent confirmations so far.
    pub fn confirmations(&self) -> u32 {
        self.accusers.len() as u32 - 1
    }

    /// When the suspect is to be declared Dead.
    pub fn deadline(&self) -> Instant {
        self.start + timeout(self.min, self.max, self.k, self.confirmations())
    }

    /// When the suspect was asked directly before being declared Dead, if it was.
    pub fn last_call(&self) -> Option<Instant> {
        self.last_call
    }

    /// Records that the suspect was asked directly at `at`.
    pub fn set_last_call(&mut self, at: Instant) {
        self.last_call = Some(at);
    }
}

/// The Lifeguard formula. With `k == 0` no confirmations are expected and the min applies.
pub fn timeout(min: Duration, max: Duration, k: u32, confirmations: u32) -> Duration {
    if k == 0 {
        return min;
    }
    let frac = ((confirmations as f64) + 1.0).ln() / ((k as f64) + 1.0).ln();
    let raw = max.as_secs_f64() - frac * (max.as_secs_f64() - min.as_secs_f64());
    Duration::from_secs_f64(raw.max(min.as_secs_f64()))
}

/// memberlist's `suspicionTimeout`: `mult · max(1, log10 n) · interval`.
pub fn min_timeout(mult: u32, n: usize, probe_interval: Duration) -> Duration {
    let scale = (n.max(1) as f64).log10().max(1.0);
    probe_interval.mul_f64(mult as f64 * scale)
}

/// Confirmations wanted in a cluster of `n`: `k`, or as many as the members other than the
/// suspect and the accuser can give.
pub fn confirmations_wanted(k: u32, n: usize) -> u32 {
    let others = u32::try_from(n.saturating_sub(2)).unwrap_or(u32::MAX);
    k.min(others)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_name as name;

    #[test]
    fn timeout_shrinks_from_max_to_min_with_confirmations() {
        let (min, max) = (Duration::from_secs(6), Duration::from_secs(36));
        assert_eq!(timeout(min, max, 2, 0), max);
        let one = timeout(min, max, 2, 1);
        assert!(one < max && one > min, "{one:?}");
        // log(2)/log(3) of the way: 36 - 30 * 0.6309 = 17.07 s
        assert!((one.as_secs_f64() - 17.07).abs() < 0.01, "{one:?}");
        assert_eq!(timeout(min, max, 2, 2), min);
        assert_eq!(timeout(min, max, 2, 5), min);
        assert_eq!(timeout(min, max, 0, 0), min);
    }

    #[test]
    fn only_distinct_accusers_confirm() {
        let t0 = Instant::now();
        let mut s = Suspicion::new(
            t0,
            Duration::from_secs(6),
            Duration::from_secs(36),
            2,
            name("a"),
        );
        assert_eq!(s.deadline(), t0 + Duration::from_secs(36));
        assert!(!s.confirm(name("a")));
        assert!(s.confirm(name("b")));
        assert!(!s.confirm(name("b")));
        assert!(s.confirm(name("c")));
        assert_eq!(s.confirmations(), 2);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(6));
        assert!(!s.confirm(name("d")), "past k, no more are kept");
    }

    #[test]
    fn min_timeout_scales_with_log10_of_size() {
        let p = Duration::from_secs(1);
        assert_eq!(min_timeout(4, 5, p), Duration::from_secs(4));
        assert_eq!(min_timeout(4, 1000, p), Duration::from_secs(12));
        assert_eq!(confirmations_wanted(3, 2), 0);
        assert_eq!(confirmations_wanted(3, 3), 1);
        assert_eq!(confirmations_wanted(3, 5), 3);
        assert_eq!(confirmations_wanted(3, 1000), 3);
    }
}
