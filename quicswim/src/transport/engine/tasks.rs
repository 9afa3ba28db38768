//! The tasks every admitted connection runs: datagrams in, request streams served, and
//! the watch that takes it out of the pool when it closes.

use std::sync::Arc;

use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::timeout;
use tracing::{debug, info, trace, warn};

use super::Engine;
use crate::transport::codes;
use crate::transport::frame::{read_header, read_payload, write_frame, FrameError};
use crate::transport::link::{Link, WorkGuard};
use crate::transport::stats::{add, bump, WireStats};
use crate::transport::Incoming;

impl Engine {
    /// Moves the link's datagrams into its own fair queue; never waits on the owner, so a
    /// peer sending faster than it is served only loses its own datagrams.
    pub(super) async fn read_datagrams(self: Arc<Self>, link: Arc<Link>) {
        let id = link.conn.stable_id();
        while let Ok(bytes) = link.conn.read_datagram().await {
            let len = bytes.len();
            let addr = link.conn.remote_address();
            if self.datagrams.push(id, &link.name, addr, bytes) {
                bump(&self.counters.datagrams_in);
                add(&self.counters.bytes_in, len);
                link.touch(self.now_ms());
                trace!(peer = %link.name, len, "datagram in");
            } else {
                bump(&self.counters.datagrams_shed);
                trace!(peer = %link.name, len, "datagram shed: its queue is full");
            }
        }
    }

    pub(super) async fn accept_streams(self: Arc<Self>, link: Arc<Link>) {
        while let Ok((mut send, mut recv)) = link.conn.accept_bi().await {
            match link.begin() {
                Some(guard) => {
                    self.spawn(Engine::serve(self.clone(), link.clone(), send, recv, guard))
                }
                None => {
                    // Closing: refuse, so the requester knows it was not processed.
                    let _ = recv.stop(codes::CLOSING);
                    let _ = send.reset(codes::CLOSING);
                }
            }
        }
    }

    /// Serves one incoming request stream: frame in, the application's reply out.
    async fn serve(
        self: Arc<Self>,
        link: Arc<Link>,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        guard: WorkGuard,
    ) {
        let bound = self.config.request_timeout;
        let max = self.config.frame_len_max;
        let addr = link.conn.remote_address();
        let request = match timeout(bound, read_budgeted(&link, &mut recv, max)).await {
            Ok(Ok(request)) => request,
            Ok(Err(FrameError::TooLarge { len, max })) => {
                bump(&self.counters.frames_too_large);
                warn!(peer = %link.name, %addr, len, max, "request frame over frame_len_max refused");
                let _ = send.reset(codes::FRAME_TOO_LARGE);
                return;
            }
            Ok(Err(e)) => {
                debug!(peer = %link.name, error = %e, "request stream failed");
                let _ = send.reset(codes::BAD_FRAME);
                return;
            }
            Err(_) => {
                debug!(peer = %link.name, "request not received within request_timeout");
                let _ = recv.stop(codes::BAD_FRAME);
                let _ = send.reset(codes::BAD_FRAME);
                return;
            }
        };
        // Held until the application has answered: until then the frame's bytes are alive.
        let (request, _budget) = request;
        bump(&self.counters.requests_in);
        add(&self.counters.bytes_in, request.len());
        link.touch(self.now_ms());
        let (reply_tx, reply_rx) = oneshot::channel();
        let event = Incoming::Request {
            from: link.name.clone(),
            addr,
            bytes: request,
            reply: reply_tx,
        };
        if self.events.send(event).await.is_err() {
            let _ = send.reset(codes::NO_REPLY);
            return;
        }
        let reply = match timeout(bound, reply_rx).await {
            Ok(Ok(reply)) => reply,
            _ => {
                debug!(peer = %link.name, "no reply from the application in time");
                let _ = send.reset(codes::NO_REPLY);
                return;
            }
        };
        let len = reply.len();
        match timeout(bound, write_frame(&mut send, &reply, max)).await {
            Ok(Ok(())) => {
                add(&self.counters.bytes_out, len);
                link.touch(self.now_ms());
            }
            Ok(Err(FrameError::TooLarge { len, max })) => {
                bump(&self.counters.frames_too_large);
                warn!(peer = %link.name, len, max, "reply over frame_len_max not sent; replies must be sized by the caller");
                let _ = send.reset(codes::FRAME_TOO_LARGE);
                return;
            }
            Ok(Err(e)) => {
                debug!(peer = %link.name, error = %e, "reply not sent");
                return;
            }
            Err(_) => {
                debug!(peer = %link.name, "reply not written within request_timeout");
                let _ = send.reset(codes::NO_REPLY);
                return;
            }
        }
        // Holding the work guard until the peer has acknowledged the whole reply means a
        // quiet close never cuts off a request that was processed.
        let _ = timeout(bound, send.stopped()).await;
        drop(guard);
    }

    pub(super) async fn watch_closed(self: Arc<Self>, link: Arc<Link>) {
        let reason = link.conn.closed().await;
        self.counters.connection_closed();
        add(
            &self.counters.datagrams_dropped,
            self.datagrams.forget(link.conn.stable_id()),
        );
        let was_pooled = {
            let mut state = self.state();
            if state.open.remove(&link.conn.stable_id()).is_some() {
                state.closed_wire += WireStats::of(&link.conn);
            }
            let pooled = state
                .pool
                .get(&link.name)
                .is_some_and(|current| Arc::ptr_eq(current, &link));
            if pooled {
                state.pool.remove(&link.name);
            }
            pooled
        };
        if was_pooled {
            info!(peer = %link.name, %reason, "peer down");
            self.emit(Incoming::PeerDown {
                name: link.name.clone(),
                reason: reason.to_string(),
            })
            .await;
        }
    }
}

/// Reads one request frame after taking its announced length from the link's frame budget,
/// so the frames one peer has in flight hold at most `frame_len_max` bytes together. The
/// permit is returned with the frame.
async fn read_budgeted(
    link: &Link,
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<(Vec<u8>, OwnedSemaphorePermit), FrameError> {
    let len = read_header(recv, max).await?;
    // `len <= max <= u32::MAX` by the header check and the config's range.
    let permits = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len: u64::try_from(len).unwrap_or(u64::MAX),
        max,
    })?;
    let permit = link
        .frame_budget
        .clone()
        .acquire_many_owned(permits)
        .await
        .map_err(|_| FrameError::Closed)?;
    let payload = read_payload(recv, len).await?;
    Ok((payload, permit))
}
