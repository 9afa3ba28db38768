//! What the core hands the runtime: transmits, membership events, refusals and counters,
//! and the `poll_*` calls that drain them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::super::codec::DecodeError;
use super::super::events::{UserEvent, EVENT_NAME_LEN_MAX};
use super::super::kv::KvError;
use super::super::member::{Member, NodeName, State, META_LEN_MAX};
use super::Swim;

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
    /// A request on a new stream; the reply that comes back on it goes to
    /// [`Swim::handle_stream_reply`].
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
    /// A reply sent as a request, or a request where a reply was due.
    #[error("from {peer}: wrong kind of message for a {sent_as}")]
    Unasked {
        /// The sender, by certificate.
        peer: NodeName,
        /// What it came as: "request" or "reply".
        sent_as: &'static str,
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
    /// A force-leave named a member this node does not hold (never heard of, or its
    /// tombstone is already gone).
    #[error("no member {0} is known here")]
    UnknownMember(NodeName),
    /// A force-leave named a member that is alive or suspect: it may still be running, and
    /// only it can say it left.
    #[error("member {name} is {state}; only a dead or left member can be forced out")]
    MemberActive {
        /// The member.
        name: NodeName,
        /// Its state here.
        state: State,
    },
    /// A force-leave named this node itself.
    #[error("a node cannot force itself out; leave instead")]
    ForceLeaveSelf,
    /// This node's key/value writes are further behind on their way to the cluster than
    /// `kv_backlog_max` allows: the cluster is taking writes slower than they come. Nothing
    /// was written; try again later.
    #[error("key/value writes are {behind:?} behind on their way to the cluster (kv_backlog_max is {max:?}); try again later")]
    Backlogged {
        /// How long the oldest write not yet spread has waited.
        behind: std::time::Duration,
        /// The bound.
        max: std::time::Duration,
    },
    /// One of this node's own counters reached its end (after 2^63 steps at the least).
    #[error("this node's {0} counter is exhausted")]
    CounterExhausted(&'static str),
}

/// Counters for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Direct probes sent.
    pub probes_sent: u64,
    /// Probes that ended with no Ack.
    pub probes_failed: u64,
    /// Times a deadline was handled a quarter of the probe timeout or more after it was
    /// due: this node's own lag, which raises its local health score.
    pub timers_late: u64,
    /// PingReqs sent.
    pub indirect_probes_sent: u64,
    /// Direct probes repeated on a stream after the datagram Ping timed out.
    pub stream_probes_sent: u64,
    /// Suspicions this node raised.
    pub suspicions_raised: u64,
    /// Datagrams sent to tell a member that a suspicion it relayed was refuted meanwhile.
    pub corrections_sent: u64,
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
    /// Stream messages refused for their kind: a reply sent as a request, or a request
    /// where a reply was due.
    pub unasked_messages: u64,
    /// Claims about this node (incarnation, key version, event sequence) refused for a
    /// counter above `SELF_CLAIM_MAX`.
    pub self_claims_refused: u64,
    /// This node's own writes (set, delete, publish) refused for a limit; the caller got
    /// the error naming it.
    pub local_writes_refused: u64,
    /// This node's own key/value writes refused because earlier ones were further behind
    /// than `kv_backlog_max` (pushback; the caller got `Backlogged`).
    pub kv_writes_backlogged: u64,
    /// This node's own keys written again because a peer held a higher version of them.
    pub kv_refuted: u64,
    /// Key/value entries refused because their owner is not a member held here.
    pub kv_owner_not_member: u64,
    /// User events refused: from an origin that is not a member, or over a limit.
    pub user_events_refused: u64,
    /// Event origins forgotten to make room for another (least recently heard first).
    pub event_origins_evicted: u64,
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
    /// Bytes of requests and replies for records gossiped by digest and for certificates
    /// this node sent.
    pub fetch_bytes_out: u64,
    /// User events delivered here.
    pub user_events_delivered: u64,
    /// Records dropped because their signer's certificate was not held yet (it was asked
    /// of the peer that sent them).
    pub unverified_records: u64,
    /// Certificates peers sent that did not check out against the trust anchors.
    pub certificates_refused: u64,
    /// Certificates learned from peers (join, anti-entropy, certificate requests).
    pub certificates_learned: u64,
    /// Member records that waited for a signer's certificate and were dropped for room.
    pub parked_dropped: u64,
    /// Revocation lists taken (from the operator or peers): each newer than the one held
    /// from its CA.
    pub revocations_taken: u64,
    /// Revocation lists refused: not signed by a trusted CA, or not lists at all.
    pub revocations_refused: u64,
    /// Round trips of direct probes: from the datagram Ping to the target's Ack.
    pub probe_rtt: RttHistogram,
    /// Round trips of probes answered only after the direct Ping timed out: from the moment
    /// the PingReqs and the stream Ping went out to the first Ack, relayed or on the stream.
    pub indirect_probe_rtt: RttHistogram,
    /// Records and messages refused as forged, by kind: a signature that does not verify, or
    /// a message its sender may not send (an Ack for a probe it has no part in).
    pub forged: ForgedCounts,
    /// PingReqs refused, and Nacked at once, because their target is Dead or Left here.
    /// Honest members send them while views differ (after a crash, across a partition), so
    /// they are not counted as forged.
    pub ping_reqs_for_inactive: u64,
}

