//! The fuzz targets' bodies, shared with the test that replays their corpus on stable
//! (`tests/fuzz_corpus.rs`), so the two cannot drift apart. Not part of the API.
//!
//! - [`datagram`] and [`stream`]: the decoders on arbitrary bytes; whatever decodes must
//!   encode back to the same message.
//! - [`core`]: one core fed an arbitrary script of inputs from arbitrary peers at arbitrary
//!   times (raw and well-formed datagrams and stream messages, timeouts, connections, and
//!   this node's own commands). After every step: no panic, every bound of
//!   [`Swim::check_bounds`], every output decodes, and this node's own state (name, address,
//!   metadata, state, the keys it wrote) is changed by nothing but its own commands.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::sync::{Arc, OnceLock};

use crate::protocol::codec::{
    decode_datagram, decode_stream, encode_datagram, encode_stream, encode_update, Accusation,
    Claim, MemberDigest, MemberUpdate, Message, SignedEvent, StreamMessage, Update,
    DATAGRAM_LEN_MAX,
};
use crate::protocol::kv::{proof, KvEntry, KvLimits, OwnerDelta, OwnerDigest};
use crate::protocol::signing::{Certificate, RevocationList, Signature};
use crate::protocol::{
    Config, Incarnation, NodeName, State, Swim, TransmitKind, UserEvent, COUNTER_MAX,
};
use crate::sim::SimAuthority;

/// Steps one core input runs at most, so each execution stays short.
const STEPS_MAX: usize = 256;

/// Decodes `bytes` as a datagram; what decodes must re-encode to the same packet.
pub fn datagram(bytes: &[u8]) {
    if let Ok(p) = decode_datagram(bytes) {
        let body: Vec<u8> = p.updates.iter().flat_map(encode_update).collect();
        let again = decode_datagram(&encode_datagram(&p.message, p.updates.len(), &body));
        assert_eq!(
            again.as_ref(),
            Ok(&p),
            "a decoded datagram re-encodes the same"
        );
    }
}

/// Decodes `bytes` as a stream message; what decodes must re-encode to the same message.
pub fn stream(bytes: &[u8]) {
    if let Ok(m) = decode_stream(bytes) {
        assert_eq!(
            decode_stream(&encode_stream(&m)).as_ref(),
            Ok(&m),
            "a decoded stream message re-encodes the same"
        );
    }
}

/// Reads a script from fuzz input; every read past the end gives zeros.
struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        b.iter_mut().for_each(|x| *x = self.byte());
        u64::from_le_bytes(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// A counter as a hostile peer would pick one: the edges, small, or anything.
    fn counter(&mut self) -> u64 {
        match self.byte() % 7 {
            0 => 0,
            1 => 1,
            2 => u64::from(self.byte()),
            3 => COUNTER_MAX,
            4 => COUNTER_MAX - 1,
            5 => u64::MAX,
            _ => self.u64(),
        }
    }

    fn len(&mut self) -> usize {
        match self.byte() % 4 {
            0 => 0,
            1 => usize::from(self.byte()),
            2 => usize::from(self.u16()),
            _ => usize::from(self.byte()) * 64,
        }
    }

    fn done(&self) -> bool {
        self.data.is_empty()
    }
}

/// The peers a script speaks as: the first four are members from the start, the others
/// strangers until some message names them; the last name is this node's own.
const NAMES: [&str; 7] = ["p0", "p1", "p2", "p3", "p4", "p5", "me"];

fn name(i: usize) -> NodeName {
    NodeName::new(NAMES[i % NAMES.len()]).expect("fuzz names are DNS labels")
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, (i % NAMES.len()) as u8 + 2], 7946))
}

/// The fuzz cluster's keys: the core holds every peer's certificate, and the scripts sign
/// most records as their subject would (a share with another's key: forgeries).
fn authority() -> &'static Arc<SimAuthority> {
    static AUTHORITY: OnceLock<Arc<SimAuthority>> = OnceLock::new();
    AUTHORITY.get_or_init(|| SimAuthority::new(7))
}

/// A signature over `bytes` by `signer`, or, when the script says so, by someone else.
fn sign(s: &mut Script<'_>, signer: &NodeName, bytes: &[u8]) -> Signature {
    let by = if s.byte().is_multiple_of(8) {
        pick_name(s)
    } else {
        signer.clone()
    };
    authority().keyring(&by).sign(bytes)
}

