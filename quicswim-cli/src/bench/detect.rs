//! Failure detection: the last node stops without leaving (its driver is aborted and its
//! endpoint closed, as [`Node::shutdown`](quicswim::Node::shutdown) does); the figure is the
//! time from then until every other node has published it Dead.

use std::time::Instant;

use serde::Serialize;

use super::cluster::BenchCluster;
use super::recorder::{node_name, Kind};
use super::stats::quantile;
use super::{BenchConfig, Error, Observer, Phase};

/// What the detection phase measured.
#[derive(Clone, Debug, Serialize)]
pub struct DetectResult {
    /// The node crashed.
    pub victim: String,
    /// Its index.
    #[serde(skip)]
    pub victim_index: usize,
    /// Updates still queued for piggybacking over the cluster when the crash happened (they
    /// share datagrams with the detection).
    pub pending_broadcasts_at_crash: usize,
    /// Time until the first node suspected it.
    pub first_suspect_s: Option<f64>,
    /// Time until the first node declared it Dead.
    pub first_dead_s: Option<f64>,
    /// Median over the other nodes of the time each declared it Dead.
    pub dead_p50_s: Option<f64>,
    /// Time until every other node had declared it Dead.
    pub all_dead_s: Option<f64>,
}

/// Per other node: seconds from the crash until it suspected the victim, and until it held
/// it Dead (`None`: not within the bound).
#[derive(Clone, Debug)]
pub struct DetectSample {
    /// Node index.
    pub node: usize,
    /// First Suspect event about the victim.
    pub suspect_s: Option<f64>,
    /// First Dead event about the victim.
    pub dead_s: Option<f64>,
}

pub(crate) async fn run(
    cluster: &mut BenchCluster,
    config: &BenchConfig,
    observer: &dyn Observer,
) -> Result<(DetectResult, Vec<DetectSample>), Error> {
    observer.phase_started(Phase::Detect, None);
    let victim = cluster.size - 1;
    let pending_broadcasts_at_crash = cluster
        .metrics()
        .await?
        .iter()
        .map(|(_, m)| m.pending_broadcasts)
        .sum();
    let others: Vec<usize> = cluster
        .live()
        .map(|(i, _)| i)
        .filter(|i| *i != victim)
        .collect();
    let cursors: Vec<usize> = cluster
        .logs
        .iter()
        .map(|l| l.lock().records.len())
        .collect();
    let node = cluster.nodes[victim]
        .clone()
        .expect("the victim runs until this phase");
    cluster.crashed[victim] = true;
    let t0 = Instant::now();
    // Closing the endpoint waits for peers to be told; the clock is already running.
    tokio::spawn(async move { node.shutdown().await });
    let first = |i: usize, kind: Kind| -> Option<f64> {
        let log = cluster.logs[i].lock();
        log.records[cursors[i]..]
            .iter()
            .find(|r| r.member == victim && r.kind == kind)
            .map(|r| r.at.saturating_duration_since(t0).as_secs_f64())
    };
    let _ = cluster
        .wait_logs(config.phase_timeout, |_| {
            others.iter().all(|i| first(*i, Kind::Dead).is_some())
        })
        .await;
    let samples: Vec<DetectSample> = others
        .iter()
        .map(|i| DetectSample {
            node: *i,
            suspect_s: first(*i, Kind::Suspect),
            dead_s: first(*i, Kind::Dead),
        })
        .collect();
    let suspects: Vec<Option<f64>> = samples.iter().map(|s| s.suspect_s).collect();
    let deads: Vec<Option<f64>> = samples.iter().map(|s| s.dead_s).collect();
    let result = DetectResult {
        victim: node_name(victim),
        victim_index: victim,
        pending_broadcasts_at_crash,
        first_suspect_s: suspects.iter().flatten().copied().reduce(f64::min),
        first_dead_s: deads.iter().flatten().copied().reduce(f64::min),
        dead_p50_s: quantile(&deads, 0.5),
        all_dead_s: quantile(&deads, 1.0),
    };
    let summary = match (result.first_suspect_s, result.all_dead_s) {
        (Some(s), Some(d)) => format!(
            "{} crashed: first suspected after {s:.2} s, Dead everywhere after {d:.2} s",
            result.victim
        ),
        _ => format!(
            "{} crashed: {}/{} nodes declared it Dead within {:?}",
            result.victim,
            deads.iter().flatten().count(),
            others.len(),
            config.phase_timeout
        ),
    };
    observer.phase_finished(Phase::Detect, &summary);
    Ok((result, samples))
}
