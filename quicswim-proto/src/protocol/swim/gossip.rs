//! Gossip: piggybacking queued updates on every datagram, eager rounds when news arrives, and
//! the periodic rounds to members picked by a walk over the member table.

use std::time::{Duration, Instant};

use super::super::broadcast::{retransmit_limit, Subject};
use super::super::codec::{
    datagram_overhead, encode_datagram, encode_update, MemberDigest, MemberUpdate, Message, Update,
    UPDATES_PER_DATAGRAM_MAX,
};
use super::super::member::{NodeName, State};
use super::sampling::walk_max;
use super::{Destination, Entry, Swim, Transmit, TransmitKind};

/// After a gossip pick's dial, the next waits this many times as long as the dial took: a
/// node spends at most a fifth of its time dialling for gossip. Handshakes on an idle machine
/// take milliseconds, so gossip reaches every member at once; when 128 nodes start together
/// on 2 cores they take 0.1-1 s, and dials back to back slow every handshake, and the join
/// with them.
const DIAL_PAUSE: u32 = 4;

/// The piggyback queue before an input: how many updates had been pushed, and whether it
/// was empty.
#[derive(Clone, Copy)]
pub(super) struct NewsMark {
    pushed: u64,
    idle: bool,
}

impl Swim {
    /// What the piggyback queue held before an input, for [`gossip_if_new`](Self::gossip_if_new).
    pub(super) fn news_mark(&self) -> NewsMark {
        NewsMark {
            pushed: self.broadcasts.pushed(),
            idle: self.broadcasts.is_empty(),
        }
    }

    /// Eager gossip: news queued since `before` goes out in a round at once instead of at
    /// the next tick. Waiting for the tick costs each hop half a gossip interval on average,
    /// and the slowest of a few hops sets the time until every member knows; while earlier
    /// news is still being retransmitted the queue is seldom empty, so waiting only for an
    /// empty queue would leave most hops at the tick.
    /// Rounds are at least a quarter interval apart unless the queue was empty, so a burst
    /// of news (a cluster joining) sends at most four times the rounds of the tick.
    pub(super) fn gossip_if_new(&mut self, now: Instant, before: NewsMark) {
        if self.broadcasts.pushed() == before.pushed
            || self.broadcasts.is_empty()
            || self.me.state == State::Left
        {
            return;
        }
        let spaced = self
            .last_gossip
            .is_none_or(|at| now.duration_since(at) >= self.config.gossip_interval / 4);
        if before.idle || spaced {
            self.gossip(now);
        }
    }