fn me() -> NodeName {
    name(NAMES.len() - 1)
}

/// Small limits, so that scripts reach them.
fn config() -> Config {
    Config {
        members_max: 8,
        broadcast_queue_max: 16,
        kv: KvLimits {
            key_len_max: 16,
            value_len_max: 256,
            keys_per_node_max: 8,
            bytes_per_node_max: 1024,
            owners_max: 4,
        },
        kv_sync_bytes_max: 2048,
        ..Config::local()
    }
}

struct Run {
    swim: Swim,
    now: Instant,
    /// What this node's own commands wrote: each key's value, `None` once deleted.
    mine: BTreeMap<String, Option<Vec<u8>>>,
    incarnation: Incarnation,
    left: bool,
    /// The seqs of the latest Pings and PingReqs the core sent, newest first: a small seq
    /// in the script stands for one of them (see [`Run::seq`]), so that scripts reach the
    /// Acks and Nacks that answer a real probe, which random 64-bit seqs never would.
    seqs: VecDeque<u64>,
}

/// Seqs of the core's own Pings and PingReqs remembered for the script.
const SEQS_KEPT: usize = 8;

/// Runs a core on a script read from `bytes`, checking its bounds and its own state after
/// every step. `epoch` is the instant the script's times count from.
pub fn core(bytes: &[u8], epoch: Instant) {
    let config = config()
        .validate()
        .expect("the fuzz configuration is valid");
    let keyring = authority().keyring(&me());
    for i in 0..NAMES.len() {
        keyring
            .learn(&name(i), &authority().certificate(&name(i)))
            .expect("the authority's own certificates are learned");
    }
    let swim = Swim::new(
        me(),
        addr(NAMES.len() - 1),
        b"zone=a".to_vec(),
        config,
        7,
        epoch,
        keyring,
    )
    .expect("the fuzz core starts");
    let mut run = Run {
        incarnation: swim.local_member().incarnation,
        swim,
        now: epoch,
        mine: BTreeMap::new(),
        left: false,
        seqs: VecDeque::new(),
    };
    run.join();
    let mut script = Script { data: bytes };
    for _ in 0..STEPS_MAX {
        if script.done() {
            break;
        }
        run.step(&mut script);
        run.check();
    }
}

impl Run {
    /// Joins through p0, which knows p0..p3.
    fn join(&mut self) {
        self.swim.join(self.now, &[addr(0)]);
        let members = (0..4)
            .map(|i| {
                let claim = Claim {
                    name: name(i),
                    addr: addr(i),
                    incarnation: Incarnation(1),
                    left: false,
                    meta: Vec::new(),
                };
                MemberUpdate {
                    signature: authority().keyring(&name(i)).sign(&claim.signed_bytes()),
                    claim,
                    accusation: None,
                }
            })
            .collect();
        let reply = StreamMessage::PushPullReply {
            members,
            wants: Vec::new(),
            kv_delta: Vec::new(),
            kv_digest: Vec::new(),
            events: Vec::new(),
            certificates: Vec::new(),
            revocations: Vec::new(),
            revocation_ids: Vec::new(),
        };
        self.swim
            .handle_stream_reply(self.now, &name(0), &encode_stream(&reply))
            .expect("the join reply is accepted");
        self.drain();
        self.check();
    }

