//! Pushback on key/value writes: how far this node's own writes are behind on their way to
//! the cluster, and when to refuse more.
//!
//! Peers' key/value digests say which of our versions they hold: the digest a peer sends
//! with its round, and the `wants` in the reply to one of ours (a peer that does not list us
//! there held what we had when we asked). The median of the latest reports is the version
//! that has *spread*; the oldest of our writes above it says how far behind the spread is.
//!
//! ```text
//!   writes      v1 v2 v3 v4 v5 v6 v7            (each with the time it was made)
//!   reports     v7 v3 v4 v2 v6 v5 v4 v3 v5  ->  median v4: v5.. not spread yet
//!   behind      now - time of v5;  over kv_backlog_max -> set/delete refused (Backlogged)
//! ```
//!
//! A cluster offered more writes than it can carry otherwise turns the excess into a
//! backlog nobody sees: rounds fall behind, entries are fetched again and again from
//! several peers at once, and probes are answered late. Refused, the writer learns at once
//! and can retry, and what was accepted is delivered within about the bound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Own writes remembered above the spread version. Past it, the newest is coalesced into
/// the one before (which keeps the older time: "behind" errs long, never short).
const PENDING_MAX: usize = 4096;

/// Reports the median is taken over: the latest from this many exchanges.
const REPORTS: usize = 9;

/// This node's writes not yet spread, and what peers last said they hold.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// Own writes above the spread version, oldest first: (version, when made).
    pending: VecDeque<(u64, Instant)>,
    /// Versions of ours peers said they hold, newest last.
    reports: VecDeque<u64>,
}

impl Backlog {
    /// One of our writes took `version` at `now`.
    pub(super) fn written(&mut self, version: u64, now: Instant) {
        if self.pending.len() >= PENDING_MAX {
            if let Some(last) = self.pending.back_mut() {
                last.0 = version;
                return;
            }
        }
        self.pending.push_back((version, now));
    }

    /// A peer holds our writes up to `version`.
    pub(super) fn reported(&mut self, version: u64) {
        if self.reports.len() >= REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back(version);
    }

    /// The median of the latest reports (the lower one of an even count); 0 before any.
    fn spread(&self) -> u64 {
        let mut sorted: Vec<u64> = self.reports.iter().copied().collect();
        sorted.sort_unstable();
        sorted
            .get(sorted.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0)
    }

    /// How long the oldest write not yet spread has waited; zero when all have spread.
    /// Writes the median of the reports holds are forgotten here, when a write asks, so a
    /// lone early report (one peer far ahead) does not settle them.
    pub(super) fn behind(&mut self, now: Instant) -> Duration {
        let spread = self.spread();
        while self.pending.front().is_some_and(|(v, _)| *v <= spread) {
            self.pending.pop_front();
        }
        self.pending
            .front()
            .map_or(Duration::ZERO, |(_, at)| now.saturating_duration_since(*at))
    }

    /// Nobody to spread to (this node is alone): nothing is behind.
    pub(super) fn clear(&mut self) {
        self.pending.clear();
        self.reports.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn behind_is_the_age_of_the_oldest_write_above_the_median_report() {
        let t0 = Instant::now();
        let mut b = Backlog::default();
        for v in 1..=6 {
            b.written(v, t0 + S * v as u32);
        }
        assert_eq!(
            b.behind(t0 + S * 10),
            S * 9,
            "nothing reported: v1 at t0+1 s"
        );
        // Reports 5, 2, 3: median 3, so v4 (made at t0+4 s) is the oldest not spread.
        for v in [5, 2, 3] {
            b.reported(v);
        }
        assert_eq!(b.behind(t0 + S * 10), S * 6);
        // One peer far ahead does not move the median alone.
        b.reported(6);
        assert_eq!(
            b.behind(t0 + S * 10),
            S * 6,
            "reports 5 2 3 6: lower median 3"
        );
        b.reported(6);
        assert_eq!(b.behind(t0 + S * 10), S * 4, "5 2 3 6 6: median 5, v6 left");
        for _ in 0..REPORTS {
            b.reported(6);
        }
        assert_eq!(b.behind(t0 + S * 10), Duration::ZERO);
    }

    #[test]
    fn only_the_latest_reports_count() {
        let t0 = Instant::now();
        let mut b = Backlog::default();
        b.written(10, t0);
        for _ in 0..REPORTS {
            b.reported(10);
        }
        assert_eq!(b.behind(t0 + S), Duration::ZERO);
        b.written(11, t0 + S);
        for _ in 0..REPORTS / 2 + 1 {
            b.reported(0); // peers that lost our data (restarted): the median falls
        }
        assert_eq!(b.behind(t0 + S * 3), S * 2, "v11 still waits");
    }

    #[test]
    fn a_long_burst_is_remembered_within_the_bound_and_errs_long() {
        let t0 = Instant::now();
        let mut b = Backlog::default();
        for v in 0..(PENDING_MAX as u64 * 3) {
            b.written(v + 1, t0 + Duration::from_millis(v));
        }
        assert_eq!(b.pending.len(), PENDING_MAX);
        // Every write up to the one before the last coalesced entry spread: the coalesced
        // entry keeps the older time it was first made at.
        for _ in 0..REPORTS {
            b.reported(PENDING_MAX as u64 - 1);
        }
        let oldest_left = Duration::from_millis(PENDING_MAX as u64 - 1);
        assert_eq!(b.behind(t0 + S * 100), S * 100 - oldest_left);
        b.clear();
        assert_eq!(b.behind(t0 + S * 100), Duration::ZERO);
    }
}
