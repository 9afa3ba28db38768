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

use std::collections::{BTreeMap, VecDeque};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tracing::{debug, trace, warn};

use super::awareness::Awareness;
use super::broadcast::{retransmit_limit, BroadcastQueue, Subject};
use super::codec::{
    datagram_overhead, decode_datagram, decode_stream, encode_datagram, encode_stream,
    encode_update, DecodeError, MemberUpdate, Message, StreamMessage, Update,
    UPDATES_PER_DATAGRAM_MAX,
};
use super::config::{Config, ConfigError, ValidConfig};
use super::cycle::Cycle;
use super::events::{Deduplicator, UserEvent, EVENT_NAME_LEN_MAX};
use super::kv::{KvEntry, KvError, KvStore, OwnerDelta, OwnerDigest};
use super::member::{
    overrides, Incarnation, Member, MemberPool, NameTable, Named, NodeName, State, META_LEN_MAX,
};
use super::suspicion::{confirmations_wanted, min_timeout, Suspicion};
use super::timer::{Timer, TimerKey, Timers};

/// Where a transmit goes: an address, and the name expected there when it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The peer's name; `None` for a seed known only by address, whose certificate then
    /// tells who it is.
    pub name: Option<NodeName>,
}

/// How a transmit travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransmitKind {
    /// One unreliable datagram, at most the configured datagram size.
    Datagram,
    /// A request on a new stream; the reply goes to [`Swim::handle_stream_message`].
    Request,
}

/// Bytes for the runtime to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// To whom.
    pub to: Destination,
    /// Datagram or stream request.
    pub kind: TransmitKind,
    /// The encoded message.
    pub payload: Vec<u8>,
}

/// Membership changes, as this node sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member was seen for the first time, or came back after Dead or Left.
    Joined(Member),
    /// A Suspect member refuted and is Alive again.
    Recovered(Member),
    /// An Alive member changed its address or metadata.
    Updated(Member),
    /// A member is suspected of failure.
    Suspect(Member),
    /// A member was declared failed.
    Dead(Member),
    /// A member left gracefully.
    Left(Member),
    /// A key/value entry changed here (set, deleted, or learned from a peer).
    KvChanged {
        /// The owning node.
        owner: NodeName,
        /// The key.
        key: String,
    },
    /// A user event arrived (delivered once per node).
    User(UserEvent),
}

impl Event {
    /// The member a membership event is about; `None` for key/value and user events.
    pub fn member(&self) -> Option<&Member> {
        match self {
            Event::Joined(m)
            | Event::Recovered(m)
            | Event::Updated(m)
            | Event::Suspect(m)
            | Event::Dead(m)
            | Event::Left(m) => Some(m),
            Event::KvChanged { .. } | Event::User(_) => None,
        }
    }
}

/// Input from a peer that was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The bytes did not decode.
    #[error("from {peer}: {source}")]
    Decode {
        /// The sender, by certificate.
        peer: NodeName,
        /// Why.
        source: DecodeError,
    },
    /// A message claimed a sender other than the certificate's name.
    #[error("peer {peer} claims to be {claimed}")]
    NameMismatch {
        /// The sender, by certificate.
        peer: NodeName,
        /// The name it claimed.
        claimed: Box<NodeName>,
    },
}

/// A command that could not be carried out. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Metadata over [`META_LEN_MAX`].
    #[error("metadata is {0} bytes; the limit is {META_LEN_MAX}")]
    MetaTooLong(usize),
    /// The node has left.
    #[error("this node has left the cluster")]
    Left,
    /// A key/value write over a limit.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A user event payload over the limit.
    #[error("event payload is {len} bytes; the limit is {max}")]
    EventTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A user event name that is empty or too long.
    #[error("event name must be 1..={EVENT_NAME_LEN_MAX} bytes (got {0})")]
    BadEventName(usize),
}

/// Counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Direct probes sent.
    pub probes_sent: u64,
    /// Probes that ended with no Ack.
    pub probes_failed: u64,
    /// PingReqs sent.
    pub indirect_probes_sent: u64,
    /// Direct probes repeated on a stream after the datagram Ping timed out.
    pub stream_probes_sent: u64,
    /// Suspicions this node raised.
    pub suspicions_raised: u64,
    /// Times this node refuted a claim about itself.
    pub refutations: u64,
    /// Datagrams handed to the runtime, and their bytes.
    pub datagrams_out: u64,
    /// Bytes of those datagrams.
    pub datagram_bytes_out: u64,
    /// Datagrams accepted, and their bytes.
    pub datagrams_in: u64,
    /// Bytes of those datagrams.
    pub datagram_bytes_in: u64,
    /// Messages refused as malformed.
    pub decode_errors: u64,
    /// Messages refused for a sender name other than the certificate's.
    pub name_mismatches: u64,
    /// Full-state exchanges started (joins included).
    pub push_pulls_started: u64,
    /// Full-state exchanges answered.
    pub push_pulls_answered: u64,
    /// Updates dropped because the piggyback queue was full.
    pub broadcasts_dropped: u64,
    /// Events dropped because nobody polled them.
    pub events_dropped: u64,
    /// Key/value entries that changed here from peers (key/value rounds or anti-entropy).
    pub kv_updates_applied: u64,
    /// Key/value entries from peers refused for breaking a limit.
    pub kv_refused: u64,
    /// Key/value entries sent in anti-entropy exchanges and key/value rounds.
    pub kv_entries_synced: u64,
    /// Key/value round requests sent (one per member per round).
    pub kv_syncs_started: u64,
    /// Bytes of anti-entropy requests and replies this node sent.
    pub anti_entropy_bytes_out: u64,
    /// User events delivered here.
    pub user_events_delivered: u64,
}

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

#[derive(Debug)]
struct Probe {
    seq: u32,
    target: NodeName,
    acked: bool,
    /// The direct Ping's timeout, cancelled by the Ack so it does not wake the node for
    /// nothing.
    timeout: TimerKey,
    nacks: u32,
    expected_nacks: u32,
}

#[derive(Debug)]
struct Relay {
    requester: Destination,
    their_seq: u32,
}

/// Most PingReqs served at once; beyond it new ones are ignored (bounded work per peer).
const RELAYS_MAX: usize = 1024;
/// Most events kept for a slow consumer.
const EVENTS_MAX: usize = 65_536;
/// Most members sent a Leave directly.
const LEAVE_FANOUT: usize = 16;
/// User events carried in every full-state exchange.
const RECENT_EVENTS_SYNCED: usize = 64;
/// Early full-state exchanges after joining.
const JOIN_SYNC_ROUNDS: u32 = 4;
/// The first early exchange comes half a probe interval after joining, each next one 1, 2 and
/// 4 intervals after the last (each wait jittered up to twice): a node that missed every
/// gossip copy of another's join, because few members knew it yet when that news went round,
/// catches up within a second (it waited 1-2 s with the first wait at one interval: a 32-node
/// join once took 2.02 s).
const JOIN_SYNC_FIRST_DIVISOR: u32 = 2;
/// How often tombstones are looked at.
const REAP_INTERVAL: Duration = Duration::from_secs(10);
/// A key/value round waits for the last one's replies at most this many intervals.
const KV_ROUND_WAIT_INTERVALS: u32 = 5;

