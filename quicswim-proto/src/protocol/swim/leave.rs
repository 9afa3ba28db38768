//! Leaving gracefully: the Left claim goes out by datagram and by full-state exchange, this
//! node's own key/value entries follow it to whoever lacks them, and the leave counts as
//! confirmed once one member has shown that it holds both.
//!
//! ```text
//!   leaver --- Gossip datagram {me: Left} ----------> up to 16 members (may be lost)
//!   leaver === PushPull {me: Left, recent events} ==> gossip_nodes members
//!   leaver <== PushPullReply {members, kv digest} === peer
//!              the reply lists us Left: the peer has the leave; its digest against our keys:
//!                level -> confirmed by the peer
//!                behind -> KvPush {our entries it lacks} ==> peer, KvPushAck <==,
//!                          then PushPull again, until its digest is level, at most
//!                          LEAVE_FLUSHES_MAX pushes to one peer
//!   no confirmation within a probe interval: one more member is asked, up to LEAVE_ASKS_MAX
//! ```
//!
//! A peer's digest can stay unlevel for good: at the same version with a different
//! fingerprint, once one side collected a tombstone the other still holds, every push is
//! refused there as stale. The flush limit ends those rounds; the other members asked may
//! still confirm.
//!
//! The user events this node published recently ride in the PushPull itself (the responder
//! merges them before it answers), so a reply also says they arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use tracing::debug;

use super::super::codec::{encode_datagram, encode_update, MemberUpdate, Message, Update};
use super::super::kv::OwnerDigest;
use super::super::member::{NodeName, State};
use super::super::timer::Timer;
use super::{Swim, Transmit, TransmitKind};

/// Most members sent a Leave directly.
const LEAVE_FANOUT: usize = 16;

/// Most members asked for a confirmation in all, the first `gossip_nodes` included: the
/// resends stop by themselves even if the runtime never stops the core.
const LEAVE_ASKS_MAX: usize = 8;

/// Most pushes of our entries to one member while leaving, each followed by a PushPull to
/// see whether it is level; together with `LEAVE_ASKS_MAX` this bounds every request a
/// leave sends.
const LEAVE_FLUSHES_MAX: u32 = 3;

/// Where a graceful leave stands ([`Swim::leave_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaveStatus {
    /// This node has not left.
    Member,
    /// Left; no member has confirmed yet.
    Unconfirmed,
    /// Left with no active member to tell: there is nothing to wait for.
    Alone,
    /// `by` holds this node as Left, and every key/value entry this node owns.
    Confirmed {
        /// The member that confirmed.
        by: NodeName,
    },
}

/// A leave in progress.
#[derive(Debug, Default)]
pub(super) struct Leaving {
    /// Members sent a leave PushPull.
    asked: BTreeSet<NodeName>,
    /// Leave PushPulls sent, repeats to the same member included.
    asks: usize,
    /// Members that hold our Left and were pushed our entries they lacked: their KvPushAck
    /// starts one more PushPull to check they are level.
    flushing: BTreeSet<NodeName>,
    /// Pushes of our entries sent, by member.
    flushes: BTreeMap<NodeName, u32>,
    alone: bool,
    confirmed_by: Option<NodeName>,
}

impl Swim {
    /// Leaves gracefully: this node is Left everywhere, not Dead. The Left update goes by
    /// datagram to up to 16 members, and by reliable full-state request to `gossip_nodes` of
    /// them, so it is not lost with a datagram; this node's key/value entries follow to those
    /// that lack them (see the module docs). The runtime keeps feeding replies and
    /// timeouts until [`leave_status`](Self::leave_status) is no longer `Unconfirmed`, or its
    /// own deadline passes, and then closes.
    pub fn leave(&mut self, now: Instant) {
        if self.me.state == State::Left {
            return;
        }
        self.me.state = State::Left;
        debug!(member = %self.me.name, incarnation = self.me.incarnation.0, "leaving");
        // Each of these datagrams carries the Left claim itself. Taken from the piggyback
        // queue, it would ride on only the first `retransmit_limit` of them (4 in a small
        // cluster, 12 at 200 members, both below LEAVE_FANOUT), and nothing is sent after
        // leaving to make up for it.
        let left = encode_update(&Update::Member(self.self_update()));
        let payload = encode_datagram(&Message::Gossip, 1, &left);
        let targets = self.random_members(LEAVE_FANOUT, |e| e.member.state.is_active(), None);
        let mut leaving = Leaving {
            alone: targets.is_empty(),
            ..Leaving::default()
        };
        for (i, name) in targets.iter().enumerate() {
            let to = self.destination_of(name);
            self.stats.datagrams_out += 1;
            self.stats.datagram_bytes_out += payload.len() as u64;
            self.transmits.push_back(Transmit {
                to: to.clone(),
                kind: TransmitKind::Datagram,
                payload: payload.clone(),
            });
            if i < self.config.gossip_nodes {
                leaving.asked.insert(name.clone());
                leaving.asks += 1;
                self.send_push_pull(to, false);
            }
        }
        self.timers.clear();
        self.probe = None;
        if !leaving.alone {
            self.timers
                .insert(now + self.config.probe_interval, Timer::ResendLeave);
        }
        self.leaving = Some(leaving);
    }

