//! Whole-cluster benchmarks: N real nodes (QUIC + mutual TLS on 127.0.0.1) in one process,
//! measured in phases. `quicswim bench` is the front end; everything measured lives here.
//!
//! ```text
//!   start seeds ─> join ─> broadcast ─> steady ─> detect ─> kv ─> shut down
//!                  │        │            │         │         │
//!                  │        │            │         │         └ paced writes over the live
//!                  │        │            │         │           nodes: updates/s delivered
//!                  │        │            │         │           to all, delivery lag
//!                  │        │            │         └ crash one node (no leave): time until
//!                  │        │            │           every other holds it Dead
//!                  │        │            └ idle window: CPU, bytes and datagrams per node
//!                  │        └ set_meta on one node at a time: time until all others have it
//!                  └ the rest start at once through the seeds: time until all see N Alive
//! ```
//!
//! Key/value writes come last: at a rate above what the cluster carries they leave queues
//! and anti-entropy backlogs behind for minutes, which would distort any phase after them.
//!
//! Every figure comes from the nodes' own event streams, each event stamped with
//! [`Instant::now`](std::time::Instant::now) by a listener task as it arrives (see
//! `recorder.rs`), and from the nodes' counters. The listeners run on the same runtime as the
//! nodes, so a stamp includes the time the listener waited to be scheduled: on a loaded
//! machine, latencies read high rather than low.

mod broadcast;
mod cluster;
mod cpu;
mod detect;
mod join;
mod kv;
mod output;
mod recorder;
pub mod scaling;
mod stats;
mod steady;
mod svg;

use std::time::{Duration, Instant};

use serde::Serialize;

use quicswim::protocol::{probe_pass, push_pull_scale, Config, Profile, ValidConfig};
use quicswim::transport::TransportConfig;

pub use self::broadcast::BroadcastResult;
pub use self::detect::DetectResult;
pub use self::join::JoinResult;
pub use self::kv::KvResult;
pub use self::steady::SteadyResult;

use self::cluster::BenchCluster;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Nodes in the cluster (at least 2).
    pub nodes: usize,
    /// Nodes that start first and that the others join through (at least 1, below `nodes`).
    pub seeds: usize,
    /// The protocol preset, for the report.
    pub profile: Profile,
    /// Protocol settings of every node.
    pub protocol: ValidConfig,
    /// Transport settings of every node (`bind` is replaced by 127.0.0.1:0).
    pub transport: TransportConfig,
    /// Metadata updates timed in the broadcast phase (one at a time).
    pub updates: usize,
    /// Time from the end of the join to the start of the steady window, so join-time
    /// exchanges are over and periodic ones have begun.
    pub warmup: Duration,
    /// Length of the steady-state window.
    pub steady: Duration,
    /// Length of the key/value write window (zero skips the phase).
    pub kv_window: Duration,
    /// Key/value writes per second over the whole cluster.
    pub kv_rate: f64,
    /// Bytes of each written value.
    pub kv_value_len: usize,
    /// How long after the write window deliveries are still waited for.
    pub kv_drain: Duration,
    /// Bound on every open-ended wait (join, one update, detection, queue drains).
    pub phase_timeout: Duration,
}

/// The default wait between the join and the steady window: one probe pass
/// ([`probe_pass`]: `2 · (nodes - 1) · probe_interval`), at least 15 s. Until each node has
/// probed every member once, first contacts still open connections (a TLS handshake each),
/// and the lan preset's first periodic full-state exchange comes after 15 s.
pub fn steady_warmup(nodes: usize, protocol: &Config) -> Duration {
    probe_pass(nodes, protocol).max(Duration::from_secs(15))
}

