//! The cluster certificate authority: generate or load it, issue node certificates, and the
//! file layout `quicswim certs` uses.
//!
//! ```text
//!   DIR/ca.pem               CA certificate
//!   DIR/ca-key.pem           CA private key (0600; keep it off the nodes)
//!   OUT/NAME/                what node NAME needs, and nothing else (OUT is DIR by default):
//!   OUT/NAME/ca.pem            a copy of the CA certificate
//!   OUT/NAME/NAME.pem          node certificate: DNS SAN NAME (+ IP SANs), both usages
//!   OUT/NAME/NAME-key.pem      node private key (0600)
//! ```
//!
//! A node's files get a directory of their own so that the directory given to an agent
//! (`--certs OUT/NAME`), copied to a host or mounted into a container, never carries the CA
//! key along by accident. The CA may sign node certificates only (path length 0): a stolen
//! node key cannot be used to mint a sub-CA. A new CA's key is Ed25519 (one made by an earlier
//! version, ECDSA P-256, keeps issuing); node keys are Ed25519 by default, or P-256
//! ([`NodeKeyType`]).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::FromDer;

use super::identity::{label_of, lower_hex, parse, read_file};
use super::{Error, Identity, Result};
use crate::protocol::NodeName;

/// File name of the CA certificate inside a CA directory.
const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA key inside a CA directory.
const CA_KEY_FILE: &str = "ca-key.pem";
/// File inside a CA directory naming the cluster its certificates are issued in by default
/// (`quicswim certs init --cluster NAME`): the name alone, on one line.
pub const CLUSTER_FILE: &str = "cluster";
/// How long a generated CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Certificates start this long before they are made, so a peer whose clock is a little behind
/// still accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(3_600);
/// Longest node certificate validity `issue` accepts, in days.
const DAYS_MAX: u32 = 36_500;

/// The key a node certificate is issued for, whatever the CA's own key: a CA made by an
/// earlier version (ECDSA P-256) issues either, and other CAs' chains mix the two as well.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeKeyType {
    /// Ed25519 (the default): for signed records, verification as cheap as P-256's (what
    /// every node does for every record; signing is once per record, by its owner),
    /// deterministic signatures that need no randomness, and smaller certificates, which
    /// travel with records (BENCHMARKS.md, "Signing cost").
    #[default]
    Ed25519,
    /// ECDSA P-256: for tools and policies that do not take Ed25519 certificates.
    P256,
}

impl NodeKeyType {
    fn generate(self) -> std::result::Result<KeyPair, rcgen::Error> {
        KeyPair::generate_for(match self {
            NodeKeyType::Ed25519 => &rcgen::PKCS_ED25519,
            NodeKeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        })
    }
}

impl std::fmt::Display for NodeKeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeKeyType::Ed25519 => "Ed25519",
            NodeKeyType::P256 => "ECDSA P-256",
        })
    }
}

/// A CA able to sign node certificates.
pub struct CertAuthority {
    /// The CA certificate exactly as distributed; peers trust these bytes.
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// What rcgen signs with. For a loaded CA this is re-derived from `cert_pem` and carries
    /// the same subject and key identifier, which is all an issued certificate refers to.
    signer: rcgen::Certificate,
    key: KeyPair,
    /// The cluster node certificates are issued in (a URI SAN), if any.
    cluster: Option<NodeName>,
}

/// The serial number (lowercase hex, as `quicswim members` shows it) of the first
/// certificate in the PEM file `path`.
pub fn serial_of_cert_file(path: &Path) -> Result<String> {
    let pem = read_file(path)?;
    let label = label_of(path);
    let der = first_certificate(&pem, &label)?;
    Ok(lower_hex(parse(&der, &label)?.raw_serial()))
}

/// The first certificate of PEM text, DER; errors name `label`.
fn first_certificate(pem: &str, label: &str) -> Result<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| Error::NoCertificate {
            file: label.to_owned(),
        })?
        .map_err(|e| Error::Pem {
            file: label.to_owned(),
            reason: e.to_string(),
        })
}

