//! The wire format: one version byte, then a postcard-encoded message.
//!
//! ```text
//!   datagram:  [version u8][Message][varint n][Update; n]        (≤ max_datagram_size)
//!   stream:    [version u8][StreamMessage]                       (≤ STREAM_LEN_MAX)
//! ```
//!
//! postcard writes a struct's fields back to back with no framing, so a datagram is assembled
//! from pieces encoded once: each queued update keeps its bytes and is copied into every
//! datagram that carries it, never re-encoded.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize};

use super::bounded::{self, decode_bounded};
use super::events::UserEvent;
use super::kv::{OwnerDelta, OwnerDigest};
use super::member::{Incarnation, NodeName, State, META_LEN_MAX};
use super::signing::{signed_bytes, Certificate, RecordKind, RevocationList, Signature};

/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 7;

/// Largest datagram the decoder looks at (QUIC datagrams cannot be larger).
pub const DATAGRAM_LEN_MAX: usize = 65_527;

/// Largest stream message the decoder looks at.
pub const STREAM_LEN_MAX: usize = 8 * 1024 * 1024;

/// Most updates one datagram may carry.
pub const UPDATES_PER_DATAGRAM_MAX: usize = 512;

/// Most member records one stream message may carry (a full table: `members_max` is
/// capped to this).
pub const MEMBERS_PER_MESSAGE_MAX: usize = 65_536;

/// Most owners one stream message may name, in a digest or a delta (`kv.owners_max` is
/// capped to this).
pub const OWNERS_PER_MESSAGE_MAX: usize = 65_536;

/// Most key/value entries one owner's delta may carry.
pub const ENTRIES_PER_DELTA_MAX: usize = 65_536;

/// Most certificates one stream message may carry: checking one against the CA costs
/// ~0.1 ms, so a message costs at most ~0.1 s of checks however it is built.
pub const CERTIFICATES_PER_MESSAGE_MAX: usize = 1024;

/// Most revocation lists (or their ids) one stream message may carry: a node holds one per
/// CA it trusts.
pub const REVOCATIONS_PER_MESSAGE_MAX: usize = 16;

/// Most names one [`StreamMessage::CertificateRequest`] may ask for.
pub const CERTIFICATE_NAMES_MAX: usize = 64;

/// Most names one [`StreamMessage::RecordRequest`] may ask for: a datagram's worth of
/// [`Update::Digest`]s.
pub const RECORD_NAMES_MAX: usize = 128;

/// Most user events one stream message may carry (a node sends its last 64).
pub const EVENTS_PER_MESSAGE_MAX: usize = 256;

/// Most sequence elements (members, owners, entries, events, updates, and each signature
/// and byte string as one) one stream message may hold in all, however they nest: decoding
/// costs at most this many allocations, about 18 MiB however the message is built. Room for
/// a full delta of [`ENTRIES_PER_DELTA_MAX`] entries with their signatures.
pub const ITEMS_PER_STREAM_MAX: usize = 196_608;

/// Why bytes from a peer were not accepted. The message is dropped whole: nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty message")]
    Empty,
    /// Longer than the limit for its kind.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A version byte this build does not speak.
    #[error("unknown wire version {0} (this build speaks {WIRE_VERSION})")]
    UnknownVersion(u8),
    /// postcard could not decode the body (truncated, bad tag, bad name, ...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A field over its limit (a length, a count, or a counter above
    /// [`COUNTER_MAX`](super::bounded::COUNTER_MAX)), refused as it was read.
    #[error("field `{field}` over its limit: {len} > {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The SWIM message a datagram carries, besides its piggybacked updates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// "Are you there?" The target names who the sender means, so a stale address is caught.
    /// `suspected` carries the incarnation the sender suspects the target at (buddy system),
    /// so it can refute at once.
    Ping {
        /// Matches the Ack.
        seq: u64,
        /// Whom the sender means to probe.
        target: NodeName,
        /// Set when the sender holds the target Suspect at this incarnation.
        #[serde(deserialize_with = "suspected")]
        suspected: Option<Incarnation>,
    },
    /// Answer to a Ping (or relayed answer to a PingReq).
    Ack {
        /// The Ping's or PingReq's sequence number.
        seq: u64,
    },
    /// "Please probe `target` for me."
    PingReq {
        /// Sequence number for the relayed Ack or the Nack.
        seq: u64,
        /// The member to probe.
        target: NodeName,
        /// Where it listens.
        target_addr: SocketAddr,
    },
    /// "I asked, and `target` did not answer me either" (Lifeguard).
    Nack {
        /// The PingReq's sequence number.
        seq: u64,
    },
    /// Nothing but piggybacked updates.
    Gossip,
}

