//! Pushback on key/value writes: how far this node's own writes are behind on their way to
//! the cluster, and when to refuse more.
//!
//! Peers say which of our versions they hold: in the digest a peer sends with its round, in
//! the `wants` of its reply to one of ours (a peer that does not list us there held what we
//! had when we asked), by acknowledging the push that follows (it holds what we pushed), and
//! in full-state exchanges. The median over the live peers heard from last, each at its
//! latest report, is the version that has *spread*; the oldest of our writes above it says
//! how far behind the spread is, counted from when the write could first leave: writes are
//! signed a batch at a time (`sealing.rs`), up to a few seconds apart when many members
//! write, and that wait is pacing, not a cluster falling behind.
//!
//! ```text
//!   writes      v1 v2 v3 v4 v5 v6 v7            (each with the time it was made)
//!   peers       a:v7 b:v3 c:v4 d:v2 e:v6 f:v5 g:v4 h:v3 i:v5  ->  median v4: v5.. not spread
//!   behind      now - time of v5;  over kv_backlog_max -> set/delete refused (Backlogged)
//! ```
//!
//! A cluster offered more writes than it can carry otherwise turns the excess into a
//! backlog nobody sees: rounds fall behind, entries are fetched again and again from
//! several peers at once, and probes are answered late. Refused, the writer learns at once
//! and can retry, and what was accepted is delivered within about the bound.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::super::member::NodeName;

/// Own writes remembered above the spread version. Past it, the newest is coalesced into
/// the one before (which keeps the older time: "behind" errs long, never short).
const PENDING_MAX: usize = 4096;

/// Peers the median is taken over: the ones heard from last, each at its latest report.
const REPORTS: usize = 9;

/// Pushes of ours remembered until acknowledged (a push that failed never is); past it one
/// is forgotten to make room.
const PUSHES_MAX: usize = 64;

/// This node's writes not yet spread, and what peers last said they hold.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// Own writes above the spread version, oldest first: (version, when it may leave).
    pending: VecDeque<(u64, Instant)>,
    /// Versions of ours peers said they hold, one per peer, the peer heard from last at
    /// the back.
    reports: VecDeque<(NodeName, u64)>,
    /// Pushes not acknowledged yet: the highest version of ours each carried.
    pushed: BTreeMap<NodeName, u64>,
}

impl Backlog {
    /// One of our writes took `version`; it may leave from `at` (see `Sealing::leaves_at`).
    pub(super) fn written(&mut self, version: u64, at: Instant) {
        if self.pending.len() >= PENDING_MAX {
            if let Some(last) = self.pending.back_mut() {
                last.0 = version;
                return;
            }
        }
        self.pending.push_back((version, at));
    }

    /// `peer` holds our writes up to `version`.
    pub(super) fn reported(&mut self, peer: &NodeName, version: u64) {
        if let Some(i) = self.reports.iter().position(|(p, _)| p == peer) {
            self.reports.remove(i);
        } else if self.reports.len() >= REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back((peer.clone(), version));
    }

    /// We pushed `peer` our writes up to `version`: it holds them once it acknowledges.
    pub(super) fn pushed(&mut self, peer: &NodeName, version: u64) {
        if self.pushed.len() >= PUSHES_MAX && !self.pushed.contains_key(peer) {
            self.pushed.pop_first();
        }
        self.pushed.insert(peer.clone(), version);
    }

    /// `peer` acknowledged a push of ours.
    pub(super) fn push_acked(&mut self, peer: &NodeName) {
        if let Some(version) = self.pushed.remove(peer) {
            self.reported(peer, version);
        }
    }

    /// The median of the latest reports of the peers `live` says are still members (the
    /// lower one of an even count); 0 before any. A crashed or departed peer's last word
    /// stays stale for good, and two of them in a small cluster would hold every write back.
    fn spread(&self, live: impl Fn(&NodeName) -> bool) -> u64 {
        let mut sorted: Vec<u64> = self
            .reports
            .iter()
            .filter(|(p, _)| live(p))
            .map(|(_, v)| *v)
            .collect();
        sorted.sort_unstable();
        sorted
            .get(sorted.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0)
    }

