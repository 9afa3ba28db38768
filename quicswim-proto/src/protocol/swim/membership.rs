//! Membership transitions: Alive, Suspect, Dead and Left under SWIM precedence, refuting
//! claims about this node with a higher incarnation, leaving, and collecting tombstones.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tracing::{debug, trace};

use super::super::bounded::SELF_CLAIM_MAX;
use super::super::broadcast::Subject;
use super::super::codec::{Accusation, Claim, MemberUpdate};
use super::super::member::{
    overrides, Incarnation, Member, MemberPool, NodeName, State, META_LEN_MAX,
};
use super::super::signing::Signature;
use super::super::suspicion::{confirmations_wanted, min_timeout, Suspicion};
use super::super::timer::Timer;
use super::{state_index, CommandError, Entry, Event, ForgedKind, Proof, Swim};

/// Most dropped members remembered at once; beyond it the one remembered longest goes.
const FORGOTTEN_MAX: usize = 1024;

/// Fewest claims checked together (below it, one by one): a batch check has a fixed cost
/// of a few single ones.
const CHECKED_TOGETHER_MIN: usize = 8;

/// Members whose tombstone was dropped here (force-leave or reap), each until
/// `dead_retention` after. A peer that still holds such a member's key/value data sends it
/// whole with every exchange (we list no digest for it), and with no member to reap it
/// would stay here for good; so it is refused while the member is remembered. Gossip about
/// a member does not bring it back (Dead, Left and Suspect of unknown names are ignored),
/// so only its data needs this.
#[derive(Debug, Default)]
pub(super) struct Forgotten {
    until: BTreeMap<NodeName, Instant>,
}

impl Forgotten {
    fn insert(&mut self, name: NodeName, until: Instant) {
        self.until.insert(name, until);
        if self.until.len() > FORGOTTEN_MAX {
            let oldest = self
                .until
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                self.until.remove(&oldest);
            }
        }
    }

    /// Whether `name` was dropped here and is still remembered at `now`.
    fn holds(&self, name: &NodeName, now: Instant) -> bool {
        self.until.get(name).is_some_and(|until| now < *until)
    }

    fn remove(&mut self, name: &NodeName) {
        self.until.remove(name);
    }

    fn expire(&mut self, now: Instant) {
        self.until.retain(|_, until| now < *until);
    }
}

/// Whether an update came from gossip or from a peer's full state.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source {
    Gossip,
    PushPull,
}

impl Swim {
    /// Drops a dead or left member's tombstone now, as reaping would after
    /// `dead_retention`: the member, its key/value data and its event history go from this
    /// node's table. Refused for an alive or suspect member, for this node, and for a name not
    /// held; nothing changes then. Key/value data of the member that peers still hold is
    /// refused for `dead_retention`, unless the member comes back into the table first.
    ///
    /// Local, not gossiped: a Left is a member's own statement, and no member may make it for
    /// another (serf's force-leave gossips one; here each node drops its own tombstone, and an
    /// operator runs it on each node or lets `dead_retention` do it). A peer that still holds
    /// the member Alive can bring it back through a full-state exchange; the failure detector
    /// then finds it dead again.
    pub fn force_leave(&mut self, now: Instant, name: &NodeName) -> Result<(), CommandError> {
        if *name == self.me.name {
            return Err(CommandError::ForceLeaveSelf);
        }
        let Some(e) = self.members.get(name) else {
            return Err(CommandError::UnknownMember(name.clone()));
        };
        let state = e.member.state;
        if state.is_active() {
            return Err(CommandError::MemberActive {
                name: name.clone(),
                state,
            });
        }
        debug!(member = %name, %state, "tombstone dropped (force-leave)");
        self.forget(now, name);
        Ok(())
    }

    /// Changes this node's metadata; gossiped with a new incarnation.
    pub fn set_meta(&mut self, now: Instant, meta: Vec<u8>) -> Result<(), CommandError> {
        if self.me.state == State::Left {
            return Err(CommandError::Left);
        }
        if meta.len() > META_LEN_MAX {
            return Err(CommandError::MetaTooLong(meta.len()));
        }
        self.me.meta = meta;
        self.me.incarnation = self.me.incarnation.next();
        let news = self.news_mark();
        self.broadcast_self();
        self.gossip_if_new(now, news);
        Ok(())
    }

