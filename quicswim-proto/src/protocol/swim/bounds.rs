//! The bounds the core keeps whatever its peers send, checked in one place: by the fuzz
//! targets and the property tests after every input, so a bound that a change breaks fails
//! there rather than in a node that runs out of memory.

use super::super::bounded::COUNTER_MAX;
use super::super::events::ORIGINS_MAX;
use super::output::EVENTS_BYTES_MAX;
use super::probe::{ENDED_MAX, RELAYS_MAX};
use super::user_events::RECENT_EVENTS_SYNCED;
use super::Swim;

/// Most events the queue may hold (the count bound; see `output`).
const EVENTS_COUNT_MAX: usize = 65_536;

impl Swim {
    /// Checks every bound on what the core holds; an error names the one broken.
    #[doc(hidden)]
    pub fn check_bounds(&self) -> Result<(), String> {
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
        check(
            self.members.len() <= self.config.members_max,
            "members over members_max",
        )?;
        check(
            self.broadcasts.len() <= self.config.broadcast_queue_max,
            "piggyback queue over broadcast_queue_max",
        )?;
        check(
            self.events.len() <= EVENTS_COUNT_MAX,
            "event queue over its count",
        )?;
        // One event over the byte bound is let in when the queue is otherwise empty.
        check(
            self.events.len() <= 1 || self.events_bytes <= EVENTS_BYTES_MAX,
            "event queue over its bytes",
        )?;
        check(
            self.recent_events.len() <= RECENT_EVENTS_SYNCED,
            "recent events over their count",
        )?;
        check(self.relays.len() <= RELAYS_MAX, "relays over their count")?;
        check(
            self.ended.len() <= ENDED_MAX,
            "ended probes and relays over their count",
        )?;
        check(
            self.dedup.origins() <= ORIGINS_MAX,
            "event origins over ORIGINS_MAX",
        )?;
        self.kv
            .check_quotas()
            .map_err(|e| format!("key/value: {e}"))?;
        check(
            self.counts.iter().sum::<usize>() == self.members.len(),
            "member counts out of step with the table",
        )?;
        // Our own counters stay ahead of anything accepted about us, with room to go on.
        // ... and within what peers accept, so what we send about ourselves is taken.
        check(
            self.me.incarnation.0 <= COUNTER_MAX,
            "own incarnation beyond what peers accept",
        )?;
        check(
            self.next_version <= COUNTER_MAX + 1 && self.next_event_seq <= COUNTER_MAX + 1,
            "own counters beyond what peers accept",
        )?;
        check(
            self.kv.max_version(&self.me.name) < self.next_version,
            "own key/value version not ahead of our own entries",
        )?;
        Ok(())
    }
}
