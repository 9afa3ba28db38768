//! The driver's side of joining: resolving the seeds when the core begins a join attempt,
//! handing it their addresses, and telling the operator once per failed attempt what was
//! tried and why it failed.
//!
//! ```text
//!   core.poll_join_attempt() = n --> resolve seeds (a task; at once for bare addresses)
//!        JoinNews::Resolved ------> core.handle_seed_addrs(addrs) --> join requests
//!        JoinNews::Failed (a request to a seed address failed)
//!   every address failed / nothing resolved / attempt n+1 begins: one WARN for attempt n
//!   a seed answered, or a member's request reached this node: INFO "joined the cluster"
//! ```
//!
//! A deliberate first node (`--bootstrap`) is in its own cluster already while it asks its
//! seeds: its failed attempts are logged at DEBUG, not WARN, since being alone is expected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};

use crate::protocol::{NodeName, Swim};

use super::seed::{without_names, Seed, SeedLookup, SeedResolver};

/// Addresses learned to be this node's own (a join request to them reached this node).
const OWN_ADDRS_MAX: usize = 16;

/// What the driver hears back about a join attempt.
pub(super) enum JoinNews {
    /// The seeds' lookups finished.
    Resolved(Vec<SeedLookup>),
    /// A join request to `addr`, sent in `attempt`, failed.
    Failed {
        attempt: u32,
        addr: SocketAddr,
        error: String,
        /// The address turned out to be this node's own.
        self_dial: bool,
    },
}

/// One attempt, as far as the driver has seen it.
#[derive(Default)]
struct Round {
    attempt: u32,
    lookups: Option<Vec<SeedLookup>>,
    /// The addresses asked (this node's own left out).
    asked: Vec<SocketAddr>,
    failures: Vec<(SocketAddr, String)>,
    reported: bool,
}

/// Resolves seeds for the core's join attempts and reports on them.
pub(super) struct Joiner {
    seeds: Arc<[Seed]>,
    resolver: SeedResolver,
    news: mpsc::Sender<JoinNews>,
    /// The bound address: an address of another family cannot be reached from it.
    bound: SocketAddr,
    /// Addresses that reach this node: the advertised and bound ones, and any a join
    /// request found to be ours.
    own: Vec<SocketAddr>,
    /// A lookup is running (its answer serves whichever attempt is current when it comes).
    resolving: bool,
    round: Round,
    /// Whether the core has joined, for [`Node::is_joined`](super::Node::is_joined).
    joined: watch::Sender<bool>,
}

impl Joiner {
    pub(super) fn new(
        seeds: Vec<Seed>,
        resolver: SeedResolver,
        news: mpsc::Sender<JoinNews>,
        advertised: SocketAddr,
        bound: SocketAddr,
        joined: watch::Sender<bool>,
    ) -> Self {
        Joiner {
            seeds: seeds.into(),
            resolver,
            news,
            bound,
            own: vec![advertised, bound],
            resolving: false,
            round: Round::default(),
            joined,
        }
    }

    /// Tells the handles whether the core has joined, when that changed.
    pub(super) fn publish(&self, core: &Swim) {
        let joined = core.is_joined();
        self.joined
            .send_if_modified(|j| std::mem::replace(j, joined) != joined);
    }

    /// Where join request tasks report a failure.
    pub(super) fn news(&self) -> mpsc::Sender<JoinNews> {
        self.news.clone()
    }

    /// The core began `attempt`: the last one failed (say so, unless already said), and the
    /// seeds are looked up again.
    pub(super) fn attempt_begins(&mut self, core: &mut Swim, attempt: u32) {
        self.report(core, "no seed answered in time");
        self.round = Round {
            attempt,
            ..Round::default()
        };
        // Bare addresses need no lookup: their requests go out at once.
        if let Some(lookups) = without_names(&self.seeds) {
            self.resolved(core, lookups);
            return;
        }
        if self.resolving {
            return;
        }
        self.resolving = true;
        let (seeds, resolver, news) = (self.seeds.clone(), self.resolver.clone(), self.news());
        tokio::spawn(
            async move {
                let lookups = resolver.resolve(&seeds).await;
                let _ = news.send(JoinNews::Resolved(lookups)).await;
            }
            .in_current_span(),
        );
    }

