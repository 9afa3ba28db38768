//! Mutual TLS 1.3 for quicswim: the cluster CA, node identities and the rustls configurations
//! the transport hands to quinn.
//!
//! ```text
//!   ca.pem + ca-key.pem --issue--> NAME/NAME.pem (DNS SAN = NAME, serverAuth + clientAuth)
//!                                  NAME/NAME-key.pem, NAME/ca.pem (no CA key beside them)
//!
//!   Identity { name, roots, chain, key } --> server_config()  client cert REQUIRED, CA-verified
//!                                        --> client_config()  server cert CA-verified; named
//!                                                             when the peer's name is known
//! ```
//!
//! A node's name is the one DNS SAN of its certificate that is a DNS label. Certificates may
//! carry further DNS SANs with dots (FQDNs) and IP SANs; those are ignored for identity. Every
//! rustls builder is given the ring provider explicitly, and only TLS 1.3 is offered.

mod ca;
mod config;
mod error;
mod file_mode;
mod identity;
mod keyring;
mod refusal;
mod revocation;

pub use ca::{
    init_ca_dir, init_ca_dir_in_cluster, init_ca_dir_with_key, issue_to_dir, issue_to_node_dir,
    issue_to_node_dir_in_cluster, revoked_serials, serial_of_cert_file, CaFiles, CertAuthority,
    IssuedCert, NodeFiles, NodeKeyType, CLUSTER_FILE,
};
pub use config::{client_config, crypto_provider, server_config, ALPN, SEED_SERVER_NAME};
pub use error::Error;
pub use file_mode::{readable_by_others, warn_if_readable_by_others};
pub use identity::{
    cluster_label, cluster_of_der, crls_from_pem, not_after_of, peer_name, Identity,
    CLUSTER_URI_PREFIX,
};
pub use keyring::{CertKeyring, CertificateInfo, KeyAlgorithm, Rotation, HELD_NAMES_MAX};
pub use refusal::Refusal;

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
