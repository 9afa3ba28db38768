//! The node's consistent-hash ring, kept in step with membership off the driver task.
//!
//! ```text
//!   driver task                      ring task
//!   membership events
//!     --push--> pending: latest (state, weight) per member
//!               doorbell (capacity 1) --> take all; RingTracker::apply_many (spawn_blocking)
//!                                           |--> watch: Arc<Ring> ------> Node::ring()
//!                                           `--> broadcast: RingChanged -> Node::ring_events()
//! ```
//!
//! A rebuild hashes and sorts every virtual-node point (half a million at a thousand members
//! of weight 1), so the driver never does it: it only records each member's latest state in a
//! map bounded by the member count and rings a doorbell. The ring task takes the whole map at
//! once: changes that arrive while a rebuild runs, or within [`REBUILD_SPACING`] of its start,
//! go into the next one together, so rebuilds never queue up behind a burst of joins. Lookups clone an `Arc<Ring>` from a `watch`
//! channel and never touch either task.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, error, Instrument};

use crate::protocol::{NodeName, State};
use crate::ring::{Ring, RingTracker};

/// The ring changed: who came on, who went off, whose weight changed, and the ring that
/// resulted. Carrying the ring means a subscriber never races [`Node::ring`](super::Node::ring)
/// to learn which ring a change produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingChanged {
    /// Members put on the ring, in name order.
    pub added: Vec<NodeName>,
    /// Members taken off the ring (Dead or Left), in name order.
    pub removed: Vec<NodeName>,
    /// Members still on the ring with a new weight (their share of keys moved too).
    pub reweighted: Vec<NodeName>,
    /// The ring after the change.
    pub ring: Arc<Ring>,
}

/// Ring changes kept for a slow subscriber before it sees `Lagged` (it can then read
/// [`Node::ring`](super::Node::ring) to catch up).
const RING_EVENT_CAPACITY: usize = 256;

/// The least time from one rebuild's start to the next's. Unspaced, a cluster starting at once
/// has every node rebuild its ring many times a second (65,000 points each at 128 members);
/// spaced, a burst of changes costs at most two rebuilds a second, and a lone change still
/// goes on the ring at once.
const REBUILD_SPACING: Duration = Duration::from_millis(500);

/// Updates waiting for the ring task: the latest `(state, weight)` per member.
type Pending = BTreeMap<NodeName, (State, u32)>;

/// The driver's end: records updates and wakes the ring task. Dropping it stops the task.
pub(super) struct RingFeed {
    pending: Arc<Mutex<Pending>>,
    doorbell: mpsc::Sender<()>,
    ring: watch::Receiver<Arc<Ring>>,
}

/// What the node handle keeps.
#[derive(Clone)]
pub(super) struct RingView {
    pub(super) ring: watch::Receiver<Arc<Ring>>,
    pub(super) events: broadcast::Sender<RingChanged>,
}

impl RingFeed {
    /// Starts the ring task with `tracker` (already holding this node) as its first ring.
    pub(super) fn start(tracker: RingTracker) -> (RingFeed, RingView) {
        let (ring_tx, ring_rx) = watch::channel(Arc::clone(tracker.ring()));
        let (events, _) = broadcast::channel(RING_EVENT_CAPACITY);
        let (doorbell, rung) = mpsc::channel(1);
        let pending = Arc::new(Mutex::new(Pending::new()));
        let task = follow(tracker, Arc::clone(&pending), rung, ring_tx, events.clone());
        tokio::spawn(task.in_current_span());
        let feed = RingFeed {
            pending,
            doorbell,
            ring: ring_rx.clone(),
        };
        (
            feed,
            RingView {
                ring: ring_rx,
                events,
            },
        )
    }

    /// Records one member's new state (weight from its metadata, used when Alive).
    pub(super) fn push(&self, name: &NodeName, state: State, weight: u32) {
        self.push_all(std::iter::once((name, state, weight)));
    }

