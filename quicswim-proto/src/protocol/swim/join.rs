//! Joining: asking seeds for the cluster's state until one answers, in attempts spaced by a
//! capped exponential backoff with jitter.
//!
//! ```text
//!   join(addrs) ------------------> attempt 1: PushPull{join} to each seed address
//!   join_resolving() -> poll_join_attempt() = 1 -> caller resolves names
//!                        handle_seed_addrs(addrs) -> PushPull{join} to each address
//!        |
//!        | RetryJoin{attempt} after join_retry_interval, then doubling (jittered, capped
//!        | at join_retry_max), until a PushPullReply merges or a member's push-pull
//!        | reaches this node (it joined us)
//!        v
//!   attempt 2, 3, ...  (the same, with the addresses resolved again)
//! ```
//!
//! Seeds that lead only back to this node are no cluster: the attempts go on, so two nodes
//! that each found only themselves (two pods of a StatefulSet started together, each seeing
//! only its own DNS record) find each other once the names resolve to both, instead of
//! staying two clusters of one. Only a deliberate first node (`first_node`, the agent's
//! `--bootstrap`) starts a cluster before any seed answers; it still goes on asking its seeds
//! until it has a live peer, so two first nodes merge.
//!
//! The core does no name resolution: a caller whose seeds are names (whose addresses come and
//! go, as a Kubernetes headless service's do) starts with
//! [`join_resolving`](Swim::join_resolving), resolves them whenever
//! [`poll_join_attempt`](Swim::poll_join_attempt) asks, and hands the addresses in with
//! [`handle_seed_addrs`](Swim::handle_seed_addrs). Timing stays here, drawn from the core's
//! seeded RNG, so a simulation replays it exactly.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use tracing::debug;

use super::super::member::State;
use super::super::timer::Timer;
use super::{Destination, Swim};

/// Every wait but the first is between three quarters and all of its backoff, so
/// nodes that failed together (a seed restarting under a whole cluster) do not come back in
/// lockstep. The first retry keeps its exact interval: nodes start at random phases anyway.
const JOIN_JITTER: f64 = 0.25;

/// Where the join stands.
#[derive(Debug, Default)]
pub(super) struct JoinProgress {
    /// Attempts begun since the last `join`/`join_resolving` (0: none).
    pub(super) attempt: u32,
    /// The caller resolves the seeds before each attempt (see the module docs).
    resolving: bool,
    /// Attempts go on: no seed has answered, no member has reached this node, and (for a
    /// first node) no live peer is known.
    seeking: bool,
    /// A deliberate first node: joined from the start, seeking a peer all the same.
    first_node: bool,
    /// The last addresses handed in were this node's own and nothing else.
    only_self: bool,
    /// An attempt began that the caller has not yet been told of.
    attempt_due: bool,
    /// When the next attempt begins, while seeking.
    next_at: Option<Instant>,
}

impl Swim {
    /// Joins through `seeds` (addresses only); with none, this node starts a cluster at once.
    /// This node's own address among them is skipped; if nothing else is left, the attempts
    /// go on all the same (see the module docs). Retries go to the same addresses.
    pub fn join(&mut self, now: Instant, seeds: &[SocketAddr]) {
        self.join = JoinProgress::default();
        self.joined = seeds.is_empty();
        if self.joined {
            return;
        }
        self.join.seeking = true;
        self.join.only_self = !self.take_seed_addrs(seeds);
        self.begin_join_attempt(now);
    }

    /// Joins through seeds whose addresses the caller finds anew for every attempt: see
    /// [`poll_join_attempt`](Self::poll_join_attempt). Unjoined until a seed answers or a
    /// member joins this node, however often the seeds lead only back here, unless
    /// `first_node`: then joined at once (a cluster of one), the attempts going on until a
    /// live peer is known.
    pub fn join_resolving(&mut self, now: Instant, first_node: bool) {
        self.join = JoinProgress {
            resolving: true,
            seeking: true,
            first_node,
            ..JoinProgress::default()
        };
        self.joined = first_node;
        self.seeds.clear();
        self.begin_join_attempt(now);
    }

    /// A join attempt has begun and needs the seeds' addresses now (after
    /// [`join_resolving`](Self::join_resolving) only): resolve them and call
    /// [`handle_seed_addrs`](Self::handle_seed_addrs). Returns the attempt's number, from 1.
    #[must_use]
    pub fn poll_join_attempt(&mut self) -> Option<u32> {
        if std::mem::take(&mut self.join.attempt_due) && self.is_seeking_join() {
            return Some(self.join.attempt);
        }
        None
    }

