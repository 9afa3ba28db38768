//! rustls client and server configurations for a node, and the verifiers behind them.
//!
//! ```text
//!   dialling a member by name      server name = NodeName   cert must chain AND name it
//!   dialling a seed by address     server name = seed.invalid  cert must chain and name
//!                                                              some node (learned after)
//!   accepting                      client cert REQUIRED, must chain and name some node
//! ```
//!
//! `seed.invalid` has a dot, so it is never a node name, and `.invalid` is reserved (RFC 2606),
//! so it never names a real host either. Both ways the peer's certificate must also name this
//! node's cluster (`urn:quicswim:cluster:NAME`), or none when this node's names none; a
//! refusal names both clusters.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use super::identity::{cluster_label, cluster_of_der, node_name};
use super::{Error, Identity, Result};
use crate::protocol::NodeName;

/// ALPN protocol id both sides offer; a peer speaking anything else fails the handshake.
pub const ALPN: &[u8] = b"quicswim/1";

/// Server name a dialler passes when it knows only the peer's address (a seed). It can never be
/// a node name, and the verifier then accepts any certificate that chains to the CA, is valid
/// and names a node; the transport learns the name from that certificate.
pub const SEED_SERVER_NAME: &str = "seed.invalid";

/// The one crypto provider every rustls builder in quicswim is given: ring.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server side of a node: TLS 1.3 only, ALPN [`ALPN`], and a client certificate required that
/// chains to `identity.roots`, is valid and names a node.
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig> {
    let config_err = config_error(identity);
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config_err(e.to_string()))?
        .with_client_cert_verifier(client_verifier(identity)?)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| config_err(e.to_string()))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: a resumed session skips the certificate checks, so a peer whose
    // certificate expired or was revoked since could come back in on an old ticket.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Client side of a node: TLS 1.3 only, ALPN [`ALPN`], `identity` as client certificate, and
/// the server certificate verified against `identity.roots` — named when the server name is a
/// node name, any node when it is [`SEED_SERVER_NAME`].
pub fn client_config(identity: &Identity) -> Result<rustls::ClientConfig> {
    let config_err = config_error(identity);
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier(identity)?)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| config_err(e.to_string()))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // Every handshake checks the server's certificate anew (see `server_config`).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// How a server checks its clients' certificates for `identity`: WebPKI against its roots
/// and revocation lists (the end entity only; a status no list gives counts as not revoked,
/// for a CA that publishes none), then the node-name and cluster rules.
fn client_verifier(identity: &Identity) -> Result<Arc<NodeClientVerifier>> {
    let roots = Arc::new(root_store(&identity.roots, "ca roots")?);
    let webpki = WebPkiClientVerifier::builder_with_provider(roots, crypto_provider())
        .with_crls(identity.crls.iter().cloned())
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| config_error(identity)(format!("client verifier: {e}")))?;
    Ok(Arc::new(NodeClientVerifier {
        webpki,
        cluster: own_cluster(identity)?,
    }))
}

/// How a client checks its servers' certificates for `identity`: as
/// [`client_verifier`] does, plus the seed rule.
fn server_verifier(identity: &Identity) -> Result<Arc<NodeServerVerifier>> {
    let roots = Arc::new(root_store(&identity.roots, "ca roots")?);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, crypto_provider())
        .with_crls(identity.crls.iter().cloned())
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| config_error(identity)(format!("server verifier: {e}")))?;
    Ok(Arc::new(NodeServerVerifier {
        webpki,
        cluster: own_cluster(identity)?,
    }))
}

/// The cluster `identity`'s certificate names; a malformed cluster SAN is an error (an
/// identity assembled in memory skips the checks of [`Identity::load`]).
fn own_cluster(identity: &Identity) -> Result<Option<NodeName>> {
    let leaf = identity.chain.first().ok_or_else(|| Error::NoCertificate {
        file: format!("certificate of {}", identity.name),
    })?;
    cluster_of_der(leaf, &format!("certificate of {}", identity.name))
}