    /// This node's signing key changed (its certificate was rotated): states itself anew
    /// (a new incarnation, signed with the new key), so that members learn the new
    /// certificate, since a record that does not verify with the one they hold makes them
    /// ask the peer that sent it, and hold a claim of this node that the new one checks.
    ///
    /// Its key/value entries and tombstones are written again too (same values, new
    /// versions, signed with the new key): members check the old ones with the certificate
    /// rotated away from only while it is valid, so without this a node that joins after
    /// it expires could not check them, and would never hold them. Subscribers see a
    /// [`Event::KvChanged`](super::Event::KvChanged) for each, here and on every member.
    pub fn restate(&mut self, now: Instant) -> Result<(), CommandError> {
        let meta = self.me.meta.clone();
        self.set_meta(now, meta)?;
        let me = self.me.name.clone();
        for (key, value) in self.kv.entries_of(&me) {
            self.write(now, &key, value)?;
        }
        Ok(())
    }

    /// A claim about a member from `from`: checked against the signatures it carries when,
    /// and only when, it would change something here, then applied and relayed.
    pub(super) fn apply(&mut self, now: Instant, from: &NodeName, u: MemberUpdate, source: Source) {
        if u.claim.name == self.me.name {
            self.on_claim_about_self(now, from, u);
            return;
        }
        let mut state = u.state();
        // memberlist: a peer's full state saying Dead only makes us suspect, so one stale
        // view cannot kill members we still reach. The suspicion is then ours.
        let ours = state == State::Dead && matches!(source, Source::PushPull);
        if ours {
            state = State::Suspect;
        }
        let accuser = match (&u.accusation, ours) {
            (_, true) => Some(&self.me.name),
            (Some(a), false) => Some(&a.accuser),
            (None, false) => None,
        };
        if !self.is_news(&u, state, accuser) {
            return;
        }
        if !self.holds_claim(&u) && !self.claim_verified(now, from, &u) {
            let signer = u.claim.name.clone();
            self.park(now, &signer, from, u, source);
            return;
        }
        if let Some(a) = u.accusation.as_ref().filter(|_| !u.claim.left) {
            if !self.accusation_verified(now, from, &u.claim, a) {
                let signer = a.accuser.clone();
                self.park(now, &signer, from, u, source);
                return;
            }
        }
        let MemberUpdate {
            claim,
            signature,
            accusation,
        } = u;
        match (state, accusation) {
            (State::Alive, _) => self.on_alive(now, claim, signature),
            (State::Suspect, Some(a)) if !ours => self.on_suspect(now, claim, signature, a),
            (State::Suspect, _) => {
                let a = self.accuse(&claim.name, claim.incarnation, false);
                self.on_suspect(now, claim, signature, a);
            }
            (State::Dead, a) => self.on_dead(now, claim, signature, a),
            (State::Left, _) => self.on_dead(now, claim, signature, None),
        }
    }

    /// Whether a claim in `state` (by `accuser`, for Suspect and Dead) would change this
    /// node's table: only then is it worth checking. Suspect, Dead and Left of a member not
    /// held are ignored (they would bring back a member reaped here).
    fn is_news(&self, u: &MemberUpdate, state: State, accuser: Option<&NodeName>) -> bool {
        let Some(e) = self.members.get(&u.claim.name) else {
            return state == State::Alive;
        };
        if state != State::Alive && state != State::Left && accuser.is_none() {
            return false; // Suspect and Dead need an accuser
        }
        let held = (e.member.incarnation, e.member.state);
        let new = (u.claim.incarnation, state);
        if overrides(new, held) {
            return true;
        }
        // A further accuser of a suspicion held at this incarnation: a confirmation.
        new == held
            && state == State::Suspect
            && accuser.is_some_and(|a| e.suspicion.as_ref().is_some_and(|s| s.would_confirm(a)))
    }

