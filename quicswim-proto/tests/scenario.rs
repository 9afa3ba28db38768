//! Scenario tests on one protocol core: crafted datagrams and stream messages at chosen
//! virtual times, exact outputs asserted.
//!
//! The harness is quinn-proto's `Pair` reduced to one side: time only moves by jumping to the
//! core's next deadline (`poll_timeout`), and peers named in `answer_datagrams` /
//! `answer_streams` answer Pings addressed to them at once, so that only the members a test
//! leaves silent fail their probes.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quicswim_proto::protocol::codec::{
    decode_datagram, decode_stream, encode_datagram, encode_stream, encode_update, MemberUpdate,
    Message, Packet, StreamMessage, Update, WIRE_VERSION,
};
use quicswim_proto::protocol::member::META_LEN_MAX;
use quicswim_proto::protocol::{
    Config, DecodeError, Destination, Event, Incarnation, Member, NodeName, PeerError, State, Swim,
    Transmit, TransmitKind,
};

const SEED: u64 = 7;
const PEERS: [&str; 5] = ["a", "b", "c", "d", "e"];
const NS: Duration = Duration::from_nanos(1);

fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("test names are DNS labels")
}

/// A fixed, distinct address per name used in these tests.
fn addr(s: &str) -> SocketAddr {
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
        other => panic!("no address for {other:?}"),
    };
    SocketAddr::from(([10, 0, 0, host], 7946))
}

fn claim(who: &str, incarnation: u64, state: State, accuser: Option<&str>) -> MemberUpdate {
    MemberUpdate {
        name: name(who),
        addr: addr(who),
        incarnation: Incarnation(incarnation),
        state,
        meta: Vec::new(),
        accuser: accuser.map(name),
    }
}

fn alive(who: &str, incarnation: u64) -> MemberUpdate {
    claim(who, incarnation, State::Alive, None)
}

fn member(who: &str, incarnation: u64, state: State) -> Member {
    Member {
        name: name(who),
        addr: addr(who),
        incarnation: Incarnation(incarnation),
        state,
        meta: Vec::new(),
    }
}

fn datagram(message: &Message, updates: &[MemberUpdate]) -> Vec<u8> {
    let body: Vec<u8> = updates
        .iter()
        .flat_map(|u| encode_update(&Update::Member(u.clone())))
        .collect();
    encode_datagram(message, updates.len(), &body)
}

fn ping(seq: u32, target: &str, suspected: Option<u64>) -> Message {
    Message::Ping {
        seq,
        target: name(target),
        suspected: suspected.map(Incarnation),
    }
}

fn to(who: &str) -> Destination {
    Destination {
        addr: addr(who),
        name: Some(name(who)),
    }
}

fn packet(t: &Transmit) -> Packet {
    assert_eq!(t.kind, TransmitKind::Datagram, "{t:?}");
    decode_datagram(&t.payload).expect("the core's datagrams decode")
}

