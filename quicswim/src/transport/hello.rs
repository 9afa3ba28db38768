//! The admission round trip on a connection's first bi-stream.
//!
//! ```text
//!   dialler                                   acceptor
//!     | -- TLS 1.3 handshake (client cert) -->  |  acceptor verified the client cert
//!     |   connect() done; server may still      |
//!     |   reject our cert after this point      |
//!     | -- stream 0: "quicswim/1 hello" + id -> |  admit (PeerUp)
//!     | <- "quicswim/1 welcome" + id ---------- |
//!   admit (PeerUp)
//! ```
//!
//! Under TLS 1.3 the dialler's handshake completes before the acceptor has checked the
//! dialler's certificate; only the welcome proves the acceptor took it. The ids are random per
//! process, so a new connection from the same name with a new id means the peer restarted.

use super::frame::{read_frame, write_frame, FrameError};

const HELLO: &[u8] = b"quicswim/1 hello ";
const WELCOME: &[u8] = b"quicswim/1 welcome ";
/// Longest admission frame either side accepts.
const FRAME_MAX: usize = 64;

fn encode(magic: &[u8], instance: u64) -> Vec<u8> {
    let mut frame = magic.to_vec();
    frame.extend_from_slice(&instance.to_be_bytes());
    frame
}

fn decode(magic: &[u8], frame: &[u8]) -> Option<u64> {
    let id = frame.strip_prefix(magic)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// Why the admission round trip failed.
#[derive(Debug)]
pub(crate) enum HelloError {
    /// The stream or connection failed.
    Frame(FrameError),
    /// The peer's connection ended before the round trip (TLS refusals land here).
    Lost(quinn::ConnectionError),
    /// The peer sent something that is not an admission frame.
    Malformed,
}

impl From<FrameError> for HelloError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Lost(e) => HelloError::Lost(e),
            e => HelloError::Frame(e),
        }
    }
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloError::Frame(e) => write!(f, "admission round trip failed: {e}"),
            HelloError::Lost(e) => write!(f, "connection lost during admission: {e}"),
            HelloError::Malformed => f.write_str("malformed admission frame"),
        }
    }
}

/// Dialler side: sends the hello with our instance id, returns the acceptor's.
pub(crate) async fn as_dialler(conn: &quinn::Connection, instance: u64) -> Result<u64, HelloError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(HelloError::Lost)?;
    write_frame(&mut send, &encode(HELLO, instance), FRAME_MAX).await?;
    let reply = read_frame(&mut recv, FRAME_MAX).await?;
    decode(WELCOME, &reply).ok_or(HelloError::Malformed)
}

/// Acceptor side, first half: takes the first stream and its hello, returns the dialler's
/// instance id and the stream to answer on once the link is admitted.
pub(crate) async fn accept_hello(
    conn: &quinn::Connection,
) -> Result<(u64, quinn::SendStream), HelloError> {
    let (send, mut recv) = conn.accept_bi().await.map_err(HelloError::Lost)?;
    let hello = read_frame(&mut recv, FRAME_MAX).await?;
    let instance = decode(HELLO, &hello).ok_or(HelloError::Malformed)?;
    Ok((instance, send))
}

/// Acceptor side, second half: the welcome with our instance id.
pub(crate) async fn send_welcome(
    mut send: quinn::SendStream,
    instance: u64,
) -> Result<(), HelloError> {
    write_frame(&mut send, &encode(WELCOME, instance), FRAME_MAX).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_the_other_magic() {
        let hello = encode(HELLO, 42);
        assert_eq!(decode(HELLO, &hello), Some(42));
        assert_eq!(decode(WELCOME, &hello), None);
        assert_eq!(decode(HELLO, &hello[..hello.len() - 1]), None);
        assert!(encode(WELCOME, u64::MAX).len() <= FRAME_MAX);
    }
}
