//! A rogue member: a node with a valid key and a normal core that, in addition, crafts
//! forged messages at will and sends them to honest members through the simulated network.
//!
//! Everything it fabricates carries a marker no honest node ever produces (names and keys
//! starting `rogue-`, metadata `rogue`, an address outside the simulated range, counters
//! at or above [`MARK`]), so the simulator can tell afterwards whether any honest node took
//! one in: that is `forged_accepted`, which must stay 0.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::protocol::codec::{
    encode_datagram, encode_stream, encode_update, Accusation, Claim, MemberUpdate, Message,
    SignedEvent, StreamMessage, Update,
};
use crate::protocol::kv::{proof, KvEntry, OwnerDelta};
use crate::protocol::{
    Certificate, Event, Incarnation, Keyring, Member, NodeName, Signature, Stats, Swim, UserEvent,
    COUNTER_MAX,
};

use super::keys::SimAuthority;

/// Counters the rogue puts on what it fabricates: far above anything honest nodes reach in
/// a run (incarnations count refutations; versions count microseconds of virtual time).
pub const MARK: u64 = 1 << 48;

/// Forgeries each rogue sends per probe interval.
pub const FORGERIES_PER_TICK: usize = 4;

/// Valid claims of other members the rogue keeps to replay under forged accusations.
const HARVEST_MAX: usize = 1024;

/// How many kinds of forgery [`RogueNode::craft`] knows.
pub const ATTACKS: u64 = 19;

/// The address the rogue redirects members to: outside the simulated range, so nothing
/// sent there is ever delivered.
pub fn rogue_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 66, 0, 1), 7946))
}

/// How a forgery travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carrier {
    /// A datagram.
    Datagram,
    /// A stream request (the victim's reply is dropped: the rogue's core never asked).
    Request,
    /// A stream reply to a request the victim never sent to the rogue.
    Reply,
}

/// One rogue member's state besides its core.
pub(super) struct RogueNode {
    /// Its node index.
    pub index: usize,
    name: NodeName,
    keyring: Arc<dyn Keyring>,
    certificate: Arc<[u8]>,
    /// The newest valid claim of each other member it has seen, to replay.
    harvested: BTreeMap<NodeName, MemberUpdate>,
    next_attack: u64,
}

/// Every rogue of a run and what they did.
pub(super) struct Rogues {
    /// The rogues, by node index.
    pub nodes: Vec<RogueNode>,
    /// Their own random choices, apart from the run's so honest nodes draw the same.
    pub rng: SmallRng,
    /// Forgeries sent.
    pub sent: u64,
    /// Refusals honest nodes counted while handling forgeries.
    pub refused: u64,
    /// Fabricated records found in honest nodes' state: (node, what).
    pub accepted: BTreeSet<(usize, String)>,
}

impl Rogues {
    /// The last `count` of `names` turn rogue.
    pub fn new(names: &[NodeName], count: usize, authority: &Arc<SimAuthority>, seed: u64) -> Self {
        let first = names.len().saturating_sub(count);
        let nodes = (first..names.len())
            .map(|index| RogueNode {
                index,
                name: names[index].clone(),
                keyring: authority.keyring(&names[index]),
                certificate: authority.certificate(&names[index]),
                harvested: BTreeMap::new(),
                next_attack: 0,
            })
            .collect();
        Self {
            nodes,
            rng: SmallRng::seed_from_u64(seed ^ 0x0072_6f67_7565),
            sent: 0,
            refused: 0,
            accepted: BTreeSet::new(),
        }
    }

    /// Whether node `i` is a rogue.
    pub fn is_rogue(&self, i: usize) -> bool {
        self.nodes.iter().any(|r| r.index == i)
    }