fn member_updates(p: &Packet) -> Vec<MemberUpdate> {
    p.updates
        .iter()
        .filter_map(|u| match u {
            Update::Member(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// A membership-only full-state message, as a node with no keys or user events sends.
fn push_pull(join: bool, sender: &str, members: Vec<MemberUpdate>) -> StreamMessage {
    StreamMessage::PushPull {
        join,
        sender: name(sender),
        members,
        kv_digest: Vec::new(),
        events: Vec::new(),
    }
}

fn push_pull_reply(members: Vec<MemberUpdate>) -> StreamMessage {
    StreamMessage::PushPullReply {
        members,
        kv_delta: Vec::new(),
        kv_digest: Vec::new(),
        events: Vec::new(),
    }
}

struct Harness {
    swim: Swim,
    t0: Instant,
    now: Instant,
    /// Peers that answer a datagram Ping addressed to them, at once.
    answer_datagrams: BTreeSet<NodeName>,
    /// Peers that answer a stream Ping addressed to them, at once.
    answer_streams: BTreeSet<NodeName>,
    /// What the core sent since the last `take_sent`, and when.
    sent: Vec<(Instant, Transmit)>,
    /// What the core reported since the last `take_events`, and when.
    events: Vec<(Instant, Event)>,
}

impl Harness {
    /// A node named `me` that started a cluster of its own.
    fn alone(config: Config) -> Self {
        let mut h = Self::unjoined(config);
        h.swim.join(h.now, &[]);
        assert!(h.swim.is_joined());
        h
    }

    fn unjoined(config: Config) -> Self {
        let t0 = Instant::now();
        let swim =
            Swim::new(name("me"), addr("me"), Vec::new(), config, SEED, t0).expect("valid config");
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
    fn with_peers(config: Config) -> Self {
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
    fn connect_all(&mut self) {
        for p in PEERS {
            self.swim.handle_peer_up(self.now, &name(p));
        }
    }

    /// Runs, deadline by deadline, until nothing is queued to gossip.
    fn drain_news(&mut self) {
        self.run_until_true(Duration::from_secs(60), "the queue drained", |h| {
            h.swim.pending_broadcasts() == 0
        });
    }

    /// Fires deadlines one at a time until `done` holds, failing if that takes longer than
    /// `bound` of virtual time.
    fn run_until_true(&mut self, bound: Duration, what: &str, done: impl Fn(&Harness) -> bool) {
        let deadline = self.now + bound;
        while !done(self) {
            let at = self
                .swim
                .poll_timeout()
                .unwrap_or_else(|| panic!("no deadline left, and not yet: {what}"));
            assert!(at <= deadline, "not within {bound:?}: {what}");
            self.run_until(at);
        }
    }

    /// No peer answers any probe.
    fn silence_all(&mut self) {
        for p in PEERS {
            self.silence(p);
        }
    }

    fn silence(&mut self, who: &str) {
        self.answer_datagrams.remove(&name(who));
        self.answer_streams.remove(&name(who));
    }

    fn deliver(&mut self, from: &str, bytes: &[u8]) -> Result<(), PeerError> {
        let r = self
            .swim
            .handle_datagram(self.now, &name(from), addr(from), bytes);
        self.pump();
        r
    }

    fn send(&mut self, from: &str, message: &Message, updates: &[MemberUpdate]) {
        self.deliver(from, &datagram(message, updates))
            .expect("valid datagram is accepted");
    }

    fn gossip(&mut self, from: &str, updates: &[MemberUpdate]) -> Result<(), PeerError> {
        self.deliver(from, &datagram(&Message::Gossip, updates))
    }

    fn stream(&mut self, from: &str, m: &StreamMessage) -> Result<Option<Vec<u8>>, PeerError> {
        let r = self
            .swim
            .handle_stream_message(self.now, &name(from), &encode_stream(m));
        self.pump();
        r
    }

    /// Collects outputs, answering Pings for the peers that answer.
    fn pump(&mut self) {
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
                    let reply = self
                        .swim
                        .handle_stream_message(self.now, &from, &encode_stream(&answer))
                        .expect("answer is accepted");
                    assert_eq!(reply, None, "an answer is a reply, not a request");
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
    fn run_until(&mut self, until: Instant) {
        while let Some(at) = self.swim.poll_timeout().filter(|&at| at <= until) {
            assert!(at >= self.now, "deadline {at:?} in the past");
            self.now = at;
            self.swim.handle_timeout(at);
            self.pump();
        }
        self.now = until;
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn take_sent(&mut self) -> Vec<(Instant, Transmit)> {
        std::mem::take(&mut self.sent)
    }

    fn take_events(&mut self) -> Vec<(Instant, Event)> {
        std::mem::take(&mut self.events)
    }

    /// The datagrams sent so far whose message matches, with when.
    fn sent_messages(&self, pred: impl Fn(&Message) -> bool) -> Vec<(Instant, Transmit, Packet)> {
        self.sent
            .iter()
            .filter(|(_, t)| t.kind == TransmitKind::Datagram)
            .map(|(at, t)| (*at, t.clone(), packet(t)))
            .filter(|(_, _, p)| pred(&p.message))
            .collect()
    }

    /// Every member, sorted by name, for before/after comparisons.
    fn table(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self.swim.members().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn state_of(&self, who: &str) -> Option<(u64, State)> {
        self.swim
            .member(&name(who))
            .map(|m| (m.incarnation.0, m.state))
    }

    /// Events about `who`, with when.
    fn events_about(&self, who: &str) -> Vec<(Instant, Event)> {
        let who = name(who);
        self.events
            .iter()
            .filter(|(_, e)| e.member().is_some_and(|m| m.name == who))
            .cloned()
            .collect()
    }
}

fn is_dead(e: &Event) -> bool {
    matches!(e, Event::Dead(_))
}

// ------------------------------------------------------------------------------- pings

#[test]
fn ping_for_us_gets_exactly_one_ack_with_its_seq() {
    let mut h = Harness::with_peers(Config::lan());
    h.send("a", &ping(42, "me", None), &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (at, t) = &sent[0];
    assert_eq!(*at, h.now, "answered at once");
    assert_eq!(t.to, to("a"));
    assert_eq!(packet(t).message, Message::Ack { seq: 42 });
    assert_eq!(h.swim.stats().datagrams_in, 2);
}

#[test]
fn ping_for_another_target_is_ignored() {
    let mut h = Harness::with_peers(Config::lan());
    let before = h.table();
    // A Ping meant for whoever had this address before.
    h.send("a", &ping(42, "zz", None), &[]);
    assert!(h.take_sent().is_empty());
    assert!(h.take_events().is_empty());
    assert_eq!(h.table(), before);
}

#[test]
fn ping_carrying_a_suspicion_of_us_is_refuted_on_the_ack() {
    let mut h = Harness::with_peers(Config::lan());
    h.send("a", &ping(3, "me", Some(0)), &[]);
    assert_eq!(h.swim.local_member().incarnation, Incarnation(1));
    assert_eq!(h.swim.stats().refutations, 1);
    // Lifeguard: having to refute says we may be the slow one.
    assert_eq!(h.swim.health_score(), 1);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let p = packet(&sent[0].1);
    assert_eq!(sent[0].1.to, to("a"));
    assert_eq!(p.message, Message::Ack { seq: 3 });
    assert_eq!(
        member_updates(&p).first(),
        Some(&alive("me", 1)),
        "the refutation rides first on the Ack"
    );
}

#[test]
fn ping_from_a_member_that_missed_our_refutation_carries_it_again() {
    let mut h = Harness::with_peers(Config::lan());
    h.send("a", &ping(3, "me", Some(0)), &[]);
    // Send the refutation until it leaves the queue, as if every copy was lost on the way to b.
    h.run_for(Duration::from_secs(30));
    h.take_sent();
    assert_eq!(h.swim.local_member().incarnation, Incarnation(1));

    h.send("b", &ping(9, "me", Some(0)), &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let p = packet(&sent[0].1);
    assert_eq!(sent[0].1.to, to("b"));
    assert_eq!(p.message, Message::Ack { seq: 9 });
    assert_eq!(member_updates(&p).first(), Some(&alive("me", 1)));
    assert_eq!(
        h.swim.local_member().incarnation,
        Incarnation(1),
        "a stale suspicion is not refuted again"
    );
    assert_eq!(h.swim.stats().refutations, 1);
}

#[test]
fn stream_ping_for_us_is_answered_and_one_for_another_is_not() {
    let mut h = Harness::with_peers(Config::lan());
    let ours = StreamMessage::Ping {
        seq: 5,
        target: name("me"),
        suspected: None,
    };
    let reply = h.stream("a", &ours).expect("accepted").expect("a reply");
    assert_eq!(decode_stream(&reply), Ok(StreamMessage::Ack { seq: 5 }));
    let theirs = StreamMessage::Ping {
        seq: 6,
        target: name("zz"),
        suspected: None,
    };
    assert_eq!(h.stream("a", &theirs), Ok(None));
    assert!(h.take_sent().is_empty());
}

// ------------------------------------------------------------------------------- probes

/// Runs until `me` sends its first probe; returns when, the target and the seq.
fn first_probe(h: &mut Harness) -> (Instant, NodeName, u32) {
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

#[test]
fn unanswered_probe_asks_indirect_checks_then_suspects_at_the_next_period() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (probed_at, target, seq) = first_probe(&mut h);
    let tgt = target.as_str().to_owned();
    h.take_sent();

    h.run_until(probed_at + config.probe_timeout - NS);
    assert!(
        h.sent_messages(|m| matches!(m, Message::PingReq { .. }))
            .is_empty(),
        "no PingReq before probe_timeout"
    );
    assert!(h.sent.iter().all(|(_, t)| t.kind == TransmitKind::Datagram));

    h.run_until(probed_at + config.probe_timeout);
    let reqs = h.sent_messages(|m| matches!(m, Message::PingReq { .. }));
    assert_eq!(reqs.len(), config.indirect_checks, "{reqs:?}");
    let mut helpers = BTreeSet::new();
    for (at, t, p) in &reqs {
        assert_eq!(*at, probed_at + config.probe_timeout);
        assert_eq!(
            p.message,
            Message::PingReq {
                seq,
                target: target.clone(),
                target_addr: addr(&tgt),
            }
        );
        let helper = t.to.name.clone().expect("helpers are known by name");
        assert_ne!(helper, target, "the target is not its own helper");
        assert_eq!(t.to.addr, addr(helper.as_str()));
        helpers.insert(helper);
    }
    assert_eq!(helpers.len(), config.indirect_checks, "distinct helpers");
    // The same probe on a stream, to the target itself.
    let streams: Vec<&Transmit> = h
        .sent
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.kind == TransmitKind::Request)
        .collect();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0].to, to(&tgt));
    assert_eq!(
        decode_stream(&streams[0].payload),
        Ok(StreamMessage::Ping {
            seq,
            target: target.clone(),
            suspected: None,
        })
    );

    h.run_until(probed_at + config.probe_interval - NS);
    assert!(h.events_about(&tgt).is_empty());
    assert_eq!(h.state_of(&tgt), Some((0, State::Alive)));

    h.run_until(probed_at + config.probe_interval);
    assert_eq!(
        h.events_about(&tgt),
        vec![(
            probed_at + config.probe_interval,
            Event::Suspect(member(&tgt, 0, State::Suspect))
        )]
    );
    let s = h.swim.stats();
    assert_eq!(
        (
            s.probes_failed,
            s.indirect_probes_sent,
            s.stream_probes_sent,
            s.suspicions_raised
        ),
        (1, 3, 1, 1)
    );
    // Lifeguard: three Nacks owed and none came, so the fault may be ours.
    assert_eq!(h.swim.health_score(), 3);
    // The suspicion is gossiped, naming us as the accuser.
    h.run_for(config.gossip_interval);
    let suspicion = claim(&tgt, 0, State::Suspect, Some("me"));
    assert!(
        h.sent_messages(|_| true)
            .iter()
            .any(|(at, _, p)| *at >= probed_at + config.probe_interval
                && member_updates(p).contains(&suspicion)),
        "suspicion not gossiped"
    );
}

#[test]
fn probe_answered_only_on_the_stream_raises_no_suspicion() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    for p in PEERS {
        // Every datagram to a peer is lost; streams get through.
        h.answer_datagrams.remove(&name(p));
    }
    let (probed_at, target, _) = first_probe(&mut h);
    h.run_until(probed_at + config.probe_interval * 10);
    let suspects: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Suspect(_)))
        .collect();
    assert!(suspects.is_empty(), "{suspects:?}");
    let s = h.swim.stats();
    assert_eq!(s.suspicions_raised, 0);
    assert!(s.stream_probes_sent >= 1, "{s:?}");
    assert_eq!(h.state_of(target.as_str()), Some((0, State::Alive)));
}

// ------------------------------------------------------------------------------- relays

#[test]
fn ping_req_pings_the_target_and_forwards_its_ack() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence("b");
    let req = Message::PingReq {
        seq: 7,
        target: name("b"),
        target_addr: addr("b"),
    };
    h.send("a", &req, &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.to, to("b"));
    let Message::Ping {
        seq: our_seq,
        target,
        suspected,
    } = packet(&sent[0].1).message
    else {
        panic!("expected a Ping: {sent:?}");
    };
    assert_eq!((target, suspected), (name("b"), None));

    h.send("b", &Message::Ack { seq: our_seq }, &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.to, to("a"));
    assert_eq!(packet(&sent[0].1).message, Message::Ack { seq: 7 });

    // Answered: no Nack follows.
    h.run_for(config.probe_timeout * 2);
    assert!(h
        .sent_messages(|m| matches!(m, Message::Nack { .. }))
        .is_empty());
}

#[test]
fn ping_req_without_ack_is_nacked_after_probe_timeout() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence("b");
    let asked_at = h.now;
    let req = Message::PingReq {
        seq: 7,
        target: name("b"),
        target_addr: addr("b"),
    };
    h.send("a", &req, &[]);
    let relayed = h.sent_messages(|m| matches!(m, Message::Ping { .. }));
    let Message::Ping { seq: our_seq, .. } = relayed[0].2.message else {
        unreachable!()
    };
    h.run_until(asked_at + config.probe_timeout - NS);
    assert!(h
        .sent_messages(|m| matches!(m, Message::Nack { .. }))
        .is_empty());
    h.run_until(asked_at + config.probe_timeout);
    let nacks = h.sent_messages(|m| matches!(m, Message::Nack { .. }));
    assert_eq!(nacks.len(), 1, "{nacks:?}");
    let (at, t, p) = &nacks[0];
    assert_eq!(*at, asked_at + config.probe_timeout);
    assert_eq!(t.to, to("a"));
    assert_eq!(p.message, Message::Nack { seq: 7 });
    // A late Ack is not forwarded: the relay is over.
    h.take_sent();
    h.send("b", &Message::Ack { seq: our_seq }, &[]);
    assert!(h.take_sent().is_empty());
}

#[test]
fn ping_req_for_ourselves_is_ignored() {
    let mut h = Harness::with_peers(Config::lan());
    let req = Message::PingReq {
        seq: 7,
        target: name("me"),
        target_addr: addr("me"),
    };
    h.send("a", &req, &[]);
    assert!(h.take_sent().is_empty());
}

// ------------------------------------------------------------------------------- suspicion

/// With `me` and five peers, n = 6: min = 4 · max(1, log10 6) · 1 s = 4 s, max = 6 · min =
/// 24 s, and k = suspicion_mult − 2 = 2 confirmations bring the timeout down to the min.
const MIN: Duration = Duration::from_secs(4);
const MAX: Duration = Duration::from_secs(24);

/// Gossips a suspicion of `e` from each accuser in turn at one instant; returns when `e` was
/// declared Dead (`None` if not within `MAX` plus a second).
fn dead_after(accusers: &[&str]) -> (Instant, Option<Instant>, Harness) {
    let mut h = Harness::with_peers(Config::lan());
    let suspected_at = h.now;
    for a in accusers {
        h.gossip(a, &[claim("e", 0, State::Suspect, Some(a))])
            .expect("valid datagram");
    }
    let suspects: Vec<_> = h
        .events_about("e")
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::Suspect(_)))
        .collect();
    assert_eq!(suspects.len(), 1, "one suspicion, then confirmations");
    h.run_until(suspected_at + MAX + Duration::from_secs(1));
    let dead = h
        .events_about("e")
        .into_iter()
        .find(|(_, e)| is_dead(e))
        .map(|(at, _)| at);
    (suspected_at, dead, h)
}

#[test]
fn unconfirmed_suspect_is_dead_at_the_max_timeout() {
    let (at, dead, h) = dead_after(&["a"]);
    assert_eq!(dead, Some(at + MAX));
    assert_eq!(h.state_of("e"), Some((0, State::Dead)));
    assert_eq!(
        h.events_about("e").last(),
        Some(&(at + MAX, Event::Dead(member("e", 0, State::Dead))))
    );
}

#[test]
fn one_confirmation_shortens_the_timeout_by_the_lifeguard_formula() {
    let (at, dead, _) = dead_after(&["a", "b"]);
    // max − (max − min) · log(C + 1) / log(k + 1) with C = 1, k = 2.
    let expected = MAX.as_secs_f64() - (MAX - MIN).as_secs_f64() * 2f64.ln() / 3f64.ln();
    let dead = dead.expect("declared Dead").duration_since(at);
    assert!(
        (dead.as_secs_f64() - expected).abs() < 1e-6,
        "dead after {dead:?}, expected {expected} s"
    );
}

#[test]
fn our_own_failed_probe_of_a_suspect_confirms_the_suspicion() {
    let mut h = Harness::with_peers(Config::lan());
    h.silence("e");
    let suspected_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .expect("valid datagram");
    h.run_until(suspected_at + MAX + Duration::from_secs(1));
    let dead = h
        .events_about("e")
        .into_iter()
        .find(|(_, e)| is_dead(e))
        .map(|(at, _)| at)
        .expect("declared Dead");
    // Our probe pass reaches e within five periods and fails: a second accuser, so the
    // timeout drops to max - (max - min) * log 2 / log 3, counted from the suspicion.
    let one_confirmation = MAX - (MAX - MIN).mul_f64(2f64.ln() / 3f64.ln());
    assert!(
        dead <= suspected_at + one_confirmation + Duration::from_millis(1),
        "dead after {:?}",
        dead - suspected_at
    );
    // ... and the accusation went out as gossip, for the others to count.
    let accused = h
        .sent_messages(|_| true)
        .into_iter()
        .any(|(_, _, p)| member_updates(&p).contains(&claim("e", 0, State::Suspect, Some("me"))));
    assert!(accused, "our confirmation was not gossiped");
}

#[test]
fn a_repeated_accuser_is_not_a_confirmation() {
    let (at, dead, _) = dead_after(&["a", "a", "a"]);
    assert_eq!(dead, Some(at + MAX));
}

#[test]
fn k_independent_confirmations_reach_the_min_and_no_lower() {
    let (at, dead, _) = dead_after(&["a", "b", "c"]);
    assert_eq!(dead, Some(at + MIN));
    // More accusers than k do not go below the min.
    let (at, dead, _) = dead_after(&["a", "b", "c", "d"]);
    assert_eq!(dead, Some(at + MIN));
}

#[test]
fn late_confirmation_past_the_new_deadline_kills_at_once() {
    let mut h = Harness::with_peers(Config::lan());
    let suspected_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .unwrap();
    h.run_until(suspected_at + Duration::from_secs(10));
    h.gossip("b", &[claim("e", 0, State::Suspect, Some("b"))])
        .unwrap();
    h.gossip("c", &[claim("e", 0, State::Suspect, Some("c"))])
        .unwrap();
    // The deadline is now suspected_at + MIN, already past: Dead at the next wake-up, which
    // is now.
    assert_eq!(h.swim.poll_timeout(), Some(h.now));
    let confirmed_at = h.now;
    h.run_until(confirmed_at);
    let dead: Vec<_> = h
        .events_about("e")
        .into_iter()
        .filter(|(_, e)| is_dead(e))
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, confirmed_at);
}

