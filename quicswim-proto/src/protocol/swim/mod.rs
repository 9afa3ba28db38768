//! The SWIM state machine: probes, suspicion, gossip, anti-entropy and join, with no I/O.
//!
//! Probe of one member per protocol period (round-robin over a list reshuffled each pass):
//!
//! ```text
//!   A                      B (target)            C (indirect_checks of them)
//!   |--- Ping(seq) -------->|                     |
//!   |<-- Ack(seq) ----------|                     |        direct: done
//!   |        ... probe_timeout, no Ack ...        |
//!   |=== Ping(seq) ========>|  (on a stream)      |  fallback: streams are retransmitted
//!   |<== Ack(seq) ==========|                     |
//!   |--- PingReq(seq, B) ------------------------>|
//!   |                       |<------ Ping(seq') ---|
//!   |                       |------- Ack(seq') -->|
//!   |<-- Ack(seq) (relayed) or Nack(seq) ---------|
//!   |  end of period, no Ack: B is Suspect (accuser A), gossiped;
//!   |  B refutes with incarnation+1, or after the Lifeguard timeout it is Dead.
//! ```
//!
//! Join and anti-entropy are one request/reply on a stream:
//!
//! ```text
//!   joiner --- PushPull{join, sender, members} ---> seed    seed merges, replies
//!   joiner <-- PushPullReply{members} ------------- seed    joiner merges, refutes if needed
//! ```
//!
//! [`Swim`] is one state machine with an `impl` block per concept, each in its own file:
//!
//! - this file: the state, the constructor, the getters, and the inputs
//!   (`handle_datagram`, `handle_stream_request`, `handle_stream_reply`, `handle_timeout`)
//!   dispatched to the rest;
//! - `probe`: probes, Acks, PingReqs and Nacks, and the order members are probed in;
//! - `refusals`: messages refused because their sender may not send them, counted and
//!   logged at most once per peer and minute;
//! - `membership`: Alive, Suspect, Dead and Left, refutation, incarnations, tombstones;
//! - `leave`: leaving gracefully, and knowing that one member heard of it;
//! - `gossip`: gossip rounds and piggybacking on the broadcast queue;
//! - `sync`: join, full-state anti-entropy (push-pull) and key/value rounds;
//! - `records`: member records gossiped by digest, and asking for them;
//! - `user_events`: user events;
//! - `sampling`: random member picks, connected members first;
//! - `output`: what the core hands out (transmits, events, errors, counters) and `poll_*`.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::{SmallRng, StdRng};
use rand::{Rng, SeedableRng};
use tracing::{trace, warn};

use super::awareness::Awareness;
use super::broadcast::BroadcastQueue;
use super::codec::{
    decode_datagram, decode_stream, encode_stream, Accusation, Claim, Message, SignedEvent,
    StreamMessage, Update,
};
use super::config::{Config, ConfigError, ValidConfig};
use super::cycle::Cycle;
use super::events::Deduplicator;
use super::kv::KvStore;
use super::member::{
    Incarnation, Member, MemberPool, NameTable, Named, NodeName, State, META_LEN_MAX,
};
use super::signing::{Certificate, Keyring, Signature};
use super::suspicion::Suspicion;
use super::timer::{Timer, TimerKey, Timers};

mod backlog;
mod bounds;
mod gossip;
mod join;
mod leave;
mod membership;
mod output;
mod probe;
mod records;
mod refusals;
mod revoke;
mod sampling;
mod sealing;
mod sync;
mod user_events;
mod verify;

pub use leave::LeaveStatus;
pub use output::{
    CommandError, Destination, Event, ForgedCounts, ForgedKind, PeerError, RttHistogram, Stats,
    Transmit, TransmitKind, RTT_BOUNDS_MICROS,
};
pub use probe::probe_pass;
pub use sync::{kv_rounds, push_pull_scale};

use backlog::Backlog;
use join::JoinProgress;
use leave::Leaving;
use membership::{Forgotten, Source};
use probe::{Ended, Probe, Relay};
use sealing::Sealing;

