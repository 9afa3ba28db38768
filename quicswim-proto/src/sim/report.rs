//! What a run measured: convergence, dissemination, detection and false positives.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;

use super::config::SimConfig;
use super::health::HealthFigures;
use crate::protocol::{Event, Incarnation, NodeName};

/// A run's figures, in virtual seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Nodes simulated.
    pub nodes: usize,
    /// The seed that reproduces the run.
    pub seed: u64,
    /// Virtual seconds simulated.
    pub duration_s: f64,
    /// Until every node saw every node Alive (before any crash); `None` if never.
    pub join_converged_s: Option<f64>,
    /// Updates injected to time dissemination.
    pub updates: usize,
    /// Updates that reached every live node.
    pub updates_disseminated: usize,
    /// Slowest time for an update to reach every live node; `None` if one never did.
    pub dissemination_max_s: Option<f64>,
    /// The median over updates of the same; `None` if one never did.
    pub dissemination_p50_s: Option<f64>,
    /// Nodes crashed.
    pub crashes: usize,
    /// Over the crashed nodes, the longest time until every live node held them Dead;
    /// `None` if no crash, or if one was never detected everywhere.
    pub detect_all_max_s: Option<f64>,
    /// Crashed nodes that every live node holds Dead.
    pub crashes_detected: usize,
    /// Live, reachable, healthy members declared Dead by anyone (distinct members); faulty
    /// ones declared Dead are counted in `faulty_declared_dead`.
    pub false_positives: usize,
    /// At the end, every live healthy node (faulty ones are not asked) holds the same set of
    /// members (Alive or Suspect).
    pub final_views_agree: bool,
    /// At the end, that set is exactly the live nodes.
    pub final_views_correct: bool,
    /// Simulator steps taken (messages delivered and timers fired).
    pub steps: u64,
    /// Datagram bytes sent by the nodes alive at the end.
    pub datagram_bytes: u64,
    /// Suspicions raised by the nodes alive at the end.
    pub suspicions_raised: u64,
    /// Refutations by the nodes alive at the end.
    pub refutations: u64,
    /// Key/value writes made.
    pub kv_writes: u64,
    /// Key/value writes refused with `Backlogged` (pushback), not made.
    pub kv_writes_backlogged: u64,
    /// At the end, every live node holds the same key/value entries.
    pub kv_states_agree: bool,
    /// At the end, every live node holds each live owner's last write (deletes absent).
    pub kv_matches_writes: bool,
    /// Live keys held (by the first live node).
    pub kv_live_keys: usize,
    /// Full-state exchanges started (joins included) by the nodes alive at the end.
    pub push_pulls: u64,
    /// Anti-entropy bytes those nodes sent (requests, replies and key/value pushes).
    pub anti_entropy_bytes: u64,
    /// Bytes of requests and replies for records gossiped by digest and for certificates
    /// that those nodes sent.
    pub fetch_bytes: u64,
    /// Key/value entries sent in anti-entropy.
    pub kv_entries_synced: u64,
    /// Records whose signer's certificate was not held when they arrived (summed over live
    /// nodes); each was parked until the certificate came, or dropped.
    pub unverified_records: u64,
    /// Certificates of other members checked and kept (summed over live nodes).
    pub certificates_learned: u64,
    /// Records that waited for a certificate and were dropped for room (summed).
    pub parked_dropped: u64,
    /// Piggyback updates pushed out of a full queue before they were sent enough (summed).
    pub broadcasts_dropped: u64,
    /// Nodes with a gray failure of their own (gray, flapping, stalling).
    pub faulty: usize,
    /// What healthy nodes (neither faulty nor crashed) saw of the gray failures; its fields
    /// sit at the top level of the JSON report.
    #[serde(flatten)]
    pub health: HealthFigures,
    /// Rogue members in the run.
    pub rogues: usize,
    /// Forged datagrams and stream messages the rogues sent.
    pub forged_sent: u64,
    /// Refusals honest nodes counted handling them (forged records and messages, decode
    /// errors, unverified records, refused certificates, unasked messages).
    pub forged_refused: u64,
    /// Fabricated records found in honest nodes' state or delivered by them (distinct per
    /// node and record); must be 0.
    pub forged_accepted: u64,
    /// A few of those, to start looking from.
    pub forged_accepted_examples: Vec<String>,
    /// Wall-clock seconds the run took (filled in by the caller).
    pub wall_s: f64,
}

