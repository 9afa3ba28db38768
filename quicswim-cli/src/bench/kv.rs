//! Key/value throughput: every node writes its own keys at its share of a target rate for a
//! window, each write a new key, so each one is a distinct update that must reach every node.
//! Each node's listener stamps the first `KvChanged` of every write; after the window,
//! deliveries are waited for (bounded), then:
//!
//! ```text
//!   delivered to all  = writes whose KvChanged was seen on every node before the drain ended
//!   updates/s         = delivered to all / window
//!   lag               = KvChanged stamp - time set() was called, per (write, other node)
//! ```
//!
//! With `M` live nodes, the `k`-th of them makes writes `k, k+M, k+2M, ...` under keys
//! `kv-{w}`, due at evenly spaced times, staggered across nodes.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::cluster::{BenchCluster, CHECK_EVERY};
use super::cpu::process_cpu_time;
use super::recorder::{kv_key, micros_since, NOT_SEEN};
use super::stats::quantile_sorted_u32;
use super::{BenchConfig, Error, Observer, Phase};
use quicswim::protocol::CommandError;
use quicswim::Node;

/// Writes a window at `rate` plans for.
pub(crate) fn planned_writes(rate: f64, window: Duration) -> usize {
    (rate * window.as_secs_f64()).ceil() as usize
}

/// What the key/value phase measured.
#[derive(Clone, Debug, Serialize)]
pub struct KvResult {
    /// Writes per second asked for, over the cluster.
    pub target_rate: f64,
    /// The write window.
    pub window_s: f64,
    /// Bytes of each value.
    pub value_len: usize,
    /// Writes made.
    pub writes: usize,
    /// Writes made per second of the window (below the target when `set` could not keep up).
    pub write_rate: f64,
    /// Writes refused by a node for anything but pushback (the writer stops).
    pub write_errors: u64,
    /// Writes refused as `Backlogged` (pushback: earlier writes were too far behind); the
    /// writer goes on with its next write when that is due.
    pub writes_backlogged: u64,
    /// The first refusal, if any.
    pub first_error: Option<String>,
    /// Writes seen on every node by the end of the drain.
    pub delivered_all: usize,
    /// Whether every write reached every node before the drain bound.
    pub drained: bool,
    /// Time from the first write to be on every node until the last: the span over which
    /// full deliveries happened.
    pub span_s: Option<f64>,
    /// Writes delivered to every node (by the end of the drain) per second of the window.
    /// Read it with the lag: a cluster that falls behind still counts what it delivers
    /// within the drain, late; what it cannot deliver by then does not count.
    pub updates_per_s: Option<f64>,
    /// Lag percentiles over every (write, non-writing node) pair; a pair never delivered
    /// counts as infinitely late, so a percentile is `None` once it lands on those.
    pub lag_p50_s: Option<f64>,
    /// 90th percentile lag.
    pub lag_p90_s: Option<f64>,
    /// 99th percentile lag.
    pub lag_p99_s: Option<f64>,
    /// Largest lag.
    pub lag_max_s: Option<f64>,
    /// (write, node) pairs never delivered.
    pub pairs_missing: u64,
    /// Process CPU per node per second over window and drain, in ms.
    pub cpu_ms_per_node_s: f64,
    /// Transport payload bytes sent per node per second over window and drain.
    pub payload_bytes_out_per_node_s: f64,
    /// Datagrams sent per node per second over window and drain.
    pub datagrams_out_per_node_s: f64,
    /// Updates dropped from full piggyback queues, over the cluster.
    pub broadcasts_dropped: u64,
    /// Entries carried by anti-entropy instead, over the cluster.
    pub kv_entries_synced: u64,
    /// `kv_entries_synced` over the deliveries needed (each write to each other node): how
    /// many times an entry crossed to a node that needed it once.
    pub kv_redundancy: Option<f64>,
    /// Direct probes that ended with no Ack over window and drain, over the cluster. Every
    /// member probed is alive then, so each is an Ack the load delayed or lost: the first
    /// step towards a false suspicion.
    pub probes_failed: u64,
    /// Deadlines handled late (a quarter of the probe timeout or more) over window and
    /// drain, over the cluster: the nodes' own lag.
    pub timers_late: u64,
}