/// One member in this node's table, with what the core keeps beside it.
#[derive(Debug)]
struct Entry {
    /// Shared with other nodes' tables when the runtime gave a [`MemberPool`].
    member: Arc<Member>,
    state_change: Instant,
    /// Boxed: only a few members are suspect at a time, and every entry pays for the field.
    suspicion: Option<Box<Suspicion>>,
    /// A connection to it is up, as far as this node knows: it was heard from, or the
    /// runtime reported one, and no close was reported since. Sending to a member without
    /// one costs a handshake first.
    connected: bool,
    /// The signatures behind `member`, checked when they were applied, so the record can be
    /// relayed as the member and its accuser signed it.
    proof: Proof,
}

/// The signatures behind one member's entry.
#[derive(Debug, Clone)]
struct Proof {
    /// The member's over its claim as held: address, incarnation, metadata, and Left or not.
    signature: Signature,
    /// For Suspect and Dead: the accusation held (the latest one applied). Boxed: few
    /// members are accused at a time, and every entry pays for the field (48 bytes inline,
    /// 48 MB over the 1,000 tables of a 1,000-node simulation).
    accusation: Option<Box<Accusation>>,
}

impl Entry {
    /// Changes the member, through `pool` when there is one.
    fn update(&mut self, pool: Option<&MemberPool>, change: impl FnOnce(&mut Member)) {
        match pool {
            Some(pool) => {
                let mut member = Member::clone(&self.member);
                change(&mut member);
                self.member = pool.share(member);
            }
            None => change(Arc::make_mut(&mut self.member)),
        }
    }
}

impl Named for Entry {
    fn name(&self) -> &NodeName {
        &self.member.name
    }
}

/// A node that held itself out comes back after its health score has been zero for this
/// many probe intervals (doubling while it flaps; see `awareness.rs`).
const SELF_CHECK_HOLD_PERIODS: u32 = 10;

/// How often tombstones are looked at.
const REAP_INTERVAL: Duration = Duration::from_secs(10);

