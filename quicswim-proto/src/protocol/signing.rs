//! Signed records: what lets a node apply a claim it heard from a third party.
//!
//! Every record that states a member's own facts (its Alive with incarnation, address and
//! metadata, its Leave, its key/value entries, its tombstone floor, its user events) carries a
//! signature by that member's certificate key, and every accusation (Suspect, Dead) one by its
//! accuser. A node checks the signature against the signer's certificate before it applies or
//! relays the record, so a member can lie only about itself:
//!
//! ```text
//!   Z signs Alive(Z, inc 4)         A relays it            B checks it with Z's certificate
//!   Z ───────────────────────> A ─────────────────────> B   (Z's key, chained to the CA,
//!                                                             named Z), applies, relays
//! ```
//!
//! The core does no cryptography itself: the runtime hands it a [`Keyring`] that signs with
//! this node's key and verifies with certificates checked against the cluster CA (quicswim
//! does that with rustls-webpki and ring; the simulator with seeded Ed25519 keys). Records
//! are signed over a canonical encoding that starts with a tag naming the record's kind
//! ([`signed_bytes`]), so a signature over one kind never verifies as another.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use super::bounded;
use super::member::NodeName;

/// Longest signature the decoder accepts: ECDSA P-384 in fixed form (96 bytes). Ed25519 and
/// ECDSA P-256 (fixed form) take 64.
pub const SIGNATURE_LEN_MAX: usize = 96;

/// Longest certificate (DER) the decoder accepts.
pub const CERTIFICATE_LEN_MAX: usize = 8 * 1024;

/// Longest revocation list (DER) the decoder accepts: room for about 1,500 revoked
/// certificates.
pub const REVOCATION_LEN_MAX: usize = 64 * 1024;

/// A signature over one record's [`signed_bytes`]. Shared, not copied, when cloned: a node
/// holds one per member and relays it with every copy of the record it sends.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature(
    #[serde(
        serialize_with = "serialize_signature",
        deserialize_with = "signature_bytes"
    )]
    Arc<[u8]>,
);

impl Signature {
    /// A signature of these bytes.
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self(bytes.into())
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether another clone of it is alive (for a pool's sweep).
    pub(crate) fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for b in self.0.iter().take(6) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..; {} bytes)", self.0.len())
    }
}

fn signature_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
    bounded::bytes(d, "signature", SIGNATURE_LEN_MAX).map(Arc::from)
}

/// As a `Vec<u8>` is: a length, then the bytes.
fn serialize_signature<S: serde::Serializer>(bytes: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(bytes.iter())
}

/// A certificate (DER) as it travels, with the name it is offered for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The member it belongs to (must be its DNS name).
    pub name: NodeName,
    /// The end-entity certificate, DER.
    #[serde(deserialize_with = "certificate_bytes")]
    pub der: Vec<u8>,
}

fn certificate_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    bounded::bytes(d, "certificate", CERTIFICATE_LEN_MAX)
}

/// A certificate revocation list (X.509 CRL, DER) exactly as its CA signed it: members pass
/// it on unchanged, and each checks the CA's signature itself before honouring it, so no
/// member can make one up or change one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// The list, DER.
    #[serde(deserialize_with = "revocation_bytes")]
    pub der: Vec<u8>,
}

impl RevocationList {
    /// What names this list in digests: a hash of its bytes (xxh64, not a cryptographic
    /// hash). An id only tells a peer which lists to send: two lists of one id would at worst
    /// keep one from being sent in an exchange, and every list is checked on its own.
    pub fn id(der: &[u8]) -> u64 {
        crate::hash::xxh64(der, REVOCATION_ID_SEED)
    }
}

impl fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RevocationList({:016x}; {} bytes)",
            Self::id(&self.der),
            self.der.len()
        )
    }
}

const REVOCATION_ID_SEED: u64 = 0x7265_766f_6b65_6421;

fn revocation_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    bounded::bytes(d, "revocation list", REVOCATION_LEN_MAX)
}

/// What a keyring made of a revocation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Taken: signed by a trusted CA and newer than the list held from that CA, which it
    /// replaces. `banned` are the members whose certificates it names: dropped.
    Taken {
        /// The members it cut off.
        banned: Vec<NodeName>,
    },
    /// Held already, or older than the list held from its CA: nothing changed.
    Known,
    /// Not a list a trusted CA signed, or not a list at all: nothing changed.
    Refused(String),
}