/// A piggybacked update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// A membership claim about one member.
    Member(MemberUpdate),
    /// A user event.
    Event(SignedEvent),
    /// A member's record named by its digest, the signed record left out (~15 bytes where
    /// the record is ~110): a receiver for which it is news asks the sender for the record
    /// ([`StreamMessage::RecordRequest`]) and checks it before applying or relaying it.
    Digest(MemberDigest),
}

/// A member's statement about itself, signed by it: where it listens, at which incarnation,
/// with which metadata, and whether it has left. Only the member can make one, so only it
/// can raise its incarnation, move its address or announce its leave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Whom it is about, and who signed it.
    pub name: NodeName,
    /// Where it listens.
    pub addr: SocketAddr,
    /// At which incarnation.
    #[serde(deserialize_with = "incarnation")]
    pub incarnation: Incarnation,
    /// Set for a graceful leave.
    pub left: bool,
    /// Its metadata.
    #[serde(deserialize_with = "meta")]
    pub meta: Vec<u8>,
}

impl Claim {
    /// The bytes its signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(RecordKind::Claim, self)
    }
}

/// An accusation against a member at one of its own signed incarnations, signed by the
/// accuser: Lifeguard counts distinct verified accusers as confirmations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accusation {
    /// Dead rather than Suspect.
    pub dead: bool,
    /// The member whose probe failed (or whose suspicion timed out), and who signed it.
    pub accuser: NodeName,
    /// By the accuser, over [`Accusation::signed_bytes`].
    pub signature: Signature,
}

impl Accusation {
    /// The bytes an accusation against `subject` at `incarnation` is signed over.
    pub fn signed_bytes(
        subject: &NodeName,
        incarnation: Incarnation,
        dead: bool,
        accuser: &NodeName,
    ) -> Vec<u8> {
        signed_bytes(
            RecordKind::Accusation,
            &(subject, incarnation, dead, accuser),
        )
    }
}

/// What a full-state exchange says of a member it does not send in full: enough for the
/// peer to tell whether its own record is newer, older or the same. About 15 bytes where the
/// signed record is 110 or more; the records themselves go only where they are news.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDigest {
    /// Whom.
    pub name: NodeName,
    /// The incarnation held.
    #[serde(deserialize_with = "incarnation")]
    pub incarnation: Incarnation,
    /// The state held at that incarnation.
    pub state: State,
}

/// A claim about a member, as gossiped and as exchanged in full-state sync: the member's own
/// signed [`Claim`], and for Suspect and Dead the accusation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberUpdate {
    /// The member's own statement.
    pub claim: Claim,
    /// By the member, over [`Claim::signed_bytes`].
    pub signature: Signature,
    /// For Suspect and Dead.
    pub accusation: Option<Accusation>,
}

impl MemberUpdate {
    /// Whom it is about.
    pub fn name(&self) -> &NodeName {
        &self.claim.name
    }

    /// The state it claims: Left when the member said so, else by the accusation.
    pub fn state(&self) -> State {
        match (&self.accusation, self.claim.left) {
            (_, true) => State::Left,
            (None, false) => State::Alive,
            (Some(a), false) if a.dead => State::Dead,
            (Some(_), false) => State::Suspect,
        }
    }
}

/// A user event as it travels: the event and its origin's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    /// The event.
    pub event: UserEvent,
    /// By `event.origin`, over [`SignedEvent::signed_bytes`].
    pub signature: Signature,
}

impl SignedEvent {
    /// The bytes an event's signature covers.
    pub fn signed_bytes(event: &UserEvent) -> Vec<u8> {
        signed_bytes(RecordKind::UserEvent, event)
    }
}

/// A decoded datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// The SWIM message.
    pub message: Message,
    /// Piggybacked updates.
    #[serde(deserialize_with = "updates")]
    pub updates: Vec<Update>,
}