    fn step(&mut self, s: &mut Script<'_>) {
        let from = name(usize::from(s.byte()));
        let from_addr = addr(usize::from(s.byte()));
        match s.byte() % 14 {
            0 => {
                let n = s.len();
                let bytes = s.take(n).to_vec();
                let _ = self
                    .swim
                    .handle_datagram(self.now, &from, from_addr, &bytes);
            }
            1 => {
                let n = s.len();
                let bytes = s.take(n).to_vec();
                if let Ok(Some(reply)) = self.swim.handle_stream_request(self.now, &from, &bytes) {
                    decode_stream(&reply).expect("our replies decode");
                }
            }
            2 => {
                let n = s.len();
                let bytes = s.take(n).to_vec();
                let _ = self.swim.handle_stream_reply(self.now, &from, &bytes);
            }
            3 => {
                self.now += Duration::from_millis(u64::from(s.u16()));
                self.swim.handle_timeout(self.now);
            }
            4 => {
                let key = key(s);
                let value = vec![s.byte(); s.len()];
                if self.swim.set(self.now, &key, value.clone()).is_ok() {
                    self.mine.insert(key, Some(value));
                }
            }
            5 => {
                let key = key(s);
                if self.swim.delete(self.now, &key).is_ok() {
                    self.mine.insert(key, None);
                }
            }
            6 => {
                let name = "e".repeat(usize::from(s.byte()));
                let payload = vec![0; s.len()];
                let _ = self.swim.publish(self.now, &name, payload);
            }
            7 => {
                let updates: Vec<Update> = (0..s.byte() % 8)
                    .map(|_| match s.byte() % 3 {
                        0 => Update::Member(member(s)),
                        1 => Update::Event(event(s)),
                        _ => Update::Digest(member_digest(s)),
                    })
                    .collect();
                let message = self.seqs_of(message(s));
                let body: Vec<u8> = updates.iter().flat_map(encode_update).collect();
                let bytes = encode_datagram(&message, updates.len(), &body);
                let _ = self
                    .swim
                    .handle_datagram(self.now, &from, from_addr, &bytes);
            }
            8 => {
                let m = match s.byte() % 4 {
                    3 => StreamMessage::RecordRequest {
                        names: (0..s.byte() % 8).map(|_| pick_name(s)).collect(),
                        certificates: (0..s.byte() % 4).map(|_| pick_name(s)).collect(),
                    },
                    0 => StreamMessage::KvPush {
                        deltas: deltas(s),
                        members: (0..s.byte() % 4).map(|_| member(s)).collect(),
                    },
                    1 => StreamMessage::KvSync { digest: digest(s) },
                    _ => StreamMessage::PushPull {
                        join: s.byte().is_multiple_of(2),
                        sender: if s.byte().is_multiple_of(8) {
                            me()
                        } else {
                            from.clone()
                        },
                        members: (0..s.byte() % 8).map(|_| member(s)).collect(),
                        digest: (0..s.byte() % 8).map(|_| member_digest(s)).collect(),
                        kv_digest: digest(s),
                        events: (0..s.byte() % 4).map(|_| event(s)).collect(),
                        certificates: Vec::new(),
                        revocation_ids: (0..s.byte() % 3).map(|_| u64::from(s.byte())).collect(),
                    },
                };
                if let Ok(Some(reply)) =
                    self.swim
                        .handle_stream_request(self.now, &from, &encode_stream(&m))
                {
                    decode_stream(&reply).expect("our replies decode");
                }
            }
            9 => {
                let m = match s.byte() % 3 {
                    2 => StreamMessage::RecordReply {
                        members: (0..s.byte() % 8).map(|_| member(s)).collect(),
                        certificates: Vec::new(),
                    },
                    0 => StreamMessage::KvSyncReply {
                        delta: deltas(s),
                        wants: digest(s),
                    },
                    _ => StreamMessage::PushPullReply {
                        members: (0..s.byte() % 8).map(|_| member(s)).collect(),
                        wants: (0..s.byte() % 4).map(|_| pick_name(s)).collect(),
                        kv_delta: deltas(s),
                        kv_digest: digest(s),
                        events: (0..s.byte() % 4).map(|_| event(s)).collect(),
                        certificates: Vec::new(),
                        revocations: (0..s.byte() % 3)
                            .map(|_| RevocationList {
                                der: (0..s.byte()).map(|_| s.byte()).collect(),
                            })
                            .collect(),
                        revocation_ids: (0..s.byte() % 3).map(|_| u64::from(s.byte())).collect(),
                    },
                };
                let _ = self
                    .swim
                    .handle_stream_reply(self.now, &from, &encode_stream(&m));
            }
            10 => {
                if s.byte().is_multiple_of(2) {
                    self.swim.handle_peer_up(self.now, &from);
                } else {
                    self.swim.handle_peer_down(&from);
                }
            }
            11 => while self.swim.poll_event().is_some() {},
            12 => {
                let size = usize::from(s.u16());
                self.swim.set_max_datagram_size(size);
            }
            _ => {
                if s.byte() == 0 {
                    self.swim.leave(self.now);
                    self.left = true;
                }
            }
        }
        self.drain();
    }

