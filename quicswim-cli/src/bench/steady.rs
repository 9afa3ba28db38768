//! Steady state: after a warm-up (join-time exchanges over, periodic ones begun) and with the
//! piggyback queues empty, an idle window over which the process CPU time and the nodes'
//! transport counters are read at both ends.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::cluster::BenchCluster;
use super::cpu::process_cpu_time;
use super::{BenchConfig, Error, Observer, Phase};
use quicswim::node::NodeMetrics;

/// What the steady phase measured. Rates are per node per second of the window.
#[derive(Clone, Debug, Serialize)]
pub struct SteadyResult {
    /// Length of the window as measured.
    pub window_s: f64,
    /// Whether every piggyback queue was empty when the window opened.
    pub queues_empty: bool,
    /// Process CPU time (every thread: nodes, QUIC, the runtime, the listeners), in ms.
    pub cpu_ms_per_node_s: f64,
    /// Bytes on the wire sent, as QUIC counts them (UDP payloads: every header,
    /// acknowledgement, keep-alive and handshake included; IP and UDP headers not).
    pub wire_bytes_out_per_node_s: f64,
    /// Bytes on the wire received, as QUIC counts them.
    pub wire_bytes_in_per_node_s: f64,
    /// UDP datagrams (packets) sent, as QUIC counts them.
    pub packets_out_per_node_s: f64,
    /// UDP datagrams (packets) received, as QUIC counts them.
    pub packets_in_per_node_s: f64,
    /// Transport payload bytes sent (datagrams and stream frames).
    pub payload_bytes_out_per_node_s: f64,
    /// Transport payload bytes received.
    pub payload_bytes_in_per_node_s: f64,
    /// Application datagrams (SWIM messages) sent.
    pub datagrams_out_per_node_s: f64,
    /// Application datagrams received.
    pub datagrams_in_per_node_s: f64,
    /// Of the bytes sent, those of datagrams (the core's count).
    pub datagram_bytes_out_per_node_s: f64,
    /// Of the bytes sent, those of anti-entropy requests and replies (the core's count).
    pub anti_entropy_bytes_out_per_node_s: f64,
    /// Full-state exchanges started over the whole cluster during the window.
    pub push_pulls: u64,
    /// Stream requests sent over the whole cluster during the window.
    pub requests: u64,
    /// Connections dialled (each a TLS handshake) over the whole cluster during the window.
    pub dials: u64,
    /// Connections closed for idleness over the whole cluster during the window.
    pub idle_closed: u64,
    /// Direct probes sent per node per second.
    pub probes_per_node_s: f64,
    /// Suspicions raised over the whole cluster during the window (false positives).
    pub suspicions: u64,
    /// Lifeguard local health scores at the end of the window: mean and largest. Above zero,
    /// a node stretches its probe interval (it believes it is the slow one).
    pub health_score_mean: f64,
    /// Largest local health score.
    pub health_score_max: u32,
}

/// Per node: the counters' growth over the window.
#[derive(Clone, Debug, Default)]
pub struct SteadyNodeSample {
    /// Node index.
    pub node: usize,
    /// Bytes on the wire sent (QUIC's count).
    pub wire_bytes_out: u64,
    /// Bytes on the wire received (QUIC's count).
    pub wire_bytes_in: u64,
    /// UDP datagrams sent (QUIC's count).
    pub packets_out: u64,
    /// UDP datagrams received (QUIC's count).
    pub packets_in: u64,
    /// Transport payload bytes sent.
    pub payload_bytes_out: u64,
    /// Transport payload bytes received.
    pub payload_bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Stream requests sent.
    pub requests_out: u64,
    /// Connections dialled.
    pub dials: u64,
    /// Connections closed for idleness.
    pub idle_closed: u64,
}

pub(crate) async fn run(
    cluster: &mut BenchCluster,
    config: &BenchConfig,
    observer: &dyn Observer,
    join_finished: Instant,
) -> Result<(SteadyResult, Vec<SteadyNodeSample>), Error> {
    observer.phase_started(Phase::Steady, Some(config.steady));
    let warm_until = join_finished + config.warmup;
    if warm_until > Instant::now() {
        let left = warm_until - Instant::now();
        observer.phase_progress(
            Phase::Steady,
            Some(0.0),
            &format!("warming up {:.0} s", left.as_secs_f64()),
        );
        tokio::time::sleep(left).await;
    }
    observer.phase_progress(Phase::Steady, Some(0.0), "waiting for queues to empty");
    let queues_empty = cluster.wait_queues_empty(config.phase_timeout).await?;
    let before = cluster.metrics().await?;
    let cpu_before = process_cpu_time();
    let opened = Instant::now();
    let end = opened + config.steady;
    while Instant::now() < end {
        let step = Duration::from_millis(250).min(end - Instant::now());
        tokio::time::sleep(step).await;
        let done = opened.elapsed().as_secs_f64() / config.steady.as_secs_f64();
        let status = format!(
            "window {:.1}/{:.0} s",
            opened.elapsed().as_secs_f64(),
            config.steady.as_secs_f64()
        );
        observer.phase_progress(Phase::Steady, Some(done.min(1.0)), &status);
    }
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    let window = opened.elapsed();
    let after = cluster.metrics().await?;
    let (result, samples) = summarise(&before, &after, cpu, window, queues_empty);
    let summary = format!(
        "{:.3} ms CPU, {:.0} B on the wire, {:.1} packets per node per s over {:.1} s",
        result.cpu_ms_per_node_s,
        result.wire_bytes_out_per_node_s,
        result.packets_out_per_node_s,
        result.window_s
    );
    observer.phase_finished(Phase::Steady, &summary);
    Ok((result, samples))
}