/// Messages on QUIC streams: one request frame, one reply frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMessage {
    /// Full membership state, sent to join (`join`) or for periodic anti-entropy.
    PushPull {
        /// Set when the sender is joining through this member.
        join: bool,
        /// The sender's name; must equal its certificate's name.
        sender: NodeName,
        /// Members in full: the sender's own record (its Left while leaving); every one of
        /// them is merged.
        #[serde(deserialize_with = "members")]
        members: Vec<MemberUpdate>,
        /// Every other member the sender holds, tombstones included, as a digest: the
        /// responder answers with its records that are news to the sender and names the
        /// sender's that are news to it.
        #[serde(deserialize_with = "member_digests")]
        digest: Vec<MemberDigest>,
        /// The sender's key/value digest, per owner.
        #[serde(deserialize_with = "digest")]
        kv_digest: Vec<OwnerDigest>,
        /// The user events the sender saw last, so a member that missed one catches up.
        #[serde(deserialize_with = "events")]
        events: Vec<SignedEvent>,
        /// When joining, the sender's own certificate, so the responder can check its record
        /// (a member's is asked for when missing).
        #[serde(deserialize_with = "certificates")]
        certificates: Vec<Certificate>,
        /// The ids ([`RevocationList::id`]) of the revocation lists the sender holds.
        #[serde(deserialize_with = "revocation_ids")]
        revocation_ids: Vec<u64>,
    },
    /// The responder's side of a full-state exchange, after merging the request.
    PushPullReply {
        /// The responder's records that the request's digest lacks or holds older (all of
        /// them for a joiner), its record of the requester always among them.
        #[serde(deserialize_with = "members")]
        members: Vec<MemberUpdate>,
        /// Members whose records in the request's digest are news to the responder: the
        /// requester sends them with its [`StreamMessage::KvPush`].
        #[serde(deserialize_with = "member_names")]
        wants: Vec<NodeName>,
        /// Key/value entries the requester lacks, by its digest.
        #[serde(deserialize_with = "deltas")]
        kv_delta: Vec<OwnerDelta>,
        /// The responder's digest, so the requester can send back what it lacks.
        #[serde(deserialize_with = "digest")]
        kv_digest: Vec<OwnerDigest>,
        /// The user events the responder saw last.
        #[serde(deserialize_with = "events")]
        events: Vec<SignedEvent>,
        /// The certificates of the members sent whom the request's digest did not list (so
        /// the requester never checked a record of theirs): all of them for a joiner (up to
        /// [`CERTIFICATES_PER_MESSAGE_MAX`]).
        #[serde(deserialize_with = "certificates")]
        certificates: Vec<Certificate>,
        /// The revocation lists the responder holds that the request did not name (all of
        /// them for a joiner): taken before the members, so a joiner never admits a member
        /// its cluster has banned.
        #[serde(deserialize_with = "revocations")]
        revocations: Vec<RevocationList>,
        /// The ids of the lists the responder holds, so the requester sends those it lacks
        /// ([`StreamMessage::Revocations`]).
        #[serde(deserialize_with = "revocation_ids")]
        revocation_ids: Vec<u64>,
    },
    /// Key/value entries pushed to a peer: the requester's half of a full-state exchange or
    /// of a [`StreamMessage::KvSync`], what the responder lacks by its digest.
    KvPush {
        /// The entries, per owner.
        #[serde(deserialize_with = "deltas")]
        deltas: Vec<OwnerDelta>,
        /// After a full-state exchange, the member records the reply's `wants` named.
        #[serde(deserialize_with = "members")]
        members: Vec<MemberUpdate>,
    },
    /// Answer to [`StreamMessage::KvPush`].
    KvPushAck,
    /// A direct probe sent on a stream when the datagram Ping got no Ack within
    /// `probe_timeout`, alongside the PingReqs (memberlist's TCP fallback ping). Streams are
    /// retransmitted, so random datagram loss alone does not make a live member Suspect.
    /// Fields as in [`Message::Ping`].
    Ping {
        /// Matches the [`StreamMessage::Ack`].
        seq: u64,
        /// Whom the sender means to probe.
        target: NodeName,
        /// Set when the sender holds the target Suspect at this incarnation.
        #[serde(deserialize_with = "suspected")]
        suspected: Option<Incarnation>,
    },
    /// Reply to a stream [`StreamMessage::Ping`].
    Ack {
        /// The Ping's sequence number.
        seq: u64,
    },
    /// A key/value round: the sender's digest, so the receiver answers with what the sender
    /// lacks. Sent every `kv_sync_interval` to `gossip_nodes` members while key/value data
    /// is changing; no member table, unlike [`StreamMessage::PushPull`].
    KvSync {
        /// The sender's key/value digest, per owner.
        #[serde(deserialize_with = "digest")]
        digest: Vec<OwnerDigest>,
    },
    /// Answer to [`StreamMessage::KvSync`].
    KvSyncReply {
        /// Entries the requester lacks, by its digest.
        #[serde(deserialize_with = "deltas")]
        delta: Vec<OwnerDelta>,
        /// The responder's digest of just the owners where the requester is ahead or holds
        /// a different set, so the requester pushes those back.
        #[serde(deserialize_with = "digest")]
        wants: Vec<OwnerDigest>,
    },
    /// "Send me these members' certificates": records signed by them came from this peer,
    /// which checked them, so it holds their certificates.
    CertificateRequest {
        /// Whose.
        #[serde(deserialize_with = "certificate_names")]
        names: Vec<NodeName>,
    },
    /// Answer to [`StreamMessage::CertificateRequest`]: the certificates held of those asked.
    CertificateReply {
        /// The certificates.
        #[serde(deserialize_with = "certificates")]
        certificates: Vec<Certificate>,
    },
    /// "Send me these members' records": this peer gossiped their digests
    /// ([`Update::Digest`]), which were news to the sender.
    RecordRequest {
        /// Whose records.
        #[serde(deserialize_with = "record_names")]
        names: Vec<NodeName>,
        /// Those of `names` whose certificates the sender lacks.
        #[serde(deserialize_with = "record_names")]
        certificates: Vec<NodeName>,
    },
    /// Answer to [`StreamMessage::RecordRequest`]: the records held of those asked, and the
    /// certificates asked for.
    RecordReply {
        /// The records.
        #[serde(deserialize_with = "record_members")]
        members: Vec<MemberUpdate>,
        /// The certificates.
        #[serde(deserialize_with = "record_certificates")]
        certificates: Vec<Certificate>,
    },
    /// Revocation lists pushed to a peer: by a node that just took them (from the operator
    /// or a peer), to a few members, so a revocation reaches the cluster in a few round
    /// trips; and by a push-pull requester, the lists the reply showed the responder lacks.
    Revocations {
        /// The lists, as their CAs signed them.
        #[serde(deserialize_with = "revocations")]
        lists: Vec<RevocationList>,
    },
    /// Answer to [`StreamMessage::Revocations`].
    RevocationsAck,
}