impl Report {
    /// Fills in what healthy nodes saw of the gray failures.
    pub(super) fn health(&mut self, f: &HealthFigures, faulty: usize) {
        self.faulty = faulty;
        self.health = f.clone();
    }
}

struct Spread {
    seen: Vec<bool>,
    count: usize,
    started: Instant,
    done: Option<Instant>,
}

impl Spread {
    fn new(n: usize, started: Instant) -> Self {
        Self {
            seen: vec![false; n],
            count: 0,
            started,
            done: None,
        }
    }

    fn mark(&mut self, i: usize) {
        if !self.seen[i] {
            self.seen[i] = true;
            self.count += 1;
        }
    }

    fn check(&mut self, now: Instant, target: usize) {
        if self.done.is_none() && self.count >= target {
            self.done = Some(now);
        }
    }

    fn seconds(&self) -> Option<f64> {
        self.done.map(|d| (d - self.started).as_secs_f64())
    }
}

struct UpdateSpread {
    subject: NodeName,
    incarnation: Incarnation,
    spread: Spread,
}

struct CrashSpread {
    subject: NodeName,
    spread: Spread,
}

/// Follows events as they happen, so no view is scanned per step.
pub struct Tracker {
    n: usize,
    started: usize,
    crashed: Vec<bool>,
    crashed_count: usize,
    alive_ok: Vec<bool>,
    alive_ok_count: usize,
    join_converged: Option<Instant>,
    updates: Vec<UpdateSpread>,
    crashes: Vec<CrashSpread>,
    false_positives: BTreeSet<NodeName>,
}