    /// Takes every transmit; each must decode as what it claims to be.
    fn drain(&mut self) {
        while let Some(t) = self.swim.poll_transmit() {
            match t.kind {
                TransmitKind::Datagram => {
                    assert!(t.payload.len() <= DATAGRAM_LEN_MAX, "datagram too long");
                    let packet = decode_datagram(&t.payload).expect("our datagrams decode");
                    if let Message::Ping { seq, .. } | Message::PingReq { seq, .. } = packet.message
                    {
                        if self.seqs.len() == SEQS_KEPT {
                            self.seqs.pop_back();
                        }
                        self.seqs.push_front(seq);
                    }
                }
                TransmitKind::Request => {
                    decode_stream(&t.payload).expect("our requests decode");
                }
            }
        }
    }

    /// `m` with a small seq (under the number remembered) replaced by the seq of one of
    /// the core's own latest Pings or PingReqs.
    fn seqs_of(&self, mut m: Message) -> Message {
        if let Message::Ping { seq, .. }
        | Message::Ack { seq }
        | Message::PingReq { seq, .. }
        | Message::Nack { seq } = &mut m
        {
            if let Some(ours) = usize::try_from(*seq).ok().and_then(|i| self.seqs.get(i)) {
                *seq = *ours;
            }
        }
        m
    }

    fn check(&mut self) {
        if let Err(broken) = self.swim.check_bounds() {
            panic!("bound broken: {broken}");
        }
        let me = self.swim.local_member();
        assert_eq!(me.name, self::me(), "own name changed");
        assert_eq!(me.addr, addr(NAMES.len() - 1), "own address changed");
        assert_eq!(me.meta, b"zone=a", "own metadata changed");
        let state = if self.left { State::Left } else { State::Alive };
        assert_eq!(me.state, state, "own state changed by a peer");
        assert!(
            me.incarnation >= self.incarnation,
            "own incarnation went back"
        );
        self.incarnation = me.incarnation;
        let own = self.swim.name().clone();
        // A deleted key's tombstone is collected after the grace, and a peer's copy of a
        // key we no longer hold is taken back (we may have restarted and lost it); a value
        // we hold stays ours.
        for (key, value) in &self.mine {
            if let Some(value) = value {
                assert_eq!(
                    self.swim.kv_get(&own, key),
                    Some(&value[..]),
                    "own key {key} changed by a peer"
                );
            }
        }
    }
}

fn pick_name(s: &mut Script<'_>) -> NodeName {
    name(usize::from(s.byte()))
}

fn key(s: &mut Script<'_>) -> String {
    match s.byte() % 8 {
        0 => String::new(),
        1 => "k".repeat(usize::from(s.byte())),
        b => format!("k{}", b % 4),
    }
}

fn member(s: &mut Script<'_>) -> MemberUpdate {
    let state = match s.byte() % 4 {
        0 => State::Alive,
        1 => State::Suspect,
        2 => State::Dead,
        _ => State::Left,
    };
    let claim = Claim {
        name: pick_name(s),
        addr: addr(usize::from(s.byte())),
        incarnation: Incarnation(s.counter()),
        left: state == State::Left,
        meta: vec![1; usize::from(s.byte()) % 160],
    };
    let signature = sign(s, &claim.name.clone(), &claim.signed_bytes());
    let accusation = matches!(state, State::Suspect | State::Dead).then(|| {
        let accuser = pick_name(s);
        let dead = state == State::Dead;
        let bytes = Accusation::signed_bytes(&claim.name, claim.incarnation, dead, &accuser);
        Accusation {
            dead,
            signature: sign(s, &accuser, &bytes),
            accuser,
        }
    });
    MemberUpdate {
        claim,
        signature,
        accusation,
    }
}

fn member_digest(s: &mut Script<'_>) -> MemberDigest {
    MemberDigest {
        name: pick_name(s),
        incarnation: Incarnation(s.counter()),
        state: match s.byte() % 4 {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Dead,
            _ => State::Left,
        },
    }
}

fn event(s: &mut Script<'_>) -> SignedEvent {
    let event = UserEvent {
        origin: pick_name(s),
        seq: s.counter(),
        name: "e".repeat(usize::from(s.byte())),
        payload: vec![2; s.len() % 2048],
    };
    let origin = event.origin.clone();
    SignedEvent {
        signature: sign(s, &origin, &SignedEvent::signed_bytes(&event)),
        event,
    }
}

fn message(s: &mut Script<'_>) -> Message {
    match s.byte() % 5 {
        0 => Message::Ping {
            seq: u64::from(s.u16()),
            target: pick_name(s),
            suspected: (s.byte().is_multiple_of(2)).then(|| Incarnation(s.counter())),
        },
        1 => Message::Ack {
            seq: u64::from(s.u16()),
        },
        2 => Message::PingReq {
            seq: u64::from(s.u16()),
            target: pick_name(s),
            target_addr: addr(usize::from(s.byte())),
        },
        3 => Message::Nack {
            seq: u64::from(s.u16()),
        },
        _ => Message::Gossip,
    }
}