#[test]
fn suspect_refuting_at_a_higher_incarnation_recovers_and_stays_alive() {
    let mut h = Harness::with_peers(Config::lan());
    let suspected_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .unwrap();
    h.run_until(suspected_at + Duration::from_secs(2));
    h.gossip("b", &[alive("e", 1)]).unwrap();
    assert_eq!(h.state_of("e"), Some((1, State::Alive)));
    assert_eq!(
        h.events_about("e")
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>(),
        vec![
            Event::Suspect(member("e", 0, State::Suspect)),
            Event::Recovered(member("e", 1, State::Alive)),
        ]
    );
    // The old suspicion's timer outlives it and does nothing.
    h.run_until(suspected_at + MAX * 2);
    assert_eq!(h.state_of("e"), Some((1, State::Alive)));
    assert_eq!(h.events_about("e").len(), 2);
}

#[test]
fn alive_at_the_suspected_incarnation_does_not_clear_a_suspicion() {
    let mut h = Harness::with_peers(Config::lan());
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .unwrap();
    h.gossip("b", &[alive("e", 0)]).unwrap();
    assert_eq!(h.state_of("e"), Some((0, State::Suspect)));
}

// ------------------------------------------------------------------------------- leaving

#[test]
fn graceful_leave_sends_left_to_every_member_and_stops_timers() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.swim.leave(h.now);
    h.pump();
    assert_eq!(h.swim.local_member().state, State::Left);
    let sent = h.take_sent();
    let left = claim("me", 0, State::Left, None);
    // A datagram carrying the Left claim to every member (up to a fan-out of 16)...
    let mut reached = BTreeSet::new();
    for (_, t) in sent
        .iter()
        .filter(|(_, t)| t.kind == TransmitKind::Datagram)
    {
        let p = packet(t);
        assert_eq!(p.message, Message::Gossip);
        assert!(member_updates(&p).contains(&left), "no Left in {p:?}");
        assert!(reached.insert(t.to.name.clone().expect("members are known by name")));
    }
    assert_eq!(reached, PEERS.iter().map(|p| name(p)).collect());
    // ...and to gossip_nodes of them the full state on a stream, which is not lost.
    let requests: Vec<&Transmit> = sent
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.kind == TransmitKind::Request)
        .collect();
    assert_eq!(requests.len(), config.gossip_nodes);
    for t in requests {
        assert!(reached.contains(t.to.name.as_ref().expect("by name")));
        match decode_stream(&t.payload) {
            Ok(StreamMessage::PushPull {
                join: false,
                members,
                ..
            }) => assert!(members.contains(&left), "{members:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.swim.poll_timeout(), None, "timers stopped");
    h.swim.handle_timeout(h.now + Duration::from_secs(3600));
    h.pump();
    assert!(h.take_sent().is_empty());
    // Probes to a node that left go unanswered.
    h.send("a", &ping(1, "me", None), &[]);
    assert!(h.take_sent().is_empty());
}

#[test]
fn member_that_leaves_is_left_not_dead() {
    let mut h = Harness::with_peers(Config::lan());
    h.gossip("e", &[claim("e", 0, State::Left, None)]).unwrap();
    assert_eq!(h.state_of("e"), Some((0, State::Left)));
    assert_eq!(
        h.take_events()
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>(),
        vec![Event::Left(member("e", 0, State::Left))]
    );
}

// ------------------------------------------------------------------------------- refusals

#[test]
fn push_pull_naming_another_sender_is_refused_and_changes_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    let before = h.table();
    let stats = h.swim.stats();
    let forged = push_pull(
        false,
        "b",
        vec![alive("zz", 0), claim("c", 3, State::Dead, None)],
    );
    assert_eq!(
        h.stream("a", &forged),
        Err(PeerError::NameMismatch {
            peer: name("a"),
            claimed: Box::new(name("b")),
        })
    );
    assert_eq!(h.table(), before);
    assert!(h.take_sent().is_empty());
    assert!(h.take_events().is_empty());
    let after = h.swim.stats();
    assert_eq!(after.name_mismatches, stats.name_mismatches + 1);
    assert_eq!(after.push_pulls_answered, stats.push_pulls_answered);
}

#[test]
fn malformed_datagrams_are_refused_and_change_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    // A datagram that would add a member and kill another, then spoiled in several ways.
    let good = datagram(
        &ping(1, "me", Some(0)),
        &[alive("zz", 0), claim("c", 5, State::Dead, None)],
    );
    let mut trailing = good.clone();
    trailing.push(0);
    let mut version = good.clone();
    version[0] = WIRE_VERSION + 1;
    let mut big_meta = alive("zz", 0);
    big_meta.meta = vec![0; META_LEN_MAX + 1];
    type Case = (&'static str, Vec<u8>, fn(&DecodeError) -> bool);
    let cases: Vec<Case> = vec![
        ("empty", Vec::new(), |e| *e == DecodeError::Empty),
        ("version", version, |e| {
            *e == DecodeError::UnknownVersion(WIRE_VERSION + 1)
        }),
        ("truncated", good[..good.len() - 3].to_vec(), |e| {
            matches!(e, DecodeError::Malformed(_))
        }),
        ("trailing", trailing, |e| {
            *e == DecodeError::TrailingBytes(1)
        }),
        (
            "metadata",
            datagram(&Message::Gossip, &[alive("d", 9), big_meta]),
            |e| matches!(e, DecodeError::FieldTooLong { field: "meta", .. }),
        ),
    ];
    let before = h.table();
    let incarnation = h.swim.local_member().incarnation;
    for (i, (what, bytes, expected)) in cases.into_iter().enumerate() {
        let stats = h.swim.stats();
        match h.deliver("a", &bytes) {
            Err(PeerError::Decode { peer, source }) => {
                assert_eq!(peer, name("a"), "{what}");
                assert!(expected(&source), "{what}: {source:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let after = h.swim.stats();
        assert_eq!(after.decode_errors, stats.decode_errors + 1, "{what}");
        assert_eq!(after.decode_errors, i as u64 + 1, "{what}");
        assert_eq!(after.datagrams_in, stats.datagrams_in, "{what}");
        assert_eq!(h.table(), before, "{what}");
        assert_eq!(h.swim.local_member().incarnation, incarnation, "{what}");
        assert!(h.take_sent().is_empty(), "{what}");
        assert!(h.take_events().is_empty(), "{what}");
    }
    // The unspoiled datagram does all of it, so the cases above were refused for cause.
    h.deliver("a", &good).expect("valid");
    assert_eq!(h.state_of("zz"), Some((0, State::Alive)));
    assert_eq!(h.state_of("c"), Some((5, State::Dead)));
    assert_eq!(h.swim.local_member().incarnation, Incarnation(1));
}

#[test]
fn malformed_stream_message_is_refused_and_changes_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    let before = h.table();
    let mut bytes = encode_stream(&push_pull_reply(vec![alive("zz", 0)]));
    bytes.truncate(bytes.len() - 2);
    assert!(matches!(
        h.swim.handle_stream_message(h.now, &name("a"), &bytes),
        Err(PeerError::Decode { .. })
    ));
    assert_eq!(h.swim.stats().decode_errors, 1);
    assert_eq!(h.table(), before);
}

// ------------------------------------------------------------------------------- joining

#[test]
fn join_through_a_seed_sends_one_request_and_its_reply_completes_the_join() {
    let config = Config::lan();
    let mut h = Harness::unjoined(config.clone());
    h.swim.join(h.now, &[addr("seed")]);
    h.pump();
    assert!(!h.swim.is_joined());
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let t = &sent[0].1;
    assert_eq!(t.kind, TransmitKind::Request);
    assert_eq!(
        t.to,
        Destination {
            addr: addr("seed"),
            name: None,
        },
        "a seed is known by address only"
    );
    assert_eq!(
        decode_stream(&t.payload),
        Ok(push_pull(true, "me", vec![alive("me", 0)]))
    );

    // No answer yet: asked again after join_retry_interval, not before.
    let asked_at = h.now;
    h.run_until(asked_at + config.join_retry_interval - NS);
    assert!(h.sent.iter().all(|(_, t)| t.kind != TransmitKind::Request));
    h.run_until(asked_at + config.join_retry_interval);
    let retries: Vec<_> = h
        .take_sent()
        .into_iter()
        .filter(|(_, t)| t.kind == TransmitKind::Request)
        .collect();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].1.payload, t.payload);

    let reply = push_pull_reply(vec![alive("seed", 0), alive("other", 2), alive("me", 0)]);
    assert_eq!(h.stream("seed", &reply), Ok(None));
    assert!(h.swim.is_joined());
    assert_eq!(
        h.take_events()
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>(),
        vec![
            Event::Joined(member("seed", 0, State::Alive)),
            Event::Joined(member("other", 2, State::Alive)),
        ]
    );
    assert_eq!(h.swim.alive_count(), 3);
    assert_eq!(h.swim.local_member().incarnation, Incarnation(0));
    // Joined: no more join requests to the seed's bare address (the early full-state syncs
    // that follow a join go to members by name).
    h.run_for(config.join_retry_interval * 3);
    let sent = h.take_sent();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|(_, t)| t.to.name.is_some()), "{sent:?}");
}