    /// A gossip round: the queued news to `gossip_nodes` members, the next in this node's
    /// cyclic walk over its member table ([`Cycle`](super::super::cycle::Cycle)), skipping
    /// those without a connection except one, when no other is being dialled and
    /// [`DIAL_PAUSE`] times the last dial's duration has passed since it.
    ///
    /// The walk, where memberlist draws each round's targets afresh: while the member table
    /// keeps its size, successive rounds reach distinct members, so the copies a node sends
    /// of an update (the retransmit limit, 12 at 128 members) go to as many different
    /// members when it has that many connections, and to every one when it has fewer. (A
    /// join or a reap moves the walk on from where it was; a member may then come round
    /// again early.) Drawn afresh among its connections (15 or so just after a 128-node
    /// join), about a third of a node's copies would go to a member it had already sent that
    /// update to, and a member few others are connected to (the mesh is young for one probe
    /// pass after a join) could miss every copy and have the update only from a later
    /// exchange.
    ///
    /// Kept to connected members without the dial, gossip would leave such members fewer
    /// chances still. Pacing the dials keeps a large cluster that starts at once from a
    /// storm of handshakes (they slow each other; the dials are what costs).
    pub(super) fn gossip(&mut self, now: Instant) {
        if self.broadcasts.is_empty() {
            return;
        }
        // The periodic rounds keep their phase (each node's own, set at start), as a fixed
        // timer would: a round that news brought early leaves the next tick where it was, so
        // the first retransmission follows within a fraction of an interval, not a whole one.
        if self.gossip_tick <= now {
            let interval = self.config.gossip_interval.as_nanos().max(1);
            let into = now.duration_since(self.gossip_tick).as_nanos() % interval;
            let to_next = u64::try_from(interval - into).unwrap_or(u64::MAX);
            self.gossip_tick = now + Duration::from_nanos(to_next);
        }
        let dead_window = self.config.gossip_to_the_dead_time;
        let eligible = |e: &Entry| {
            e.member.state.is_active()
                || (e.member.state == State::Dead
                    && now.duration_since(e.state_change) < dead_window)
        };
        let k = self.config.gossip_nodes;
        let dial_free = match &self.gossip_dial {
            None => now >= self.gossip_dial_after,
            // No answer within a probe interval: given up on.
            Some((_, at)) => now.duration_since(*at) >= self.config.probe_interval,
        };
        let mut targets = Vec::with_capacity(k);
        let mut dial = None;
        // At most one step per member, so a round's targets are distinct; and bounded work
        // per round: a young node with few connections sends to fewer.
        for _ in 0..walk_max(k).min(self.members.len()) {
            if targets.len() >= k {
                break;
            }
            let Some(at) = self.gossip_cycle.next(&mut self.rng, self.members.len()) else {
                break;
            };
            let e = self.members.at(at);
            if !eligible(e) || !(e.connected || (dial_free && dial.is_none())) {
                continue;
            }
            if !e.connected {
                dial = Some(e.member.name.clone());
            }
            targets.push(e.member.name.clone());
        }
        // Short of `k` (few connections among the members walked: a young node, or a large
        // cluster), the rest among connected members drawn at random; a round that found no
        // one sends to one member at random, dialling it if need be, so that news still
        // leaves a node before its mesh grows.
        self.sample_connected(&mut targets, k, &eligible, None);
        if targets.is_empty() {
            self.fill_random(&mut targets, 1, &eligible, None);
        }
        if !targets.is_empty() {
            self.last_gossip = Some(now);
        }
        for name in targets {
            if self.broadcasts.is_empty() {
                break;
            }
            if dial.as_ref() == Some(&name) {
                self.gossip_dial = Some((name.clone(), now));
            }
            let to = self.destination_of(&name);
            // A deep queue (a cluster joining, each update ~110 bytes signed) drains in
            // fewer rounds: further datagrams to the same member, each with updates the
            // round has not sent it yet, and only while there are such updates.
            let mut sent = Vec::new();
            self.send_datagram_with(to.clone(), Message::Gossip, &mut sent, false);
            for _ in 1..self.config.gossip_datagrams_max {
                if !self.send_datagram_with(to.clone(), Message::Gossip, &mut sent, true) {
                    break;
                }
            }
        }
    }

    /// When the next periodic gossip round is due: only while news is queued, and never
    /// after leaving (the Left claim was sent directly; a node that left stops all timers).
    pub(super) fn gossip_due(&self) -> Option<Instant> {
        (!self.broadcasts.is_empty() && self.me.state != State::Left).then_some(self.gossip_tick)
    }

    /// A connection to `name` is up: if a gossip pick was dialling it, the next such dial
    /// waits [`DIAL_PAUSE`] times as long as this one took (see [`gossip`](Self::gossip)).
    pub(super) fn dial_done(&mut self, now: Instant, name: &NodeName) {
        if let Some((_, at)) = self.gossip_dial.as_ref().filter(|(n, _)| n == name) {
            let took = now.saturating_duration_since(*at);
            self.gossip_dial_after = now + took * DIAL_PAUSE;
            self.gossip_dial = None;
        }
    }

    pub(super) fn send_datagram(&mut self, to: Destination, message: Message) {
        self.send_datagram_with(to, message, &mut Vec::new(), false);
    }

    /// Sends `message` with the queued updates that fit and are not in `sent`, whose ids it
    /// adds there. With `only_with_updates`, nothing goes out when no such update is left.
    /// Returns whether a datagram went out.
    fn send_datagram_with(
        &mut self,
        to: Destination,
        message: Message,
        sent: &mut Vec<u64>,
        only_with_updates: bool,
    ) -> bool {
        let (count, updates) = self.take_updates(&message, sent);
        if count == 0 && only_with_updates {
            return false;
        }
        let payload = encode_datagram(&message, count, &updates);
        debug_assert!(payload.len() <= self.datagram_size);
        self.push_datagram(to, payload);
        true
    }