/// Whether an update came from gossip or from a peer's full state.
#[derive(Clone, Copy)]
enum Source<'a> {
    Gossip,
    PushPull(&'a NodeName),
}

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
    /// send nothing (with 32 nodes on one machine, gossip ticks were most of the idle wake-ups).
    gossip_tick: Instant,
    /// [`watched`](Self::watched) as last found; `None` once a member became or stopped
    /// being active (finding it scans the table and hashes every name: at 1,000 members that
    /// was most of a probe period's core time).
    watched_cache: Option<Option<NodeName>>,
    next_seq: u32,
    relays: BTreeMap<u32, Relay>,
    timers: Timers,
    broadcasts: BroadcastQueue,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    awareness: Awareness,
    rng: SmallRng,
    seeds: Vec<SocketAddr>,
    joined: bool,
    stats: Stats,
    kv: KvStore,
    /// The version this node's next write takes.
    next_version: u64,
    /// Key/value rounds still to run; a [`Timer::KvSync`] is pending while above zero.
    kv_rounds_left: u32,
    /// When the last key/value round went out, and how many of its replies are still due.
    kv_round_at: Option<Instant>,
    kv_replies_pending: u32,
    dedup: Deduplicator,
    next_event_seq: u64,
    recent_events: VecDeque<UserEvent>,
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
    /// `seed` drives every random choice; `now` starts the clocks.
    pub fn new(
        name: NodeName,
        addr: SocketAddr,
        meta: Vec<u8>,
        config: ValidConfig,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let config = config.into_inner();
        if meta.len() > META_LEN_MAX {
            return Err(ConfigError {
                field: "meta",
                reason: format!("{} bytes; the limit is {META_LEN_MAX}", meta.len()),
            });
        }
        let mut rng = SmallRng::seed_from_u64(seed);
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
        let awareness = Awareness::new(config.awareness_max_multiplier);
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
            next_seq: 0,
            relays: BTreeMap::new(),
            timers,
            broadcasts,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            awareness,
            rng,
            seeds: Vec::new(),
            joined: false,
            stats: Stats::default(),
            kv: KvStore::new(config_kv),
            next_version: 1,
            kv_rounds_left: 0,
            kv_round_at: None,
            kv_replies_pending: 0,
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

    /// Whether a seed answered (or no seed was needed).
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Updates waiting to be piggybacked.
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// A live key/value entry of `owner`.
    pub fn kv_get(&self, owner: &NodeName, key: &str) -> Option<&[u8]> {
        self.kv.get(owner, key)
    }

    /// Every live key/value entry: (owner, key, value, version), sorted by owner then key.
    pub fn kv_entries(&self) -> Vec<(&NodeName, &str, &[u8], u64)> {
        self.kv.iter()
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

    // ---------------------------------------------------------------- commands

    /// Joins through `seeds` (addresses only); with none, this node starts a cluster.
    pub fn join(&mut self, now: Instant, seeds: &[SocketAddr]) {
        self.seeds = seeds
            .iter()
            .copied()
            .filter(|a| *a != self.me.addr)
            .collect();
        if self.seeds.is_empty() {
            self.joined = true;
            return;
        }
        self.joined = false;
        self.send_join_requests();
        self.timers
            .insert(now + self.config.join_retry_interval, Timer::RetryJoin);
    }

    /// Leaves gracefully: this node is Left everywhere, not Dead. The Left update goes by
    /// datagram to up to 16 members, and by reliable full-state request to `gossip_nodes` of
    /// them, so it is not lost with a datagram; the runtime flushes
    /// [`poll_transmit`](Self::poll_transmit) and waits for those requests before closing.
    pub fn leave(&mut self, _now: Instant) {
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
                self.send_push_pull(to, false);
            }
        }
        self.timers.clear();
        self.probe = None;
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

    /// Raises the starting point of this node's key/value versions and event sequence
    /// numbers. The runtime passes wall-clock microseconds at start, so that a node restarted
    /// with no state still writes versions above its old ones.
    pub fn set_version_floor(&mut self, floor: u64) {
        self.next_version = self.next_version.max(floor);
        self.next_event_seq = self.next_event_seq.max(floor);
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

    /// Sets one of this node's keys; returns the version it took.
    pub fn set(&mut self, now: Instant, key: &str, value: Vec<u8>) -> Result<u64, CommandError> {
        self.write(now, key, Some(value))
    }

    /// Deletes one of this node's keys (a tombstone); returns the version it took, or `None`
    /// when the key did not exist here.
    ///
    /// The tombstone is written either way: a node restarted with no state may not yet have
    /// heard back the keys it wrote before, and its delete must still win over those copies
    /// (a 500-node simulation with restarts kept a deleted key alive everywhere otherwise).
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<Option<u64>, CommandError> {
        let existed = self.kv.get(&self.me.name, key).is_some();
        let version = self.write(now, key, None)?;
        Ok(existed.then_some(version))
    }

    fn write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<u64, CommandError> {
        if self.me.state == State::Left {
            return Err(CommandError::Left);
        }
        let entry = KvEntry {
            owner: self.me.name.clone(),
            key: key.to_string(),
            version: self.next_version,
            value,
        };
        self.kv.apply(now, &entry)?;
        self.next_version += 1;
        self.push_event(Event::KvChanged {
            owner: entry.owner.clone(),
            key: entry.key.clone(),
        });
        self.kv_changed(now);
        Ok(entry.version)
    }

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
            return Err(CommandError::BadEventName(name.len()));
        }
        if payload.len() > self.config.event_payload_len_max {
            return Err(CommandError::EventTooLarge {
                len: payload.len(),
                max: self.config.event_payload_len_max,
            });
        }
        let seq = self.next_event_seq;
        self.next_event_seq += 1;
        let event = UserEvent {
            origin: self.me.name.clone(),
            seq,
            name: name.to_string(),
            payload,
        };
        self.dedup.first_sight(&event.origin, seq);
        self.stats.user_events_delivered += 1;
        self.remember_event(&event);
        self.push_event(Event::User(event.clone()));
        let subject = Subject::Event(event.origin.clone(), seq);
        let news = self.news_mark();
        self.broadcasts
            .push(subject, encode_update(&Update::Event(event)));
        self.gossip_if_new(now, news);
        Ok(seq)
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

    /// A connection to `name` is up: if a gossip pick was dialling it, the next such dial
    /// waits [`DIAL_PAUSE`] times as long as this one took (see [`gossip`](Self::gossip)).
    fn dial_done(&mut self, now: Instant, name: &NodeName) {
        if let Some((_, at)) = self.gossip_dial.as_ref().filter(|(n, _)| n == name) {
            let took = now.saturating_duration_since(*at);
            self.gossip_dial_after = now + took * DIAL_PAUSE;
            self.gossip_dial = None;
        }
    }

    /// The runtime's connection to `name` closed (idle, evicted or lost).
    pub fn handle_peer_down(&mut self, name: &NodeName) {
        self.set_connected(name, false);
    }

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
        for update in packet.updates {
            match update {
                Update::Member(u) => self.apply(now, u, Source::Gossip),
                Update::Event(e) => self.on_user_event(e),
            }
        }
        // It came over a connection; a member first heard of in it is known only now.
        self.handle_peer_up(now, from);
        self.gossip_if_new(now, news);
        let reply_to = Destination {
            addr,
            name: Some(from.clone()),
        };
        match packet.message {
            Message::Ping {
                seq,
                target,
                suspected,
            } => {
                if target != self.me.name {
                    return Ok(()); // meant for whoever had this address before
                }
                self.on_pinged(suspected);
                self.send_datagram(reply_to, Message::Ack { seq });
            }
            Message::Ack { seq } => self.on_ack(seq),
            Message::Nack { seq } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    p.nacks += 1;
                }
            }
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => {
                if target == self.me.name || self.relays.len() >= RELAYS_MAX {
                    return Ok(());
                }
                let our_seq = self.next_seq();
                self.relays.insert(
                    our_seq,
                    Relay {
                        requester: reply_to,
                        their_seq: seq,
                    },
                );
                let to = Destination {
                    addr: target_addr,
                    name: Some(target.clone()),
                };
                self.send_datagram(
                    to,
                    Message::Ping {
                        seq: our_seq,
                        target,
                        suspected: None,
                    },
                );
                self.timers.insert(
                    now + self.config.probe_timeout,
                    Timer::IndirectProbeTimeout { seq: our_seq },
                );
            }
            Message::Gossip => {}
        }
        Ok(())
    }

    /// A stream message from `from`. A request returns the reply to send back; a reply
    /// returns `None`.
    pub fn handle_stream_message(
        &mut self,
        now: Instant,
        from: &NodeName,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, PeerError> {
        let message = decode_stream(bytes).map_err(|source| {
            self.stats.decode_errors += 1;
            PeerError::Decode {
                peer: from.clone(),
                source,
            }
        })?;
        let news = self.news_mark();
        let reply = match message {
            StreamMessage::PushPull {
                join,
                sender,
                members,
                kv_digest,
                events,
            } => {
                if sender != *from {
                    self.stats.name_mismatches += 1;
                    warn!(peer = %from, claimed = %sender, "peer claims another name; refused");
                    return Err(PeerError::NameMismatch {
                        peer: from.clone(),
                        claimed: Box::new(sender),
                    });
                }
                debug!(peer = %from, join, members = members.len(), "push-pull request");
                if self.me.state != State::Left {
                    for u in members {
                        self.apply(now, u, Source::PushPull(from));
                    }
                    for e in events {
                        self.on_user_event(e);
                    }
                }
                self.stats.push_pulls_answered += 1;
                let reply = StreamMessage::PushPullReply {
                    members: self.table(),
                    kv_delta: self.kv_delta(&kv_digest, Owners::All),
                    kv_digest: self.kv.digest(),
                    events: self.recent_events.iter().cloned().collect(),
                };
                Ok(Some(self.encode_anti_entropy(&reply)))
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
                self.on_pinged(suspected);
                Ok(Some(encode_stream(&StreamMessage::Ack { seq })))
            }
            StreamMessage::Ack { seq } => {
                self.on_ack(seq);
                Ok(None)
            }
            StreamMessage::PushPullReply {
                members,
                kv_delta,
                kv_digest,
                events,
            } => {
                trace!(peer = %from, members = members.len(), "push-pull reply");
                if self.me.state != State::Left {
                    for u in members {
                        self.apply(now, u, Source::PushPull(from));
                    }
                    self.apply_kv_deltas(now, kv_delta);
                    for e in events {
                        self.on_user_event(e);
                    }
                    if !self.joined {
                        debug!(seed = %from, "joined");
                        self.joined = true;
                        self.schedule_join_sync(now, 0);
                        self.prepare_next_probe();
                    }
                    // Our half: what the responder lacks, by its digest.
                    let deltas = self.kv_delta(&kv_digest, Owners::All);
                    self.send_kv_push(from, deltas);
                }
                Ok(None)
            }
            StreamMessage::KvPush { deltas } => {
                if self.me.state != State::Left {
                    self.apply_kv_deltas(now, deltas);
                }
                Ok(Some(encode_stream(&StreamMessage::KvPushAck)))
            }
            StreamMessage::KvPushAck => Ok(None),
            StreamMessage::KvSync { digest } => {
                let reply = StreamMessage::KvSyncReply {
                    delta: self.kv_delta(&digest, Owners::All),
                    wants: self.kv.wants(&digest),
                };
                Ok(Some(self.encode_anti_entropy(&reply)))
            }
            StreamMessage::KvSyncReply { delta, wants } => {
                self.kv_replies_pending = self.kv_replies_pending.saturating_sub(1);
                if self.me.state != State::Left {
                    self.apply_kv_deltas(now, delta);
                    let deltas = self.kv_delta(&wants, Owners::Listed);
                    self.send_kv_push(from, deltas);
                }
                Ok(None)
            }
        };
        // As for datagrams; a joiner is a member only once its full state is merged.
        self.set_connected(from, true);
        self.gossip_if_new(now, news);
        reply
    }

    /// Runs every timer due at `now`. Safe to call early: nothing fires before its time.
    pub fn handle_timeout(&mut self, now: Instant) {
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

    // ---------------------------------------------------------------- outputs

    /// The next thing to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_none() {
            release_burst(&mut self.transmits);
        }
        t
    }

    /// The next deadline; call [`handle_timeout`](Self::handle_timeout) then (at once if it
    /// has passed).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.timers.next_deadline();
        match self.gossip_due() {
            Some(tick) => Some(timers.map_or(tick, |at| at.min(tick))),
            None => timers,
        }
    }

    /// When the next periodic gossip round is due: only while news is queued, and never
    /// after leaving (the Left claim was sent directly; a node that left stops all timers).
    fn gossip_due(&self) -> Option<Instant> {
        (!self.broadcasts.is_empty() && self.me.state != State::Left).then_some(self.gossip_tick)
    }

    /// The next membership event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() {
            release_burst(&mut self.events);
        }
        e
    }

    // ---------------------------------------------------------------- timers

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::ProbeNextMember => self.probe_next(now),
            Timer::ProbeTimeout { seq } => self.probe_indirectly(seq),
            Timer::IndirectProbeTimeout { seq } => {
                if let Some(relay) = self.relays.remove(&seq) {
                    self.send_datagram(
                        relay.requester,
                        Message::Nack {
                            seq: relay.their_seq,
                        },
                    );
                }
            }
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
                let picked = self.random_members(1, |e| e.member.state == State::Dead, None);
                if let Some(name) = picked.into_iter().next() {
                    trace!(member = %name, "reconnect to dead member");
                    let to = self.destination_of(&name);
                    self.send_push_pull(to, false);
                }
            }
            Timer::RetryJoin => {
                if !self.joined {
                    debug!(
                        seeds = self.seeds.len(),
                        "no seed answered yet; retrying join"
                    );
                    self.send_join_requests();
                    self.timers
                        .insert(now + self.config.join_retry_interval, Timer::RetryJoin);
                }
            }
            Timer::KvSync => self.kv_round(now),
            Timer::ReapTombstones => {
                self.timers
                    .insert(now + REAP_INTERVAL, Timer::ReapTombstones);
                self.reap(now);
            }
        }
    }

    /// Entries from anti-entropy or a key/value round.
    fn apply_kv_deltas(&mut self, now: Instant, deltas: Vec<OwnerDelta>) {
        for d in &deltas {
            let ours = d.entries.iter().filter(|e| e.owner == self.me.name);
            if let Some(max) = ours.map(|e| e.version).max() {
                // Our own keys at versions our counter has not reached: we restarted and
                // lost state, so later writes must go above them.
                self.next_version = self.next_version.max(max + 1);
            }
        }
        let (changed, refused) = self.kv.apply_delta(now, deltas);
        self.stats.kv_refused += refused as u64;
        self.stats.kv_updates_applied += changed.len() as u64;
        if changed.is_empty() {
            return;
        }
        for e in changed {
            self.push_event(Event::KvChanged {
                owner: e.owner,
                key: e.key,
            });
        }
        self.kv_changed(now);
    }

    /// Key/value data changed here: keep running key/value rounds for a while, starting at
    /// once when none were running (so news travels a hop per round trip until it meets
    /// the round timer).
    fn kv_changed(&mut self, now: Instant) {
        let idle = self.kv_rounds_left == 0;
        self.kv_rounds_left = kv_rounds(self.cluster_size());
        if idle {
            self.timers.insert(now, Timer::KvSync);
        }
    }

    /// One key/value round: our digest to `gossip_nodes` random live members, who answer with
    /// what we lack and the owners where we are ahead, which we then push.
    fn kv_round(&mut self, now: Instant) {
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
        }
        if self.me.state == State::Left {
            return;
        }
        let targets = self.random_members_connected_first(
            self.config.gossip_nodes,
            |e| e.member.state == State::Alive,
            None,
        );
        if targets.is_empty() {
            return;
        }
        let payload = encode_stream(&StreamMessage::KvSync {
            digest: self.kv.digest(),
        });
        self.kv_round_at = Some(now);
        self.kv_replies_pending = targets.len() as u32;
        for name in targets {
            self.stats.kv_syncs_started += 1;
            self.stats.anti_entropy_bytes_out += payload.len() as u64;
            let to = self.destination_of(&name);
            self.transmits.push_back(Transmit {
                to,
                kind: TransmitKind::Request,
                payload: payload.clone(),
            });
        }
    }

    /// What the holder of `theirs` lacks from us, within `kv_sync_bytes_max`, counted.
    fn kv_delta(&mut self, theirs: &[OwnerDigest], owners: Owners) -> Vec<OwnerDelta> {
        let budget = self.config.kv_sync_bytes_max;
        let deltas = match owners {
            Owners::All => self.kv.delta_for(theirs, budget),
            Owners::Listed => self.kv.delta_for_listed(theirs, budget),
        };
        self.stats.kv_entries_synced += deltas.iter().map(|d| d.entries.len() as u64).sum::<u64>();
        deltas
    }

    /// Encodes an anti-entropy or key/value reply, counting its bytes.
    fn encode_anti_entropy(&mut self, reply: &StreamMessage) -> Vec<u8> {
        let bytes = encode_stream(reply);
        self.stats.anti_entropy_bytes_out += bytes.len() as u64;
        bytes
    }

    /// Pushes `deltas` to `to`, if there is anything in them.
    fn send_kv_push(&mut self, to: &NodeName, deltas: Vec<OwnerDelta>) {
        if deltas.is_empty() {
            return;
        }
        let payload = self.encode_anti_entropy(&StreamMessage::KvPush { deltas });
        self.transmits.push_back(Transmit {
            to: self.destination_of(to),
            kind: TransmitKind::Request,
            payload,
        });
    }

    fn on_user_event(&mut self, e: UserEvent) {
        if e.origin == self.me.name {
            self.next_event_seq = self.next_event_seq.max(e.seq + 1);
        }
        if e.payload.len() > self.config.event_payload_len_max
            || !self.dedup.first_sight(&e.origin, e.seq)
        {
            return;
        }
        self.stats.user_events_delivered += 1;
        self.remember_event(&e);
        let subject = Subject::Event(e.origin.clone(), e.seq);
        self.broadcasts
            .push(subject, encode_update(&Update::Event(e.clone())));
        self.push_event(Event::User(e));
    }

    /// Keeps the last few events for full-state exchanges (as serf's push-pull does), so a
    /// member that missed one by gossip still gets it.
    fn remember_event(&mut self, e: &UserEvent) {
        if self.recent_events.len() >= RECENT_EVENTS_SYNCED {
            self.recent_events.pop_front();
        }
        self.recent_events.push_back(e.clone());
    }

    fn push_pull_random(&mut self) {
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
    fn schedule_join_sync(&mut self, now: Instant, round: u32) {
        if round >= JOIN_SYNC_ROUNDS {
            return;
        }
        let base = self.config.probe_interval * (1 << round) / JOIN_SYNC_FIRST_DIVISOR;
        let at = now + base + base.mul_f64(self.rng.random::<f64>());
        self.timers.insert(at, Timer::JoinSync { round });
    }

    fn probe_next(&mut self, now: Instant) {
        if let Some(p) = self.probe.take() {
            self.finish_probe(now, p);
        }
        let period = self.awareness.scale(self.config.probe_interval);
        self.timers.insert(now + period, Timer::ProbeNextMember);
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let (addr, suspected) = {
            let m = &self.members[&target].member;
            (m.addr, (m.state == State::Suspect).then_some(m.incarnation))
        };
        let seq = self.next_seq();
        self.stats.probes_sent += 1;
        let to = Destination {
            addr,
            name: Some(target.clone()),
        };
        self.send_datagram(
            to,
            Message::Ping {
                seq,
                target: target.clone(),
                suspected,
            },
        );
        let timeout = self.awareness.scale(self.config.probe_timeout);
        let timeout = self
            .timers
            .insert(now + timeout, Timer::ProbeTimeout { seq });
        self.probe = Some(Probe {
            seq,
            target,
            acked: false,
            timeout,
            nacks: 0,
            expected_nacks: 0,
        });
        self.prepare_next_probe();
    }

    /// Opens the way to the member probed next, one period ahead, when no connection to it
    /// is up: a Gossip datagram (carrying whatever is queued) makes the runtime dial it now.
    ///
    /// A Ping to a member without a connection waits behind a TLS handshake. On a loaded
    /// machine (128 nodes joining at once on 2 cores) handshakes took a median 0.9 s, so
    /// such Pings, their stream retry and the helpers' Pings all missed the probe period and
    /// live members were suspected by the dozen. The probe itself is judged exactly as
    /// before; only its connection is made earlier, so a crashed member is suspected as soon
    /// as ever.
    fn prepare_next_probe(&mut self) {
        /// Entries looked at past dead and left ones, to bound the work.
        const LOOK_AHEAD: usize = 4;
        if self.probe_index >= self.probe_list.len() {
            // The pass is over: draw the next one now, so its first member is known.
            self.reshuffle_probe_list();
        }
        let next = self.probe_list[self.probe_index..]
            .iter()
            .take(LOOK_AHEAD)
            .map(|m| &m.name)
            .find(|name| {
                self.members
                    .get(name)
                    .is_some_and(|e| e.member.state.is_active())
            })
            .cloned();
        let Some(name) = next else {
            return;
        };
        if self.members[&name].connected {
            return;
        }
        let to = self.destination_of(&name);
        self.send_datagram(to, Message::Gossip);
    }

    /// Every other probe goes to the [`watched`](Self::watched) member, the rest go round
    /// this pass's random order.
    ///
    /// With random orders alone, the time until some member first probes a crashed one is
    /// exponential with a mean of one probe interval whatever the cluster's size: past 2.4
    /// intervals in 9% of crashes (a 128-node simulation: detection 9.5-14.2 s, above 12 s in
    /// 6 of 40 seeds). Each member watched by the one before it in a shared order is probed
    /// at least every two intervals, so detection is bounded by two intervals plus the
    /// suspicion timeout; random probing goes on at half the rate, keeping the pass's
    /// every-member guarantee and indirect paths to any member.
    fn next_probe_target(&mut self) -> Option<NodeName> {
        if let Some(name) = self.probe_soon.take() {
            let suspect = self.members.get(&name).map(|e| e.member.state) == Some(State::Suspect);
            if suspect {
                return Some(name);
            }
        }
        self.watch_turn = !self.watch_turn;
        if self.watch_turn {
            if let Some(name) = self.watched() {
                return Some(name);
            }
        }
        for _ in 0..2 {
            while self.probe_index < self.probe_list.len() {
                let name = &self.probe_list[self.probe_index].name;
                self.probe_index += 1;
                if self
                    .members
                    .get(name)
                    .is_some_and(|e| e.member.state.is_active())
                {
                    return Some(name.clone());
                }
            }
            self.reshuffle_probe_list();
        }
        None
    }

    /// The active member after this node in the order of [`watch_key`]: every node computes
    /// the same order, so each member has one watcher (two for a moment while views differ).
    fn watched(&mut self) -> Option<NodeName> {
        if let Some(cached) = &self.watched_cache {
            return cached.clone();
        }
        let mine = watch_key(&self.me.name);
        let found = self
            .members
            .values()
            .filter(|e| e.member.state.is_active())
            .map(|e| {
                let distance = watch_key(&e.member.name).wrapping_sub(mine).wrapping_sub(1);
                (distance, &e.member.name)
            })
            .min()
            .map(|(_, name)| name.clone());
        self.watched_cache = Some(found.clone());
        found
    }

    /// One pass done: a new pass in a new random order (time-bounded completeness).
    fn reshuffle_probe_list(&mut self) {
        self.probe_list = self
            .members
            .values()
            .filter(|e| e.member.state.is_active())
            .map(|e| Arc::clone(&e.member))
            .collect();
        self.probe_list.shuffle(&mut self.rng);
        self.probe_index = 0;
    }

    fn probe_indirectly(&mut self, seq: u32) {
        let Some(p) = self.probe.as_ref().filter(|p| p.seq == seq && !p.acked) else {
            return;
        };
        let target = p.target.clone();
        let Some(target_addr) = self.members.get(&target).map(|e| e.member.addr) else {
            return;
        };
        let suspected = self
            .members
            .get(&target)
            .filter(|e| e.member.state == State::Suspect)
            .map(|e| e.member.incarnation);
        // memberlist's TCP fallback ping: the same probe on a stream, which QUIC retransmits.
        // Under random datagram loss the Ping or its Ack is lost about 2p of the time and all
        // the indirect paths (four datagrams each) far less often but not never; at 10% loss
        // and 200 members that was still ~1.5 suspicions a second, and now and then a member
        // missed every copy of the refutation and declared a live node Dead. With the stream
        // a live, reachable member is only suspected when streams fail too.
        self.stats.stream_probes_sent += 1;
        let ping = StreamMessage::Ping {
            seq,
            target: target.clone(),
            suspected,
        };
        self.transmits.push_back(Transmit {
            to: Destination {
                addr: target_addr,
                name: Some(target.clone()),
            },
            kind: TransmitKind::Request,
            payload: encode_stream(&ping),
        });
        let helpers = self.random_members_connected_first(
            self.config.indirect_checks,
            |e| e.member.state == State::Alive,
            Some(&target),
        );
        for name in &helpers {
            let to = self.destination_of(name);
            self.stats.indirect_probes_sent += 1;
            let msg = Message::PingReq {
                seq,
                target: target.clone(),
                target_addr,
            };
            self.send_datagram(to, msg);
        }
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = helpers.len() as u32;
        }
    }

    fn finish_probe(&mut self, now: Instant, p: Probe) {
        if p.acked {
            return;
        }
        self.stats.probes_failed += 1;
        // Lifeguard: Nacks we were owed and did not get say the fault may be ours.
        let delta = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks)
        } else {
            1
        };
        self.awareness.apply(delta as i32);
        let Some(e) = self.members.get(&p.target) else {
            return;
        };
        // A member already suspect is accused again: our failed probe is an independent
        // confirmation (Lifeguard), which shortens the suspicion towards its minimum.
        if !e.member.state.is_active() {
            return;
        }
        let incarnation = e.member.incarnation;
        self.stats.suspicions_raised += 1;
        let me = self.me.name.clone();
        self.on_suspect(now, p.target, incarnation, me);
    }

    fn on_ack(&mut self, seq: u32) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            if !p.acked {
                p.acked = true;
                self.awareness.apply(-1);
                self.timers.cancel(p.timeout);
            }
            return;
        }
        if let Some(relay) = self.relays.remove(&seq) {
            self.send_datagram(
                relay.requester,
                Message::Ack {
                    seq: relay.their_seq,
                },
            );
        }
    }

    /// What the piggyback queue held before an input, for [`gossip_if_new`](Self::gossip_if_new).
    fn news_mark(&self) -> NewsMark {
        NewsMark {
            pushed: self.broadcasts.pushed(),
            idle: self.broadcasts.is_empty(),
        }
    }

    /// Eager gossip: news queued since `before` goes out in a round at once instead of at
    /// the next tick. Waiting for the tick costs each hop half a gossip interval on average,
    /// and the slowest of a few hops sets the time until every member knows; while earlier
    /// news is still being retransmitted the queue is seldom empty, so waiting only for an
    /// empty queue left most hops at the tick (128 nodes: a median 0.2-0.3 s per update).
    /// Rounds are at least a quarter interval apart unless the queue was empty, so a burst
    /// of news (a cluster joining) sends at most four times the rounds of the tick.
    fn gossip_if_new(&mut self, now: Instant, before: NewsMark) {
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
    /// cyclic walk over its member table ([`Cycle`]), skipping those without a connection
    /// except one, when no other is being dialled and [`DIAL_PAUSE`] times the last dial's
    /// duration has passed since it.
    ///
    /// The walk, where memberlist draws each round's targets afresh: while the member table
    /// keeps its size, successive rounds reach distinct members, so the copies a node sends
    /// of an update (the retransmit limit, 12 at 128 members) go to as many different
    /// members when it has that many connections, and to every one when it has fewer. (A
    /// join or a reap moves the walk on from where it was; a member may then come round
    /// again early.) Drawn afresh among its connections (15 or so just after a 128-node
    /// join), about a third of a node's copies went to a member it had already sent that
    /// update to, and a member few others were connected to (the mesh is young for one probe
    /// pass after a join) could miss every copy and have the update only 0.8-1.6 s later:
    /// about one update in 50.
    ///
    /// Kept to connected members without the dial, gossip left such members fewer chances
    /// still (32 nodes: one in a few hundred missed every copy). Pacing the dials keeps a
    /// large cluster that starts at once from a storm of handshakes (they slow each other;
    /// the dials are what costs).
    fn gossip(&mut self, now: Instant) {
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
            self.send_datagram(to, Message::Gossip);
        }
    }

    fn suspect_timed_out(&mut self, now: Instant, name: NodeName, incarnation: Incarnation) {
        let Some(e) = self.members.get(&name) else {
            return;
        };
        if e.member.state != State::Suspect || e.member.incarnation != incarnation {
            return;
        }
        let due = e.suspicion.as_ref().is_none_or(|s| s.deadline() <= now);
        if !due {
            return; // a later timer holds the deadline
        }
        let me = self.me.name.clone();
        self.on_dead(now, &name, incarnation, State::Dead, Some(me));
    }

    fn reap(&mut self, now: Instant) {
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
            self.remove_member(&name);
            self.kv.remove_owner(&name);
            self.dedup.forget(&name);
        }
        self.kv
            .collect_tombstones(now, self.config.kv_tombstone_grace);
    }

    // ---------------------------------------------------------------- state changes

    fn apply(&mut self, now: Instant, u: MemberUpdate, source: Source<'_>) {
        if u.name == self.me.name {
            self.on_self_claim(u.incarnation, u.state, Some((u.addr, &u.meta)));
            return;
        }
        match u.state {
            State::Alive => self.on_alive(now, u),
            State::Suspect => {
                let accuser = match (u.accuser, source) {
                    (Some(a), _) => a,
                    (None, Source::PushPull(from)) => from.clone(),
                    (None, Source::Gossip) => return,
                };
                self.on_suspect(now, u.name, u.incarnation, accuser);
            }
            State::Dead => match source {
                // memberlist: a peer's full state saying Dead only makes us suspect, so one
                // stale view cannot kill members we still reach.
                Source::PushPull(from) => {
                    self.on_suspect(now, u.name, u.incarnation, from.clone());
                }
                Source::Gossip => self.on_dead(now, &u.name, u.incarnation, State::Dead, u.accuser),
            },
            State::Left => self.on_dead(now, &u.name, u.incarnation, State::Left, None),
        }
    }

    /// Someone holds a claim about this node. Refute anything but the truth.
    fn on_self_claim(
        &mut self,
        incarnation: Incarnation,
        state: State,
        detail: Option<(SocketAddr, &Vec<u8>)>,
    ) {
        if self.me.state == State::Left || incarnation < self.me.incarnation {
            return;
        }
        let same_detail =
            detail.is_none_or(|(addr, meta)| addr == self.me.addr && *meta == self.me.meta);
        if state == State::Alive && incarnation == self.me.incarnation && same_detail {
            return;
        }
        self.me.incarnation = Incarnation(incarnation.0.max(self.me.incarnation.0)).next();
        if state != State::Alive {
            self.stats.refutations += 1;
            self.awareness.apply(1);
        }
        debug!(member = %self.me.name, incarnation = self.me.incarnation.0, claimed = %state, "refute");
        self.broadcast_self();
    }

    /// A Ping names this node. `suspected` is the incarnation the prober holds us Suspect at
    /// (buddy system): refute it at once.
    fn on_pinged(&mut self, suspected: Option<Incarnation>) {
        let Some(incarnation) = suspected else {
            return;
        };
        if incarnation < self.me.incarnation {
            // We refuted already, but this prober missed it: gossip is best effort and a node
            // can miss every copy. Queue our Alive again so the Ack, filled next and
            // fewest-sent first, carries it to the one member known to need it. Without this
            // the prober's suspicion runs out and it declares us Dead.
            self.broadcast_self();
        } else {
            self.on_self_claim(incarnation, State::Suspect, None);
        }
    }

    fn on_alive(&mut self, now: Instant, u: MemberUpdate) {
        let name = u.name.clone();
        let event = match self.members.get_mut(&name) {
            None => {
                if self.members.len() >= self.config.members_max {
                    return;
                }
                let member = Member {
                    name: u.name.clone(),
                    addr: u.addr,
                    incarnation: u.incarnation,
                    state: State::Alive,
                    meta: u.meta.clone(),
                };
                self.insert_member(now, member.clone());
                debug!(member = %name, incarnation = u.incarnation.0, addr = %u.addr, "member joined");
                Event::Joined(member)
            }
            Some(e) => {
                let held = (e.member.incarnation, e.member.state);
                if !overrides((u.incarnation, State::Alive), held) {
                    return;
                }
                let old = e.member.state;
                e.update(self.pool.as_ref(), |m| {
                    m.addr = u.addr;
                    m.meta = u.meta.clone();
                    m.incarnation = u.incarnation;
                    m.state = State::Alive;
                });
                e.suspicion = None;
                e.state_change = now;
                let member = Member::clone(&e.member);
                self.recount(Some(old), Some(State::Alive));
                match old {
                    State::Alive => Event::Updated(member),
                    State::Suspect => {
                        debug!(member = %name, incarnation = u.incarnation.0, "member recovered");
                        Event::Recovered(member)
                    }
                    State::Dead | State::Left => {
                        debug!(member = %name, incarnation = u.incarnation.0, "member rejoined");
                        self.add_to_probe_list(name.clone());
                        Event::Joined(member)
                    }
                }
            }
        };
        self.broadcast_member(&name, None);
        self.push_event(event);
    }

    fn on_suspect(
        &mut self,
        now: Instant,
        name: NodeName,
        incarnation: Incarnation,
        accuser: NodeName,
    ) {
        let n = self.cluster_size();
        let Some(e) = self.members.get_mut(&name) else {
            return;
        };
        if e.member.state == State::Suspect && e.member.incarnation == incarnation {
            let Some(s) = e.suspicion.as_mut() else {
                return;
            };
            if s.confirm(accuser.clone()) {
                let deadline = s.deadline();
                trace!(member = %name, accuser = %accuser, confirmations = s.confirmations(), "suspicion confirmed");
                self.timers.insert(
                    deadline.max(now),
                    Timer::SuspectToDead {
                        name: name.clone(),
                        incarnation,
                    },
                );
                self.broadcast_member(&name, Some(accuser));
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
        let k = confirmations_wanted(self.config.suspicion_mult, n);
        let s = Suspicion::new(now, min, max, k, accuser.clone());
        let deadline = s.deadline();
        e.update(self.pool.as_ref(), |m| {
            m.state = State::Suspect;
            m.incarnation = incarnation;
        });
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
            deadline,
            Timer::SuspectToDead {
                name: name.clone(),
                incarnation,
            },
        );
        // A suspicion ends at its minimum timeout only once k others confirm it, each by its own
        // failed probe; probing at random, they come at one probe interval each on average,
        // and in 8% of 128-node crashes the second came after the minimum (half-rate random
        // probes, see `next_probe_target`). About 3k nodes hearing of it probe it next, so a
        // dead member's confirmations come within about one interval.
        let probers = f64::from(3 * k);
        if accuser != self.me.name
            && self.probe_soon.is_none()
            && self.rng.random::<f64>() < probers / n as f64
        {
            self.probe_soon = Some(name.clone());
        }
        self.broadcast_member(&name, Some(accuser));
        self.push_event(Event::Suspect(member));
    }

    fn on_dead(
        &mut self,
        now: Instant,
        name: &NodeName,
        incarnation: Incarnation,
        state: State,
        accuser: Option<NodeName>,
    ) {
        let Some(e) = self.members.get_mut(name) else {
            return;
        };
        if !overrides((incarnation, state), (e.member.incarnation, e.member.state)) {
            return;
        }
        let old = e.member.state;
        e.update(self.pool.as_ref(), |m| {
            m.state = state;
            m.incarnation = incarnation;
        });
        e.suspicion = None;
        e.state_change = now;
        let member = Member::clone(&e.member);
        self.recount(Some(old), Some(state));
        self.broadcast_member(name, accuser);
        if state == State::Left {
            debug!(member = %name, incarnation = incarnation.0, "member left");
            self.push_event(Event::Left(member));
        } else {
            debug!(member = %name, incarnation = incarnation.0, "member dead");
            self.push_event(Event::Dead(member));
        }
    }

    // ---------------------------------------------------------------- table upkeep

    fn insert_member(&mut self, now: Instant, member: Member) {
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

    /// New and returning members enter the current pass at a random place (memberlist), but
    /// not ahead of the member probed next, whose connection is being prepared (see
    /// [`prepare_next_probe`](Self::prepare_next_probe)): while a hundred members join, one
    /// would nearly always take its place.
    fn add_to_probe_list(&mut self, name: NodeName) {
        let Some(member) = self.members.get(&name).map(|e| Arc::clone(&e.member)) else {
            return;
        };
        let lo = (self.probe_index + 1).min(self.probe_list.len());
        let at = self.rng.random_range(lo..=self.probe_list.len());
        self.probe_list.insert(at, member);
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

    fn table(&self) -> Vec<MemberUpdate> {
        self.members()
            .map(|m| MemberUpdate {
                name: m.name.clone(),
                addr: m.addr,
                incarnation: m.incarnation,
                state: m.state,
                meta: m.meta.clone(),
                accuser: None,
            })
            .collect()
    }

    // ---------------------------------------------------------------- sending

    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

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

    fn send_datagram(&mut self, to: Destination, message: Message) {
        let n = self.cluster_size();
        let limit = retransmit_limit(self.config.retransmit_mult, n);
        // Two bytes of count varint cover up to 16383 updates, far above what fits.
        let budget = self
            .datagram_size
            .saturating_sub(datagram_overhead(&message, 200));
        let (count, updates) = self
            .broadcasts
            .take(budget, limit, UPDATES_PER_DATAGRAM_MAX);
        let payload = encode_datagram(&message, count, &updates);
        debug_assert!(payload.len() <= self.datagram_size);
        self.stats.datagrams_out += 1;
        self.stats.datagram_bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Datagram,
            payload,
        });
    }

    fn send_push_pull(&mut self, to: Destination, join: bool) {
        self.stats.push_pulls_started += 1;
        let message = StreamMessage::PushPull {
            join,
            sender: self.me.name.clone(),
            members: self.table(),
            kv_digest: self.kv.digest(),
            events: self.recent_events.iter().cloned().collect(),
        };
        let payload = encode_stream(&message);
        self.stats.anti_entropy_bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Request,
            payload,
        });
    }

    fn send_join_requests(&mut self) {
        for addr in self.seeds.clone() {
            self.send_push_pull(Destination { addr, name: None }, true);
        }
    }

    fn self_update(&self) -> MemberUpdate {
        MemberUpdate {
            name: self.me.name.clone(),
            addr: self.me.addr,
            incarnation: self.me.incarnation,
            state: self.me.state,
            meta: self.me.meta.clone(),
            accuser: None,
        }
    }

    fn broadcast_self(&mut self) {
        let bytes = encode_update(&Update::Member(self.self_update()));
        self.broadcasts
            .push(Subject::Member(self.me.name.clone()), bytes);
    }

    fn broadcast_member(&mut self, name: &NodeName, accuser: Option<NodeName>) {
        let Some(e) = self.members.get(name) else {
            return;
        };
        let m = &e.member;
        let update = MemberUpdate {
            name: m.name.clone(),
            addr: m.addr,
            incarnation: m.incarnation,
            state: m.state,
            meta: m.meta.clone(),
            accuser,
        };
        let bytes = encode_update(&Update::Member(update));
        self.broadcasts.push(Subject::Member(name.clone()), bytes);
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() >= EVENTS_MAX {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Up to `k` distinct members matching `pred`, `except` excluded, chosen at random among
    /// those with a connection up first, then among the rest to make up the number.
    ///
    /// A node holds a connection to the members it probed or was probed by, gossiped with,
    /// or heard from lately; they are a random sample of the cluster, so gossip that stays
    /// on them still mixes well, while a target without one costs a TLS handshake. Without
    /// the preference, nodes that start together each dial nearly every member within
    /// seconds (about 7,000 handshakes for 128 nodes), the mesh then being torn down by the
    /// idle timeout. Members with no connection are still picked when too few have one, so
    /// a new node reaches beyond its seed; the probe round-robin keeps adding connections.
    /// Connected members are found by sampling (bounded work per call, even in a cluster
    /// of thousands where few are connected).
    fn random_members_connected_first(
        &mut self,
        k: usize,
        pred: impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) -> Vec<NodeName> {
        let mut out: Vec<NodeName> = Vec::with_capacity(k);
        self.sample_connected(&mut out, k, &pred, except);
        self.fill_random(&mut out, k, &pred, except);
        out
    }

    /// Adds members with a connection up, matching `pred`, to `out` (up to `k` in all), found
    /// by bounded sampling: in a large cluster where few are connected some may be missed.
    fn sample_connected(
        &mut self,
        out: &mut Vec<NodeName>,
        k: usize,
        pred: &impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) {
        self.sample_members(out, k, walk_max(k), &|e| e.connected && pred(e), except);
    }

    /// Adds members drawn at random to `out`, up to `k` in all, in at most `draws` draws: those
    /// matching `pred`, not `except` and not already in `out`.
    fn sample_members(
        &mut self,
        out: &mut Vec<NodeName>,
        k: usize,
        draws: usize,
        pred: &impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) {
        if self.members.is_empty() {
            return;
        }
        for _ in 0..draws {
            if out.len() >= k {
                return;
            }
            let e = self
                .members
                .at(self.rng.random_range(0..self.members.len()));
            let name = &e.member.name;
            if Some(name) != except && !out.contains(name) && pred(e) {
                out.push(name.clone());
            }
        }
    }

    /// Up to `k` distinct members matching `pred`, `except` excluded, chosen at random.
    fn random_members(
        &mut self,
        k: usize,
        pred: impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) -> Vec<NodeName> {
        let mut out: Vec<NodeName> = Vec::with_capacity(k);
        self.fill_random(&mut out, k, &pred, except);
        out
    }

    /// Tops `out` up to `k` distinct members matching `pred`, chosen at random among those
    /// not `except` and not already in it.
    fn fill_random(
        &mut self,
        out: &mut Vec<NodeName>,
        k: usize,
        pred: &impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) {
        if out.len() >= k || self.members.is_empty() {
            return;
        }
        // Sampling with rejection is O(k) when most members qualify; fall back to a scan.
        let draws = 3 * (k - out.len()) + 8;
        self.sample_members(out, k, draws, pred, except);
        if out.len() == k {
            return;
        }
        let ok = |name: &NodeName| Some(name) != except && !out.contains(name);
        let mut rest: Vec<&NodeName> = self
            .members
            .by_position()
            .filter(|e| ok(&e.member.name) && pred(e))
            .map(|e| &e.member.name)
            .collect();
        rest.shuffle(&mut self.rng);
        let missing = k - out.len();
        let rest: Vec<NodeName> = rest.into_iter().take(missing).cloned().collect();
        out.extend(rest);
    }
}

/// How long one node takes to probe every member of an `n`-node cluster once: every other
/// probe goes round the random pass, so `2 · (n - 1)` probe intervals (at the healthy rate).
pub fn probe_pass(n: usize, config: &Config) -> Duration {
    let probes = u32::try_from(n.saturating_sub(1).saturating_mul(2)).unwrap_or(u32::MAX);
    config.probe_interval.saturating_mul(probes)
}

/// After a gossip pick's dial, the next waits this many times as long as the dial took: a
/// node spends at most a fifth of its time dialling for gossip. Handshakes on an idle machine
/// take milliseconds, so gossip reaches every member at once; when 128 nodes start together
/// on 2 cores they take 0.1-1 s, and dials back to back (2,900 handshakes, a 3.4 s join) were
/// what kept the join slow.
const DIAL_PAUSE: u32 = 4;

/// Members looked at to find `k` with a connection: bounded work per round, even in a
/// cluster of thousands where few are connected.
fn walk_max(k: usize) -> usize {
    8 * k + 32
}

/// A member's place in the order members watch each other in: a stable hash of its name, the
/// same on every node and every build.
fn watch_key(name: &NodeName) -> u64 {
    crate::hash::xxh64(name.as_str().as_bytes(), 0)
}

/// The piggyback queue before an input: how many updates had been pushed, and whether it
/// was empty.
#[derive(Clone, Copy)]
struct NewsMark {
    pushed: u64,
    idle: bool,
}

/// Which owners a key/value delta covers.
#[derive(Clone, Copy)]
enum Owners {
    /// Every owner we hold (those the digest does not list are sent whole).
    All,
    /// Only the owners the digest lists (a peer's `wants`).
    Listed,
}

/// Key/value rounds a node runs after its data last changed: `ceil(log10(n+1)) + 2`
/// (4 at 32 members). Each round is a digest exchange with `gossip_nodes` members, so news
/// that reached a node leaves it on about a dozen exchanges before the node falls quiet;
/// the periodic full-state exchange repairs whatever that misses.
pub fn kv_rounds(n: usize) -> u32 {
    ((n as f64 + 1.0).log10().ceil() as u32).max(1) + 2
}

/// Most queued outputs whose room a drained queue keeps.
const OUTPUTS_KEPT: usize = 64;

/// Gives back the room a burst left in a drained output queue. A full-state reply from a
/// cluster of `n` yields up to `n` events at once; keeping that room in every node costs
/// `n²` (15 GB at 10,000 simulated nodes).
fn release_burst<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > OUTPUTS_KEPT {
        queue.shrink_to(OUTPUTS_KEPT);
    }
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
