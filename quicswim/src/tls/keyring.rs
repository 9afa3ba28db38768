//! [`CertKeyring`]: the node's [`Keyring`] — signs records with the node's certificate key and
//! verifies other members' records against their certificates, checked as the TLS handshake
//! checks a peer.
//!
//! ```text
//!   Identity { chain[0], key } ──> signing key (Ed25519, ECDSA P-256 or P-384, from the
//!                                  certificate's key algorithm; RSA refused at load)
//!   Identity { roots }         ──> trust anchors
//!
//!   learn(name, der) ── webpki: chains to an anchor (through this node's own intermediates,
//!                       if any), valid now, clientAuth, DNS SAN = name
//!                    ── and name is the certificate's one node name (byte for byte)
//!                    ── and its cluster URI SAN is this node's (or both have none)
//!   learn_all(list)  ── the same, the issuers' Ed25519 signatures checked in one batch
//!                    ──> held[name] = (der, algorithm, public key, not_after)   (bounded)
//!   verify(signer, record, sig) ── held[signer]? no ──> UnknownSigner
//!                               ── expired since learned ──> UnknownSigner (ask again)
//!                               ── ring verify ──> Valid | Invalid
//!   (in a cluster, sign and verify cover a context naming the cluster, then the record)
//! ```
//!
//! # Building it in the node
//!
//! From the same [`Identity`] the TLS configurations are made from ([`server_config`] and
//! [`client_config`] take `&NodeConfig::identity`):
//!
//! ```no_run
//! # fn f(identity: &quicswim::tls::Identity) -> quicswim::tls::Result<()> {
//! use std::sync::Arc;
//! use quicswim::protocol::Keyring;
//! use quicswim::tls::CertKeyring;
//!
//! let keyring: Arc<dyn Keyring> = Arc::new(CertKeyring::new(identity)?);
//! # Ok(()) }
//! ```
//!
//! Build it once at start, before the endpoint, so an unusable key stops the node there; give
//! the same `Arc` to the core and to the transport's connection handler, which may call
//! [`Keyring::learn`] with `peer_name(certs)` and `certs[0]` of every authenticated
//! connection (those already passed the same checks in the handshake). [`Identity::load`]
//! already refuses a key this type cannot sign with, naming the key file; [`CertKeyring::new`]
//! repeats the check for identities assembled in memory.
//!
//! [`server_config`]: super::server_config
//! [`client_config`]: super::client_config

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use quicswim_proto::protocol::signing::CERTIFICATE_LEN_MAX;
use quicswim_proto::protocol::{
    CertificateRefused, Keyring, NodeName, Revocation, Signature, Verdict,
};
use ring::rand::SystemRandom;
use ring::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, UnparsedPublicKey,
    VerificationAlgorithm,
};
use rustls::pki_types::{
    alg_id, AlgorithmIdentifier, CertificateDer, CertificateRevocationListDer, InvalidSignature,
    PrivateKeyDer, ServerName, SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::config::crypto_provider;
use super::identity::{cluster_label, cluster_of, node_name_of};
use super::revocation::{HeldList, Lists};
use super::{Error, Identity, Result};

/// How many members' certificates a [`CertKeyring`] holds at most, this node's own included.
/// A cluster is far smaller; the bound keeps a member that offers certificates for ever new
/// names (each one CA-signed, so this takes a CA-issued flood) from growing memory without
/// end.
pub const HELD_NAMES_MAX: usize = 65_536;

/// A key algorithm records can be signed and verified with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// Ed25519: 64-byte signatures, deterministic (no randomness needed to sign). `quicswim
    /// certs` default.
    Ed25519,
    /// ECDSA over P-256 with SHA-256; signatures in fixed form (r ‖ s, 64 bytes).
    EcdsaP256,
    /// ECDSA over P-384 with SHA-384; signatures in fixed form (r ‖ s, 96 bytes).
    EcdsaP384,
}

impl KeyAlgorithm {
    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            KeyAlgorithm::Ed25519 => &signature::ED25519,
            KeyAlgorithm::EcdsaP256 => &signature::ECDSA_P256_SHA256_FIXED,
            KeyAlgorithm::EcdsaP384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    /// Length of the raw public key ring takes: 32 bytes, or an uncompressed point.
    fn public_key_len(self) -> usize {
        match self {
            KeyAlgorithm::Ed25519 => 32,
            KeyAlgorithm::EcdsaP256 => 65,
            KeyAlgorithm::EcdsaP384 => 97,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::EcdsaP384 => "ECDSA P-384",
        })
    }
}

// Object identifiers, DER content bytes.
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];

/// What a certificate's public key is, read from its SubjectPublicKeyInfo.
struct PublicKeyInfo {
    algorithm: KeyAlgorithm,
    /// The raw key (the BIT STRING's bytes), as ring's `UnparsedPublicKey` takes it.
    key: Box<[u8]>,
}

/// Reads the key algorithm and raw public key of a parsed certificate. The error is a
/// reason phrase ("RSA keys cannot sign records ..."), put into the caller's error.
fn public_key_info(cert: &X509Certificate<'_>) -> std::result::Result<PublicKeyInfo, String> {
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.as_bytes();
    let algorithm = if oid == OID_ED25519 {
        KeyAlgorithm::Ed25519
    } else if oid == OID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve.as_ref().map(|c| c.as_bytes()) {
            Some(c) if c == OID_P256 => KeyAlgorithm::EcdsaP256,
            Some(c) if c == OID_P384 => KeyAlgorithm::EcdsaP384,
            Some(_) => {
                return Err(format!(
                    "ECDSA keys on curve {} cannot sign records (P-256 and P-384 can)",
                    curve.map(|c| c.to_id_string()).unwrap_or_default()
                ))
            }
            None => return Err("ECDSA key names no curve".into()),
        }
    } else if oid == OID_RSA || oid == OID_RSA_PSS {
        return Err(unsupported("RSA"));
    } else {
        return Err(unsupported(&spki.algorithm.algorithm.to_id_string()));
    };
    let key = &*spki.subject_public_key.data;
    if key.len() != algorithm.public_key_len() {
        return Err(format!(
            "{algorithm} public key is {} bytes, expected {}",
            key.len(),
            algorithm.public_key_len()
        ));
    }
    Ok(PublicKeyInfo {
        algorithm,
        key: key.into(),
    })
}

fn unsupported(what: &str) -> String {
    format!(
        "{what} keys cannot sign records; use an Ed25519 or ECDSA P-256/P-384 key \
         (`quicswim certs issue` makes Ed25519 keys)"
    )
}

/// Refuses, naming `key_label`, a certificate whose key cannot sign records. [`Identity`]
/// calls it at load so a node with such a key stops at start.
pub(super) fn check_signing_key(leaf: &[u8], cert_label: &str, key_label: &str) -> Result<()> {
    let cert = super::identity::parse(leaf, cert_label)?;
    public_key_info(&cert)
        .map(drop)
        .map_err(|reason| Error::UnsupportedKey {
            file: key_label.to_owned(),
            reason,
        })
}

/// This node's signing key.
enum SigningKey {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair, SystemRandom),
}

impl SigningKey {
    /// Parses `key` as a key of `algorithm`. PKCS#8 for all; SEC1 too for ECDSA (what
    /// `openssl ecparam -genkey` writes), wrapped into PKCS#8 as rustls does for TLS.
    fn new(
        algorithm: KeyAlgorithm,
        key: &PrivateKeyDer<'_>,
        label: &str,
    ) -> Result<(Self, Vec<u8>)> {
        let bad = |reason: String| Error::BadKey {
            file: label.to_owned(),
            reason,
        };
        let ecdsa = |alg: &'static EcdsaSigningAlgorithm, curve_oid: &[u8]| {
            let rng = SystemRandom::new();
            let pkcs8 = match key {
                PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
                PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der(), curve_oid),
                _ => return Err(bad(format!("{algorithm} key must be PKCS#8 or SEC1"))),
            };
            let pair = EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng)
                .map_err(|e| bad(format!("not a {algorithm} key: {e}")))?;
            let public = pair.public_key().as_ref().to_vec();
            Ok((SigningKey::Ecdsa(pair, rng), public))
        };
        match algorithm {
            KeyAlgorithm::Ed25519 => {
                let PrivateKeyDer::Pkcs8(k) = key else {
                    return Err(bad("Ed25519 key must be PKCS#8".into()));
                };
                // `maybe_unchecked` also takes PKCS#8 v1 (no public key inside), which is
                // what OpenSSL writes; the public key is compared with the certificate's below.
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(k.secret_pkcs8_der())
                    .map_err(|e| bad(format!("not an Ed25519 key: {e}")))?;
                let public = pair.public_key().as_ref().to_vec();
                Ok((SigningKey::Ed25519(pair), public))
            }
            KeyAlgorithm::EcdsaP256 => ecdsa(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, OID_P256),
            KeyAlgorithm::EcdsaP384 => ecdsa(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, OID_P384),
        }
    }

    fn sign(&self, record: &[u8]) -> Option<Vec<u8>> {
        match self {
            SigningKey::Ed25519(pair) => Some(pair.sign(record).as_ref().to_vec()),
            SigningKey::Ecdsa(pair, rng) => {
                pair.sign(rng, record).ok().map(|s| s.as_ref().to_vec())
            }
        }
    }
}

/// PKCS#8 `PrivateKeyInfo { 0, { id-ecPublicKey, curve }, OCTET STRING sec1 }`.
fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    let ec_public_key = der_wrap(0x06, OID_EC_PUBLIC_KEY);
    let curve = der_wrap(0x06, curve_oid);
    let alg_id = der_wrap(0x30, &[ec_public_key, curve].concat());
    let version = der_wrap(0x02, &[0]);
    let key = der_wrap(0x04, sec1);
    der_wrap(0x30, &[version, alg_id, key].concat())
}

/// One DER TLV.
fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A member's certificate as held: what verification needs, read once at learn.
struct Held {
    der: Arc<[u8]>,
    algorithm: KeyAlgorithm,
    public_key: Box<[u8]>,
    /// The public key decoded once for batch verification (Ed25519 keys only).
    batch_key: Option<ed25519_dalek::VerifyingKey>,
    /// Start of validity, seconds since the Unix epoch: of two certificates for one name,
    /// the later is the newer.
    not_before: u64,
    /// End of validity, seconds since the Unix epoch.
    not_after: u64,
    /// The certificate's serial number, lowercase hex.
    serial: Box<str>,
    /// The certificate this one replaced (a rotation), kept while it is valid so that
    /// records its subject signed before rotating still verify. Never itself has one.
    previous: Option<Arc<Held>>,
}

/// What a held certificate says of itself, for operators (`quicswim members`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The serial number, lowercase hex (no separators).
    pub serial: String,
    /// The end of its validity.
    pub not_after: std::time::SystemTime,
}

impl Held {
    /// `der` (parsed as `cert`, its key read as `info`) as held, alone.
    fn new(der: &[u8], cert: &X509Certificate<'_>, info: PublicKeyInfo) -> Held {
        Held {
            der: Arc::from(der),
            algorithm: info.algorithm,
            batch_key: batch_key(info.algorithm, &info.key),
            public_key: info.key,
            not_before: not_before_secs(cert),
            not_after: not_after_secs(cert),
            serial: serial_hex(cert),
            previous: None,
        }
    }

