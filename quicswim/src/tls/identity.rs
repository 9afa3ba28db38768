//! A node's identity: its name, the CA roots it trusts, its certificate chain and its key.

use std::fmt;
use std::io::{self, BufReader};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::ParsedCertificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::config::crypto_provider;
use super::{Error, Result};
use crate::protocol::NodeName;

/// Label used in errors about a certificate that came over the network.
const PEER_LABEL: &str = "peer certificate";

/// What a certificate's cluster URI SAN starts with: `urn:quicswim:cluster:NAME` names the
/// cluster NAME (a DNS label, as node names are). A certificate without one is in no cluster.
/// Nodes and records of different clusters never meet: handshakes, learned certificates and
/// record signatures are all bound to the cluster (README, "Clusters under one CA").
pub const CLUSTER_URI_PREFIX: &str = "urn:quicswim:cluster:";

/// Every URI SAN starting with this (in any case) must be a cluster URI.
const URN_PREFIX: &str = "urn:quicswim:";

/// What a node presents and trusts.
///
/// Built by [`Identity::load`] from PEM files or by [`Identity::from_pem`] from PEM text; both
/// check that the certificate names exactly one node, is within its validity period, carries
/// both TLS usages, matches the key and chains to one of the roots. The fields are public so a
/// test can assemble an identity those checks would refuse.
pub struct Identity {
    /// The node name: the certificate's one single-label DNS SAN.
    pub name: NodeName,
    /// CA certificates trusted for peers (usually the one cluster CA).
    pub roots: Vec<CertificateDer<'static>>,
    /// The node's certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of `chain[0]`.
    pub key: PrivateKeyDer<'static>,
    /// Certificate revocation lists published by the CA: a peer certificate one of them
    /// lists is refused in handshakes, both ways, and never learned to check records with.
    /// Empty unless [`Identity::with_crl_file`] or [`Identity::with_crls_pem`] added some.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

/// The certificate revocation lists (`X509 CRL` blocks, DER) in PEM text, at least one;
/// errors name `label`. Nothing is checked beyond the PEM.
pub fn crls_from_pem(pem: &str, label: &str) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let bad = |reason: String| Error::BadCrl {
        file: label.to_owned(),
        reason,
    };
    let crls = rustls_pemfile::crls(&mut pem.as_bytes())
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| bad(format!("malformed PEM: {e}")))?;
    if crls.is_empty() {
        return Err(bad("no PEM `X509 CRL` block found".into()));
    }
    Ok(crls)
}

