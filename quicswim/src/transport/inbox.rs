//! What the owner of a transport receives: datagrams through per-peer fair queues, everything
//! else through one channel.
//!
//! ```text
//!   link A datagrams ─> [queue A ≤ N] ─┐
//!   link B datagrams ─> [queue B ≤ N] ─┼─ round robin, one datagram per peer per turn ─┐
//!   link C datagrams ─> [queue C ≤ N] ─┘                                                ├─> Inbox::recv
//!   requests, PeerUp/Down, Refused ─> channel (bounded; senders wait) ──── alternating ─┘
//! ```
//!
//! The driver also asks for datagrams on their own ([`Inbox::has_datagram`],
//! [`Inbox::try_datagram`]), to take them before stream work.
//!
//! With one shared channel, a member flooding datagrams filled it and every other peer's
//! Acks waited behind the flood (and were read late enough to count as lost: false
//! suspicions). Here a peer's flood only fills its own queue, whose overflow is dropped and
//! counted, and an Ack from anyone else waits behind at most one datagram per busy peer.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use super::Incoming;
use crate::protocol::NodeName;

/// Datagrams queued per connection before its newest are dropped. SWIM sends a peer a
/// handful of datagrams per probe interval; 64 rides out a burst of gossip while bounding a
/// flood to 64 × ~1.4 KB per connection.
pub(crate) const PEER_QUEUE_MAX: usize = 64;

/// One connection's queue.
struct PeerQueue {
    from: NodeName,
    addr: SocketAddr,
    datagrams: VecDeque<Bytes>,
}

#[derive(Default)]
struct Queues {
    /// By connection `stable_id`.
    by_link: HashMap<usize, PeerQueue>,
    /// Connections with something queued, in turn order; each appears once.
    turn: VecDeque<usize>,
}

/// The datagram side, shared by every connection's reader task and the [`Inbox`].
#[derive(Default)]
pub(crate) struct FairQueue {
    queues: Mutex<Queues>,
    ready: Notify,
}

impl FairQueue {
    fn queues(&self) -> MutexGuard<'_, Queues> {
        // Critical sections only move items between collections; a poisoned lock is still
        // consistent.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a datagram from connection `link`; `false` when its queue was full and the
    /// datagram was dropped.
    pub(crate) fn push(
        &self,
        link: usize,
        from: &NodeName,
        addr: SocketAddr,
        bytes: Bytes,
    ) -> bool {
        {
            let mut queues = self.queues();
            let Queues { by_link, turn } = &mut *queues;
            let queue = by_link.entry(link).or_insert_with(|| PeerQueue {
                from: from.clone(),
                addr,
                datagrams: VecDeque::new(),
            });
            if queue.datagrams.len() >= PEER_QUEUE_MAX {
                return false;
            }
            queue.addr = addr;
            if queue.datagrams.is_empty() {
                turn.push_back(link);
            }
            queue.datagrams.push_back(bytes);
        }
        self.ready.notify_one();
        true
    }

    /// Drops what is queued for a connection that closed; returns how many datagrams went.
    pub(crate) fn forget(&self, link: usize) -> usize {
        let mut queues = self.queues();
        let dropped = queues
            .by_link
            .remove(&link)
            .map_or(0, |q| q.datagrams.len());
        queues.turn.retain(|l| *l != link);
        dropped
    }

    /// The next datagram in turn: one from the connection at the head, which then goes to
    /// the back if it has more.
    fn pop(&self) -> Option<Incoming> {
        let mut queues = self.queues();
        let Queues { by_link, turn } = &mut *queues;
        while let Some(link) = turn.pop_front() {
            let Some(queue) = by_link.get_mut(&link) else {
                continue;
            };
            let Some(bytes) = queue.datagrams.pop_front() else {
                by_link.remove(&link);
                continue;
            };
            let event = Incoming::Datagram {
                from: queue.from.clone(),
                addr: queue.addr,
                bytes,
            };
            if queue.datagrams.is_empty() {
                // Empty queues are removed so the map holds only connections with traffic.
                by_link.remove(&link);
            } else {
                turn.push_back(link);
            }
            return Some(event);
        }
        None
    }
}

