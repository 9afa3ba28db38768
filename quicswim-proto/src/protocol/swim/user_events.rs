//! User events: fire-and-forget named payloads, published here or heard from peers, delivered
//! once per node and spread by gossip and full-state exchanges.

use std::time::Instant;

use super::super::bounded::{COUNTER_MAX, SELF_CLAIM_MAX};
use super::super::broadcast::Subject;
use super::super::codec::{encode_update, SignedEvent, Update};
use super::super::events::{UserEvent, EVENT_NAME_LEN_MAX};
use super::super::member::NodeName;
use super::super::member::State;
use super::verify::RecordKind;
use super::{CommandError, Event, Swim};

/// User events carried in every full-state exchange.
pub(super) const RECENT_EVENTS_SYNCED: usize = 64;

impl Swim {
    /// Publishes a user event to every member; returns its sequence number.
    pub fn publish(
        &mut self,
        now: Instant,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<u64, CommandError> {
        if self.me.state == State::Left {
            return Err(CommandError::Left);
        }
        if name.is_empty() || name.len() > EVENT_NAME_LEN_MAX {
            self.stats.local_writes_refused += 1;
            return Err(CommandError::BadEventName(name.len()));
        }
        if payload.len() > self.config.event_payload_len_max {
            self.stats.local_writes_refused += 1;
            return Err(CommandError::EventTooLarge {
                len: payload.len(),
                max: self.config.event_payload_len_max,
            });
        }
        let seq = self.next_event_seq;
        // As for key/value versions (see `write`): never beyond what peers accept.
        if seq > COUNTER_MAX {
            return Err(CommandError::CounterExhausted("event sequence"));
        }
        self.next_event_seq = seq + 1;
        let event = UserEvent {
            origin: self.me.name.clone(),
            seq,
            name: name.to_string(),
            payload,
        };
        self.dedup.first_sight(&event.origin, seq);
        self.stats.user_events_delivered += 1;
        let signed = SignedEvent {
            signature: self.keyring.sign(&SignedEvent::signed_bytes(&event)),
            event,
        };
        self.remember_event(&signed);
        self.push_event(Event::User(signed.event.clone()));
        let subject = Subject::Event(signed.event.origin.clone(), seq);
        let news = self.news_mark();
        self.broadcasts
            .push(subject, encode_update(&Update::Event(signed)));
        self.gossip_if_new(now, news);
        Ok(seq)
    }

    /// An event `from` passed on: delivered and relayed once, if its origin signed it.
    pub(super) fn on_user_event(&mut self, now: Instant, from: &NodeName, signed: SignedEvent) {
        let e = &signed.event;
        // Only members' events: an origin outside the table would hold a de-duplication
        // window that nothing ever removes (they go when their member is reaped).
        if !self.holds_data_of(&e.origin, now)
            || e.payload.len() > self.config.event_payload_len_max
        {
            self.stats.user_events_refused += 1;
            return;
        }
        if !self.dedup.would_be_new(&e.origin, e.seq) {
            return;
        }
        let bytes = SignedEvent::signed_bytes(e);
        let origin = e.origin.clone();
        if !self.verified(
            now,
            from,
            RecordKind::Event,
            &origin,
            &bytes,
            &signed.signature,
        ) {
            return;
        }
        let e = &signed.event;
        if e.origin == self.me.name {
            // Our own event from before a restart: later ones must go above it.
            if e.seq > SELF_CLAIM_MAX {
                self.stats.self_claims_refused += 1;
                return;
            }
            self.next_event_seq = self.next_event_seq.max(e.seq + 1);
        }
        self.dedup.first_sight(&e.origin, e.seq);
        self.stats.event_origins_evicted = self.dedup.evicted();
        self.stats.user_events_delivered += 1;
        self.remember_event(&signed);
        let subject = Subject::Event(e.origin.clone(), e.seq);
        self.broadcasts
            .push(subject, encode_update(&Update::Event(signed.clone())));
        self.push_event(Event::User(signed.event));
    }

    /// Keeps the last few events for full-state exchanges (as serf's push-pull does), so a
    /// member that missed one by gossip still gets it.
    fn remember_event(&mut self, e: &SignedEvent) {
        if self.recent_events.len() >= RECENT_EVENTS_SYNCED {
            self.recent_events.pop_front();
        }
        self.recent_events.push_back(e.clone());
    }
}
