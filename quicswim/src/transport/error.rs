//! Errors of the transport layer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::tls::{self, Refusal};

/// Why binding, dialling or a request failed. `peer` fields read `NAME@ADDR`, or `ADDR (seed)`
/// when the peer was dialled by address only. None of these leaves the pool half-changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`TransportConfig`](super::TransportConfig) field is out of range. Nothing was bound.
    #[error("invalid transport config: {reason}")]
    Config {
        /// Which field and why.
        reason: String,
    },
    /// The identity could not be turned into TLS configurations. Nothing was bound.
    #[error("tls setup: {0}")]
    Tls(#[from] tls::Error),
    /// The UDP socket could not be bound.
    #[error("cannot bind udp {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The TLS handshake or the admission round trip was refused, by either side. The peer is
    /// not admitted; an [`Incoming::Refused`](super::Incoming::Refused) was emitted too.
    #[error("{peer}: handshake refused ({reason}): {detail}")]
    Refused {
        /// The peer dialled.
        peer: String,
        /// The class of refusal.
        reason: Refusal,
        /// What TLS or the peer said.
        detail: String,
    },
    /// The peer could not be reached (no answer within the timeout, connection reset).
    #[error("{peer}: unreachable: {detail}")]
    Unreachable {
        /// The peer dialled.
        peer: String,
        /// What went wrong.
        detail: String,
    },
    /// The address belongs to this node (a seed list that includes itself).
    #[error("{peer}: is this node ({name})")]
    SelfDial {
        /// The peer dialled.
        peer: String,
        /// This node's name.
        name: String,
    },
    /// The connection failed while the request was under way.
    #[error("{peer}: connection lost: {detail}")]
    ConnectionLost {
        /// The peer.
        peer: String,
        /// quinn's reason.
        detail: String,
    },
    /// The request (before sending) or the reply (on reading its length) is over this node's
    /// `frame_len_max`. Nothing over the limit was sent or allocated.
    #[error("{peer}: frame of {len} bytes is over the limit of {max} bytes")]
    FrameTooLarge {
        /// The peer.
        peer: String,
        /// Frame length.
        len: u64,
        /// This node's `frame_len_max`.
        max: usize,
    },
    /// The peer refused a frame over its own `frame_len_max`: this request, or the reply it
    /// was about to send.
    #[error("{peer}: refused a frame over its frame_len_max (the request, or its own reply)")]
    FrameRefused {
        /// The peer.
        peer: String,
    },
    /// The stream failed for another reason (reset, stopped, malformed reply).
    #[error("{peer}: request stream failed: {detail}")]
    Stream {
        /// The peer.
        peer: String,
        /// What happened.
        detail: String,
    },
    /// No reply arrived within `request_timeout`.
    #[error("{peer}: no reply within {timeout:?}")]
    Timeout {
        /// The peer.
        peer: String,
        /// The bound that expired.
        timeout: Duration,
    },
    /// Too many handshakes are already in progress (bounded by `max_connections`).
    #[error("{peer}: too many handshakes in progress ({max})")]
    Busy {
        /// The peer.
        peer: String,
        /// The bound.
        max: usize,
    },
    /// The peer refused a handshake lately; it is dialled again only after a wait that
    /// doubles with each refusal in a row (1 s to 60 s, jittered).
    #[error("{peer}: refused lately; not dialled again for {retry_in:?}")]
    Paced {
        /// The peer.
        peer: String,
        /// How long until it may be dialled again.
        retry_in: std::time::Duration,
    },
    /// [`Transport::close`](super::Transport::close) was called.
    #[error("transport is shut down")]
    Closed,
}