    fn info(&self) -> CertificateInfo {
        CertificateInfo {
            serial: self.serial.to_string(),
            not_after: std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.not_after),
        }
    }

    fn expired_at(&self, now: UnixTime) -> bool {
        now.as_secs() > self.not_after
    }

    /// Whether this certificate is newer than `other` (begins later; of two beginning in
    /// the same second, the one ending later).
    fn newer_than(&self, other: &Held) -> bool {
        (self.not_before, self.not_after) > (other.not_before, other.not_after)
    }

    /// This certificate as the newest held for its name, `replaced` kept behind it while it
    /// is valid.
    fn replacing(mut self, replaced: &Held, now: UnixTime) -> Held {
        self.previous = (!replaced.expired_at(now)).then(|| Arc::new(replaced.alone()));
        self
    }

    /// A copy without its predecessor.
    fn alone(&self) -> Held {
        Held {
            der: self.der.clone(),
            algorithm: self.algorithm,
            public_key: self.public_key.clone(),
            batch_key: self.batch_key,
            not_before: self.not_before,
            not_after: self.not_after,
            serial: self.serial.clone(),
            previous: None,
        }
    }

    /// Whether `signature` over `message` verifies with this certificate's key.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(self.algorithm.verification(), &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}

/// The node's [`Keyring`]: signs with the node's certificate key, verifies with certificates
/// checked against the cluster CA exactly as a TLS peer's is (chain, validity, clientAuth
/// usage, name).
///
/// - **Held certificates** are bounded by [`HELD_NAMES_MAX`] (see
///   [`CertKeyring::with_names_max`]); when full, expired ones are dropped first, then new
///   names are refused (a known name is still replaced). This node's own certificate is
///   always held and is never replaced or forgotten: a certificate offered for this node's
///   name is refused unless it is byte for byte its own, so no record about this node can
///   verify unless this node signed it.
/// - **Expiry** is checked again at every verification: a certificate that expired since it
///   was learned gives [`Verdict::UnknownSigner`], so the core asks the relaying peer for the
///   signer's certificate; a renewed one is then learned, and the expired one offered again
///   is refused by [`Keyring::learn`], so the record is dropped.
/// - Verification takes the read lock only to clone the held entry's `Arc`; the signature
///   check runs outside it.
/// - Never panics on input: wrong signature lengths, garbage certificates and unknown
///   algorithms are verdicts or errors.
pub struct CertKeyring {
    name: NodeName,
    /// What this node signs with and trusts: replaced whole by [`rotate`](Self::rotate).
    own: RwLock<Arc<Own>>,
    held: RwLock<HashMap<NodeName, Arc<Held>>>,
    names_max: usize,
    /// This node's cluster (its certificate's cluster URI SAN): certificates of another are
    /// refused, and every record signed or checked is bound to it (`signed_in_cluster`).
    cluster: Option<NodeName>,
    /// The revocation lists honoured, one per CA: from the identity's files and from the
    /// operator or peers ([`Keyring::learn_revocation`]). They only ever move to newer ones.
    lists: RwLock<Arc<Lists>>,
    /// Members cut off because a list named their certificate, with that certificate's serial
    /// and end of validity: shown as banned while it could still be valid, forgotten when a
    /// new certificate of theirs is learned.
    banned: RwLock<HashMap<NodeName, CertificateInfo>>,
}

/// This node's side of a [`CertKeyring`], from one [`Identity`].
struct Own {
    algorithm: KeyAlgorithm,
    signer: SigningKey,
    anchors: Vec<TrustAnchor<'static>>,
    /// This node's own intermediates (its chain after the leaf): members' certificates travel
    /// alone, so one issued under an intermediate verifies when it is this node's as well,
    /// as it is in a cluster whose PKI issues all its nodes from one intermediate.
    intermediates: Vec<CertificateDer<'static>>,
    /// The CA certificates a revocation list may be signed by: the roots, then this node's
    /// intermediates.
    issuers: Vec<CertificateDer<'static>>,
}

/// A new identity for a running [`CertKeyring`], checked
/// ([`CertKeyring::prepare_rotation`]) and not in use yet.
pub struct Rotation {
    own: Own,
    held: Held,
    /// The identity's revocation lists, checked: taken where newer than those held.
    lists: Vec<Arc<HeldList>>,
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material.
        f.debug_struct("Rotation")
            .field("serial", &self.held.serial)
            .finish_non_exhaustive()
    }
}

/// What a keyring takes from an identity.
struct Loaded {
    /// Its own side.
    own: Own,
    /// Its certificate, as held.
    held: Held,
    /// The cluster the certificate names.
    cluster: Option<NodeName>,
    /// Its revocation lists, checked.
    lists: Vec<Arc<HeldList>>,
}