fn config_error(identity: &Identity) -> impl Fn(String) -> Error + '_ {
    move |reason| Error::Config {
        name: identity.name.to_string(),
        reason,
    }
}

pub(super) fn root_store(roots: &[CertificateDer<'static>], label: &str) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(|e| Error::BadCertificate {
            file: label.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The certificate names no node (or several): refused with a `bad_certificate` alert, which
/// the transport reports as `bad_name`.
fn not_a_node() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
}

/// A peer's certificate is for another cluster than this node's (or names none where this
/// node's does, or the other way round).
#[derive(thiserror::Error)]
#[error("{label} is for {theirs}, and this node is in {ours}")]
pub(super) struct OtherCluster {
    pub(super) label: &'static str,
    pub(super) theirs: String,
    pub(super) ours: String,
}

/// rustls shows a certificate error's cause with `Debug`: the sentence, so that the log line
/// an operator reads names both clusters plainly.
impl std::fmt::Debug for OtherCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Refuses `end_entity` unless it names the cluster `ours` (see [`super::CLUSTER_URI_PREFIX`]).
fn check_cluster(
    end_entity: &CertificateDer<'_>,
    ours: Option<&NodeName>,
    label: &'static str,
) -> Result<(), rustls::Error> {
    let theirs = cluster_of_der(end_entity, label).map_err(|_| not_a_node())?;
    if theirs.as_ref() == ours {
        return Ok(());
    }
    Err(rustls::Error::InvalidCertificate(CertificateError::Other(
        rustls::OtherError(Arc::new(OtherCluster {
            label,
            theirs: cluster_label(theirs.as_ref()),
            ours: cluster_label(ours),
        })),
    )))
}

/// The handshake signature methods of a verifier with a `webpki` field: both verifiers add
/// rules about certificates only, so signatures are WebPKI's to check.
macro_rules! webpki_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.webpki.supported_verify_schemes()
        }
    };
}

/// WebPKI server verification, plus the seed rule and the node-name rule.
#[derive(Debug)]
struct NodeServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// This node's cluster: a server in another is refused.
    cluster: Option<NodeName>,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let is_seed =
            matches!(server_name, ServerName::DnsName(d) if d.as_ref() == SEED_SERVER_NAME);
        if is_seed {
            // No name to match yet: checked as a dial of the node it names (chain, validity,
            // serverAuth usage, revocation).
            let name = node_name(end_entity, "server certificate").map_err(|_| not_a_node())?;
            let named = ServerName::try_from(name.as_str()).map_err(|_| not_a_node())?;
            self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                &named,
                ocsp_response,
                now,
            )?;
        } else {
            self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )?;
            // WebPKI accepts any matching SAN, case-insensitively; a node is named by exactly
            // one label, byte for byte.
            let name = node_name(end_entity, "server certificate").map_err(|_| not_a_node())?;
            let named =
                matches!(server_name, ServerName::DnsName(d) if d.as_ref() == name.as_str());
            if !named {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext {
                        expected: server_name.to_owned(),
                        presented: vec![name.to_string()],
                    },
                ));
            }
        }
        check_cluster(end_entity, self.cluster.as_ref(), "server certificate")?;
        Ok(ServerCertVerified::assertion())
    }

    webpki_signature_checks!();
}

/// WebPKI client verification (mandatory), plus the node-name rule.
#[derive(Debug)]
struct NodeClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    /// This node's cluster: a client in another is refused.
    cluster: Option<NodeName>,
}

