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
    /// A connection with nothing received for this long is closed: QUIC's idle timeout (the
    /// peer vanished) and, for connections the application has not used for this long, the
    /// pool's own idle sweep (which the owner may stretch with
    /// [`Transport::keep_unused_for`](super::Transport::keep_unused_for); a node does).
    /// Default 30 s; 1 s ..= 10 min.
    pub idle_timeout: Duration,
    /// QUIC keep-alive interval, so a quiet but used connection to a live peer survives (and
    /// NAT bindings stay open). Default 25 s, five seconds inside the idle timeout: a node
    /// keeps a connection to every member it probes, and keep-alives on all of them are a
    /// large share of an idle node's CPU when they come often. Must be below `idle_timeout`.
    pub keep_alive: Duration,
    /// Most connections kept in the pool; admitting one more evicts the least recently used.
    /// Also bounds handshakes in progress. Default 512; at least 1.
    pub max_connections: usize,
    /// Largest request or reply frame accepted or sent, in bytes. Default 8 MiB;
    /// 64 B ..= 4 GiB - 1.
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
            keep_alive: Duration::from_secs(25),
            max_connections: 512,
            frame_len_max: 8 << 20,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl TransportConfig {
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
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad(format!(
                "keep_alive {:?} must be above zero and below idle_timeout {:?}",
                self.keep_alive, self.idle_timeout
            ));
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1".into());
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
            keep_alive: Duration::from_secs(30),
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
        ];
        for config in configs {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
