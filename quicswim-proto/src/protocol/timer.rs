//! Absolute deadlines owned by the core.
//!
//! Deadlines live in a `BTreeMap<(Instant, u64), Timer>`; the `u64` breaks ties in insertion
//! order. Per-member timers carry the incarnation they were set for, so one that outlived its
//! reason is a no-op when it fires.

use std::collections::BTreeMap;
use std::time::Instant;

use super::member::{Incarnation, NodeName};

/// What happens when a deadline passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Finish the current probe and probe the next member.
    ProbeNextMember,
    /// The direct Ping for `seq` got no Ack in time: ask others.
    ProbeTimeout {
        /// The probe's sequence number.
        seq: u64,
    },
    /// A Ping sent on someone's behalf got no Ack: send them a Nack.
    IndirectProbeTimeout {
        /// Our sequence number for the relayed Ping.
        seq: u64,
    },
    /// Exchange full state with one random member.
    PushPull,
    /// Declare a suspect Dead unless it refuted meanwhile.
    SuspectToDead {
        /// The suspect.
        name: NodeName,
        /// The incarnation it was suspected at.
        incarnation: Incarnation,
    },
    /// Contact one Dead member, in case a partition healed.
    ReconnectDead,
    /// One of the early full-state exchanges after joining.
    JoinSync {
        /// 0, 1, 2, ...: the exchange's place in the series.
        round: u32,
    },
    /// Start the next join attempt: no seed has answered the last one.
    RetryJoin {
        /// The attempt this timer ends; stale once another join began.
        attempt: u32,
    },
    /// Forget tombstones older than the retention.
    ReapTombstones,
    /// A key/value round: exchange key/value digests with a few members.
    KvSync,
    /// This node left and no member confirmed it yet: ask one more.
    ResendLeave,
}

/// Names one set timer, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey(Instant, u64);

/// The core's deadlines.
#[derive(Debug, Default)]
pub struct Timers {
    map: BTreeMap<(Instant, u64), Timer>,
    next_id: u64,
}

impl Timers {
    /// Sets `timer` to fire at `at`; the key cancels it.
    pub fn insert(&mut self, at: Instant, timer: Timer) -> TimerKey {
        let key = TimerKey(at, self.next_id);
        self.map.insert((at, self.next_id), timer);
        self.next_id += 1;
        key
    }

    /// Removes a timer that has not fired yet (one that has is gone already).
    pub fn cancel(&mut self, key: TimerKey) {
        self.map.remove(&(key.0, key.1));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.map.keys().next().map(|k| k.0)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let first = self.map.first_key_value()?.0 .0;
        if first > now {
            return None;
        }
        self.map.pop_first().map(|(_, t)| t)
    }

    /// Forgets every deadline.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Deadlines set.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No deadline set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_deadline_then_insertion_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.insert(t0 + Duration::from_secs(2), Timer::RetryJoin { attempt: 1 });
        t.insert(t0 + Duration::from_secs(1), Timer::PushPull);
        t.insert(t0 + Duration::from_secs(1), Timer::ReconnectDead);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None, "early call is safe and fires nothing");
        let now = t0 + Duration::from_secs(1);
        assert_eq!(t.pop_due(now), Some(Timer::PushPull));
        assert_eq!(t.pop_due(now), Some(Timer::ReconnectDead));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(5)),
            Some(Timer::RetryJoin { attempt: 1 })
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_cancelled_timer_never_fires_and_others_still_do() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let probe = t.insert(
            t0 + Duration::from_millis(500),
            Timer::ProbeTimeout { seq: 7 },
        );
        t.insert(t0 + Duration::from_secs(1), Timer::ProbeNextMember);
        t.cancel(probe);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let now = t0 + Duration::from_secs(1);
        assert_eq!(t.pop_due(now), Some(Timer::ProbeNextMember));
        assert_eq!(t.pop_due(now), None);
        // Cancelling what already fired is harmless.
        t.cancel(probe);
        assert!(t.is_empty());
    }
}
