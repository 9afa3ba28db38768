//! The transport's families (`quicswim_transport_*`, `quicswim_handshakes_refused`,
//! `quicswim_connections_*`): every field of [`TransportStats`] destructured, so a counter
//! added there cannot be left out here unnoticed.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use super::{counter, gauge};
use crate::tls::Refusal;
use crate::transport::TransportStats;

pub(super) fn encode_transport(e: &mut DescriptorEncoder, t: &TransportStats) -> fmt::Result {
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
        dials_paced,
        expired_closed,
        refused,
        handshakes_in,
        retries_sent,
        handshakes_in_refused,
        handshakes_in_rate_limited,
        handshakes_in_timed_out,
        refusal_logs_suppressed,
        datagrams_shed,
        evictions,
        duplicates_closed,
        idle_closed,
        connections_open,
        connections_pooled,
        wire,
    } = t;
    counter(
        e,
        "transport_datagrams_received",
        "QUIC datagrams received and delivered.",
        *datagrams_in,
    )?;
    counter(
        e,
        "transport_datagrams_sent",
        "QUIC datagrams handed to QUIC for sending.",
        *datagrams_out,
    )?;
    counter(
        e,
        "transport_received_bytes",
        "Payload bytes received: datagrams plus stream request and reply frames.",
        *bytes_in,
    )?;
    counter(
        e,
        "transport_sent_bytes",
        "Payload bytes sent: datagrams plus stream request and reply frames.",
        *bytes_out,
    )?;
    counter(
        e,
        "transport_udp_datagrams_sent",
        "UDP datagrams QUIC sent (handshakes, acknowledgements and keep-alives included).",
        wire.datagrams_out,
    )?;
    counter(
        e,
        "transport_udp_datagrams_received",
        "UDP datagrams QUIC received on admitted connections.",
        wire.datagrams_in,
    )?;
    counter(
        e,
        "transport_udp_sent_bytes",
        "Bytes on the wire as QUIC counts them: UDP payloads sent, all QUIC overhead included.",
        wire.bytes_out,
    )?;
    counter(
        e,
        "transport_udp_received_bytes",
        "UDP payload bytes QUIC received on admitted connections.",
        wire.bytes_in,
    )?;
    counter(
        e,
        "transport_datagrams_too_large",
        "Datagrams refused for exceeding the connection's maximum datagram size.",
        *datagrams_too_large,
    )?;
    counter(
        e,
        "transport_datagrams_dropped",
        "Datagrams dropped: dial failed, too many queued behind a dial, connection lost.",
        *datagrams_dropped,
    )?;
    counter(
        e,
        "transport_requests_received",
        "Stream requests received.",
        *requests_in,
    )?;
    counter(
        e,
        "transport_requests_sent",
        "Stream requests sent.",
        *requests_out,
    )?;
    counter(
        e,
        "transport_requests_failed",
        "Stream requests sent that ended in an error.",
        *requests_failed,
    )?;
    counter(
        e,
        "transport_requests_retried",
        "Stream requests sent again because the peer was closing the first connection.",
        *requests_retried,
    )?;
    counter(
        e,
        "transport_frames_too_large",
        "Stream frames refused for exceeding the frame size limit.",
        *frames_too_large,
    )?;
    counter(
        e,
        "transport_dials",
        "Outgoing connection attempts.",
        *dials,
    )?;
    counter(
        e,
        "transport_dials_failed",
        "Outgoing connection attempts that did not end admitted.",
        *dials_failed,
    )?;
    counter(
        e,
        "transport_dials_paced",
        "Dials not made because the peer refused a handshake lately (waits of 1 s doubling to 60 s).",
        *dials_paced,
    )?;
    counter(
        e,
        "transport_expired_closed",
        "Connections closed because the peer's certificate expired while they were up.",
        *expired_closed,
    )?;
    let mut handshakes_refused = e.encode_descriptor(
        "handshakes_refused",
        "TLS handshakes or admissions refused, either side, by reason.",
        None,
        MetricType::Counter,
    )?;
    for reason in Refusal::ALL {
        ConstCounter::new(refused.get(reason))
            .encode(handshakes_refused.encode_family(&[("reason", reason.as_str())])?)?;
    }
    counter(
        e,
        "transport_handshakes_accepted",
        "Incoming handshakes started past the checks on strangers.",
        *handshakes_in,
    )?;
    counter(
        e,
        "transport_retries_sent",
        "Incoming connections sent a QUIC Retry to validate their address.",
        *retries_sent,
    )?;
    counter(
        e,
        "transport_handshakes_busy_refused",
        "Incoming connections refused because the accepted handshake budget was full.",
        *handshakes_in_refused,
    )?;
    counter(
        e,
        "transport_handshakes_rate_limited",
        "Incoming connections ignored because their IP address was over its handshake rate.",
        *handshakes_in_rate_limited,
    )?;
    counter(
        e,
        "transport_handshakes_timed_out",
        "Incoming handshakes not admitted within the handshake timeout.",
        *handshakes_in_timed_out,
    )?;
    counter(
        e,
        "transport_refusal_logs_suppressed",
        "Refusal log lines held back by the log rate limit.",
        *refusal_logs_suppressed,
    )?;
    counter(
        e,
        "transport_datagrams_shed",
        "Datagrams dropped because the sending peer's receive queue was full.",
        *datagrams_shed,
    )?;
    counter(
        e,
        "transport_evictions",
        "Connections closed because the pool was full.",
        *evictions,
    )?;
    counter(
        e,
        "transport_duplicates_closed",
        "Connections closed as the loser of a dial race.",
        *duplicates_closed,
    )?;
    counter(
        e,
        "transport_idle_closed",
        "Connections closed after the idle timeout.",
        *idle_closed,
    )?;
    gauge(
        e,
        "connections_open",
        "Admitted QUIC connections still open.",
        *connections_open,
    )?;
    gauge(
        e,
        "connections_pooled",
        "QUIC connections in the pool, one per peer.",
        *connections_pooled,
    )
}