impl Tracker {
    /// Tracks a cluster of `n` nodes.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            started: 0,
            crashed: vec![false; n],
            crashed_count: 0,
            alive_ok: vec![false; n],
            alive_ok_count: 0,
            join_converged: None,
            updates: Vec::new(),
            crashes: Vec::new(),
            false_positives: BTreeSet::new(),
        }
    }

    /// Node `i` started (or restarted).
    pub fn node_started(&mut self, i: usize) {
        if self.crashed[i] {
            self.crashed[i] = false;
            self.crashed_count -= 1;
        } else {
            self.started += 1;
        }
    }

    /// Node `i`, named `name`, crashed at `now`.
    pub fn node_crashed(&mut self, now: Instant, i: usize, name: NodeName) {
        self.crashed[i] = true;
        self.crashed_count += 1;
        // A crashed node is not asked for its view: count it as informed everywhere.
        for u in &mut self.updates {
            u.spread.mark(i);
        }
        for c in &mut self.crashes {
            c.spread.mark(i);
        }
        let mut spread = Spread::new(self.n, now);
        for (j, _) in self.crashed.iter().enumerate().filter(|(_, c)| **c) {
            spread.mark(j);
        }
        self.crashes.push(CrashSpread {
            subject: name,
            spread,
        });
    }

    /// A member changed its metadata at `incarnation`.
    pub fn update_injected(
        &mut self,
        now: Instant,
        i: usize,
        subject: NodeName,
        incarnation: Incarnation,
    ) {
        let mut spread = Spread::new(self.n, now);
        spread.mark(i); // the subject knows its own update
        for (j, _) in self.crashed.iter().enumerate().filter(|(_, c)| **c) {
            spread.mark(j);
        }
        self.updates.push(UpdateSpread {
            subject,
            incarnation,
            spread,
        });
    }

    /// Node `i` holds `alive` members Alive.
    pub fn alive_seen(&mut self, now: Instant, i: usize, alive: usize) {
        if self.join_converged.is_some() || self.crashed_count > 0 || !self.crashes.is_empty() {
            return;
        }
        let ok = alive == self.n;
        if ok != self.alive_ok[i] {
            self.alive_ok[i] = ok;
            if ok {
                self.alive_ok_count += 1;
            } else {
                self.alive_ok_count -= 1;
            }
        }
        if self.started == self.n && self.alive_ok_count == self.n {
            self.join_converged = Some(now);
        }
    }

    /// Node `i` emitted `event`; `reachable` says whether its subject is live and reachable.
    pub fn event(&mut self, now: Instant, i: usize, event: &Event, reachable: bool) {
        match event {
            Event::Joined(m) | Event::Recovered(m) | Event::Updated(m) => {
                for u in self.updates.iter_mut().filter(|u| u.subject == m.name) {
                    if m.incarnation >= u.incarnation {
                        u.spread.mark(i);
                    }
                }
            }
            Event::Dead(m) => {
                let mut was_crash = false;
                for c in self.crashes.iter_mut().filter(|c| c.subject == m.name) {
                    was_crash = true;
                    c.spread.mark(i);
                }
                if reachable && !was_crash {
                    self.false_positives.insert(m.name.clone());
                }
            }
            Event::Suspect(_) | Event::Left(_) | Event::KvChanged { .. } | Event::User(_) => {}
        }
        for u in &mut self.updates {
            u.spread.check(now, self.n);
        }
        for c in &mut self.crashes {
            c.spread.check(now, self.n);
        }
    }

    /// The figures, once the run is over.
    pub fn report(
        &self,
        config: &SimConfig,
        epoch: Instant,
        final_views_agree: bool,
        final_views_correct: bool,
        steps: u64,
        totals: &crate::protocol::Stats,
    ) -> Report {
        let all_done = |secs: Vec<Option<f64>>| -> Option<f64> {
            if secs.is_empty() {
                return None;
            }
            secs.into_iter()
                .try_fold(0.0f64, |acc, s| s.map(|s| acc.max(s)))
        };
        let update_secs: Vec<Option<f64>> =
            self.updates.iter().map(|u| u.spread.seconds()).collect();
        let update_median = update_secs
            .iter()
            .copied()
            .collect::<Option<Vec<f64>>>()
            .and_then(median);
        let crash_secs: Vec<Option<f64>> =
            self.crashes.iter().map(|c| c.spread.seconds()).collect();
        Report {
            nodes: self.n,
            seed: config.seed,
            duration_s: config.duration.as_secs_f64(),
            join_converged_s: self.join_converged.map(|t| (t - epoch).as_secs_f64()),
            updates: self.updates.len(),
            updates_disseminated: update_secs.iter().filter(|s| s.is_some()).count(),
            dissemination_max_s: all_done(update_secs),
            dissemination_p50_s: update_median,
            crashes: self.crashes.len(),
            crashes_detected: crash_secs.iter().filter(|s| s.is_some()).count(),
            detect_all_max_s: all_done(crash_secs),
            false_positives: self.false_positives.len(),
            final_views_agree,
            final_views_correct,
            steps,
            datagram_bytes: totals.datagram_bytes_out,
            suspicions_raised: totals.suspicions_raised,
            refutations: totals.refutations,
            kv_writes: 0,
            kv_writes_backlogged: 0,
            kv_states_agree: true,
            kv_matches_writes: true,
            kv_live_keys: 0,
            push_pulls: totals.push_pulls_started,
            anti_entropy_bytes: totals.anti_entropy_bytes_out,
            fetch_bytes: totals.fetch_bytes_out,
            kv_entries_synced: totals.kv_entries_synced,
            unverified_records: totals.unverified_records,
            certificates_learned: totals.certificates_learned,
            parked_dropped: totals.parked_dropped,
            broadcasts_dropped: totals.broadcasts_dropped,
            faulty: 0,
            health: HealthFigures::default(),
            rogues: 0,
            forged_sent: 0,
            forged_refused: 0,
            forged_accepted: 0,
            forged_accepted_examples: Vec::new(),
            wall_s: 0.0,
        }
    }
}

/// The middle value (the mean of the middle two for an even count); `None` for none.
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