impl ClientCertVerifier for NodeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        node_name(end_entity, "client certificate").map_err(|_| not_a_node())?;
        check_cluster(end_entity, self.cluster.as_ref(), "client certificate")?;
        Ok(ClientCertVerified::assertion())
    }

    webpki_signature_checks!();
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::protocol::NodeName;
    use crate::tls::CertAuthority;

    use crate::test_name as name;

    fn verifier(id: &Identity) -> Arc<NodeServerVerifier> {
        server_verifier(id).unwrap()
    }

    fn verify(v: &NodeServerVerifier, cert: &Identity, server_name: &str) -> Result<(), String> {
        let server_name = ServerName::try_from(server_name.to_owned()).unwrap();
        v.verify_server_cert(&cert.chain[0], &[], &server_name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn named_dial_requires_that_name() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let alice = ca.identity(&name("alice"), &[], 1).unwrap();
        let bob = ca.identity(&name("bob"), &[], 1).unwrap();
        let v = verifier(&alice);
        assert_eq!(verify(&v, &bob, "bob"), Ok(()));
        let err = verify(&v, &bob, "carol").unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
    }

    #[test]
    fn seed_dial_accepts_any_node_of_the_ca() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let alice = ca.identity(&name("alice"), &[], 1).unwrap();
        let bob = ca.identity(&name("bob"), &[], 1).unwrap();
        let v = verifier(&alice);
        assert_eq!(verify(&v, &bob, SEED_SERVER_NAME), Ok(()));
        assert!(NodeName::new(SEED_SERVER_NAME).is_err());
    }

    #[test]
    fn nodes_of_another_cluster_under_the_same_ca_are_refused_both_ways() {
        let ca = CertAuthority::generate("one ca").unwrap();
        let in_cluster = |cluster: Option<&str>, who: &str| {
            let ca = CertAuthority::from_pem(ca.cert_pem(), &ca.key_pem())
                .unwrap()
                .with_cluster(cluster.map(name));
            ca.identity(&name(who), &[], 1).unwrap()
        };
        let blue_a = in_cluster(Some("blue"), "alice");
        let blue_b = in_cluster(Some("blue"), "bob");
        let green_c = in_cluster(Some("green"), "carol");
        let loose_d = in_cluster(None, "dave");
        assert_eq!(blue_a.cluster(), Some(name("blue")));
        assert_eq!(loose_d.cluster(), None);
        // As the dialler: a server of another cluster, or of none, is refused by name.
        let v = verifier(&blue_a);
        assert_eq!(verify(&v, &blue_b, "bob"), Ok(()));
        for server_name in ["carol", SEED_SERVER_NAME] {
            let err = verify(&v, &green_c, server_name).unwrap_err();
            assert!(
                err.contains("is for cluster green, and this node is in cluster blue"),
                "{err}"
            );
        }
        let err = verify(&v, &loose_d, "dave").unwrap_err();
        assert!(err.contains("is for no cluster"), "{err}");
        // As the server: the client's certificate is held to the same rule.
        let client_verifier = |id: &Identity| NodeClientVerifier {
            webpki: WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(&id.roots, "test").unwrap()),
                crypto_provider(),
            )
            .build()
            .unwrap(),
            cluster: id.cluster(),
        };
        let check = |v: &NodeClientVerifier, client: &Identity| {
            v.verify_client_cert(&client.chain[0], &[], UnixTime::now())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(check(&client_verifier(&blue_a), &blue_b), Ok(()));
        let err = check(&client_verifier(&green_c), &blue_b).unwrap_err();
        assert!(
            err.contains("is for cluster blue, and this node is in cluster green"),
            "{err}"
        );
        assert!(check(&client_verifier(&loose_d), &green_c).is_err());
    }

    #[test]
    fn chain_verification_refuses_another_ca() {
        let ca = CertAuthority::generate("ours").unwrap();
        let other = CertAuthority::generate("theirs").unwrap();
        let alice = ca.identity(&name("alice"), &[], 1).unwrap();
        let mallory = other.identity(&name("mallory"), &[], 1).unwrap();
        let v = verifier(&alice);
        for server_name in ["mallory", SEED_SERVER_NAME] {
            let err = verify(&v, &mallory, server_name).unwrap_err();
            assert!(err.contains("UnknownIssuer"), "{server_name}: {err}");
        }
    }

    #[test]
    fn expired_cert_is_refused_by_both_rules() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let alice = ca.identity(&name("alice"), &[], 1).unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let old = ca
            .issue_valid_between(&name("old"), &[], now - 3 * day, now - day)
            .unwrap();
        let old = Identity {
            name: name("old"),
            roots: alice.roots.clone(),
            chain: rustls_pemfile::certs(&mut old.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap(),
            key: rustls_pemfile::private_key(&mut old.key_pem.as_bytes())
                .unwrap()
                .unwrap(),
            crls: Vec::new(),
        };
        let v = verifier(&alice);
        for server_name in ["old", SEED_SERVER_NAME] {
            let err = verify(&v, &old, server_name).unwrap_err();
            assert!(err.contains("expired"), "{server_name}: {err}");
        }
    }

    #[test]
    fn client_verifier_requires_a_cert_of_the_ca() {
        let ca = CertAuthority::generate("ours").unwrap();
        let other = CertAuthority::generate("theirs").unwrap();
        let alice = ca.identity(&name("alice"), &[], 1).unwrap();
        let bob = ca.identity(&name("bob"), &[], 1).unwrap();
        let mallory = other.identity(&name("mallory"), &[], 1).unwrap();
        let roots = Arc::new(root_store(&alice.roots, "test").unwrap());
        let webpki = WebPkiClientVerifier::builder_with_provider(roots, crypto_provider())
            .build()
            .unwrap();
        let v = NodeClientVerifier {
            webpki,
            cluster: None,
        };
        assert!(v.client_auth_mandatory());
        assert!(v
            .verify_client_cert(&bob.chain[0], &[], UnixTime::now())
            .is_ok());
        assert!(v
            .verify_client_cert(&mallory.chain[0], &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn configs_offer_the_alpn() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let alice = ca.identity(&name("alice"), &[], 1).unwrap();
        assert_eq!(server_config(&alice).unwrap().alpn_protocols, [ALPN]);
        assert_eq!(client_config(&alice).unwrap().alpn_protocols, [ALPN]);
    }

    #[test]
    fn certificates_a_revocation_list_names_are_refused_both_ways() {
        let ca = CertAuthority::generate("test ca").unwrap();
        let bob = ca.identity(&name("bob"), &[], 1).unwrap();
        let carol = ca.identity(&name("carol"), &[], 1).unwrap();
        let bob_serial = crate::tls::CertKeyring::new(&bob)
            .unwrap()
            .certificate_info(&name("bob"))
            .unwrap()
            .serial;
        let crl = ca.revocation_list(&[&bob_serial], 7).unwrap();
        let alice = ca
            .identity(&name("alice"), &[], 1)
            .unwrap()
            .with_crls_pem(&crl, "test crl")
            .unwrap();
        let now = UnixTime::now();
        let clients = client_verifier(&alice).unwrap();
        let revoked = |e: &rustls::Error| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::Revoked)
            )
        };
        let err = clients
            .verify_client_cert(&bob.chain[0], &[], now)
            .unwrap_err();
        assert!(revoked(&err), "{err}");
        assert!(clients
            .verify_client_cert(&carol.chain[0], &[], now)
            .is_ok());
        let servers = server_verifier(&alice).unwrap();
        for server_name in ["bob", SEED_SERVER_NAME] {
            let server_name = ServerName::try_from(server_name).unwrap();
            let err = servers
                .verify_server_cert(&bob.chain[0], &[], &server_name, &[], now)
                .unwrap_err();
            assert!(revoked(&err), "{err}");
        }
        let seed = ServerName::try_from(SEED_SERVER_NAME).unwrap();
        assert!(servers
            .verify_server_cert(&carol.chain[0], &[], &seed, &[], now)
            .is_ok());
        // Without the list, bob is a member like any other.
        let plain = ca.identity(&name("alice"), &[], 1).unwrap();
        assert!(client_verifier(&plain)
            .unwrap()
            .verify_client_cert(&bob.chain[0], &[], now)
            .is_ok());
    }
}