/// The sans-IO SWIM + Lifeguard core for one node.
#[derive(Debug)]
pub struct Swim {
    config: Config,
    /// The datagram size to fill up to: the configured one until the runtime says what its
    /// connections carry ([`Swim::set_max_datagram_size`]); the settings stay as given.
    datagram_size: usize,
    me: Member,
    /// Every known member; its positions `0..len` serve O(1) random picks.
    members: NameTable<Entry>,
    /// Where members are shared with other nodes' tables (a simulation), if anywhere.
    pool: Option<MemberPool>,
    /// Members by state, self excluded: [alive, suspect, dead, left].
    counts: [usize; 4],
    /// This pass's probe order. A pointer to the member (its name is what counts) rather than
    /// the name: half the bytes, in a list as long as the table.
    probe_list: Vec<Arc<Member>>,
    probe_index: usize,
    probe: Option<Probe>,
    /// Whether the last probe went to the watched member (see
    /// [`next_probe_target`](Self::next_probe_target)).
    watch_turn: bool,
    /// A member another node suspects, to probe next instead of the turn's member (see
    /// [`on_suspect`](Self::on_suspect)).
    probe_soon: Option<NodeName>,
    /// The member a gossip round's open pick last sent to without a connection, and when,
    /// until the connection is up (see [`gossip`](Self::gossip)).
    gossip_dial: Option<(NodeName, Instant)>,
    /// No gossip pick dials before this (see [`dial_done`](Self::dial_done)).
    gossip_dial_after: Instant,
    /// Where gossip rounds pick their targets: a walk over the member table that, while the
    /// table keeps its size, reaches every member once before any twice (see
    /// [`gossip`](Self::gossip)).
    gossip_cycle: Cycle,
    /// When the last gossip round went out.
    last_gossip: Option<Instant>,
    /// When the next periodic gossip round is due, on a grid of gossip intervals. Not one of
    /// `timers`, because it is a deadline only while the piggyback queue holds news
    /// ([`gossip_due`](Self::gossip_due)): an idle node does not wake five times a second to
    /// send nothing.
    gossip_tick: Instant,
    /// [`watched`](Self::watched) as last found; `None` once a member became or stopped
    /// being active (finding it scans the table and hashes every name: at 1,000 members that
    /// would be most of a probe period's core time).
    watched_cache: Option<Option<NodeName>>,
    /// Where probe and relay sequence numbers come from: a cryptographic generator of its
    /// own, so that the ones a member sees tell it nothing of the others (see
    /// [`next_seq`](Self::next_seq)), and the draws of `rng` stay as they were.
    seq_rng: StdRng,
    relays: BTreeMap<u64, Relay>,
    /// Probes and relays that ended lately, for their late answers.
    ended: Ended,
    timers: Timers,
    broadcasts: BroadcastQueue,
    transmits: VecDeque<Transmit>,
    /// A revocation list was taken since the runtime last looked ([`Swim::poll_revoked`]).
    revoked: bool,
    events: VecDeque<Event>,
    /// Bytes of `events`, bounded by `EVENTS_BYTES_MAX`.
    events_bytes: usize,
    awareness: Awareness,
    /// When this node's own lag last raised its health score (see `note_own_lag`).
    lag_noted_at: Option<Instant>,
    rng: SmallRng,
    seeds: Vec<SocketAddr>,
    joined: bool,
    /// A full-state exchange with another member has completed: a reply to one of our
    /// push-pulls (a join included) merged, or a peer's push-pull request answered.
    synced: bool,
    /// How this node gets its seeds' addresses, and which attempt it is on.
    join: JoinProgress,
    stats: Stats,
    kv: KvStore,
    /// The version this node's next write takes.
    next_version: u64,
    /// This node's writes waiting to be signed as one batch, and how often it signs.
    sealing: Sealing,
    /// Key/value rounds still to run; a [`Timer::KvSync`] is pending while above zero.
    kv_rounds_left: u32,
    /// When the last key/value round went out, and how many of its replies are still due.
    kv_round_at: Option<Instant>,
    kv_replies_pending: u32,
    /// The members the key/value round at hand has still to ask, one after another.
    kv_round_next: Vec<NodeName>,
    /// Our version when we last sent our digest in a round: what a peer that does not list
    /// us in its reply's `wants` holds.
    kv_asked_version: u64,
    /// When we last sent our digest in a round: a reply that comes much later carries
    /// `wants` too old to push by (see `on_kv_sync_reply`).
    kv_asked_at: Option<Instant>,
    /// The slower round due while a write of ours is unconfirmed, once the rounds a change
    /// starts are over (see `kv_round`): cancelled when news comes.
    kv_confirm_timer: Option<TimerKey>,
    /// How far our own writes are behind on their way to the cluster.
    backlog: Backlog,
    dedup: Deduplicator,
    next_event_seq: u64,
    recent_events: VecDeque<SignedEvent>,
    /// Set once this node leaves (see `leave`).
    leaving: Option<Leaving>,
    /// Members dropped here whose key/value data is refused for a while.
    forgotten: Forgotten,
    /// Signs this node's records and checks everyone else's.
    keyring: Arc<dyn Keyring>,
    /// This node's claim as last signed, and the signature: re-signed only when it changes.
    signed_self: Option<(Claim, Signature)>,
    /// Certificates wanted, and forgers recently logged.
    verification: verify::Verification,
    /// Member records asked for after their digests were gossiped.
    fetches: records::Fetches,
    /// Claims of one incoming list already checked together, by member: taken by
    /// `claim_verified` while `Swim::apply_all` applies the list, cleared after.
    checked_together: BTreeMap<NodeName, (Vec<u8>, Signature)>,
}

fn state_index(s: State) -> usize {
    match s {
        State::Alive => 0,
        State::Suspect => 1,
        State::Dead => 2,
        State::Left => 3,
    }
}