#[test]
fn restarted_node_told_it_is_dead_refutes_above_that_incarnation() {
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join(h.now, &[addr("seed")]);
    h.pump();
    h.take_sent();
    let reply = push_pull_reply(vec![alive("seed", 0), claim("me", 5, State::Dead, None)]);
    assert_eq!(h.stream("seed", &reply), Ok(None));
    assert_eq!(h.swim.local_member().incarnation, Incarnation(6));
    assert_eq!(h.swim.local_member().state, State::Alive);
    assert_eq!(h.swim.stats().refutations, 1);
    // The refutation goes out on the next datagram.
    h.run_until_true(Config::lan().probe_interval, "a datagram went out", |h| {
        !h.sent_messages(|_| true).is_empty()
    });
    let (_, _, p) = &h.sent_messages(|_| true)[0];
    assert!(member_updates(p).contains(&alive("me", 6)), "{p:?}");
}

// ------------------------------------------------------------------------------- upkeep

#[test]
fn tombstones_are_reaped_after_dead_retention() {
    let config = Config {
        dead_retention: Duration::from_secs(60),
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    h.run_for(Duration::from_millis(1234));
    let died_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Dead, Some("a"))])
        .unwrap();
    assert_eq!(h.state_of("e"), Some((0, State::Dead)));
    h.run_until(died_at + config.dead_retention - NS);
    assert_eq!(
        h.state_of("e"),
        Some((0, State::Dead)),
        "kept until retention"
    );
    assert_eq!(h.swim.count(State::Dead), 1);
    // Tombstones are looked at every 10 s.
    h.run_until(died_at + config.dead_retention + Duration::from_secs(10));
    assert_eq!(h.state_of("e"), None, "reaped");
    assert_eq!(h.swim.count(State::Dead), 0);
    assert_eq!(h.swim.alive_count(), PEERS.len());
}

