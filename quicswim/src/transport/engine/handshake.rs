//! Dialling and accepting: handshake, certificate name, admission round trip, and the
//! classification of failures into refusals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::ConnectionError;
use tokio::time::timeout;
use tracing::{debug, trace, warn};

use super::{DialKey, Engine};
use crate::protocol::NodeName;
use crate::tls::{self, Refusal};
use crate::transport::hello::{self, HelloError};
use crate::transport::link::peer_name_of;
use crate::transport::stats::{add, bump};
use crate::transport::strangers::{verdict, Arrival, Limits, Verdict};
use crate::transport::{codes, Error, Incoming, Peer};

/// Why a dial or accept did not end admitted.
#[derive(Clone, Debug)]
pub(super) enum Failure {
    Refused {
        reason: Refusal,
        detail: String,
    },
    Unreachable(String),
    SelfDial,
    Busy,
    Closed,
    /// The peer refused lately and is not dialled again yet.
    Paced {
        retry_in: Duration,
    },
}

impl Failure {
    fn refused(reason: Refusal, detail: impl Into<String>) -> Self {
        Failure::Refused {
            reason,
            detail: detail.into(),
        }
    }

    pub(super) fn into_error(self, peer: &Peer, engine: &Engine) -> Error {
        let peer_label = peer.to_string();
        match self {
            Failure::Refused { reason, detail } => Error::Refused {
                peer: peer_label,
                reason,
                detail,
            },
            Failure::Unreachable(detail) => Error::Unreachable {
                peer: peer_label,
                detail,
            },
            Failure::SelfDial => Error::SelfDial {
                peer: peer_label,
                name: engine.local_name.to_string(),
            },
            Failure::Busy => Error::Busy {
                peer: peer_label,
                max: engine.config.max_connections,
            },
            Failure::Closed => Error::Closed,
            Failure::Paced { retry_in } => Error::Paced {
                peer: peer_label,
                retry_in,
            },
        }
    }
}

/// The TLS alert carried by a QUIC crypto error code (0x100..=0x1ff).
fn alert_of(code: quinn::TransportErrorCode) -> Option<u8> {
    let code = u64::from(code);
    (0x100..=0x1ff)
        .contains(&code)
        .then(|| u8::try_from(code & 0xff).unwrap_or(0))
}

/// Classifies a connection failure during handshake or admission. TLS alerts either side sent
/// are refusals; silence and resets are unreachability.
fn failure_of(err: &ConnectionError) -> Failure {
    match err {
        ConnectionError::TransportError(e) => match alert_of(e.code) {
            Some(alert) => Failure::refused(Refusal::from_alert(alert), e.reason.clone()),
            None => Failure::refused(Refusal::Other, e.to_string()),
        },
        ConnectionError::ConnectionClosed(close) => match alert_of(close.error_code) {
            Some(alert) => {
                let reason = Refusal::from_alert(alert);
                Failure::refused(reason, format!("peer sent tls alert {alert}: {close}"))
            }
            None => Failure::refused(Refusal::Other, close.to_string()),
        },
        ConnectionError::ApplicationClosed(close) if close.error_code == codes::SELF_DIAL => {
            Failure::SelfDial
        }
        ConnectionError::ApplicationClosed(close) => {
            Failure::refused(Refusal::Other, format!("closed by peer: {close}"))
        }
        ConnectionError::VersionMismatch => Failure::refused(Refusal::Other, err.to_string()),
        ConnectionError::LocallyClosed => Failure::Closed,
        ConnectionError::TimedOut | ConnectionError::Reset | ConnectionError::CidsExhausted => {
            Failure::Unreachable(err.to_string())
        }
    }
}

fn hello_failure(err: HelloError) -> Failure {
    match err {
        HelloError::Lost(e) => failure_of(&e),
        other => Failure::refused(Refusal::Other, other.to_string()),
    }
}

/// The node name in the peer's certificate; without a usable one the connection is closed and
/// the peer refused as `bad_name`.
fn named_peer(conn: &quinn::Connection) -> Result<NodeName, Failure> {
    peer_name_of(conn).map_err(|e| {
        conn.close(codes::PROTOCOL, b"no usable peer certificate");
        Failure::refused(Refusal::BadName, e.to_string())
    })
}