/// The serials (lowercase hex) the revocation lists in PEM file `path` name.
pub fn revoked_serials(path: &Path) -> Result<Vec<String>> {
    let pem = read_file(path)?;
    let label = label_of(path);
    let bad = |reason: String| Error::BadCrl {
        file: label.clone(),
        reason,
    };
    let mut serials = Vec::new();
    for der in rustls_pemfile::crls(&mut pem.as_bytes()) {
        let der = der.map_err(|e| bad(format!("malformed PEM: {e}")))?;
        let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
            .map_err(|e| bad(format!("does not parse: {e}")))?;
        for revoked in crl.iter_revoked_certificates() {
            serials.push(lower_hex(revoked.raw_serial()));
        }
    }
    Ok(serials)
}

/// A freshly issued node certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The node name written as DNS SAN.
    pub name: NodeName,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
}

/// Where [`init_ca_dir`] wrote the CA.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// `DIR/ca.pem`.
    pub cert: PathBuf,
    /// `DIR/ca-key.pem`.
    pub key: PathBuf,
}

/// Where [`issue_to_dir`] wrote a node's files.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    /// `OUT/NAME`: the directory to give the node's agent as `--certs`.
    pub dir: PathBuf,
    /// `OUT/NAME/ca.pem`, a copy of the CA certificate.
    pub ca: PathBuf,
    /// `OUT/NAME/NAME.pem`.
    pub cert: PathBuf,
    /// `OUT/NAME/NAME-key.pem`.
    pub key: PathBuf,
    /// The cluster the certificate was issued in, if any.
    pub cluster: Option<NodeName>,
}

impl CertAuthority {
    /// Generates a new self-signed CA (Ed25519, valid ten years) named `common_name`.
    ///
    /// Ed25519 because every node checks the CA's signature on every member's certificate it
    /// learns (a thousand at a thousand members, most of them while it joins) as well as in
    /// each handshake: learning a certificate takes about 40 µs under an Ed25519 CA against
    /// 55 µs under a P-256 one (`cargo bench -p quicswim --bench signing -- learn_certificate`;
    /// BENCHMARKS.md, "Signed records: cost").
    pub fn generate(common_name: &str) -> Result<Self> {
        Self::generate_with_key(common_name, NodeKeyType::Ed25519)
    }

    /// [`CertAuthority::generate`] with a key of `key_type`: `P256` makes the kind of CA
    /// earlier versions made, for tools and policies that do not take Ed25519.
    pub fn generate_with_key(common_name: &str, key_type: NodeKeyType) -> Result<Self> {
        let what = || format!("CA {common_name:?}");
        let key = key_type.generate().map_err(|source| Error::Generate {
            what: what(),
            source,
        })?;
        let mut params = params_named(common_name);
        // Path length 0: certificates it signs cannot sign others.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + CA_VALIDITY).into();
        let signer = params.self_signed(&key).map_err(|source| Error::Generate {
            what: what(),
            source,
        })?;
        Ok(CertAuthority {
            cert_pem: signer.pem(),
            cert_der: signer.der().clone(),
            signer,
            key,
            cluster: None,
        })
    }