#[test]
fn handle_timeout_called_early_fires_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    let next = h.swim.poll_timeout().expect("timers are set");
    assert!(next > h.t0);
    let before = (h.table(), h.swim.stats(), h.swim.health_score());
    for early in [h.t0, next - NS] {
        h.swim.handle_timeout(early);
        h.pump();
        assert!(h.take_sent().is_empty());
        assert!(h.take_events().is_empty());
        assert_eq!(h.swim.poll_timeout(), Some(next));
        assert_eq!((h.table(), h.swim.stats(), h.swim.health_score()), before);
    }
    h.swim.handle_timeout(next);
    assert_ne!(h.swim.poll_timeout(), Some(next), "the due timer fired");
}

// ------------------------------------------------------------------------------- key/value

/// The key/value round requests sent so far, with when and to whom.
fn kv_syncs(h: &Harness) -> Vec<(Instant, NodeName)> {
    h.sent
        .iter()
        .filter(|(_, t)| t.kind == TransmitKind::Request)
        .filter(|(_, t)| matches!(decode_stream(&t.payload), Ok(StreamMessage::KvSync { .. })))
        .map(|(at, t)| {
            (
                *at,
                t.to.name.clone().expect("rounds go to members by name"),
            )
        })
        .collect()
}

#[test]
fn a_write_starts_key_value_rounds_at_once_and_a_quiet_node_stops_them() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.run_for(config.kv_sync_interval * 20);
    assert!(kv_syncs(&h).is_empty(), "no key/value data, no rounds");

    let written_at = h.now;
    h.swim.set(h.now, "k", b"v".to_vec()).expect("valid write");
    h.run_for(config.kv_sync_interval * 40);
    let syncs = kv_syncs(&h);
    let rounds = quicswim_proto::protocol::swim::kv_rounds(PEERS.len() + 1) as usize;
    assert_eq!(syncs.len(), rounds * config.gossip_nodes, "{syncs:?}");
    // The first round goes at the write, the rest one interval apart.
    for (i, round) in syncs.chunks(config.gossip_nodes).enumerate() {
        let due = written_at + config.kv_sync_interval * i as u32;
        assert!(
            round.iter().all(|(at, _)| *at == due),
            "round {i}: {round:?}"
        );
        let targets: BTreeSet<&NodeName> = round.iter().map(|(_, to)| to).collect();
        assert_eq!(
            targets.len(),
            config.gossip_nodes,
            "distinct members per round"
        );
    }
}

