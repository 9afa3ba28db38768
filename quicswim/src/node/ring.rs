//! The node's consistent-hash ring, kept in step with membership off the driver task, and
//! only once something uses it.
//!
//! ```text
//!   driver task                      ring task
//!   membership events
//!     --push--> pending: latest (state, weight) per member
//!               doorbell (capacity 1) --> wanted? take all; RingTracker::apply_many (spawn_blocking)
//!                                           |--> watch: Arc<Ring> ------> Node::ring()
//!                                           `--> broadcast: RingChanged -> Node::ring_events()
//! ```
//!
//! A rebuild hashes and sorts every virtual-node point (half a million at a thousand members
//! of weight 1), so the driver never does it: it only records each member's latest state in a
//! map bounded by the member count and rings a doorbell. The ring task takes the whole map at
//! once: changes that arrive while a rebuild runs, or within [`REBUILD_SPACING`] of its start,
//! go into the next one together, so rebuilds never queue up behind a burst of joins. Lookups
//! clone an `Arc<Ring>` from a `watch` channel and never touch either task.
//!
//! A node that never asks for its ring builds none: until the first [`RingView::ring`] or
//! [`RingView::subscribe`], updates only wait in the pending map (the latest per member, so
//! still bounded), and that first call builds the ring from all of them at once, on the
//! caller's thread, before it returns. From then on the ring task keeps the ring current as
//! described above. In a 128-node cluster starting at once, ring rebuilds were about a seventh
//! of every node's CPU while joining, for a ring that most uses of membership never read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
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

/// What the driver's end, the node handle and the ring task share.
///
/// Lock order: `tracker`, then `pending`; the driver only ever takes `pending`, alone.
struct Shared {
    /// Updates not yet on the ring, the latest per member.
    pending: Mutex<Pending>,
    /// The ring as last built, and the members it was built from.
    tracker: Mutex<RingTracker>,
    ring: watch::Sender<Arc<Ring>>,
    events: broadcast::Sender<RingChanged>,
    /// Whether anything has asked for the ring (see the module notes); never unset.
    wanted: AtomicBool,
    /// The first ask's build: later askers wait for it to end rather than read the ring
    /// as it was before.
    first_build: Once,
}

impl Shared {
    /// Applies everything pending in one batch and publishes the ring and the change, if the
    /// ring changed; returns whether it did.
    fn rebuild(&self) -> bool {
        // The tracker first: two rebuilds at once (the task's and a first caller's) then take
        // and apply their batches in the same order, so an older batch never lands last.
        let mut tracker = self.tracker.lock().expect("no panic while locked");
        let batch = std::mem::take(&mut *self.pending.lock().expect("no panic while locked"));
        if batch.is_empty() {
            return false;
        }
        let Some(change) = tracker.apply_many(batch.iter().map(|(n, &(s, w))| (n, s, w))) else {
            return false;
        };
        let ring = Arc::clone(tracker.ring());
        debug!(
            added = ?change.added,
            removed = ?change.removed,
            reweighted = ?change.reweighted,
            checksum = ring.checksum(),
            "ring changed"
        );
        let retired = self.ring.send_replace(Arc::clone(&ring));
        tracker.recycle(retired);
        let _ = self.events.send(RingChanged {
            added: change.added,
            removed: change.removed,
            reweighted: change.reweighted,
            ring,
        });
        true
    }
}

/// The driver's end: records updates and wakes the ring task. Dropping it stops the task.
pub(super) struct RingFeed {
    shared: Arc<Shared>,
    doorbell: mpsc::Sender<()>,
}

/// What the node handle keeps.
#[derive(Clone)]
pub(super) struct RingView {
    shared: Arc<Shared>,
    ring: watch::Receiver<Arc<Ring>>,
}

impl RingView {
    /// The current ring; the first call (of this or [`RingView::subscribe`]) builds it.
    pub(super) fn ring(&self) -> Arc<Ring> {
        self.want();
        Arc::clone(&self.ring.borrow())
    }

    /// Ring changes from now on; the first call (of this or [`RingView::ring`]) builds the
    /// ring before subscribing, so the changes start from the ring as it is.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<RingChanged> {
        self.want();
        self.shared.events.subscribe()
    }

    /// Marks the ring wanted and, the first time, builds it from every pending update before
    /// returning; a caller that comes while that first build runs waits for it. (If the task
    /// takes the pending updates first, the build here waits for the tracker, so the ring
    /// is the task's when it returns.)
    fn want(&self) {
        self.shared.first_build.call_once(|| {
            self.shared.wanted.store(true, Ordering::Release);
            let _ = self.shared.rebuild();
        });
    }
}

