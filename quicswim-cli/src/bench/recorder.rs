//! One listener task per node: stamps every event the node publishes with the time it
//! arrived, and keeps what the phases read.
//!
//! ```text
//!   node driver --broadcast<Event>--> listener task --lock--> NodeLog
//!                                      (stamp: Instant::now() once per batch received)
//!   phase code <----------------- reads NodeLog under the lock, every few ms
//! ```
//!
//! Events that are already queued when the listener wakes are taken as one batch under one
//! stamp: they reached the listener at the same moment.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::task::JoinHandle;

use quicswim::protocol::{Event, NodeName};

/// Node names in a bench cluster: `node-{index}`.
pub(crate) fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The index in a bench node's name.
pub(crate) fn index_of(name: &NodeName) -> Option<usize> {
    name.as_str().strip_prefix("node-")?.parse().ok()
}

/// Keys written by the key/value phase: `kv-{write index}`.
pub(crate) fn kv_key(write: usize) -> String {
    format!("kv-{write}")
}

fn write_of(key: &str) -> Option<usize> {
    key.strip_prefix("kv-")?.parse().ok()
}

/// Membership event kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Joined,
    Recovered,
    Updated,
    Suspect,
    Dead,
    Left,
}

/// One membership event as a node saw it.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub at: Instant,
    pub kind: Kind,
    /// Index of the member it is about.
    pub member: usize,
    /// The member's metadata, for Joined, Recovered and Updated.
    pub meta: Vec<u8>,
}

/// Deliveries of key/value writes to one node.
#[derive(Debug, Default)]
pub(crate) struct KvLog {
    origin: Option<Instant>,
    /// Per write index: microseconds from `origin` to the first `KvChanged`, or `u32::MAX`.
    pub seen_us: Vec<u32>,
    /// Writes seen at least once.
    pub delivered: usize,
}

/// Marks a write not (yet) delivered.
pub(crate) const NOT_SEEN: u32 = u32::MAX;

/// Microseconds from `origin` to `at`, saturating (a run is far below 71 minutes).
pub(crate) fn micros_since(origin: Instant, at: Instant) -> u32 {
    u32::try_from(at.saturating_duration_since(origin).as_micros()).unwrap_or(NOT_SEEN - 1)
}

/// What one node's listener has recorded.
#[derive(Debug)]
pub(crate) struct NodeLog {
    nodes: usize,
    me: usize,
    /// Every membership event, in arrival order.
    pub records: Vec<Record>,
    /// Per member index: held Alive (from the events) here.
    alive: Vec<bool>,
    alive_count: usize,
    /// Since when every other node has been held Alive here, if it is so now.
    pub full_since: Option<Instant>,
    pub kv: KvLog,
    /// Events missed because the listener fell behind the node's channel.
    pub lost: u64,
}

impl NodeLog {
    pub fn new(me: usize, nodes: usize) -> Self {
        Self {
            nodes,
            me,
            records: Vec::new(),
            alive: vec![false; nodes],
            alive_count: 0,
            full_since: None,
            kv: KvLog::default(),
            lost: 0,
        }
    }

    /// Whether member `m` is held Alive here, by the events so far.
    pub fn holds_alive(&self, m: usize) -> bool {
        self.alive.get(m).copied().unwrap_or(false)
    }

    /// Starts recording key/value deliveries of writes `0..writes`, timed from `origin`.
    pub fn begin_kv(&mut self, origin: Instant, writes: usize) {
        self.kv = KvLog {
            origin: Some(origin),
            seen_us: vec![NOT_SEEN; writes],
            delivered: 0,
        };
    }

    fn record(&mut self, at: Instant, event: Event) {
        let (kind, member) = match event {
            Event::Joined(m) => (Kind::Joined, m),
            Event::Recovered(m) => (Kind::Recovered, m),
            Event::Updated(m) => (Kind::Updated, m),
            Event::Suspect(m) => (Kind::Suspect, m),
            Event::Dead(m) => (Kind::Dead, m),
            Event::Left(m) => (Kind::Left, m),
            Event::KvChanged { key, .. } => {
                self.record_kv(at, &key);
                return;
            }
            Event::User(_) => return,
        };
        let Some(index) = index_of(&member.name).filter(|i| *i < self.nodes && *i != self.me)
        else {
            return;
        };
        let alive = matches!(kind, Kind::Joined | Kind::Recovered | Kind::Updated);
        if alive != self.alive[index] {
            self.alive[index] = alive;
            if alive {
                self.alive_count += 1;
            } else {
                self.alive_count -= 1;
            }
            let full = self.alive_count + 1 == self.nodes;
            self.full_since = if full { Some(at) } else { None };
        }
        let meta = if alive { member.meta } else { Vec::new() };
        self.records.push(Record {
            at,
            kind,
            member: index,
            meta,
        });
    }