    /// Where a graceful leave stands.
    pub fn leave_status(&self) -> LeaveStatus {
        match &self.leaving {
            None => LeaveStatus::Member,
            Some(l) if l.alone => LeaveStatus::Alone,
            Some(Leaving {
                confirmed_by: Some(by),
                ..
            }) => LeaveStatus::Confirmed { by: by.clone() },
            Some(_) => LeaveStatus::Unconfirmed,
        }
    }

    /// No confirmation yet: one more member gets the leave PushPull, one not asked before
    /// while there are any.
    pub(super) fn resend_leave(&mut self, now: Instant) {
        let Some(l) = self.leaving.as_ref() else {
            return;
        };
        if l.confirmed_by.is_some() || l.asks >= LEAVE_ASKS_MAX {
            return;
        }
        let asked = l.asked.clone();
        let fresh = self.random_members(
            1,
            |e| e.member.state.is_active() && !asked.contains(&e.member.name),
            None,
        );
        let picked = if fresh.is_empty() {
            self.random_members(1, |e| e.member.state.is_active(), None)
        } else {
            fresh
        };
        let Some(name) = picked.into_iter().next() else {
            return;
        };
        debug!(member = %name, "leave not confirmed yet; asking another member");
        let to = self.destination_of(&name);
        self.send_push_pull(to, false);
        if let Some(l) = self.leaving.as_mut() {
            l.asked.insert(name);
            l.asks += 1;
        }
        self.timers
            .insert(now + self.config.probe_interval, Timer::ResendLeave);
    }

    /// A PushPullReply while leaving: confirmed when the peer lists us Left and is level
    /// with our own key/value entries; pushed what it lacks of them otherwise.
    pub(super) fn on_leave_reply(
        &mut self,
        now: Instant,
        from: &NodeName,
        members: &[MemberUpdate],
        kv_digest: &[OwnerDigest],
    ) {
        let has_left = members.iter().any(|u| {
            u.claim.name == self.me.name
                && u.state() == State::Left
                && u.claim.incarnation >= self.me.incarnation
        });
        let Some(l) = self.leaving.as_ref() else {
            return;
        };
        if !has_left || l.confirmed_by.is_some() {
            return;
        }
        // Only our own entries: the others' are theirs to spread.
        let theirs = kv_digest
            .iter()
            .find(|d| d.owner == self.me.name)
            .cloned()
            .unwrap_or_else(|| OwnerDigest {
                owner: self.me.name.clone(),
                max_version: 0,
                fingerprint: 0,
                gc_floor: 0,
            });
        self.seal_own_entries(now, true);
        let deltas = self
            .kv
            .delta_for_listed(&[theirs], self.config.kv_sync_bytes_max);
        let Some(l) = self.leaving.as_mut() else {
            return;
        };
        if deltas.iter().all(|d| d.entries.is_empty() && !d.reset) {
            debug!(peer = %from, "leave confirmed");
            l.confirmed_by = Some(from.clone());
            self.timers.clear();
            return;
        }
        let flushes = l.flushes.entry(from.clone()).or_insert(0);
        if *flushes >= LEAVE_FLUSHES_MAX {
            debug!(peer = %from, "leave: peer still not level after {LEAVE_FLUSHES_MAX} pushes; giving up on it");
            return;
        }
        *flushes += 1;
        l.flushing.insert(from.clone());
        self.stats.kv_entries_synced += deltas.iter().map(|d| d.entries.len() as u64).sum::<u64>();
        self.send_kv_push(from, deltas, Vec::new());
    }

    /// A KvPushAck while leaving: check, with one more PushPull, that the peer is now level
    /// (a push is cut at `kv_sync_bytes_max`).
    pub(super) fn on_leave_push_acked(&mut self, from: &NodeName) {
        let Some(l) = self.leaving.as_mut() else {
            return;
        };
        if l.confirmed_by.is_some() || !l.flushing.remove(from) {
            return;
        }
        let to = self.destination_of(from);
        self.send_push_pull(to, false);
    }
}