    /// The addresses the seeds resolved to for the current attempt: each is asked for the
    /// cluster's state. This node's own address among them is skipped; if nothing else is
    /// left (a StatefulSet's pod that sees only its own record), or the list is empty
    /// (nothing resolved yet), the next attempt resolves them again. Ignored once no longer
    /// seeking.
    pub fn handle_seed_addrs(&mut self, addrs: &[SocketAddr]) {
        if !self.is_seeking_join() {
            return;
        }
        let listed_self = addrs.contains(&self.me.addr);
        let any = self.take_seed_addrs(addrs);
        self.join.only_self = listed_self && !any;
        if self.join.only_self {
            debug!(
                attempt = self.join.attempt,
                "the seeds lead only to this node"
            );
        }
        self.send_join_requests();
    }

    /// Whether join attempts go on: no seed has answered and no member has joined this
    /// node; for a first node, no live peer known yet.
    pub fn is_seeking_join(&self) -> bool {
        self.join.seeking && !(self.join.first_node && self.has_live_peer())
    }

    /// Whether the last seed addresses handed in led only back to this node (and the join
    /// still waits): no other member to ask yet.
    pub fn seeds_found_only_self(&self) -> bool {
        self.join.seeking && self.join.only_self
    }

    /// The attempt under way (0 before any join).
    pub fn join_attempt(&self) -> u32 {
        self.join.attempt
    }

    /// When the next join attempt begins if no seed answers first; `None` once no longer
    /// seeking.
    pub fn next_join_attempt(&self) -> Option<Instant> {
        self.join.next_at.filter(|_| self.is_seeking_join())
    }

    /// The join is complete: a seed answered, or a member's push-pull reached this node.
    /// Returns whether it was still seeking (this input completed it).
    pub(super) fn complete_join(&mut self) -> bool {
        self.joined = true;
        self.join.only_self = false;
        std::mem::take(&mut self.join.seeking)
    }

    fn has_live_peer(&self) -> bool {
        self.count(State::Alive) + self.count(State::Suspect) > 0
    }

    /// Keeps `addrs` less this node's own and duplicates; whether any are left.
    fn take_seed_addrs(&mut self, addrs: &[SocketAddr]) -> bool {
        self.seeds.clear();
        for a in addrs {
            if *a != self.me.addr && !self.seeds.contains(a) {
                self.seeds.push(*a);
            }
        }
        !self.seeds.is_empty()
    }

    fn begin_join_attempt(&mut self, now: Instant) {
        self.join.attempt = self.join.attempt.saturating_add(1);
        let wait = self.join_backoff();
        self.join.next_at = Some(now + wait);
        self.timers.insert(
            now + wait,
            Timer::RetryJoin {
                attempt: self.join.attempt,
            },
        );
        if self.join.resolving {
            self.join.attempt_due = true;
        } else {
            self.send_join_requests();
        }
    }

    /// How long the current attempt waits for an answer: `join_retry_interval` after the
    /// first, then doubling up to `join_retry_max`, jittered down by up to a quarter.
    fn join_backoff(&mut self) -> Duration {
        let first = self.config.join_retry_interval;
        let max = self.config.join_retry_max;
        if self.join.attempt <= 1 {
            return first.min(max);
        }
        let doublings = self.join.attempt - 1;
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        let wait = first.saturating_mul(factor).min(max);
        wait.mul_f64(1.0 - JOIN_JITTER * self.rng.random::<f64>())
    }

    fn send_join_requests(&mut self) {
        for addr in self.seeds.clone() {
            self.send_push_pull(Destination { addr, name: None }, true);
        }
    }

    /// The wait for an answer to `attempt` is over: begin the next one, unless a seed
    /// answered or another join began since.
    pub(super) fn retry_join(&mut self, now: Instant, attempt: u32) {
        if attempt != self.join.attempt {
            return;
        }
        if !self.is_seeking_join() {
            // A first node that found a live peer is done for good.
            self.join.seeking = false;
            return;
        }
        debug!(
            attempt,
            seeds = self.seeds.len(),
            only_self = self.join.only_self,
            "no seed answered yet; retrying join"
        );
        self.begin_join_attempt(now);
    }
}
