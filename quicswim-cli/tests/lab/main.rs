//! The multi-host lab: real agents in containers, each with its own address on a private
//! Docker network and its own certificate, seeds found by one DNS name; faults applied from
//! outside the agents (`docker kill`, `docker stop`, `docker restart`, nftables rules in their
//! network namespaces); what must hold checked from the agents' own APIs and monitor streams.
//!
//! ```text
//!   host (this test) ──HTTP──> node1 … nodeN   each: quicswim agent in an image FROM scratch,
//!     │  docker, nsenter+nft      │ QUIC+mTLS   --join quicswim:7946 (every node's alias)
//!     └───────────────────────────┴──── bridge network quicswim-lab-<run> ───────────────────
//! ```
//!
//! One test runs the scenarios in order, since their timings must not share the machine:
//!
//! 1. form: all N see all N alive, `/ready` 200 everywhere;
//! 2. crash one (`docker kill`): Dead everywhere within the lan preset's bound; restarted, it
//!    is Alive again with a higher incarnation and its new key/value writes win everywhere;
//! 3. graceful stop (`docker stop`): Left everywhere within 2 s;
//! 4. partition 2 | 3 for 60 s: each side holds the other Suspect or Dead; healed, views
//!    agree again within 60 s with no operator action, and writes from both sides are on
//!    every node;
//! 5. 10 % loss on every node: no false Dead, no suspicion of a live node longer than one
//!    suspicion timeout, key/value writes and user events reach every node; 30 % loss
//!    (full run only) is measured, not asserted;
//! 6. rolling restart (full run only), each node with a newly issued certificate: no false
//!    Dead, every key written before and during the roll on every node at the end.
//!
//! Each scenario prints its figures (run with `--nocapture` to see them).
//!
//! | variable | effect |
//! |----------|--------|
//! | (none) | 5 nodes, scenarios 1-4 and 45 s of 10 % loss: what CI runs, a few minutes |
//! | `QUICSWIM_LAB_FULL=1` | 16 nodes, 5 min at 10 % then at 30 % loss, rolling restart |
//! | `QUICSWIM_LAB_NODES=N` | N nodes (3..=64) |
//! | `QUICSWIM_LAB_LOSS_SECS=S` | each loss phase lasts S seconds |
//! | `QUICSWIM_LAB_REQUIRED=1` | no docker, nft or root is a failure, not a skip (CI sets it) |
#![cfg(unix)]

#[path = "../common/mod.rs"]
mod common;

mod api;
mod cluster;
mod faults;
mod observe;
mod scenarios;
mod stress;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use api::{Api, View};
use cluster::Lab;
use common::docker::{build_static_image, docker_unavailable};
use observe::Watcher;

/// What one run covers.
pub struct Plan {
    pub nodes: usize,
    pub full: bool,
    pub loss: Duration,
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
    )
}

impl Plan {
    fn from_env() -> Plan {
        let full = std::env::var("QUICSWIM_LAB_FULL").is_ok_and(|v| v == "1");
        let nodes = env_number("QUICSWIM_LAB_NODES").unwrap_or(if full { 16 } else { 5 });
        assert!(
            (3..=64).contains(&nodes),
            "QUICSWIM_LAB_NODES={nodes}: the lab runs 3 to 64 nodes"
        );
        let loss = env_number("QUICSWIM_LAB_LOSS_SECS").unwrap_or(if full { 300 } else { 45 });
        Plan {
            nodes: nodes as usize,
            full,
            loss: Duration::from_secs(loss),
        }
    }
}

/// The longest a live node may stay suspected: memberlist's minimum suspicion timeout for
/// `n` members, `4 · max(1, log10 n) · 1 s` (the lan preset's own minimum is half that, for
/// a suspicion three members confirmed; a live node refutes well within either).
pub fn lan_suspicion_timeout(n: usize) -> Duration {
    Duration::from_secs_f64(4.0 * (n as f64).log10().max(1.0))
}

/// The slowest acceptable time for a crash to be held Dead by every live node with the lan
/// preset: the simulator's bound (quicswim-proto/tests/sim.rs, `DETECTION_BOUND_S`).
pub const LAN_DETECTION_BOUND: Duration = Duration::from_secs(20);

/// Everything a scenario works with.
pub struct Ctx {
    pub lab: Lab,
    pub api: Api,
    pub watcher: Watcher,
    pub plan: Plan,
    /// Lines of figures, printed as they come and again at the end.
    pub figures: Vec<String>,
}