impl Identity {
    /// Loads the CA certificate(s) from `ca`, the node certificate (and intermediates) from
    /// `cert` and its private key from `key`, all PEM.
    ///
    /// Errors name the file at fault: missing or unreadable, no PEM certificate or key, no DNS
    /// SAN or one that is not a node name, expired, key not matching, not signed by the CA.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self> {
        let ca_pem = read_file(ca)?;
        let cert_pem = read_file(cert)?;
        let key_pem = read_file(key)?;
        super::warn_if_readable_by_others(key, "node private key");
        Self::build(
            Pem::new(&ca_pem, label_of(ca)),
            Pem::new(&cert_pem, label_of(cert)),
            Pem::new(&key_pem, label_of(key)),
        )
    }

    /// Same checks as [`Identity::load`], on PEM text held in memory (errors name the parts
    /// `ca (in memory)`, `certificate (in memory)` and `key (in memory)`).
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self> {
        Self::build(
            Pem::new(ca_pem, "ca (in memory)".into()),
            Pem::new(cert_pem, "certificate (in memory)".into()),
            Pem::new(key_pem, "key (in memory)".into()),
        )
    }

    fn build(ca: Pem<'_>, cert: Pem<'_>, key: Pem<'_>) -> Result<Self> {
        let roots = ca.certs()?;
        for root in &roots {
            check_is_ca(root, &ca.label)?;
        }
        let chain = cert.certs()?;
        let key_der = key.private_key()?;
        let leaf = &chain[0];
        let name = node_name(leaf, &cert.label)?;
        cluster_of_der(leaf, &cert.label)?;
        check_validity(leaf, &cert.label, SystemTime::now())?;
        check_usages(leaf, &cert.label)?;
        check_key_matches(leaf, &key_der, &key.label, &cert.label)?;
        super::keyring::check_signing_key(leaf, &cert.label, &key.label)?;
        check_chain(leaf, &chain[1..], &roots, &cert.label, &ca.label)?;
        Ok(Identity {
            name,
            roots,
            chain,
            key: key_der,
            crls: Vec::new(),
        })
    }

    /// This identity with the revocation lists in the PEM file `path` (`X509 CRL` blocks,
    /// as `openssl ca -gencrl` and `quicswim certs revoke` write them), in place of any it had.
    ///
    /// Errors name the file: missing or unreadable, no CRL in it, one that does not parse,
    /// or one no CA of this identity signed.
    pub fn with_crl_file(self, path: &Path) -> Result<Self> {
        let pem = read_file(path)?;
        self.with_crls_pem(&pem, &label_of(path))
    }

    /// [`with_crl_file`](Self::with_crl_file) on PEM text; errors name `label`.
    pub fn with_crls_pem(mut self, pem: &str, label: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadCrl {
            file: label.to_owned(),
            reason,
        };
        let crls = crls_from_pem(pem, label)?;
        // Signed by a CA of this identity's (a root, or an intermediate of its chain).
        let issuers: Vec<CertificateDer<'static>> = self
            .roots
            .iter()
            .chain(self.chain.get(1..).unwrap_or_default())
            .cloned()
            .collect();
        for crl in &crls {
            super::revocation::HeldList::check_alone(crl, &issuers).map_err(bad)?;
        }
        self.crls = crls;
        Ok(self)
    }
}

impl Identity {
    /// The cluster this node's certificate names (see [`CLUSTER_URI_PREFIX`]); `None` for a
    /// certificate without one, or one the checks of [`Identity::load`] would refuse.
    pub fn cluster(&self) -> Option<NodeName> {
        self.chain
            .first()
            .and_then(|leaf| cluster_of_der(leaf, "certificate").ok())
            .flatten()
    }

    /// A secret derived from the private key under `label` (SHA-256 of a domain tag, the
    /// label and the key's DER): the same for every process started with this key, and
    /// telling nothing about the key. The transport keys QUIC stateless resets with it, so a
    /// node restarted with its key can close the connections its earlier process left open.
    pub fn derived_secret(&self, label: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"quicswim derived secret v1\0");
        ctx.update(label.as_bytes());
        ctx.update(b"\0");
        ctx.update(self.key.secret_der());
        let mut out = [0; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// The cluster a certificate names in its `urn:quicswim:cluster:NAME` URI SAN, if any. More
/// than one such SAN, or a name that is not a DNS label, is an error.
pub fn cluster_of_der(der: &[u8], label: &str) -> Result<Option<NodeName>> {
    cluster_of(&parse(der, label)?, label)
}

/// [`cluster_of_der`] of a certificate already parsed.
pub(super) fn cluster_of(cert: &X509Certificate<'_>, label: &str) -> Result<Option<NodeName>> {
    let bad = |reason: String| Error::BadCluster {
        file: label.to_owned(),
        reason,
    };
    // Any `urn:quicswim:` URI is meant for us: one that is not exactly the cluster form is
    // refused, not read as "no cluster", so that a typo cannot put two clusters in none and
    // merge them.
    let ours: Vec<&str> = general_names(cert, label)?
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri)
                if uri
                    .as_bytes()
                    .get(..URN_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(URN_PREFIX.as_bytes())) =>
            {
                Some(*uri)
            }
            _ => None,
        })
        .collect();
    let mut clusters = Vec::new();
    for uri in ours {
        match uri.strip_prefix(CLUSTER_URI_PREFIX) {
            Some(name) => clusters.push(name),
            None => {
                return Err(bad(format!(
                    "URI SAN {uri:?} is not of the form {CLUSTER_URI_PREFIX}NAME"
                )))
            }
        }
    }
    match clusters.as_slice() {
        [] => Ok(None),
        [one] => NodeName::new(one)
            .map(Some)
            .map_err(|e| bad(format!("{one:?} is not a cluster name: {e}"))),
        several => Err(bad(format!(
            "several clusters named: {}",
            several.join(", ")
        ))),
    }
}