    /// Applies a list of claims from one message (a full-state exchange, a record reply),
    /// checking their signatures together first where the keyring can.
    pub(super) fn apply_all(
        &mut self,
        now: Instant,
        from: &NodeName,
        updates: Vec<MemberUpdate>,
        source: Source,
    ) {
        self.check_claims_together(updates.iter());
        for u in updates {
            self.apply(now, from, u, source);
        }
        self.checked_together.clear();
    }

    /// Checks together (one batch) the claims among `updates` that [`Swim::apply`] would
    /// otherwise check one by one: not about this node, not held already, not older than the
    /// held one, by a signer whose certificate is held. If the batch passes, each is kept for
    /// `claim_verified` to take (byte for byte, signature and all) while the caller
    /// ([`Swim::apply_all`], `unpark`) applies the list, and clears after.
    pub(super) fn check_claims_together<'a>(
        &mut self,
        updates: impl Iterator<Item = &'a MemberUpdate>,
    ) {
        let claims: Vec<(NodeName, Vec<u8>, Signature)> = updates
            .filter(|u| {
                u.claim.name != self.me.name
                    && !self.holds_claim(u)
                    && self
                        .members
                        .get(&u.claim.name)
                        .is_none_or(|e| e.member.incarnation <= u.claim.incarnation)
                    && self.keyring.certificate(&u.claim.name).is_some()
            })
            .map(|u| {
                let bytes = u.claim.signed_bytes();
                (u.claim.name.clone(), bytes, u.signature.clone())
            })
            .collect();
        if claims.len() < CHECKED_TOGETHER_MIN {
            return;
        }
        let items: Vec<(&NodeName, &[u8], &Signature)> = claims
            .iter()
            .map(|(name, bytes, sig)| (name, bytes.as_slice(), sig))
            .collect();
        if self.keyring.verify_together(&items) {
            self.checked_together = claims
                .into_iter()
                .map(|(name, bytes, sig)| (name, (bytes, sig)))
                .collect();
        }
    }

    /// Whether `u`'s claim, as `bytes`, was among those checked together; taken if so.
    pub(super) fn take_checked_together(&mut self, u: &MemberUpdate, bytes: &[u8]) -> bool {
        self.checked_together
            .remove(&u.claim.name)
            .is_some_and(|(b, sig)| b == bytes && sig == u.signature)
    }

    /// Whether `u`'s claim is the one held, signature included: checked when it was applied.
    fn holds_claim(&self, u: &MemberUpdate) -> bool {
        self.members.get(&u.claim.name).is_some_and(|e| {
            let m = &e.member;
            m.incarnation == u.claim.incarnation
                && m.addr == u.claim.addr
                && m.meta == u.claim.meta
                && (m.state == State::Left) == u.claim.left
                && e.proof.signature == u.signature
        })
    }

    /// A claim about this node. Only what it signed itself counts (its own records from
    /// before a restart, with an accusation against one of them): anything else is a
    /// forgery, counted and dropped, and raises nothing here.
    fn on_claim_about_self(&mut self, now: Instant, from: &NodeName, u: MemberUpdate) {
        if self.me.state == State::Left || u.claim.incarnation < self.me.incarnation {
            return;
        }
        let state = u.state();
        let current = self
            .signed_self
            .as_ref()
            .is_some_and(|(claim, sig)| *claim == u.claim && *sig == u.signature);
        if current && state == State::Alive {
            return;
        }
        if !current && !self.claim_verified(now, from, &u) {
            return;
        }
        if let Some(a) = u.accusation.as_ref().filter(|_| !u.claim.left) {
            if !self.accusation_verified(now, from, &u.claim, a) {
                return;
            }
        }
        self.on_self_claim(
            now,
            u.claim.incarnation,
            state,
            Some((u.claim.addr, &u.claim.meta)),
        );
    }

    /// Someone holds a claim about this node. Refute anything but the truth.
    fn on_self_claim(
        &mut self,
        now: Instant,
        incarnation: Incarnation,
        state: State,
        detail: Option<(SocketAddr, &Vec<u8>)>,
    ) {
        if self.me.state == State::Left || incarnation < self.me.incarnation {
            return;
        }
        if incarnation.0 > SELF_CLAIM_MAX {
            // Raising ours past it would take us beyond what peers accept (see SELF_CLAIM_MAX).
            self.stats.self_claims_refused += 1;
            return;
        }
        let same_detail =
            detail.is_none_or(|(addr, meta)| addr == self.me.addr && *meta == self.me.meta);
        if state == State::Alive && incarnation == self.me.incarnation && same_detail {
            return;
        }
        if state != State::Alive && self.awareness.is_out() {
            // Held out (see `awareness.rs`): let the claim stand, so the cluster declares
            // this node Dead, but catch up with its incarnation so that coming back, one
            // above, overrides it.
            self.me.incarnation = Incarnation(incarnation.0.max(self.me.incarnation.0));
            return;
        }
        self.me.incarnation = Incarnation(incarnation.0.max(self.me.incarnation.0)).next();
        if state != State::Alive {
            self.stats.refutations += 1;
            self.awareness.apply(now, 1);
        }
        debug!(member = %self.me.name, incarnation = self.me.incarnation.0, claimed = %state, "refute");
        self.broadcast_self();
    }

    /// A Ping from `from` names this node. `suspected` is the incarnation the prober holds us
    /// Suspect at (buddy system): refute it at once.
    ///
    /// Only at our own incarnation or below: one above it is not one this node holds, and
    /// taking it would let any member set our incarnation (one Ping at the highest value
    /// accepted and we could never refute again). It is refused and counted; the Ping is
    /// still answered, since we are alive. (A node restarted with a lower incarnation than
    /// it had learns its old one from its join exchange, not from Pings.)
    pub(super) fn on_pinged(
        &mut self,
        now: Instant,
        from: &NodeName,
        suspected: Option<Incarnation>,
    ) {
        let Some(incarnation) = suspected else {
            return;
        };
        if incarnation > self.me.incarnation {
            self.refuse_forged(now, from, ForgedKind::Suspected);
            return;
        }
        if incarnation < self.me.incarnation && !self.awareness.is_out() {
            // We refuted already, but this prober missed it: gossip is best effort and a node
            // can miss every copy. Queue our Alive again so the Ack, filled next and
            // fewest-sent first, carries it to the one member known to need it. Without this
            // the prober's suspicion runs out and it declares us Dead.
            self.broadcast_self();
        } else {
            self.on_self_claim(now, incarnation, State::Suspect, None);
        }
    }

    fn on_alive(&mut self, now: Instant, claim: Claim, signature: Signature) {
        let name = claim.name.clone();
        let proof = Proof {
            signature: pool_signature(self.pool.as_ref(), signature),
            accusation: None,
        };
        let event = match self.members.get_mut(&name) {
            None => {
                if self.members.len() >= self.config.members_max {
                    return;
                }
                let member = Member {
                    name: claim.name,
                    addr: claim.addr,
                    incarnation: claim.incarnation,
                    state: State::Alive,
                    meta: claim.meta,
                };
                // Back from a dropped tombstone: its data has a member to be collected
                // with again.
                self.forgotten.remove(&name);
                debug!(member = %name, incarnation = member.incarnation.0, addr = %member.addr, "member joined");
                self.insert_member(now, member.clone(), proof);
                Event::Joined(member)
            }
            Some(e) => {
                let old = e.member.state;
                let incarnation = claim.incarnation;
                e.update(self.pool.as_ref(), |m| {
                    m.addr = claim.addr;
                    m.meta = claim.meta;
                    m.incarnation = incarnation;
                    m.state = State::Alive;
                });
                e.proof = proof;
                e.suspicion = None;
                e.state_change = now;
                let member = Member::clone(&e.member);
                self.recount(Some(old), Some(State::Alive));
                match old {
                    State::Alive => Event::Updated(member),
                    State::Suspect => {
                        debug!(member = %name, incarnation = incarnation.0, "member recovered");
                        Event::Recovered(member)
                    }
                    State::Dead | State::Left => {
                        debug!(member = %name, incarnation = incarnation.0, "member rejoined");
                        self.add_to_probe_list(name.clone());
                        Event::Joined(member)
                    }
                }
            }
        };
        self.broadcast_member(&name);
        self.push_event(event);
    }

    /// This node's failed probe of `name`, held at `incarnation` when it was probed: it
    /// becomes Suspect on this node's own signed accusation.
    pub(super) fn suspect_by_me(
        &mut self,
        now: Instant,
        name: &NodeName,
        incarnation: Incarnation,
    ) {
        let Some(u) = self.held_update(name) else {
            return;
        };
        if u.claim.incarnation != incarnation || !u.state().is_active() {
            return;
        }
        let accusation = self.accuse(name, incarnation, false);
        self.on_suspect(now, u.claim, u.signature, accusation);
    }

    /// A checked accusation of Suspect against the member of `claim` (checked too).
    fn on_suspect(
        &mut self,
        now: Instant,
        claim: Claim,
        signature: Signature,
        accusation: Accusation,
    ) {
        let n = self.cluster_size();
        let name = claim.name.clone();
        let incarnation = claim.incarnation;
        let accuser = accusation.accuser.clone();
        let Some(e) = self.members.get_mut(&name) else {
            return;
        };
        if e.member.state == State::Suspect && e.member.incarnation == incarnation {
            let Some(s) = e.suspicion.as_mut() else {
                return;
            };
            if s.confirm(accuser.clone()) {
                let call = last_call_at(s.deadline(), self.config.probe_timeout);
                trace!(member = %name, accuser = %accuser, confirmations = s.confirmations(), "suspicion confirmed");
                e.proof.accusation = Some(Box::new(accusation));
                self.timers.insert(
                    call.max(now),
                    Timer::SuspectToDead {
                        name: name.clone(),
                        incarnation,
                    },
                );
                self.broadcast_member(&name);
            }
            return;
        }
        if !overrides(
            (incarnation, State::Suspect),
            (e.member.incarnation, e.member.state),
        ) {
            return;
        }
        let old = e.member.state;
        let min = min_timeout(self.config.suspicion_mult, n, self.config.probe_interval);
        let max = min * self.config.suspicion_max_timeout_mult;
        let k = confirmations_wanted(self.config.suspicion_confirmations, n);
        let s = Suspicion::new(now, min, max, k, accuser.clone());
        let call = last_call_at(s.deadline(), self.config.probe_timeout).max(now);
        e.update(self.pool.as_ref(), |m| {
            m.state = State::Suspect;
            m.incarnation = incarnation;
            m.addr = claim.addr;
            m.meta = claim.meta;
        });
        e.proof = Proof {
            signature: pool_signature(self.pool.as_ref(), signature),
            accusation: Some(Box::new(accusation)),
        };
        e.suspicion = Some(Box::new(s));
        e.state_change = now;
        let member = Member::clone(&e.member);
        self.recount(Some(old), Some(State::Suspect));
        if old.is_active() {
            debug!(member = %name, incarnation = incarnation.0, accuser = %accuser, "member suspect");
        } else {
            self.add_to_probe_list(name.clone());
        }
        self.timers.insert(
            call,
            Timer::SuspectToDead {
                name: name.clone(),
                incarnation,
            },
        );
        // A suspicion ends at its minimum timeout only once k others confirm it, each by its own
        // failed probe; probing at random, they come at one probe interval each on average,
        // and the last often comes after the minimum has passed (half-rate random probes,
        // see `next_probe_target`). About 3k nodes hearing of it probe it next, so a
        // dead member's confirmations come within about one interval.
        let probers = f64::from(3 * k);
        if accuser != self.me.name
            && self.probe_soon.is_none()
            && self.rng.random::<f64>() < probers / n as f64
        {
            self.probe_soon = Some(name.clone());
        }
        self.broadcast_member(&name);
        self.push_event(Event::Suspect(member));
    }

    /// A checked Dead (with its accusation) or Left (the member's own claim).
    pub(super) fn on_dead(
        &mut self,
        now: Instant,
        claim: Claim,
        signature: Signature,
        accusation: Option<Accusation>,
    ) {
        let name = claim.name.clone();
        let incarnation = claim.incarnation;
        let state = if claim.left { State::Left } else { State::Dead };
        let Some(e) = self.members.get_mut(&name) else {
            return;
        };
        if !overrides((incarnation, state), (e.member.incarnation, e.member.state)) {
            return;
        }
        let old = e.member.state;
        e.update(self.pool.as_ref(), |m| {
            m.state = state;
            m.incarnation = incarnation;
            m.addr = claim.addr;
            m.meta = claim.meta;
        });
        e.proof = Proof {
            signature: pool_signature(self.pool.as_ref(), signature),
            accusation: accusation.filter(|_| state == State::Dead).map(Box::new),
        };
        e.suspicion = None;
        e.state_change = now;
        let member = Member::clone(&e.member);
        self.recount(Some(old), Some(state));
        self.broadcast_member(&name);
        if state == State::Left {
            debug!(member = %name, incarnation = incarnation.0, "member left");
            self.push_event(Event::Left(member));
        } else {
            debug!(member = %name, incarnation = incarnation.0, "member dead");
            self.push_event(Event::Dead(member));
        }
    }

    pub(super) fn suspect_timed_out(
        &mut self,
        now: Instant,
        name: NodeName,
        incarnation: Incarnation,
    ) {
        let probe_timeout = self.config.probe_timeout;
        let wait = self.awareness.scale(probe_timeout);
        let Some(e) = self.members.get_mut(&name) else {
            return;
        };
        if e.member.state != State::Suspect || e.member.incarnation != incarnation {
            return;
        }
        if let Some(s) = e.suspicion.as_mut() {
            let deadline = s.deadline();
            if now < last_call_at(deadline, probe_timeout) {
                return; // a later timer holds the deadline
            }
            // The last call: ask the suspect itself before declaring it Dead. A refutation
            // spreads by gossip, each member relaying it a bounded number of times, and a
            // member can miss every copy: one in e^12 at the lan preset's 12 relays each,
            // which 50 stalling members' suspicions (each refuted within seconds) at 1,000
            // observers reach within minutes. That member would declare a live node Dead,
            // ten seconds after it refuted. A Ping that names the suspicion is answered by
            // an Ack carrying the refutation (see `on_pinged`); a crashed member gives none.
            let until = match s.last_call() {
                None => {
                    s.set_last_call(now);
                    let until = deadline.max(now + wait);
                    self.ping_suspect(&name, incarnation);
                    self.timers.insert(
                        until,
                        Timer::SuspectToDead {
                            name: name.clone(),
                            incarnation,
                        },
                    );
                    return;
                }
                Some(at) => deadline.max(at + wait),
            };
            if now < until {
                // Early: a confirmation's timer, or the Ack's wait not over (a node that
                // wakes from a stall fires its timers, then reads what waited meanwhile).
                self.timers
                    .insert(until, Timer::SuspectToDead { name, incarnation });
                return;
            }
        }
        if self.awareness.is_out() {
            // A node that cannot hear its peers cannot tell a suspect that refuted from one
            // that did not: it declares nobody Dead while out, and looks again a suspicion
            // timeout later (a healthy node's Dead would reach it by gossip meanwhile).
            let n = self.cluster_size();
            let wait = min_timeout(self.config.suspicion_mult, n, self.config.probe_interval);
            self.timers
                .insert(now + wait, Timer::SuspectToDead { name, incarnation });
            return;
        }
        let Some(u) = self.held_update(&name) else {
            return;
        };
        let accusation = self.accuse(&name, incarnation, true);
        self.on_dead(now, u.claim, u.signature, Some(accusation));
    }

    fn insert_member(&mut self, now: Instant, member: Member, proof: Proof) {
        let name = member.name.clone();
        let state = member.state;
        let member = match &self.pool {
            Some(pool) => pool.share(member),
            None => Arc::new(member),
        };
        self.members.insert(Entry {
            member,
            state_change: now,
            suspicion: None,
            connected: false,
            proof,
        });
        self.recount(None, Some(state));
        self.add_to_probe_list(name);
    }

    fn remove_member(&mut self, name: &NodeName) {
        let Some(e) = self.members.remove(name) else {
            return;
        };
        self.recount(Some(e.member.state), None);
        self.broadcasts.remove(&Subject::Member(name.clone()));
    }

    /// Every change of a member's state, or of who is in the table, comes through here.
    fn recount(&mut self, old: Option<State>, new: Option<State>) {
        let active = |s: Option<State>| s.is_some_and(State::is_active);
        if active(old) != active(new) {
            self.watched_cache = None;
        }
        if let Some(s) = old {
            self.counts[state_index(s)] -= 1;
        }
        if let Some(s) = new {
            self.counts[state_index(s)] += 1;
        }
    }

    /// This node's own claim, signed (again only when it changed since last signed).
    pub(super) fn self_update(&mut self) -> MemberUpdate {
        let claim = Claim {
            name: self.me.name.clone(),
            addr: self.me.addr,
            incarnation: self.me.incarnation,
            left: self.me.state == State::Left,
            meta: self.me.meta.clone(),
        };
        let signature = match &self.signed_self {
            Some((signed, signature)) if *signed == claim => signature.clone(),
            _ => {
                let signature = self.keyring.sign(&claim.signed_bytes());
                self.signed_self = Some((claim.clone(), signature.clone()));
                signature
            }
        };
        MemberUpdate {
            claim,
            signature,
            accusation: None,
        }
    }

    /// A member's entry as a record to relay: its claim as it signed it, and the accusation
    /// held for Suspect and Dead.
    pub(super) fn held_update(&self, name: &NodeName) -> Option<MemberUpdate> {
        let e = self.members.get(name)?;
        let m = &e.member;
        Some(MemberUpdate {
            claim: Claim {
                name: m.name.clone(),
                addr: m.addr,
                incarnation: m.incarnation,
                left: m.state == State::Left,
                meta: m.meta.clone(),
            },
            signature: e.proof.signature.clone(),
            accusation: match m.state {
                State::Suspect | State::Dead => e.proof.accusation.as_deref().cloned(),
                State::Alive | State::Left => None,
            },
        })
    }

    /// Removes a tombstone and everything held for its member, and remembers it for a while
    /// (see [`Forgotten`]).
    fn forget(&mut self, now: Instant, name: &NodeName) {
        self.forgotten
            .insert(name.clone(), now + self.config.dead_retention);
        // Its certificate stays in the keyring (bounded there): a member that comes back
        // is checked at once, without a certificate request first.
        self.remove_member(name);
        self.kv.remove_owner(name);
        self.verification.kv_roots.forget(name);
        self.dedup.forget(name);
    }

    /// Whether data that `origin` writes (key/value entries, user events) is held here: this
    /// node's, or a member's in the table (tombstones included) that was not dropped a short
    /// while ago (see [`Forgotten`]). Anything else would stay for good: only reaping a
    /// member removes what is held for it.
    pub(super) fn holds_data_of(&self, origin: &NodeName, now: Instant) -> bool {
        *origin == self.me.name
            || (self.members.get(origin).is_some() && !self.forgotten.holds(origin, now))
    }

    pub(super) fn reap(&mut self, now: Instant) {
        let retention = self.config.dead_retention;
        let expired: Vec<NodeName> = self
            .members
            .values()
            .filter(|e| {
                matches!(e.member.state, State::Dead | State::Left)
                    && now.duration_since(e.state_change) >= retention
            })
            .map(|e| e.member.name.clone())
            .collect();
        for name in expired {
            self.forget(now, &name);
        }
        self.forgotten.expire(now);
        self.kv
            .collect_tombstones(now, self.config.kv_tombstone_grace);
    }
}

/// When to ask a suspect directly before its suspicion's `deadline`: a probe timeout before
/// it, so the Ack has the time a probe's has, and a crashed member is declared Dead no later.
fn last_call_at(deadline: Instant, probe_timeout: Duration) -> Instant {
    deadline.checked_sub(probe_timeout).unwrap_or(deadline)
}

/// `signature` as an entry keeps it: the pool's shared copy when the tables share one.
fn pool_signature(pool: Option<&MemberPool>, signature: Signature) -> Signature {
    match pool {
        Some(pool) => pool.share_signature(signature),
        None => signature,
    }
}