impl Ctx {
    pub fn names(&self) -> Vec<String> {
        self.lab.nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn members(&self, i: usize) -> Result<Vec<View>, String> {
        self.api.members(&self.lab.nodes[i].api())
    }

    /// Node `i`'s view of `who`: (state, incarnation).
    pub fn view_of(&self, i: usize, who: &str) -> Option<(String, u64)> {
        let members = self.members(i).ok()?;
        members
            .into_iter()
            .find(|m| m.name == who)
            .map(|m| (m.state, m.incarnation))
    }

    /// Whether every node in `observers` holds exactly `alive` members, all Alive.
    pub fn all_alive(&self, observers: &[usize], alive: usize) -> bool {
        observers.iter().all(|&i| {
            self.members(i).is_ok_and(|m| {
                m.iter().filter(|v| v.state == "alive").count() == alive && m.len() >= alive
            })
        })
    }

    /// Starts node `i` again after a kill or a stop, and follows its new monitor stream.
    pub fn start(&mut self, i: usize) {
        self.lab.start(i);
        self.watcher.reopen(&self.lab, i);
    }

    /// Restarts node `i` (a graceful stop, then a start) and follows its new monitor stream.
    pub fn restart(&mut self, i: usize) {
        self.lab.restart(i);
        self.watcher.reopen(&self.lab, i);
    }

    pub fn figure(&mut self, scenario: &str, line: String) {
        let line = format!("{scenario}: {line}");
        eprintln!("lab: {line}");
        self.figures.push(line);
    }

    /// Polls `cond` every 250 ms until it holds and returns how long that took; at `within`
    /// panics with `what`, every node's view and the last lines of its log.
    pub fn wait_until(
        &self,
        what: &str,
        within: Duration,
        cond: impl FnMut(&Ctx) -> bool,
    ) -> Duration {
        self.poll_until(within, cond).unwrap_or_else(|| {
            panic!(
                "timed out after {within:?} waiting for {what}\n{}",
                self.report()
            )
        })
    }

    /// Polls `cond` every 250 ms until it holds: how long that took, or None at `within`.
    pub fn poll_until(
        &self,
        within: Duration,
        mut cond: impl FnMut(&Ctx) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(250)); // poll interval, not a settle wait
        }
        Some(start.elapsed())
    }

    /// Every node's view and log tail, for failure messages.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.lab.nodes.iter().enumerate() {
            let view = match self.members(i) {
                Ok(m) => m
                    .iter()
                    .map(|v| format!("{}={}@{}", v.name, v.state, v.incarnation))
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(e) => format!("(no answer: {e})"),
            };
            let _ = write!(
                out,
                "\n{} ({}): {view}\n{}",
                node.name,
                node.ip,
                self.lab.log_tail(i, 15)
            );
        }
        out
    }
}

/// Whether the lab can run here; when it cannot, the reason, and the test is skipped unless
/// `QUICSWIM_LAB_REQUIRED=1`, which makes it fail.
fn lab_unavailable() -> Option<String> {
    docker_unavailable().or_else(faults::unavailable)
}

#[test]
fn cluster_of_containers_survives_crashes_partitions_loss_and_restarts() {
    if let Some(reason) = lab_unavailable() {
        let required = std::env::var("QUICSWIM_LAB_REQUIRED").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "the lab is required (QUICSWIM_LAB_REQUIRED=1): {reason}"
        );
        eprintln!("lab: skipped: {reason} (QUICSWIM_LAB_REQUIRED=1 makes this a failure)");
        return;
    }
    let plan = Plan::from_env();
    eprintln!(
        "lab: {} nodes, {} run, loss phases of {:?}",
        plan.nodes,
        if plan.full { "full" } else { "CI" },
        plan.loss
    );
    let image = build_static_image(&format!("quicswim-lab:{}", std::process::id()), "lab");
    let started = Instant::now();
    let mut lab = Lab::new(&image.0);
    lab.add_nodes(plan.nodes);
    let api = Api::new();
    let watcher = Watcher::start(&api, &lab);
    let mut ctx = Ctx {
        lab,
        api,
        watcher,
        plan,
        figures: Vec::new(),
    };

    scenarios::form(&mut ctx, started);
    scenarios::crash_and_restart(&mut ctx);
    scenarios::graceful_stop(&mut ctx);
    scenarios::partition_and_heal(&mut ctx);
    stress::loss(&mut ctx, 10);
    if ctx.plan.full {
        stress::loss(&mut ctx, 30);
        stress::rolling_restart(&mut ctx);
    }

    eprintln!(
        "lab: all scenarios held with {} nodes in {:.0?}; figures:",
        ctx.plan.nodes,
        started.elapsed()
    );
    for line in &ctx.figures {
        eprintln!("  {line}");
    }
}