    pub(super) fn on_news(&mut self, core: &mut Swim, news: JoinNews) {
        match news {
            JoinNews::Resolved(lookups) => {
                self.resolving = false;
                self.resolved(core, lookups);
            }
            JoinNews::Failed {
                attempt,
                addr,
                error,
                self_dial,
            } => {
                if self_dial && !self.own.contains(&addr) && self.own.len() < OWN_ADDRS_MAX {
                    self.own.push(addr);
                }
                if attempt != self.round.attempt || !core.is_seeking_join() {
                    return;
                }
                self.round.failures.push((addr, error));
                let round = &self.round;
                let all_failed = round.lookups.is_some()
                    && round
                        .asked
                        .iter()
                        .all(|a| round.failures.iter().any(|(f, _)| f == a));
                if all_failed {
                    self.report(core, "every seed address failed");
                }
            }
        }
    }

    /// The join completed with `peer`: a seed that answered (`via` "seed"), or a member
    /// whose request reached this node ("request").
    pub(super) fn joined_through(&mut self, core: &Swim, peer: &NodeName, via: &str) {
        self.round.reported = true;
        info!(%peer, via, attempt = self.round.attempt, members = core.alive_count(), "joined the cluster");
    }

    /// This attempt's lookups are in: hand the core their addresses.
    fn resolved(&mut self, core: &mut Swim, lookups: Vec<SeedLookup>) {
        if !core.is_seeking_join() {
            return;
        }
        let me = core.local_member().addr;
        let mut addrs = Vec::new();
        for a in lookups
            .iter()
            .filter_map(|l| l.addrs.as_ref().ok())
            .flatten()
        {
            if self.is_own(*a) {
                addrs.push(me);
            } else if !(addrs.contains(a) || self.bound.is_ipv4() && a.is_ipv6()) {
                addrs.push(*a);
            }
        }
        self.round.asked = addrs.iter().copied().filter(|a| *a != me).collect();
        self.round.lookups = Some(lookups);
        core.handle_seed_addrs(&addrs);
        if core.seeds_found_only_self() {
            self.report(
                core,
                "the seeds lead only to this node; waiting for another member \
                 (start the first node of a new cluster with --bootstrap)",
            );
        } else if self.round.asked.is_empty() {
            self.report(core, "no seed resolved to an address this node can reach");
        }
    }

    fn is_own(&self, a: SocketAddr) -> bool {
        self.own.contains(&a)
            || (self.bound.ip().is_unspecified()
                && a.port() == self.bound.port()
                && (a.ip().is_loopback() || a.ip().is_unspecified()))
    }

    /// One WARN per failed attempt: what was tried, what each address did, and when the
    /// next attempt comes.
    fn report(&mut self, core: &Swim, reason: &str) {
        if self.round.reported || self.round.attempt == 0 || !core.is_seeking_join() {
            return;
        }
        self.round.reported = true;
        let retry_in = core
            .next_join_attempt()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .map_or_else(
                || "-".to_string(),
                |d| format!("{:?}", Duration::from_millis(d.as_millis() as u64)),
            );
        let reason = if self.round.lookups.is_none() {
            "the seed names did not resolve in time"
        } else {
            reason
        };
        let tried = self.round.describe();
        if core.is_joined() {
            debug!(attempt = self.round.attempt, reason, %tried, %retry_in, "first node: no seed answered yet");
            return;
        }
        warn!(
            attempt = self.round.attempt,
            reason,
            %tried,
            %retry_in,
            "could not join the cluster"
        );
    }
}

impl Round {
    /// `seed -> addr (outcome), ...; seed -> error`, for the log.
    fn describe(&self) -> String {
        let Some(lookups) = &self.lookups else {
            return "(lookups still running)".to_string();
        };
        let outcome = |a: &SocketAddr| {
            match self.failures.iter().find(|(f, _)| f == a) {
                Some((_, e)) => {
                    // Transport errors start with the peer: once in the line is enough.
                    let e = e.strip_prefix(&format!("{a}: ")).unwrap_or(e);
                    format!("{a} ({e})")
                }
                None if self.asked.contains(a) => format!("{a} (no answer)"),
                None => format!("{a} (skipped: this node, or another address family)"),
            }
        };
        let parts: Vec<String> = lookups
            .iter()
            .map(|l| match (&l.seed, &l.addrs) {
                (Seed::Addr(a), _) => outcome(a),
                (seed, Ok(addrs)) if addrs.is_empty() => format!("{seed} -> no addresses"),
                (seed, Ok(addrs)) => format!(
                    "{seed} -> {}",
                    addrs.iter().map(outcome).collect::<Vec<_>>().join(", ")
                ),
                (seed, Err(e)) => format!("{seed} -> {e}"),
            })
            .collect();
        parts.join("; ")
    }
}
