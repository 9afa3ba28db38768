//! Transport counters.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::tls::Refusal;

/// A snapshot of the transport's counters, all since [`Transport::bind`](super::Transport::bind)
/// except the `connections_*` gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransportStats {
    /// Datagrams delivered to the application.
    pub datagrams_in: u64,
    /// Datagrams handed to QUIC for sending.
    pub datagrams_out: u64,
    /// Payload bytes received: datagrams plus request and reply frames.
    pub bytes_in: u64,
    /// Payload bytes sent: datagrams plus request and reply frames.
    pub bytes_out: u64,
    /// Datagrams refused because they exceed the connection's `max_datagram_size`.
    pub datagrams_too_large: u64,
    /// Datagrams dropped otherwise: dial failed, too many queued behind a dial, connection lost.
    pub datagrams_dropped: u64,
    /// Requests received and handed to the application.
    pub requests_in: u64,
    /// Requests sent.
    pub requests_out: u64,
    /// Requests sent that ended in an error.
    pub requests_failed: u64,
    /// Requests sent again on another connection because the peer was closing the first one
    /// and had not processed them.
    pub requests_retried: u64,
    /// Frames refused for exceeding `frame_len_max`, in either direction.
    pub frames_too_large: u64,
    /// Outgoing connection attempts.
    pub dials: u64,
    /// Outgoing connection attempts that did not end admitted.
    pub dials_failed: u64,
    /// Dials not made because the peer refused lately (see `Error::Paced`).
    pub dials_paced: u64,
    /// Connections closed because the peer's certificate expired while they were up.
    pub expired_closed: u64,
    /// Handshakes or admissions refused, by class, on either side.
    pub refused: RefusedCounts,
    /// Incoming handshakes started (accepted past the checks on strangers).
    pub handshakes_in: u64,
    /// Incoming connections answered with a QUIC Retry, to validate their address first.
    pub retries_sent: u64,
    /// Incoming connections refused because `handshakes_in_max` were in progress.
    pub handshakes_in_refused: u64,
    /// Incoming connections ignored because their IP address was over its handshake rate.
    pub handshakes_in_rate_limited: u64,
    /// Incoming handshakes not admitted within `handshake_timeout`.
    pub handshakes_in_timed_out: u64,
    /// Refusal log lines held back by the log rate limit (each refusal is still counted).
    pub refusal_logs_suppressed: u64,
    /// Datagrams dropped because their connection's receive queue was full (a peer sending
    /// faster than its fair share).
    pub datagrams_shed: u64,
    /// Connections closed because the pool was full.
    pub evictions: u64,
    /// Connections closed as the loser of a dial race.
    pub duplicates_closed: u64,
    /// Connections closed after `idle_timeout` without traffic.
    pub idle_closed: u64,
    /// Gauge: admitted connections still open (pooled or being closed).
    pub connections_open: u64,
    /// Gauge: connections in the pool, one per peer.
    pub connections_pooled: u64,
    /// What QUIC itself put on and took off the wire, over every admitted connection.
    pub wire: WireStats,
}

/// QUIC's own counters, summed over connections: UDP datagrams and their payload bytes, so
/// with QUIC headers, acknowledgements, handshakes, keep-alives, retransmissions and
/// encryption tags (IP and UDP headers are not in them). Connections refused or failed
/// before admission are not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WireStats {
    /// UDP datagrams sent.
    pub datagrams_out: u64,
    /// Bytes in the UDP datagrams sent.
    pub bytes_out: u64,
    /// UDP datagrams received.
    pub datagrams_in: u64,
    /// Bytes in the UDP datagrams received.
    pub bytes_in: u64,
}

impl WireStats {
    /// What QUIC has counted on `conn` so far.
    pub(crate) fn of(conn: &quinn::Connection) -> Self {
        let stats = conn.stats();
        WireStats {
            datagrams_out: stats.udp_tx.datagrams,
            bytes_out: stats.udp_tx.bytes,
            datagrams_in: stats.udp_rx.datagrams,
            bytes_in: stats.udp_rx.bytes,
        }
    }
}

impl std::ops::AddAssign for WireStats {
    fn add_assign(&mut self, other: Self) {
        self.datagrams_out += other.datagrams_out;
        self.bytes_out += other.bytes_out;
        self.datagrams_in += other.datagrams_in;
        self.bytes_in += other.bytes_in;
    }
}

/// Refusals by class; see [`Refusal`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RefusedCounts {
    /// Certificate not from a trusted CA.
    pub unknown_ca: u64,
    /// Certificate does not name the expected node, or names none.
    pub bad_name: u64,
    /// No client certificate.
    pub no_client_cert: u64,
    /// Certificate expired or not yet valid.
    pub expired: u64,
    /// Certificate lacks serverAuth or clientAuth.
    pub bad_usage: u64,
    /// Certificate listed by a revocation list.
    pub revoked: u64,
    /// Anything else, including failed admission round trips.
    pub other: u64,
}

