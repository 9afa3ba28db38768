//! An admitted connection ("link") and the pool's decisions about links.
//!
//! ```text
//!   admitted ──> pooled ──(race lost / evicted / idle)──> closing ──(no work in flight)──> closed
//!                  │                                        ▲
//!                  └──────────(peer restarted)──────────────┘  closed at once
//! ```
//!
//! "Closing" refuses new streams (code `CLOSING`) and is never chosen for new sends, so once
//! the work in flight drains the connection can be closed without cutting off a request that
//! was already being served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::protocol::NodeName;
use crate::tls;

/// One admitted QUIC connection to a named peer.
pub(crate) struct Link {
    pub conn: quinn::Connection,
    /// The name in the peer's certificate.
    pub name: NodeName,
    /// Whether this node dialled it.
    pub dialed_locally: bool,
    /// The peer process's random instance id from the admission round trip; a different one
    /// on a new connection means the peer restarted.
    pub peer_instance: u64,
    /// Milliseconds since the transport started, at the last application traffic.
    last_used_ms: AtomicU64,
    work: Mutex<Work>,
    quiet: Notify,
    /// Bytes of request frames being read from this peer at once, at most `frame_len_max`:
    /// a peer with many streams open cannot hold more than one full frame's memory.
    pub frame_budget: Arc<Semaphore>,
    /// When the peer's certificate expires: the connection is closed then.
    pub cert_not_after: Option<std::time::SystemTime>,
}

#[derive(Default)]
struct Work {
    in_flight: usize,
    closing: bool,
}

/// Held while a request is being sent or served on a link; the link is not closed quietly
/// until every guard is dropped.
pub(crate) struct WorkGuard(Arc<Link>);

impl Drop for WorkGuard {
    fn drop(&mut self) {
        let mut work = self.0.work();
        work.in_flight = work.in_flight.saturating_sub(1);
        if work.in_flight == 0 {
            self.0.quiet.notify_waiters();
        }
    }
}

impl Link {
    pub fn new(
        conn: quinn::Connection,
        name: NodeName,
        dialed_locally: bool,
        peer_instance: u64,
        now_ms: u64,
        frame_budget: usize,
    ) -> Self {
        let cert_not_after = peer_certificate_of(&conn).and_then(|der| tls::not_after_of(&der));
        Link {
            conn,
            name,
            dialed_locally,
            peer_instance,
            last_used_ms: AtomicU64::new(now_ms),
            work: Mutex::new(Work::default()),
            quiet: Notify::new(),
            frame_budget: Arc::new(Semaphore::new(frame_budget)),
            cert_not_after,
        }
    }

    fn work(&self) -> MutexGuard<'_, Work> {
        // The critical sections only do arithmetic; a poisoned lock still holds valid counts.
        self.work.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a unit of work, unless the link is closing.
    pub fn begin(self: &Arc<Self>) -> Option<WorkGuard> {
        let mut work = self.work();
        if work.closing || self.conn.close_reason().is_some() {
            return None;
        }
        work.in_flight += 1;
        Some(WorkGuard(self.clone()))
    }

    /// Open and not closing: may carry new traffic.
    pub fn is_usable(&self) -> bool {
        !self.work().closing && self.conn.close_reason().is_none()
    }

    /// Refuses new work from now on.
    pub fn mark_closing(&self) {
        self.work().closing = true;
    }

    pub fn in_flight(&self) -> usize {
        self.work().in_flight
    }

    pub fn touch(&self, now_ms: u64) {
        self.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn last_used_ms(&self) -> u64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Waits until no work is in flight, or `bound` has passed.
    pub async fn wait_quiet(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let notified = self.quiet.notified();
            tokio::pin!(notified);
            // Registered before the check, so a guard dropped in between still wakes us.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// The name in the certificate the peer presented on `conn`.
pub(crate) fn peer_name_of(conn: &quinn::Connection) -> Result<NodeName, tls::Error> {
    let identity = conn.peer_identity().ok_or(tls::Error::NoPeerCertificate)?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| tls::Error::NoPeerCertificate)?;
    tls::peer_name(&certs)
}

/// The certificate the peer presented on `conn` (DER), if any.
pub(crate) fn peer_certificate_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().map(|c| c.to_vec())
}

/// Dial race: with a usable link to the same peer process already pooled, whether the new one
/// should replace it. Both ends keep the connection dialled by the smaller name, so they agree
/// without talking; when one side dialled both, the older is kept.
pub(crate) fn keep_new(
    local_is_smaller: bool,
    existing_dialed_locally: bool,
    new_dialed_locally: bool,
) -> bool {
    existing_dialed_locally != new_dialed_locally && new_dialed_locally == local_is_smaller
}

/// The least recently used of `links` (ties: the smaller name, so the choice is
/// deterministic).
pub(crate) fn lru_victim<'a>(links: impl Iterator<Item = &'a Arc<Link>>) -> Option<&'a Arc<Link>> {
    links.min_by(|a, b| {
        a.last_used_ms()
            .cmp(&b.last_used_ms())
            .then_with(|| a.name.cmp(&b.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_keep_the_connection_dialled_by_the_smaller_name() {
        // alice < bob. At alice (local smaller): keep what alice dialled.
        assert!(keep_new(true, false, true));
        assert!(!keep_new(true, true, false));
        // At bob (local larger): keep what alice dialled, i.e. not dialled locally.
        assert!(keep_new(false, true, false));
        assert!(!keep_new(false, false, true));
    }

    #[test]
    fn two_dials_from_one_side_keep_the_older() {
        for local_is_smaller in [true, false] {
            for dialed in [true, false] {
                assert!(!keep_new(local_is_smaller, dialed, dialed));
            }
        }
    }
}
