//! `GET /metrics`: the node's counters and gauges, its build and its process, in the
//! Prometheus text exposition format (version 0.0.4), encoded by `prometheus-client`.
//!
//! The node's own families are named `quicswim_*`; counters end in `_total`, which the encoder
//! appends, so they are registered without it. Core counters (`quicswim_core_*`) count what the
//! protocol handed to and accepted from the runtime; transport counters
//! (`quicswim_transport_*`) count what crossed QUIC, stream frames included. The standard
//! `process_*` families come from /proc and exist on Linux only.
//!
//! The registry is built for each scrape around a snapshot the driver hands over, so the driver
//! keeps no metric objects and does no work for metrics between scrapes.
//!
//! The format is the 0.0.4 text, not OpenMetrics: every Prometheus version and most other scrapers
//! read it, and it names a counter's `# HELP` and `# TYPE` lines with `_total` as its samples,
//! as this endpoint always has (OpenMetrics names the family without it and ends in `# EOF`).

use std::fmt;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

mod transport;

use self::transport::encode_transport;
use super::{ApiError, ApiState};
use crate::node::NodeMetrics;
use crate::protocol::{ForgedKind, State as MemberState, Stats};

pub(super) async fn scrape(State(api): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let metrics = api.node.metrics().await?;
    let expiry = api
        .node
        .certificate_info(api.node.name())
        .map(|c| seconds_until(c.not_after));
    Ok((
        [(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        render(metrics, expiry),
    ))
}

/// Whole seconds from now until `at`, negative once it has passed.
fn seconds_until(at: std::time::SystemTime) -> i64 {
    let now = std::time::SystemTime::now();
    match at.duration_since(now) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(past) => i64::try_from(past.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Every family `/metrics` shows, as one text exposition; `expiry` is the seconds until this
/// node's certificate expires.
fn render(metrics: NodeMetrics, expiry: Option<i64>) -> String {
    let mut registry = Registry::default();
    #[cfg(target_os = "linux")]
    registry.register_collector(Box::new(super::process::ProcessCollector));
    let quicswim = registry.sub_registry_with_prefix("quicswim");
    // The registry ends every help text with a period.
    quicswim.register(
        "build",
        "The quicswim version this node runs, as a label; always 1",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    quicswim.register_collector(Box::new(NodeCollector(metrics)));
    if let Some(seconds) = expiry {
        quicswim.register(
            "certificate_expiry_seconds",
            "Seconds until this node's certificate expires (negative once it has); the node logs a WARN from 7 days before",
            ConstGauge::new(seconds),
        );
    }
    let mut text = String::with_capacity(10 * 1024);
    prometheus_text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail, and no family here is a native histogram");
    text
}

/// The node's own families, from one snapshot.
#[derive(Debug)]
struct NodeCollector(NodeMetrics);

pub(super) fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

pub(super) fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        Info::new([("name", m.name.as_str())]).encode(e.encode_descriptor(
            "node",
            "This node's name as a label; always 1.",
            None,
            MetricType::Info,
        )?)?;
        gauge(
            &mut e,
            "incarnation",
            "This node's incarnation.",
            m.incarnation,
        )?;
        let mut members = e.encode_descriptor(
            "members",
            "Members known to this node by state, this node included.",
            None,
            MetricType::Gauge,
        )?;
        let states = [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Dead,
            MemberState::Left,
        ];
        for (state, n) in states.iter().zip(m.members) {
            ConstGauge::new(count(n))
                .encode(members.encode_family(&[("state", state.as_str())])?)?;
        }
        gauge(
            &mut e,
            "health_multiplier",
            "Lifeguard local health multiplier: 0 is healthy; higher stretches probe timing.",
            u64::from(m.health_score),
        )?;
        gauge(
            &mut e,
            "pending_broadcasts",
            "Updates waiting to be piggybacked on outgoing datagrams.",
            count(m.pending_broadcasts),
        )?;
        gauge(
            &mut e,
            "kv_entries",
            "Live key/value entries held here, over every owner.",
            count(m.kv_entries),
        )?;
        gauge(
            &mut e,
            "kv_bytes",
            "Bytes of live keys and values held here, over every owner.",
            count(m.kv_bytes),
        )?;
        encode_core(&mut e, &m.core)?;
        encode_transport(&mut e, &m.transport)
    }
}

fn encode_core(e: &mut DescriptorEncoder, s: &Stats) -> fmt::Result {
    // Destructured in full so that a counter added to `Stats` cannot be left out unnoticed.
    let Stats {
        probes_sent,
        probes_failed,
        timers_late,
        indirect_probes_sent,
        stream_probes_sent,
        suspicions_raised,
        corrections_sent,
        refutations,
        datagrams_out,
        datagram_bytes_out,
        datagrams_in,
        datagram_bytes_in,
        decode_errors,
        name_mismatches,
        push_pulls_started,
        push_pulls_answered,
        broadcasts_dropped,
        events_dropped,
        kv_updates_applied,
        kv_refused,
        kv_entries_synced,
        kv_syncs_started,
        anti_entropy_bytes_out,
        fetch_bytes_out,
        user_events_delivered,
        probe_rtt,
        indirect_probe_rtt,
        unasked_messages,
        kv_owner_not_member,
        user_events_refused,
        event_origins_evicted,
        self_claims_refused,
        local_writes_refused,
        kv_writes_backlogged,
        kv_refuted,
        forged,
        ping_reqs_for_inactive,
        unverified_records,
        certificates_refused,
        certificates_learned,
        parked_dropped,
        revocations_taken,
        revocations_refused,
    } = s;
    // What peers sent that the core refused or bounded, and this node's own refused writes.
    for (name, help, value) in [
        ("unasked_messages", "Stream messages refused for their kind: a reply sent as a request, or a request where a reply was due.", unasked_messages),
        ("kv_owner_not_member", "Key/value entries refused because their owner is not a member held here.", kv_owner_not_member),
        ("user_events_refused", "User events refused: from an origin that is not a member, or over a limit.", user_events_refused),
        ("event_origins_evicted", "Event origins forgotten to make room for another, least recently heard first.", event_origins_evicted),
        ("self_claims_refused", "Claims about this node refused for a counter beyond what it can answer.", self_claims_refused),
        ("local_writes_refused", "This node's own key/value writes and events refused for a limit.", local_writes_refused),
        ("kv_writes_backlogged", "This node's own key/value writes refused because earlier ones were further behind on their way to the cluster than kv_backlog_max.", kv_writes_backlogged),
        ("kv_refuted", "This node's own keys written again above a peer's higher copy of them.", kv_refuted),
        ("ping_reqs_for_inactive", "Indirect probe requests refused, and nacked, because their target is dead or left here.", ping_reqs_for_inactive),
        ("unverified_records", "Signed records whose signer's certificate was not held yet; it was asked of the peer that sent them, and member records wait for it.", unverified_records),
        ("parked_dropped", "Member records that waited for their signer's certificate and were dropped to make room.", parked_dropped),
        ("certificates_refused", "Member certificates peers sent that did not check out against the cluster CA.", certificates_refused),
        ("certificates_learned", "Member certificates learned from peers and checked against the cluster CA.", certificates_learned),
        ("revocations_taken", "Certificate revocation lists taken from the operator or peers, each newer than the one held from its CA.", revocations_taken),
        ("revocations_refused", "Certificate revocation lists refused: not signed by a trusted CA, or not lists at all.", revocations_refused),
    ] {
        counter(e, name, help, *value)?;
    }
    let mut forged_records = e.encode_descriptor(
        "forged_records",
        "Messages refused because their sender may not say what they say, by kind.",
        None,
        MetricType::Counter,
    )?;
    for kind in ForgedKind::ALL {
        ConstCounter::new(forged.get(kind))
            .encode(forged_records.encode_family(&[("kind", kind.as_str())])?)?;
    }
    super::rtt::encode_probe_rtt(e, probe_rtt, indirect_probe_rtt)?;
    counter(
        e,
        "kv_updates_applied",
        "Key/value entries that changed here from peers (key/value rounds or anti-entropy).",
        *kv_updates_applied,
    )?;
    counter(
        e,
        "kv_refused",
        "Key/value entries from peers refused: over a limit, of another owner than their delta's, or in a message that held a forgery (the rest of it is not checked).",
        *kv_refused,
    )?;
    counter(
        e,
        "kv_entries_synced",
        "Key/value entries sent in anti-entropy exchanges and key/value rounds.",
        *kv_entries_synced,
    )?;
    counter(
        e,
        "kv_syncs_started",
        "Key/value round requests sent (one per member per round).",
        *kv_syncs_started,
    )?;
    counter(
        e,
        "anti_entropy_sent_bytes",
        "Bytes of anti-entropy requests, replies, key/value rounds and pushes sent.",
        *anti_entropy_bytes_out,
    )?;
    counter(
        e,
        "fetch_sent_bytes",
        "Bytes of requests and replies for member records gossiped by digest and for certificates sent.",
        *fetch_bytes_out,
    )?;
    counter(
        e,
        "user_events_delivered",
        "User events delivered here (each at most once).",
        *user_events_delivered,
    )?;
    counter(
        e,
        "probes_sent",
        "Direct probes (pings) sent.",
        *probes_sent,
    )?;
    counter(
        e,
        "probes_failed",
        "Probes that ended with no ack, direct or indirect.",
        *probes_failed,
    )?;
    counter(
        e,
        "timers_late",
        "Deadlines handled a quarter of the probe timeout or more late: this node's own lag, which raises its local health score.",
        *timers_late,
    )?;
    counter(
        e,
        "indirect_probes_sent",
        "Indirect probe requests (ping-req) sent.",
        *indirect_probes_sent,
    )?;
    counter(
        e,
        "stream_probes_sent",
        "Direct probes repeated on a stream after the datagram ping got no ack in time.",
        *stream_probes_sent,
    )?;
    counter(
        e,
        "suspicions_raised",
        "Members this node started to suspect.",
        *suspicions_raised,
    )?;
    counter(
        e,
        "corrections_sent",
        "Datagrams telling a member that a suspicion it relayed was refuted meanwhile.",
        *corrections_sent,
    )?;
    counter(
        e,
        "refutations",
        "Times this node refuted a suspicion or death claim about itself.",
        *refutations,
    )?;
    counter(
        e,
        "core_datagrams_sent",
        "Datagrams the protocol core handed to the transport.",
        *datagrams_out,
    )?;
    counter(
        e,
        "core_datagrams_sent_bytes",
        "Bytes of datagrams the protocol core handed to the transport.",
        *datagram_bytes_out,
    )?;
    counter(
        e,
        "core_datagrams_received",
        "Datagrams the protocol core accepted.",
        *datagrams_in,
    )?;
    counter(
        e,
        "core_datagrams_received_bytes",
        "Bytes of datagrams the protocol core accepted.",
        *datagram_bytes_in,
    )?;
    counter(
        e,
        "decode_errors",
        "Messages refused as malformed.",
        *decode_errors,
    )?;
    counter(
        e,
        "name_mismatches",
        "Messages refused for claiming a sender other than the certificate's name.",
        *name_mismatches,
    )?;
    counter(
        e,
        "push_pulls_started",
        "Full-state exchanges started, joins included.",
        *push_pulls_started,
    )?;
    counter(
        e,
        "push_pulls_answered",
        "Full-state exchanges answered for other members.",
        *push_pulls_answered,
    )?;
    counter(
        e,
        "broadcasts_dropped",
        "Updates dropped because the piggyback queue was full.",
        *broadcasts_dropped,
    )?;
    counter(
        e,
        "events_dropped",
        "Membership events dropped because nobody consumed them.",
        *events_dropped,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use super::*;
    use crate::protocol::{ForgedCounts, NodeName};
    use crate::tls::Refusal;
    use crate::transport::{RefusedCounts, TransportStats};

    fn sample_metrics() -> NodeMetrics {
        NodeMetrics {
            name: NodeName::new("alice").unwrap(),
            incarnation: 3,
            members: [5, 1, 2, 0],
            health_score: 2,
            pending_broadcasts: 7,
            kv_entries: 12,
            kv_bytes: 3400,
            core: Stats {
                probes_sent: 40,
                probes_failed: 4,
                datagram_bytes_out: 12_345,
                forged: ForgedCounts {
                    ack: 3,
                    ping_req: 1,
                    ..ForgedCounts::default()
                },
                ..Stats::default()
            },
            transport: TransportStats {
                bytes_in: 999,
                connections_open: 4,
                refused: RefusedCounts {
                    unknown_ca: 2,
                    ..RefusedCounts::default()
                },
                ..TransportStats::default()
            },
        }
    }

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Splits `k="v",k2="v2"` into pairs, undoing the escapes.
    fn parse_labels(text: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label has =\"");
            assert!(is_metric_name(key), "bad label name {key:?}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("label value is closed") {
                    (_, '\\') => match chars.next().expect("escape is complete").1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => panic!("unknown escape \\{c}"),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_string(), value);
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        labels
    }

    /// A sample line: name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// Checks every line against the 0.0.4 text format and returns the samples. OpenMetrics
    /// lines (`# UNIT`, `# EOF`) and a `_total` missing from a counter's `# TYPE` fail it.
    fn parse(text: &str) -> Vec<Sample> {
        let mut helped = BTreeSet::new();
        let mut typed = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(!help.is_empty(), "empty HELP for {name}");
                assert!(help.ends_with('.'), "HELP for {name} lacks its period");
                assert!(!help.ends_with(".."), "HELP for {name} has two periods");
                assert!(helped.insert(name.to_string()), "second HELP for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                assert!(
                    matches!(kind, "counter" | "gauge" | "histogram"),
                    "kind {kind}"
                );
                assert!(
                    typed.insert(name.to_string(), kind.to_string()).is_none(),
                    "second TYPE for {name}"
                );
            } else {
                assert!(!line.starts_with('#'), "unknown comment {line:?}");
                let (series, value) = line.rsplit_once(' ').expect("sample has a value");
                let value: f64 = value.parse().expect("value is a number");
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => {
                        let labels = labels.strip_suffix('}').expect("labels closed");
                        (name, parse_labels(labels))
                    }
                    None => (series, BTreeMap::new()),
                };
                assert!(is_metric_name(name), "bad metric name {name:?}");
                let histogram = ["_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|suffix| name.strip_suffix(suffix))
                    .find(|family| typed.get(*family).is_some_and(|k| k == "histogram"));
                let kind = typed
                    .get(histogram.unwrap_or(name))
                    .unwrap_or_else(|| panic!("{name} has no TYPE"));
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} lacks _total");
                    assert!(!name.ends_with("_total_total"), "counter {name}");
                }
                samples.push((name.to_string(), labels, value));
            }
        }
        assert_eq!(helped.len(), typed.len(), "a HELP without a TYPE");
        for name in helped {
            assert!(
                name.starts_with("quicswim_") || name.starts_with("process_"),
                "{name} lacks the prefix"
            );
        }
        samples
    }

    fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
        samples
            .iter()
            .find(|(n, labels, _)| {
                n == name && label.is_none_or(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
            .2
    }

    #[test]
    fn output_follows_the_text_format() {
        let text = render(sample_metrics(), None);
        assert!(text.ends_with('\n'));
        let samples = parse(&text);
        assert!(samples.len() > 30, "only {} samples", samples.len());
    }

    #[test]
    fn certificate_expiry_is_a_signed_gauge_shown_only_when_known() {
        let none = parse(&render(sample_metrics(), None));
        assert!(!none
            .iter()
            .any(|(n, _, _)| n == "quicswim_certificate_expiry_seconds"));
        for seconds in [604_800, -30] {
            let samples = parse(&render(sample_metrics(), Some(seconds)));
            let got = value(&samples, "quicswim_certificate_expiry_seconds", None);
            assert_eq!(got, seconds as f64);
        }
        let left = seconds_until(std::time::SystemTime::now() + Duration::from_secs(3_600));
        assert!((3_598..=3_600).contains(&left), "{left}");
        let past = seconds_until(std::time::SystemTime::now() - Duration::from_secs(60));
        assert!((-61..=-59).contains(&past), "{past}");
    }

    #[test]
    fn values_land_under_their_names_and_labels() {
        let samples = parse(&render(sample_metrics(), None));
        let get = |name, label| value(&samples, name, label);
        assert_eq!(get("quicswim_members", Some(("state", "alive"))), 5.0);
        assert_eq!(get("quicswim_members", Some(("state", "dead"))), 2.0);
        assert_eq!(get("quicswim_members", Some(("state", "left"))), 0.0);
        assert_eq!(get("quicswim_probes_sent_total", None), 40.0);
        assert_eq!(get("quicswim_probes_failed_total", None), 4.0);
        assert_eq!(
            get("quicswim_core_datagrams_sent_bytes_total", None),
            12_345.0
        );
        assert_eq!(get("quicswim_transport_received_bytes_total", None), 999.0);
        assert_eq!(get("quicswim_health_multiplier", None), 2.0);
        assert_eq!(get("quicswim_pending_broadcasts", None), 7.0);
        assert_eq!(get("quicswim_connections_open", None), 4.0);
        assert_eq!(get("quicswim_incarnation", None), 3.0);
        assert_eq!(get("quicswim_node_info", Some(("name", "alice"))), 1.0);
        for reason in Refusal::ALL {
            let want = if reason == Refusal::UnknownCa {
                2.0
            } else {
                0.0
            };
            let got = get(
                "quicswim_handshakes_refused_total",
                Some(("reason", reason.as_str())),
            );
            assert_eq!(got, want, "{reason}");
        }
        for kind in ForgedKind::ALL {
            let want = match kind {
                ForgedKind::Ack => 3.0,
                ForgedKind::PingReq => 1.0,
                _ => 0.0,
            };
            let got = get(
                "quicswim_forged_records_total",
                Some(("kind", kind.as_str())),
            );
            assert_eq!(got, want, "{}", kind.as_str());
        }
    }

    #[test]
    fn families_keep_their_types() {
        let text = render(sample_metrics(), None);
        for line in [
            "# TYPE quicswim_node_info gauge",
            "# TYPE quicswim_build_info gauge",
            "# TYPE quicswim_members gauge",
            "# TYPE quicswim_probes_sent_total counter",
            "# TYPE quicswim_handshakes_refused_total counter",
            "# TYPE quicswim_forged_records_total counter",
            "# TYPE quicswim_probe_rtt_seconds histogram",
            "# HELP quicswim_node_info This node's name as a label; always 1.",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?}");
        }
    }

    #[test]
    fn build_info_carries_the_version() {
        let samples = parse(&render(sample_metrics(), None));
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            value(&samples, "quicswim_build_info", Some(("version", version))),
            1.0
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_describe_this_process() {
        let samples = parse(&render(sample_metrics(), None));
        let get = |name| value(&samples, name, None);
        assert!(get("process_resident_memory_bytes") > 0.0);
        assert!(get("process_virtual_memory_bytes") >= get("process_resident_memory_bytes"));
        assert!(get("process_cpu_seconds_total") >= 0.0);
        assert!(get("process_open_fds") >= 1.0);
        assert!(get("process_max_fds") >= get("process_open_fds"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = get("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "start {start}, now {now}"
        );
    }
}
