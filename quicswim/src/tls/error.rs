//! Errors of the tls layer.
//!
//! `file` fields hold a path, or a label such as `peer certificate` or `certificate (in memory)`
//! when the PEM did not come from a file. No variant leaves anything half-written unless its doc
//! says so.

use std::io;
use std::path::PathBuf;

use crate::protocol::InvalidName;

/// Why a CA, a certificate, a key or a TLS configuration could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file that must exist does not. Nothing was changed.
    #[error("{}: file not found", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file exists but could not be read. Nothing was changed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A file or directory could not be written. Files written before this one in the same call
    /// are left in place; the call names them in its own output only on success.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// `init_ca_dir` found an existing CA file and refused to overwrite it. Nothing was changed.
    #[error("{} already exists; refusing to overwrite an existing CA", path.display())]
    CaExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The node name would overwrite the CA's own files. Nothing was changed.
    #[error("node name {name:?} is reserved: its files would overwrite the CA in {}", dir.display())]
    ReservedName {
        /// The refused name.
        name: String,
        /// The CA directory.
        dir: PathBuf,
    },
    /// The PEM text could not be parsed.
    #[error("{file}: malformed PEM: {reason}")]
    Pem {
        /// File or label.
        file: String,
        /// What the parser said.
        reason: String,
    },
    /// The PEM text holds no `CERTIFICATE` block.
    #[error("{file}: no PEM certificate found")]
    NoCertificate {
        /// File or label.
        file: String,
    },
    /// The PEM text holds no private key block.
    #[error("{file}: no PEM private key found (expected PKCS#8, SEC1 or PKCS#1)")]
    NoPrivateKey {
        /// File or label.
        file: String,
    },
    /// The private key parsed as PEM but cannot be used for signing.
    #[error("{file}: unusable private key: {reason}")]
    BadKey {
        /// File or label.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key cannot sign records (RSA, an ECDSA curve other than P-256 and P-384): every
    /// record a member states about itself is signed with its certificate key.
    #[error("{file}: {reason}")]
    UnsupportedKey {
        /// The key's file or label.
        file: String,
        /// Which key it is and what to use instead.
        reason: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("{key_file}: private key does not match the certificate in {cert_file}")]
    KeyMismatch {
        /// The key's file or label.
        key_file: String,
        /// The certificate's file or label.
        cert_file: String,
    },
    /// The certificate's DER does not parse.
    #[error("{file}: certificate does not parse: {reason}")]
    BadCertificate {
        /// File or label.
        file: String,
        /// What the parser said.
        reason: String,
    },
    /// The certificate has no DNS subject alternative name, so it names no node.
    #[error("{file}: certificate has no DNS subject alternative name (it must be the node name)")]
    NoDnsSan {
        /// File or label.
        file: String,
    },
    /// The certificate's cluster URI SAN (`urn:quicswim:cluster:NAME`) is malformed, or there
    /// are several.
    #[error("{file}: cluster: {reason}")]
    BadCluster {
        /// File or label.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate's DNS SAN is not a valid node name.
    #[error("{file}: DNS SAN {san:?} is not a valid node name: {source}")]
    BadNodeName {
        /// File or label.
        file: String,
        /// The offending SAN.
        san: String,
        /// Why it is not a node name.
        source: InvalidName,
    },
    /// The certificate carries more than one single-label DNS SAN, so it would name several
    /// nodes.
    #[error(
        "{file}: certificate names several nodes ({names}); a node certificate carries exactly \
         one DNS SAN without dots"
    )]
    SeveralNames {
        /// File or label.
        file: String,
        /// The candidate names, comma separated.
        names: String,
    },
    /// The certificate's validity period has ended.
    #[error("{file}: certificate expired at {not_after}")]
    Expired {
        /// File or label.
        file: String,
        /// End of validity, as written in the certificate.
        not_after: String,
    },
    /// The certificate's validity period has not begun.
    #[error("{file}: certificate is not valid before {not_before}")]
    NotYetValid {
        /// File or label.
        file: String,
        /// Start of validity, as written in the certificate.
        not_before: String,
    },
    /// The certificate lacks an extended key usage every node certificate needs.
    #[error("{file}: certificate lacks the {usage} extended key usage")]
    MissingUsage {
        /// File or label.
        file: String,
        /// `serverAuth` or `clientAuth`.
        usage: &'static str,
    },
    /// The certificate does not chain to the CA it was loaded with.
    #[error("{cert_file}: certificate does not chain to the CA in {ca_file}: {reason}")]
    Untrusted {
        /// The certificate's file or label.
        cert_file: String,
        /// The CA's file or label.
        ca_file: String,
        /// What the verifier said.
        reason: String,
    },
    /// The CA certificate is not marked as a CA (basic constraints `CA:TRUE`).
    #[error("{file}: not a CA certificate (basic constraints CA:TRUE missing)")]
    NotCa {
        /// File or label.
        file: String,
    },
    /// A validity in days outside `1..=36500` was asked for. Nothing was changed.
    #[error("validity of {days} days is out of range (1..=36500)")]
    InvalidDays {
        /// The refused value.
        days: u32,
    },
    /// rcgen could not build or sign a certificate.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated, e.g. `certificate for alice`.
        what: String,
        /// What rcgen said.
        source: rcgen::Error,
    },
    /// A peer completed a handshake without presenting any certificate.
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    /// A certificate revocation list file holds no CRL, or one that does not parse.
    #[error("{file}: certificate revocation list: {reason}")]
    BadCrl {
        /// File or label.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A new identity handed to a running node is not for it: its certificate names another
    /// node, or another cluster. The identity in use is kept.
    #[error("{file}: {reason}")]
    NotThisNode {
        /// The new certificate's file or label.
        file: String,
        /// Whom it names instead.
        reason: String,
    },
    /// A rustls configuration could not be built from the identity.
    #[error("cannot build tls configuration for {name}: {reason}")]
    Config {
        /// The identity's node name.
        name: String,
        /// What rustls said.
        reason: String,
    },
}