#[test]
fn a_key_value_round_gets_what_we_lack_and_pushes_what_the_peer_wants() {
    use quicswim_proto::protocol::kv::{OwnerDelta, OwnerDigest};
    use quicswim_proto::protocol::KvEntry;

    let mut h = Harness::with_peers(Config::lan());
    h.swim
        .set(h.now, "mine", b"m".to_vec())
        .expect("valid write");
    h.take_sent();
    let theirs = KvEntry {
        owner: name("a"),
        key: "theirs".into(),
        version: 9,
        value: Some(b"t".to_vec()),
    };
    // "a" answers our round: here is a's key, and a holds nothing of ours.
    let reply = StreamMessage::KvSyncReply {
        delta: vec![OwnerDelta {
            reset: false,
            gc_floor: 0,
            entries: vec![theirs.clone()],
        }],
        wants: vec![OwnerDigest {
            owner: name("me"),
            max_version: 0,
            fingerprint: 0,
            gc_floor: 0,
        }],
    };
    assert_eq!(h.stream("a", &reply), Ok(None));
    assert_eq!(h.swim.kv_get(&name("a"), "theirs"), Some(&b"t"[..]));
    assert!(h.take_events().iter().any(|(_, e)| *e
        == Event::KvChanged {
            owner: name("a"),
            key: "theirs".into()
        }));
    let pushes: Vec<StreamMessage> = h
        .take_sent()
        .into_iter()
        .filter(|(_, t)| t.to == to("a") && t.kind == TransmitKind::Request)
        .filter_map(|(_, t)| decode_stream(&t.payload).ok())
        .filter(|m| matches!(m, StreamMessage::KvPush { .. }))
        .collect();
    assert_eq!(pushes.len(), 1, "one push to a expected: {pushes:?}");
    let StreamMessage::KvPush { deltas } = &pushes[0] else {
        unreachable!("filtered to pushes")
    };
    let keys: Vec<(&str, &str)> = deltas
        .iter()
        .flat_map(|d| &d.entries)
        .map(|e| (e.owner.as_str(), e.key.as_str()))
        .collect();
    assert_eq!(keys, vec![("me", "mine")], "only the wanted owner");
}

#[test]
fn a_key_value_round_waits_for_the_last_ones_replies_within_a_bound() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let written_at = h.now;
    h.swim.set(h.now, "k", b"v".to_vec()).expect("valid write");
    h.run_for(config.kv_sync_interval * 12);
    let at: BTreeSet<Instant> = kv_syncs(&h).into_iter().map(|(at, _)| at).collect();
    // Unanswered, the next round waits five intervals (the bound), not one.
    let interval = config.kv_sync_interval;
    assert_eq!(
        at.into_iter().collect::<Vec<_>>(),
        vec![
            written_at,
            written_at + interval * 5,
            written_at + interval * 10
        ]
    );
}

// ------------------------------------------------------------------------------- connections

/// Gossip datagrams sent at an instant when no Ping went out (a Ping's instant may carry the
/// next probe's preparation), as (when, to whom).
fn gossip_rounds(h: &Harness) -> Vec<(Instant, NodeName)> {
    let ping_times: BTreeSet<Instant> = h
        .sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .map(|(at, _, _)| at)
        .collect();
    h.sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(at, _, _)| !ping_times.contains(at))
        .map(|(at, t, _)| (at, t.to.name.expect("gossip goes to members")))
        .collect()
}

/// [`gossip_rounds`] grouped by instant: the members each round went to, in send order.
fn rounds_by_instant(h: &Harness) -> Vec<Vec<NodeName>> {
    let mut rounds: Vec<(Instant, Vec<NodeName>)> = Vec::new();
    for (at, to) in gossip_rounds(h) {
        match rounds.last_mut() {
            Some((when, names)) if *when == at => names.push(to),
            _ => rounds.push((at, vec![to])),
        }
    }
    rounds.into_iter().map(|(_, names)| names).collect()
}