/// Receiver of everything a [`Transport`](super::Transport) delivers; drain it continuously.
pub struct Inbox {
    events: mpsc::Receiver<Incoming>,
    datagrams: Arc<FairQueue>,
    /// Whose turn is first on the next call: the channel and the datagram queues alternate,
    /// so neither starves the other.
    channel_first: bool,
    events_closed: bool,
}

impl Inbox {
    pub(crate) fn new(events: mpsc::Receiver<Incoming>, datagrams: Arc<FairQueue>) -> Self {
        Inbox {
            events,
            datagrams,
            channel_first: false,
            events_closed: false,
        }
    }

    /// Whether a datagram is queued. The driver takes these before stream work (see its
    /// `Priority`).
    pub fn has_datagram(&self) -> bool {
        !self.datagrams.queues().turn.is_empty()
    }

    /// A queued datagram, without waiting; `None` when none is.
    pub fn try_datagram(&mut self) -> Option<Incoming> {
        self.datagrams.pop()
    }

    /// The next input; `None` once the transport is gone and everything queued was read.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            self.channel_first = !self.channel_first;
            if self.channel_first && !self.events_closed {
                if let Ok(event) = self.events.try_recv() {
                    return Some(event);
                }
            }
            if let Some(datagram) = self.datagrams.pop() {
                return Some(datagram);
            }
            if self.events_closed {
                // The engine (which holds the channel's sender) is gone; no reader task is
                // left to queue more datagrams.
                return None;
            }
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => return Some(event),
                    None => self.events_closed = true,
                },
                () = self.datagrams.ready.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    fn from_of(event: Incoming) -> String {
        match event {
            Incoming::Datagram { from, .. } => from.to_string(),
            other => panic!("expected a datagram, got {other:?}"),
        }
    }

    #[test]
    fn a_flooding_peer_gets_one_turn_in_each_round() {
        let queue = FairQueue::default();
        let flood = NodeName::new("flood").unwrap();
        let honest = NodeName::new("honest").unwrap();
        for _ in 0..PEER_QUEUE_MAX {
            assert!(queue.push(1, &flood, addr(), Bytes::from_static(b"x")));
        }
        assert!(queue.push(2, &honest, addr(), Bytes::from_static(b"ack")));
        let order: Vec<String> = (0..3).map(|_| from_of(queue.pop().unwrap())).collect();
        assert_eq!(order, ["flood", "honest", "flood"]);
    }

    #[test]
    fn a_full_queue_drops_only_its_own_peers_datagrams() {
        let queue = FairQueue::default();
        let flood = NodeName::new("flood").unwrap();
        let honest = NodeName::new("honest").unwrap();
        for _ in 0..PEER_QUEUE_MAX {
            assert!(queue.push(1, &flood, addr(), Bytes::from_static(b"x")));
        }
        assert!(!queue.push(1, &flood, addr(), Bytes::from_static(b"x")));
        assert!(queue.push(2, &honest, addr(), Bytes::from_static(b"ack")));
        assert_eq!(queue.forget(1), PEER_QUEUE_MAX);
        assert_eq!(from_of(queue.pop().unwrap()), "honest");
        assert!(queue.pop().is_none());
    }

    #[tokio::test]
    async fn inbox_alternates_between_the_channel_and_datagrams() {
        let (tx, rx) = mpsc::channel(8);
        let queue = Arc::new(FairQueue::default());
        let mut inbox = Inbox::new(rx, queue.clone());
        let peer = NodeName::new("peer").unwrap();
        for _ in 0..2 {
            tx.send(Incoming::PeerDown {
                name: peer.clone(),
                reason: "test".into(),
            })
            .await
            .unwrap();
            queue.push(1, &peer, addr(), Bytes::from_static(b"d"));
        }
        let mut kinds = Vec::new();
        for _ in 0..4 {
            kinds.push(matches!(
                inbox.recv().await,
                Some(Incoming::Datagram { .. })
            ));
        }
        assert_eq!(kinds.iter().filter(|d| **d).count(), 2);
        assert_ne!(kinds[0], kinds[1]);
        drop(tx);
        assert!(inbox.recv().await.is_none());
    }
}