/// What a signature check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by the named member's certificate key.
    Valid,
    /// Not signed by it: a forgery, or bytes changed on the way.
    Invalid,
    /// No certificate is held for the signer yet; ask the peer that sent the record.
    UnknownSigner,
}

/// Why a certificate a peer offered was not kept. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("certificate for {name} refused: {reason}")]
pub struct CertificateRefused {
    /// The name it was offered for.
    pub name: String,
    /// Why (not chained to a trusted CA, expired, another name, unsupported key, ...).
    pub reason: String,
}

/// Signs with this node's key and checks other members' signatures.
///
/// Shared between the core and the runtime (which learns peers' certificates from TLS
/// handshakes), so it takes `&self` and keeps its cache behind its own lock.
pub trait Keyring: Send + Sync + fmt::Debug {
    /// Signs `record` (a [`signed_bytes`] encoding) with this node's certificate key.
    fn sign(&self, record: &[u8]) -> Signature;

    /// Whether `signature` over `record` was made by `signer`'s certificate key.
    fn verify(&self, signer: &NodeName, record: &[u8], signature: &Signature) -> Verdict;

    /// Whether every `(signer, record, signature)` of `items` is valid, checked together
    /// where that costs less than one by one (Ed25519 batch verification). `false` says
    /// nothing of any one item: the caller checks them one by one with [`Keyring::verify`].
    /// The default checks nothing together.
    fn verify_together(&self, items: &[(&NodeName, &[u8], &Signature)]) -> bool {
        let _ = items;
        false
    }

    /// Takes a certificate a peer offered for `name`: kept only after it is checked against
    /// the trust anchors, its validity period and `name`; as `name`'s newest when newer than
    /// the one held (which is kept behind it while valid), else behind it.
    fn learn(&self, name: &NodeName, der: &[u8]) -> Result<(), CertificateRefused>;

    /// Takes several certificates as [`learn`](Self::learn) takes one, where that costs less
    /// together (their issuers' Ed25519 signatures checked in one batch): one result per item,
    /// in order, each as `learn` would give it. The default learns them one by one.
    fn learn_all(&self, certs: &[(&NodeName, &[u8])]) -> Vec<Result<(), CertificateRefused>> {
        certs
            .iter()
            .map(|(name, der)| self.learn(name, der))
            .collect()
    }

    /// The certificate held for `name` (this node's own included), to send a peer that
    /// lacks it.
    fn certificate(&self, name: &NodeName) -> Option<Arc<[u8]>>;

    /// The certificate `name` rotated away from, if one is held behind its newest and is
    /// still valid: offered beside the newest, so that a peer that learns only the newest can
    /// still check what `name` signed before. The default holds none.
    fn previous_certificate(&self, name: &NodeName) -> Option<Arc<[u8]>> {
        let _ = name;
        None
    }

    /// Drops what is held for `name` (a member forgotten for good).
    fn forget(&self, name: &NodeName);

    /// Takes a revocation list (DER) a peer or the operator handed in, once it has checked
    /// the CA's signature on it. The default takes none.
    fn learn_revocation(&self, der: &[u8]) -> Revocation {
        let _ = der;
        Revocation::Refused("this keyring takes no revocation lists".into())
    }

    /// The revocation lists held (DER, one per CA at most): sent to peers that lack them.
    fn revocations(&self) -> Vec<Arc<[u8]>> {
        Vec::new()
    }
}

/// The kinds of signed record; the first field of every [`signed_bytes`] encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RecordKind {
    /// A member's statement about itself: Alive or Left, address, incarnation, metadata.
    Claim,
    /// An accusation: Suspect or Dead, signed by the accuser.
    Accusation,
    /// A key/value entry or delete: a leaf of a batch its owner signs (`KvBatch`).
    KvEntry,
    /// An owner's tombstone floor, signed by the owner.
    KvFloor,
    /// A user event, signed by its origin.
    UserEvent,
    /// The root of a batch of an owner's key/value entries, signed by the owner.
    KvBatch,
}

/// The bytes a record of `kind` with `fields` is signed over: a domain tag, the kind, then
/// the fields, postcard-encoded.
pub fn signed_bytes<T: Serialize + ?Sized>(kind: RecordKind, fields: &T) -> Vec<u8> {
    let out = b"quicswim/1".to_vec();
    let out = postcard::to_extend(&kind, out).expect("RecordKind always serializes");
    postcard::to_extend(fields, out).expect("record fields always serialize")
}
