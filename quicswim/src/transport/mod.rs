//! QUIC transport: opaque bytes to and from authenticated peers.
//!
//! It knows nothing of SWIM. One quinn [`Endpoint`](quinn::Endpoint) on one UDP socket both
//! dials and accepts; every connection is mutual TLS 1.3 with the cluster CA (see
//! [`crate::tls`]). The sender of everything delivered is the name in the certificate of the
//! connection it came on, never anything inside the payload.
//!
//! ```text
//!   send_datagram(peer, bytes) ─┐                          ┌─> Incoming::Datagram { from, .. }
//!   request(peer, bytes) ───────┤   pool: NodeName -> Link ├─> Incoming::Request { reply, .. }
//!                               │   (one per peer, both    ├─> Incoming::PeerUp / PeerDown
//!               dial if none ───┘    ways, LRU-capped)     └─> Incoming::Refused { reason }
//!
//!   datagram : one QUIC datagram, at most max_datagram_size() bytes, unreliable
//!   request  : one bi-stream = [u32 BE len][request] → [u32 BE len][reply], ≤ frame_len_max
//! ```
//!
//! A peer is admitted (pooled, `PeerUp`, traffic delivered) only after the admission round
//! trip described in `hello.rs`; under TLS 1.3 a finished handshake alone does not prove the
//! acceptor took our certificate. When both ends dial each other at once, both keep the
//! connection dialled by the smaller name and close the other once its in-flight requests are
//! done; a request cut off by such a close was not processed and is retried once on the kept
//! connection.

mod codes;
mod config;
mod engine;
mod error;
mod frame;
mod hello;
mod inbox;
mod link;
mod stats;
mod strangers;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use self::config::TransportConfig;
pub use self::error::Error;
pub use self::inbox::Inbox;
pub use self::stats::{RefusedCounts, TransportStats, WireStats};
use crate::protocol::NodeName;
use crate::tls;

/// Datagram size to plan for before any connection has measured its path: what a QUIC
/// datagram frame carries in a 1200-byte initial packet.
pub const DEFAULT_MAX_DATAGRAM_SIZE: usize = 1162;

/// Where to send: an address, and the node name expected there when it is known.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// UDP address of the peer's endpoint.
    pub addr: SocketAddr,
    /// The name its certificate must carry; `None` for a seed known by address only, whose
    /// name is learned from its certificate.
    pub name: Option<NodeName>,
}

impl Peer {
    /// A member known by name.
    pub fn named(name: NodeName, addr: SocketAddr) -> Self {
        Peer {
            addr,
            name: Some(name),
        }
    }

    /// A seed known by address only.
    pub fn seed(addr: SocketAddr) -> Self {
        Peer { addr, name: None }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name}@{}", self.addr),
            None => write!(f, "{} (seed)", self.addr),
        }
    }
}

/// What the transport delivers to its owner, in order per connection.
#[derive(Debug)]
pub enum Incoming {
    /// A datagram from an admitted peer.
    Datagram {
        /// The name in the peer's certificate.
        from: NodeName,
        /// The peer's current address.
        addr: SocketAddr,
        /// The payload.
        bytes: Bytes,
    },
    /// A request from an admitted peer. Send the reply within `request_timeout`; dropping
    /// `reply` resets the stream and the requester gets an error.
    Request {
        /// The name in the peer's certificate.
        from: NodeName,
        /// The peer's current address.
        addr: SocketAddr,
        /// The request payload.
        bytes: Vec<u8>,
        /// Where the reply goes (at most `frame_len_max` bytes).
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// A peer was admitted and now has a pooled connection.
    PeerUp {
        /// The name in the peer's certificate.
        name: NodeName,
        /// Its address.
        addr: SocketAddr,
        /// That certificate (DER), as the handshake checked it: the core keeps it to check
        /// the peer's signed records, so it need not ask anyone for it.
        certificate: Vec<u8>,
    },
    /// The pooled connection to a peer ended (closed, timed out, evicted, idle). This says
    /// nothing about the peer's health by itself; the next send dials again.
    PeerDown {
        /// The peer.
        name: NodeName,
        /// Why the connection ended.
        reason: String,
    },
    /// A handshake or admission with `addr` failed, on either side; the peer was not
    /// admitted. `reason` starts with the [`tls::Refusal`] class (`unknown_ca: ...`).
    Refused {
        /// The peer's address.
        addr: SocketAddr,
        /// Class and details.
        reason: String,
    },
}

/// Handle to a bound transport. Cheap to clone; when the last handle is dropped the endpoint
/// closes (call [`Transport::close`] for a graceful shutdown).
#[derive(Clone)]
pub struct Transport {
    engine: Arc<engine::Engine>,
    _guard: Arc<DropGuard>,
}

/// Closes the endpoint when the last [`Transport`] handle goes; background tasks hold only the
/// engine, so without this they would keep it alive.
struct DropGuard(Weak<engine::Engine>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(engine) = self.0.upgrade() {
            engine.shut_down_now();
        }
    }
}