/// One write: who made it, when, and how long until every node had it.
#[derive(Clone, Debug)]
pub struct WriteSample {
    /// Index of the writing node.
    pub owner: usize,
    /// Seconds from the first due write to the `set` call.
    pub set_s: f64,
    /// Nodes that saw it (the writer included).
    pub nodes_delivered: usize,
    /// Seconds from `set` until the last node had it, if all did.
    pub all_lag_s: Option<f64>,
}

struct WriterOutcome {
    /// (write index, microseconds from the origin to the set call)
    sets: Vec<(usize, u32)>,
    errors: u64,
    first_error: Option<String>,
    backlogged: u64,
}

/// What every writer shares.
#[derive(Clone)]
struct WritePlan {
    /// Writers in all.
    writers: usize,
    per_node_rate: f64,
    origin: Instant,
    window: Duration,
    capacity: usize,
    value: Vec<u8>,
}

/// One node's writer: its writes at its share of the rate until the window closes.
async fn write_loop(node: Node, me: usize, plan: WritePlan) -> WriterOutcome {
    let WritePlan {
        writers: nodes,
        per_node_rate,
        origin,
        window,
        capacity,
        value,
    } = plan;
    let mut out = WriterOutcome {
        sets: Vec::new(),
        errors: 0,
        first_error: None,
        backlogged: 0,
    };
    for k in 0.. {
        let write = me + k * nodes;
        let due = (k as f64 + me as f64 / nodes as f64) / per_node_rate;
        if write >= capacity || due >= window.as_secs_f64() {
            break;
        }
        let due = origin + Duration::from_secs_f64(due);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let called = Instant::now();
        match node.set(&kv_key(write), value.clone()).await {
            Ok(_) => out.sets.push((write, micros_since(origin, called))),
            // Pushback: the cluster is behind; this write is not made, the next one is tried
            // when it is due.
            Err(quicswim::node::Error::Command(CommandError::Backlogged { .. })) => {
                out.backlogged += 1;
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
                break; // a refused write (a limit, a stopped node) will not pass next time
            }
        }
    }
    out
}