#[test]
fn gossip_picks_needing_a_dial_go_to_connected_members_while_one_is_being_dialled() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    // "a" was heard from; "b" and "c" are reported up: three, as many as gossip_nodes. A
    // pick without a connection starts a dial that no peer here ever reports up, so for a
    // probe interval every later such pick is replaced: one member at most is dialled (none
    // if the dial `me` started while joining went to "d" or "e" and is still in flight).
    h.swim.handle_peer_up(h.now, &name("b"));
    h.swim.handle_peer_up(h.now, &name("c"));
    let connected: BTreeSet<NodeName> = ["a", "b", "c"].into_iter().map(name).collect();
    h.swim.set_meta(h.now, b"v1".to_vec()).unwrap();
    h.run_for(config.gossip_interval * 3);
    let rounds = gossip_rounds(&h);
    assert!(!rounds.is_empty(), "queued updates are gossiped");
    let dialled: BTreeSet<&NodeName> = rounds
        .iter()
        .map(|(_, to)| to)
        .filter(|to| !connected.contains(to))
        .collect();
    assert!(dialled.len() <= 1, "several dials at once: {rounds:?}");

    // With only "a" and "b" connected, once no other dial is under way (one from above is
    // given up on after a probe interval), rounds reach gossip_nodes members again, the
    // third without a connection. The news comes just after a probe, so that its rounds do
    // not share an instant with a Ping (`gossip_rounds` leaves those out); the members that
    // answered probes meanwhile are reported down.
    h.run_for(config.probe_interval);
    h.take_sent();
    h.run_until_true(config.probe_interval * 2, "a probe went out", |h| {
        !h.sent_messages(|m| matches!(m, Message::Ping { .. }))
            .is_empty()
    });
    h.run_for(Duration::from_millis(1));
    h.take_sent();
    for p in ["c", "d", "e"] {
        h.swim.handle_peer_down(&name(p));
    }
    h.swim.set_meta(h.now, b"v2".to_vec()).unwrap();
    h.run_for(config.gossip_interval * 3);
    let rounds = rounds_by_instant(&h);
    let full_rounds = rounds
        .iter()
        .map(|names| names.iter().cloned().collect::<BTreeSet<NodeName>>())
        .filter(|to| to.len() == config.gossip_nodes)
        .inspect(|to| {
            assert!(to.contains(&name("a")) && to.contains(&name("b")), "{to:?}");
        })
        .count();
    assert!(full_rounds > 0, "{rounds:?}");
}

#[test]
fn member_probed_next_without_a_connection_is_dialled_a_period_ahead() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    // Five probes: every member once. Only "a" (heard from) has a connection at first; a
    // member that answered a Ping has one from then on.
    first_probe(&mut h);
    h.run_for(config.probe_interval * 5);
    let pings: Vec<(Instant, NodeName)> = h
        .sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .map(|(at, t, _)| (at, t.to.name.expect("pings go to members")))
        .collect();
    assert!(pings.len() >= 5, "{pings:?}");
    let gossip: Vec<(Instant, NodeName)> = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .map(|(at, t, _)| (at, t.to.name.expect("gossip goes to members")))
        .collect();
    let mut connected: BTreeSet<NodeName> = BTreeSet::from([name("a")]);
    for pair in pings.windows(2) {
        let ((before, last), (_, next)) = (&pair[0], &pair[1]);
        connected.insert(last.clone()); // it answered
        let prepared = gossip.iter().any(|(at, to)| at == before && to == next);
        assert_eq!(
            prepared,
            !connected.contains(next),
            "{next} probed after {before:?}: prepared {prepared}"
        );
    }

    // Once every member has a connection, a probe comes with nothing extra.
    h.connect_all();
    h.take_sent();
    h.run_for(config.probe_interval * 5);
    let ping_times: BTreeSet<Instant> = h
        .sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .map(|(at, _, _)| at)
        .collect();
    assert!(!ping_times.is_empty());
    let extra = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(at, _, _)| ping_times.contains(at))
        .count();
    assert_eq!(extra, 0);
}

#[test]
fn news_reaching_an_empty_queue_is_gossiped_at_once() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    // Let the queue empty: every update sent its retransmit limit.
    for _ in 0..1000 {
        if h.swim.pending_broadcasts() == 0 {
            break;
        }
        h.run_for(config.gossip_interval);
    }
    assert_eq!(h.swim.pending_broadcasts(), 0);
    h.take_sent();
    h.swim.set_meta(h.now, b"v1".to_vec()).unwrap();
    h.pump();
    let now: Vec<NodeName> = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(at, _, _)| *at == h.now)
        .map(|(_, t, _)| t.to.name.expect("gossip goes to members"))
        .collect();
    assert_eq!(now.len(), config.gossip_nodes, "{now:?}");

    // News heard while the queue is busy waits for the next round.
    h.take_sent();
    h.gossip("a", &[alive("b", 5)]).unwrap();
    assert!(h.sent_messages(|m| matches!(m, Message::Gossip)).is_empty());
}

/// The members `me` pinged directly (relayed pings excluded), in order.
fn probe_targets(h: &Harness) -> Vec<NodeName> {
    h.sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .filter_map(|(_, t, p)| match p.message {
            Message::Ping { target, .. } if t.to.name.as_ref() == Some(&target) => Some(target),
            _ => None,
        })
        .collect()
}

/// The watch order is `xxh64(name)`; the member after `me` in it, wrapping round.
fn watched_by_me() -> NodeName {
    watch_order()[0].clone()
}

/// [`PEERS`] in the watch order, starting after `me`.
fn watch_order() -> Vec<NodeName> {
    let key = |s: &str| quicswim_proto::hash::xxh64(s.as_bytes(), 0);
    let mine = key("me");
    let mut peers = PEERS.to_vec();
    peers.sort_by_key(|p| key(p).wrapping_sub(mine).wrapping_sub(1));
    peers.into_iter().map(name).collect()
}

#[test]
fn every_other_probe_goes_to_the_watched_member_and_the_pass_still_covers_everyone() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.run_for(config.probe_interval * 24);
    let targets = probe_targets(&h);
    assert!(targets.len() >= 20, "only {} probes", targets.len());
    let watched = watched_by_me();
    for (i, pair) in targets.windows(2).enumerate() {
        assert!(
            pair.contains(&watched),
            "probes {i} and {} went to {:?}, neither to the watched {watched}",
            i + 1,
            pair
        );
    }
    for p in PEERS {
        assert!(
            targets.contains(&name(p)),
            "{p} never probed in {targets:?}"
        );
    }
}

#[test]
fn when_the_watched_member_dies_the_next_in_the_order_is_watched() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.run_for(config.probe_interval * 4);
    let order = watch_order();
    let (gone, next) = (order[0].clone(), order[1].clone());
    let reporter = PEERS.iter().find(|p| name(p) != gone).expect("peers");
    h.gossip(reporter, &[claim(gone.as_str(), 0, State::Dead, None)])
        .expect("valid datagram");
    assert_eq!(h.state_of(gone.as_str()), Some((0, State::Dead)));
    h.take_sent();
    h.run_for(config.probe_interval * 10);
    let targets = probe_targets(&h);
    assert!(
        !targets.contains(&gone),
        "probed the dead {gone}: {targets:?}"
    );
    for pair in targets.windows(2) {
        assert!(pair.contains(&next), "{pair:?}: neither is {next}");
    }
    // It comes back: watched again.
    h.gossip(reporter, &[alive(gone.as_str(), 1)])
        .expect("valid datagram");
    h.take_sent();
    h.run_for(config.probe_interval * 10);
    let targets = probe_targets(&h);
    for pair in targets.windows(2) {
        assert!(pair.contains(&gone), "{pair:?}: neither is {gone}");
    }
}