    /// Records many updates, in order, then wakes the ring task once.
    pub(super) fn push_all<'a>(
        &self,
        updates: impl IntoIterator<Item = (&'a NodeName, State, u32)>,
    ) {
        {
            let mut pending = self
                .pending
                .lock()
                .expect("no panic while holding the lock");
            for (name, state, weight) in updates {
                collapse(&mut pending, name, state, weight);
            }
        }
        // Full means a wake-up is already due, and it will see what was just recorded.
        let _ = self.doorbell.try_send(());
    }

    /// Makes the ring match `table` (every member the core holds, with state and weight) after
    /// events were lost: members on the ring or pending but no longer held are taken off.
    pub(super) fn resync<'a>(&self, table: impl IntoIterator<Item = (&'a NodeName, State, u32)>) {
        let table: Vec<(&NodeName, State, u32)> = table.into_iter().collect();
        let held: std::collections::BTreeSet<&NodeName> = table.iter().map(|u| u.0).collect();
        let on_ring: Vec<NodeName> = self.ring.borrow().members().to_vec();
        let waiting: Vec<NodeName> = self
            .pending
            .lock()
            .expect("no panic while holding the lock")
            .keys()
            .cloned()
            .collect();
        let gone: Vec<NodeName> = on_ring
            .into_iter()
            .chain(waiting)
            .filter(|name| !held.contains(name))
            .collect();
        let gone = gone.iter().map(|name| (name, State::Dead, 0));
        self.push_all(gone.chain(table));
    }
}

/// Folds one update into the pending map so that applying the map gives the same ring as
/// applying every update in order. Alive, Dead and Left decide a member's place whatever came
/// before them; Suspect keeps whatever place the member had, so it only matters when nothing
/// is pending for that member yet.
fn collapse(pending: &mut Pending, name: &NodeName, state: State, weight: u32) {
    if state == State::Suspect && pending.contains_key(name) {
        return;
    }
    pending.insert(name.clone(), (state, weight));
}

