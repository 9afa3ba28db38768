//! Full-state sync: joining through seeds, the periodic anti-entropy exchange (push-pull) and
//! the early ones after a join, and key/value writes with the digest rounds that spread them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::Rng;
use tracing::{debug, trace};

use super::super::bounded::{COUNTER_MAX, SELF_CLAIM_MAX};
use super::super::codec::{
    encode_stream, MemberDigest, MemberUpdate, SignedEvent, StreamMessage, MEMBERS_PER_MESSAGE_MAX,
};
use super::super::kv::proof::{self, Rebuilt};
use super::super::kv::{KvEntry, OwnerDelta, OwnerDigest};
use super::super::member::{overrides, Incarnation, NodeName, State};
use super::super::signing::Certificate;
use super::super::timer::Timer;
use super::membership::Source;
use super::verify::RecordKind;
use super::{CommandError, Destination, Event, Swim, Transmit, TransmitKind};

/// Early full-state exchanges after joining.
const JOIN_SYNC_ROUNDS: u32 = 4;

/// The first early exchange comes half a probe interval after joining, each next one 1, 2 and
/// 4 intervals after the last (each wait jittered up to twice): a node that missed every
/// gossip copy of another's join, because few members knew it yet when that news went round,
/// catches up within a second; a first wait of a whole interval would leave it 1-2 s behind.
const JOIN_SYNC_FIRST_DIVISOR: u32 = 2;

/// A key/value round waits for the last one's replies at most this many intervals.
const KV_ROUND_WAIT_INTERVALS: u32 = 5;

/// Which owners a key/value delta covers.
#[derive(Clone, Copy)]
enum Owners {
    /// Every owner we hold (those the digest does not list are sent whole).
    All,
    /// Only the owners the digest lists (a peer's `wants`).
    Listed,
}

