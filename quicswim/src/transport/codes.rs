//! QUIC application error codes quicswim sends, and what they mean to the receiver.
//!
//! Connection close codes marked *quiet* are only sent once no request is in flight on the
//! connection on the closing side, and the closing side stops accepting streams first: a
//! request that failed because of one was never processed, so it is safe to send again on
//! another connection.

use quinn::VarInt;

/// Connection: the node is shutting down.
pub(crate) const SHUTDOWN: VarInt = VarInt::from_u32(0);
/// Connection, quiet: a dial race left two connections; this is the one not kept.
pub(crate) const DUPLICATE: VarInt = VarInt::from_u32(1);
/// Connection, quiet: the pool is full and this was the least recently used.
pub(crate) const EVICTED: VarInt = VarInt::from_u32(2);
/// Connection, quiet: no traffic for the idle timeout.
pub(crate) const IDLE: VarInt = VarInt::from_u32(3);
/// Connection: the admission round trip was malformed.
pub(crate) const PROTOCOL: VarInt = VarInt::from_u32(4);
/// Connection: the node dialled itself.
pub(crate) const SELF_DIAL: VarInt = VarInt::from_u32(5);
/// Connection: the peer restarted and dialled again; the old connection is dead.
pub(crate) const SUPERSEDED: VarInt = VarInt::from_u32(6);
/// Connection: the certificate named a node other than the one dialled.
pub(crate) const WRONG_PEER: VarInt = VarInt::from_u32(7);
/// Connection: the peer's certificate has expired since the handshake.
pub(crate) const EXPIRED: VarInt = VarInt::from_u32(8);
/// Connection: a revocation list this node took names the peer's certificate.
pub(crate) const REVOKED: VarInt = VarInt::from_u32(9);

/// Stream: the frame is over the receiver's `frame_len_max`.
pub(crate) const FRAME_TOO_LARGE: VarInt = VarInt::from_u32(1);
/// Stream: the application gave no reply in time.
pub(crate) const NO_REPLY: VarInt = VarInt::from_u32(2);
/// Stream: refused because the connection is closing (quiet codes above).
pub(crate) const CLOSING: VarInt = VarInt::from_u32(3);
/// Stream: not exactly one well-formed frame.
pub(crate) const BAD_FRAME: VarInt = VarInt::from_u32(4);

/// Whether a connection closed by the peer with `code` left unanswered requests unprocessed.
pub(crate) fn is_quiet_close(code: VarInt) -> bool {
    code == DUPLICATE || code == EVICTED || code == IDLE
}

/// Name of a stream code, for messages.
pub(crate) fn stream_name(code: VarInt) -> &'static str {
    match code.into_inner() {
        1 => "frame too large",
        2 => "no reply",
        3 => "connection closing",
        4 => "bad frame",
        _ => "unknown code",
    }
}