    /// Keeps the valid member claims in a datagram or stream message that reached rogue `i`.
    pub fn harvest(&mut self, i: usize, datagram: Option<&[u8]>, stream: Option<&[u8]>) {
        let Some(rogue) = self.nodes.iter_mut().find(|r| r.index == i) else {
            return;
        };
        let mut found = Vec::new();
        if let Some(bytes) = datagram {
            if let Ok(p) = crate::protocol::codec::decode_datagram(bytes) {
                for u in p.updates {
                    if let Update::Member(m) = u {
                        found.push(m);
                    }
                }
            }
        }
        if let Some(bytes) = stream {
            match crate::protocol::codec::decode_stream(bytes) {
                Ok(StreamMessage::PushPull { members, .. })
                | Ok(StreamMessage::PushPullReply { members, .. }) => found.extend(members),
                _ => {}
            }
        }
        for m in found {
            if *m.name() == rogue.name || m.claim.left {
                continue;
            }
            if rogue.harvested.len() >= HARVEST_MAX && !rogue.harvested.contains_key(m.name()) {
                continue;
            }
            rogue.harvested.insert(m.name().clone(), m);
        }
    }

    /// Records a fabricated record an honest node holds or delivered.
    pub fn note_events(&mut self, observer: usize, events: &[Event]) {
        for e in events {
            match e {
                Event::User(u) if u.name.starts_with("rogue-") => {
                    self.accepted
                        .insert((observer, format!("event {} from {}", u.name, u.origin)));
                }
                // Honest simulated nodes never leave, and the rogue's core never does either:
                // a Left event is a forged leave taken in.
                Event::Left(m) => {
                    self.accepted.insert((observer, format!("left {}", m.name)));
                }
                _ => {}
            }
            if let Some(m) = e.member() {
                if fabricated(m) {
                    self.accepted
                        .insert((observer, format!("member {}", m.name)));
                }
            }
        }
    }

    /// Looks through an honest node's members and key/value entries for fabrications.
    pub fn inspect(&mut self, observer: usize, core: &Swim) {
        for m in core.members() {
            if fabricated(m) {
                self.accepted
                    .insert((observer, format!("member {}", m.name)));
            }
        }
        let rogue_names: Vec<&NodeName> = self.nodes.iter().map(|r| &r.name).collect();
        for (owner, key, _, version) in core.kv_entries() {
            if rogue_names.contains(&owner) {
                continue;
            }
            if key.starts_with("rogue-") || version >= MARK {
                self.accepted
                    .insert((observer, format!("kv {owner}/{key}@{version}")));
            }
        }
    }
}

/// Whether a member record carries one of the rogue's markers.
fn fabricated(m: &Member) -> bool {
    m.name.as_str().starts_with("rogue-")
        || m.addr == rogue_addr()
        || m.incarnation >= Incarnation(MARK)
        || m.meta == b"rogue"
}

/// What an honest node counts when it refuses something.
pub(super) fn refusals(s: &Stats) -> u64 {
    [
        s.forged.total(),
        s.decode_errors,
        s.name_mismatches,
        s.unasked_messages,
        s.self_claims_refused,
        s.kv_owner_not_member,
        s.kv_refused,
        s.user_events_refused,
        s.unverified_records,
        s.certificates_refused,
        s.ping_reqs_for_inactive,
    ]
    .iter()
    .fold(0u64, |a, &b| a.saturating_add(b))
}

impl RogueNode {
    fn sign(&self, bytes: &[u8]) -> Signature {
        self.keyring.sign(bytes)
    }

