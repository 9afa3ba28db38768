//! Join convergence: every node but the seeds starts at once, joining through the seeds; the
//! figure is the time from then until every node holds all N members Alive.

use std::time::Instant;

use serde::Serialize;

use super::cluster::BenchCluster;
use super::cpu::process_cpu_time;
use super::{BenchConfig, Error, Observer, Phase};

/// What the join phase measured.
#[derive(Clone, Debug, Serialize)]
pub struct JoinResult {
    /// Nodes started in this phase (all but the seeds).
    pub joiners: usize,
    /// Time to start them (bind, configure, spawn); part of the convergence time.
    pub start_s: f64,
    /// Time until every node held all N Alive; `None` if not within the phase bound.
    pub converged_s: Option<f64>,
    /// Median over nodes of the time each reached its full view.
    pub node_p50_s: Option<f64>,
    /// Connections dialled over the cluster by the end of the phase, each a mutual TLS
    /// handshake: a full mesh is N(N-1)/2 of them, and on a shared machine they dominate.
    pub dials: u64,
    /// Of those, dials that failed (refused, timed out, unreachable), over the cluster.
    pub dials_failed: u64,
    /// Incoming handshakes refused for `handshakes_in_max` (too many in progress at once),
    /// over the cluster: a joiner refused by its seed retries after `join_retry_interval`.
    pub handshakes_refused: u64,
    /// Incoming handshakes ignored for their source's rate (the client retransmits later).
    pub handshakes_rate_limited: u64,
    /// Accepted handshakes dropped for taking longer than `handshake_timeout`.
    pub handshakes_timed_out: u64,
    /// Requests (join and anti-entropy exchanges, fetches) that failed, over the cluster.
    pub requests_failed: u64,
    /// Process CPU time over the phase.
    pub cpu_s: f64,
    /// When the phase ended, for the steady phase's warm-up.
    #[serde(skip)]
    pub finished_at: Instant,
}

/// Per node: seconds from the start of the phase until it held every other node Alive.
pub type JoinSamples = Vec<Option<f64>>;

pub(crate) async fn run(
    cluster: &mut BenchCluster,
    config: &BenchConfig,
    observer: &dyn Observer,
) -> Result<(JoinResult, JoinSamples), Error> {
    observer.phase_started(Phase::Join, None);
    let cpu_before = process_cpu_time();
    let t0 = Instant::now();
    cluster.start_rest(config.seeds).await?;
    let start_s = t0.elapsed().as_secs_f64();
    observer.phase_progress(
        Phase::Join,
        None,
        &format!(
            "{} nodes started in {start_s:.2} s",
            cluster.size - config.seeds
        ),
    );
    let converged = cluster
        .wait_logs(config.phase_timeout, |logs| {
            logs.iter().all(|l| l.lock().full_since.is_some())
        })
        .await;
    let cpu_s = process_cpu_time().saturating_sub(cpu_before).as_secs_f64();
    let metrics = cluster.metrics().await?;
    let sum = |f: fn(&quicswim::transport::TransportStats) -> u64| -> u64 {
        metrics.iter().map(|(_, m)| f(&m.transport)).sum()
    };
    let dials = sum(|t| t.dials);
    let samples: JoinSamples = cluster
        .logs
        .iter()
        .map(|l| {
            l.lock()
                .full_since
                .map(|at| at.saturating_duration_since(t0).as_secs_f64())
        })
        .collect();
    let converged_s = if converged {
        samples.iter().flatten().copied().reduce(f64::max)
    } else {
        None
    };
    let result = JoinResult {
        joiners: cluster.size - config.seeds,
        start_s,
        converged_s,
        node_p50_s: super::stats::quantile(&samples, 0.5),
        dials,
        dials_failed: sum(|t| t.dials_failed),
        handshakes_refused: sum(|t| t.handshakes_in_refused),
        handshakes_rate_limited: sum(|t| t.handshakes_in_rate_limited),
        handshakes_timed_out: sum(|t| t.handshakes_in_timed_out),
        requests_failed: sum(|t| t.requests_failed),
        cpu_s,
        finished_at: Instant::now(),
    };
    let summary = match converged_s {
        Some(s) => format!(
            "{} nodes all Alive everywhere after {s:.3} s ({dials} handshakes, {cpu_s:.1} CPU s)",
            cluster.size
        ),
        None => {
            let full = samples.iter().flatten().count();
            format!(
                "not converged within {:?}: {full}/{} nodes had the full view",
                config.phase_timeout, cluster.size
            )
        }
    };
    observer.phase_finished(Phase::Join, &summary);
    Ok((result, samples))
}