/// The ring task: waits for the doorbell, applies everything pending in one batch, publishes.
async fn follow(
    mut tracker: RingTracker,
    pending: Arc<Mutex<Pending>>,
    mut rung: mpsc::Receiver<()>,
    ring_tx: watch::Sender<Arc<Ring>>,
    events: broadcast::Sender<RingChanged>,
) {
    while rung.recv().await.is_some() {
        let started = tokio::time::Instant::now();
        let batch = std::mem::take(&mut *pending.lock().expect("no panic while holding the lock"));
        if batch.is_empty() {
            continue;
        }
        let rebuild = tokio::task::spawn_blocking(move || {
            let change = tracker.apply_many(batch.iter().map(|(n, &(s, w))| (n, s, w)));
            (tracker, change)
        });
        let change = match rebuild.await {
            Ok((back, change)) => {
                tracker = back;
                change
            }
            Err(e) => {
                error!(error = %e, "ring rebuild failed; the ring no longer follows membership");
                return;
            }
        };
        let Some(change) = change else {
            continue;
        };
        // Whatever arrives meanwhile waits in `pending`, with the doorbell rung.
        let next_at = started + REBUILD_SPACING;
        let ring = Arc::clone(tracker.ring());
        debug!(
            added = ?change.added,
            removed = ?change.removed,
            reweighted = ?change.reweighted,
            checksum = ring.checksum(),
            "ring changed"
        );
        let retired = ring_tx.send_replace(Arc::clone(&ring));
        tracker.recycle(retired);
        let _ = events.send(RingChanged {
            added: change.added,
            removed: change.removed,
            reweighted: change.reweighted,
            ring,
        });
        tokio::time::sleep_until(next_at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_name as name;

    /// Every sequence of updates for one member, applied in order to a fresh tracker and to
    /// one holding the member, gives the same ring as its collapsed form.
    #[test]
    fn collapsed_updates_give_the_ring_of_the_full_sequence() {
        let states = [
            (State::Alive, 1),
            (State::Alive, 3),
            (State::Suspect, 1),
            (State::Dead, 1),
            (State::Left, 1),
        ];
        let m = name("m");
        // Every sequence of up to four updates.
        let mut sequences: Vec<Vec<(State, u32)>> = vec![vec![]];
        let mut frontier = sequences.clone();
        for _ in 0..4 {
            frontier = frontier
                .iter()
                .flat_map(|s| {
                    states.iter().map(move |&u| {
                        let mut s = s.clone();
                        s.push(u);
                        s
                    })
                })
                .collect();
            sequences.extend(frontier.iter().cloned());
        }
        for start_on_ring in [false, true] {
            for sequence in &sequences {
                let mut base = RingTracker::new(8);
                base.apply(&name("other"), State::Alive, 1);
                if start_on_ring {
                    base.apply(&m, State::Alive, 2);
                }
                let mut stepwise = base.clone();
                for &(s, w) in sequence {
                    stepwise.apply(&m, s, w);
                }
                let mut pending = Pending::new();
                for &(s, w) in sequence {
                    collapse(&mut pending, &m, s, w);
                }
                let mut batched = base.clone();
                batched.apply_many(pending.iter().map(|(n, &(s, w))| (n, s, w)));
                assert_eq!(
                    stepwise.ring(),
                    batched.ring(),
                    "on ring at start: {start_on_ring}, updates: {sequence:?}"
                );
            }
        }
    }

    async fn next_change(events: &mut broadcast::Receiver<RingChanged>) -> RingChanged {
        tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .expect("a ring change within 10 s")
            .expect("the ring task is running")
    }

    #[tokio::test]
    async fn feed_publishes_one_change_per_batch_and_the_ring() {
        let mut tracker = RingTracker::new(16);
        tracker.apply(&name("me"), State::Alive, 1);
        let (feed, view) = RingFeed::start(tracker);
        let mut events = view.events.subscribe();
        feed.push_all([
            (&name("a"), State::Alive, 1),
            (&name("b"), State::Alive, 2),
            (&name("c"), State::Suspect, 1),
        ]);
        let change = next_change(&mut events).await;
        assert_eq!(change.added, [name("a"), name("b")]);
        assert!(change.removed.is_empty() && change.reweighted.is_empty());
        assert_eq!(change.ring.members(), [name("a"), name("b"), name("me")]);
        assert_eq!(*view.ring.borrow(), change.ring);

        // One call, so both land in one batch whenever the task wakes.
        feed.push_all([(&name("a"), State::Dead, 1), (&name("b"), State::Alive, 1)]);
        let change = next_change(&mut events).await;
        assert_eq!(change.removed, [name("a")]);
        assert_eq!(change.reweighted, [name("b")]);
        assert_eq!(view.ring.borrow().members(), [name("b"), name("me")]);
    }

    #[tokio::test]
    async fn resync_takes_off_members_no_longer_held() {
        let mut tracker = RingTracker::new(16);
        tracker.apply_many([
            (name("me"), State::Alive, 1),
            (name("gone"), State::Alive, 1),
            (name("kept"), State::Alive, 1),
        ]);
        let (feed, view) = RingFeed::start(tracker);
        let mut events = view.events.subscribe();
        let (me, kept, new) = (name("me"), name("kept"), name("new"));
        feed.resync([
            (&me, State::Alive, 1),
            (&kept, State::Suspect, 1),
            (&new, State::Alive, 1),
        ]);
        let change = next_change(&mut events).await;
        assert_eq!(change.added, [name("new")]);
        assert_eq!(change.removed, [name("gone")]);
        assert_eq!(change.ring.members(), [kept, me, new]);
    }

    #[tokio::test]
    async fn ring_task_stops_when_the_feed_is_dropped() {
        let (feed, view) = RingFeed::start(RingTracker::new(16));
        let mut ring = view.ring.clone();
        drop(feed);
        // The task owns the watch sender: `changed` fails once the task has ended.
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), ring.changed()).await;
        assert!(matches!(end, Ok(Err(_))), "{end:?}");
    }
}