    /// The next forgery for `victim`, naming `other` (another honest member, at `other_addr`)
    /// where the attack speaks for someone else.
    pub fn craft(
        &mut self,
        rng: &mut SmallRng,
        victim: &NodeName,
        other: &NodeName,
        other_addr: SocketAddr,
    ) -> (Carrier, Vec<u8>) {
        let attack = self.next_attack % ATTACKS;
        self.next_attack += 1;
        let mark = MARK + rng.random_range(0..MARK);
        let garbage = || {
            Signature::new(
                (0..64)
                    .map(|k| (k as u8).wrapping_mul(37))
                    .collect::<Vec<u8>>(),
            )
        };
        let gossip = |updates: Vec<Update>| {
            let bytes: Vec<u8> = updates.iter().flat_map(encode_update).collect();
            encode_datagram(&Message::Gossip, updates.len(), &bytes)
        };
        let claim = |name: &NodeName, left: bool| Claim {
            name: name.clone(),
            addr: if left { other_addr } else { rogue_addr() },
            incarnation: Incarnation(mark),
            left,
            meta: b"rogue".to_vec(),
        };
        // A claim `name` really signed, when the rogue has seen one; else a forged one.
        let real_claim = |s: &Self, name: &NodeName| {
            s.harvested.get(name).cloned().unwrap_or_else(|| {
                let c = claim(name, false);
                MemberUpdate {
                    signature: s.sign(&c.signed_bytes()),
                    claim: c,
                    accusation: None,
                }
            })
        };
        match attack {
            // Alive about another member, signed with the rogue's own key: a new address,
            // metadata and an incarnation it can never refute.
            0 => {
                let c = claim(other, false);
                let u = MemberUpdate {
                    signature: self.sign(&c.signed_bytes()),
                    claim: c,
                    accusation: None,
                };
                (Carrier::Datagram, gossip(vec![Update::Member(u)]))
            }
            // The same with a garbage signature.
            1 => {
                let u = MemberUpdate {
                    claim: claim(other, false),
                    signature: garbage(),
                    accusation: None,
                };
                (Carrier::Datagram, gossip(vec![Update::Member(u)]))
            }
            // A leave in another's name.
            2 => {
                let c = claim(other, true);
                let u = MemberUpdate {
                    signature: self.sign(&c.signed_bytes()),
                    claim: c,
                    accusation: None,
                };
                (Carrier::Datagram, gossip(vec![Update::Member(u)]))
            }
            // Suspect and Dead on a replayed real claim, the accusation naming the victim
            // (or the other member) as accuser but signed by the rogue.
            3 | 4 => {
                let mut u = real_claim(self, other);
                let accuser = if attack == 3 { victim } else { other };
                let dead = attack == 4;
                let bytes = Accusation::signed_bytes(other, u.claim.incarnation, dead, accuser);
                u.accusation = Some(Accusation {
                    dead,
                    accuser: accuser.clone(),
                    signature: self.sign(&bytes),
                });
                (Carrier::Datagram, gossip(vec![Update::Member(u)]))
            }
            // A replayed real claim with its address moved: the signature no longer covers it.
            5 => {
                let mut u = real_claim(self, other);
                u.claim.addr = rogue_addr();
                u.claim.meta = b"rogue".to_vec();
                (Carrier::Datagram, gossip(vec![Update::Member(u)]))
            }
            // Claims about the victim itself, at an incarnation far above its own.
            6 => {
                let c = claim(victim, false);
                let u = MemberUpdate {
                    signature: self.sign(&c.signed_bytes()),
                    claim: c,
                    accusation: None,
                };
                (Carrier::Datagram, gossip(vec![Update::Member(u)]))
            }
            // Incarnation pushes: a Ping suspecting the victim far above its own incarnation,
            // on a datagram and on a stream.
            7 => {
                let ping = Message::Ping {
                    seq: rng.random(),
                    target: victim.clone(),
                    suspected: Some(Incarnation(mark)),
                };
                (Carrier::Datagram, encode_datagram(&ping, 0, &[]))
            }
            8 => {
                let ping = StreamMessage::Ping {
                    seq: rng.random(),
                    target: victim.clone(),
                    suspected: Some(Incarnation(COUNTER_MAX)),
                };
                (Carrier::Request, encode_stream(&ping))
            }
            // Key/value entries in another's name: a set at the highest version, a delete
            // of a key honest writers use, and a reset wiping the owner.
            9..=11 => {
                let (key, version, value, reset) = match attack {
                    9 => (
                        "rogue-k".to_string(),
                        COUNTER_MAX,
                        Some(b"rogue".to_vec()),
                        false,
                    ),
                    10 => (format!("key-{}", rng.random_range(0..4)), mark, None, false),
                    _ => (
                        "rogue-reset".to_string(),
                        mark,
                        Some(b"rogue".to_vec()),
                        true,
                    ),
                };
                let mut entry = KvEntry {
                    owner: other.clone(),
                    key,
                    version,
                    value,
                    sealed: None,
                };
                proof::seal(&*self.keyring, std::slice::from_mut(&mut entry));
                let delta =
                    OwnerDelta::new(reset, if reset { COUNTER_MAX } else { 0 }, vec![entry]);
                (
                    Carrier::Request,
                    encode_stream(&StreamMessage::KvPush {
                        deltas: vec![delta],
                        members: Vec::new(),
                    }),
                )
            }
            // A user event in another's name.
            12 => {
                let event = UserEvent {
                    origin: other.clone(),
                    seq: mark,
                    name: "rogue-event".into(),
                    payload: b"rogue".to_vec(),
                };
                let signature = self.sign(&SignedEvent::signed_bytes(&event));
                (
                    Carrier::Datagram,
                    gossip(vec![Update::Event(SignedEvent { event, signature })]),
                )
            }
            // Acks and Nacks for probes it was never part of, guessing sequence numbers.
            13 => {
                let m = Message::Ack { seq: rng.random() };
                (Carrier::Datagram, encode_datagram(&m, 0, &[]))
            }
            14 => {
                let m = Message::Nack { seq: rng.random() };
                (Carrier::Datagram, encode_datagram(&m, 0, &[]))
            }
            // A PingReq that would make the victim dial an address of the rogue's choice.
            15 => {
                let m = Message::PingReq {
                    seq: rng.random(),
                    target: other.clone(),
                    target_addr: rogue_addr(),
                };
                (Carrier::Datagram, encode_datagram(&m, 0, &[]))
            }
            // A full-state exchange carrying a forged table, a forged event and the rogue's
            // key presented as another member's certificate.
            16 => {
                let c = claim(other, false);
                let forged = MemberUpdate {
                    signature: self.sign(&c.signed_bytes()),
                    claim: c,
                    accusation: None,
                };
                let ghost = Claim {
                    name: NodeName::new("rogue-ghost").expect("a DNS label"),
                    addr: rogue_addr(),
                    incarnation: Incarnation(mark),
                    left: false,
                    meta: b"rogue".to_vec(),
                };
                let ghost = MemberUpdate {
                    signature: self.sign(&ghost.signed_bytes()),
                    claim: ghost,
                    accusation: None,
                };
                let event = UserEvent {
                    origin: other.clone(),
                    seq: mark,
                    name: "rogue-sync".into(),
                    payload: Vec::new(),
                };
                let signature = self.sign(&SignedEvent::signed_bytes(&event));
                let m = StreamMessage::PushPull {
                    join: false,
                    sender: self.name.clone(),
                    members: vec![forged, ghost],
                    digest: Vec::new(),
                    kv_digest: Vec::new(),
                    events: vec![SignedEvent { event, signature }],
                    certificates: vec![Certificate {
                        name: other.clone(),
                        der: self.certificate.to_vec(),
                    }],
                    revocation_ids: Vec::new(),
                };
                (Carrier::Request, encode_stream(&m))
            }
            // A certificate reply nobody asked for, with the wrong key for a name.
            17 => {
                let m = StreamMessage::CertificateReply {
                    certificates: vec![Certificate {
                        name: other.clone(),
                        der: self.certificate.to_vec(),
                    }],
                };
                (Carrier::Reply, encode_stream(&m))
            }
            // Bytes that decode to nothing.
            _ => {
                let len = rng.random_range(1..64);
                let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                bytes[0] = 0xff; // no such version
                (Carrier::Datagram, bytes)
            }
        }
    }
}