    /// Loads a CA from `DIR/ca.pem` and `DIR/ca-key.pem`.
    pub fn load(dir: &Path) -> Result<Self> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_file(&cert_path)?;
        let key_pem = read_file(&key_path)?;
        super::warn_if_readable_by_others(&key_path, "CA private key");
        let ca = Self::from_pem_labelled(
            &cert_pem,
            &key_pem,
            &label_of(&cert_path),
            &label_of(&key_path),
        )?;
        Ok(ca.with_cluster(read_cluster_file(dir)?))
    }

    /// A CA from its certificate and private key, both PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        Self::from_pem_labelled(
            cert_pem,
            key_pem,
            "ca certificate (in memory)",
            "ca key (in memory)",
        )
    }

    fn from_pem_labelled(
        cert_pem: &str,
        key_pem: &str,
        cert_label: &str,
        key_label: &str,
    ) -> Result<Self> {
        let cert_der = first_certificate(cert_pem, cert_label)?;
        let parsed = parse(&cert_der, cert_label)?;
        if !parsed.is_ca() {
            return Err(Error::NotCa {
                file: cert_label.to_owned(),
            });
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::BadKey {
            file: key_label.to_owned(),
            reason: e.to_string(),
        })?;
        // Raw key bits, not SPKI DER: other tools encode the algorithm parameters differently.
        if key.public_key_raw() != &*parsed.public_key().subject_public_key.data {
            return Err(Error::KeyMismatch {
                key_file: key_label.to_owned(),
                cert_file: cert_label.to_owned(),
            });
        }
        let params =
            CertificateParams::from_ca_cert_der(&cert_der).map_err(|e| Error::BadCertificate {
                file: cert_label.to_owned(),
                reason: e.to_string(),
            })?;
        let signer = params.self_signed(&key).map_err(|source| Error::Generate {
            what: format!("signer from {cert_label}"),
            source,
        })?;
        Ok(CertAuthority {
            cert_pem: cert_pem.to_owned(),
            cert_der: cert_der.into_owned(),
            signer,
            key,
            cluster: None,
        })
    }

    /// The same CA issuing node certificates in `cluster` (`None`: in no cluster).
    #[must_use]
    pub fn with_cluster(mut self, cluster: Option<NodeName>) -> Self {
        self.cluster = cluster;
        self
    }

    /// The cluster node certificates are issued in.
    pub fn cluster(&self) -> Option<&NodeName> {
        self.cluster.as_ref()
    }

    /// The CA certificate, PEM, as peers must trust it.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key, PEM (PKCS#8; an Ed25519 key as v1, the form OpenSSL reads).
    pub fn key_pem(&self) -> String {
        pem_of_key(&self.key)
    }

    /// Issues a node certificate valid for `days` days (1..=36500): `name` as DNS SAN, each of
    /// `ips` as IP SAN, serverAuth and clientAuth extended key usages, digitalSignature key
    /// usage, and a fresh key of the default [`NodeKeyType`] (Ed25519).
    pub fn issue(&self, name: &NodeName, ips: &[IpAddr], days: u32) -> Result<IssuedCert> {
        self.issue_with_key(name, ips, days, NodeKeyType::default())
    }

    /// As [`CertAuthority::issue`] with a fresh key of `key_type`.
    pub fn issue_with_key(
        &self,
        name: &NodeName,
        ips: &[IpAddr],
        days: u32,
        key_type: NodeKeyType,
    ) -> Result<IssuedCert> {
        if days == 0 || days > DAYS_MAX {
            return Err(Error::InvalidDays { days });
        }
        let now = SystemTime::now();
        let not_after = now + Duration::from_secs(u64::from(days) * 86_400);
        self.issue_valid_between_with_key(name, ips, now - CLOCK_SKEW, not_after, key_type)
    }

    /// As [`CertAuthority::issue`] with an explicit validity period (tests use it to make
    /// certificates that are already expired or not yet valid).
    pub fn issue_valid_between(
        &self,
        name: &NodeName,
        ips: &[IpAddr],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert> {
        self.issue_valid_between_with_key(name, ips, not_before, not_after, NodeKeyType::default())
    }

    /// As [`CertAuthority::issue_valid_between`] with a fresh key of `key_type`.
    pub fn issue_valid_between_with_key(
        &self,
        name: &NodeName,
        ips: &[IpAddr],
        not_before: SystemTime,
        not_after: SystemTime,
        key_type: NodeKeyType,
    ) -> Result<IssuedCert> {
        let what = || format!("certificate for {name}");
        let key = key_type.generate().map_err(|source| Error::Generate {
            what: what(),
            source,
        })?;
        let dns = name
            .as_str()
            .to_owned()
            .try_into()
            .map_err(|source| Error::Generate {
                what: what(),
                source,
            })?;
        let mut params = params_named(name.as_str());
        params.subject_alt_names = std::iter::once(SanType::DnsName(dns))
            .chain(ips.iter().copied().map(SanType::IpAddress))
            .collect();
        if let Some(cluster) = &self.cluster {
            let uri = format!("{}{cluster}", super::CLUSTER_URI_PREFIX)
                .try_into()
                .map_err(|source| Error::Generate {
                    what: what(),
                    source,
                })?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = self.sign_params(params, &key)?;
        Ok(IssuedCert {
            name: name.clone(),
            cert_pem: cert.pem(),
            key_pem: pem_of_key(&key),
        })
    }

    /// A certificate revocation list (PEM) signed by this CA, listing the certificates of
    /// `serials` (lowercase or uppercase hex, as `quicswim members` shows them), valid for
    /// `days` from now: what [`Identity::with_crl_file`] and `quicswim agent --crl` read.
    ///
    /// Errors: [`Error::InvalidDays`], [`Error::BadCrl`] for a serial that is not hex.
    pub fn revocation_list(&self, serials: &[&str], days: u32) -> Result<String> {
        if days == 0 || days > DAYS_MAX {
            return Err(Error::InvalidDays { days });
        }
        let now = SystemTime::now();
        let revoked_certs = serials
            .iter()
            .map(|hex| {
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| Error::BadCrl {
                        file: "revocation list".into(),
                        reason: format!("serial {hex:?} is not hexadecimal"),
                    })?;
                Ok(rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(&bytes),
                    revocation_time: now.into(),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Microseconds: a list made after another, even within the same second, has the
        // higher number, so members take it in the other's place.
        let crl_number = u64::try_from(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros(),
        )
        .unwrap_or(u64::MAX);
        let params = rcgen::CertificateRevocationListParams {
            this_update: (now - CLOCK_SKEW).into(),
            next_update: (now + Duration::from_secs(u64::from(days) * 86_400)).into(),
            crl_number: rcgen::SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.signer, &self.key)
            .map_err(|source| Error::Generate {
                what: "revocation list".into(),
                source,
            })?;
        crl.pem().map_err(|source| Error::Generate {
            what: "revocation list".into(),
            source,
        })
    }

    /// Issues a certificate for `name` and turns it straight into an [`Identity`] trusting this
    /// CA: the in-memory path the demo and the tests use.
    pub fn identity(&self, name: &NodeName, ips: &[IpAddr], days: u32) -> Result<Identity> {
        let issued = self.issue(name, ips, days)?;
        Identity::from_pem(&self.cert_pem, &issued.cert_pem, &issued.key_pem)
    }

    /// Signs `params` as a node certificate for `key`, filling in the usages every node needs.
    pub(super) fn sign_params(
        &self,
        mut params: CertificateParams,
        key: &KeyPair,
    ) -> Result<rcgen::Certificate> {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params
            .signed_by(key, &self.signer, &self.key)
            .map_err(|source| Error::Generate {
                what: "node certificate".into(),
                source,
            })
    }
}

/// ring's Ed25519 PKCS#8 v2 document up to the 32-byte seed: version 1, id-Ed25519, the seed's
/// OCTET STRING in an OCTET STRING; the public key follows as `[1]`.
const ED25519_PKCS8_V2_PREFIX: &[u8] = &[
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// The same key as PKCS#8 v1 (RFC 8410): version 0 and the seed only.
const ED25519_PKCS8_V1_PREFIX: &[u8] = &[
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A key (a node's or the CA's) as PEM. Ed25519 keys are written as PKCS#8 v1, the form
/// OpenSSL writes and reads: OpenSSL 3.0 refuses ring's v2 document ("unsupported"), and
/// rustls, rcgen and the keyring read both. Other keys as rcgen writes them.
fn pem_of_key(key: &KeyPair) -> String {
    let der = key.serialized_der();
    match der.strip_prefix(ED25519_PKCS8_V2_PREFIX) {
        Some(rest) if rest.len() >= 32 => {
            use base64::Engine;
            let v1 = [ED25519_PKCS8_V1_PREFIX, &rest[..32]].concat();
            let b64 = base64::engine::general_purpose::STANDARD.encode(v1);
            // 64 bytes: the 48-byte key fits on one line.
            format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
        }
        _ => key.serialize_pem(),
    }
}

/// Certificate parameters whose subject is just `common_name`, the rest left to the caller.
fn params_named(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
}

/// Creates `dir` if needed and writes a new CA into `DIR/ca.pem` and `DIR/ca-key.pem` (the key
/// with mode 0600). Refuses, changing nothing, if either file, or a `DIR/cluster`
/// ([`CLUSTER_FILE`]), already exists.
pub fn init_ca_dir(dir: &Path) -> Result<CaFiles> {
    init_ca_dir_with_key(dir, NodeKeyType::Ed25519)
}

/// [`init_ca_dir`] with a CA key of `key_type`.
pub fn init_ca_dir_with_key(dir: &Path, key_type: NodeKeyType) -> Result<CaFiles> {
    init_ca_dir_in_cluster(dir, key_type, None)
}

/// [`init_ca_dir_with_key`] whose node certificates are issued in `cluster` by default: its
/// name is written to `DIR/cluster` ([`CLUSTER_FILE`]), which [`CertAuthority::load`] reads.
pub fn init_ca_dir_in_cluster(
    dir: &Path,
    key_type: NodeKeyType,
    cluster: Option<&NodeName>,
) -> Result<CaFiles> {
    let files = CaFiles {
        cert: dir.join(CA_CERT_FILE),
        key: dir.join(CA_KEY_FILE),
    };
    let cluster_file = dir.join(CLUSTER_FILE);
    for path in [&files.cert, &files.key, &cluster_file] {
        if path.exists() {
            return Err(Error::CaExists { path: path.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })?;
    // A random suffix keeps two clusters' CAs apart by name as well as by key: a verifier
    // that finds no issuer of that name reports `unknown_ca`, where one that finds a
    // same-named issuer with another key can only report a bad signature (`other`).
    let ca = CertAuthority::generate_with_key(
        &format!("quicswim cluster CA {:08x}", rand::random::<u32>()),
        key_type,
    )?;
    // Key first: a crash between the two writes leaves no certificate without its key.
    write_file(
        &files.key,
        ca.key_pem().as_bytes(),
        Mode::Secret,
        Exists::Refuse,
    )?;
    if let Some(cluster) = cluster {
        write_file(
            &cluster_file,
            format!("{cluster}\n").as_bytes(),
            Mode::Public,
            Exists::Refuse,
        )?;
    }
    write_file(
        &files.cert,
        ca.cert_pem.as_bytes(),
        Mode::Public,
        Exists::Refuse,
    )?;
    Ok(files)
}

/// The cluster named in `DIR/cluster`, if the file is there.
fn read_cluster_file(dir: &Path) -> Result<Option<NodeName>> {
    let path = dir.join(CLUSTER_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = read_file(&path)?;
    NodeName::new(text.trim())
        .map(Some)
        .map_err(|e| Error::BadCluster {
            file: label_of(&path),
            reason: format!("{:?} is not a cluster name: {e}", text.trim()),
        })
}

/// Loads the CA in `dir` and writes node `name`'s files into `DIR/NAME/`: `ca.pem`,
/// `NAME.pem` and `NAME-key.pem` (mode 0600), replacing earlier ones for the same name
/// (renewal). See [`issue_to_node_dir`] to write them elsewhere.
pub fn issue_to_dir(dir: &Path, name: &NodeName, ips: &[IpAddr], days: u32) -> Result<NodeFiles> {
    issue_to_node_dir(dir, dir, name, ips, days, NodeKeyType::default())
}

/// Loads the CA in `ca_dir` and writes node `name`'s files into `OUT/NAME/` (created 0700):
/// a copy of the CA certificate, the node certificate and its key (0600), a fresh key of
/// `key_type`. The name `ca` is refused: its certificate would land on the CA certificate's
/// copy.
pub fn issue_to_node_dir(
    ca_dir: &Path,
    out: &Path,
    name: &NodeName,
    ips: &[IpAddr],
    days: u32,
    key_type: NodeKeyType,
) -> Result<NodeFiles> {
    issue_to_node_dir_in_cluster(ca_dir, out, name, ips, days, key_type, None)
}

/// [`issue_to_node_dir`] in `cluster` where it is given, in the CA directory's default
/// cluster ([`CLUSTER_FILE`]) where it is not.
pub fn issue_to_node_dir_in_cluster(
    ca_dir: &Path,
    out: &Path,
    name: &NodeName,
    ips: &[IpAddr],
    days: u32,
    key_type: NodeKeyType,
    cluster: Option<&NodeName>,
) -> Result<NodeFiles> {
    let node_dir = out.join(name.as_str());
    let files = NodeFiles {
        ca: node_dir.join(CA_CERT_FILE),
        cert: node_dir.join(format!("{name}.pem")),
        key: node_dir.join(format!("{name}-key.pem")),
        dir: node_dir,
        cluster: None,
    };
    if files.cert == files.ca || files.key == files.ca {
        return Err(Error::ReservedName {
            name: name.to_string(),
            dir: out.to_owned(),
        });
    }
    let mut ca = CertAuthority::load(ca_dir)?;
    if let Some(cluster) = cluster {
        ca = ca.with_cluster(Some(cluster.clone()));
    }
    let files = NodeFiles {
        cluster: ca.cluster().cloned(),
        ..files
    };
    let issued = ca.issue_with_key(name, ips, days, key_type)?;
    create_private_dir(&files.dir)?;
    write_file(
        &files.key,
        issued.key_pem.as_bytes(),
        Mode::Secret,
        Exists::Replace,
    )?;
    write_file(
        &files.cert,
        issued.cert_pem.as_bytes(),
        Mode::Public,
        Exists::Replace,
    )?;
    write_file(
        &files.ca,
        ca.cert_pem.as_bytes(),
        Mode::Public,
        Exists::Replace,
    )?;
    Ok(files)
}

/// Creates `dir` (and its parents) with mode 0700 for the last component on Unix.
fn create_private_dir(dir: &Path) -> Result<()> {
    let err = |source| Error::Write {
        path: dir.to_owned(),
        source,
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(err)
}

#[derive(Clone, Copy)]
enum Mode {
    /// Owner read/write only.
    Secret,
    /// The umask decides.
    Public,
}

#[derive(Clone, Copy, PartialEq)]
enum Exists {
    Refuse,
    Replace,
}

fn write_file(path: &Path, bytes: &[u8], mode: Mode, exists: Exists) -> Result<()> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if exists == Exists::Refuse {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    #[cfg(unix)]
    if let Mode::Secret = mode {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            Error::CaExists {
                path: path.to_owned(),
            }
        } else {
            err(source)
        }
    })?;
    // `mode` only applies when the file is created; a replaced key file may have been looser.
    #[cfg(unix)]
    if let Mode::Secret = mode {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use x509_parser::extensions::GeneralName;

    use super::*;

    use crate::test_name as name;

    #[test]
    fn issued_cert_has_name_ips_and_both_usages() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let issued = ca.issue(&name("alice"), &[ip], 825).unwrap();
        let der = rustls_pemfile::certs(&mut issued.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let cert = parse(&der, "test").unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names = &san.value.general_names;
        assert!(names.contains(&GeneralName::DNSName("alice")), "{names:?}");
        assert!(
            names.contains(&GeneralName::IPAddress(&[10, 1, 2, 3])),
            "{names:?}"
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature());
        assert!(!cert.is_ca());
    }

    #[test]
    fn ed25519_node_keys_are_written_as_pkcs8_v1() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let issued = ca.issue(&name("alice"), &[], 1).unwrap();
        let key = rustls_pemfile::private_key(&mut issued.key_pem.as_bytes())
            .unwrap()
            .unwrap();
        let rustls::pki_types::PrivateKeyDer::Pkcs8(der) = &key else {
            panic!("{}", issued.key_pem)
        };
        let der = der.secret_pkcs8_der();
        assert_eq!(der.len(), 48);
        assert!(der.starts_with(ED25519_PKCS8_V1_PREFIX));
        // The certificate's key: loads, and matches (Identity checks both).
        Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
        let p256 = ca
            .issue_with_key(&name("bob"), &[], 1, NodeKeyType::P256)
            .unwrap();
        assert!(p256.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        Identity::from_pem(ca.cert_pem(), &p256.cert_pem, &p256.key_pem).unwrap();
    }

    #[test]
    fn zero_days_is_refused() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let err = ca.issue(&name("alice"), &[], 0).err().unwrap();
        assert!(matches!(err, Error::InvalidDays { days: 0 }), "{err}");
    }

    #[test]
    fn loaded_ca_issues_certs_the_original_trusts() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let again = CertAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let issued = again.issue(&name("bob"), &[], 5).unwrap();
        let id = Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
        assert_eq!(id.name, name("bob"));
    }

    /// A CA made by an earlier version (ECDSA P-256) still issues both key types, and what
    /// it issues is trusted and signs records that verify.
    #[test]
    fn p256_ca_of_earlier_versions_still_issues() {
        use crate::protocol::signing::{Keyring, Verdict};
        use crate::tls::CertKeyring;

        let old = CertAuthority::generate_with_key("old ca", NodeKeyType::P256).unwrap();
        let loaded = CertAuthority::from_pem(old.cert_pem(), &old.key_pem()).unwrap();
        let identity = |who: &str, key_type| {
            let files = loaded.issue_with_key(&name(who), &[], 5, key_type).unwrap();
            Identity::from_pem(old.cert_pem(), &files.cert_pem, &files.key_pem).unwrap()
        };
        let dave = CertKeyring::new(&identity("dave", NodeKeyType::Ed25519)).unwrap();
        for key_type in [NodeKeyType::Ed25519, NodeKeyType::P256] {
            let carol_id = identity("carol", key_type);
            let carol = CertKeyring::new(&carol_id).unwrap();
            dave.learn(&name("carol"), &carol_id.chain[0]).unwrap();
            let sig = carol.sign(b"carol alive 3");
            assert_eq!(
                dave.verify(&name("carol"), b"carol alive 3", &sig),
                Verdict::Valid,
                "{key_type}"
            );
        }
    }

    #[test]
    fn init_makes_an_ed25519_ca_or_the_key_type_asked_for() {
        for (key_type, oid) in [
            (NodeKeyType::Ed25519, "1.3.101.112"),
            (NodeKeyType::P256, "1.2.840.10045.2.1"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let files = if key_type == NodeKeyType::Ed25519 {
                init_ca_dir(dir.path()).unwrap()
            } else {
                init_ca_dir_with_key(dir.path(), key_type).unwrap()
            };
            let pem = fs::read(&files.cert).unwrap();
            let der = rustls_pemfile::certs(&mut pem.as_slice())
                .next()
                .unwrap()
                .unwrap();
            let cert = parse(&der, "test").unwrap();
            assert_eq!(cert.public_key().algorithm.algorithm.to_id_string(), oid);
            let loaded = CertAuthority::load(dir.path()).unwrap();
            loaded.issue(&name("erin"), &[], 5).unwrap();
        }
    }

    #[test]
    fn init_refuses_to_overwrite_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let files = init_ca_dir(dir.path()).unwrap();
        let before = fs::read(&files.cert).unwrap();
        let err = init_ca_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::CaExists { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert_eq!(fs::read(&files.cert).unwrap(), before);
    }

    #[test]
    fn two_inits_make_cas_with_different_names() {
        let subject = |dir: &Path| {
            let files = init_ca_dir(dir).unwrap();
            let pem = fs::read(&files.cert).unwrap();
            let der = rustls_pemfile::certs(&mut pem.as_slice())
                .next()
                .unwrap()
                .unwrap();
            parse(&der, "test").unwrap().subject().to_string()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (first, second) = (subject(a.path()), subject(b.path()));
        assert!(first.contains("quicswim cluster CA"), "{first}");
        assert_ne!(first, second);
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = init_ca_dir(dir.path()).unwrap();
        let node = issue_to_dir(dir.path(), &name("carol"), &[], 1).unwrap();
        for key in [&ca.key, &node.key] {
            let mode = fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
        assert!(node.cert.ends_with("carol/carol.pem"));
        assert!(node.key.ends_with("carol/carol-key.pem"));
        // The node's directory holds what it needs and not the CA key.
        let mut held: Vec<String> = fs::read_dir(&node.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        held.sort();
        assert_eq!(held, ["ca.pem", "carol-key.pem", "carol.pem"]);
        Identity::load(&node.ca, &node.cert, &node.key).unwrap();
    }

    #[test]
    fn the_ca_signs_node_certificates_only() {
        let ca = CertAuthority::generate("pathlen").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        let constraints = cert.basic_constraints().unwrap().unwrap().value;
        assert!(constraints.ca);
        assert_eq!(constraints.path_len_constraint, Some(0));
    }

    #[test]
    fn names_that_clobber_the_ca_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        init_ca_dir(dir.path()).unwrap();
        let err = issue_to_dir(dir.path(), &name("ca"), &[], 1).unwrap_err();
        assert!(matches!(err, Error::ReservedName { .. }), "{err}");
        // In its own directory, "ca-key" touches nothing of the CA's.
        let files = issue_to_dir(dir.path(), &name("ca-key"), &[], 1).unwrap();
        assert!(files.dir.ends_with("ca-key"));
        CertAuthority::load(dir.path()).unwrap();
    }

    #[test]
    fn issue_without_ca_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = issue_to_dir(dir.path(), &name("dave"), &[], 1).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn a_ca_dir_issues_in_its_cluster_unless_told_another() {
        let dir = tempfile::tempdir().unwrap();
        init_ca_dir_in_cluster(dir.path(), NodeKeyType::Ed25519, Some(&name("blue"))).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(CLUSTER_FILE)).unwrap(),
            "blue\n"
        );
        let load = |files: &NodeFiles| Identity::load(&files.ca, &files.cert, &files.key).unwrap();
        let out = dir.path().join("nodes");
        let alice = issue_to_node_dir(
            dir.path(),
            &out,
            &name("alice"),
            &[],
            1,
            NodeKeyType::Ed25519,
        )
        .unwrap();
        assert_eq!(alice.cluster, Some(name("blue")));
        assert_eq!(load(&alice).cluster(), Some(name("blue")));
        let bob = issue_to_node_dir_in_cluster(
            dir.path(),
            &out,
            &name("bob"),
            &[],
            1,
            NodeKeyType::Ed25519,
            Some(&name("green")),
        )
        .unwrap();
        assert_eq!(load(&bob).cluster(), Some(name("green")));
        // A CA made without a cluster issues certificates in none.
        let plain = tempfile::tempdir().unwrap();
        init_ca_dir(plain.path()).unwrap();
        let carol = issue_to_dir(plain.path(), &name("carol"), &[], 1).unwrap();
        assert_eq!(carol.cluster, None);
        assert_eq!(load(&carol).cluster(), None);
        // A cluster file that names no cluster stops the CA from loading, naming the file.
        fs::write(dir.path().join(CLUSTER_FILE), "Not A Label\n").unwrap();
        let err = CertAuthority::load(dir.path()).err().unwrap();
        assert!(matches!(err, Error::BadCluster { .. }), "{err}");
        let file = dir.path().join(CLUSTER_FILE).display().to_string();
        assert!(err.to_string().starts_with(&file), "{err}");
        assert!(err.to_string().contains("Not A Label"), "{err}");
    }

    #[test]
    fn a_near_miss_of_the_cluster_uri_is_refused_not_taken_for_no_cluster() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let with_uri = |uri: &str| {
            let key = NodeKeyType::Ed25519.generate().unwrap();
            let mut params = params_named("alice");
            params.subject_alt_names = vec![
                SanType::DnsName("alice".try_into().unwrap()),
                SanType::URI(uri.try_into().unwrap()),
            ];
            let cert = ca.sign_params(params, &key).unwrap();
            Identity::from_pem(ca.cert_pem(), &cert.pem(), &pem_of_key(&key))
        };
        assert_eq!(
            with_uri("urn:quicswim:cluster:blue").unwrap().cluster(),
            Some(name("blue"))
        );
        // Another URI is no business of ours.
        assert_eq!(with_uri("https://example.com/a").unwrap().cluster(), None);
        for near_miss in [
            "URN:quicswim:cluster:blue",
            "urn:quicswim:Cluster:blue",
            "urn:quicswim:clusters:blue",
            "urn:quicswim:cluster:Blue",
            "urn:quicswim:cluster:blue/",
        ] {
            let err = with_uri(near_miss).err().unwrap();
            assert!(
                matches!(err, Error::BadCluster { .. }),
                "{near_miss}: {err}"
            );
            assert!(err.to_string().contains("cluster"), "{near_miss}: {err}");
        }
    }
}
