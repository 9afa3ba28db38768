//! The harness for the scenario tests (`tests/scenario_*.rs`): one protocol core, fed crafted
//! datagrams and stream messages at chosen virtual times, its exact outputs collected.
//!
//! The harness is quinn-proto's `Pair` reduced to one side: time only moves by jumping to the
//! core's next deadline (`poll_timeout`), and peers named in `answer_datagrams` /
//! `answer_streams` answer Pings addressed to them at once, so that only the members a test
//! leaves silent fail their probes.
//!
//! Only the core's public API is used here, and no runtime: the core performs no I/O.
#![allow(dead_code)] // each test binary uses its own subset
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use quicswim_proto::protocol::codec::{
    decode_datagram, decode_stream, encode_datagram, encode_stream, encode_update, Accusation,
    Claim, MemberUpdate, Message, Packet, SignedEvent, StreamMessage, Update,
};
use quicswim_proto::protocol::kv::proof;
use quicswim_proto::protocol::signing::{Certificate, Keyring, Signature};
use quicswim_proto::protocol::{
    Config, Destination, Event, Incarnation, Member, NodeName, PeerError, State, Swim, Transmit,
    TransmitKind,
};
use quicswim_proto::protocol::{KvEntry, UserEvent};
use quicswim_proto::sim::SimAuthority;

pub const SEED: u64 = 7;
pub const PEERS: [&str; 5] = ["a", "b", "c", "d", "e"];
pub const NS: Duration = Duration::from_nanos(1);

pub fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("test names are DNS labels")
}

/// A fixed, distinct address per name used in these tests.
pub fn addr(s: &str) -> SocketAddr {
    let host = match s {
        "me" => 1,
        "a" => 2,
        "b" => 3,
        "c" => 4,
        "d" => 5,
        "e" => 6,
        "seed" => 7,
        "other" => 8,
        "zz" => 9,
        "f" => 10,
        // Not in `NAMES`: a member whose certificate the core does not hold at first.
        "g" => 11,
        other => panic!("no address for {other:?}"),
    };
    SocketAddr::from(([10, 0, 0, host], 7946))
}

/// Every name the tests use, each with a key the core holds the certificate of.
pub const NAMES: [&str; 10] = ["me", "a", "b", "c", "d", "e", "seed", "other", "zz", "f"];

/// The test cluster's keys (the simulator's authority: real Ed25519 keys from a seed).
pub fn authority() -> &'static Arc<SimAuthority> {
    static AUTHORITY: OnceLock<Arc<SimAuthority>> = OnceLock::new();
    AUTHORITY.get_or_init(|| SimAuthority::new(SEED))
}

/// The keyring of `who`, to sign as it would.
pub fn keys(who: &str) -> Arc<dyn Keyring> {
    authority().keyring(&name(who))
}

/// `who`'s own claim at `incarnation`, signed by `who`.
pub fn signed_claim(who: &str, incarnation: u64, left: bool) -> (Claim, Signature) {
    let claim = Claim {
        name: name(who),
        addr: addr(who),
        incarnation: Incarnation(incarnation),
        left,
        meta: Vec::new(),
    };
    let signature = keys(who).sign(&claim.signed_bytes());
    (claim, signature)
}

/// `accuser`'s signed accusation against `who` at `incarnation`.
pub fn accusation(who: &str, incarnation: u64, dead: bool, accuser: &str) -> Accusation {
    let bytes =
        Accusation::signed_bytes(&name(who), Incarnation(incarnation), dead, &name(accuser));
    Accusation {
        dead,
        accuser: name(accuser),
        signature: keys(accuser).sign(&bytes),
    }
}

/// A key/value entry signed by its owner (a batch of one).
pub fn signed_entry(owner: &str, key: &str, version: u64, value: Option<Vec<u8>>) -> KvEntry {
    let mut e = KvEntry {
        owner: name(owner),
        key: key.to_string(),
        version,
        value,
        sealed: None,
    };
    proof::seal(&*keys(owner), std::slice::from_mut(&mut e));
    e
}