#[test]
fn a_suspicion_heard_from_another_member_is_probed_next() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    // A member other than the watched one, so only the suspicion can make it the next target.
    let suspect = PEERS
        .iter()
        .map(|p| name(p))
        .find(|p| *p != watched_by_me())
        .expect("peers");
    h.run_for(config.probe_interval * 3);
    h.take_sent();
    h.gossip(
        "a",
        &[claim(suspect.as_str(), 0, State::Suspect, Some("a"))],
    )
    .expect("valid datagram");
    // With six members every hearer probes (3k / n = 6 / 6).
    let (_, target, _) = first_probe(&mut h);
    assert_eq!(target, suspect);
    // It answers: the suspicion stays until it refutes, and no one else's probe is held up.
    h.run_for(config.probe_interval * 2);
    assert_eq!(h.state_of(suspect.as_str()), Some((0, State::Suspect)));
}

/// Every peer connected, and enough retransmissions that news sent in one round is still
/// queued a round later (as in a larger cluster).
fn connected_with_long_retransmits() -> (Config, Harness) {
    let config = Config {
        retransmit_mult: 10,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    (config, h)
}

#[test]
fn a_node_sends_its_copies_of_an_update_to_distinct_members() {
    let config = Config {
        gossip_nodes: 2,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    h.drain_news();
    // Six nodes: each update is sent 4 times, in rounds of 2, among 5 connected peers.
    for incarnation in 1..=20 {
        h.take_sent();
        h.gossip("a", &[alive("b", incarnation)])
            .expect("valid datagram");
        h.drain_news();
        let reached: Vec<NodeName> = h
            .sent_messages(|m| matches!(m, Message::Gossip))
            .into_iter()
            .filter(|(_, _, p)| {
                member_updates(p)
                    .iter()
                    .any(|u| u.name == name("b") && u.incarnation == Incarnation(incarnation))
            })
            .map(|(_, t, _)| t.to.name.expect("members are known by name"))
            .collect();
        assert!(reached.len() >= 3, "update {incarnation}: {reached:?}");
        let distinct: HashSet<&NodeName> = reached.iter().collect();
        assert_eq!(
            distinct.len(),
            reached.len(),
            "update {incarnation}: {reached:?}"
        );
    }
}

#[test]
fn a_round_sends_to_a_member_once_however_few_it_can_reach() {
    let config = Config {
        gossip_nodes: 3,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config);
    h.drain_news();
    // One connection: a round reaches it, and at most one member it must dial.
    h.swim.handle_peer_up(h.now, &name("a"));
    for incarnation in 1..=5 {
        h.take_sent();
        h.gossip("a", &[alive("b", incarnation)])
            .expect("valid datagram");
        h.drain_news();
        let rounds = rounds_by_instant(&h);
        assert!(!rounds.is_empty(), "update {incarnation} went out");
        for names in &rounds {
            let distinct: HashSet<&NodeName> = names.iter().collect();
            assert_eq!(distinct.len(), names.len(), "one round: {names:?}");
        }
    }
}

#[test]
fn news_goes_out_at_once_even_behind_queued_news_but_rounds_stay_a_quarter_interval_apart() {
    let (config, mut h) = connected_with_long_retransmits();
    let carries = |h: &Harness, who: &str| {
        h.sent_messages(|m| matches!(m, Message::Gossip))
            .into_iter()
            .filter(|(_, _, p)| member_updates(p).iter().any(|u| u.name == name(who)))
            .count()
    };
    h.drain_news();
    h.take_sent();
    h.gossip("a", &[alive("b", 1)]).expect("valid datagram");
    assert_eq!(
        carries(&h, "b"),
        config.gossip_nodes,
        "a round at once for b"
    );
    // More news at the same instant waits: the last round was just now.
    h.gossip("a", &[alive("c", 1)]).expect("valid datagram");
    assert_eq!(
        carries(&h, "c"),
        0,
        "c went out within a quarter interval of b"
    );
    // c goes at the next tick; a quarter interval after it, while it is still being
    // retransmitted, news goes out at once again.
    h.run_until_true(config.gossip_interval, "c went out", |h| {
        carries(h, "c") > 0
    });
    h.run_for(config.gossip_interval / 4);
    h.take_sent();
    assert!(h.swim.pending_broadcasts() > 0, "news still queued");
    h.gossip("a", &[alive("d", 1)]).expect("valid datagram");
    assert_eq!(
        carries(&h, "d"),
        config.gossip_nodes,
        "a round at once for d"
    );
}

#[test]
fn an_idle_node_wakes_only_to_probe_and_news_restarts_the_gossip_rounds() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    h.drain_news();
    // Nothing queued, every probe answered: over ten probe intervals the node wakes for its
    // probes (and the rare periodic exchange), not for gossip ticks or answered timeouts.
    let from = h.now;
    let mut wakes = 0;
    while let Some(at) = h
        .swim
        .poll_timeout()
        .filter(|&at| at <= from + config.probe_interval * 10)
    {
        h.run_until(at);
        wakes += 1;
    }
    assert!(
        wakes <= 14,
        "{wakes} wake-ups in ten probe intervals with nothing to gossip"
    );
    assert_eq!(h.swim.pending_broadcasts(), 0);
    // News: a round at once, then rounds an interval apart until it has been sent enough.
    h.take_sent();
    h.swim.set_meta(h.now, b"v2".to_vec()).unwrap();
    h.pump();
    let first = h.now;
    while h.swim.pending_broadcasts() > 0 {
        let at = h.swim.poll_timeout().expect("news queued: a round is due");
        assert!(at <= h.now + config.gossip_interval, "next round by {at:?}");
        h.run_until(at);
    }
    let rounds: BTreeSet<Instant> = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .map(|(at, _, _)| at)
        .collect();
    assert_eq!(rounds.first(), Some(&first), "the first round at once");
    assert!(
        rounds.len() >= 2,
        "retransmitted in later rounds: {rounds:?}"
    );
}

#[test]
fn a_suspicion_raised_by_a_timer_on_an_idle_node_goes_out_in_one_round() {
    let (config, mut h) = connected_with_long_retransmits();
    h.drain_news();
    // Idle for a while, so the gossip tick is long past when the news comes.
    h.run_for(config.probe_interval * 3);
    h.silence("c");
    h.take_sent();
    h.run_until_true(config.probe_interval * 30, "c suspected", |h| {
        h.state_of("c") == Some((0, State::Suspect))
    });
    let suspected_at = h.now;
    let rounds = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(at, _, _)| *at == suspected_at)
        .count();
    assert!(
        (1..=config.gossip_nodes).contains(&rounds),
        "{rounds} gossip datagrams at the instant of the suspicion"
    );
}