    /// The queued updates that fit beside `message` and are not in `sent`.
    fn take_updates(&mut self, message: &Message, sent: &mut Vec<u64>) -> (usize, Vec<u8>) {
        let n = self.cluster_size();
        let limit = retransmit_limit(self.config.retransmit_mult, n);
        // Two bytes of count varint cover up to 16383 updates, far above what fits.
        let budget = self
            .datagram_size
            .saturating_sub(datagram_overhead(message, 200));
        self.broadcasts
            .take_new(budget, limit, UPDATES_PER_DATAGRAM_MAX, sent)
    }

    /// Whether `u` accuses a member (Suspect or Dead) at an incarnation it has since
    /// refuted, as far as this node knows: the sender missed the refutation.
    pub(super) fn is_refuted(&self, u: &MemberUpdate) -> bool {
        if !matches!(u.state(), State::Suspect | State::Dead) {
            return false;
        }
        let (incarnation, state) = if u.claim.name == self.me.name {
            (self.me.incarnation, self.me.state)
        } else {
            match self.members.get(&u.claim.name) {
                Some(e) => (e.member.incarnation, e.member.state),
                None => return false,
            }
        };
        state == State::Alive && incarnation > u.claim.incarnation
    }

    /// Tells `to`, which just sent a claim refuted since (see
    /// [`is_refuted`](Self::is_refuted)), the member's state as held here, in a datagram of
    /// its own.
    ///
    /// A refutation spreads by gossip, each member relaying it a bounded number of times
    /// ([`retransmit_limit`]), so now and then a member misses every copy:
    /// about one in e^16 at the lan preset from 100 to 999 members, which a cluster where members are suspected and
    /// refute every few seconds (stalling nodes) reaches within minutes. That member keeps
    /// the suspicion, relays it, and declares a live member Dead at its deadline unless the
    /// last call reaches the suspect (it may be stalled again). Its own relays of the stale
    /// claim reach members that hold the refutation, and the first of them tells it. One
    /// datagram per stale claim received, at most one per datagram received.
    pub(super) fn send_correction(&mut self, to: Destination, name: &NodeName) {
        let update = if *name == self.me.name {
            self.self_update()
        } else {
            let Some(update) = self.held_update(name) else {
                return;
            };
            update
        };
        let bytes = encode_update(&Update::Member(update));
        let payload = encode_datagram(&Message::Gossip, 1, &bytes);
        if payload.len() > self.datagram_size {
            return; // metadata near its limit in a datagram set very small: gossip will do
        }
        self.stats.corrections_sent += 1;
        self.push_datagram(to, payload);
    }

    /// Hands an encoded datagram to the runtime, counted.
    fn push_datagram(&mut self, to: Destination, payload: Vec<u8>) {
        self.stats.datagrams_out += 1;
        self.stats.datagram_bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Datagram,
            payload,
        });
    }

    pub(super) fn broadcast_self(&mut self) {
        let update = self.self_update();
        self.queue_member(update);
    }

    /// Queues a member's entry as held (its claim and, for Suspect and Dead, the accusation).
    pub(super) fn broadcast_member(&mut self, name: &NodeName) {
        let Some(update) = self.held_update(name) else {
            return;
        };
        self.queue_member(update);
    }

    /// Queues `update`; an Alive or Left record with its digest as the brief form (see
    /// [`records`](super::records)). A suspicion goes in full every time: its accuser is a
    /// Lifeguard confirmation, which a digest does not name.
    fn queue_member(&mut self, update: MemberUpdate) {
        let state = update.state();
        let brief = matches!(state, State::Alive | State::Left).then(|| {
            encode_update(&Update::Digest(MemberDigest {
                name: update.claim.name.clone(),
                incarnation: update.claim.incarnation,
                state,
            }))
        });
        let subject = Subject::Member(update.claim.name.clone());
        let bytes = encode_update(&Update::Member(update));
        match &self.pool {
            Some(pool) => self
                .broadcasts
                .push_pooled_with_brief(subject, bytes, brief, pool),
            None => self.broadcasts.push_with_brief(subject, bytes, brief),
        }
    }
}
