//! Node metrics in the Prometheus text exposition format (version 0.0.4).
//!
//! Every family gets `# HELP` and `# TYPE` lines and a name prefixed `quicswim_`; counters
//! end in `_total`. Core counters (`quicswim_core_*`) count what the protocol handed to and
//! accepted from the runtime; transport counters (`quicswim_transport_*`) count what crossed
//! QUIC, stream frames included.

use std::fmt::Write;

use crate::node::NodeMetrics;
use crate::protocol::{State, Stats};
use crate::tls::Refusal;
use crate::transport::TransportStats;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prefix of every metric name.
const PREFIX: &str = "quicswim_";

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Appends metric families to a string.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.out, "# TYPE {PREFIX}{name} {}", kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(PREFIX);
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.family(name, Kind::Counter, help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Renders one node's metrics as a Prometheus text exposition.
pub fn render(m: &NodeMetrics) -> String {
    let mut e = Exposition {
        out: String::with_capacity(8 * 1024),
    };
    e.family(
        "node_info",
        Kind::Gauge,
        "This node's name as a label; always 1.",
    );
    e.sample("node_info", &[("name", m.name.as_str())], 1);
    e.gauge("incarnation", "This node's incarnation.", m.incarnation);
    e.family(
        "members",
        Kind::Gauge,
        "Members known to this node by state, this node included.",
    );
    let states = [State::Alive, State::Suspect, State::Dead, State::Left];
    for (state, n) in states.iter().zip(m.members) {
        e.sample("members", &[("state", state.as_str())], count(n));
    }
    e.gauge(
        "health_multiplier",
        "Lifeguard local health multiplier: 0 is healthy; higher stretches probe timing.",
        u64::from(m.health_score),
    );
    e.gauge(
        "pending_broadcasts",
        "Updates waiting to be piggybacked on outgoing datagrams.",
        count(m.pending_broadcasts),
    );
    e.gauge(
        "kv_entries",
        "Live key/value entries held here, over every owner.",
        count(m.kv_entries),
    );
    e.gauge(
        "kv_bytes",
        "Bytes of live keys and values held here, over every owner.",
        count(m.kv_bytes),
    );
    render_core(&mut e, &m.core);
    render_transport(&mut e, &m.transport);
    e.out
}

fn render_core(e: &mut Exposition, s: &Stats) {
    // Destructured in full so that a counter added to `Stats` cannot be left out unnoticed.
    let Stats {
        probes_sent,
        probes_failed,
        indirect_probes_sent,
        stream_probes_sent,
        suspicions_raised,
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
        user_events_delivered,
    } = s;
    e.counter(
        "kv_updates_applied_total",
        "Key/value entries that changed here from peers (key/value rounds or anti-entropy).",
        *kv_updates_applied,
    );
    e.counter(
        "kv_refused_total",
        "Key/value entries from peers refused for breaking a limit.",
        *kv_refused,
    );
    e.counter(
        "kv_entries_synced_total",
        "Key/value entries sent in anti-entropy exchanges and key/value rounds.",
        *kv_entries_synced,
    );
    e.counter(
        "kv_syncs_started_total",
        "Key/value round requests sent (one per member per round).",
        *kv_syncs_started,
    );
    e.counter(
        "anti_entropy_sent_bytes_total",
        "Bytes of anti-entropy requests, replies, key/value rounds and pushes sent.",
        *anti_entropy_bytes_out,
    );
    e.counter(
        "user_events_delivered_total",
        "User events delivered here (each at most once).",
        *user_events_delivered,
    );
    e.counter(
        "probes_sent_total",
        "Direct probes (pings) sent.",
        *probes_sent,
    );
    e.counter(
        "probes_failed_total",
        "Probes that ended with no ack, direct or indirect.",
        *probes_failed,
    );
    e.counter(
        "indirect_probes_sent_total",
        "Indirect probe requests (ping-req) sent.",
        *indirect_probes_sent,
    );
    e.counter(
        "stream_probes_sent_total",
        "Direct probes repeated on a stream after the datagram ping got no ack in time.",
        *stream_probes_sent,
    );
    e.counter(
        "suspicions_raised_total",
        "Members this node started to suspect.",
        *suspicions_raised,
    );
    e.counter(
        "refutations_total",
        "Times this node refuted a suspicion or death claim about itself.",
        *refutations,
    );
    e.counter(
        "core_datagrams_sent_total",
        "Datagrams the protocol core handed to the transport.",
        *datagrams_out,
    );
    e.counter(
        "core_datagrams_sent_bytes_total",
        "Bytes of datagrams the protocol core handed to the transport.",
        *datagram_bytes_out,
    );
    e.counter(
        "core_datagrams_received_total",
        "Datagrams the protocol core accepted.",
        *datagrams_in,
    );
    e.counter(
        "core_datagrams_received_bytes_total",
        "Bytes of datagrams the protocol core accepted.",
        *datagram_bytes_in,
    );
    e.counter(
        "decode_errors_total",
        "Messages refused as malformed.",
        *decode_errors,
    );
    e.counter(
        "name_mismatches_total",
        "Messages refused for claiming a sender other than the certificate's name.",
        *name_mismatches,
    );
    e.counter(
        "push_pulls_started_total",
        "Full-state exchanges started, joins included.",
        *push_pulls_started,
    );
    e.counter(
        "push_pulls_answered_total",
        "Full-state exchanges answered for other members.",
        *push_pulls_answered,
    );
    e.counter(
        "broadcasts_dropped_total",
        "Updates dropped because the piggyback queue was full.",
        *broadcasts_dropped,
    );
    e.counter(
        "events_dropped_total",
        "Membership events dropped because nobody consumed them.",
        *events_dropped,
    );
}

fn render_transport(e: &mut Exposition, t: &TransportStats) {
    let TransportStats {
        datagrams_in,
        datagrams_out,
        bytes_in,
        bytes_out,
        datagrams_too_large,
        datagrams_dropped,
        requests_in,
        requests_out,
        requests_failed,
        requests_retried,
        frames_too_large,
        dials,
        dials_failed,
        refused,
        evictions,
        duplicates_closed,
        idle_closed,
        connections_open,
        connections_pooled,
        wire,
    } = t;
    e.counter(
        "transport_datagrams_received_total",
        "QUIC datagrams received and delivered.",
        *datagrams_in,
    );
    e.counter(
        "transport_datagrams_sent_total",
        "QUIC datagrams handed to QUIC for sending.",
        *datagrams_out,
    );
    e.counter(
        "transport_received_bytes_total",
        "Payload bytes received: datagrams plus stream request and reply frames.",
        *bytes_in,
    );
    e.counter(
        "transport_sent_bytes_total",
        "Payload bytes sent: datagrams plus stream request and reply frames.",
        *bytes_out,
    );
    e.counter(
        "transport_udp_datagrams_sent_total",
        "UDP datagrams QUIC sent (handshakes, acknowledgements and keep-alives included).",
        wire.datagrams_out,
    );
    e.counter(
        "transport_udp_datagrams_received_total",
        "UDP datagrams QUIC received on admitted connections.",
        wire.datagrams_in,
    );
    e.counter(
        "transport_udp_sent_bytes_total",
        "Bytes on the wire as QUIC counts them: UDP payloads sent, all QUIC overhead included.",
        wire.bytes_out,
    );
    e.counter(
        "transport_udp_received_bytes_total",
        "UDP payload bytes QUIC received on admitted connections.",
        wire.bytes_in,
    );
    e.counter(
        "transport_datagrams_too_large_total",
        "Datagrams refused for exceeding the connection's maximum datagram size.",
        *datagrams_too_large,
    );
    e.counter(
        "transport_datagrams_dropped_total",
        "Datagrams dropped: dial failed, too many queued behind a dial, connection lost.",
        *datagrams_dropped,
    );
    e.counter(
        "transport_requests_received_total",
        "Stream requests received.",
        *requests_in,
    );
    e.counter(
        "transport_requests_sent_total",
        "Stream requests sent.",
        *requests_out,
    );
    e.counter(
        "transport_requests_failed_total",
        "Stream requests sent that ended in an error.",
        *requests_failed,
    );
    e.counter(
        "transport_requests_retried_total",
        "Stream requests sent again because the peer was closing the first connection.",
        *requests_retried,
    );
    e.counter(
        "transport_frames_too_large_total",
        "Stream frames refused for exceeding the frame size limit.",
        *frames_too_large,
    );
    e.counter(
        "transport_dials_total",
        "Outgoing connection attempts.",
        *dials,
    );
    e.counter(
        "transport_dials_failed_total",
        "Outgoing connection attempts that did not end admitted.",
        *dials_failed,
    );
    e.family(
        "handshakes_refused_total",
        Kind::Counter,
        "TLS handshakes or admissions refused, either side, by reason.",
    );
    for reason in Refusal::ALL {
        e.sample(
            "handshakes_refused_total",
            &[("reason", reason.as_str())],
            refused.get(reason),
        );
    }
    e.counter(
        "transport_evictions_total",
        "Connections closed because the pool was full.",
        *evictions,
    );
    e.counter(
        "transport_duplicates_closed_total",
        "Connections closed as the loser of a dial race.",
        *duplicates_closed,
    );
    e.counter(
        "transport_idle_closed_total",
        "Connections closed after the idle timeout.",
        *idle_closed,
    );
    e.gauge(
        "connections_open",
        "Admitted QUIC connections still open.",
        *connections_open,
    );
    e.gauge(
        "connections_pooled",
        "QUIC connections in the pool, one per peer.",
        *connections_pooled,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::protocol::NodeName;
    use crate::transport::RefusedCounts;

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

    /// Checks every line against the text format and returns the samples.
    fn parse(text: &str) -> Vec<Sample> {
        let mut helped = BTreeSet::new();
        let mut typed = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(!help.is_empty(), "empty HELP for {name}");
                assert!(helped.insert(name.to_string()), "second HELP for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert!(helped.contains(name), "TYPE before HELP for {name}");
                assert!(matches!(kind, "counter" | "gauge"), "kind {kind}");
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
                let kind = typed
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} has no TYPE"));
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} lacks _total");
                }
                samples.push((name.to_string(), labels, value));
            }
        }
        assert_eq!(helped.len(), typed.len(), "a HELP without a TYPE");
        for name in helped {
            assert!(name.starts_with("quicswim_"), "{name} lacks the prefix");
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
        let text = render(&sample_metrics());
        assert!(text.ends_with('\n'));
        let samples = parse(&text);
        assert!(samples.len() > 30, "only {} samples", samples.len());
    }

    #[test]
    fn values_land_under_their_names_and_labels() {
        let samples = parse(&render(&sample_metrics()));
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
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition { out: String::new() };
        e.family("x", Kind::Gauge, "help with \\ and\nnewline");
        e.sample("x", &[("v", "a\"b\\c\nd")], 1);
        let samples = parse(&e.out);
        assert_eq!(samples[0].1["v"], "a\"b\\c\nd");
        assert!(e.out.contains("help with \\\\ and\\nnewline"));
    }
}