/// The subject alternative names of `cert` (none without the extension).
fn general_names<'a>(
    cert: &'a X509Certificate<'_>,
    label: &str,
) -> Result<Vec<&'a GeneralName<'a>>> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::BadCertificate {
            file: label.to_owned(),
            reason: format!("subject alternative name: {e}"),
        })?;
    Ok(san
        .map(|ext| ext.value.general_names.iter().collect())
        .unwrap_or_default())
}

/// How a cluster is named in messages: its name, or "no cluster".
pub fn cluster_label(cluster: Option<&NodeName>) -> String {
    match cluster {
        Some(c) => format!("cluster {c}"),
        None => "no cluster".to_owned(),
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            name: self.name.clone(),
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            crls: self.crls.clone(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The node name of a peer: the single-label DNS SAN of the end-entity certificate (the first
/// of `certs`), as the transport reads it from `quinn::Connection::peer_identity`.
pub fn peer_name(certs: &[CertificateDer<'_>]) -> Result<NodeName> {
    let leaf = certs.first().ok_or(Error::NoPeerCertificate)?;
    node_name(leaf, PEER_LABEL)
}

/// `bytes` in lowercase hex, as serials are shown (`quicswim members`, `certs revoke`).
pub(super) fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// When the certificate `der` stops being valid, if it parses.
pub fn not_after_of(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// PEM text with the label errors use for it.
struct Pem<'a> {
    text: &'a str,
    label: String,
}

impl<'a> Pem<'a> {
    fn new(text: &'a str, label: String) -> Self {
        Pem { text, label }
    }

    /// Every `CERTIFICATE` block, in order; at least one.
    fn certs(&self) -> Result<Vec<CertificateDer<'static>>> {
        let mut reader = BufReader::new(self.text.as_bytes());
        let certs = rustls_pemfile::certs(&mut reader)
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| Error::Pem {
                file: self.label.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(Error::NoCertificate {
                file: self.label.clone(),
            });
        }
        Ok(certs)
    }

    /// The first private key block (PKCS#8, SEC1 or PKCS#1).
    fn private_key(&self) -> Result<PrivateKeyDer<'static>> {
        let mut reader = BufReader::new(self.text.as_bytes());
        rustls_pemfile::private_key(&mut reader)
            .map_err(|e| Error::Pem {
                file: self.label.clone(),
                reason: e.to_string(),
            })?
            .ok_or_else(|| Error::NoPrivateKey {
                file: self.label.clone(),
            })
    }
}

pub(super) fn label_of(path: &Path) -> String {
    path.display().to_string()
}

/// Reads a whole PEM file, telling a missing file apart from other failures.
pub(super) fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            Error::Missing {
                path: path.to_owned(),
            }
        } else {
            Error::Read {
                path: path.to_owned(),
                source,
            }
        }
    })
}

pub(super) fn parse<'a>(der: &'a [u8], label: &str) -> Result<X509Certificate<'a>> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| Error::BadCertificate {
            file: label.to_owned(),
            reason: e.to_string(),
        })
}

/// The one DNS SAN of `der` that is a DNS label, as a node name. SANs with dots (FQDNs) are
/// not identities and are skipped; a single-label SAN that breaks the node-name rules is an
/// error rather than skipped, so a near-miss such as `Alice` is reported, not ignored.
pub(super) fn node_name(der: &[u8], label: &str) -> Result<NodeName> {
    node_name_of(&parse(der, label)?, label)
}