/// Encodes `message` followed by `count` updates whose encodings ([`encode_update`]) are
/// concatenated in `updates`.
pub fn encode_datagram(message: &Message, count: usize, updates: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 16 + 5 + updates.len());
    out.push(WIRE_VERSION);
    // Writing into a Vec cannot fail; only a serializer error in our own types could.
    out = postcard::to_extend(message, out).expect("Message always serializes");
    push_varint(&mut out, count);
    out.extend_from_slice(updates);
    out
}

/// Bytes a datagram header takes: version, message and the update count.
pub fn datagram_overhead(message: &Message, update_count: usize) -> usize {
    let mut scratch = Vec::new();
    push_varint(&mut scratch, update_count);
    let message_len = postcard::to_stdvec(message)
        .expect("Message always serializes")
        .len();
    1 + message_len + scratch.len()
}

/// Encodes one update, to be queued and copied into datagrams.
pub fn encode_update(update: &Update) -> Vec<u8> {
    postcard::to_stdvec(update).expect("Update always serializes")
}

/// Decodes a datagram, checking every bound as it is read.
pub fn decode_datagram(bytes: &[u8]) -> Result<Packet, DecodeError> {
    let body = check_frame(bytes, DATAGRAM_LEN_MAX)?;
    // Every element of a datagram takes at least a byte of it.
    decode_bounded(body, DATAGRAM_LEN_MAX)
}