impl Swim {
    /// A node named `name` listening on `addr`, alone until [`join`](Self::join).
    /// `seed` drives every random choice; `now` starts the clocks; `keyring` signs this
    /// node's records with its certificate key and checks everyone else's.
    pub fn new(
        name: NodeName,
        addr: SocketAddr,
        meta: Vec<u8>,
        config: ValidConfig,
        seed: u64,
        now: Instant,
        keyring: Arc<dyn Keyring>,
    ) -> Result<Self, ConfigError> {
        let config = config.into_inner();
        if meta.len() > META_LEN_MAX {
            return Err(ConfigError {
                field: "meta",
                reason: format!("{} bytes; the limit is {META_LEN_MAX}", meta.len()),
            });
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let seq_rng = StdRng::seed_from_u64(seed);
        let sealing = Sealing::new(config.kv_sync_interval);
        let mut timers = Timers::default();
        // Random phases, so that nodes started together do not probe in lockstep.
        let jitter = |rng: &mut SmallRng, d: Duration| d.mul_f64(rng.random::<f64>());
        timers.insert(
            now + jitter(&mut rng, config.probe_interval),
            Timer::ProbeNextMember,
        );
        let gossip_tick = now + jitter(&mut rng, config.gossip_interval);
        if !config.push_pull_interval.is_zero() {
            let at =
                now + config.push_pull_interval / 2 + jitter(&mut rng, config.push_pull_interval);
            timers.insert(at, Timer::PushPull);
        }
        if !config.reconnect_interval.is_zero() {
            let at = now + config.reconnect_interval + jitter(&mut rng, config.reconnect_interval);
            timers.insert(at, Timer::ReconnectDead);
        }
        timers.insert(now + REAP_INTERVAL, Timer::ReapTombstones);
        let broadcasts = BroadcastQueue::new(config.broadcast_queue_max);
        let config_kv = config.kv.clone();
        let awareness = Awareness::new(
            config.awareness_max_multiplier,
            config.probe_interval * SELF_CHECK_HOLD_PERIODS,
        );
        Ok(Self {
            me: Member {
                name,
                addr,
                incarnation: Incarnation(0),
                state: State::Alive,
                meta,
            },
            datagram_size: config.max_datagram_size,
            config,
            members: NameTable::new(),
            pool: None,
            counts: [0; 4],
            probe_list: Vec::new(),
            probe_index: 0,
            probe: None,
            seq_rng,
            relays: BTreeMap::new(),
            ended: Ended::default(),
            timers,
            broadcasts,
            transmits: VecDeque::new(),
            revoked: false,
            events: VecDeque::new(),
            events_bytes: 0,
            awareness,
            lag_noted_at: None,
            rng,
            seeds: Vec::new(),
            joined: false,
            synced: false,
            join: JoinProgress::default(),
            stats: Stats::default(),
            kv: KvStore::new(config_kv),
            next_version: 1,
            sealing,
            kv_rounds_left: 0,
            kv_round_at: None,
            kv_replies_pending: 0,
            kv_round_next: Vec::new(),
            kv_asked_version: 0,
            kv_asked_at: None,
            kv_confirm_timer: None,
            backlog: Backlog::default(),
            gossip_dial: None,
            gossip_dial_after: now,
            gossip_cycle: Cycle::default(),
            watch_turn: false,
            probe_soon: None,
            last_gossip: None,
            gossip_tick,
            watched_cache: None,
            dedup: Deduplicator::default(),
            next_event_seq: 1,
            recent_events: VecDeque::new(),
            leaving: None,
            forgotten: Forgotten::default(),
            keyring,
            signed_self: None,
            verification: verify::Verification::default(),
            fetches: records::Fetches::default(),
            checked_together: BTreeMap::new(),
        })
    }

    // ---------------------------------------------------------------- getters

    /// This node's name.
    pub fn name(&self) -> &NodeName {
        &self.me.name
    }

    /// This node as it advertises itself.
    pub fn local_member(&self) -> &Member {
        &self.me
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every member known, this node first, tombstones included (others in no set order).
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        std::iter::once(&self.me).chain(self.members.values().map(|e| &*e.member))
    }

    /// One member by name (this node included).
    pub fn member(&self, name: &NodeName) -> Option<&Member> {
        if *name == self.me.name {
            return Some(&self.me);
        }
        self.members.get(name).map(|e| &*e.member)
    }

    /// Members held Alive, this node included while it has not left.
    pub fn alive_count(&self) -> usize {
        self.counts[0] + usize::from(self.me.state == State::Alive)
    }

    /// Members held in `state`, this node excluded.
    pub fn count(&self, state: State) -> usize {
        self.counts[state_index(state)]
    }

    /// The cluster size estimate used by the formulas: Alive and Suspect members plus self.
    pub fn cluster_size(&self) -> usize {
        self.counts[0] + self.counts[1] + 1
    }

    /// Lifeguard local health score (0 is healthy).
    pub fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    /// Whether this node is in a cluster: a seed answered, a member's push-pull reached it,
    /// or it needed no seed (none given, or a first node).
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Whether a full-state exchange with another member has completed: this node holds a
    /// peer's whole member table and key/value digest, not only what gossip brought. True
    /// after a join through a seed; for a node that joined no one, once someone joined it (or
    /// its first periodic exchange). Never false again.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Updates waiting to be piggybacked.
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// A live key/value entry of `owner`.
    pub fn kv_get(&self, owner: &NodeName, key: &str) -> Option<&[u8]> {
        self.kv.get(owner, key)
    }

    /// This node's keys whose last write is not signed yet, so has not left it: a crash now
    /// would lose that write (a simulation's crash uses it to know what may die).
    pub fn kv_unsealed(&self) -> Vec<String> {
        self.sealing.pending().map(str::to_string).collect()
    }

    /// Every live key/value entry: (owner, key, value, version), sorted by owner then key.
    pub fn kv_entries(&self) -> Vec<(&NodeName, &str, &[u8], u64)> {
        self.kv.iter()
    }

    /// At most `limit` live entries after `after` (owner, key), in the order of
    /// [`kv_entries`](Self::kv_entries): a page of it, without listing the rest.
    pub fn kv_page(
        &self,
        after: Option<(&NodeName, &str)>,
        limit: usize,
    ) -> Vec<(&NodeName, &str, &[u8], u64)> {
        self.kv.page(after, limit)
    }

    /// Live keys and their bytes, over every owner.
    pub fn kv_totals(&self) -> (usize, usize) {
        self.kv.totals()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.broadcasts_dropped = self.broadcasts.dropped();
        s
    }

    // ---------------------------------------------------------------- settings

    /// Raises the starting point of this node's key/value versions and event sequence
    /// numbers. The runtime passes wall-clock microseconds at start, so that a node restarted
    /// with no state still writes versions above its old ones.
    pub fn set_version_floor(&mut self, floor: u64) {
        self.next_version = self.next_version.max(floor);
        self.next_event_seq = self.next_event_seq.max(floor);
    }

    /// Raises this node's incarnation to at least `floor`. The runtime passes wall-clock
    /// seconds at start: a node restarted with a new key cannot take its old incarnation from
    /// its old claims (they do not verify with its new certificate, and it never raises its
    /// incarnation on a claim it cannot verify), so it starts above them instead.
    pub fn set_incarnation_floor(&mut self, floor: u64) {
        let floor = Incarnation(floor.min(super::bounded::SELF_CLAIM_MAX));
        self.me.incarnation = self.me.incarnation.max(floor);
    }

    /// Keeps this node's member table in `pool`, shared with the other nodes that use it (a
    /// simulation of many nodes in one process). Members already held move into it.
    pub fn share_members(&mut self, pool: MemberPool) {
        let names: Vec<NodeName> = self.members.values().map(|e| e.name().clone()).collect();
        for name in names {
            if let Some(e) = self.members.get_mut(&name) {
                e.member = pool.share(Member::clone(&e.member));
            }
        }
        self.pool = Some(pool);
    }

    /// Sets the datagram size to fill up to (the connection's `max_datagram_size()`).
    pub fn set_max_datagram_size(&mut self, size: usize) {
        self.datagram_size = size.clamp(256, 65_527);
    }

    // ---------------------------------------------------------------- inputs

    /// The runtime has a connection to `name` (dialled or accepted). Gossip, indirect probes
    /// and anti-entropy prefer members with one, so a cluster that starts at once does not
    /// open a handshake to nearly every member at the same time.
    pub fn handle_peer_up(&mut self, now: Instant, name: &NodeName) {
        self.dial_done(now, name);
        self.set_connected(name, true);
    }

    /// The certificate `name` presented on a connection (DER): kept, after the keyring's own
    /// checks, to check its signed records with, and any of its records waiting for it are
    /// applied. Records from a peer met in a handshake then never wait for a certificate
    /// request. A certificate that does not check out is counted, as one a peer sent.
    pub fn handle_peer_certificate(&mut self, now: Instant, name: &NodeName, der: Vec<u8>) {
        if der.is_empty()
            || self
                .keyring
                .certificate(name)
                .is_some_and(|held| *held == *der)
        {
            return;
        }
        let news = self.news_mark();
        let cert = Certificate {
            name: name.clone(),
            der,
        };
        self.learn_certificates(now, name, vec![cert], |n| n == name);
        self.gossip_if_new(now, news);
    }

    /// The runtime's connection to `name` closed (idle, evicted or lost).
    pub fn handle_peer_down(&mut self, name: &NodeName) {
        self.set_connected(name, false);
    }

    /// Notes whether a connection to `name` is up (see [`Entry`]'s `connected`).
    fn set_connected(&mut self, name: &NodeName, up: bool) {
        if let Some(e) = self.members.get_mut(name) {
            e.connected = up;
        }
    }

    /// A datagram from `from` (the name in its connection's certificate) at `addr`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: &NodeName,
        addr: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), PeerError> {
        let packet = decode_datagram(bytes).map_err(|source| {
            self.stats.decode_errors += 1;
            PeerError::Decode {
                peer: from.clone(),
                source,
            }
        })?;
        if self.me.state == State::Left {
            return Ok(());
        }
        self.stats.datagrams_in += 1;
        self.stats.datagram_bytes_in += bytes.len() as u64;
        let news = self.news_mark();
        trace!(peer = %from, message = ?packet.message, updates = packet.updates.len(), "datagram");
        let mut stale = None;
        for update in packet.updates {
            match update {
                Update::Member(u) => {
                    if stale.is_none() && self.is_refuted(&u) {
                        stale = Some(u.claim.name.clone());
                    }
                    self.apply(now, from, u, Source::Gossip)
                }
                Update::Event(e) => self.on_user_event(now, from, e),
                Update::Digest(d) => self.on_digest(now, from, d),
            }
        }
        self.send_record_request(now, from, addr);
        self.verification.sender = Some((from.clone(), addr));
        self.send_certificate_requests(now);
        self.verification.sender = None;
        // It came over a connection; a member first heard of in it is known only now.
        self.handle_peer_up(now, from);
        self.gossip_if_new(now, news);
        let reply_to = Destination {
            addr,
            name: Some(from.clone()),
        };
        if let Some(name) = stale {
            self.send_correction(reply_to.clone(), &name);
        }
        match packet.message {
            Message::Ping {
                seq,
                target,
                suspected,
            } => {
                if target != self.me.name {
                    return Ok(()); // meant for whoever had this address before
                }
                self.on_pinged(now, from, suspected);
                self.send_datagram(reply_to, Message::Ack { seq });
            }
            Message::Ack { seq } => self.on_ack(now, seq, from, false),
            Message::Nack { seq } => self.on_nack(now, from, seq),
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => self.on_ping_req(now, from, reply_to, seq, target, target_addr),
            Message::Gossip => {}
        }
        Ok(())
    }