pub(crate) async fn run(
    cluster: &mut BenchCluster,
    config: &BenchConfig,
    observer: &dyn Observer,
) -> Result<(KvResult, Vec<WriteSample>), Error> {
    let window = config.kv_window;
    observer.phase_started(Phase::Kv, Some(window + config.kv_drain));
    let capacity = planned_writes(config.kv_rate, window);
    let live: Vec<(usize, Node)> = cluster.live().map(|(i, n)| (i, n.clone())).collect();
    let before = cluster.metrics().await?;
    let cpu_before = process_cpu_time();
    // Writers start a little later than now, so every log is ready before the first write.
    let origin = Instant::now() + Duration::from_millis(20);
    for log in &cluster.logs {
        log.lock().begin_kv(origin, capacity);
    }
    let plan = WritePlan {
        writers: live.len(),
        per_node_rate: config.kv_rate / live.len().max(1) as f64,
        origin,
        window,
        capacity,
        value: vec![b'v'; config.kv_value_len],
    };
    let mut writers = tokio::task::JoinSet::new();
    for (k, (_, node)) in live.iter().enumerate() {
        writers.spawn(write_loop(node.clone(), k, plan.clone()));
    }
    let writers_done = async {
        let mut all = Vec::new();
        while let Some(w) = writers.join_next().await {
            all.push(w.expect("a writer task does not panic"));
        }
        all
    };
    tokio::pin!(writers_done);
    let outcomes = loop {
        tokio::select! {
            all = &mut writers_done => break all,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                let t = origin.elapsed().as_secs_f64();
                let total = (window + config.kv_drain).as_secs_f64();
                let delivered: usize = cluster.logs.iter().map(|l| l.lock().kv.delivered).sum();
                let status = format!("writing {t:.1}/{:.0} s, {delivered} deliveries", window.as_secs_f64());
                observer.phase_progress(Phase::Kv, Some((t / total).min(1.0)), &status);
            }
        }
    };
    let mut set_us = vec![NOT_SEEN; capacity];
    let (mut errors, mut first_error, mut backlogged) = (0, None, 0);
    for o in outcomes {
        backlogged += o.backlogged;
        for (w, us) in o.sets {
            set_us[w] = us;
        }
        errors += o.errors;
        if first_error.is_none() {
            first_error = o.first_error;
        }
    }
    let writes = set_us.iter().filter(|us| **us != NOT_SEEN).count();
    let live_logs: Vec<usize> = live.iter().map(|(i, _)| *i).collect();
    let wanted = writes * live_logs.len();
    let drain_end = Instant::now() + config.kv_drain;
    let mut shown = Instant::now();
    let drained = loop {
        let delivered: usize = live_logs
            .iter()
            .map(|i| cluster.logs[*i].lock().kv.delivered)
            .sum();
        if delivered >= wanted {
            break true;
        }
        if Instant::now() >= drain_end {
            break false;
        }
        if shown.elapsed() >= Duration::from_millis(250) {
            shown = Instant::now();
            let t = origin.elapsed().as_secs_f64();
            let total = (window + config.kv_drain).as_secs_f64();
            let status = format!("draining: {delivered}/{wanted} deliveries");
            observer.phase_progress(Phase::Kv, Some((t / total).min(1.0)), &status);
        }
        tokio::time::sleep(CHECK_EVERY).await;
    };
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let elapsed = origin.elapsed();
    let after = cluster.metrics().await?;
    let seen: Vec<Vec<u32>> = live_logs
        .iter()
        .map(|i| cluster.logs[*i].lock().kv.seen_us.clone())
        .collect();
    let mut result = summarise(&set_us, &live_logs, &seen, window);
    result.target_rate = config.kv_rate;
    result.value_len = config.kv_value_len;
    result.write_errors = errors;
    result.writes_backlogged = backlogged;
    result.first_error = first_error;
    result.drained = drained;
    let nodes = live_logs.len().max(1) as f64;
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    result.cpu_ms_per_node_s = cpu.as_secs_f64() * 1e3 / nodes / secs;
    let growth = |f: fn(&quicswim::node::NodeMetrics) -> u64| -> u64 {
        after
            .iter()
            .filter_map(|(i, a)| {
                let (_, b) = before.iter().find(|(j, _)| j == i)?;
                Some(f(a).saturating_sub(f(b)))
            })
            .sum()
    };
    result.payload_bytes_out_per_node_s = growth(|m| m.transport.bytes_out) as f64 / nodes / secs;
    result.datagrams_out_per_node_s = growth(|m| m.transport.datagrams_out) as f64 / nodes / secs;
    result.broadcasts_dropped = growth(|m| m.core.broadcasts_dropped);
    result.kv_entries_synced = growth(|m| m.core.kv_entries_synced);
    result.probes_failed = growth(|m| m.core.probes_failed);
    result.timers_late = growth(|m| m.core.timers_late);
    let needed = result.writes as u64 * (live_logs.len() as u64).saturating_sub(1);
    result.kv_redundancy = (needed > 0).then(|| result.kv_entries_synced as f64 / needed as f64);
    let samples = write_samples(&set_us, &live_logs, &seen);
    let summary = match (result.updates_per_s, result.lag_p99_s) {
        (Some(rate), Some(p99)) => format!(
            "{} writes, {rate:.0}/s delivered to all, lag p99 {p99:.3} s",
            result.writes
        ),
        (Some(rate), None) => format!(
            "{} writes, {rate:.0}/s delivered to all, {} of {} writes everywhere",
            result.writes, result.delivered_all, result.writes
        ),
        _ => format!("{} writes, none delivered to all", result.writes),
    };
    let summary = if result.writes_backlogged > 0 {
        format!(
            "{summary}; {} refused as backlogged",
            result.writes_backlogged
        )
    } else {
        summary
    };
    observer.phase_finished(Phase::Kv, &summary);
    Ok((result, samples))
}