/// Encodes a stream message.
pub fn encode_stream(message: &StreamMessage) -> Vec<u8> {
    postcard::to_extend(message, vec![WIRE_VERSION]).expect("StreamMessage always serializes")
}

/// Decodes a stream message, checking every bound as it is read.
pub fn decode_stream(bytes: &[u8]) -> Result<StreamMessage, DecodeError> {
    let body = check_frame(bytes, STREAM_LEN_MAX)?;
    decode_bounded(body, ITEMS_PER_STREAM_MAX)
}

fn check_frame(bytes: &[u8], max: usize) -> Result<&[u8], DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if bytes.len() > max {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max,
        });
    }
    if version != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    Ok(body)
}

// The bounds of each field, applied as it is decoded (see `bounded`).

fn updates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Update>, D::Error> {
    bounded::seq(d, "updates", UPDATES_PER_DATAGRAM_MAX)
}

fn members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MemberUpdate>, D::Error> {
    bounded::seq(d, "members", MEMBERS_PER_MESSAGE_MAX)
}

fn member_digests<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MemberDigest>, D::Error> {
    bounded::seq(d, "member digests", MEMBERS_PER_MESSAGE_MAX)
}

fn member_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NodeName>, D::Error> {
    bounded::seq(d, "member names", MEMBERS_PER_MESSAGE_MAX)
}

fn digest<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OwnerDigest>, D::Error> {
    bounded::seq(d, "digest owners", OWNERS_PER_MESSAGE_MAX)
}

fn deltas<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OwnerDelta>, D::Error> {
    bounded::seq(d, "delta owners", OWNERS_PER_MESSAGE_MAX)
}

fn events<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SignedEvent>, D::Error> {
    bounded::seq(d, "events", EVENTS_PER_MESSAGE_MAX)
}

fn certificates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Certificate>, D::Error> {
    bounded::seq(d, "certificates", CERTIFICATES_PER_MESSAGE_MAX)
}

fn revocations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RevocationList>, D::Error> {
    bounded::seq(d, "revocation lists", REVOCATIONS_PER_MESSAGE_MAX)
}

fn revocation_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    bounded::seq(d, "revocation ids", REVOCATIONS_PER_MESSAGE_MAX)
}

fn certificate_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NodeName>, D::Error> {
    bounded::seq(d, "certificate names", CERTIFICATE_NAMES_MAX)
}

fn record_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NodeName>, D::Error> {
    bounded::seq(d, "record names", RECORD_NAMES_MAX)
}

fn record_members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MemberUpdate>, D::Error> {
    bounded::seq(d, "records", RECORD_NAMES_MAX)
}

fn record_certificates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Certificate>, D::Error> {
    bounded::seq(d, "record certificates", RECORD_NAMES_MAX)
}

fn meta<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    bounded::bytes(d, "meta", META_LEN_MAX)
}

fn incarnation<'de, D: Deserializer<'de>>(d: D) -> Result<Incarnation, D::Error> {
    bounded::counter(d, "incarnation").map(Incarnation)
}

fn suspected<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Incarnation>, D::Error> {
    bounded::option_counter(d, "suspected incarnation").map(|v| v.map(Incarnation))
}