fn load(identity: &Identity) -> Result<Loaded> {
    let cert_label = format!("certificate of {}", identity.name);
    let key_label = format!("private key of {}", identity.name);
    let leaf = identity.chain.first().ok_or_else(|| Error::NoCertificate {
        file: cert_label.clone(),
    })?;
    let cert = super::identity::parse(leaf, &cert_label)?;
    let info = public_key_info(&cert).map_err(|reason| Error::UnsupportedKey {
        file: key_label.clone(),
        reason,
    })?;
    let (signer, public) = SigningKey::new(info.algorithm, &identity.key, &key_label)?;
    if *public != *info.key {
        return Err(Error::KeyMismatch {
            key_file: key_label,
            cert_file: cert_label,
        });
    }
    let anchors = identity
        .roots
        .iter()
        .map(|root| {
            webpki::anchor_from_trusted_cert(root)
                .map(|a| a.to_owned())
                .map_err(|e| Error::BadCertificate {
                    file: "ca roots".into(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let issuers: Vec<CertificateDer<'static>> = identity
        .roots
        .iter()
        .chain(&identity.chain[1..])
        .cloned()
        .collect();
    let lists = identity
        .crls
        .iter()
        .map(|der| {
            HeldList::check_alone(der, &issuers)
                .map(Arc::new)
                .map_err(|reason| Error::BadCrl {
                    file: "revocation lists".into(),
                    reason,
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let algorithm = info.algorithm;
    let held = Held::new(leaf.as_ref(), &cert, info);
    let cluster = cluster_of(&cert, &cert_label)?;
    let own = Own {
        algorithm,
        signer,
        anchors,
        intermediates: identity.chain[1..].to_vec(),
        issuers,
    };
    Ok(Loaded {
        own,
        held,
        cluster,
        lists,
    })
}

impl CertKeyring {
    /// A keyring signing with `identity`'s key (chosen from its certificate's key algorithm)
    /// and trusting `identity.roots`.
    ///
    /// Errors: [`Error::UnsupportedKey`] for a key that cannot sign records (RSA, other
    /// curves); [`Error::BadKey`] for a key that does not parse as its certificate's
    /// algorithm; [`Error::KeyMismatch`] when the key is not the certificate's;
    /// [`Error::BadCertificate`] for a certificate or root that does not parse.
    pub fn new(identity: &Identity) -> Result<Self> {
        let Loaded {
            own,
            held,
            cluster,
            lists: file_lists,
        } = load(identity)?;
        let mut lists = Lists::default();
        for list in file_lists {
            lists.take(list);
        }
        Ok(CertKeyring {
            name: identity.name.clone(),
            own: RwLock::new(Arc::new(own)),
            held: RwLock::new(HashMap::from([(identity.name.clone(), Arc::new(held))])),
            names_max: HELD_NAMES_MAX,
            cluster,
            lists: RwLock::new(Arc::new(lists)),
            banned: RwLock::new(HashMap::new()),
        })
    }

    /// Signs and trusts from `identity` from now on (a rotated certificate and key, a new CA
    /// bundle): [`prepare_rotation`](Self::prepare_rotation), then
    /// [`commit_rotation`](Self::commit_rotation). Nothing changes on error.
    pub fn rotate(&self, identity: &Identity) -> Result<()> {
        let rotation = self.prepare_rotation(identity)?;
        let _revoked = self.commit_rotation(rotation);
        Ok(())
    }

    /// Checks `identity` as [`new`](Self::new) does, and that it is this node's: the same
    /// name and the same cluster. Changes nothing, so a caller can ready everything else that
    /// uses the identity before committing.
    ///
    /// Errors: those of [`new`](Self::new), and [`Error::NotThisNode`] when `identity` names
    /// another node or another cluster.
    pub fn prepare_rotation(&self, identity: &Identity) -> Result<Rotation> {
        let label = format!("certificate of {}", identity.name);
        if identity.name != self.name {
            return Err(Error::NotThisNode {
                file: label,
                reason: format!("it names {}, and this node is {}", identity.name, self.name),
            });
        }
        let Loaded {
            own,
            held,
            cluster,
            lists,
        } = load(identity)?;
        if cluster != self.cluster {
            return Err(Error::NotThisNode {
                file: label,
                reason: format!(
                    "it is for {}, and this node is in {}",
                    cluster_label(cluster.as_ref()),
                    cluster_label(self.cluster.as_ref())
                ),
            });
        }
        Ok(Rotation { own, held, lists })
    }

    /// Signs and trusts from a checked identity from now on. The certificate it replaces is
    /// kept behind the new one while valid, so this node's records signed before still
    /// verify here; members learn the new one when a record signed with it reaches them
    /// (they ask the peer that sent it), or from a new handshake.
    ///
    /// The identity's revocation lists are taken where newer than those held (lists from
    /// peers or the operator stay unless the files hold newer ones).
    ///
    /// Returns the members a revocation list cut off (dropped, and noted as banned); those
    /// whose CA left the bundle are dropped too. Connections made with certificates that no
    /// longer pass are for the caller to close ([`admits`](Self::admits)).
    pub fn commit_rotation(&self, rotation: Rotation) -> Vec<NodeName> {
        let Rotation { own, held, lists } = rotation;
        {
            let mut map = self.held.write().unwrap_or_else(PoisonError::into_inner);
            let kept = match map.get(&self.name) {
                Some(old) if *old.der == *held.der => None,
                Some(old) => Some(held.replacing(old, UnixTime::now())),
                None => Some(held),
            };
            if let Some(kept) = kept {
                map.insert(self.name.clone(), Arc::new(kept));
            }
        }
        let issuers = own.issuers.clone();
        *self.own.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(own);
        {
            // Lists of CAs no longer trusted go, so they are neither honoured nor sent on.
            let mut held = self.lists.write().unwrap_or_else(PoisonError::into_inner);
            let mut next = Lists::clone(&held);
            next.held
                .retain(|h| HeldList::check_alone(&h.der, &issuers).is_ok());
            for list in lists {
                next.take(list);
            }
            *held = Arc::new(next);
        }
        self.recheck_held(UnixTime::now())
    }

    /// The identity's lists in `rotation` that this keyring does not hold: the ones its
    /// commit takes (as long as no newer one comes first), for the caller to pass on.
    pub fn new_lists(&self, rotation: &Rotation) -> Vec<Vec<u8>> {
        let held = self.lists();
        rotation
            .lists
            .iter()
            .filter(|l| !held.holds(&l.der))
            .map(|l| l.der.to_vec())
            .collect()
    }

    /// Takes `list` where newer than the one held from its CA; whether it was.
    fn take_list(&self, list: Arc<HeldList>) -> bool {
        let mut held = self.lists.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = Lists::clone(&held);
        let taken = next.take(list);
        if taken {
            *held = Arc::new(next);
        }
        taken
    }

    /// Checks every certificate held again under the roots and lists in use: one whose CA
    /// left the bundle, or that a list names, goes now. Returns the members a list cut off
    /// (noted as banned).
    fn recheck_held(&self, now: UnixTime) -> Vec<NodeName> {
        let algorithms = crypto_provider().signature_verification_algorithms.all;
        let held: Vec<(NodeName, Arc<Held>)> = self
            .read()
            .iter()
            .filter(|(name, _)| **name != self.name)
            .map(|(name, h)| (name.clone(), h.clone()))
            .collect();
        let mut dropped = Vec::new();
        let mut banned = Vec::new();
        let mut lost_previous = Vec::new();
        for (name, h) in held {
            if let Err(refusal) = self.check(algorithms, &name, &h.der, now) {
                if refusal.revoked {
                    self.note_banned(&name, &h);
                    banned.push(name.clone());
                }
                dropped.push((name, h));
            } else if h
                .previous
                .as_ref()
                .is_some_and(|p| self.check(algorithms, &name, &p.der, now).is_err())
            {
                lost_previous.push((name, h));
            }
        }
        // Only entries still as checked: one replaced meanwhile (a certificate learned) was
        // checked on its way in.
        let mut map = self.held.write().unwrap_or_else(PoisonError::into_inner);
        for (name, checked) in &dropped {
            if map.get(name).is_some_and(|h| Arc::ptr_eq(h, checked)) {
                map.remove(name);
            }
        }
        for (name, checked) in &lost_previous {
            if let Some(h) = map.get_mut(name).filter(|h| Arc::ptr_eq(h, checked)) {
                *h = Arc::new(h.alone());
            }
        }
        banned
    }

    /// Whether a handshake with `der`, presented as `name`, passes the checks in use now
    /// (roots, revocation lists, validity, name): connections made with one that no longer
    /// does are closed.
    pub fn admits(&self, name: &NodeName, der: &[u8]) -> bool {
        let algorithms = crypto_provider().signature_verification_algorithms.all;
        self.check(algorithms, name, der, UnixTime::now()).is_ok()
    }

    /// [`Keyring::learn_revocation`] at time `now`.
    pub(crate) fn learn_revocation_at(&self, der: &[u8], now: UnixTime) -> Revocation {
        let lists = self.lists();
        // One held already costs a comparison; an older one, a parse.
        if lists.holds(der) {
            return Revocation::Known;
        }
        let list = match HeldList::check(der, &self.own().issuers, &lists) {
            Ok(Some(list)) => Arc::new(list),
            Ok(None) => return Revocation::Known,
            Err(reason) => return Revocation::Refused(reason),
        };
        // This node's own certificate, checked with the list as it would be in use: a list
        // that webpki cannot apply would fail every handshake with its CA's certificates.
        let algorithms = crypto_provider().signature_verification_algorithms.all;
        if let Some(own) = self.read().get(&self.name).cloned() {
            let mut with = Lists::clone(&lists);
            with.take(list.clone());
            let before = self.check_under(&lists, algorithms, &self.name, &own.der, now);
            match self.check_under(&with, algorithms, &self.name, &own.der, now) {
                Err(Refused { revoked: true, .. }) => {
                    tracing::error!(node = %self.name, serial = %own.serial, "a revocation list names this node's own certificate: members refuse it from now on; issue it a new one (quicswim certs issue) and reload");
                }
                Err(Refused { reason, .. }) if before.is_ok() => {
                    return Revocation::Refused(format!(
                        "handshakes could not use it (this node's own certificate fails with it: {reason})"
                    ));
                }
                _ => {}
            }
        }
        if !self.take_list(list) {
            return Revocation::Known;
        }
        Revocation::Taken {
            banned: self.recheck_held(now),
        }
    }

    /// The revocation lists honoured once `rotation` is committed: those held, with the new
    /// identity's taken where newer.
    pub fn revocation_lists_with(
        &self,
        rotation: &Rotation,
    ) -> Vec<CertificateRevocationListDer<'static>> {
        let mut lists = Lists::clone(&self.lists());
        for list in &rotation.lists {
            lists.take(list.clone());
        }
        lists.rustls()
    }

    /// The revocation lists honoured, as rustls takes them: for the handshakes' verifiers.
    pub fn revocation_lists(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.lists().rustls()
    }

    /// The certificate of `name` that a revocation list named, if `name` was cut off for it
    /// and holds no newer certificate here, while that certificate could still be valid.
    pub fn banned(&self, name: &NodeName) -> Option<CertificateInfo> {
        let now = std::time::SystemTime::now();
        self.read_banned()
            .get(name)
            .filter(|c| c.not_after > now)
            .cloned()
    }

    /// Notes `name` as cut off for `held`, within [`HELD_NAMES_MAX`] names (expired ones go
    /// first).
    fn note_banned(&self, name: &NodeName, held: &Held) {
        let info = held.info();
        let mut banned = self.banned.write().unwrap_or_else(PoisonError::into_inner);
        if banned.len() >= self.names_max && !banned.contains_key(name) {
            let now = std::time::SystemTime::now();
            banned.retain(|_, c| c.not_after > now);
            if banned.len() >= self.names_max {
                return;
            }
        }
        banned.insert(name.clone(), info);
    }

    fn read_banned(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeName, CertificateInfo>> {
        self.banned.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lists(&self) -> Arc<Lists> {
        self.lists
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn own(&self) -> Arc<Own> {
        self.own
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The same keyring holding at most `names_max` certificates (at least 1: its own).
    #[must_use]
    pub fn with_names_max(mut self, names_max: usize) -> Self {
        self.names_max = names_max.max(1);
        self
    }

    /// This node's name.
    pub fn name(&self) -> &NodeName {
        &self.name
    }

    /// The cluster this node's certificate names, if any.
    pub fn cluster(&self) -> Option<&NodeName> {
        self.cluster.as_ref()
    }

    /// The algorithm this node signs with.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.own().algorithm
    }

    /// The serial and end of validity of the certificate held for `name` (this node's own
    /// included), if one is.
    pub fn certificate_info(&self, name: &NodeName) -> Option<CertificateInfo> {
        self.read().get(name).map(|h| h.info())
    }

    /// How many certificates are held, this node's own included.
    pub fn held(&self) -> usize {
        self.read().len()
    }

    /// What is signed for `record`: in a cluster, the record behind a context naming the
    /// cluster, so that a record signed in one cluster never verifies in another (a node may
    /// hold certificates of one name and key in both); outside any cluster, the record alone.
    fn signed_in_cluster<'a>(&self, record: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.cluster {
            None => Cow::Borrowed(record),
            Some(cluster) => {
                let mut bytes = Vec::with_capacity(CLUSTER_CONTEXT.len() + 64 + record.len());
                bytes.extend_from_slice(CLUSTER_CONTEXT);
                bytes.extend_from_slice(cluster.as_str().as_bytes());
                bytes.push(0);
                bytes.extend_from_slice(record);
                Cow::Owned(bytes)
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeName, Arc<Held>>> {
        // Nothing panics while the lock is held, so a poisoned map is still consistent.
        self.held.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Keyring::verify`] at time `now`.
    pub(crate) fn verify_at(
        &self,
        signer: &NodeName,
        record: &[u8],
        sig: &Signature,
        now: UnixTime,
    ) -> Verdict {
        let Some(held) = live(&self.read(), signer, now).cloned() else {
            return Verdict::UnknownSigner;
        };
        let message = self.signed_in_cluster(record);
        // A signer that rotated its certificate may have signed with the one before.
        let verified = held.verifies(&message, sig.as_bytes())
            || held
                .previous
                .as_ref()
                .is_some_and(|p| !p.expired_at(now) && p.verifies(&message, sig.as_bytes()));
        if verified {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }

    /// [`Keyring::verify_together`] at time `now`: one Ed25519 batch check (ed25519-dalek's,
    /// about 14 µs a signature in batches of 64 against 34 µs one by one with ring). `false`
    /// when any signer is unknown, expired or not Ed25519, or when the batch fails.
    ///
    /// The batch equation is the cofactored one, where a single check is not: a member can
    /// craft signatures of its own key that pass here and fail one by one. Nobody else can
    /// (every signature still needs the member's private key), so at worst that member's own
    /// record is taken by some nodes and refused by others.
    pub(crate) fn verify_together_at(
        &self,
        items: &[(&NodeName, &[u8], &Signature)],
        now: UnixTime,
    ) -> bool {
        let mut keys = Vec::with_capacity(items.len());
        let mut signatures = Vec::with_capacity(items.len());
        {
            let held = self.read();
            for (signer, _, sig) in items {
                let Some(h) = live(&held, signer, now) else {
                    return false;
                };
                let (Some(key), Ok(sig)) = (
                    h.batch_key,
                    ed25519_dalek::Signature::from_slice(sig.as_bytes()),
                ) else {
                    return false;
                };
                keys.push(key);
                signatures.push(sig);
            }
        }
        let records: Vec<Cow<'_, [u8]>> = items
            .iter()
            .map(|(_, record, _)| self.signed_in_cluster(record))
            .collect();
        let records: Vec<&[u8]> = records.iter().map(|r| r.as_ref()).collect();
        ed25519_dalek::verify_batch(&records, &signatures, &keys).is_ok()
    }

    /// [`Keyring::learn`] at time `now`.
    pub(crate) fn learn_at(
        &self,
        name: &NodeName,
        der: &[u8],
        now: UnixTime,
    ) -> std::result::Result<(), CertificateRefused> {
        let refuse = |reason: String| CertificateRefused {
            name: name.to_string(),
            reason,
        };
        if der.len() > CERTIFICATE_LEN_MAX {
            return Err(refuse(format!(
                "{} bytes, longer than {CERTIFICATE_LEN_MAX}",
                der.len()
            )));
        }
        if *name == self.name {
            let own = self.read().get(&self.name).map(|h| h.der.clone());
            return match own {
                Some(own) if *own == *der => Ok(()),
                _ => Err(refuse(
                    "a certificate for this node itself that is not its own".into(),
                )),
            };
        }
        let held = self
            .check(
                crypto_provider().signature_verification_algorithms.all,
                name,
                der,
                now,
            )
            .map_err(|refused| refuse(refused.reason))?;
        self.hold(name, held, now)
    }

    /// [`Keyring::learn_all`] at time `now`: each certificate gets every check of
    /// [`learn_at`](Self::learn_at), but their issuers' Ed25519 signatures are checked at the
    /// end in one ed25519-dalek batch (about 14 µs a signature against 30 µs one by one). A
    /// certificate refused on the first pass, and every one of a batch that fails, is
    /// learned again alone, so results and reasons are those of [`learn_at`](Self::learn_at).
    ///
    /// The signatures put off are an issuer's (the cluster CA's, or an intermediate of this
    /// node's own chain), so the batch equation's being cofactored where a single check is
    /// not gives nobody anything: a signature that passes one and fails the other needs the
    /// issuer's private key.
    pub(crate) fn learn_all_at(
        &self,
        certs: &[(&NodeName, &[u8])],
        now: UnixTime,
    ) -> Vec<std::result::Result<(), CertificateRefused>> {
        let alone = |(name, der): &(&NodeName, &[u8])| self.learn_at(name, der, now);
        if certs.len() < LEARNED_TOGETHER_MIN {
            return certs.iter().map(alone).collect();
        }
        let put_off = PutOffEd25519::default();
        let algorithms: Vec<&dyn SignatureVerificationAlgorithm> = crypto_provider()
            .signature_verification_algorithms
            .all
            .iter()
            .map(|a| {
                if a.signature_alg_id() == alg_id::ED25519 {
                    &put_off as &dyn SignatureVerificationAlgorithm
                } else {
                    *a
                }
            })
            .collect();
        let mut results: Vec<Option<std::result::Result<(), CertificateRefused>>> =
            (0..certs.len()).map(|_| None).collect();
        let mut checked = Vec::new();
        for (i, (name, der)) in certs.iter().enumerate() {
            let mark = put_off.len();
            let first_pass = (der.len() <= CERTIFICATE_LEN_MAX && **name != self.name)
                .then(|| self.check(&algorithms, name, der, now).ok())
                .flatten();
            match first_pass {
                Some(held) => checked.push((i, held, mark..put_off.len())),
                None => {
                    put_off.truncate(mark);
                    results[i] = Some(alone(&certs[i]));
                }
            }
        }
        // A failed batch (a forged issuer signature in the list) is settled certificate by
        // certificate: one whose own put-off signatures all check alone is kept; any other
        // is learned again alone, for its exact reason.
        let all_valid = put_off.verify_all();
        for (i, held, checks) in checked {
            results[i] = Some(if all_valid || put_off.each_valid(checks) {
                self.hold(certs[i].0, held, now)
            } else {
                alone(&certs[i])
            });
        }
        results
            .into_iter()
            .map(|r| r.expect("every certificate has a result"))
            .collect()
    }

    /// Keeps `held` (checked) for `name`, within [`HELD_NAMES_MAX`]: as its newest
    /// certificate when it is newer than the one held, the one held then kept behind it;
    /// otherwise behind the newest, when newer than what is there (a node that learned only
    /// a member's rotated certificate can still check records signed before). An older
    /// certificate never takes the newest one's place, so nobody can roll a member back to
    /// a key it rotated away from.
    fn hold(
        &self,
        name: &NodeName,
        held: Held,
        now: UnixTime,
    ) -> std::result::Result<(), CertificateRefused> {
        let mut map = self.held.write().unwrap_or_else(PoisonError::into_inner);
        let kept = match map.get(name) {
            None => {
                if map.len() >= self.names_max {
                    let own = &self.name;
                    map.retain(|n, h| n == own || !h.expired_at(now));
                    if map.len() >= self.names_max {
                        return Err(CertificateRefused {
                            name: name.to_string(),
                            reason: format!(
                                "certificate cache full ({} names held, the most this node keeps)",
                                map.len()
                            ),
                        });
                    }
                }
                held
            }
            Some(current) if *current.der == *held.der => return Ok(()),
            Some(current) if held.newer_than(current) || current.expired_at(now) => {
                held.replacing(current, now)
            }
            Some(current) => {
                let previous = current.previous.as_deref();
                if previous.is_some_and(|p| *p.der == *held.der) {
                    return Ok(());
                }
                if previous.is_some_and(|p| !p.expired_at(now) && !held.newer_than(p)) {
                    return Err(CertificateRefused {
                        name: name.to_string(),
                        reason: "older than the certificates held for it".into(),
                    });
                }
                let mut newest = current.alone();
                newest.previous = Some(Arc::new(held));
                newest
            }
        };
        map.insert(name.clone(), Arc::new(kept));
        drop(map);
        // A certificate of theirs that no list names: no longer cut off.
        self.banned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(())
    }

    /// The checks a TLS handshake applies to a client certificate, plus the node-name rule,
    /// with `algorithms` checking signatures; the error is a reason phrase.
    fn check(
        &self,
        algorithms: &[&dyn SignatureVerificationAlgorithm],
        name: &NodeName,
        der: &[u8],
        now: UnixTime,
    ) -> std::result::Result<Held, Refused> {
        self.check_under(&self.lists(), algorithms, name, der, now)
    }

    /// [`check`](Self::check) with `lists` in place of the lists in use.
    fn check_under(
        &self,
        lists: &Lists,
        algorithms: &[&dyn SignatureVerificationAlgorithm],
        name: &NodeName,
        der: &[u8],
        now: UnixTime,
    ) -> std::result::Result<Held, Refused> {
        let cert_der = CertificateDer::from(der);
        let end_entity = webpki::EndEntityCert::try_from(&cert_der)
            .map_err(|e| format!("does not parse: {e}"))?;
        let own = self.own();
        let crls = lists.parsed();
        // As the handshakes check it: the end entity only, and a status no list gives is
        // taken as not revoked (a CA that publishes none).
        let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::EndEntity)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .build()
        });
        // Certificates travel alone: those `quicswim certs` makes are signed by the CA itself
        // (path length 0); another PKI's intermediates are taken from this node's own chain.
        end_entity
            .verify_for_usage(
                algorithms,
                &own.anchors,
                &own.intermediates,
                now,
                webpki::KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map_err(|e| Refused {
                revoked: e == webpki::Error::CertRevoked,
                reason: format!("not trusted: {e}"),
            })?;
        let dns = ServerName::try_from(name.as_str())
            .map_err(|e| format!("{name} is not a DNS name: {e}"))?;
        end_entity
            .verify_is_valid_for_subject_name(&dns)
            .map_err(|e| format!("not valid for the name: {e}"))?;
        // WebPKI matches any SAN, case-insensitively; a node is named by exactly one label,
        // byte for byte, as in the handshake's verifiers.
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("does not parse: {e}"))?;
        let named = node_name_of(&cert, "certificate").map_err(|e| e.to_string())?;
        if named != *name {
            return Err(format!("it names {named}").into());
        }
        let theirs = cluster_of(&cert, "certificate").map_err(|e| e.to_string())?;
        if theirs != self.cluster {
            return Err(format!(
                "it is for {}, and this node is in {}",
                cluster_label(theirs.as_ref()),
                cluster_label(self.cluster.as_ref())
            )
            .into());
        }
        let info = public_key_info(&cert)?;
        Ok(Held::new(der, &cert, info))
    }
}

/// Why [`CertKeyring::check`] refused a certificate.
struct Refused {
    /// A reason phrase.
    reason: String,
    /// A revocation list names it.
    revoked: bool,
}

impl From<String> for Refused {
    fn from(reason: String) -> Self {
        Refused {
            reason,
            revoked: false,
        }
    }
}

/// What a record signed in a cluster begins with, before the cluster's name and a zero byte.
const CLUSTER_CONTEXT: &[u8] = b"quicswim cluster record\0";

/// Fewest certificates [`CertKeyring::learn_all_at`] checks together: below it a batch saves
/// less than its set-up costs.
const LEARNED_TOGETHER_MIN: usize = 4;

/// An Ed25519 signature check webpki asked for while certificates are learned together.
struct PutOff {
    key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
}

/// Stands in for webpki's Ed25519 algorithm in [`CertKeyring::learn_all_at`]'s first pass:
/// notes each check asked of it and passes it, for [`verify_all`](Self::verify_all) to make
/// them all in one batch before any certificate is kept.
#[derive(Default)]
struct PutOffEd25519 {
    checks: Mutex<Vec<PutOff>>,
}

impl PutOffEd25519 {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PutOff>> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Forgets the checks noted since there were `len`.
    fn truncate(&self, len: usize) {
        self.lock().truncate(len);
    }

    /// Whether each of the checks noted at `range` passes, checked one by one (ring).
    fn each_valid(&self, range: std::ops::Range<usize>) -> bool {
        let checks = self.lock();
        checks.get(range).is_some_and(|checks| {
            checks.iter().all(|c| {
                UnparsedPublicKey::new(&signature::ED25519, c.key)
                    .verify(&c.message, &c.signature)
                    .is_ok()
            })
        })
    }

    /// Whether every check noted passes (true for none).
    fn verify_all(&self) -> bool {
        let checks = self.lock();
        if checks.is_empty() {
            return true;
        }
        // Few distinct issuers sign many certificates: each key is decoded once.
        let mut decoded: Vec<([u8; 32], ed25519_dalek::VerifyingKey)> = Vec::new();
        let mut keys = Vec::with_capacity(checks.len());
        for c in checks.iter() {
            let key = match decoded.iter().find(|(bytes, _)| *bytes == c.key) {
                Some((_, key)) => *key,
                None => match ed25519_dalek::VerifyingKey::from_bytes(&c.key) {
                    Ok(key) => {
                        decoded.push((c.key, key));
                        key
                    }
                    Err(_) => return false,
                },
            };
            keys.push(key);
        }
        let messages: Vec<&[u8]> = checks.iter().map(|c| c.message.as_slice()).collect();
        let signatures: Vec<ed25519_dalek::Signature> = checks
            .iter()
            .map(|c| ed25519_dalek::Signature::from_bytes(&c.signature))
            .collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
    }
}

impl fmt::Debug for PutOffEd25519 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutOffEd25519")
            .field("checks", &self.len())
            .finish()
    }
}

impl SignatureVerificationAlgorithm for PutOffEd25519 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), InvalidSignature> {
        // Lengths ring would refuse are refused here, at once.
        let key = <[u8; 32]>::try_from(public_key).map_err(|_| InvalidSignature)?;
        let signature = <[u8; 64]>::try_from(signature).map_err(|_| InvalidSignature)?;
        self.lock().push(PutOff {
            key,
            message: message.to_vec(),
            signature,
        });
        Ok(())
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ED25519
    }
}

/// The certificate held for `signer`, unless it has expired by `now`.
fn live<'a>(
    held: &'a HashMap<NodeName, Arc<Held>>,
    signer: &NodeName,
    now: UnixTime,
) -> Option<&'a Arc<Held>> {
    held.get(signer).filter(|h| !h.expired_at(now))
}

/// `key` decoded for batch verification, if it is an Ed25519 key that decodes.
fn batch_key(algorithm: KeyAlgorithm, key: &[u8]) -> Option<ed25519_dalek::VerifyingKey> {
    if algorithm != KeyAlgorithm::Ed25519 {
        return None;
    }
    let bytes: &[u8; 32] = key.try_into().ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(bytes).ok()
}

fn not_before_secs(cert: &X509Certificate<'_>) -> u64 {
    u64::try_from(cert.validity().not_before.timestamp()).unwrap_or(0)
}

fn not_after_secs(cert: &X509Certificate<'_>) -> u64 {
    u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0)
}

fn serial_hex(cert: &X509Certificate<'_>) -> Box<str> {
    super::identity::lower_hex(cert.raw_serial()).into()
}

impl Keyring for CertKeyring {
    fn sign(&self, record: &[u8]) -> Signature {
        match self.own().signer.sign(&self.signed_in_cluster(record)) {
            Some(sig) => Signature::new(sig),
            None => {
                // ECDSA needs fresh randomness; the OS refusing it is a broken host. The empty
                // signature verifies nowhere, so the record is dropped by every peer rather
                // than the node stopping.
                tracing::error!(node = %self.name, "cannot sign a record: no randomness from the OS");
                Signature::new(Vec::new())
            }
        }
    }

    fn verify(&self, signer: &NodeName, record: &[u8], signature: &Signature) -> Verdict {
        self.verify_at(signer, record, signature, UnixTime::now())
    }

    fn verify_together(&self, items: &[(&NodeName, &[u8], &Signature)]) -> bool {
        self.verify_together_at(items, UnixTime::now())
    }

    fn learn(&self, name: &NodeName, der: &[u8]) -> std::result::Result<(), CertificateRefused> {
        self.learn_at(name, der, UnixTime::now())
    }

    fn learn_all(
        &self,
        certs: &[(&NodeName, &[u8])],
    ) -> Vec<std::result::Result<(), CertificateRefused>> {
        self.learn_all_at(certs, UnixTime::now())
    }

    fn certificate(&self, name: &NodeName) -> Option<Arc<[u8]>> {
        self.read().get(name).map(|h| h.der.clone())
    }

    fn previous_certificate(&self, name: &NodeName) -> Option<Arc<[u8]>> {
        let now = UnixTime::now();
        self.read()
            .get(name)
            .and_then(|h| h.previous.as_ref())
            .filter(|p| !p.expired_at(now))
            .map(|p| p.der.clone())
    }

    fn forget(&self, name: &NodeName) {
        if *name != self.name {
            self.held
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name);
        }
    }

    fn learn_revocation(&self, der: &[u8]) -> Revocation {
        self.learn_revocation_at(der, UnixTime::now())
    }

    fn revocations(&self) -> Vec<Arc<[u8]>> {
        self.lists().ders()
    }
}

impl fmt::Debug for CertKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material: the name, the algorithm and counts only.
        f.debug_struct("CertKeyring")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm())
            .field("anchors", &self.own().anchors.len())
            .field("held", &self.held())
            .field("names_max", &self.names_max)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use quicswim_proto::protocol::signing::{signed_bytes, RecordKind};
    use rcgen::{CertificateParams, SanType};

    use super::*;
    use crate::test_name as name;
    use crate::tls::{CertAuthority, NodeKeyType};

    /// A throwaway RSA key (ring cannot generate RSA keys): for the refusal test only.
    const RSA_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCq9wOrFzap3b1B\n\
t3VbTwaWCMGJKAObosvmJeDh4xD95063PfEUX5UmN9luIyvXT1hcS0oht59C7BwJ\n\
ERvQNQzGK8L4WHKJv6DD2edebXBQ5DbiArASeJ7U2YJWcv+raMlG+AZaRBSR7Hac\n\
IjbF40QiUeF/a6cejDy17y4+hwZGTr2WCl+08XwE0MR/4mDppmCvnvFj+Fa2+tOE\n\
fMp+CXmVolcCNVW8bwcTyNUS31LHb4GX0NtlrDKmz8D++qwwezXZYrLzjvEYpxUx\n\
gVrscTMaWV9ktHj6vs31ggdy//l8rMtQBSDwu3t7FL3X4dpvtkp1hynXrkJqRI6b\n\
mPntfTfhAgMBAAECggEABCuDOOSXjjwc1iIB6Ei8qeMryUsjD2RAoevxmMDflLnU\n\
Fy8ZFrygGC8LjB6qfpVuW83wUHM4nLrCkkwLCCCLH7hIiKMrpAV7B9vkQ07bCvYO\n\
CqQzJDgx85Icljw21Tj4k9UP3prDf62rVPKWsGvzKP0jSWbYTCvyfSOI1riXZBaU\n\
U/+7oHYdJUCeSj7rBdWuHIFGEjYPyFRHeCac9RQjUcLlZWA9/axK6ut+/wMCmgis\n\
W0WgVhqWMPOKoLA2l66dMiOBe3Xwj5983Dymq7mOdzfRqt7U3CUbPJXM5iz9LIgk\n\
wROZabWliJdZ32cK4iZKxOCEq9hZqQaHDtX1Zvl6uQKBgQDl3/jz3MZladuiLRaH\n\
rY5eVGk4Lk4GQE98yYY0SIk6Jg+2Fln38aOz1CunRxTl7/rL23FTVqkg8/e/92cc\n\
BOo6qZYE4/rwBszPNXvdFfHFdZ3qGMI6vHxYpUqj96Jyrf4bn8B1ijdKmpdEUYfc\n\
lzgEsJ3KdbX43JWgAwUsRe6I3QKBgQC+ZRo1mjtTkFhrnScXVR/x/cfZKXj9M/T1\n\
xUea+5dn486o4qBK0/UcH3AHrdd1kBCiNM8PB0HM/PS9AlEizeztSxKlawlPiIQd\n\
grS16QnteroyANYFEsjDWxnDamhH3XIGDeZDQN8eBWxYLEfZTPlw5w7CiZqEv7M+\n\
IedIlJk41QKBgQDhnBVZOghZxjByle/zz6nX+N6f7gpT5lBdN+iIbdyI/owS+RLp\n\
3vX867LAZWokVoh+BWzPD1HE7szsUmOXQ1ejpYeAW0SQyQvAHkzn6r60PsBy3kPa\n\
o90in2+HR+beyNeJwxuAANxNUzY9Lgu6u4uWRsVGzIqBqfUL64rrLeNz3QKBgFps\n\
/jOzGrYnejcyHlzQiymNlJspPVNUl+UaW1XaZCBta7t+Vw7y+BjxPW4IPKqTT7Ma\n\
TbUfhzrqcPpL3WkgUISrASIbYgKqHcU+TMGQ+qwVe9U/3GXwc/WEkQnkwb5QCFWj\n\
yFbsuosxnDGMZltoWZgrxTDT1dVyjpjV1Vj9aoA5AoGBAMYDcN/NZJ75St0N5QOQ\n\
7SwnsKHKMjATye2WRd64N6+oLo5UjXgbDKXo9D7SrlOaitecwKjvOG7tJM/lJElk\n\
F5d9P2uoOpzRXO+5cxzBWdpcq3MdjFarUKFO/pXSr1Q1yiPO2zKX0kGP1VSZIooH\n\
3v6y+xozFoslCUbQA/c1ezun\n\
-----END PRIVATE KEY-----";

    fn identity(ca: &CertAuthority, who: &str, key_type: NodeKeyType) -> Identity {
        let issued = ca.issue_with_key(&name(who), &[], 1, key_type).unwrap();
        Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap()
    }

    fn keyring(ca: &CertAuthority, who: &str, key_type: NodeKeyType) -> (CertKeyring, Vec<u8>) {
        let id = identity(ca, who, key_type);
        let der = id.chain[0].to_vec();
        (CertKeyring::new(&id).unwrap(), der)
    }

    fn leaf_der(cert_pem: &str) -> Vec<u8> {
        rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    /// A member's Alive, as the core signs it: about 60 bytes of fields.
    fn record(incarnation: u64) -> Vec<u8> {
        signed_bytes(
            RecordKind::Claim,
            &(
                "alice",
                incarnation,
                "10.0.0.1:7946",
                b"zone=eu-west-1a;v=1".as_slice(),
            ),
        )
    }

    fn secs(t: SystemTime) -> UnixTime {
        UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).unwrap())
    }

    #[test]
    fn records_signed_with_each_key_type_verify_for_their_signer() {
        let ca = CertAuthority::generate("test ca").unwrap();
        for (key_type, algorithm) in [
            (NodeKeyType::Ed25519, KeyAlgorithm::Ed25519),
            (NodeKeyType::P256, KeyAlgorithm::EcdsaP256),
        ] {
            let (alice, alice_der) = keyring(&ca, "alice", key_type);
            let (bob, _) = keyring(&ca, "bob", NodeKeyType::Ed25519);
            assert_eq!(alice.algorithm(), algorithm);
            let sig = alice.sign(&record(7));
            assert_eq!(sig.as_bytes().len(), 64, "{algorithm}");
            // Alice checks her own signature with her own certificate, always held.
            assert_eq!(
                alice.verify(&name("alice"), &record(7), &sig),
                Verdict::Valid
            );
            bob.learn(&name("alice"), &alice_der).unwrap();
            assert_eq!(bob.verify(&name("alice"), &record(7), &sig), Verdict::Valid);
            assert_eq!(bob.certificate(&name("alice")).unwrap()[..], alice_der[..]);
        }
    }

    #[test]
    fn p384_keys_sign_and_verify() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::DnsName("carol".try_into().unwrap())];
        let cert = ca.sign_params(params, &key).unwrap();
        let id = Identity::from_pem(ca.cert_pem(), &cert.pem(), &key.serialize_pem()).unwrap();
        let carol = CertKeyring::new(&id).unwrap();
        assert_eq!(carol.algorithm(), KeyAlgorithm::EcdsaP384);
        let sig = carol.sign(&record(1));
        assert_eq!(sig.as_bytes().len(), 96);
        let (bob, _) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        bob.learn(&name("carol"), cert.der()).unwrap();
        assert_eq!(bob.verify(&name("carol"), &record(1), &sig), Verdict::Valid);
        assert_eq!(
            bob.verify(&name("carol"), &record(2), &sig),
            Verdict::Invalid
        );
    }

    #[test]
    fn sec1_ecdsa_keys_from_other_tools_sign() {
        // openssl writes P-256 keys as SEC1 (`EC PRIVATE KEY`); rcgen writes PKCS#8, whose
        // inner OCTET STRING is that SEC1 key.
        let ca = CertAuthority::generate("test ca").unwrap();
        let id = identity(&ca, "dave", NodeKeyType::P256);
        let PrivateKeyDer::Pkcs8(pkcs8) = &id.key else {
            panic!("rcgen writes PKCS#8")
        };
        let pkcs8 = pkcs8.secret_pkcs8_der();
        let (_, info) = x509_parser::der_parser::parse_der(pkcs8).unwrap();
        let seq = info.as_sequence().unwrap();
        let sec1 = seq[2].as_slice().unwrap().to_vec();
        assert_eq!(sec1_to_pkcs8(&sec1, OID_P256), pkcs8);
        let id = Identity {
            key: PrivateKeyDer::Sec1(sec1.into()),
            ..id
        };
        let dave = CertKeyring::new(&id).unwrap();
        let sig = dave.sign(&record(3));
        assert_eq!(dave.verify(&name("dave"), &record(3), &sig), Verdict::Valid);
    }

    #[test]
    fn members_under_this_nodes_intermediate_are_learned() {
        // Another PKI: root -> intermediate -> nodes, each node's file holding leaf then
        // intermediate. Certificates travel alone; the node's own intermediate completes them.
        use rcgen::{BasicConstraints, IsCa, KeyPair};
        let root_key = KeyPair::generate().unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        let root = root.self_signed(&root_key).unwrap();
        let inter_key = KeyPair::generate().unwrap();
        let mut inter = CertificateParams::new(Vec::<String>::new()).unwrap();
        inter.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        inter
            .distinguished_name
            .push(rcgen::DnType::CommonName, "intermediate");
        let inter = inter.signed_by(&inter_key, &root, &root_key).unwrap();
        let node = |who: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![who.to_owned()]).unwrap();
            params.extended_key_usages = vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &inter, &inter_key).unwrap();
            let chain = format!("{}{}", cert.pem(), inter.pem());
            let id = Identity::from_pem(&root.pem(), &chain, &key.serialize_pem()).unwrap();
            (CertKeyring::new(&id).unwrap(), cert.der().to_vec())
        };
        let (alice, _) = node("alice");
        let (bob, bob_der) = node("bob");
        alice.learn(&name("bob"), &bob_der).unwrap();
        let sig = bob.sign(&record(1));
        assert_eq!(alice.verify(&name("bob"), &record(1), &sig), Verdict::Valid);

        // A node trusting the same root without the intermediate cannot complete the chain.
        let direct_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["carol".to_owned()]).unwrap();
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let direct = params.signed_by(&direct_key, &root, &root_key).unwrap();
        let carol =
            Identity::from_pem(&root.pem(), &direct.pem(), &direct_key.serialize_pem()).unwrap();
        let carol = CertKeyring::new(&carol).unwrap();
        let err = carol.learn(&name("bob"), &bob_der).unwrap_err();
        assert!(err.reason.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn openssl_made_ca_and_keys_sign_and_verify() {
        // testdata/: an ECDSA P-256 CA made with openssl, `edna` with an Ed25519 key as
        // openssl writes it (PKCS#8 v1, no public key inside) and `pat` with a P-256 key in
        // SEC1 (`EC PRIVATE KEY`); valid until 2126. Commands in testdata/README.md.
        let ca = include_str!("testdata/ca.pem");
        let load = |cert: &str, key: &str| {
            CertKeyring::new(&Identity::from_pem(ca, cert, key).unwrap()).unwrap()
        };
        let edna = load(
            include_str!("testdata/edna.pem"),
            include_str!("testdata/edna-key.pem"),
        );
        let pat = load(
            include_str!("testdata/pat.pem"),
            include_str!("testdata/pat-key.pem"),
        );
        assert_eq!(edna.algorithm(), KeyAlgorithm::Ed25519);
        assert_eq!(pat.algorithm(), KeyAlgorithm::EcdsaP256);
        let edna_der = edna.certificate(&name("edna")).unwrap();
        let pat_der = pat.certificate(&name("pat")).unwrap();
        edna.learn(&name("pat"), &pat_der).unwrap();
        pat.learn(&name("edna"), &edna_der).unwrap();
        let (by_edna, by_pat) = (edna.sign(&record(1)), pat.sign(&record(1)));
        assert_eq!(
            pat.verify(&name("edna"), &record(1), &by_edna),
            Verdict::Valid
        );
        assert_eq!(
            edna.verify(&name("pat"), &record(1), &by_pat),
            Verdict::Valid
        );
        assert_eq!(
            edna.verify(&name("pat"), &record(1), &by_edna),
            Verdict::Invalid
        );
        // A quicswim CA's node is a stranger to them.
        let ours = CertAuthority::generate("ours").unwrap();
        let (_, alice) = keyring(&ours, "alice", NodeKeyType::Ed25519);
        assert!(edna.learn(&name("alice"), &alice).is_err());
    }

    /// Checked together: true only when every record verifies for its signer and every
    /// signer is a held Ed25519 key; any other list is left to single checks.
    #[test]
    fn records_checked_together_pass_only_when_each_would() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let signers: Vec<(NodeName, CertKeyring)> = ["bob", "carol", "dave"]
            .into_iter()
            .map(|who| {
                let (ring, der) = keyring(&ca, who, NodeKeyType::Ed25519);
                alice.learn(&name(who), &der).unwrap();
                (name(who), ring)
            })
            .collect();
        let records: Vec<Vec<u8>> = (1..=3).map(record).collect();
        let mut sigs: Vec<Signature> = signers
            .iter()
            .zip(&records)
            .map(|((_, ring), rec)| ring.sign(rec))
            .collect();
        let together = |sigs: &[Signature], signers: &[&NodeName]| {
            let items: Vec<(&NodeName, &[u8], &Signature)> = signers
                .iter()
                .zip(&records)
                .zip(sigs)
                .map(|((n, r), s)| (*n, r.as_slice(), s))
                .collect();
            alice.verify_together(&items)
        };
        let names: Vec<&NodeName> = signers.iter().map(|(n, _)| n).collect();
        assert!(together(&sigs, &names));
        // One record claimed by another signer, one unknown signer, one wrong signature.
        assert!(!together(&sigs, &[names[0], names[2], names[1]]));
        let stranger = name("erin");
        assert!(!together(&sigs, &[names[0], names[1], &stranger]));
        sigs[1] = signers[0].1.sign(&records[1]);
        assert!(!together(&sigs, &names));
        // A P-256 signer is never checked together, even with a valid signature.
        let (frank, der) = keyring(&ca, "frank", NodeKeyType::P256);
        alice.learn(&name("frank"), &der).unwrap();
        let frank_sig = frank.sign(&records[0]);
        let items = [(&name("frank"), records[0].as_slice(), &frank_sig)];
        assert_eq!(
            alice.verify(&name("frank"), &records[0], &frank_sig),
            Verdict::Valid
        );
        assert!(!alice.verify_together(&items));
    }

    #[test]
    fn record_signed_by_one_member_does_not_verify_as_another() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let (bob, bob_der) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        let (carol, carol_der) = keyring(&ca, "carol", NodeKeyType::P256);
        alice.learn(&name("bob"), &bob_der).unwrap();
        alice.learn(&name("carol"), &carol_der).unwrap();
        let by_bob = bob.sign(&record(5));
        let by_carol = carol.sign(&record(5));
        assert_eq!(
            alice.verify(&name("carol"), &record(5), &by_bob),
            Verdict::Invalid
        );
        assert_eq!(
            alice.verify(&name("bob"), &record(5), &by_carol),
            Verdict::Invalid
        );
        // Alice never accepts a record about herself that she did not sign.
        assert_eq!(
            alice.verify(&name("alice"), &record(5), &by_bob),
            Verdict::Invalid
        );
    }

    #[test]
    fn any_changed_byte_or_malformed_signature_is_invalid() {
        let ca = CertAuthority::generate("test ca").unwrap();
        for key_type in [NodeKeyType::Ed25519, NodeKeyType::P256] {
            let (bob, bob_der) = keyring(&ca, "bob", key_type);
            let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
            alice.learn(&name("bob"), &bob_der).unwrap();
            let rec = record(9);
            let sig = bob.sign(&rec);
            for i in 0..rec.len() {
                let mut changed = rec.clone();
                changed[i] ^= 0x01;
                assert_eq!(
                    alice.verify(&name("bob"), &changed, &sig),
                    Verdict::Invalid,
                    "{key_type}: byte {i}"
                );
            }
            for i in 0..sig.as_bytes().len() {
                let mut changed = sig.as_bytes().to_vec();
                changed[i] ^= 0x80;
                let changed = Signature::new(changed);
                assert_eq!(alice.verify(&name("bob"), &rec, &changed), Verdict::Invalid);
            }
            let mut long = sig.as_bytes().to_vec();
            long.push(0);
            let short = Signature::new(&sig.as_bytes()[..63]);
            for bad in [
                Signature::new(Vec::new()),
                short,
                Signature::new(long),
                Signature::new(vec![0xff; 96]),
            ] {
                assert_eq!(alice.verify(&name("bob"), &rec, &bad), Verdict::Invalid);
            }
            assert_eq!(alice.verify(&name("bob"), &rec, &sig), Verdict::Valid);
        }
    }

    #[test]
    fn unknown_signer_is_asked_for_not_judged() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let (bob, _) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        let sig = bob.sign(&record(1));
        assert_eq!(
            alice.verify(&name("bob"), &record(1), &sig),
            Verdict::UnknownSigner
        );
        assert!(alice.certificate(&name("bob")).is_none());
    }

    #[test]
    fn learn_refuses_another_ca_expired_misnamed_and_garbage() {
        let ca = CertAuthority::generate("ours").unwrap();
        let other = CertAuthority::generate("theirs").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let refused = |who: &str, der: &[u8]| {
            let err = alice.learn(&name(who), der).unwrap_err();
            assert_eq!(err.name, who);
            assert!(alice.certificate(&name(who)).is_none(), "{err}");
            err.to_string()
        };

        let (_, mallory) = keyring(&other, "mallory", NodeKeyType::Ed25519);
        let err = refused("mallory", &mallory);
        assert!(err.contains("UnknownIssuer"), "{err}");
        let (_, mallory_p256) = keyring(&other, "mallory", NodeKeyType::P256);
        refused("mallory", &mallory_p256);

        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let old = ca
            .issue_valid_between(&name("old"), &[], now - 3 * day, now - day)
            .unwrap();
        let err = refused("old", &leaf_der(&old.cert_pem));
        assert!(err.contains("Expired"), "{err}");
        let later = ca
            .issue_valid_between(&name("later"), &[], now + day, now + 3 * day)
            .unwrap();
        refused("later", &leaf_der(&later.cert_pem));

        // Bob's genuine certificate offered as carol's.
        let (_, bob) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        let err = refused("carol", &bob);
        assert!(err.contains("not valid for the name"), "{err}");
        // A certificate naming carol and bob (webpki matches either): not a node certificate.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::DnsName("carol".try_into().unwrap()),
            SanType::DnsName("bob".try_into().unwrap()),
        ];
        let two_names = ca.sign_params(params, &key).unwrap();
        let err = refused("carol", two_names.der());
        assert!(err.contains("several nodes"), "{err}");

        for garbage in [&[][..], &[0x30, 0x03, 0x01, 0x01, 0xff], &[0xff; 300]] {
            let err = refused("bob", garbage);
            assert!(err.contains("does not parse"), "{err}");
        }
        let err = refused("bob", &vec![0x30; CERTIFICATE_LEN_MAX + 1]);
        assert!(err.contains("longer than"), "{err}");
        // A certificate cut short.
        refused("bob", &bob[..bob.len() - 1]);
        assert_eq!(alice.held(), 1);
    }

    #[test]
    fn learned_certificate_expiring_later_makes_the_signer_unknown_again() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let now = SystemTime::now();
        let hour = Duration::from_secs(3_600);
        let issued = ca
            .issue_valid_between(&name("bob"), &[], now - hour, now + hour)
            .unwrap();
        let bob = CertKeyring::new(
            &Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap(),
        )
        .unwrap();
        alice
            .learn_at(&name("bob"), &leaf_der(&issued.cert_pem), secs(now))
            .unwrap();
        let sig = bob.sign(&record(2));
        let verdict = |t: SystemTime| alice.verify_at(&name("bob"), &record(2), &sig, secs(t));
        assert_eq!(verdict(now), Verdict::Valid);
        assert_eq!(verdict(now + 2 * hour), Verdict::UnknownSigner);
        // Offered again after its end, it is refused.
        let err = alice
            .learn_at(
                &name("bob"),
                &leaf_der(&issued.cert_pem),
                secs(now + 2 * hour),
            )
            .unwrap_err();
        assert!(err.reason.contains("Expired"), "{err}");
    }

    #[test]
    fn renewed_certificate_takes_the_old_ones_place_with_another_algorithm() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let now = SystemTime::now();
        let bob = |hours_ago: u64, key_type: NodeKeyType| {
            let from = now - Duration::from_secs(hours_ago * 3_600);
            let issued = ca
                .issue_valid_between_with_key(
                    &name("bob"),
                    &[],
                    from,
                    now + from.elapsed().unwrap(),
                    key_type,
                )
                .unwrap();
            let id = Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
            let der = id.chain[0].to_vec();
            (CertKeyring::new(&id).unwrap(), der)
        };
        let (old_bob, old_der) = bob(2, NodeKeyType::P256);
        let (new_bob, new_der) = bob(1, NodeKeyType::Ed25519);
        alice.learn(&name("bob"), &old_der).unwrap();
        let old_sig = old_bob.sign(&record(1));
        assert_eq!(
            alice.verify(&name("bob"), &record(1), &old_sig),
            Verdict::Valid
        );
        alice.learn(&name("bob"), &new_der).unwrap();
        assert_eq!(alice.certificate(&name("bob")).unwrap()[..], new_der[..]);
        let new_sig = new_bob.sign(&record(1));
        assert_eq!(
            alice.verify(&name("bob"), &record(1), &new_sig),
            Verdict::Valid
        );
        // The P-256 one is kept behind the new one while valid.
        assert_eq!(
            alice.verify(&name("bob"), &record(1), &old_sig),
            Verdict::Valid
        );
        assert_eq!(alice.held(), 2);
    }

    #[test]
    fn own_certificate_is_never_replaced_or_forgotten() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, alice_der) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let (other_alice, other_der) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        // Another CA-signed certificate for alice's name (a stolen CA key, a reissue
        // elsewhere): records signed with it never verify at alice as hers.
        let err = alice.learn(&name("alice"), &other_der).unwrap_err();
        assert!(err.reason.contains("this node itself"), "{err}");
        let forged = other_alice.sign(&record(99));
        assert_eq!(
            alice.verify(&name("alice"), &record(99), &forged),
            Verdict::Invalid
        );
        alice.learn(&name("alice"), &alice_der).unwrap();
        alice.forget(&name("alice"));
        assert_eq!(
            alice.certificate(&name("alice")).unwrap()[..],
            alice_der[..]
        );
    }

    #[test]
    fn forget_drops_a_member_certificate() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let (bob, bob_der) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        alice.learn(&name("bob"), &bob_der).unwrap();
        let sig = bob.sign(&record(4));
        assert_eq!(alice.verify(&name("bob"), &record(4), &sig), Verdict::Valid);
        alice.forget(&name("bob"));
        assert_eq!(
            alice.verify(&name("bob"), &record(4), &sig),
            Verdict::UnknownSigner
        );
        assert!(alice.certificate(&name("bob")).is_none());
        assert_eq!(alice.held(), 1);
        alice.forget(&name("nobody"));
    }

    #[test]
    fn full_cache_refuses_new_names_after_dropping_expired_ones() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let alice = alice.with_names_max(3);
        let now = SystemTime::now();
        let hour = Duration::from_secs(3_600);
        let cert = |who: &str, hours: u32| {
            let issued = ca
                .issue_valid_between(&name(who), &[], now - hour, now + hours * hour)
                .unwrap();
            leaf_der(&issued.cert_pem)
        };
        let (bob, carol, dave) = (cert("bob", 1), cert("carol", 10), cert("dave", 10));
        alice.learn_at(&name("bob"), &bob, secs(now)).unwrap();
        alice.learn_at(&name("carol"), &carol, secs(now)).unwrap();
        let err = alice.learn_at(&name("dave"), &dave, secs(now)).unwrap_err();
        assert!(err.reason.contains("cache full (3 names held"), "{err}");
        assert!(alice.certificate(&name("dave")).is_none());
        // A name already held is still replaced when full.
        alice
            .learn_at(&name("carol"), &cert("carol", 20), secs(now))
            .unwrap();
        // Once bob's certificate has expired, its place goes to a new name.
        alice
            .learn_at(&name("dave"), &dave, secs(now + 2 * hour))
            .unwrap();
        assert!(alice.certificate(&name("bob")).is_none());
        assert_eq!(alice.held(), 3);
    }

    #[test]
    fn rsa_keys_are_refused_naming_the_key_file() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let key = rcgen::KeyPair::from_pem(RSA_KEY_PEM).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::DnsName("erin".try_into().unwrap())];
        let cert = ca.sign_params(params, &key).unwrap();
        let err = Identity::from_pem(ca.cert_pem(), &cert.pem(), RSA_KEY_PEM).unwrap_err();
        assert!(matches!(err, Error::UnsupportedKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("key (in memory): RSA keys cannot sign"),
            "{msg}"
        );

        let dir = tempfile::tempdir().unwrap();
        let (ca_file, cert_file, key_file) = (
            dir.path().join("ca.pem"),
            dir.path().join("erin.pem"),
            dir.path().join("erin-key.pem"),
        );
        std::fs::write(&ca_file, ca.cert_pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, RSA_KEY_PEM).unwrap();
        let err = Identity::load(&ca_file, &cert_file, &key_file).unwrap_err();
        assert!(err.to_string().contains("erin-key.pem: RSA keys"), "{err}");

        // Assembled in memory past those checks, the keyring refuses it too.
        let id = Identity {
            name: name("erin"),
            roots: vec![ca.cert_der().clone()],
            chain: vec![cert.der().clone()],
            key: rustls_pemfile::private_key(&mut RSA_KEY_PEM.as_bytes())
                .unwrap()
                .unwrap(),
            crls: Vec::new(),
        };
        let err = CertKeyring::new(&id).unwrap_err();
        assert!(matches!(err, Error::UnsupportedKey { .. }), "{err}");
        // A learned RSA member certificate is refused as well.
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let err = alice.learn(&name("erin"), cert.der()).unwrap_err();
        assert!(err.reason.contains("RSA keys"), "{err}");
    }

    #[test]
    fn key_not_matching_the_certificate_is_refused() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let alice = identity(&ca, "alice", NodeKeyType::Ed25519);
        let bob = identity(&ca, "bob", NodeKeyType::Ed25519);
        let mixed = Identity {
            key: bob.key.clone_key(),
            ..alice
        };
        let err = CertKeyring::new(&mixed).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (alice, _) = keyring(&ca, "alice", NodeKeyType::Ed25519);
        let shown = format!("{alice:?}");
        assert!(
            shown.contains("alice") && shown.contains("Ed25519"),
            "{shown}"
        );
        assert!(shown.len() < 200, "{shown}");
    }

    /// What one keyring keeps of `certs` learned together, and what another made from the
    /// same identity keeps of them learned one by one.
    fn learned_both_ways(
        id: &Identity,
        certs: &[(NodeName, Vec<u8>)],
    ) -> [Vec<std::result::Result<(), String>>; 2] {
        let items: Vec<(&NodeName, &[u8])> =
            certs.iter().map(|(n, der)| (n, der.as_slice())).collect();
        let together = CertKeyring::new(id).unwrap();
        let alone = CertKeyring::new(id).unwrap();
        let results = [
            together.learn_all(&items),
            items.iter().map(|(n, der)| alone.learn(n, der)).collect(),
        ];
        for (n, _) in certs {
            assert_eq!(together.certificate(n), alone.certificate(n), "{n}");
        }
        results.map(|r| {
            r.into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect()
        })
    }

    #[test]
    fn certificates_learned_together_are_taken_and_refused_as_one_by_one() {
        let stranger_ca = CertAuthority::generate("another ca").unwrap();
        let (_, stranger) = keyring(&stranger_ca, "gina", NodeKeyType::Ed25519);
        for ca_key in [NodeKeyType::Ed25519, NodeKeyType::P256] {
            let ca = CertAuthority::generate_with_key("test ca", ca_key).unwrap();
            let alice = identity(&ca, "alice", NodeKeyType::Ed25519);
            let member = |who: &str, key_type| (name(who), keyring(&ca, who, key_type).1);
            let good: Vec<(NodeName, Vec<u8>)> = vec![
                member("bob", NodeKeyType::Ed25519),
                member("carol", NodeKeyType::P256),
                member("dave", NodeKeyType::Ed25519),
                member("erin", NodeKeyType::Ed25519),
                member("frank", NodeKeyType::Ed25519),
            ];
            let [together, alone] = learned_both_ways(&alice, &good);
            assert!(
                together.iter().all(|r| r.is_ok()),
                "{ca_key:?}: {together:?}"
            );
            assert_eq!(together, alone);

            // One CA signature altered (in its R half), one certificate of another CA, one
            // for this node's own name, one for a name it does not carry.
            let mut forged = good[2].1.clone();
            let at = forged.len() - 60;
            forged[at] ^= 0x01;
            let mut bad = good.clone();
            bad[2].1 = forged;
            bad.push((name("gina"), stranger.clone()));
            bad.push((name("alice"), good[0].1.clone()));
            bad.push((name("harry"), good[3].1.clone()));
            let [together, alone] = learned_both_ways(&alice, &bad);
            assert_eq!(together, alone, "{ca_key:?}");
            let refused: Vec<usize> = (0..bad.len()).filter(|&i| together[i].is_err()).collect();
            assert_eq!(refused, vec![2, 5, 6, 7], "{ca_key:?}: {together:?}");
        }
    }

    #[test]
    fn certificates_and_records_of_another_cluster_are_refused() {
        let ca = CertAuthority::generate("one ca").unwrap();
        let in_cluster = |cluster: &str| {
            CertAuthority::from_pem(ca.cert_pem(), &ca.key_pem())
                .unwrap()
                .with_cluster(Some(name(cluster)))
        };
        let (blue, green) = (in_cluster("blue"), in_cluster("green"));
        let bob = CertKeyring::new(&blue.identity(&name("bob"), &[], 1).unwrap()).unwrap();
        // Alice holds one key and a certificate for it in each cluster.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let alice_in = |ca: &CertAuthority| {
            let mut params = CertificateParams::default();
            params.subject_alt_names = vec![
                SanType::DnsName("alice".try_into().unwrap()),
                SanType::URI(
                    format!(
                        "{}{}",
                        crate::tls::CLUSTER_URI_PREFIX,
                        ca.cluster().unwrap()
                    )
                    .try_into()
                    .unwrap(),
                ),
            ];
            let cert = ca.sign_params(params, &key).unwrap();
            let id = Identity::from_pem(ca.cert_pem(), &cert.pem(), &key.serialize_pem()).unwrap();
            (CertKeyring::new(&id).unwrap(), cert.der().to_vec())
        };
        let (alice_blue, blue_der) = alice_in(&blue);
        let (alice_green, green_der) = alice_in(&green);
        // Bob, in blue, refuses her green certificate and takes her blue one.
        let err = bob.learn(&name("alice"), &green_der).unwrap_err();
        assert!(
            err.reason
                .contains("it is for cluster green, and this node is in cluster blue"),
            "{err}"
        );
        bob.learn(&name("alice"), &blue_der).unwrap();
        // A node in no cluster takes neither, alone or in a list.
        let (dave, _) = keyring(&ca, "dave", NodeKeyType::Ed25519);
        let err = dave.learn(&name("alice"), &blue_der).unwrap_err();
        assert!(
            err.reason
                .contains("it is for cluster blue, and this node is in no cluster"),
            "{err}"
        );
        let list: Vec<(NodeName, Vec<u8>)> = (0..LEARNED_TOGETHER_MIN)
            .map(|i| {
                let who = format!("m{i}");
                let der = CertKeyring::new(&blue.identity(&name(&who), &[], 1).unwrap())
                    .unwrap()
                    .certificate(&name(&who))
                    .unwrap()
                    .to_vec();
                (name(&who), der)
            })
            .collect();
        let items: Vec<(&NodeName, &[u8])> = list.iter().map(|(n, d)| (n, d.as_slice())).collect();
        assert!(dave.learn_all(&items).iter().all(|r| r.is_err()));
        assert!(bob.learn_all(&items).iter().all(|r| r.is_ok()));
        // One key, but a record she signed in green never verifies in blue.
        let in_blue = alice_blue.sign(&record(4));
        let in_green = alice_green.sign(&record(4));
        assert_ne!(in_blue, in_green);
        assert_eq!(
            bob.verify(&name("alice"), &record(4), &in_blue),
            Verdict::Valid
        );
        assert_eq!(
            bob.verify(&name("alice"), &record(4), &in_green),
            Verdict::Invalid
        );
        let together = [(&name("alice"), record(4)), (&name("alice"), record(4))];
        let items: Vec<(&NodeName, &[u8], &Signature)> = vec![
            (together[0].0, &together[0].1, &in_blue),
            (together[1].0, &together[1].1, &in_blue),
        ];
        assert!(bob.verify_together(&items));
        let items: Vec<(&NodeName, &[u8], &Signature)> = vec![
            (together[0].0, &together[0].1, &in_blue),
            (together[1].0, &together[1].1, &in_green),
        ];
        assert!(!bob.verify_together(&items));
    }

    /// An identity for `who` valid from `not_before` for two days.
    fn identity_from(ca: &CertAuthority, who: &str, not_before: SystemTime) -> Identity {
        let two_days = Duration::from_secs(2 * 86_400);
        let issued = ca
            .issue_valid_between(&name(who), &[], not_before, not_before + two_days)
            .unwrap();
        Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap()
    }

    /// Two identities of `who`, the second begun an hour after the first: a rotation.
    fn rotated_pair(ca: &CertAuthority, who: &str) -> (Identity, Identity) {
        let hour = Duration::from_secs(3_600);
        let now = SystemTime::now();
        (
            identity_from(ca, who, now - 2 * hour),
            identity_from(ca, who, now - hour),
        )
    }

    #[test]
    fn a_rotated_member_is_checked_with_its_new_certificate_and_its_old_one() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (hour, now) = (Duration::from_secs(3_600), SystemTime::now());
        let (old, new) = rotated_pair(&ca, "alice");
        let (old_der, new_der) = (old.chain[0].to_vec(), new.chain[0].to_vec());
        // What `keyring` says of record `n` signed by alice with `sig`.
        let of_alice = |keyring: &CertKeyring, n: u64, sig: &Signature| {
            keyring.verify(&name("alice"), &record(n), sig)
        };
        let alice = CertKeyring::new(&old).unwrap();
        let (bob, _) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        bob.learn(&name("alice"), &old_der).unwrap();
        let before = alice.sign(&record(1));

        alice.rotate(&new).unwrap();
        let after = alice.sign(&record(2));
        assert_eq!(alice.certificate(&name("alice")).unwrap()[..], new_der[..]);
        // She checks her own records of both keys.
        assert_eq!(of_alice(&alice, 1, &before), Verdict::Valid);
        assert_eq!(of_alice(&alice, 2, &after), Verdict::Valid);
        // Bob holds only the old certificate until he learns the new one.
        assert_eq!(of_alice(&bob, 2, &after), Verdict::Invalid);
        bob.learn(&name("alice"), &new_der).unwrap();
        assert_eq!(of_alice(&bob, 2, &after), Verdict::Valid);
        assert_eq!(of_alice(&bob, 1, &before), Verdict::Valid);
        let serial = bob.certificate_info(&name("alice")).unwrap().serial;
        assert_eq!(
            serial,
            alice.certificate_info(&name("alice")).unwrap().serial
        );
        // The old one offered again never takes the new one's place.
        bob.learn(&name("alice"), &old_der).unwrap();
        assert_eq!(bob.certificate(&name("alice")).unwrap()[..], new_der[..]);
        assert_eq!(of_alice(&bob, 2, &after), Verdict::Valid);

        // Carol learned the new one first: the old one, offered after, is kept behind it.
        let (carol, _) = keyring(&ca, "carol", NodeKeyType::Ed25519);
        carol.learn(&name("alice"), &new_der).unwrap();
        assert_eq!(of_alice(&carol, 1, &before), Verdict::Invalid);
        carol.learn(&name("alice"), &old_der).unwrap();
        assert_eq!(carol.certificate(&name("alice")).unwrap()[..], new_der[..]);
        assert_eq!(of_alice(&carol, 1, &before), Verdict::Valid);
        // One older than both is refused, and changes nothing.
        let oldest = identity_from(&ca, "alice", now - 3 * hour);
        let err = carol.learn(&name("alice"), &oldest.chain[0]).unwrap_err();
        assert!(err.reason.contains("older than"), "{err}");
        assert_eq!(of_alice(&carol, 1, &before), Verdict::Valid);
        assert_eq!(of_alice(&carol, 2, &after), Verdict::Valid);
        // A newer one again: the one before it is kept behind, the oldest dropped.
        let newest = identity_from(&ca, "alice", now - hour / 2);
        let newest_keyring = CertKeyring::new(&newest).unwrap();
        carol.learn(&name("alice"), &newest.chain[0]).unwrap();
        assert_eq!(
            of_alice(&carol, 3, &newest_keyring.sign(&record(3))),
            Verdict::Valid
        );
        assert_eq!(of_alice(&carol, 2, &after), Verdict::Valid);
        assert_eq!(of_alice(&carol, 1, &before), Verdict::Invalid);
    }

    #[test]
    fn rotation_to_another_node_or_cluster_is_refused_and_changes_nothing() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let alice_id = identity(&ca, "alice", NodeKeyType::Ed25519);
        let alice = CertKeyring::new(&alice_id).unwrap();
        let sig = alice.sign(&record(1));
        let err = alice
            .rotate(&identity(&ca, "bob", NodeKeyType::Ed25519))
            .unwrap_err();
        assert!(matches!(err, Error::NotThisNode { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("it names bob, and this node is alice"),
            "{err}"
        );
        let green = CertAuthority::from_pem(ca.cert_pem(), &ca.key_pem())
            .unwrap()
            .with_cluster(Some(name("green")));
        let err = alice
            .rotate(&green.identity(&name("alice"), &[], 1).unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("it is for cluster green, and this node is in no cluster"),
            "{err}"
        );
        // Still the first identity: same certificate, same key.
        assert_eq!(
            alice.certificate(&name("alice")).unwrap()[..],
            alice_id.chain[0][..]
        );
        assert_eq!(alice.sign(&record(1)), sig);
        // A key that does not match its certificate is refused too.
        let other = identity(&ca, "alice", NodeKeyType::Ed25519);
        let mismatched = Identity {
            key: identity(&ca, "alice", NodeKeyType::Ed25519).key,
            ..other
        };
        let err = alice.rotate(&mismatched).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
        assert_eq!(alice.sign(&record(1)), sig);
    }

    #[test]
    fn rotation_to_a_new_ca_bundle_trusts_its_members() {
        let (ca, next_ca) = (
            CertAuthority::generate("test ca").unwrap(),
            CertAuthority::generate("next ca").unwrap(),
        );
        let alice_id = identity(&ca, "alice", NodeKeyType::Ed25519);
        let alice = CertKeyring::new(&alice_id).unwrap();
        let (bob, bob_der) = keyring(&next_ca, "bob", NodeKeyType::Ed25519);
        assert!(alice.learn(&name("bob"), &bob_der).is_err());
        let mut both = alice_id;
        both.roots.push(
            rustls_pemfile::certs(&mut next_ca.cert_pem().as_bytes())
                .next()
                .unwrap()
                .unwrap(),
        );
        alice.rotate(&both).unwrap();
        alice.learn(&name("bob"), &bob_der).unwrap();
        let sig = bob.sign(&record(5));
        assert_eq!(alice.verify(&name("bob"), &record(5), &sig), Verdict::Valid);
        let (carol, carol_der) = keyring(&ca, "carol", NodeKeyType::Ed25519);
        alice.learn(&name("carol"), &carol_der).unwrap();

        // The old CA leaves the bundle (alice now holds a certificate of the new one): carol,
        // of the old CA, is dropped (not banned: no list names her), and her certificate no
        // longer admitted, so her connections are closed; bob stays.
        let rotation = alice
            .prepare_rotation(&identity(&next_ca, "alice", NodeKeyType::Ed25519))
            .unwrap();
        assert!(alice.admits(&name("carol"), &carol_der));
        assert_eq!(alice.commit_rotation(rotation), []);
        assert!(!alice.admits(&name("carol"), &carol_der));
        assert!(alice.admits(&name("bob"), &bob_der));
        assert!(alice.banned(&name("carol")).is_none());
        assert!(alice.certificate(&name("carol")).is_none());
        assert_eq!(
            alice.verify(&name("carol"), &record(6), &carol.sign(&record(6))),
            Verdict::UnknownSigner
        );
        assert!(alice.learn(&name("carol"), &carol_der).is_err());
        assert_eq!(alice.verify(&name("bob"), &record(5), &sig), Verdict::Valid);
    }

    fn crl_der(pem: &str) -> Vec<u8> {
        rustls_pemfile::crls(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_revocation_list_from_a_peer_is_taken_only_when_the_ca_signed_it_and_it_is_newer() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let alice = CertKeyring::new(&identity(&ca, "alice", NodeKeyType::Ed25519)).unwrap();
        let (bob, bob_der) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        let (carol, carol_der) = keyring(&ca, "carol", NodeKeyType::P256);
        alice.learn(&name("bob"), &bob_der).unwrap();
        alice.learn(&name("carol"), &carol_der).unwrap();
        let bob_serial = bob.certificate_info(&name("bob")).unwrap().serial;
        let carol_serial = carol.certificate_info(&name("carol")).unwrap().serial;
        let first = crl_der(&ca.revocation_list(&[&bob_serial], 7).unwrap());
        let second = crl_der(
            &ca.revocation_list(&[&bob_serial, &carol_serial], 7)
                .unwrap(),
        );

        // Refused, changing nothing: garbage, a list of another CA, and one under the same
        // CA name signed by another key.
        for (what, der) in [
            ("garbage", vec![0x30, 0x03, 1, 2, 3]),
            (
                "another CA",
                crl_der(
                    &CertAuthority::generate("other ca")
                        .unwrap()
                        .revocation_list(&[&bob_serial], 7)
                        .unwrap(),
                ),
            ),
            (
                "same name, other key",
                crl_der(
                    &CertAuthority::generate("test ca")
                        .unwrap()
                        .revocation_list(&[&bob_serial], 7)
                        .unwrap(),
                ),
            ),
        ] {
            let outcome = alice.learn_revocation(&der);
            assert!(
                matches!(outcome, Revocation::Refused(_)),
                "{what}: {outcome:?}"
            );
            assert!(alice.revocations().is_empty(), "{what}");
            assert!(alice.certificate(&name("bob")).is_some(), "{what}");
        }

        // The CA's list: bob is dropped and banned, carol stays.
        assert_eq!(
            alice.learn_revocation(&first),
            Revocation::Taken {
                banned: vec![name("bob")]
            }
        );
        assert_eq!(alice.learn_revocation(&first), Revocation::Known);
        assert!(alice.certificate(&name("bob")).is_none());
        assert_eq!(alice.banned(&name("bob")).unwrap().serial, bob_serial);
        assert!(alice.learn(&name("bob"), &bob_der).is_err());
        assert!(alice.banned(&name("carol")).is_none());
        // The newer list of the same CA replaces it; the older one is never taken back.
        assert_eq!(
            alice.learn_revocation(&second),
            Revocation::Taken {
                banned: vec![name("carol")]
            }
        );
        assert_eq!(alice.learn_revocation(&first), Revocation::Known);
        assert_eq!(alice.revocations(), vec![Arc::<[u8]>::from(second.clone())]);
        assert_eq!(alice.revocation_lists().len(), 1);

        // A certificate reissued to bob (another serial) is learned and lifts the ban.
        let (_, reissued) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        alice.learn(&name("bob"), &reissued).unwrap();
        assert!(alice.banned(&name("bob")).is_none());
        assert!(alice.banned(&name("carol")).is_some());

        // A node whose files hold the older list keeps the newer one it was given.
        let alice_id = identity(&ca, "alice", NodeKeyType::Ed25519);
        let pem = format!(
            "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &first)
        );
        alice
            .rotate(&alice_id.with_crls_pem(&pem, "old list").unwrap())
            .unwrap();
        assert_eq!(alice.revocations(), vec![Arc::<[u8]>::from(second)]);
    }

    #[test]
    fn a_list_naming_only_a_rotated_away_certificate_bans_nobody_and_retires_the_old_key() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let (old, new) = rotated_pair(&ca, "alice");
        let (old_der, new_der) = (old.chain[0].to_vec(), new.chain[0].to_vec());
        let old_serial = CertKeyring::new(&old)
            .unwrap()
            .certificate_info(&name("alice"))
            .unwrap()
            .serial;
        let (bob, _) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        bob.learn(&name("alice"), &old_der).unwrap();
        bob.learn(&name("alice"), &new_der).unwrap();
        assert!(bob.previous_certificate(&name("alice")).is_some());
        let list = crl_der(&ca.revocation_list(&[&old_serial], 7).unwrap());
        assert_eq!(
            bob.learn_revocation(&list),
            Revocation::Taken { banned: vec![] }
        );
        // Alice stays, on her new key alone: a connection made with the old one is closed.
        assert!(bob.banned(&name("alice")).is_none());
        assert_eq!(bob.certificate(&name("alice")).unwrap()[..], new_der[..]);
        assert!(bob.previous_certificate(&name("alice")).is_none());
        assert!(bob.admits(&name("alice"), &new_der));
        assert!(!bob.admits(&name("alice"), &old_der));
    }

    #[test]
    fn a_revocation_list_file_not_signed_by_the_ca_is_refused_naming_it() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let other = CertAuthority::generate("test ca").unwrap();
        let crl = other.revocation_list(&["01"], 7).unwrap();
        let err = identity(&ca, "alice", NodeKeyType::Ed25519)
            .with_crls_pem(&crl, "crl.pem")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("crl.pem: "), "{err}");
        assert!(err.contains("signature does not verify"), "{err}");
    }

    #[test]
    fn a_revocation_list_stops_a_certificate_being_learned_and_drops_it_if_held() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let alice_id = identity(&ca, "alice", NodeKeyType::Ed25519);
        let alice = CertKeyring::new(&alice_id).unwrap();
        let (bob, bob_der) = keyring(&ca, "bob", NodeKeyType::Ed25519);
        let (_, carol_der) = keyring(&ca, "carol", NodeKeyType::Ed25519);
        alice.learn(&name("bob"), &bob_der).unwrap();
        alice.learn(&name("carol"), &carol_der).unwrap();
        let sig = bob.sign(&record(1));
        assert_eq!(alice.verify(&name("bob"), &record(1), &sig), Verdict::Valid);

        let serial = bob.certificate_info(&name("bob")).unwrap().serial;
        let crl = ca.revocation_list(&[&serial], 7).unwrap();
        alice
            .rotate(&alice_id.with_crls_pem(&crl, "test crl").unwrap())
            .unwrap();
        // Held before the list came: dropped, so bob's records are of an unknown signer.
        assert!(alice.certificate(&name("bob")).is_none());
        assert_eq!(
            alice.verify(&name("bob"), &record(1), &sig),
            Verdict::UnknownSigner
        );
        let err = alice.learn(&name("bob"), &bob_der).unwrap_err();
        assert!(err.reason.contains("Revoked"), "{err}");
        // Carol is not listed.
        assert!(alice.certificate(&name("carol")).is_some());
        alice.forget(&name("carol"));
        alice.learn(&name("carol"), &carol_der).unwrap();
    }

    #[test]
    fn a_file_without_a_revocation_list_is_refused_naming_it() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let id = identity(&ca, "alice", NodeKeyType::Ed25519);
        let err = id
            .clone()
            .with_crls_pem(ca.cert_pem(), "crl.pem")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("crl.pem: certificate revocation list: no PEM"),
            "{err}"
        );
        let garbage = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        let err = id.with_crls_pem(garbage, "crl.pem").unwrap_err();
        assert!(err.to_string().contains("does not parse"), "{err}");
    }
}