/// A kind of message refused because its authenticated sender may not say what it says (an
/// Ack for a probe it has no part in, a PingReq that would send us elsewhere, a suspicion
/// about this node that it never stated). Exported as
/// `quicswim_forged_records_total{kind}`, [`as_str`](Self::as_str) being the label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForgedKind {
    /// A member's claim about itself (Alive, Left) not signed by the member.
    Claim,
    /// An accusation (Suspect, Dead) not signed by the accuser named.
    Accusation,
    /// A key/value entry or tombstone floor not signed by its owner.
    Kv,
    /// A user event not signed by its origin.
    Event,
    /// An Ack (datagram or stream) from neither the probed member nor a helper asked for
    /// that very probe, or for a sequence number no probe or relay of ours has.
    Ack,
    /// A Nack from a member not asked for that probe, or for no probe of ours.
    Nack,
    /// A PingReq naming a member not held here, or an address other than the one held for
    /// it (one for a member held Dead or Left is counted in
    /// [`Stats::ping_reqs_for_inactive`] instead).
    PingReq,
    /// A Ping suspecting this node at an incarnation above its own.
    Suspected,
}

impl ForgedKind {
    /// Every kind, in the order metrics list them.
    pub const ALL: [ForgedKind; 8] = [
        ForgedKind::Claim,
        ForgedKind::Accusation,
        ForgedKind::Kv,
        ForgedKind::Event,
        ForgedKind::Ack,
        ForgedKind::Nack,
        ForgedKind::PingReq,
        ForgedKind::Suspected,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgedKind::Claim => "claim",
            ForgedKind::Accusation => "accusation",
            ForgedKind::Kv => "kv",
            ForgedKind::Event => "event",
            ForgedKind::Ack => "ack",
            ForgedKind::Nack => "nack",
            ForgedKind::PingReq => "ping_req",
            ForgedKind::Suspected => "suspected",
        }
    }
}

/// Messages refused per [`ForgedKind`]: each was dropped with nothing changed, and its
/// sender named in a WARN (at most once per peer and minute).
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ForgedCounts {
    /// See [`ForgedKind::Claim`].
    pub claim: u64,
    /// See [`ForgedKind::Accusation`].
    pub accusation: u64,
    /// See [`ForgedKind::Kv`].
    pub kv: u64,
    /// See [`ForgedKind::Event`].
    pub event: u64,
    /// See [`ForgedKind::Ack`].
    pub ack: u64,
    /// See [`ForgedKind::Nack`].
    pub nack: u64,
    /// See [`ForgedKind::PingReq`].
    pub ping_req: u64,
    /// See [`ForgedKind::Suspected`].
    pub suspected: u64,
}

impl ForgedCounts {
    /// The count for one kind.
    pub fn get(&self, kind: ForgedKind) -> u64 {
        *self.field(kind)
    }

    /// Every kind's count added up.
    pub fn total(&self) -> u64 {
        ForgedKind::ALL
            .iter()
            .fold(0, |sum, &k| sum.saturating_add(self.get(k)))
    }