/// The figures from the set times and every live node's delivery stamps (all in
/// microseconds from the same origin; `NOT_SEEN` where absent). `live` lists the writers
/// (the live nodes, by index) in the order writes were dealt to them; `seen` follows it.
fn summarise(set_us: &[u32], live: &[usize], seen: &[Vec<u32>], window: Duration) -> KvResult {
    let mut lags: Vec<u32> = Vec::new();
    let mut missing = 0u64;
    let mut delivered_all = 0;
    let mut first_full = u32::MAX;
    let mut last_full = 0u32;
    let mut writes = 0;
    for (w, set) in set_us.iter().enumerate() {
        if *set == NOT_SEEN {
            continue;
        }
        writes += 1;
        let owner = live[w % live.len()];
        let mut everywhere = true;
        let mut latest = *set;
        for (k, i) in live.iter().enumerate() {
            let at = seen[k].get(w).copied().unwrap_or(NOT_SEEN);
            if at == NOT_SEEN {
                everywhere = false;
                if *i != owner {
                    missing += 1;
                }
                continue;
            }
            latest = latest.max(at);
            if *i != owner {
                lags.push(at.saturating_sub(*set));
            }
        }
        if everywhere {
            delivered_all += 1;
            first_full = first_full.min(latest);
            last_full = last_full.max(latest);
        }
    }
    lags.sort_unstable();
    let missing_n = usize::try_from(missing).unwrap_or(usize::MAX);
    let q = |p: f64| quantile_sorted_u32(&lags, missing_n, p).map(|us| f64::from(us) / 1e6);
    let span_s = (delivered_all > 0).then(|| f64::from(last_full - first_full) / 1e6);
    let updates_per_s = (writes > 0).then(|| delivered_all as f64 / window.as_secs_f64());
    KvResult {
        target_rate: 0.0,
        window_s: window.as_secs_f64(),
        value_len: 0,
        writes,
        write_rate: writes as f64 / window.as_secs_f64(),
        write_errors: 0,
        writes_backlogged: 0,
        first_error: None,
        delivered_all,
        drained: false,
        span_s,
        updates_per_s,
        lag_p50_s: q(0.5),
        lag_p90_s: q(0.9),
        lag_p99_s: q(0.99),
        lag_max_s: q(1.0),
        pairs_missing: missing,
        cpu_ms_per_node_s: 0.0,
        payload_bytes_out_per_node_s: 0.0,
        datagrams_out_per_node_s: 0.0,
        broadcasts_dropped: 0,
        kv_entries_synced: 0,
        kv_redundancy: None,
        probes_failed: 0,
        timers_late: 0,
    }
}

fn write_samples(set_us: &[u32], live: &[usize], seen: &[Vec<u32>]) -> Vec<WriteSample> {
    set_us
        .iter()
        .enumerate()
        .filter(|(_, s)| **s != NOT_SEEN)
        .map(|(w, set)| {
            let stamps: Vec<u32> = seen
                .iter()
                .map(|s| s.get(w).copied().unwrap_or(NOT_SEEN))
                .collect();
            let delivered = stamps.iter().filter(|s| **s != NOT_SEEN).count();
            let all_lag_s = (delivered == stamps.len()).then(|| {
                let last = stamps.iter().copied().max().unwrap_or(*set);
                f64::from(last.saturating_sub(*set)) / 1e6
            });
            WriteSample {
                owner: live[w % live.len()],
                set_s: f64::from(*set) / 1e6,
                nodes_delivered: delivered,
                all_lag_s,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_counts_writes_seen_everywhere_per_second_of_the_window() {
        // Two nodes; write 0 by node 0, write 1 by node 1, write 2 by node 0 never reaches 1.
        let set_us = vec![0, 1_000_000, 2_000_000, NOT_SEEN];
        let seen = vec![
            vec![0, 1_500_000, 2_000_000, NOT_SEEN],
            vec![500_000, 1_000_000, NOT_SEEN, NOT_SEEN],
        ];
        let r = summarise(&set_us, &[0, 1], &seen, Duration::from_secs(1));
        assert_eq!((r.writes, r.delivered_all, r.pairs_missing), (3, 2, 1));
        // Full deliveries at 0.5 s (write 0) and 1.5 s (write 1), over a 1 s window.
        assert_eq!(r.span_s, Some(1.0));
        assert_eq!(r.updates_per_s, Some(2.0));
        // Lags over non-writers: 0.5 s, 0.5 s, and one missing: the median is 0.5 s, the
        // maximum never came.
        assert_eq!(r.lag_p50_s, Some(0.5));
        assert_eq!(r.lag_max_s, None);
        let samples = write_samples(&set_us, &[0, 1], &seen);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[1].all_lag_s, Some(0.5));
        assert_eq!(samples[2].nodes_delivered, 1);
        assert_eq!(samples[2].all_lag_s, None);
    }
}