fn digest(s: &mut Script<'_>) -> Vec<OwnerDigest> {
    (0..s.byte() % 8)
        .map(|_| OwnerDigest {
            owner: pick_name(s),
            max_version: s.counter(),
            fingerprint: s.u64(),
            gc_floor: s.counter(),
        })
        .collect()
}

fn deltas(s: &mut Script<'_>) -> Vec<OwnerDelta> {
    (0..s.byte() % 4)
        .map(|_| {
            let owner = pick_name(s);
            let reset = s.byte().is_multiple_of(4);
            let gc_floor = s.counter();
            let mut entries: Vec<KvEntry> = (0..s.byte() % 12)
                .map(|_| KvEntry {
                    // Mostly one owner per delta, as we send them; sometimes not.
                    owner: if s.byte().is_multiple_of(8) {
                        pick_name(s)
                    } else {
                        owner.clone()
                    },
                    key: key(s),
                    version: s.counter(),
                    value: (!s.byte().is_multiple_of(3)).then(|| vec![3; s.len() % 512]),
                    sealed: None,
                })
                .collect();
            // As one batch, by the owner or, when the script says so, by someone else.
            let by = if s.byte().is_multiple_of(8) {
                pick_name(s)
            } else {
                owner
            };
            proof::seal(&*authority().keyring(&by), &mut entries);
            let mut delta = OwnerDelta::new(reset, gc_floor, entries);
            // Now and then a proof that does not hold together, or lies about a leaf.
            let places = &mut delta.proof.places;
            match s.byte() % 16 {
                0 if !places.is_empty() => {
                    let i = s.len() % places.len();
                    places[i] = (s.byte().into(), s.byte().into());
                }
                1 => places.truncate(s.len()),
                2 => {
                    if let Some(b) = delta.proof.batches.first_mut() {
                        b.leaves = s.counter() as u16;
                        b.missing.push((s.byte().into(), [s.byte(); 32]));
                    }
                }
                _ => {}
            }
            delta
        })
        .collect()
}