/// [`node_name`] of a certificate already parsed.
pub(super) fn node_name_of(cert: &X509Certificate<'_>, label: &str) -> Result<NodeName> {
    let dns: Vec<&str> = general_names(cert, label)?
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(*d),
            _ => None,
        })
        .collect();
    let labels: Vec<&str> = dns.iter().copied().filter(|d| !d.contains('.')).collect();
    let chosen = match (labels.as_slice(), dns.first()) {
        ([one], _) => *one,
        ([], None) => {
            return Err(Error::NoDnsSan {
                file: label.to_owned(),
            })
        }
        // Only FQDNs: report the first, NodeName::new says why it is not a label.
        ([], Some(first)) => first,
        (several, _) => {
            return Err(Error::SeveralNames {
                file: label.to_owned(),
                names: several.join(", "),
            })
        }
    };
    NodeName::new(chosen).map_err(|source| Error::BadNodeName {
        file: label.to_owned(),
        san: chosen.to_owned(),
        source,
    })
}

fn check_is_ca(der: &[u8], label: &str) -> Result<()> {
    if parse(der, label)?.is_ca() {
        Ok(())
    } else {
        Err(Error::NotCa {
            file: label.to_owned(),
        })
    }
}

/// Refuses a certificate outside its validity period at `now`.
pub(super) fn check_validity(der: &[u8], label: &str, now: SystemTime) -> Result<()> {
    let cert = parse(der, label)?;
    let now_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    let validity = cert.validity();
    if now_secs > validity.not_after.timestamp() {
        return Err(Error::Expired {
            file: label.to_owned(),
            not_after: validity.not_after.to_string(),
        });
    }
    if now_secs < validity.not_before.timestamp() {
        return Err(Error::NotYetValid {
            file: label.to_owned(),
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// A node certificate is both a TLS server and a TLS client, so it needs both usages.
fn check_usages(der: &[u8], label: &str) -> Result<()> {
    let cert = parse(der, label)?;
    let eku = cert
        .extended_key_usage()
        .map_err(|e| Error::BadCertificate {
            file: label.to_owned(),
            reason: format!("extended key usage: {e}"),
        })?;
    let (server, client) = match eku {
        Some(ext) => (
            ext.value.server_auth || ext.value.any,
            ext.value.client_auth || ext.value.any,
        ),
        None => (false, false),
    };
    if !server {
        return Err(Error::MissingUsage {
            file: label.to_owned(),
            usage: "serverAuth",
        });
    }
    if !client {
        return Err(Error::MissingUsage {
            file: label.to_owned(),
            usage: "clientAuth",
        });
    }
    Ok(())
}

fn check_key_matches(
    leaf: &CertificateDer<'_>,
    key: &PrivateKeyDer<'static>,
    key_label: &str,
    cert_label: &str,
) -> Result<()> {
    let provider = crypto_provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| Error::BadKey {
            file: key_label.to_owned(),
            reason: e.to_string(),
        })?;
    let parsed = ParsedCertificate::try_from(leaf).map_err(|e| Error::BadCertificate {
        file: cert_label.to_owned(),
        reason: e.to_string(),
    })?;
    // ring's keys all report their SPKI; a provider that does not is given the benefit of the
    // doubt, and the handshake will fail instead.
    match signing.public_key() {
        Some(spki) if spki != parsed.subject_public_key_info() => Err(Error::KeyMismatch {
            key_file: key_label.to_owned(),
            cert_file: cert_label.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn check_chain(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    cert_label: &str,
    ca_label: &str,
) -> Result<()> {
    let untrusted = |reason: String| Error::Untrusted {
        cert_file: cert_label.to_owned(),
        ca_file: ca_label.to_owned(),
        reason,
    };
    let store = super::config::root_store(roots, ca_label)?;
    let parsed = ParsedCertificate::try_from(leaf).map_err(|e| untrusted(e.to_string()))?;
    let provider = crypto_provider();
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &store,
        intermediates,
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| untrusted(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;
    use crate::tls::CertAuthority;

    use crate::test_name as name;

    #[test]
    fn issued_cert_loads_with_its_name() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let issued = ca.issue(&name("alice"), &[ip], 30).unwrap();
        let id = Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
        assert_eq!(id.name.as_str(), "alice");
        assert_eq!(id.chain.len(), 1);
        assert_eq!(peer_name(&id.chain).unwrap(), name("alice"));
    }

    #[test]
    fn load_from_files_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::init_ca_dir(dir.path()).unwrap();
        let node = crate::tls::issue_to_dir(dir.path(), &name("bob"), &[], 10).unwrap();
        let id = Identity::load(&ca.cert, &node.cert, &node.key).unwrap();
        assert_eq!(id.name, name("bob"));

        let missing = dir.path().join("nobody.pem");
        let err = Identity::load(&ca.cert, &missing, &node.key).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        assert!(err.to_string().contains("nobody.pem"), "{err}");

        // A key file given where the certificate belongs.
        let err = Identity::load(&ca.cert, &node.key, &node.key).unwrap_err();
        assert!(matches!(err, Error::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("bob-key.pem"), "{err}");

        // A certificate file given where the key belongs.
        let err = Identity::load(&ca.cert, &node.cert, &node.cert).unwrap_err();
        assert!(matches!(err, Error::NoPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("bob.pem"), "{err}");

        // The node certificate given as the CA.
        let err = Identity::load(&node.cert, &node.cert, &node.key).unwrap_err();
        assert!(matches!(err, Error::NotCa { .. }), "{err}");
    }

    #[test]
    fn key_of_another_node_is_refused() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let a = ca.issue(&name("alice"), &[], 30).unwrap();
        let b = ca.issue(&name("bob"), &[], 30).unwrap();
        let err = Identity::from_pem(ca.cert_pem(), &a.cert_pem, &b.key_pem).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn cert_from_another_ca_is_untrusted() {
        let ca = CertAuthority::generate("ours").unwrap();
        let other = CertAuthority::generate("theirs").unwrap();
        let foreign = other.issue(&name("mallory"), &[], 30).unwrap();
        let err =
            Identity::from_pem(ca.cert_pem(), &foreign.cert_pem, &foreign.key_pem).unwrap_err();
        assert!(matches!(err, Error::Untrusted { .. }), "{err}");
    }

    #[test]
    fn expired_cert_is_refused() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let old = ca
            .issue_valid_between(&name("old"), &[], now - 10 * day, now - day)
            .unwrap();
        let err = Identity::from_pem(ca.cert_pem(), &old.cert_pem, &old.key_pem).unwrap_err();
        assert!(matches!(err, Error::Expired { .. }), "{err}");
        assert!(err.to_string().contains("certificate (in memory)"), "{err}");
    }

    fn cert_with_sans(ca: &CertAuthority, sans: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        ca.sign_params(params, &key).unwrap().pem()
    }

    #[test]
    fn node_name_rules_for_dns_sans() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let der = |pem: &str| {
            rustls_pemfile::certs(&mut pem.as_bytes())
                .next()
                .unwrap()
                .unwrap()
        };

        let fqdn_and_label = der(&cert_with_sans(&ca, &["carol.example.com", "carol"]));
        assert_eq!(peer_name(&[fqdn_and_label]).unwrap(), name("carol"));

        let only_ip = der(&cert_with_sans(&ca, &["127.0.0.1"]));
        let err = peer_name(&[only_ip]).unwrap_err();
        assert!(matches!(err, Error::NoDnsSan { .. }), "{err}");
        assert!(err.to_string().starts_with("peer certificate"), "{err}");

        let upper = der(&cert_with_sans(&ca, &["Carol"]));
        let err = peer_name(&[upper]).unwrap_err();
        assert!(matches!(err, Error::BadNodeName { .. }), "{err}");

        let fqdn_only = der(&cert_with_sans(&ca, &["carol.example.com"]));
        let err = peer_name(&[fqdn_only]).unwrap_err();
        assert!(matches!(err, Error::BadNodeName { .. }), "{err}");

        let two = der(&cert_with_sans(&ca, &["carol", "dave"]));
        let err = peer_name(&[two]).unwrap_err();
        assert!(matches!(err, Error::SeveralNames { .. }), "{err}");

        assert!(matches!(peer_name(&[]), Err(Error::NoPeerCertificate)));
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff]);
        assert!(matches!(
            peer_name(&[garbage]),
            Err(Error::BadCertificate { .. })
        ));
    }
}