impl Swim {
    /// A push-pull request from `from` (the name it claims already checked against its
    /// certificate): merge its state, answer with ours and what it lacks of our key/value data.
    // One argument per part of the message, as `handle_stream_request` takes it apart.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_push_pull(
        &mut self,
        now: Instant,
        from: &NodeName,
        join: bool,
        members: Vec<MemberUpdate>,
        digest: Vec<MemberDigest>,
        kv_digest: Vec<OwnerDigest>,
        events: Vec<SignedEvent>,
        certificates: Vec<Certificate>,
        revocation_ids: &[u64],
    ) -> Vec<u8> {
        debug!(peer = %from, join, members = members.len(), digest = digest.len(), "push-pull request");
        let theirs = held_by_peer(&members, &digest);
        let mut wants = Vec::new();
        if self.me.state != State::Left {
            wants = self.news_in(&digest);
            self.learn_listed_certificates(now, from, &members, certificates);
            self.apply_all(now, from, members, Source::PushPull);
            for e in events {
                self.on_user_event(now, from, e);
            }
            self.synced = true;
            // A member reached this node: whatever its seeds said, it is in that member's
            // cluster now (two nodes that each found only themselves meet this way).
            if self.complete_join() {
                debug!(peer = %from, attempt = self.join.attempt, "joined by a member");
                self.prepare_next_probe();
            }
        }
        self.stats.push_pulls_answered += 1;
        let members = self.news_for(from, &theirs);
        let certificates = self.certificates_for(&members, |name| theirs.contains_key(name));
        self.report_held(from, &kv_digest, 0);
        let kv_delta = self.kv_delta(now, &kv_digest, Owners::All);
        if let Some(version) = own_top(&kv_delta, &self.me.name) {
            self.backlog.reported(from, version);
        }
        let reply = StreamMessage::PushPullReply {
            members,
            wants,
            kv_delta,
            kv_digest: self.kv.digest(),
            events: self.recent_events.iter().cloned().collect(),
            certificates,
            revocations: self.revocations_missing_from(revocation_ids),
            revocation_ids: self.revocation_ids(),
        };
        self.encode_anti_entropy(&reply)
    }

    /// The reply to our push-pull (or join) request: merge it, and push what the responder
    /// lacks of our key/value data. The first reply from a seed completes a join.
    // One argument per part of the message, as `handle_stream_reply` takes it apart.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_push_pull_reply(
        &mut self,
        now: Instant,
        from: &NodeName,
        members: Vec<MemberUpdate>,
        wants: Vec<NodeName>,
        kv_delta: Vec<OwnerDelta>,
        kv_digest: Vec<OwnerDigest>,
        events: Vec<SignedEvent>,
        certificates: Vec<Certificate>,
    ) {
        trace!(peer = %from, members = members.len(), "push-pull reply");
        if self.me.state == State::Left {
            self.on_leave_reply(now, from, &members, &kv_digest);
        } else {
            self.learn_listed_certificates(now, from, &members, certificates);
            self.apply_all(now, from, members, Source::PushPull);
            self.apply_kv_deltas(now, from, kv_delta);
            for e in events {
                self.on_user_event(now, from, e);
            }
            self.synced = true;
            if self.complete_join() {
                debug!(seed = %from, attempt = self.join.attempt, "joined");
                self.schedule_join_sync(now, 0);
                self.prepare_next_probe();
            }
            // Our half: the member records it named and what it lacks of key/value data.
            self.report_held(from, &kv_digest, 0);
            let deltas = self.kv_delta(now, &kv_digest, Owners::All);
            if let Some(version) = own_top(&deltas, &self.me.name) {
                self.backlog.pushed(from, version);
            }
            let members = self.records_of(&wants);
            self.send_kv_push(from, deltas, members);
        }
    }

    /// A full-state exchange with one dead member, so a healed partition merges back.
    pub(super) fn push_pull_dead(&mut self) {
        let picked = self.random_members(1, |e| e.member.state == State::Dead, None);
        if let Some(name) = picked.into_iter().next() {
            trace!(member = %name, "reconnect to dead member");
            let to = self.destination_of(&name);
            self.send_push_pull(to, false);
        }
    }

    pub(super) fn send_push_pull(&mut self, to: Destination, join: bool) {
        self.stats.push_pulls_started += 1;
        let digest = self
            .members
            .values()
            .map(|e| MemberDigest {
                name: e.member.name.clone(),
                incarnation: e.member.incarnation,
                state: e.member.state,
            })
            .collect();
        // Our own, always: a responder that does not hold it yet could not check our record,
        // and could not ask us for it before we are in its table (about 12 bytes a second
        // per node at the lan interval with 32 members).
        let certificates = self.certificates_of(&self.me.name);
        let message = StreamMessage::PushPull {
            join,
            sender: self.me.name.clone(),
            members: vec![self.self_update()],
            digest,
            kv_digest: self.kv.digest(),
            events: self.recent_events.iter().cloned().collect(),
            certificates,
            revocation_ids: self.revocation_ids(),
        };
        let payload = encode_stream(&message);
        self.stats.anti_entropy_bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Request,
            payload,
        });
    }

    pub(super) fn push_pull_random(&mut self) {
        let picked = self.random_members_connected_first(1, |e| e.member.state.is_active(), None);
        if let Some(name) = picked.into_iter().next() {
            let to = self.destination_of(&name);
            self.send_push_pull(to, false);
        }
    }

    /// After joining, a few early full-state exchanges at doubling intervals. Nodes that join
    /// together learn of each other by gossip, but the earliest of them spread news with the
    /// small retransmit limit of a small cluster; these exchanges fill what gossip missed,
    /// long before the periodic push-pull would.
    pub(super) fn schedule_join_sync(&mut self, now: Instant, round: u32) {
        if round >= JOIN_SYNC_ROUNDS {
            return;
        }
        let base = self.config.probe_interval * (1 << round) / JOIN_SYNC_FIRST_DIVISOR;
        let at = now + base + base.mul_f64(self.rng.random::<f64>());
        self.timers.insert(at, Timer::JoinSync { round });
    }

    /// Our records that are news to a peer holding `theirs`: this node's claim first, then
    /// each entry the peer lacks or holds older, and our record of the peer itself in any
    /// case (a leaver learns from it that its Left arrived; a suspected member, that it is).
    fn news_for(
        &mut self,
        peer: &NodeName,
        theirs: &BTreeMap<NodeName, (Incarnation, State)>,
    ) -> Vec<MemberUpdate> {
        let news = |name: &NodeName, held: (Incarnation, State)| {
            name == peer || theirs.get(name).is_none_or(|t| overrides(held, *t))
        };
        let mut out = Vec::new();
        if news(&self.me.name, (self.me.incarnation, self.me.state)) {
            out.push(self.self_update());
        }
        let names: Vec<NodeName> = self
            .members
            .values()
            .filter(|e| news(&e.member.name, (e.member.incarnation, e.member.state)))
            .map(|e| e.member.name.clone())
            .collect();
        out.extend(names.iter().filter_map(|n| self.held_update(n)));
        out
    }

    /// The members whose entries in a peer's `digest` are news here: a member not held that
    /// the peer holds Alive, or a newer incarnation or state than ours (this node's own
    /// included, so that it hears of a suspicion and refutes it).
    fn news_in(&self, digest: &[MemberDigest]) -> Vec<NodeName> {
        digest
            .iter()
            .filter(|d| self.digest_is_news(d))
            .map(|d| d.name.clone())
            .take(MEMBERS_PER_MESSAGE_MAX)
            .collect()
    }

    /// Our records of the members `names` lists (this node's own claim for its name).
    pub(super) fn records_of(&mut self, names: &[NodeName]) -> Vec<MemberUpdate> {
        let mut out = Vec::new();
        for name in names.iter().take(MEMBERS_PER_MESSAGE_MAX) {
            if *name == self.me.name {
                out.push(self.self_update());
            } else if let Some(u) = self.held_update(name) {
                out.push(u);
            }
        }
        out
    }

    /// Learns the certificates a full-state exchange carried: the sender's own, and those of
    /// members it listed (a joiner gets everyone's).
    fn learn_listed_certificates(
        &mut self,
        now: Instant,
        from: &NodeName,
        members: &[MemberUpdate],
        certificates: Vec<Certificate>,
    ) {
        if certificates.is_empty() {
            return;
        }
        let listed: BTreeSet<&NodeName> = members.iter().map(|u| &u.claim.name).collect();
        self.learn_certificates(now, from, certificates, |name| {
            name == from || listed.contains(name)
        });
    }

    /// Sets one of this node's keys; returns the version it took. Refused with
    /// [`CommandError::Backlogged`] while earlier writes are further behind on their way to
    /// the cluster than `kv_backlog_max` (see `backlog.rs`).
    pub fn set(&mut self, now: Instant, key: &str, value: Vec<u8>) -> Result<u64, CommandError> {
        self.admit_write(now)?;
        self.write(now, key, Some(value))
    }

    /// Deletes one of this node's keys (a tombstone); returns the version it took, or `None`
    /// when the key did not exist here.
    ///
    /// The tombstone is written either way: a node restarted with no state may not yet have
    /// heard back the keys it wrote before, and its delete must still win over those copies,
    /// or the deleted value comes back and lives on everywhere.
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<Option<u64>, CommandError> {
        self.admit_write(now)?;
        let existed = self.kv.get(&self.me.name, key).is_some();
        let version = self.write(now, key, None)?;
        Ok(existed.then_some(version))
    }

    /// Pushback: refuses a new write of the user's while ours are behind by more than
    /// `kv_backlog_max`. A node with no live peer has nobody to spread to, so nothing is
    /// behind.
    fn admit_write(&mut self, now: Instant) -> Result<(), CommandError> {
        let max = self.config.kv_backlog_max;
        if self.me.state == State::Left {
            return Ok(()); // `write` says so
        }
        if self.cluster_size() <= 1 {
            self.backlog.clear();
            return Ok(());
        }
        let behind = self.own_behind(now);
        if max.is_zero() || behind <= max {
            return Ok(());
        }
        self.stats.kv_writes_backlogged += 1;
        // Rounds bring what peers lack and fresh word of what they hold.
        self.confirm_spread(now);
        Err(CommandError::Backlogged { behind, max })
    }

    pub(super) fn write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<u64, CommandError> {
        if self.me.state == State::Left {
            return Err(CommandError::Left);
        }
        if let Err(e) = self.kv.check(key, value.as_deref()) {
            self.stats.local_writes_refused += 1;
            return Err(e.into());
        }
        // Signed in a batch with the other writes made before the next send
        // (`seal_own_entries`).
        let entry = KvEntry {
            owner: self.me.name.clone(),
            key: key.to_string(),
            version: self.next_version,
            value,
            sealed: None,
        };
        // Peers raise our counter to SELF_CLAIM_MAX + 1 at most, so only 2^62 writes of
        // our own could reach what peers accept; refused then, rather than sent to be
        // refused everywhere.
        if self.next_version > COUNTER_MAX {
            return Err(CommandError::CounterExhausted("key/value version"));
        }
        let next = self.next_version + 1;
        if let Err(e) = self.kv.apply(now, &entry) {
            self.stats.local_writes_refused += 1;
            return Err(e.into());
        }
        self.next_version = next;
        // Pushback counts from when the write may leave: the wait for the next seal is
        // pacing, not a cluster falling behind.
        self.backlog
            .written(entry.version, self.sealing.leaves_at(now));
        self.sealing.written(&entry.key, now);
        self.push_event(Event::KvChanged {
            owner: entry.owner.clone(),
            key: entry.key.clone(),
        });
        self.kv_changed(now);
        Ok(entry.version)
    }

    /// Entries from anti-entropy or a key/value round, sent by `from`.
    pub(super) fn apply_kv_deltas(
        &mut self,
        now: Instant,
        from: &NodeName,
        mut deltas: Vec<OwnerDelta>,
    ) {
        // Data is held only for members (this node, or a member in the table, tombstones
        // included): it is dropped with them when they are reaped. Anything else would stay
        // for good, and a member could fill the store with owners no one will ever remove.
        // An owner not known yet (gossip lags) is taken at a later round, once it is.
        let mut not_members = 0;
        deltas.retain(|d| {
            let allowed = d
                .entries
                .first()
                .is_none_or(|e| self.holds_data_of(&e.owner, now));
            if !allowed {
                not_members += d.entries.len() as u64;
            }
            allowed
        });
        self.stats.kv_owner_not_member += not_members;
        self.keep_signed_entries(now, from, &mut deltas);
        let refute = self.take_own_entries(&mut deltas);
        let (changed, refused) = self.kv.apply_delta(now, deltas);
        self.stats.kv_refused += refused as u64;
        self.stats.kv_updates_applied += changed.len() as u64;
        if changed.is_empty() {
            self.refute_own_entries(now, refute);
            return;
        }
        for e in changed {
            self.push_event(Event::KvChanged {
                owner: e.owner,
                key: e.key,
            });
        }
        self.kv_changed(now);
        self.refute_own_entries(now, refute);
    }

    /// Keeps of each delta only the entries proven their owner's (see [`proof`]), checking
    /// a batch's signature only when one of its entries would change something here; a
    /// delta whose proof does not hold together is dropped whole, and a forged batch's
    /// entries are dropped, counted. Only the owner itself may reset its keys (drop those
    /// it does not list): a reset relayed by anyone else is applied as a plain delta, so no
    /// member can erase another's keys.
    ///
    /// After the first batch that does not verify in a message (a forgery, or one signed
    /// with a certificate this node is asking for), the rest of it is refused unchecked: an
    /// honest relayer never sends a forgery, each forged batch would cost a signature check
    /// (a message may hold 65,536 batches of one entry), and what an honest one sent comes
    /// again with the next exchange.
    fn keep_signed_entries(&mut self, now: Instant, from: &NodeName, deltas: &mut [OwnerDelta]) {
        let failed_before = self.verification.failed_checks;
        for d in deltas.iter_mut() {
            if self.verification.failed_checks > failed_before {
                self.stats.kv_refused += d.entries.len() as u64;
                d.entries.clear();
                d.reset = false;
                continue;
            }
            let Some(owner) = d.entries.first().map(|e| e.owner.clone()) else {
                d.reset = false;
                continue;
            };
            if owner != *from {
                d.reset = false;
            }
            let entries = std::mem::take(&mut d.entries);
            let proof = std::mem::take(&mut d.proof);
            if entries.iter().any(|e| e.owner != owner) {
                self.stats.kv_refused += entries.len() as u64;
                continue;
            }
            if !d.reset && !entries.iter().any(|e| self.kv.would_change(e)) {
                // All repeats (most of anti-entropy): nothing to apply, nothing to hash.
                continue;
            }
            let batches = match proof::rebuild(&entries, &proof) {
                Ok(batches) => batches,
                Err(_) => {
                    self.count_forged(now, from, RecordKind::Kv, &owner);
                    continue;
                }
            };
            let mut checked: Vec<Option<bool>> = vec![None; batches.len()];
            let mut kept = Vec::with_capacity(entries.len());
            for (mut e, &(b, leaf)) in entries.into_iter().zip(&proof.places) {
                if self.verification.failed_checks > failed_before {
                    break;
                }
                if !self.kv.would_change(&e) {
                    // Nothing to apply; a reset still needs it listed, to keep the key.
                    if d.reset {
                        kept.push(e);
                    }
                    continue;
                }
                let b = usize::from(b);
                let valid = match checked[b] {
                    Some(valid) => valid,
                    None => {
                        let valid = self.batch_verified(now, from, &owner, &batches[b]);
                        checked[b] = Some(valid);
                        valid
                    }
                };
                if valid {
                    e.sealed = Some(proof::Sealed {
                        batch: batches[b].batch.clone(),
                        leaf,
                    });
                    kept.push(e);
                }
            }
            if self.verification.failed_checks > failed_before {
                // A reset drops what it does not list: never on a list cut short.
                d.reset = false;
            }
            d.entries = kept;
        }
    }

    /// Whether `batch` of `owner` is signed by the owner. Each root is checked once while
    /// it is remembered.
    fn batch_verified(
        &mut self,
        now: Instant,
        from: &NodeName,
        owner: &NodeName,
        batch: &Rebuilt,
    ) -> bool {
        if self.verification.kv_roots.contains(owner, &batch.root) {
            return true;
        }
        let bytes = proof::root_bytes(owner, &batch.root);
        let signature = &batch.batch.signature;
        if !self.verified(now, from, RecordKind::Kv, owner, &bytes, signature) {
            return false;
        }
        self.verification.kv_roots.insert(owner.clone(), batch.root);
        self.sealing.batch_seen(owner, now);
        true
    }

    /// Sorts out what peers say about our own keys, before the rest is applied. Only we
    /// write them, so a key we hold is ours as held: a peer's copy at a higher version is
    /// refuted (returned, to be written again above it) and never applied. A key we do not
    /// hold is taken: we restarted and lost it, and later writes must go above it. A peer
    /// never resets our own keys. A set, not a list: one message may name our keys 65,536
    /// times over thousands of keys, and each must cost a lookup, not a scan.
    fn take_own_entries(&mut self, deltas: &mut [OwnerDelta]) -> BTreeSet<String> {
        let mut refute = BTreeSet::new();
        for d in deltas.iter_mut() {
            let owner = d.entries.first().map(|e| e.owner.clone());
            if owner.as_ref() != Some(&self.me.name) {
                continue;
            }
            d.reset = false;
            let mut newest = None;
            let before = d.entries.len();
            // Beyond SELF_CLAIM_MAX our counter could not stay ahead of it within what
            // peers accept.
            d.entries.retain(|e| e.version <= SELF_CLAIM_MAX);
            self.stats.self_claims_refused += (before - d.entries.len()) as u64;
            d.entries
                .retain(|e| match self.kv.version(&self.me.name, &e.key) {
                    Some(held) => {
                        if e.version > held && !refute.contains(&e.key) {
                            refute.insert(e.key.clone());
                        }
                        newest = newest.max(Some(e.version));
                        false
                    }
                    None => {
                        newest = newest.max(Some(e.version));
                        true
                    }
                });
            if let Some(max) = newest {
                // At most SELF_CLAIM_MAX + 1: 2^62 versions left to write with.
                self.next_version = self.next_version.max(max.saturating_add(1));
            }
        }
        refute
    }

    /// Writes our own keys again above a peer's higher copies of them (see
    /// [`take_own_entries`](Self::take_own_entries)).
    fn refute_own_entries(&mut self, now: Instant, keys: BTreeSet<String>) {
        for key in keys {
            let value = self.kv.get(&self.me.name, &key).map(<[u8]>::to_vec);
            self.stats.kv_refuted += 1;
            // Fails only once this node has left or its counter is exhausted: then there
            // is nothing more to write.
            let _ = self.write(now, &key, value);
        }
    }

    /// How far our writes are behind, by the reports of peers still members.
    fn own_behind(&mut self, now: Instant) -> Duration {
        let members = &self.members;
        self.backlog.behind(now, |p| {
            members.get(p).is_some_and(|e| e.member.state.is_active())
        })
    }

    /// Some write of ours is not known to have spread: run a round now if none is running,
    /// so that peers get what they lack and say what they hold. News can reach peers by
    /// other ways than our rounds (full-state exchanges after a partition heals), and peers
    /// only report in exchanges.
    fn confirm_spread(&mut self, now: Instant) {
        if self.kv_rounds_left == 0 {
            self.kv_rounds_left = 1;
            self.timers.insert(now, Timer::KvSync);
        }
    }

    /// Key/value data changed here: keep running key/value rounds for a while, starting at
    /// once when none were running (so news travels a hop per round trip until it meets
    /// the round timer).
    fn kv_changed(&mut self, now: Instant) {
        // A confirming round (see `kv_round`) waits half a bound: news does not wait for it.
        let confirming = self.kv_confirm_timer.take();
        if let Some(key) = confirming {
            self.timers.cancel(key);
        }
        let idle = self.kv_rounds_left == 0 || confirming.is_some();
        self.kv_rounds_left = kv_rounds(self.cluster_size());
        if idle {
            self.timers.insert(now, Timer::KvSync);
        }
    }

    /// One key/value round: our digest to `gossip_nodes` random live members, who answer with
    /// what we lack and the owners where we are ahead, which we then push.
    ///
    /// The members are asked one after another, each with the digest as the last reply left
    /// it: asked at once, each would send the same entries, and an entry came ~17 times per
    /// delivery at 128 nodes writing 5,000 entries a second, which saturated 2 cores.
    pub(super) fn kv_round(&mut self, now: Instant) {
        self.kv_confirm_timer = None;
        let interval = self.config.kv_sync_interval;
        let waited = self
            .kv_round_at
            .is_some_and(|at| now < at + interval * KV_ROUND_WAIT_INTERVALS);
        if self.kv_replies_pending > 0 && waited {
            // The last round is still being answered (an overloaded peer, or ourselves):
            // a new one now would fetch the same entries again. Try again next interval.
            self.timers.insert(now + interval, Timer::KvSync);
            return;
        }
        self.kv_rounds_left = self.kv_rounds_left.saturating_sub(1);
        if self.kv_rounds_left > 0 {
            self.timers.insert(now + interval, Timer::KvSync);
        } else if !self.config.kv_backlog_max.is_zero() && !self.own_behind(now).is_zero() {
            // Writes of ours not known to have spread (a partition, say): one more round
            // each half bound, so that what they lack reaches them and their word comes
            // back before a writer is refused.
            self.kv_rounds_left = 1;
            let every = (self.config.kv_backlog_max / 2).max(interval);
            self.kv_confirm_timer = Some(self.timers.insert(now + every, Timer::KvSync));
        }
        if self.me.state == State::Left {
            return;
        }
        let mut targets = self.random_members_connected_first(
            self.config.gossip_nodes,
            |e| e.member.state == State::Alive,
            None,
        );
        if targets.is_empty() {
            return;
        }
        self.kv_round_at = Some(now);
        targets.reverse();
        self.kv_round_next = targets;
        self.kv_ask_next(now);
    }

    /// Sends our digest to the next member of the round at hand, if any is left.
    fn kv_ask_next(&mut self, now: Instant) {
        let Some(name) = self.kv_round_next.pop() else {
            self.kv_replies_pending = 0;
            return;
        };
        let payload = encode_stream(&StreamMessage::KvSync {
            digest: self.kv.digest(),
        });
        self.kv_asked_version = self.next_version.saturating_sub(1);
        self.kv_asked_at = Some(now);
        self.kv_replies_pending = 1;
        self.stats.kv_syncs_started += 1;
        self.stats.anti_entropy_bytes_out += payload.len() as u64;
        let to = self.destination_of(&name);
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Request,
            payload,
        });
    }

    /// What the holder of `theirs` lacks from us, within `kv_sync_bytes_max`, counted.
    fn kv_delta(
        &mut self,
        now: Instant,
        theirs: &[OwnerDigest],
        owners: Owners,
    ) -> Vec<OwnerDelta> {
        self.seal_own_entries(now, false);
        let budget = self.config.kv_sync_bytes_max;
        let deltas = match owners {
            Owners::All => self.kv.delta_for(theirs, budget),
            Owners::Listed => self.kv.delta_for_listed(theirs, budget),
        };
        self.stats.kv_entries_synced += deltas.iter().map(|d| d.entries.len() as u64).sum::<u64>();
        deltas
    }

    /// A key/value round request: what the sender lacks by its digest, and the owners where
    /// it is ahead of us.
    ///
    /// Only the owners the digest names are answered: a digest that names none (a few
    /// bytes) would otherwise fetch `kv_sync_bytes_max` of everything. Owners the sender
    /// lacks reach it through the `wants` of the rounds others send it, and through the
    /// periodic full-state exchange.
    pub(super) fn on_kv_sync(
        &mut self,
        now: Instant,
        from: &NodeName,
        digest: &[OwnerDigest],
    ) -> Vec<u8> {
        self.report_held(from, digest, 0);
        let mut wants = self.kv.wants(digest);
        // Their data would be refused (see `apply_kv_deltas`): not worth asking for.
        wants.retain(|w| self.holds_data_of(&w.owner, now));
        let reply = StreamMessage::KvSyncReply {
            delta: self.kv_delta(now, digest, Owners::Listed),
            wants,
        };
        self.encode_anti_entropy(&reply)
    }

    /// The reply to one of our key/value round requests: take what we lacked, push what the
    /// peer wants.
    pub(super) fn on_kv_sync_reply(
        &mut self,
        now: Instant,
        from: &NodeName,
        delta: Vec<OwnerDelta>,
        wants: Vec<OwnerDigest>,
    ) {
        self.kv_replies_pending = self.kv_replies_pending.saturating_sub(1);
        // A peer behind us lists us in `wants` with what it holds (we push the rest now);
        // one that does not held what we had when we asked.
        self.report_held(from, &wants, self.kv_asked_version);
        if self.me.state != State::Left {
            self.apply_kv_deltas(now, from, delta);
            // `wants` is what the peer lacked when it read our digest. A reply that took
            // longer than a round's interval to come back says the peer (or this node) is
            // too busy to answer in time, and meanwhile others' pushes and its own rounds
            // have brought it most of what it listed: at 128 nodes on two saturated cores,
            // pushes made by such replies were two thirds held already when they landed,
            // and 2.1-2.4 entries crossed per one needed. Then nothing is pushed; the peer
            // gets the rest by its own next round, which asks with a fresh digest (1.6-1.7
            // entries per one needed, and no later for it: BENCHMARKS.md).
            let stale = self
                .kv_asked_at
                .is_none_or(|at| now.saturating_duration_since(at) > self.config.kv_sync_interval);
            let wants = if stale { Vec::new() } else { wants };
            let deltas = self.kv_delta(now, &wants, Owners::Listed);
            // The peer holds what of ours the push carries once it acknowledges it.
            if let Some(version) = own_top(&deltas, &self.me.name) {
                self.backlog.pushed(from, version);
            }
            self.send_kv_push(from, deltas, Vec::new());
            self.kv_ask_next(now);
        }
    }

    /// What `digest`, from `peer`, says it holds of ours; `absent` when it does not name us.
    fn report_held(&mut self, peer: &NodeName, digest: &[OwnerDigest], absent: u64) {
        let held = digest.iter().find(|d| d.owner == self.me.name);
        self.backlog
            .reported(peer, held.map_or(absent, |d| d.max_version));
    }

    /// Encodes an anti-entropy or key/value reply, counting its bytes.
    fn encode_anti_entropy(&mut self, reply: &StreamMessage) -> Vec<u8> {
        let bytes = encode_stream(reply);
        self.stats.anti_entropy_bytes_out += bytes.len() as u64;
        bytes
    }

    /// Pushes `deltas` to `to`, if there is anything in them.
    pub(super) fn send_kv_push(
        &mut self,
        to: &NodeName,
        deltas: Vec<OwnerDelta>,
        members: Vec<MemberUpdate>,
    ) {
        if deltas.is_empty() && members.is_empty() {
            return;
        }
        let payload = self.encode_anti_entropy(&StreamMessage::KvPush { deltas, members });
        self.transmits.push_back(Transmit {
            to: self.destination_of(to),
            kind: TransmitKind::Request,
            payload,
        });
    }
}