/// Seeds for each target's corpus, one well-formed input of every kind: the fuzzer starts
/// from messages that decode and mutates them, rather than finding postcard's layout alone.
/// `tests/fuzz_corpus.rs` runs them and can write them out.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let keys = |n: usize| authority().keyring(&name(n));
    let claim = Claim {
        name: name(1),
        addr: addr(1),
        incarnation: Incarnation(3),
        left: false,
        meta: b"zone=b".to_vec(),
    };
    let m = MemberUpdate {
        signature: keys(1).sign(&claim.signed_bytes()),
        accusation: Some(Accusation {
            dead: false,
            accuser: name(2),
            signature: keys(2).sign(&Accusation::signed_bytes(
                &name(1),
                Incarnation(3),
                false,
                &name(2),
            )),
        }),
        claim,
    };
    let event = UserEvent {
        origin: name(2),
        seq: 9,
        name: "deploy".into(),
        payload: b"v2".to_vec(),
    };
    let e = SignedEvent {
        signature: keys(2).sign(&SignedEvent::signed_bytes(&event)),
        event,
    };
    let updates = [
        Update::Member(m.clone()),
        Update::Event(e.clone()),
        Update::Digest(MemberDigest {
            name: name(3),
            incarnation: Incarnation(1),
            state: State::Alive,
        }),
    ];
    let body: Vec<u8> = updates.iter().flat_map(encode_update).collect();
    let messages = [
        Message::Ping {
            seq: 1,
            target: me(),
            suspected: Some(Incarnation(0)),
        },
        Message::Ack { seq: 1 },
        Message::PingReq {
            seq: 2,
            target: name(3),
            target_addr: addr(3),
        },
        Message::Nack { seq: 2 },
        Message::Gossip,
    ];
    for message in &messages {
        out.push(("datagram", encode_datagram(message, updates.len(), &body)));
    }
    let entry = |version: u64, value: Option<Vec<u8>>| KvEntry {
        owner: name(1),
        key: "k1".into(),
        version,
        value,
        sealed: None,
    };
    let mut entries = vec![entry(5, Some(b"v".to_vec())), entry(6, None)];
    proof::seal(&*keys(1), &mut entries);
    let delta = OwnerDelta::new(false, 0, entries);
    let digest = OwnerDigest {
        owner: name(1),
        max_version: 4,
        fingerprint: 1,
        gc_floor: 0,
    };
    let streams = [
        StreamMessage::PushPull {
            join: true,
            sender: name(1),
            members: vec![m.clone()],
            digest: vec![MemberDigest {
                name: name(2),
                incarnation: Incarnation(3),
                state: State::Suspect,
            }],
            kv_digest: vec![digest.clone()],
            events: vec![e.clone()],
            certificates: vec![Certificate {
                name: name(1),
                der: authority().certificate(&name(1)).to_vec(),
            }],
            revocation_ids: vec![7, u64::MAX],
        },
        StreamMessage::PushPullReply {
            members: vec![m.clone()],
            wants: vec![me()],
            kv_delta: vec![delta.clone()],
            kv_digest: vec![digest.clone()],
            events: vec![e],
            certificates: Vec::new(),
            revocations: vec![RevocationList {
                der: vec![0x30, 0x03, 1, 2, 3],
            }],
            revocation_ids: vec![1],
        },
        StreamMessage::Revocations {
            lists: vec![RevocationList { der: vec![0x30] }],
        },
        StreamMessage::RevocationsAck,
        StreamMessage::CertificateRequest {
            names: vec![name(1)],
        },
        StreamMessage::RecordRequest {
            names: vec![name(1), me()],
            certificates: vec![name(1)],
        },
        StreamMessage::RecordReply {
            members: vec![m.clone()],
            certificates: vec![Certificate {
                name: name(1),
                der: authority().certificate(&name(1)).to_vec(),
            }],
        },
        StreamMessage::CertificateReply {
            certificates: vec![Certificate {
                name: name(2),
                der: authority().certificate(&name(2)).to_vec(),
            }],
        },
        StreamMessage::KvPush {
            deltas: vec![delta.clone()],
            members: vec![m],
        },
        StreamMessage::KvPushAck,
        StreamMessage::Ping {
            seq: 1,
            target: me(),
            suspected: Some(Incarnation(0)),
        },
        StreamMessage::Ack { seq: 1 },
        StreamMessage::KvSync {
            digest: vec![digest.clone()],
        },
        StreamMessage::KvSyncReply {
            delta: vec![delta],
            wants: vec![digest],
        },
    ];
    out.extend(streams.iter().map(|m| ("stream", encode_stream(m))));
    // Core scripts: [from, from_addr, op, ...] per step (see `Run::step`).
    let scripts: [&[u8]; 6] = [
        // set k1, a KvPush of p1's keys, time passes, a KvSync naming everyone.
        &[
            6, 6, 4, 2, 1, 9, 1, 1, 1, 1, 8, 0, 1, 1, 1, 2, 3, 3, 1, 4, 1, 0, 0, 3, 0, 16, 1, 1, 8,
            1, 5,
        ],
        // A datagram with member and event updates, then a stream ping.
        &[
            2, 2, 7, 4, 0, 1, 1, 1, 0, 1, 1, 2, 1, 0, 2, 3, 5, 1, 2, 0, 0, 1, 1, 1, 3, 0, 100,
        ],
        // Claims about ourselves at the edges: incarnation COUNTER_MAX, then u64::MAX.
        &[
            1, 1, 7, 2, 0, 1, 6, 1, 3, 0, 0, 1, 0, 6, 1, 5, 0, 0, 3, 0, 0, 0, 1, 0, 4,
        ],
        // Our key pushed back at a higher version by a peer.
        &[
            6, 6, 4, 3, 1, 8, 1, 1, 8, 0, 1, 6, 1, 6, 3, 3, 1, 1, 4, 7, 3, 3, 1, 1, 0,
        ],
        // Events from a stranger and from a member, at u64::MAX and COUNTER_MAX.
        &[
            5, 5, 7, 2, 1, 5, 5, 0, 1, 1, 1, 1, 3, 1, 200, 0, 1, 4, 7, 0, 0, 3, 50, 250,
        ],
        // Leave, then a reply-type message sent as a request.
        &[0, 0, 13, 0, 1, 1, 1, 2, 2, 3, 2, 3],
    ];
    out.extend(scripts.iter().map(|s| ("core", s.to_vec())));
    out
}