impl RefusedCounts {
    /// The count for one class.
    pub fn get(&self, reason: Refusal) -> u64 {
        match reason {
            Refusal::UnknownCa => self.unknown_ca,
            Refusal::BadName => self.bad_name,
            Refusal::NoClientCert => self.no_client_cert,
            Refusal::Expired => self.expired,
            Refusal::BadUsage => self.bad_usage,
            Refusal::Revoked => self.revoked,
            Refusal::Other => self.other,
        }
    }

    /// All classes together.
    pub fn total(&self) -> u64 {
        Refusal::ALL.iter().map(|r| self.get(*r)).sum()
    }
}

/// The live counters behind [`TransportStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub datagrams_too_large: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub requests_in: AtomicU64,
    pub requests_out: AtomicU64,
    pub requests_failed: AtomicU64,
    pub requests_retried: AtomicU64,
    pub frames_too_large: AtomicU64,
    pub dials: AtomicU64,
    pub dials_failed: AtomicU64,
    pub dials_paced: AtomicU64,
    pub expired_closed: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    pub handshakes_in: AtomicU64,
    pub retries_sent: AtomicU64,
    pub handshakes_in_refused: AtomicU64,
    pub handshakes_in_rate_limited: AtomicU64,
    pub handshakes_in_timed_out: AtomicU64,
    pub refusal_logs_suppressed: AtomicU64,
    pub datagrams_shed: AtomicU64,
    pub evictions: AtomicU64,
    pub duplicates_closed: AtomicU64,
    pub idle_closed: AtomicU64,
    pub connections_open: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl Counters {
    pub fn refused(&self, reason: Refusal) {
        bump(&self.refused[reason as usize]);
    }

    pub fn connection_closed(&self) {
        // Saturating: a stray double count must not wrap the gauge.
        let _ = self
            .connections_open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    pub fn snapshot(&self, connections_pooled: usize, wire: WireStats) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let refused = |r: Refusal| get(&self.refused[r as usize]);
        TransportStats {
            datagrams_in: get(&self.datagrams_in),
            datagrams_out: get(&self.datagrams_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            datagrams_too_large: get(&self.datagrams_too_large),
            datagrams_dropped: get(&self.datagrams_dropped),
            requests_in: get(&self.requests_in),
            requests_out: get(&self.requests_out),
            requests_failed: get(&self.requests_failed),
            requests_retried: get(&self.requests_retried),
            frames_too_large: get(&self.frames_too_large),
            dials: get(&self.dials),
            dials_failed: get(&self.dials_failed),
            dials_paced: get(&self.dials_paced),
            expired_closed: get(&self.expired_closed),
            refused: RefusedCounts {
                unknown_ca: refused(Refusal::UnknownCa),
                bad_name: refused(Refusal::BadName),
                no_client_cert: refused(Refusal::NoClientCert),
                expired: refused(Refusal::Expired),
                bad_usage: refused(Refusal::BadUsage),
                revoked: refused(Refusal::Revoked),
                other: refused(Refusal::Other),
            },
            handshakes_in: get(&self.handshakes_in),
            retries_sent: get(&self.retries_sent),
            handshakes_in_refused: get(&self.handshakes_in_refused),
            handshakes_in_rate_limited: get(&self.handshakes_in_rate_limited),
            handshakes_in_timed_out: get(&self.handshakes_in_timed_out),
            refusal_logs_suppressed: get(&self.refusal_logs_suppressed),
            datagrams_shed: get(&self.datagrams_shed),
            evictions: get(&self.evictions),
            duplicates_closed: get(&self.duplicates_closed),
            idle_closed: get(&self.idle_closed),
            connections_open: get(&self.connections_open),
            connections_pooled: u64::try_from(connections_pooled).unwrap_or(u64::MAX),
            wire,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_land_in_their_class() {
        let counters = Counters::default();
        counters.refused(Refusal::UnknownCa);
        counters.refused(Refusal::NoClientCert);
        counters.refused(Refusal::NoClientCert);
        let stats = counters.snapshot(0, WireStats::default());
        assert_eq!(stats.refused.unknown_ca, 1);
        assert_eq!(stats.refused.get(Refusal::NoClientCert), 2);
        assert_eq!(stats.refused.total(), 3);
    }

    #[test]
    fn open_gauge_does_not_wrap() {
        let counters = Counters::default();
        counters.connection_closed();
        assert_eq!(
            counters.snapshot(0, WireStats::default()).connections_open,
            0
        );
    }
}