/// postcard's unsigned varint (LEB128) for a length.
fn push_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::protocol::bounded::COUNTER_MAX;

    use crate::test_name as name;

    /// A record as it travels; the codec does not look at what signatures say.
    fn member(n: &str, inc: u64, state: State) -> MemberUpdate {
        MemberUpdate {
            claim: Claim {
                name: name(n),
                addr: "127.0.0.1:7946".parse().unwrap(),
                incarnation: Incarnation(inc),
                left: state == State::Left,
                meta: b"zone=a".to_vec(),
            },
            signature: Signature::new(vec![7; 64]),
            accusation: matches!(state, State::Suspect | State::Dead).then(|| Accusation {
                dead: state == State::Dead,
                accuser: name("accuser"),
                signature: Signature::new(vec![8; 64]),
            }),
        }
    }

    #[test]
    fn datagram_round_trips_with_preencoded_updates() {
        let msg = Message::Ping {
            seq: 7,
            target: name("b"),
            suspected: Some(Incarnation(3)),
        };
        let updates: Vec<Update> = (0..200)
            .map(|i| Update::Member(member(&format!("n{i}"), i, State::Suspect)))
            .collect();
        let body: Vec<u8> = updates.iter().flat_map(encode_update).collect();
        let bytes = encode_datagram(&msg, updates.len(), &body);
        let expected_len = datagram_overhead(&msg, updates.len()) + body.len();
        assert_eq!(bytes.len(), expected_len);
        let packet = decode_datagram(&bytes).unwrap();
        assert_eq!(
            packet,
            Packet {
                message: msg,
                updates
            }
        );
    }

    #[test]
    fn stream_round_trips() {
        let m = StreamMessage::PushPull {
            join: true,
            sender: name("a"),
            members: vec![member("a", 1, State::Alive), member("b", 2, State::Dead)],
            digest: vec![MemberDigest {
                name: name("c"),
                incarnation: Incarnation(7),
                state: State::Left,
            }],
            kv_digest: vec![OwnerDigest {
                owner: name("a"),
                max_version: 9,
                fingerprint: 7,
                gc_floor: 1,
            }],
            events: vec![],
            certificates: vec![Certificate {
                name: name("a"),
                der: vec![0x30; 300],
            }],
            revocation_ids: vec![3, u64::MAX],
        };
        assert_eq!(decode_stream(&encode_stream(&m)).unwrap(), m);
        let m = StreamMessage::Revocations {
            lists: vec![RevocationList {
                der: vec![0x30; 500],
            }],
        };
        assert_eq!(decode_stream(&encode_stream(&m)).unwrap(), m);
        let ping = StreamMessage::Ping {
            seq: 9,
            target: name("b"),
            suspected: Some(Incarnation(2)),
        };
        assert_eq!(decode_stream(&encode_stream(&ping)).unwrap(), ping);
        let ack = StreamMessage::Ack { seq: 9 };
        assert_eq!(decode_stream(&encode_stream(&ack)).unwrap(), ack);
    }

    #[test]
    fn bad_frames_are_refused() {
        let ok = encode_datagram(&Message::Ack { seq: 1 }, 0, &[]);
        assert_eq!(decode_datagram(&[]), Err(DecodeError::Empty));
        let mut other = ok.clone();
        other[0] = WIRE_VERSION + 1;
        assert_eq!(
            decode_datagram(&other),
            Err(DecodeError::UnknownVersion(WIRE_VERSION + 1))
        );
        assert!(matches!(
            decode_datagram(&ok[..ok.len() - 1]),
            Err(DecodeError::Malformed(_))
        ));
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(
            decode_datagram(&trailing),
            Err(DecodeError::TrailingBytes(1))
        );
        let huge = vec![WIRE_VERSION; DATAGRAM_LEN_MAX + 1];
        assert!(matches!(
            decode_datagram(&huge),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn oversized_metadata_is_refused() {
        let mut m = member("a", 1, State::Alive);
        m.claim.meta = vec![0; META_LEN_MAX + 1];
        let u = encode_update(&Update::Member(m));
        let bytes = encode_datagram(&Message::Gossip, 1, &u);
        assert!(matches!(
            decode_datagram(&bytes),
            Err(DecodeError::FieldTooLong { field: "meta", .. })
        ));
    }

    fn field_refused<T: std::fmt::Debug>(r: Result<T, DecodeError>) -> &'static str {
        match r {
            Err(DecodeError::FieldTooLong { field, .. }) => field,
            other => panic!("expected a named refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_kv_sync_naming_millions_of_owners_is_refused_at_its_count() {
        // [version][KvSync = variant 6][varint 1,600,000] and no owners behind it: refused
        // by the count alone, before anything is allocated or merged.
        let mut bytes = vec![WIRE_VERSION, 6];
        push_varint(&mut bytes, 1_600_000);
        bytes.extend([0; 16]);
        assert_eq!(field_refused(decode_stream(&bytes)), "digest owners");
        // As many owners as fit the budget but spread over nested deltas: refused by the
        // message's element budget.
        let delta = OwnerDelta {
            reset: false,
            gc_floor: 0,
            entries: (0..50_000)
                .map(|i| crate::protocol::KvEntry {
                    owner: name("a"),
                    key: format!("k{i}"),
                    version: i,
                    value: None,
                    sealed: None,
                })
                .collect(),
            proof: Default::default(),
        };
        let push = StreamMessage::KvPush {
            deltas: vec![delta.clone(), delta.clone(), delta.clone(), delta],
            members: Vec::new(),
        };
        assert_eq!(
            field_refused(decode_stream(&encode_stream(&push))),
            "elements in the message"
        );
    }

    #[test]
    fn revocation_lists_are_bounded_in_size_and_count() {
        let push = |len: usize, count: usize| StreamMessage::Revocations {
            lists: vec![
                RevocationList {
                    der: vec![0x30; len]
                };
                count
            ],
        };
        let ok = push(
            crate::protocol::REVOCATION_LEN_MAX,
            REVOCATIONS_PER_MESSAGE_MAX,
        );
        assert_eq!(decode_stream(&encode_stream(&ok)).unwrap(), ok);
        assert_eq!(
            field_refused(decode_stream(&encode_stream(&push(
                crate::protocol::REVOCATION_LEN_MAX + 1,
                1
            )))),
            "revocation list"
        );
        assert_eq!(
            field_refused(decode_stream(&encode_stream(&push(
                10,
                REVOCATIONS_PER_MESSAGE_MAX + 1
            )))),
            "revocation lists"
        );
    }

    #[test]
    fn event_names_payloads_and_counters_are_bounded_on_streams_too() {
        let event = |name_len: usize, seq: u64| SignedEvent {
            event: UserEvent {
                origin: name("a"),
                seq,
                name: "e".repeat(name_len),
                payload: Vec::new(),
            },
            signature: Signature::new(vec![1; 64]),
        };
        let push_pull = |events| StreamMessage::PushPull {
            join: false,
            sender: name("a"),
            members: Vec::new(),
            digest: Vec::new(),
            kv_digest: Vec::new(),
            events,
            certificates: Vec::new(),
            revocation_ids: Vec::new(),
        };
        let max = super::super::events::EVENT_NAME_LEN_MAX;
        let ok = push_pull(vec![event(max, COUNTER_MAX), event(0, 0)]);
        assert_eq!(decode_stream(&encode_stream(&ok)).unwrap(), ok);
        let long = push_pull(vec![event(max + 1, 1)]);
        assert_eq!(
            field_refused(decode_stream(&encode_stream(&long))),
            "event name"
        );
        let big = push_pull(vec![event(1, COUNTER_MAX + 1)]);
        assert_eq!(
            field_refused(decode_stream(&encode_stream(&big))),
            "event seq"
        );
        let mut m = member("a", u64::MAX, State::Alive);
        m.claim.meta.clear();
        let bytes = encode_datagram(&Message::Gossip, 1, &encode_update(&Update::Member(m)));
        assert_eq!(field_refused(decode_datagram(&bytes)), "incarnation");
        let ping = Message::Ping {
            seq: 1,
            target: name("b"),
            suspected: Some(Incarnation(u64::MAX)),
        };
        assert_eq!(
            field_refused(decode_datagram(&encode_datagram(&ping, 0, &[]))),
            "suspected incarnation"
        );
    }

    #[test]
    fn a_datagram_with_more_updates_than_allowed_is_refused() {
        let u = encode_update(&Update::Member(member("a", 1, State::Alive)));
        let body: Vec<u8> = (0..=UPDATES_PER_DATAGRAM_MAX)
            .flat_map(|_| u.clone())
            .collect();
        let bytes = encode_datagram(&Message::Gossip, UPDATES_PER_DATAGRAM_MAX + 1, &body);
        assert_eq!(field_refused(decode_datagram(&bytes)), "updates");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_datagram(&bytes);
            let _ = decode_stream(&bytes);
        }

        #[test]
        fn versioned_random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = vec![WIRE_VERSION];
            bytes.extend(body);
            if let Ok(p) = decode_datagram(&bytes) {
                // Whatever decodes must re-encode to a message that decodes the same.
                let body: Vec<u8> = p.updates.iter().flat_map(encode_update).collect();
                prop_assert_eq!(decode_datagram(&encode_datagram(&p.message, p.updates.len(), &body)).unwrap(), p);
            }
            let _ = decode_stream(&bytes);
        }
    }
}
