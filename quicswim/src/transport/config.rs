//! Transport settings.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::Error;

/// Settings of a [`Transport`](super::Transport), checked once by
/// [`Transport::bind`](super::Transport::bind).
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// UDP address of the one socket the node listens and dials from. Default
    /// `127.0.0.1:0` (loopback, any port): set a routable address for a real cluster.
    pub bind: SocketAddr,
    /// A pooled connection the application has not used for this long is closed by the
    /// pool's idle sweep (which the owner may stretch with
    /// [`Transport::keep_unused_for`](super::Transport::keep_unused_for); a node does). With
    /// `keep_alive` set it is also QUIC's idle timeout (nothing received for this long: the
    /// peer vanished). Default 30 s; 1 s ..= 10 min.
    pub idle_timeout: Duration,
    /// QUIC keep-alive interval, or `None` (the default) for none. Keep-alives hold open a
    /// path that something between the nodes forgets when it is quiet, such as a NAT
    /// binding; they are not needed for liveness, which SWIM's probes establish. A node
    /// keeps a connection to every member it probes, used about once a probe pass, so
    /// keep-alives would grow its packets and CPU with the cluster size. Without them,
    /// QUIC's own idle timeout is an hour and the pool's sweep closes unused connections;
    /// a peer restarted with the same key on the same address closes the connections its
    /// earlier process left with a stateless reset. Must be below `idle_timeout`.
    pub keep_alive: Option<Duration>,
    /// Most connections kept in the pool; admitting one more evicts the least recently used.
    /// Also bounds this node's own dials in progress. Default 512; at least 1.
    pub max_connections: usize,
    /// Most handshakes accepted from others in progress at once (first packet to admission);
    /// more are refused. Kept apart from, and smaller than, the dial budget so strangers
    /// that never finish cannot stop this node from dialling or being joined. Default 128;
    /// 1 ..= `max_connections`.
    pub handshakes_in_max: usize,
    /// Once this many accepted handshakes are in progress, a new one whose address is not
    /// yet validated is answered with a QUIC Retry: it costs no state, and a sender with a
    /// forged address cannot answer it. Default 16; 0 (always) ..= `handshakes_in_max`.
    pub retry_above: usize,
    /// Bound on an accepted handshake with its admission round trip; a client that stalls
    /// is dropped after it. Default 4 s (several retransmissions of a lost flight);
    /// 100 ms ..= `request_timeout`.
    pub handshake_timeout: Duration,
    /// New handshakes accepted per second from one IP address (a token bucket, refilled at
    /// this rate, holding `handshakes_per_ip_burst`). Over it, a sender not yet validated is
    /// sent a Retry and a validated one is ignored (its client retransmits later). Default
    /// 20; at least 1.
    pub handshakes_per_ip_rate: u32,
    /// Handshakes one IP address (IPv6: one /64) may start at once before its rate applies:
    /// the bucket's size. Whatever the rate, one source holds at most
    /// `handshakes_per_ip_open_max` handshakes open at once. Default 16 (with 20 a second, a test cluster on one loopback
    /// address still joins at once: its handshakes end in milliseconds); at least 1.
    pub handshakes_per_ip_burst: u32,
    /// Handshakes one IP address (IPv6: one /64) may hold open at once, however slowly they
    /// finish, so a single stranger with a real address cannot fill `handshakes_in_max`.
    /// Default 16 (an eighth of the default budget); at least 1, and never more than
    /// `handshakes_in_max` whatever it is set to.
    pub handshakes_per_ip_open_max: usize,
    /// Request streams a peer may have open to this node at once (QUIC's
    /// `max_concurrent_bidi_streams`); further ones wait for a slot. Default 8; 1 ..= 1024.
    pub streams_per_peer_max: u32,
    /// Largest request or reply frame accepted or sent, in bytes. Frames are read as their
    /// bytes arrive, never allocated at the announced length, and the request frames being
    /// read from one peer at once share one budget of this size. Default 8 MiB (the
    /// protocol's largest stream message); 64 B ..= 4 GiB - 1.
    pub frame_len_max: usize,
    /// Bound on one request (dial, write, the peer's reply) and on a dial with its admission
    /// round trip. Default 10 s; at least 10 ms.
    pub request_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            idle_timeout: Duration::from_secs(30),
            keep_alive: None,
            max_connections: 512,
            handshakes_in_max: 128,
            retry_above: 16,
            handshake_timeout: Duration::from_secs(4),
            handshakes_per_ip_rate: 20,
            handshakes_per_ip_burst: 16,
            handshakes_per_ip_open_max: 16,
            streams_per_peer_max: 8,
            frame_len_max: 8 << 20,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl TransportConfig {
    /// Whether `keep_alive` is a usable keep-alive interval: above zero and below
    /// `idle_timeout`, or the connection would idle out between two keep-alives.
    pub fn keep_alive_fits(&self, keep_alive: Duration) -> bool {
        !keep_alive.is_zero() && keep_alive < self.idle_timeout
    }

    /// Checks ranges and cross-field rules; [`Transport::bind`](super::Transport::bind) calls
    /// it first.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::Config { reason });
        if self.idle_timeout < Duration::from_secs(1)
            || self.idle_timeout > Duration::from_secs(600)
        {
            return bad(format!(
                "idle_timeout {:?} is outside 1s..=600s",
                self.idle_timeout
            ));
        }
        if let Some(keep_alive) = self.keep_alive {
            if !self.keep_alive_fits(keep_alive) {
                return bad(format!(
                    "keep_alive {keep_alive:?} must be above zero and below idle_timeout {:?}",
                    self.idle_timeout
                ));
            }
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1".into());
        }
        if self.handshakes_in_max == 0 {
            return bad("handshakes_in_max must be at least 1".into());
        }
        if self.handshakes_in_max > self.max_connections {
            return bad(format!(
                "handshakes_in_max {} is above max_connections {}",
                self.handshakes_in_max, self.max_connections
            ));
        }
        if self.retry_above > self.handshakes_in_max {
            return bad(format!(
                "retry_above {} is above handshakes_in_max {}",
                self.retry_above, self.handshakes_in_max
            ));
        }
        if self.handshakes_per_ip_open_max == 0 {
            return bad("handshakes_per_ip_open_max must be at least 1".into());
        }
        if self.handshakes_per_ip_rate == 0 || self.handshakes_per_ip_burst == 0 {
            return bad(
                "handshakes_per_ip_rate and handshakes_per_ip_burst must be at least 1".into(),
            );
        }
        if !(1..=1024).contains(&self.streams_per_peer_max) {
            return bad(format!(
                "streams_per_peer_max {} is outside 1..=1024",
                self.streams_per_peer_max
            ));
        }
        if self.frame_len_max < 64 || u32::try_from(self.frame_len_max).is_err() {
            return bad(format!(
                "frame_len_max {} is outside 64..=4294967295",
                self.frame_len_max
            ));
        }
        if self.request_timeout < Duration::from_millis(10) {
            return bad(format!(
                "request_timeout {:?} is below 10ms",
                self.request_timeout
            ));
        }
        if self.handshake_timeout < Duration::from_millis(100)
            || self.handshake_timeout > self.request_timeout
        {
            return bad(format!(
                "handshake_timeout {:?} is outside 100ms..=request_timeout ({:?})",
                self.handshake_timeout, self.request_timeout
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TransportConfig::default().validate().unwrap();
    }

    #[test]
    fn keep_alive_must_be_below_idle_timeout() {
        let config = TransportConfig {
            keep_alive: Some(Duration::from_secs(30)),
            ..TransportConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("keep_alive"), "{err}");
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let configs = [
            TransportConfig {
                max_connections: 0,
                ..TransportConfig::default()
            },
            TransportConfig {
                frame_len_max: 10,
                ..TransportConfig::default()
            },
            TransportConfig {
                request_timeout: Duration::ZERO,
                ..TransportConfig::default()
            },
            TransportConfig {
                idle_timeout: Duration::from_secs(3600),
                ..TransportConfig::default()
            },
            TransportConfig {
                handshakes_in_max: 0,
                ..TransportConfig::default()
            },
            TransportConfig {
                retry_above: 200,
                ..TransportConfig::default()
            },
            TransportConfig {
                handshakes_per_ip_open_max: 0,
                ..TransportConfig::default()
            },
            TransportConfig {
                max_connections: 64,
                retry_above: 8,
                ..TransportConfig::default()
            },
            TransportConfig {
                handshake_timeout: Duration::from_secs(60),
                ..TransportConfig::default()
            },
            TransportConfig {
                handshakes_per_ip_rate: 0,
                ..TransportConfig::default()
            },
            TransportConfig {
                streams_per_peer_max: 0,
                ..TransportConfig::default()
            },
        ];
        for config in configs {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