/// The default steady window: one periodic full-state exchange interval at this size
/// (`push_pull_interval`, longer above 32 nodes; see [`push_pull_scale`]), so each node's
/// exchange counts once, at its average rate. Nodes started together keep their exchanges
/// within one band of that interval, so a shorter window counts all of them or none.
pub fn steady_window(nodes: usize, protocol: &Config) -> Duration {
    push_pull_scale(protocol.push_pull_interval, nodes).max(Duration::from_secs(30))
}

impl BenchConfig {
    /// Defaults for `nodes` nodes with the lan preset.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            seeds: 1,
            profile: Profile::Lan,
            protocol: Profile::Lan.config(),
            transport: TransportConfig::default(),
            updates: 10,
            warmup: steady_warmup(nodes, &Config::lan()),
            steady: steady_window(nodes, &Config::lan()),
            kv_window: Duration::from_secs(10),
            kv_rate: 5000.0,
            kv_value_len: 16,
            kv_drain: Duration::from_secs(10),
            phase_timeout: Duration::from_secs(60),
        }
    }

    /// Checks the settings against each other and the node's limits.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::Config(reason));
        if self.nodes < 2 {
            return bad(format!("nodes must be at least 2 (got {})", self.nodes));
        }
        if self.seeds == 0 || self.seeds >= self.nodes {
            return bad(format!(
                "seeds must be in 1..{} (got {})",
                self.nodes, self.seeds
            ));
        }
        self.transport
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        if self.steady.is_zero() {
            return bad("the steady window must be above zero".into());
        }
        if !self.kv_window.is_zero() {
            if !(self.kv_rate.is_finite() && self.kv_rate > 0.0) {
                return bad(format!("kv rate must be above zero (got {})", self.kv_rate));
            }
            let writes = kv::planned_writes(self.kv_rate, self.kv_window);
            let per_node = writes.div_ceil(self.nodes);
            if per_node > self.protocol.kv.keys_per_node_max {
                return bad(format!(
                    "{writes} writes over {} nodes is {per_node} keys per node, over the limit of \
                     {} (lower the kv rate or window)",
                    self.nodes, self.protocol.kv.keys_per_node_max
                ));
            }
            if self.kv_value_len > self.protocol.kv.value_len_max {
                return bad(format!(
                    "kv value length {} is over the limit of {} bytes",
                    self.kv_value_len, self.protocol.kv.value_len_max
                ));
            }
        }
        Ok(())
    }
}

/// Why a benchmark could not run. Nodes started so far are shut down.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Settings out of range.
    #[error("bench settings: {0}")]
    Config(String),
    /// Certificates could not be made.
    #[error("certificates: {0}")]
    Tls(#[from] quicswim::tls::Error),
    /// A node could not start or stopped under the bench.
    #[error("node {node}: {source}")]
    Node {
        /// Which node.
        node: String,
        /// Why.
        source: quicswim::node::Error,
    },
    /// The raw samples could not be written.
    #[error("writing {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A plot could not be drawn; none of the run's files was written.
    #[error("drawing {path}: {message}")]
    Plot {
        /// The file it was for.
        path: String,
        /// Why, as the plotting library put it.
        message: String,
    },
}

/// Where a run is, for a progress display. Called from the runtime; keep it quick.
pub trait Observer: Send + Sync {
    /// A phase begins; `planned` is its length when it is a fixed window.
    fn phase_started(&self, phase: Phase, planned: Option<Duration>);
    /// A phase moved on: how far through it is (0..=1) when that is known, and a short
    /// status line.
    fn phase_progress(&self, phase: Phase, fraction: Option<f64>, status: &str);
    /// A phase ended, with a one-line summary.
    fn phase_finished(&self, phase: Phase, summary: &str);
}

/// The phases, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Certificates and seed nodes.
    Setup,
    /// Every other node joins.
    Join,
    /// Metadata updates timed to every node.
    Broadcast,
    /// Warm-up, then the idle window.
    Steady,
    /// One node crashes.
    Detect,
    /// Paced key/value writes.
    Kv,
    /// Every node stops.
    Teardown,
}

