//! Length-prefixed frames on QUIC streams.
//!
//! ```text
//!   +----------------+---------------------+
//!   | len: u32 (BE)  | len bytes of payload |   then the sender finishes the stream
//!   +----------------+---------------------+
//! ```
//!
//! The length is checked against the limit before anything is allocated, so a peer announcing
//! four gigabytes costs four bytes of reading; within the limit, the buffer grows only as the
//! bytes arrive, so announcing eight megabytes and sending nothing costs 16 KiB.

use super::codes;

/// Bytes in the length prefix.
pub(crate) const HEADER_LEN: usize = 4;
/// What a frame's buffer starts at, whatever its announced length.
const FIRST_ALLOCATION: usize = 16 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The announced or offered length is over the limit.
    TooLarge { len: u64, max: usize },
    /// The stream ended before the whole frame arrived.
    Truncated,
    /// More bytes followed the frame.
    Trailing,
    /// The peer reset the stream, with its application code.
    Reset(quinn::VarInt),
    /// The peer stopped the stream, with its application code.
    Stopped(quinn::VarInt),
    /// The connection went away.
    Lost(quinn::ConnectionError),
    /// The stream was already closed locally.
    Closed,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes is over the {max}-byte limit")
            }
            FrameError::Truncated => f.write_str("stream ended inside a frame"),
            FrameError::Trailing => f.write_str("unexpected bytes after the frame"),
            FrameError::Reset(code) => {
                write!(f, "stream reset by peer ({})", codes::stream_name(*code))
            }
            FrameError::Stopped(code) => {
                write!(f, "stream stopped by peer ({})", codes::stream_name(*code))
            }
            FrameError::Lost(e) => write!(f, "connection lost: {e}"),
            FrameError::Closed => f.write_str("stream already closed"),
        }
    }
}

impl From<quinn::ReadError> for FrameError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::Reset(code) => FrameError::Reset(code),
            quinn::ReadError::ConnectionLost(e) => FrameError::Lost(e),
            quinn::ReadError::ClosedStream
            | quinn::ReadError::ZeroRttRejected
            | quinn::ReadError::IllegalOrderedRead => FrameError::Closed,
        }
    }
}

impl From<quinn::ReadExactError> for FrameError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
            quinn::ReadExactError::ReadError(e) => e.into(),
        }
    }
}

impl From<quinn::WriteError> for FrameError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::Stopped(code) => FrameError::Stopped(code),
            quinn::WriteError::ConnectionLost(e) => FrameError::Lost(e),
            quinn::WriteError::ClosedStream | quinn::WriteError::ZeroRttRejected => {
                FrameError::Closed
            }
        }
    }
}

/// The payload length announced by `header`, if it is within `max`.
pub(crate) fn decode_header(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        }),
    }
}

/// The prefix for a payload of `len` bytes, if it is within `max` (and so within `u32`).
pub(crate) fn encode_header(len: usize, max: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    let too_large = || FrameError::TooLarge {
        len: u64::try_from(len).unwrap_or(u64::MAX),
        max,
    };
    if len > max {
        return Err(too_large());
    }
    let len = u32::try_from(len).map_err(|_| too_large())?;
    Ok(len.to_be_bytes())
}

/// Reads one frame of at most `max` bytes and then the end of the stream. An oversized frame
/// stops the stream with [`codes::FRAME_TOO_LARGE`] so the sender learns why.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let len = read_header(recv, max).await?;
    read_payload(recv, len).await
}

/// Reads a frame's length prefix, refusing (and stopping the stream for) a length over `max`.
pub(crate) async fn read_header(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<usize, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await?;
    decode_header(header, max).inspect_err(|_| {
        // Already finished or reset streams have nothing to stop.
        let _ = recv.stop(codes::FRAME_TOO_LARGE);
    })
}

/// Reads the `len` payload bytes announced by a header, then the end of the stream. The
/// buffer grows with the bytes that actually arrived (doubling, never past `len`), so a
/// peer that announces a large frame and sends little costs little.
pub(crate) async fn read_payload(
    recv: &mut quinn::RecvStream,
    len: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut payload = Vec::with_capacity(len.min(FIRST_ALLOCATION));
    while payload.len() < len {
        let remaining = len - payload.len();
        let Some(chunk) = recv.read_chunk(remaining, true).await? else {
            return Err(FrameError::Truncated);
        };
        let spare = payload.capacity() - payload.len();
        if spare < chunk.bytes.len() {
            let grow = chunk.bytes.len().max(payload.len().min(remaining));
            payload.reserve_exact(grow);
        }
        payload.extend_from_slice(&chunk.bytes);
    }
    let mut probe = [0u8; 1];
    match recv.read(&mut probe).await? {
        None => Ok(payload),
        Some(_) => {
            let _ = recv.stop(codes::BAD_FRAME);
            Err(FrameError::Trailing)
        }
    }
}

/// Writes one frame of at most `max` bytes and finishes the stream.
pub(crate) async fn write_frame(
    send: &mut quinn::SendStream,
    payload: &[u8],
    max: usize,
) -> Result<(), FrameError> {
    let header = encode_header(payload.len(), max)?;
    send.write_all(&header).await?;
    send.write_all(payload).await?;
    send.finish().map_err(|_| FrameError::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_within_the_limit() {
        for len in [0usize, 1, 1162, 8 << 20] {
            let header = encode_header(len, 8 << 20).unwrap();
            assert_eq!(decode_header(header, 8 << 20).unwrap(), len);
        }
    }

    #[test]
    fn oversized_header_is_refused_before_allocation() {
        let header = u32::MAX.to_be_bytes();
        match decode_header(header, 1024) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, u64::from(u32::MAX));
                assert_eq!(max, 1024);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(matches!(
            encode_header(1025, 1024),
            Err(FrameError::TooLarge { len: 1025, .. })
        ));
    }

    #[test]
    fn lengths_beyond_u32_are_refused_even_with_a_huge_limit() {
        let len = usize::try_from(u64::from(u32::MAX) + 1).unwrap_or(usize::MAX);
        assert!(encode_header(len, usize::MAX).is_err());
    }
}