/// A user event signed by its origin.
pub fn signed_event(event: UserEvent) -> SignedEvent {
    let origin = event.origin.to_string();
    SignedEvent {
        signature: keys(&origin).sign(&SignedEvent::signed_bytes(&event)),
        event,
    }
}

/// A record about `who` in `state`, signed as honest members sign it: the claim by `who`,
/// a Suspect or Dead by `accuser` ("a" when none is named).
pub fn claim(who: &str, incarnation: u64, state: State, accuser: Option<&str>) -> MemberUpdate {
    let (claim, signature) = signed_claim(who, incarnation, state == State::Left);
    let accusation = matches!(state, State::Suspect | State::Dead).then(|| {
        accusation(
            who,
            incarnation,
            state == State::Dead,
            accuser.unwrap_or("a"),
        )
    });
    MemberUpdate {
        claim,
        signature,
        accusation,
    }
}

pub fn alive(who: &str, incarnation: u64) -> MemberUpdate {
    claim(who, incarnation, State::Alive, None)
}

pub fn member(who: &str, incarnation: u64, state: State) -> Member {
    Member {
        name: name(who),
        addr: addr(who),
        incarnation: Incarnation(incarnation),
        state,
        meta: Vec::new(),
    }
}

pub fn datagram(message: &Message, updates: &[MemberUpdate]) -> Vec<u8> {
    let body: Vec<u8> = updates
        .iter()
        .flat_map(|u| encode_update(&Update::Member(u.clone())))
        .collect();
    encode_datagram(message, updates.len(), &body)
}

pub fn ping(seq: u64, target: &str, suspected: Option<u64>) -> Message {
    Message::Ping {
        seq,
        target: name(target),
        suspected: suspected.map(Incarnation),
    }
}

pub fn to(who: &str) -> Destination {
    Destination {
        addr: addr(who),
        name: Some(name(who)),
    }
}

pub fn packet(t: &Transmit) -> Packet {
    assert_eq!(t.kind, TransmitKind::Datagram, "{t:?}");
    decode_datagram(&t.payload).expect("the core's datagrams decode")
}