    /// How long the oldest write not yet spread has waited; zero when all have spread.
    /// Writes the median of the reports holds are forgotten here, when a write asks, so a
    /// lone early report (one peer far ahead) does not settle them.
    pub(super) fn behind(&mut self, now: Instant, live: impl Fn(&NodeName) -> bool) -> Duration {
        let spread = self.spread(live);
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
        self.pushed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn peer(i: usize) -> NodeName {
        NodeName::new(format!("peer-{i}")).expect("a valid name")
    }

    #[test]
    fn behind_is_the_age_of_the_oldest_write_above_the_median_peer() {
        let t0 = Instant::now();
        let mut b = Backlog::default();
        for v in 1..=6 {
            b.written(v, t0 + S * v as u32);
        }
        assert_eq!(
            b.behind(t0 + S * 10, |_| true),
            S * 9,
            "nothing reported: v1 made at 1 s"
        );
        // Peers at 5, 2, 3: median 3, so v4 (made at 4 s) is the oldest not spread.
        for (i, v) in [5, 2, 3].into_iter().enumerate() {
            b.reported(&peer(i), v);
        }
        assert_eq!(b.behind(t0 + S * 10, |_| true), S * 6);
        // One peer far ahead does not move the median alone.
        b.reported(&peer(3), 6);
        assert_eq!(
            b.behind(t0 + S * 10, |_| true),
            S * 6,
            "2 3 5 6: lower median 3"
        );
        // The peer at 2 catches up: 3 5 6 6, median 5; v6 (made at 6 s) is left.
        b.reported(&peer(1), 6);
        assert_eq!(b.behind(t0 + S * 10, |_| true), S * 4);
        for i in 0..REPORTS {
            b.reported(&peer(i), 6);
        }
        assert_eq!(b.behind(t0 + S * 10, |_| true), Duration::ZERO);
    }

    #[test]
    fn each_peer_counts_once_at_its_latest_and_only_the_peers_heard_last() {
        let t0 = Instant::now();
        let mut b = Backlog::default();
        b.written(10, t0);
        // One peer saying it over and over is still one peer; the rest hold nothing.
        for i in 1..3 {
            b.reported(&peer(i), 0);
        }
        for _ in 0..REPORTS {
            b.reported(&peer(0), 10);
        }
        assert_eq!(b.behind(t0 + S, |_| true), S);
        // Only live peers count: without the two at 0, peer 0 alone holds it.
        assert_eq!(b.behind(t0 + S, |p| *p == peer(0)), Duration::ZERO);
        b.written(10, t0);
        // Nine other peers heard since: the first three are forgotten.
        for i in 3..3 + REPORTS {
            b.reported(&peer(i), 10);
        }
        assert_eq!(b.behind(t0 + S, |_| true), Duration::ZERO);
        b.written(11, t0 + S);
        for i in 3..3 + REPORTS / 2 + 1 {
            b.reported(&peer(i), 0); // peers that lost our data (restarted)
        }
        assert_eq!(b.behind(t0 + S * 3, |_| true), S * 2, "v11 still waits");
    }

    #[test]
    fn an_acknowledged_push_says_the_peer_holds_what_it_carried() {
        let t0 = Instant::now();
        let mut b = Backlog::default();
        b.written(7, t0);
        b.reported(&peer(0), 3); // its reply wanted us above 3: we push up to 7
        b.pushed(&peer(0), 7);
        assert_eq!(b.behind(t0 + S, |_| true), S);
        b.push_acked(&peer(1)); // no push of ours: nothing
        assert_eq!(b.behind(t0 + S, |_| true), S);
        b.push_acked(&peer(0));
        assert_eq!(b.behind(t0 + S, |_| true), Duration::ZERO);
        // Unacknowledged pushes are bounded.
        for i in 0..PUSHES_MAX * 2 {
            b.pushed(&peer(i), 1);
        }
        assert_eq!(b.pushed.len(), PUSHES_MAX);
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
        for i in 0..REPORTS {
            b.reported(&peer(i), PENDING_MAX as u64 - 1);
        }
        let oldest_left = Duration::from_millis(PENDING_MAX as u64 - 1);
        assert_eq!(b.behind(t0 + S * 100, |_| true), S * 100 - oldest_left);
        b.clear();
        assert_eq!(b.behind(t0 + S * 100, |_| true), Duration::ZERO);
    }
}