    /// Counts one more of `kind`.
    pub(crate) fn bump(&mut self, kind: ForgedKind) {
        let n = self.field_mut(kind);
        *n = n.saturating_add(1);
    }

    fn field(&self, kind: ForgedKind) -> &u64 {
        match kind {
            ForgedKind::Claim => &self.claim,
            ForgedKind::Accusation => &self.accusation,
            ForgedKind::Kv => &self.kv,
            ForgedKind::Event => &self.event,
            ForgedKind::Ack => &self.ack,
            ForgedKind::Nack => &self.nack,
            ForgedKind::PingReq => &self.ping_req,
            ForgedKind::Suspected => &self.suspected,
        }
    }

    fn field_mut(&mut self, kind: ForgedKind) -> &mut u64 {
        match kind {
            ForgedKind::Claim => &mut self.claim,
            ForgedKind::Accusation => &mut self.accusation,
            ForgedKind::Kv => &mut self.kv,
            ForgedKind::Event => &mut self.event,
            ForgedKind::Ack => &mut self.ack,
            ForgedKind::Nack => &mut self.nack,
            ForgedKind::PingReq => &mut self.ping_req,
            ForgedKind::Suspected => &mut self.suspected,
        }
    }
}

/// Upper bounds of [`RttHistogram`]'s buckets, in microseconds: from a LAN's quarter
/// millisecond to the seconds a loaded WAN path can take, about two buckets per decade.
pub const RTT_BOUNDS_MICROS: [u64; 14] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000,
];

/// Round-trip samples counted into fixed buckets, so that the runtime can export them as a
/// histogram from a snapshot (the core keeps no clock of its own: each sample is the
/// difference of two `now`s it was given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RttHistogram {
    /// Samples per bucket, not cumulative: `counts[i]` holds those above bound `i - 1` up to
    /// [`RTT_BOUNDS_MICROS`]`[i]`; the last holds those above every bound.
    pub counts: [u64; RTT_BOUNDS_MICROS.len() + 1],
    /// The sum of every sample, in microseconds.
    pub sum_micros: u64,
}

impl RttHistogram {
    /// Counts one round trip.
    pub fn observe(&mut self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let i = RTT_BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }
}

/// Most events kept for a slow consumer.
const EVENTS_MAX: usize = 65_536;

/// Most bytes of events kept for a slow consumer (user events carry payloads, key/value
/// events keys): a consumer that stops polling costs at most this much.
pub(crate) const EVENTS_BYTES_MAX: usize = 16 << 20;

/// Bytes an event takes while queued, its heap parts included.
fn event_bytes(e: &Event) -> usize {
    let heap = match e {
        Event::User(u) => u.name.len() + u.payload.len(),
        Event::KvChanged { key, .. } => key.len(),
        Event::Joined(m)
        | Event::Recovered(m)
        | Event::Updated(m)
        | Event::Suspect(m)
        | Event::Dead(m)
        | Event::Left(m) => m.meta.len(),
    };
    std::mem::size_of::<Event>() + heap
}

/// Most queued outputs whose room a drained queue keeps.
const OUTPUTS_KEPT: usize = 64;

impl Swim {
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

    /// The next membership event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        match &e {
            Some(e) => self.events_bytes -= event_bytes(e),
            None => release_burst(&mut self.events),
        }
        e
    }

    pub(super) fn push_event(&mut self, event: Event) {
        let bytes = event_bytes(&event);
        while self.events.len() >= EVENTS_MAX
            || (self.events_bytes + bytes > EVENTS_BYTES_MAX && !self.events.is_empty())
        {
            let dropped = self.events.pop_front().expect("the queue is not empty");
            self.events_bytes -= event_bytes(&dropped);
            self.stats.events_dropped += 1;
        }
        self.events_bytes += bytes;
        self.events.push_back(event);
    }
}

/// Gives back the room a burst left in a drained output queue. A full-state reply from a
/// cluster of `n` yields up to `n` events at once; keeping that room in every node costs
/// `n²` (15 GB at 10,000 simulated nodes).
fn release_burst<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > OUTPUTS_KEPT {
        queue.shrink_to(OUTPUTS_KEPT);
    }
}