impl Phase {
    /// Its name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Join => "join",
            Phase::Broadcast => "broadcast",
            Phase::Steady => "steady",
            Phase::Detect => "detect",
            Phase::Kv => "kv",
            Phase::Teardown => "teardown",
        }
    }
}

/// The figures of one run. Seconds are wall time on this machine; `None` (JSON `null`)
/// means the thing measured did not happen within its bound.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Seed nodes.
    pub seeds: usize,
    /// Protocol preset name.
    pub profile: String,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// Join: time from the first joiner's start until every node held all N Alive.
    pub join_converged_s: Option<f64>,
    /// Broadcast: median over updates of the time until every other node had it.
    pub broadcast_all_p50_s: Option<f64>,
    /// Broadcast: 90th percentile of the same.
    pub broadcast_all_p90_s: Option<f64>,
    /// Broadcast: the slowest update.
    pub broadcast_all_max_s: Option<f64>,
    /// Detection: time from the crash until every other node held the node Dead.
    pub detect_all_s: Option<f64>,
    /// Detection: time from the crash until the first node suspected it.
    pub detect_first_suspect_s: Option<f64>,
    /// Steady: process CPU time per node per second of the window, in milliseconds.
    pub cpu_ms_per_node_s: f64,
    /// Steady: bytes on the wire sent per node per second, from QUIC's own counters (UDP
    /// payloads: QUIC headers, acknowledgements, keep-alives and handshakes included; IP and
    /// UDP headers not).
    pub bytes_per_node_s: f64,
    /// Steady: UDP datagrams (packets) sent per node per second, from QUIC's own counters.
    pub packets_per_node_s: f64,
    /// Steady: application payload bytes sent per node per second (SWIM datagrams and
    /// stream frames, before QUIC).
    pub payload_bytes_per_node_s: f64,
    /// Steady: application datagrams (SWIM messages) sent per node per second.
    pub datagrams_per_node_s: f64,
    /// Key/value: writes delivered to every node (within the drain) per second of the window.
    pub kv_updates_per_s: Option<f64>,
    /// Key/value: 99th percentile of the delay from `set` to `KvChanged`, over every
    /// (write, other node) pair; `None` when more than 1% of pairs were never delivered.
    pub kv_lag_p99_s: Option<f64>,
    /// Per phase, in full.
    pub join: JoinResult,
    /// Broadcast phase in full.
    pub broadcast: BroadcastResult,
    /// Steady phase in full.
    pub steady: SteadyResult,
    /// Detection phase in full.
    pub detect: DetectResult,
    /// Key/value phase in full (absent when skipped), run with the crashed node gone.
    pub kv: Option<KvResult>,
    /// Suspicions of live members seen on any node over the whole run (the crashed node
    /// excluded): false positives, or suspicions refuted in time.
    pub false_suspicions: u64,
    /// The same, by the phase they were raised in.
    pub false_suspicions_by_phase: PhaseCounts,
    /// Events the listeners missed because they fell behind (their figures may be off).
    pub events_lost: u64,
    /// Wall time of the whole run.
    pub wall_s: f64,
}

/// A count per phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseCounts {
    /// Join phase.
    pub join: u64,
    /// Broadcast phase.
    pub broadcast: u64,
    /// Steady phase, warm-up included.
    pub steady: u64,
    /// Detection phase.
    pub detect: u64,
    /// Key/value phase, drain included.
    pub kv: u64,
}

/// A run's figures and its raw samples.
pub struct BenchOutcome {
    /// The figures.
    pub report: BenchReport,
    /// The raw samples, for [`BenchOutcome::write_dir`].
    pub samples: output::Samples,
}