pub fn member_updates(p: &Packet) -> Vec<MemberUpdate> {
    p.updates
        .iter()
        .filter_map(|u| match u {
            Update::Member(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The members a gossip datagram tells of, in full or by digest, with the incarnation.
pub fn member_mentions(p: &Packet) -> Vec<(NodeName, Incarnation)> {
    p.updates
        .iter()
        .filter_map(|u| match u {
            Update::Member(m) => Some((m.claim.name.clone(), m.claim.incarnation)),
            Update::Digest(d) => Some((d.name.clone(), d.incarnation)),
            Update::Event(_) => None,
        })
        .collect()
}

/// `who`'s certificate as it travels.
pub fn certificate_of(who: &str) -> Certificate {
    Certificate {
        name: name(who),
        der: authority().certificate(&name(who)).to_vec(),
    }
}

/// The certificate requests `me` sent since the outputs were last taken (the other outputs
/// are dropped), by peer, with the names asked.
pub fn certificate_requests(h: &mut Harness) -> Vec<(String, Vec<String>)> {
    h.take_sent()
        .into_iter()
        .filter(|(_, t)| t.kind == TransmitKind::Request)
        .filter_map(|(_, t)| match decode_stream(&t.payload) {
            Ok(StreamMessage::CertificateRequest { names }) => Some((
                t.to.name.expect("asked by name").to_string(),
                names.iter().map(|n| n.to_string()).collect(),
            )),
            _ => None,
        })
        .collect()
}

/// Answers, as each peer asked would (with the certificates the authority issued), every
/// certificate request `me` sent since the outputs were last taken; the other outputs are
/// dropped. Returns the names asked, by peer.
pub fn answer_certificate_requests(h: &mut Harness) -> Vec<(String, Vec<String>)> {
    let asked = certificate_requests(h);
    for (peer, names) in &asked {
        let reply = StreamMessage::CertificateReply {
            certificates: names.iter().map(|n| certificate_of(n)).collect(),
        };
        h.stream(peer, &reply)
            .expect("a certificate reply is taken");
    }
    asked
}

/// Whether `me` has gossiped `who`'s whole record (not only its digest).
pub fn relayed_in_full(h: &Harness, who: &str) -> bool {
    h.sent
        .iter()
        .filter(|(_, t)| t.kind == TransmitKind::Datagram)
        .any(|(_, t)| {
            member_updates(&packet(t))
                .iter()
                .any(|u| u.claim.name == name(who))
        })
}

/// A membership-only full-state message, as a node with no keys or user events sends.
pub fn push_pull(join: bool, sender: &str, members: Vec<MemberUpdate>) -> StreamMessage {
    StreamMessage::PushPull {
        join,
        sender: name(sender),
        members,
        digest: Vec::new(),
        kv_digest: Vec::new(),
        events: Vec::new(),
        certificates: Vec::new(),
        revocation_ids: Vec::new(),
    }
}

pub fn push_pull_reply(members: Vec<MemberUpdate>) -> StreamMessage {
    StreamMessage::PushPullReply {
        members,
        wants: Vec::new(),
        kv_delta: Vec::new(),
        kv_digest: Vec::new(),
        events: Vec::new(),
        certificates: Vec::new(),
        revocations: Vec::new(),
        revocation_ids: Vec::new(),
    }
}

pub struct Harness {
    pub swim: Swim,
    pub t0: Instant,
    pub now: Instant,
    /// Peers that answer a datagram Ping addressed to them, at once.
    pub answer_datagrams: BTreeSet<NodeName>,
    /// Peers that answer a stream Ping addressed to them, at once.
    pub answer_streams: BTreeSet<NodeName>,
    /// What the core sent since the last `take_sent`, and when.
    pub sent: Vec<(Instant, Transmit)>,
    /// What the core reported since the last `take_events`, and when.
    pub events: Vec<(Instant, Event)>,
}

impl Harness {
    /// A node named `me` that started a cluster of its own.
    pub fn alone(config: Config) -> Self {
        let mut h = Self::unjoined(config);
        h.swim.join(h.now, &[]);
        assert!(h.swim.is_joined());
        h
    }

    pub fn unjoined(config: Config) -> Self {
        Self::unjoined_with_keyring(config, keys("me"))
    }

    /// [`Harness::unjoined`] with `keyring` as `me`'s (it must sign as `me`).
    pub fn unjoined_with_keyring(config: Config, keyring: Arc<dyn Keyring>) -> Self {
        let t0 = Instant::now();
        for who in NAMES {
            keyring
                .learn(&name(who), &authority().certificate(&name(who)))
                .expect("the authority's certificates are learned");
        }
        let swim = Swim::new(
            name("me"),
            addr("me"),
            Vec::new(),
            config.validate().expect("valid config"),
            SEED,
            t0,
            keyring,
        )
        .expect("empty metadata");
        Self {
            swim,
            t0,
            now: t0,
            answer_datagrams: BTreeSet::new(),
            answer_streams: BTreeSet::new(),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    /// `me` knowing [`PEERS`], all Alive at incarnation 0 and answering probes; what it takes
    /// to get there is discarded.
    pub fn with_peers(config: Config) -> Self {
        let mut h = Self::alone(config);
        let all: Vec<MemberUpdate> = PEERS.iter().map(|p| alive(p, 0)).collect();
        h.gossip("a", &all).expect("valid datagram");
        for p in PEERS {
            h.answer_datagrams.insert(name(p));
            h.answer_streams.insert(name(p));
        }
        h.take_sent();
        h.take_events();
        h
    }

    /// Every peer reported connected, so no gossip pick waits behind a dial.
    pub fn connect_all(&mut self) {
        for p in PEERS {
            self.swim.handle_peer_up(self.now, &name(p));
        }
    }

    /// Runs, deadline by deadline, until nothing is queued to gossip.
    pub fn drain_news(&mut self) {
        self.run_until_true(Duration::from_secs(60), "the queue drained", |h| {
            h.swim.pending_broadcasts() == 0
        });
    }

    /// Fires deadlines one at a time until `done` holds, failing if that takes longer than
    /// `bound` of virtual time.
    pub fn run_until_true(&mut self, bound: Duration, what: &str, done: impl Fn(&Harness) -> bool) {
        self.run_stepping(bound, what, done, |_| {});
    }

    /// As [`run_until_true`](Self::run_until_true), with the helpers alive: each PingReq
    /// the core sends is Nacked at once (its target does not answer them either). A probe
    /// with every Nack missing accuses nobody, so a silent member is only suspected when
    /// its helpers are heard.
    pub fn run_until_true_nacking(
        &mut self,
        bound: Duration,
        what: &str,
        done: impl Fn(&Harness) -> bool,
    ) {
        let mut nacked = self
            .sent_messages(|m| matches!(m, Message::PingReq { .. }))
            .len();
        self.run_stepping(bound, what, done, |h| {
            let reqs = h.sent_messages(|m| matches!(m, Message::PingReq { .. }));
            for (_, t, p) in reqs.iter().skip(nacked) {
                let helper = t.to.name.clone().expect("helpers are known by name");
                if let Message::PingReq { seq, .. } = p.message {
                    h.send(helper.as_str(), &Message::Nack { seq }, &[]);
                }
            }
            nacked = reqs.len();
        });
    }

    /// Fires deadlines one at a time, calling `after_each` after every one, until `done`
    /// holds; fails if that takes longer than `bound` of virtual time.
    fn run_stepping(
        &mut self,
        bound: Duration,
        what: &str,
        done: impl Fn(&Harness) -> bool,
        mut after_each: impl FnMut(&mut Harness),
    ) {
        let deadline = self.now + bound;
        while !done(self) {
            let at = self
                .swim
                .poll_timeout()
                .unwrap_or_else(|| panic!("no deadline left, and not yet: {what}"));
            assert!(at <= deadline, "not within {bound:?}: {what}");
            self.run_until(at);
            after_each(self);
        }
    }

    /// No peer answers any probe.
    pub fn silence_all(&mut self) {
        for p in PEERS {
            self.silence(p);
        }
    }

    pub fn silence(&mut self, who: &str) {
        self.answer_datagrams.remove(&name(who));
        self.answer_streams.remove(&name(who));
    }

    pub fn deliver(&mut self, from: &str, bytes: &[u8]) -> Result<(), PeerError> {
        let r = self
            .swim
            .handle_datagram(self.now, &name(from), addr(from), bytes);
        self.pump();
        r
    }

    pub fn send(&mut self, from: &str, message: &Message, updates: &[MemberUpdate]) {
        self.deliver(from, &datagram(message, updates))
            .expect("valid datagram is accepted");
    }

    pub fn gossip(&mut self, from: &str, updates: &[MemberUpdate]) -> Result<(), PeerError> {
        self.deliver(from, &datagram(&Message::Gossip, updates))
    }

    pub fn stream(&mut self, from: &str, m: &StreamMessage) -> Result<Option<Vec<u8>>, PeerError> {
        // Replies go where the runtime delivers them: to the stream this node opened.
        let bytes = encode_stream(m);
        let r = match m {
            StreamMessage::PushPullReply { .. }
            | StreamMessage::Ack { .. }
            | StreamMessage::KvPushAck
            | StreamMessage::CertificateReply { .. }
            | StreamMessage::RecordReply { .. }
            | StreamMessage::KvSyncReply { .. } => self
                .swim
                .handle_stream_reply(self.now, &name(from), &bytes)
                .map(|()| None),
            _ => self
                .swim
                .handle_stream_request(self.now, &name(from), &bytes),
        };
        self.pump();
        r
    }

    /// Collects outputs, answering Pings for the peers that answer.
    pub fn pump(&mut self) {
        while let Some(t) = self.swim.poll_transmit() {
            let peer = t.to.name.clone();
            let answers = |set: &BTreeSet<NodeName>| peer.as_ref().is_some_and(|p| set.contains(p));
            match t.kind {
                TransmitKind::Datagram if answers(&self.answer_datagrams) => {
                    if let Message::Ping { seq, target, .. } = packet(&t).message {
                        if Some(&target) == peer.as_ref() {
                            let ack = datagram(&Message::Ack { seq }, &[]);
                            self.swim
                                .handle_datagram(self.now, &target, t.to.addr, &ack)
                                .expect("ack is accepted");
                        }
                    }
                }
                TransmitKind::Request if answers(&self.answer_streams) => {
                    let request = decode_stream(&t.payload).expect("requests decode");
                    let (from, answer) = match request {
                        StreamMessage::Ping { seq, target, .. } => {
                            (target, StreamMessage::Ack { seq })
                        }
                        // A peer with nothing to add and wanting nothing.
                        StreamMessage::KvSync { .. } => (
                            peer.clone().expect("rounds go to members by name"),
                            StreamMessage::KvSyncReply {
                                delta: Vec::new(),
                                wants: Vec::new(),
                            },
                        ),
                        _ => {
                            self.sent.push((self.now, t));
                            continue;
                        }
                    };
                    self.swim
                        .handle_stream_reply(self.now, &from, &encode_stream(&answer))
                        .expect("answer is accepted");
                }
                _ => {}
            }
            self.sent.push((self.now, t));
        }
        while let Some(e) = self.swim.poll_event() {
            self.events.push((self.now, e));
        }
    }

    /// Fires every deadline up to `until`, one at a time, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(at) = self.swim.poll_timeout().filter(|&at| at <= until) {
            assert!(at >= self.now, "deadline {at:?} in the past");
            self.now = at;
            self.swim.handle_timeout(at);
            self.pump();
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    pub fn take_sent(&mut self) -> Vec<(Instant, Transmit)> {
        std::mem::take(&mut self.sent)
    }

    pub fn take_events(&mut self) -> Vec<(Instant, Event)> {
        std::mem::take(&mut self.events)
    }

    /// The datagrams sent so far whose message matches, with when.
    pub fn sent_messages(
        &self,
        pred: impl Fn(&Message) -> bool,
    ) -> Vec<(Instant, Transmit, Packet)> {
        self.sent
            .iter()
            .filter(|(_, t)| t.kind == TransmitKind::Datagram)
            .map(|(at, t)| (*at, t.clone(), packet(t)))
            .filter(|(_, _, p)| pred(&p.message))
            .collect()
    }

    /// Every member, sorted by name, for before/after comparisons.
    pub fn table(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self.swim.members().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn state_of(&self, who: &str) -> Option<(u64, State)> {
        self.swim
            .member(&name(who))
            .map(|m| (m.incarnation.0, m.state))
    }

    /// Events about `who`, with when.
    pub fn events_about(&self, who: &str) -> Vec<(Instant, Event)> {
        let who = name(who);
        self.events
            .iter()
            .filter(|(_, e)| e.member().is_some_and(|m| m.name == who))
            .cloned()
            .collect()
    }
}

/// Runs until `me` sends its first probe; returns when, the target and the seq.
pub fn first_probe(h: &mut Harness) -> (Instant, NodeName, u64) {
    for _ in 0..1000 {
        let at = h.swim.poll_timeout().expect("timers are set");
        h.run_until(at);
        if let Some((at, t, p)) = h
            .sent_messages(|m| matches!(m, Message::Ping { .. }))
            .into_iter()
            .next()
        {
            let Message::Ping { seq, target, .. } = p.message else {
                unreachable!()
            };
            assert_eq!(t.to, to(target.as_str()));
            return (at, target, seq);
        }
    }
    panic!("no probe sent");
}
