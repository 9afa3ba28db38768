//! The tasks every admitted connection runs: datagrams in, request streams served, and
//! the watch that takes it out of the pool when it closes.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::timeout;
use tracing::{debug, info, trace, warn};

use super::Engine;
use crate::transport::codes;
use crate::transport::frame::{read_frame, write_frame, FrameError};
use crate::transport::link::{Link, WorkGuard};
use crate::transport::stats::{add, bump, WireStats};
use crate::transport::Incoming;

impl Engine {
    pub(super) async fn read_datagrams(self: Arc<Self>, link: Arc<Link>) {
        while let Ok(bytes) = link.conn.read_datagram().await {
            bump(&self.counters.datagrams_in);
            add(&self.counters.bytes_in, bytes.len());
            link.touch(self.now_ms());
            trace!(peer = %link.name, len = bytes.len(), "datagram in");
            let event = Incoming::Datagram {
                from: link.name.clone(),
                addr: link.conn.remote_address(),
                bytes,
            };
            if self.events.send(event).await.is_err() {
                return;
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
        let request = match timeout(bound, read_frame(&mut recv, max)).await {
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
