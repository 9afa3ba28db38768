//! What a simulated run is: its size, seed, protocol settings, network, and the faults and
//! workloads injected on its timeline.

use std::time::Duration;

use super::faults::FaultPlan;
use super::network::NetworkConfig;
use crate::protocol::ValidConfig;

/// A partition: `fraction` of the nodes on one side from `at` until `heal_at`.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionPlan {
    /// Share of nodes on the first side, `0.0..1.0`.
    pub fraction: f64,
    /// When it starts (virtual time since the run began).
    pub at: Duration,
    /// When it heals.
    pub heal_at: Duration,
}

/// Sustained key/value writes from many owners.
#[derive(Clone, Debug, PartialEq)]
pub struct KvWorkload {
    /// How many nodes write (the first ones, by index).
    pub writers: usize,
    /// Writes per second over the whole cluster.
    pub writes_per_s: f64,
    /// When writes start.
    pub from: Duration,
    /// When writes stop; the run then goes quiet until its end.
    pub until: Duration,
    /// Keys each writer cycles through (so values are overwritten).
    pub keys_per_writer: usize,
    /// Share of writes that are deletes.
    pub delete_fraction: f64,
    /// Value length in bytes.
    pub value_len: usize,
}

/// Everything a run depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Seed for every random choice.
    pub seed: u64,
    /// Protocol settings of every node.
    pub protocol: ValidConfig,
    /// The network's behaviour.
    pub network: NetworkConfig,
    /// Nodes start one after another over this window, each joining through up to three
    /// nodes already started.
    pub join_spread: Duration,
    /// Nodes crashed (dropped without leaving) at `crash_at`.
    pub crashes: usize,
    /// When the crashes happen.
    pub crash_at: Duration,
    /// When set, crashed nodes restart (with no state) this long after crashing.
    pub restart_after: Option<Duration>,
    /// An optional partition.
    pub partition: Option<PartitionPlan>,
    /// Metadata updates injected to time dissemination.
    pub updates: usize,
    /// When the first update is injected; the others follow one per second.
    pub updates_at: Duration,
    /// How long the run lasts.
    pub duration: Duration,
    /// Optional key/value writes.
    pub kv: Option<KvWorkload>,
    /// Optional gray failures: lossy, flapping and stalling nodes, cut links.
    pub faults: Option<FaultPlan>,
    /// Rogue members (the last nodes by index): valid members that also send forgeries
    /// of every kind to honest members throughout the run (see [`super::rogue`]).
    pub rogue: usize,
}

impl SimConfig {
    /// A run of `nodes` nodes from `seed` with the lan preset and a quiet network.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            protocol: ValidConfig::default(),
            network: NetworkConfig::default(),
            join_spread: Duration::from_secs(1),
            crashes: 0,
            crash_at: Duration::from_secs(30),
            restart_after: None,
            partition: None,
            updates: 5,
            updates_at: Duration::from_secs(15),
            duration: Duration::from_secs(60),
            kv: None,
            faults: None,
            rogue: 0,
        }
    }
}