/// Capacity of the channel of requests and connection events; when full, request streams
/// stop being read (QUIC flow control then pushes back on peers).
const EVENTS_CAPACITY: usize = 1024;

impl Transport {
    /// Binds the UDP socket and starts accepting. Returns the handle and the receiver of
    /// everything peers send; the receiver should be drained continuously. Datagrams reach
    /// it through one bounded queue per connection served in turn, so one peer's flood
    /// delays nobody else's (see [`Inbox`]).
    pub async fn bind(
        config: TransportConfig,
        identity: &tls::Identity,
    ) -> Result<(Transport, Inbox), Error> {
        let (events, receiver) = mpsc::channel(EVENTS_CAPACITY);
        let datagrams = Arc::new(inbox::FairQueue::default());
        let engine = engine::Engine::bind(config, identity, events, datagrams.clone())?;
        let receiver = Inbox::new(receiver, datagrams);
        let guard = Arc::new(DropGuard(Arc::downgrade(&engine)));
        Ok((
            Transport {
                engine,
                _guard: guard,
            },
            receiver,
        ))
    }

    /// The address the socket is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.engine.local_addr()
    }

    /// This node's name, from its certificate.
    pub fn local_name(&self) -> &NodeName {
        self.engine.local_name()
    }

    /// The largest datagram to fill: the smallest limit over the pooled connections, but
    /// never below [`DEFAULT_MAX_DATAGRAM_SIZE`], which every honest peer's path carries
    /// (QUIC needs 1200-byte packets). A peer announcing a smaller limit of its own cannot
    /// shrink everyone's datagrams; only the datagrams sent to it are refused, and counted.
    pub fn max_datagram_size(&self) -> usize {
        self.engine.max_datagram_size()
    }

    /// Sends one datagram without waiting: on the pooled connection to `to`, or after dialling
    /// it (a dial runs in a background task; datagrams sent meanwhile queue behind it, a few
    /// dozen at most). Failures, including datagrams over the connection's limit, are counted
    /// in [`Transport::stats`] and logged at debug.
    pub fn send_datagram(&self, to: Peer, bytes: Bytes) {
        self.engine.send_datagram(to, bytes);
    }

    /// Sends one request on a new bi-stream and waits for the one reply, dialling first if
    /// needed. Returns the responder's certificate name with the reply. Bounded by
    /// `request_timeout`; frames over `frame_len_max` are refused on either side.
    pub async fn request(&self, to: Peer, bytes: Vec<u8>) -> Result<(NodeName, Vec<u8>), Error> {
        self.engine.request(&to, bytes).await
    }

    /// Keeps pooled connections the application has not used for up to `keep` before
    /// closing them, instead of `idle_timeout` (never less than it, at most an hour). QUIC
    /// does not time such a connection out meanwhile: without keep-alives its idle timeout
    /// is an hour, and with them the keep-alives hold it open. For an owner that will use
    /// every connection again within a known time (a SWIM node probes each member once per
    /// pass over the members), closing sooner only buys a new handshake.
    pub fn keep_unused_for(&self, keep: std::time::Duration) {
        self.engine.keep_unused_for(keep);
    }

    /// Handshakes from now on present `identity` (a rotated certificate and key) and trust
    /// its roots, both ways; connections already up carry on until they close. Errors
    /// ([`Error::Tls`]) change nothing.
    pub fn set_identity(&self, identity: &tls::Identity) -> Result<(), Error> {
        self.engine.set_identity(identity)
    }

    /// Handshakes from now on, both ways, are checked against `lists` in place of the
    /// revocation lists of the identity in use (a list the cluster passed on). Nothing
    /// changes on error.
    pub fn set_revocation_lists(
        &self,
        lists: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
    ) -> Result<(), Error> {
        self.engine.set_revocation_lists(lists)
    }

    /// Closes the connections whose peer certificate `admitted` (given the name and the
    /// certificate, DER) no longer admits: revoked, or their CA left the bundle. Cleanly,
    /// once no request is in flight on them. New handshakes with them are refused by the
    /// roots and revocation lists in use.
    pub async fn close_revoked(&self, admitted: impl Fn(&NodeName, &[u8]) -> bool) {
        self.engine.close_revoked(admitted).await;
    }

    /// Current counters.
    pub fn stats(&self) -> TransportStats {
        self.engine.stats()
    }

    /// The pooled connections, sorted by name.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.engine.peers()
    }

    /// Closes every connection and the endpoint, and waits (at most `request_timeout`) for the
    /// peers to be told. Later sends are dropped and requests fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.engine.close().await;
    }
}

/// A pooled connection, as [`Transport::peers`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The name in the peer's certificate.
    pub name: NodeName,
    /// The peer's current address.
    pub addr: SocketAddr,
    /// Whether this node dialled the connection.
    pub dialed_locally: bool,
    /// Largest datagram the connection carries now, if the peer accepts datagrams.
    pub max_datagram_size: Option<usize>,
}