/// Growth of each node's counters, and the per-node rates.
fn summarise(
    before: &[(usize, NodeMetrics)],
    after: &[(usize, NodeMetrics)],
    cpu: Duration,
    window: Duration,
    queues_empty: bool,
) -> (SteadyResult, Vec<SteadyNodeSample>) {
    let mut samples = Vec::with_capacity(after.len());
    let mut core = [0u64; 5];
    for (i, b) in before {
        let Some((_, a)) = after.iter().find(|(j, _)| j == i) else {
            continue;
        };
        let (tb, ta) = (&b.transport, &a.transport);
        samples.push(SteadyNodeSample {
            node: *i,
            wire_bytes_out: ta.wire.bytes_out.saturating_sub(tb.wire.bytes_out),
            wire_bytes_in: ta.wire.bytes_in.saturating_sub(tb.wire.bytes_in),
            packets_out: ta.wire.datagrams_out.saturating_sub(tb.wire.datagrams_out),
            packets_in: ta.wire.datagrams_in.saturating_sub(tb.wire.datagrams_in),
            payload_bytes_out: ta.bytes_out - tb.bytes_out,
            payload_bytes_in: ta.bytes_in - tb.bytes_in,
            datagrams_out: ta.datagrams_out - tb.datagrams_out,
            datagrams_in: ta.datagrams_in - tb.datagrams_in,
            requests_out: ta.requests_out - tb.requests_out,
            dials: ta.dials - tb.dials,
            idle_closed: ta.idle_closed - tb.idle_closed,
        });
        let (cb, ca) = (&b.core, &a.core);
        let growth = [
            ca.datagram_bytes_out - cb.datagram_bytes_out,
            ca.anti_entropy_bytes_out - cb.anti_entropy_bytes_out,
            ca.push_pulls_started - cb.push_pulls_started,
            ca.probes_sent - cb.probes_sent,
            ca.suspicions_raised - cb.suspicions_raised,
        ];
        for (sum, g) in core.iter_mut().zip(growth) {
            *sum += g;
        }
    }
    let nodes = samples.len().max(1) as f64;
    let secs = window.as_secs_f64().max(f64::EPSILON);
    let rate = |total: u64| total as f64 / nodes / secs;
    let sum = |f: fn(&SteadyNodeSample) -> u64| samples.iter().map(f).sum::<u64>();
    let result = SteadyResult {
        window_s: window.as_secs_f64(),
        queues_empty,
        cpu_ms_per_node_s: cpu.as_secs_f64() * 1e3 / nodes / secs,
        wire_bytes_out_per_node_s: rate(sum(|s| s.wire_bytes_out)),
        wire_bytes_in_per_node_s: rate(sum(|s| s.wire_bytes_in)),
        packets_out_per_node_s: rate(sum(|s| s.packets_out)),
        packets_in_per_node_s: rate(sum(|s| s.packets_in)),
        payload_bytes_out_per_node_s: rate(sum(|s| s.payload_bytes_out)),
        payload_bytes_in_per_node_s: rate(sum(|s| s.payload_bytes_in)),
        datagrams_out_per_node_s: rate(sum(|s| s.datagrams_out)),
        datagrams_in_per_node_s: rate(sum(|s| s.datagrams_in)),
        datagram_bytes_out_per_node_s: rate(core[0]),
        anti_entropy_bytes_out_per_node_s: rate(core[1]),
        push_pulls: core[2],
        requests: sum(|s| s.requests_out),
        dials: sum(|s| s.dials),
        idle_closed: sum(|s| s.idle_closed),
        probes_per_node_s: rate(core[3]),
        suspicions: core[4],
        health_score_mean: after
            .iter()
            .map(|(_, m)| f64::from(m.health_score))
            .sum::<f64>()
            / nodes,
        health_score_max: after.iter().map(|(_, m)| m.health_score).max().unwrap_or(0),
    };
    (result, samples)
}