impl RingFeed {
    /// Starts the ring task with `tracker` (already holding this node) as its first ring.
    pub(super) fn start(tracker: RingTracker) -> (RingFeed, RingView) {
        let (ring_tx, ring_rx) = watch::channel(Arc::clone(tracker.ring()));
        let (events, _) = broadcast::channel(RING_EVENT_CAPACITY);
        let (doorbell, rung) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::new()),
            tracker: Mutex::new(tracker),
            ring: ring_tx,
            events,
            wanted: AtomicBool::new(false),
            first_build: Once::new(),
        });
        tokio::spawn(follow(Arc::clone(&shared), rung).in_current_span());
        let feed = RingFeed {
            shared: Arc::clone(&shared),
            doorbell,
        };
        (
            feed,
            RingView {
                shared,
                ring: ring_rx,
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
                .shared
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
        let on_ring: Vec<NodeName> = self.shared.ring.borrow().members().to_vec();
        let waiting: Vec<NodeName> = self
            .shared
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

/// The ring task: waits for the doorbell and, once the ring is wanted, applies everything
/// pending in one batch and publishes. Ends when the feed (the doorbell's sender) is dropped.
async fn follow(shared: Arc<Shared>, mut rung: mpsc::Receiver<()>) {
    while rung.recv().await.is_some() {
        if !shared.wanted.load(Ordering::Acquire) {
            continue;
        }
        let started = tokio::time::Instant::now();
        let task = Arc::clone(&shared);
        match tokio::task::spawn_blocking(move || task.rebuild()).await {
            Ok(false) => {}
            // Whatever arrives meanwhile waits in `pending`, with the doorbell rung.
            Ok(true) => tokio::time::sleep_until(started + REBUILD_SPACING).await,
            Err(e) => {
                error!(error = %e, "ring rebuild failed; the ring no longer follows membership");
                return;
            }
        }
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
        let mut events = view.subscribe();
        feed.push_all([
            (&name("a"), State::Alive, 1),
            (&name("b"), State::Alive, 2),
            (&name("c"), State::Suspect, 1),
        ]);
        let change = next_change(&mut events).await;
        assert_eq!(change.added, [name("a"), name("b")]);
        assert!(change.removed.is_empty() && change.reweighted.is_empty());
        assert_eq!(change.ring.members(), [name("a"), name("b"), name("me")]);
        assert_eq!(view.ring(), change.ring);

        // One call, so both land in one batch whenever the task wakes.
        feed.push_all([(&name("a"), State::Dead, 1), (&name("b"), State::Alive, 1)]);
        let change = next_change(&mut events).await;
        assert_eq!(change.removed, [name("a")]);
        assert_eq!(change.reweighted, [name("b")]);
        assert_eq!(view.ring().members(), [name("b"), name("me")]);
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
        let mut events = view.subscribe();
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

    /// Waits, up to 10 s, for the ring task to end (it holds one reference to the shared
    /// state, `view` the other).
    async fn task_ended(view: &RingView) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&view.shared) > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the ring task still runs 10 s after the feed was dropped"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn ring_task_stops_when_the_feed_is_dropped() {
        let (feed, view) = RingFeed::start(RingTracker::new(16));
        drop(feed);
        task_ended(&view).await;
    }

    /// Updates pushed before anyone asks build nothing; the first `ring` builds from all of
    /// them before it returns.
    #[tokio::test]
    async fn no_ring_is_built_until_asked_for_and_the_first_ask_sees_every_update() {
        let mut tracker = RingTracker::new(16);
        tracker.apply(&name("me"), State::Alive, 1);
        let (feed, view) = RingFeed::start(tracker);
        let watch = view.ring.clone();
        feed.push_all([(&name("a"), State::Alive, 1), (&name("b"), State::Alive, 1)]);
        feed.push(&name("a"), State::Dead, 0);
        // The task sees the doorbell before the channel's end, and awaits any rebuild it
        // starts before it ends: once it has ended, it has built whatever it was going to.
        drop(feed);
        task_ended(&view).await;
        assert!(
            !watch.has_changed().unwrap_or(true),
            "a ring was built unasked"
        );
        assert_eq!(view.shared.pending.lock().unwrap().len(), 2);

        assert_eq!(view.ring().members(), [name("b"), name("me")]);
        assert!(view.shared.pending.lock().unwrap().is_empty());
    }

    /// Subscribing is asking: the ring is built before the subscription starts, so the first
    /// change a subscriber sees is the next one, not everything since the node started.
    #[tokio::test]
    async fn first_subscription_builds_the_ring_before_subscribing() {
        let mut tracker = RingTracker::new(16);
        tracker.apply(&name("me"), State::Alive, 1);
        let (feed, view) = RingFeed::start(tracker);
        feed.push(&name("a"), State::Alive, 1);
        let mut events = view.subscribe();
        feed.push(&name("b"), State::Alive, 1);
        let change = next_change(&mut events).await;
        assert_eq!(change.added, [name("b")]);
        assert_eq!(change.ring.members(), [name("a"), name("b"), name("me")]);
    }
}