impl Engine {
    /// Dial task: connect, verify, admission round trip, admit; then settle everyone
    /// waiting on this dial.
    pub(super) async fn dial(self: Arc<Self>, peer: Peer, key: DialKey) {
        bump(&self.counters.dials);
        let bound = self.config.request_timeout;
        let handshake = match timeout(bound, self.handshake_as_dialler(&peer)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Unreachable(format!(
                "no admission within {bound:?}"
            ))),
        };
        // Admission runs outside the timeout: once the link is pooled, its events and tasks
        // must not be cut off halfway.
        let result = match handshake {
            Ok((conn, name, instance)) => self.admit(conn, name, true, instance).await,
            Err(failure) => Err(failure),
        };
        // Paced: refusals of a certificate (not a peer closing during admission).
        let refused =
            matches!(&result, Err(Failure::Refused { reason, .. }) if *reason != Refusal::Other);
        self.pace(&key, refused);
        let pending = {
            let mut state = self.state();
            state.dials_in_progress = state.dials_in_progress.saturating_sub(1);
            state.dials.remove(&key).unwrap_or_default()
        };
        match &result {
            Ok(link) => {
                for bytes in pending.datagrams {
                    self.send_on(link, bytes);
                }
            }
            Err(failure) => {
                bump(&self.counters.dials_failed);
                add(&self.counters.datagrams_dropped, pending.datagrams.len());
                self.report(peer.addr, &peer.to_string(), failure);
            }
        }
        for waiter in pending.waiters {
            let _ = waiter.send(result.clone());
        }
    }

    async fn handshake_as_dialler(
        &self,
        peer: &Peer,
    ) -> Result<(quinn::Connection, NodeName, u64), Failure> {
        let server_name = peer
            .name
            .as_ref()
            .map_or(tls::SEED_SERVER_NAME, NodeName::as_str);
        let connecting = self
            .endpoint
            .connect_with(self.client_config(), peer.addr, server_name)
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        let conn = connecting.await.map_err(|e| failure_of(&e))?;
        let name = named_peer(&conn)?;
        if let Some(expected) = &peer.name {
            if *expected != name {
                // The verifier already refuses this; kept as a second line of defence.
                conn.close(codes::WRONG_PEER, b"certificate names another node");
                return Err(Failure::refused(
                    Refusal::BadName,
                    format!("certificate names {name}, expected {expected}"),
                ));
            }
        }
        if name == self.local_name {
            conn.close(codes::SELF_DIAL, b"dialled itself");
            return Err(Failure::SelfDial);
        }
        let instance = hello::as_dialler(&conn, self.instance)
            .await
            .map_err(hello_failure)?;
        Ok((conn, name, instance))
    }

    pub(super) async fn accept_loop(self: Arc<Self>) {
        let limits = Limits {
            retry_above: self.config.retry_above,
            handshakes_in_max: self.config.handshakes_in_max,
            open_per_source_max: self
                .config
                .handshakes_per_ip_open_max
                .min(self.config.handshakes_in_max),
        };
        while let Some(incoming) = self.endpoint.accept().await {
            let addr = incoming.remote_address();
            let now_ms = self.now_ms();
            let decided = {
                let mut state = self.state();
                let arrival = Arrival {
                    closed: state.closed,
                    validated: incoming.remote_address_validated(),
                    may_retry: incoming.may_retry(),
                    in_progress: state.accepts_in_progress,
                };
                let decided = verdict(arrival, limits, &mut state.rates, addr.ip(), now_ms);
                if decided == Verdict::Accept {
                    state.accepts_in_progress += 1;
                }
                decided
            };
            match decided {
                Verdict::Accept => {
                    bump(&self.counters.handshakes_in);
                    self.spawn(Engine::accept(self.clone(), incoming));
                }
                Verdict::Retry => {
                    bump(&self.counters.retries_sent);
                    trace!(peer = %addr, "address not validated: retry");
                    if incoming.retry().is_err() {
                        // may_retry said yes; a refusal here is the safe fallback anyway.
                        debug!(peer = %addr, "retry not possible; ignored");
                    }
                }
                Verdict::Ignore => {
                    bump(&self.counters.handshakes_in_rate_limited);
                    trace!(peer = %addr, "over the handshake rate of its address: ignored");
                    incoming.ignore();
                }
                Verdict::Refuse => {
                    bump(&self.counters.handshakes_in_refused);
                    self.log_refusal(now_ms, addr, "too many handshakes in progress");
                    incoming.refuse();
                }
                Verdict::Closing => {
                    debug!(peer = %addr, "endpoint closing: handshake refused");
                    incoming.refuse();
                }
            }
        }
        debug!("endpoint closed; no longer accepting");
    }

    async fn accept(self: Arc<Self>, incoming: quinn::Incoming) {
        let addr = incoming.remote_address();
        // Shorter than a dial's bound: a stranger that stalls holds a slot of a small budget.
        let bound = self.config.handshake_timeout;
        let handshake = match timeout(bound, self.handshake_as_acceptor(incoming)).await {
            Ok(result) => result,
            Err(_) => {
                bump(&self.counters.handshakes_in_timed_out);
                Err(Failure::Unreachable(format!(
                    "no admission within {bound:?}"
                )))
            }
        };
        // The slot is given back as soon as the handshake is over: admission below only
        // pools the link and answers.
        {
            let mut state = self.state();
            state.accepts_in_progress = state.accepts_in_progress.saturating_sub(1);
            state.rates.finished(addr.ip());
        }
        let result = match handshake {
            Ok((conn, name, instance, welcome)) => {
                match self.admit(conn, name, false, instance).await {
                    Ok(link) => {
                        if let Err(e) = hello::send_welcome(welcome, self.instance).await {
                            debug!(peer = %link.name, error = %e, "welcome not sent");
                        }
                        Ok(())
                    }
                    Err(failure) => Err(failure),
                }
            }
            Err(failure) => Err(failure),
        };
        if let Err(failure) = result {
            self.report(addr, &addr.to_string(), &failure);
        }
    }

    async fn handshake_as_acceptor(
        &self,
        incoming: quinn::Incoming,
    ) -> Result<(quinn::Connection, NodeName, u64, quinn::SendStream), Failure> {
        let connecting = incoming.accept().map_err(|e| failure_of(&e))?;
        let conn = connecting.await.map_err(|e| failure_of(&e))?;
        let name = named_peer(&conn)?;
        if name == self.local_name {
            // The dialler side reports it; ours would be the same event twice.
            conn.close(codes::SELF_DIAL, b"dialled itself");
            return Err(Failure::SelfDial);
        }
        match hello::accept_hello(&conn).await {
            Ok((instance, welcome)) => Ok((conn, name, instance, welcome)),
            Err(e) => {
                if !matches!(e, HelloError::Lost(_)) {
                    conn.close(codes::PROTOCOL, b"bad admission frame");
                }
                Err(hello_failure(e))
            }
        }
    }

    /// One WARN per `REFUSAL_LOG_PERIOD_MS` for refusals, carrying how many were held back
    /// since the last one; the rest are counted in `refusal_logs_suppressed`.
    fn log_refusal(&self, now_ms: u64, peer: impl std::fmt::Display, detail: &str) {
        let admitted = self.state().refusal_log.admit(now_ms);
        match admitted {
            Some(suppressed) => warn!(%peer, detail, suppressed, "handshake refused"),
            None => bump(&self.counters.refusal_logs_suppressed),
        }
    }

    /// Logs and counts a failed dial or accept; refusals are also emitted as events.
    fn report(&self, addr: SocketAddr, peer: &str, failure: &Failure) {
        match failure {
            Failure::Refused { reason, detail } => {
                self.counters.refused(*reason);
                let now_ms = self.now_ms();
                self.log_refusal(now_ms, peer, &format!("{reason}: {detail}"));
                // Never waits: a flood of refusals must not hold up peers' requests behind
                // it in the channel. A refusal that finds it full is only counted.
                let _ = self.events.try_send(Incoming::Refused {
                    addr,
                    reason: format!("{reason}: {detail}"),
                });
            }
            Failure::Unreachable(detail) => debug!(peer, detail = %detail, "peer unreachable"),
            Failure::SelfDial => debug!(peer, "address is this node; not dialling it"),
            Failure::Busy => debug!(peer, "too many handshakes in progress"),
            Failure::Paced { retry_in } => {
                debug!(peer, ?retry_in, "refused lately; not dialled yet")
            }
            Failure::Closed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_codes_carry_the_alert() {
        let code = quinn::TransportErrorCode::crypto(48);
        assert_eq!(alert_of(code), Some(48));
        assert_eq!(
            alert_of(quinn::TransportErrorCode::PROTOCOL_VIOLATION),
            None
        );
    }

    #[test]
    fn silence_is_not_a_refusal() {
        assert!(matches!(
            failure_of(&ConnectionError::TimedOut),
            Failure::Unreachable(_)
        ));
        assert!(matches!(
            failure_of(&ConnectionError::Reset),
            Failure::Unreachable(_)
        ));
    }
}