    fn record_kv(&mut self, at: Instant, key: &str) {
        let Some(origin) = self.kv.origin else {
            return;
        };
        let Some(slot) = write_of(key).and_then(|w| self.kv.seen_us.get_mut(w)) else {
            return;
        };
        if *slot == NOT_SEEN {
            *slot = micros_since(origin, at);
            self.kv.delivered += 1;
        }
    }
}

/// A node's log, shared between its listener and the phases.
#[derive(Clone, Debug)]
pub(crate) struct SharedLog(Arc<Mutex<NodeLog>>);

impl SharedLog {
    pub fn new(me: usize, nodes: usize) -> Self {
        Self(Arc::new(Mutex::new(NodeLog::new(me, nodes))))
    }

    pub fn lock(&self) -> MutexGuard<'_, NodeLog> {
        // A listener that panicked mid-record leaves a log worth reading still.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Most events taken under one stamp and one lock.
const BATCH_MAX: usize = 256;

/// Starts the listener of one node. It runs until the node's channel closes or it is aborted.
pub(crate) fn spawn_listener(
    mut events: broadcast::Receiver<Event>,
    log: SharedLog,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            let mut lost = 0;
            match events.recv().await {
                Ok(event) => batch.push(event),
                Err(RecvError::Lagged(n)) => lost += n,
                Err(RecvError::Closed) => return,
            }
            while batch.len() < BATCH_MAX {
                match events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(TryRecvError::Lagged(n)) => lost += n,
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            let at = Instant::now();
            let mut log = log.lock();
            log.lost += lost;
            for event in batch.drain(..) {
                log.record(at, event);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicswim::protocol::{Incarnation, Member, State};

    fn member(i: usize, meta: &[u8]) -> Member {
        Member {
            name: NodeName::new(node_name(i)).unwrap(),
            addr: "127.0.0.1:1".parse().unwrap(),
            incarnation: Incarnation(1),
            state: State::Alive,
            meta: meta.to_vec(),
        }
    }

    #[test]
    fn full_view_starts_when_the_last_member_is_alive_and_ends_on_a_suspicion() {
        let t0 = Instant::now();
        let mut log = NodeLog::new(0, 3);
        log.record(t0, Event::Joined(member(1, b"")));
        assert!(log.full_since.is_none());
        log.record(t0, Event::Joined(member(0, b"")));
        assert!(log.full_since.is_none(), "events about itself are ignored");
        let t1 = t0 + std::time::Duration::from_millis(5);
        log.record(t1, Event::Joined(member(2, b"")));
        assert_eq!(log.full_since, Some(t1));
        log.record(t1, Event::Suspect(member(2, b"")));
        assert!(log.full_since.is_none());
        assert_eq!(log.records.len(), 3);
        assert_eq!(log.records[2].kind, Kind::Suspect);
    }

    #[test]
    fn a_write_counts_once_and_only_within_the_planned_range() {
        let origin = Instant::now();
        let mut log = NodeLog::new(0, 2);
        log.record(
            origin,
            Event::KvChanged {
                owner: NodeName::new("node-1").unwrap(),
                key: kv_key(0),
            },
        );
        assert_eq!(log.kv.delivered, 0, "not recording yet");
        log.begin_kv(origin, 2);
        let at = origin + std::time::Duration::from_micros(1500);
        for key in [kv_key(1), kv_key(1), kv_key(7), "other".into()] {
            let owner = NodeName::new("node-1").unwrap();
            log.record(at, Event::KvChanged { owner, key });
        }
        assert_eq!(log.kv.delivered, 1);
        assert_eq!(log.kv.seen_us, vec![NOT_SEEN, 1500]);
    }
}