/// The highest version of `me`'s own entries in `deltas`: read oldest first from a version
/// index, so whoever applies them holds everything of ours up to it.
fn own_top(deltas: &[OwnerDelta], me: &NodeName) -> Option<u64> {
    deltas
        .iter()
        .filter(|d| d.entries.first().is_some_and(|e| e.owner == *me))
        .flat_map(|d| d.entries.iter().map(|e| e.version))
        .max()
}

/// Key/value rounds a node runs after its data last changed: `ceil(log10(n+1)) + 2`
/// (4 at 32 members). Each round is a digest exchange with `gossip_nodes` members, so news
/// that reached a node leaves it on about a dozen exchanges before the node falls quiet;
/// the periodic full-state exchange repairs whatever that misses.
pub fn kv_rounds(n: usize) -> u32 {
    ((n as f64 + 1.0).log10().ceil() as u32).max(1) + 2
}

/// memberlist's `pushPullScale`: beyond 32 members, multiply by `ceil(log2 n - log2 32) + 1`.
pub fn push_pull_scale(interval: Duration, n: usize) -> Duration {
    const THRESHOLD: usize = 32;
    if n <= THRESHOLD {
        return interval;
    }
    let mult = ((n as f64).log2() - (THRESHOLD as f64).log2()).ceil() + 1.0;
    interval.mul_f64(mult)
}

/// What a peer holds, by the records it sent in full and its digest of the rest.
fn held_by_peer(
    members: &[MemberUpdate],
    digest: &[MemberDigest],
) -> BTreeMap<NodeName, (Incarnation, State)> {
    digest
        .iter()
        .map(|d| (d.name.clone(), (d.incarnation, d.state)))
        .chain(
            members
                .iter()
                .map(|u| (u.claim.name.clone(), (u.claim.incarnation, u.state()))),
        )
        .collect()
}
