//! Broadcast dissemination: one node at a time changes its metadata (a membership update,
//! gossiped with a new incarnation); each update is timed until every other node has
//! published it as an event, then the next one starts.

use std::time::Instant;

use serde::Serialize;

use super::cluster::BenchCluster;
use super::recorder::{node_name, Kind};
use super::stats::quantile;
use super::{BenchConfig, Error, Observer, Phase};

/// What the broadcast phase measured.
#[derive(Clone, Debug, Serialize)]
pub struct BroadcastResult {
    /// Updates made.
    pub updates: usize,
    /// Updates that reached every other node within the phase bound.
    pub completed: usize,
    /// Median over updates of the time until every other node had it.
    pub all_p50_s: Option<f64>,
    /// 90th percentile of the same.
    pub all_p90_s: Option<f64>,
    /// The slowest update.
    pub all_max_s: Option<f64>,
    /// Median over every (update, receiving node) pair.
    pub node_p50_s: Option<f64>,
    /// 99th percentile over every (update, receiving node) pair.
    pub node_p99_s: Option<f64>,
}

/// One update: its origin, and per node the seconds until it had the update (`None` for
/// the origin and for nodes it never reached).
#[derive(Clone, Debug)]
pub struct UpdateSample {
    /// Index of the node whose metadata changed.
    pub origin: usize,
    /// Per node index.
    pub latencies: Vec<Option<f64>>,
}

pub(crate) async fn run(
    cluster: &mut BenchCluster,
    config: &BenchConfig,
    observer: &dyn Observer,
) -> Result<(BroadcastResult, Vec<UpdateSample>), Error> {
    observer.phase_started(Phase::Broadcast, None);
    let mut samples = Vec::with_capacity(config.updates);
    for u in 0..config.updates {
        // Origins take turns, starting after the first seed.
        let origin = (u + 1) % cluster.size;
        let meta = format!("bench-update-{u}").into_bytes();
        let cursors: Vec<usize> = cluster
            .logs
            .iter()
            .map(|l| l.lock().records.len())
            .collect();
        let node = cluster.nodes[origin]
            .clone()
            .expect("every node runs during the broadcast phase");
        let t0 = Instant::now();
        node.set_meta(meta.clone())
            .await
            .map_err(|source| Error::Node {
                node: node_name(origin),
                source,
            })?;
        // The time each node published the update, looking only at records after `t0`.
        let seen = |i: usize| -> Option<Instant> {
            let log = cluster.logs[i].lock();
            log.records[cursors[i]..]
                .iter()
                .find(|r| {
                    r.member == origin
                        && matches!(r.kind, Kind::Updated | Kind::Recovered | Kind::Joined)
                        && r.meta == meta
                })
                .map(|r| r.at)
        };
        let others = || (0..cluster.size).filter(|i| *i != origin);
        let _ = cluster
            .wait_logs(config.phase_timeout, |_| {
                others().all(|i| seen(i).is_some())
            })
            .await;
        let latencies: Vec<Option<f64>> = (0..cluster.size)
            .map(|i| {
                if i == origin {
                    return None;
                }
                seen(i).map(|at| at.saturating_duration_since(t0).as_secs_f64())
            })
            .collect();
        let all = all_reached(&latencies, origin);
        let status = match all {
            Some(s) => format!("update {}/{}: all nodes in {s:.3} s", u + 1, config.updates),
            None => format!("update {}/{}: not everywhere", u + 1, config.updates),
        };
        observer.phase_progress(
            Phase::Broadcast,
            Some((u + 1) as f64 / config.updates.max(1) as f64),
            &status,
        );
        samples.push(UpdateSample { origin, latencies });
    }
    let result = summarise(&samples);
    let summary = match (result.all_p50_s, result.all_max_s) {
        (Some(p50), Some(max)) => format!(
            "{} updates reached all {} nodes: p50 {p50:.3} s, max {max:.3} s",
            result.updates, cluster.size
        ),
        _ => format!(
            "{}/{} updates reached every node",
            result.completed, result.updates
        ),
    };
    observer.phase_finished(Phase::Broadcast, &summary);
    Ok((result, samples))
}

/// The time the last other node had the update, if every one did.
fn all_reached(latencies: &[Option<f64>], origin: usize) -> Option<f64> {
    let mut max: f64 = 0.0;
    for (i, l) in latencies.iter().enumerate() {
        if i != origin {
            max = max.max((*l)?);
        }
    }
    Some(max)
}

fn summarise(samples: &[UpdateSample]) -> BroadcastResult {
    let all: Vec<Option<f64>> = samples
        .iter()
        .map(|s| all_reached(&s.latencies, s.origin))
        .collect();
    let pairs: Vec<Option<f64>> = samples
        .iter()
        .flat_map(|s| {
            s.latencies
                .iter()
                .enumerate()
                .filter(move |(i, _)| *i != s.origin)
                .map(|(_, l)| *l)
        })
        .collect();
    BroadcastResult {
        updates: samples.len(),
        completed: all.iter().flatten().count(),
        all_p50_s: quantile(&all, 0.5),
        all_p90_s: quantile(&all, 0.9),
        all_max_s: quantile(&all, 1.0),
        node_p50_s: quantile(&pairs, 0.5),
        node_p99_s: quantile(&pairs, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_counts_as_everywhere_only_when_every_other_node_had_it() {
        let done = UpdateSample {
            origin: 1,
            latencies: vec![Some(0.2), None, Some(0.4)],
        };
        let missed = UpdateSample {
            origin: 0,
            latencies: vec![None, Some(0.1), None],
        };
        let r = summarise(&[done.clone(), done, missed]);
        assert_eq!((r.updates, r.completed), (3, 2));
        assert_eq!(r.all_p50_s, Some(0.4));
        assert_eq!(r.all_max_s, None, "one update never reached node 2");
        assert_eq!(r.node_p50_s, Some(0.2));
    }
}