impl BenchOutcome {
    /// Writes the raw samples as CSV files, the plots as SVG and the report as JSON into
    /// `dir` (created if missing). Returns the files written.
    pub fn write_dir(&self, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, Error> {
        output::write_dir(dir, &self.report, &self.samples)
    }
}

/// Runs every phase on the current tokio runtime (it should be multi-threaded).
/// `config` is checked by [`BenchConfig::validate`] where it is made.
pub async fn run(config: &BenchConfig, observer: &dyn Observer) -> Result<BenchOutcome, Error> {
    let started = Instant::now();
    observer.phase_started(Phase::Setup, None);
    let mut cluster = BenchCluster::setup(config, observer).await?;
    observer.phase_finished(
        Phase::Setup,
        &format!(
            "{} certificates issued, {} seed(s) up",
            config.nodes, config.seeds
        ),
    );
    let result = run_phases(config, &mut cluster, observer).await;
    observer.phase_started(Phase::Teardown, None);
    cluster.shutdown().await;
    observer.phase_finished(Phase::Teardown, "every node stopped");
    let (mut report, samples) = result?;
    report.wall_s = started.elapsed().as_secs_f64();
    Ok(BenchOutcome { report, samples })
}

async fn run_phases(
    config: &BenchConfig,
    cluster: &mut BenchCluster,
    observer: &dyn Observer,
) -> Result<(BenchReport, output::Samples), Error> {
    let mut marks = [Instant::now(); 6];
    let (join, join_samples) = join::run(cluster, config, observer).await?;
    marks[1] = Instant::now();
    let (broadcast, broadcast_samples) = broadcast::run(cluster, config, observer).await?;
    marks[2] = Instant::now();
    let (steady, steady_samples) = steady::run(cluster, config, observer, join.finished_at).await?;
    marks[3] = Instant::now();
    let (detect, detect_samples) = detect::run(cluster, config, observer).await?;
    marks[4] = Instant::now();
    let (kv, kv_samples) = if config.kv_window.is_zero() {
        (None, None)
    } else {
        let (result, samples) = kv::run(cluster, config, observer).await?;
        (Some(result), Some(samples))
    };
    marks[5] = Instant::now();
    let victim = detect.victim_index;
    let report = BenchReport {
        nodes: config.nodes,
        seeds: config.seeds,
        profile: config.profile.to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        join_converged_s: join.converged_s,
        broadcast_all_p50_s: broadcast.all_p50_s,
        broadcast_all_p90_s: broadcast.all_p90_s,
        broadcast_all_max_s: broadcast.all_max_s,
        detect_all_s: detect.all_dead_s,
        detect_first_suspect_s: detect.first_suspect_s,
        cpu_ms_per_node_s: steady.cpu_ms_per_node_s,
        bytes_per_node_s: steady.wire_bytes_out_per_node_s,
        packets_per_node_s: steady.packets_out_per_node_s,
        payload_bytes_per_node_s: steady.payload_bytes_out_per_node_s,
        datagrams_per_node_s: steady.datagrams_out_per_node_s,
        kv_updates_per_s: kv.as_ref().and_then(|k| k.updates_per_s),
        kv_lag_p99_s: kv.as_ref().and_then(|k| k.lag_p99_s),
        join,
        broadcast,
        steady,
        detect,
        kv,
        false_suspicions: cluster.suspicions_excluding(victim, marks[0], marks[5]),
        false_suspicions_by_phase: PhaseCounts {
            join: cluster.suspicions_excluding(victim, marks[0], marks[1]),
            broadcast: cluster.suspicions_excluding(victim, marks[1], marks[2]),
            steady: cluster.suspicions_excluding(victim, marks[2], marks[3]),
            detect: cluster.suspicions_excluding(victim, marks[3], marks[4]),
            kv: cluster.suspicions_excluding(victim, marks[4], marks[5]),
        },
        events_lost: cluster.events_lost(),
        wall_s: 0.0,
    };
    let samples = output::Samples {
        join: join_samples,
        broadcast: broadcast_samples,
        steady: steady_samples,
        kv: kv_samples,
        detect: detect_samples,
    };
    Ok((report, samples))
}