    /// A request that `from` opened a stream with; returns the reply to send back, or
    /// `None` when there is nothing to answer (a Ping that names someone else, or this node
    /// has left).
    ///
    /// A reply-type message sent as a request is refused ([`PeerError::Unasked`]): a reply
    /// only counts when this node asked, on the stream it opened
    /// ([`handle_stream_reply`](Self::handle_stream_reply)).
    pub fn handle_stream_request(
        &mut self,
        now: Instant,
        from: &NodeName,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, PeerError> {
        let message = self.decode_stream_from(from, bytes)?;
        let news = self.news_mark();
        let reply = match message {
            StreamMessage::PushPull {
                join,
                sender,
                members,
                digest,
                kv_digest,
                events,
                certificates,
                revocation_ids,
            } => {
                if sender != *from {
                    self.stats.name_mismatches += 1;
                    warn!(peer = %from, claimed = %sender, "peer claims another name; refused");
                    return Err(PeerError::NameMismatch {
                        peer: from.clone(),
                        claimed: Box::new(sender),
                    });
                }
                Some(self.on_push_pull(
                    now,
                    from,
                    join,
                    members,
                    digest,
                    kv_digest,
                    events,
                    certificates,
                    &revocation_ids,
                ))
            }
            StreamMessage::Ping {
                seq,
                target,
                suspected,
            } => {
                if target != self.me.name || self.me.state == State::Left {
                    return Ok(None);
                }
                trace!(peer = %from, seq, "stream ping");
                self.on_pinged(now, from, suspected);
                Some(encode_stream(&StreamMessage::Ack { seq }))
            }
            StreamMessage::KvPush { deltas, members } => {
                if self.me.state != State::Left {
                    for u in members {
                        self.apply(now, from, u, Source::PushPull);
                    }
                    self.apply_kv_deltas(now, from, deltas);
                }
                Some(encode_stream(&StreamMessage::KvPushAck))
            }
            StreamMessage::KvSync { digest } => Some(self.on_kv_sync(now, from, &digest)),
            StreamMessage::Revocations { lists } => {
                self.take_revocations(now, from, lists);
                Some(encode_stream(&StreamMessage::RevocationsAck))
            }
            StreamMessage::CertificateRequest { names } => {
                Some(self.on_certificate_request(&names))
            }
            StreamMessage::RecordRequest {
                names,
                certificates,
            } => Some(self.on_record_request(&names, &certificates)),
            StreamMessage::PushPullReply { .. }
            | StreamMessage::Ack { .. }
            | StreamMessage::KvPushAck
            | StreamMessage::KvSyncReply { .. }
            | StreamMessage::CertificateReply { .. }
            | StreamMessage::RecordReply { .. }
            | StreamMessage::RevocationsAck => return Err(self.unasked(from, "request")),
        };
        self.send_certificate_requests(now);
        // As for datagrams; a joiner is a member only once its full state is merged.
        self.set_connected(from, true);
        self.gossip_if_new(now, news);
        Ok(reply)
    }

    /// The reply `from` sent on a stream this node opened with a request. A request-type
    /// message in its place is refused ([`PeerError::Unasked`]).
    pub fn handle_stream_reply(
        &mut self,
        now: Instant,
        from: &NodeName,
        bytes: &[u8],
    ) -> Result<(), PeerError> {
        let message = self.decode_stream_from(from, bytes)?;
        let news = self.news_mark();
        match message {
            StreamMessage::Ack { seq } => self.on_ack(now, seq, from, true),
            StreamMessage::PushPullReply {
                members,
                wants,
                kv_delta,
                kv_digest,
                events,
                certificates,
                revocations,
                revocation_ids,
            } => {
                // Lists first: a member they ban is never admitted from this reply.
                self.take_revocations(now, from, revocations);
                self.on_push_pull_reply(
                    now,
                    from,
                    members,
                    wants,
                    kv_delta,
                    kv_digest,
                    events,
                    certificates,
                );
                self.send_missing_revocations(from, &revocation_ids);
            }
            StreamMessage::RevocationsAck => {}
            StreamMessage::CertificateReply { certificates } => {
                self.on_certificate_reply(now, from, certificates)
            }
            StreamMessage::RecordReply {
                members,
                certificates,
            } => self.on_record_reply(now, from, members, certificates),
            StreamMessage::KvPushAck => {
                self.backlog.push_acked(from);
                self.on_leave_push_acked(from);
            }
            StreamMessage::KvSyncReply { delta, wants } => {
                self.on_kv_sync_reply(now, from, delta, wants)
            }
            StreamMessage::PushPull { .. }
            | StreamMessage::Ping { .. }
            | StreamMessage::KvPush { .. }
            | StreamMessage::KvSync { .. }
            | StreamMessage::CertificateRequest { .. }
            | StreamMessage::RecordRequest { .. }
            | StreamMessage::Revocations { .. } => return Err(self.unasked(from, "reply")),
        }
        self.send_certificate_requests(now);
        self.set_connected(from, true);
        self.gossip_if_new(now, news);
        Ok(())
    }

    fn decode_stream_from(
        &mut self,
        from: &NodeName,
        bytes: &[u8],
    ) -> Result<StreamMessage, PeerError> {
        decode_stream(bytes).map_err(|source| {
            self.stats.decode_errors += 1;
            PeerError::Decode {
                peer: from.clone(),
                source,
            }
        })
    }

    /// A message of the wrong kind for where it came: counted and refused, nothing changed.
    fn unasked(&mut self, from: &NodeName, sent_as: &'static str) -> PeerError {
        self.stats.unasked_messages += 1;
        PeerError::Unasked {
            peer: from.clone(),
            sent_as,
        }
    }

    /// Runs every timer due at `now`. Safe to call early: nothing fires before its time.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_own_lag(now);
        let news = self.news_mark();
        while let Some(timer) = self.timers.pop_due(now) {
            self.on_timer(now, timer);
        }
        // News a timer queued (a suspicion, a verdict) goes first: its eager round moves the
        // tick on, so a tick left in the past by an idle queue does not send a second round.
        self.gossip_if_new(now, news);
        if self.gossip_due().is_some_and(|tick| now >= tick) {
            self.gossip(now);
        }
    }

    /// Lifeguard's local health, fed by this node's own lag: a timer handled a quarter of
    /// the probe timeout or more after its deadline says the node reads its inputs late too
    /// (a saturated CPU, a stalled process), so Acks it waits for may be read after their
    /// probe ends and its failed probes say more about itself than about their targets.
    /// The score rises a step, at most once a probe interval, and never to the maximum:
    /// lag makes a node slower to accuse, but only Nacks it misses take it out (a node
    /// that is merely busy must not have itself declared Dead).
    fn note_own_lag(&mut self, now: Instant) {
        let Some(due) = self.timers.next_deadline() else {
            return;
        };
        if now.saturating_duration_since(due) < self.config.probe_timeout / 4 {
            return;
        }
        self.stats.timers_late += 1;
        let interval = self.config.probe_interval;
        if self.lag_noted_at.is_some_and(|at| now < at + interval) {
            return;
        }
        self.lag_noted_at = Some(now);
        if self.awareness.score() + 1 < self.config.awareness_max_multiplier {
            self.awareness.apply(now, 1);
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::ProbeNextMember => self.probe_next(now),
            Timer::ProbeTimeout { seq } => self.probe_indirectly(now, seq),
            Timer::IndirectProbeTimeout { seq } => self.relay_timed_out(seq),
            Timer::PushPull => {
                let interval = push_pull_scale(self.config.push_pull_interval, self.cluster_size());
                self.timers.insert(now + interval, Timer::PushPull);
                self.push_pull_random();
            }
            Timer::JoinSync { round } => {
                self.push_pull_random();
                self.schedule_join_sync(now, round + 1);
            }
            Timer::SuspectToDead { name, incarnation } => {
                self.suspect_timed_out(now, name, incarnation)
            }
            Timer::ReconnectDead => {
                self.timers
                    .insert(now + self.config.reconnect_interval, Timer::ReconnectDead);
                self.push_pull_dead();
            }
            Timer::RetryJoin { attempt } => self.retry_join(now, attempt),
            Timer::KvSync => self.kv_round(now),
            Timer::ResendLeave => self.resend_leave(now),
            Timer::ReapTombstones => {
                self.timers
                    .insert(now + REAP_INTERVAL, Timer::ReapTombstones);
                self.reap(now);
            }
        }
    }

    /// Where to reach `name`: its address as held, or our own for a member no longer held.
    fn destination_of(&self, name: &NodeName) -> Destination {
        let addr = self
            .members
            .get(name)
            .map_or(self.me.addr, |e| e.member.addr);
        Destination {
            addr,
            name: Some(name.clone()),
        }
    }
}
