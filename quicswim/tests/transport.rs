//! Real QUIC + mTLS transports on 127.0.0.1, port 0. Every wait is for a condition under a
//! deadline; nothing sleeps to let things settle.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use quicswim::protocol::NodeName;
use quicswim::tls::{self, CertAuthority, Identity, Refusal};
use quicswim::transport::{
    Error, Incoming, Peer, Transport, TransportConfig, TransportStats, DEFAULT_MAX_DATAGRAM_SIZE,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Longest any single condition may take.
const DEADLINE: Duration = Duration::from_secs(10);

use quicswim_testkit::name;

fn local_config() -> TransportConfig {
    TransportConfig {
        bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ..TransportConfig::default()
    }
}

/// What a node's owner saw, without the reply handles.
#[derive(Debug, Clone)]
enum Seen {
    Datagram { from: NodeName, bytes: Bytes },
    Request { from: NodeName, bytes: Vec<u8> },
    Up(NodeName),
    Down(NodeName),
    Refused(String),
}

impl Seen {
    fn is_from(&self, who: &str) -> bool {
        match self {
            Seen::Datagram { from, .. } | Seen::Request { from, .. } => from.as_str() == who,
            Seen::Up(n) | Seen::Down(n) => n.as_str() == who,
            Seen::Refused(_) => false,
        }
    }
}

/// A transport with an owner task that answers requests: `size:N` gets N bytes back, `hold`
/// is answered only on [`Node::release`], anything else gets `re:` + the request.
struct Node {
    transport: Transport,
    seen: mpsc::UnboundedReceiver<Seen>,
    log: Vec<Seen>,
    /// Replies to `hold` requests, sent when the test calls [`Node::release`].
    held: Arc<std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<Vec<u8>>>>>,
}

impl Node {
    async fn start(ca: &CertAuthority, node: &str) -> Node {
        let identity = ca.identity(&name(node), &[], 1).unwrap();
        Node::start_with(identity, local_config()).await
    }

    async fn start_with(identity: Identity, config: TransportConfig) -> Node {
        // RUST_LOG=quicswim=debug shows the transport's logs for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (transport, mut incoming) = Transport::bind(config, &identity).await.unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held_by_owner = held.clone();
        tokio::spawn(async move {
            while let Some(event) = incoming.recv().await {
                let seen = match event {
                    Incoming::Datagram { from, bytes, .. } => Seen::Datagram { from, bytes },
                    Incoming::Request {
                        from, bytes, reply, ..
                    } => {
                        let answer = match std::str::from_utf8(&bytes)
                            .ok()
                            .and_then(|s| s.strip_prefix("size:"))
                            .and_then(|n| n.parse::<usize>().ok())
                        {
                            Some(n) => vec![7u8; n],
                            None => [b"re:".as_slice(), &bytes].concat(),
                        };
                        if bytes == b"hold" {
                            held_by_owner.lock().unwrap().push(reply);
                        } else {
                            let _ = reply.send(answer);
                        }
                        Seen::Request { from, bytes }
                    }
                    Incoming::PeerUp { name, .. } => Seen::Up(name),
                    Incoming::PeerDown { name, .. } => Seen::Down(name),
                    Incoming::Refused { reason, .. } => Seen::Refused(reason),
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        Node {
            transport,
            seen,
            log: Vec::new(),
            held,
        }
    }

    /// Answers every held request with `released`.
    fn release(&self) {
        for reply in self.held.lock().unwrap().drain(..) {
            let _ = reply.send(b"released".to_vec());
        }
    }

    /// Sends `bytes` as a request to `to` and waits for the answer, under the deadline.
    async fn ask(&self, what: &str, to: Peer, bytes: &[u8]) -> Result<(NodeName, Vec<u8>), Error> {
        within(what, self.transport.request(to, bytes.to_vec())).await
    }

    /// Waits for the PeerUp of `who`.
    async fn wait_up(&mut self, who: &str) {
        let what = format!("{who} up");
        self.wait_for(&what, |s| matches!(s, Seen::Up(n) if n.as_str() == who))
            .await;
    }

    /// Waits for the PeerDown of `who`.
    async fn wait_down(&mut self, who: &str) {
        let what = format!("{who} down");
        self.wait_for(&what, |s| matches!(s, Seen::Down(n) if n.as_str() == who))
            .await;
    }

    /// Waits until this node reports refusing a peer for `class`.
    async fn wait_refused(&mut self, class: Refusal) {
        let what = format!("{} refusal", class.as_str());
        self.wait_for(
            &what,
            |s| matches!(s, Seen::Refused(r) if r.starts_with(class.as_str())),
        )
        .await;
    }

    fn addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    fn as_peer(&self) -> Peer {
        Peer::named(self.transport.local_name().clone(), self.addr())
    }

    /// Returns the first event, seen before or arriving within the deadline, that matches
    /// `pred`; everything seen is kept in the log.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        if let Some(event) = self.log.iter().find(|s| pred(s)) {
            return event.clone();
        }
        let found = timeout(DEADLINE, async {
            loop {
                let event = self.seen.recv().await.expect("owner task ended");
                self.log.push(event.clone());
                if pred(&event) {
                    return event;
                }
            }
        })
        .await;
        match found {
            Ok(event) => event,
            Err(_) => panic!(
                "{}: no {what} within {DEADLINE:?}; saw {:?}",
                self.transport.local_name(),
                self.log
            ),
        }
    }

    /// Everything seen so far, including what is queued now.
    fn drain(&mut self) -> &[Seen] {
        while let Ok(event) = self.seen.try_recv() {
            self.log.push(event);
        }
        &self.log
    }

    async fn wait_stats(&self, what: &str, pred: impl Fn(&TransportStats) -> bool) {
        let t = &self.transport;
        wait_until(what, || pred(&t.stats())).await;
    }
}

/// Polls `cond` until it holds; panics after [`DEADLINE`].
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let polled = timeout(DEADLINE, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        polled.is_ok(),
        "condition not met within {DEADLINE:?}: {what}"
    );
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {DEADLINE:?}"))
}

/// Fails unless `err` is a refusal of class `class`.
#[track_caller]
fn assert_refused(err: &Error, class: Refusal) {
    assert!(
        matches!(err, Error::Refused { reason, .. } if *reason == class),
        "{err}"
    );
}

#[tokio::test]
async fn datagrams_and_requests_carry_certificate_names() {
    let ca = CertAuthority::generate("test").unwrap();
    let mut alice = Node::start(&ca, "alice").await;
    let mut bob = Node::start(&ca, "bob").await;
    assert_eq!(
        alice.transport.max_datagram_size(),
        DEFAULT_MAX_DATAGRAM_SIZE
    );

    let (responder, reply) = alice.ask("request", bob.as_peer(), b"hi").await.unwrap();
    assert_eq!(responder, name("bob"));
    assert_eq!(reply, b"re:hi");
    bob.wait_for("request from alice", |s| {
        matches!(s, Seen::Request { from, bytes } if from.as_str() == "alice" && bytes == b"hi")
    })
    .await;
    alice.wait_up("bob").await;
    bob.wait_up("alice").await;

    alice
        .transport
        .send_datagram(bob.as_peer(), Bytes::from_static(b"ping"));
    bob.wait_for("datagram from alice", |s| {
        matches!(s, Seen::Datagram { from, bytes } if from.as_str() == "alice" && bytes == "ping")
    })
    .await;

    // The reverse direction rides the same connection: bob never dials.
    bob.transport
        .send_datagram(alice.as_peer(), Bytes::from_static(b"ack"));
    alice
        .wait_for("datagram from bob", |s| {
            matches!(s, Seen::Datagram { from, bytes } if from.as_str() == "bob" && bytes == "ack")
        })
        .await;
    let (_, reply) = bob
        .ask("reverse request", alice.as_peer(), b"yo")
        .await
        .unwrap();
    assert_eq!(reply, b"re:yo");

    let a = alice.transport.stats();
    let b = bob.transport.stats();
    assert_eq!((a.dials, b.dials), (1, 0));
    assert_eq!((a.connections_pooled, b.connections_pooled), (1, 1));
    assert_eq!((a.datagrams_out, b.datagrams_in), (1, 1));
    assert_eq!((a.requests_out, a.requests_in), (1, 1));
    assert_eq!(a.refused.total() + b.refused.total(), 0);
    // QUIC's own counts: the handshake (certificates both ways) and every header, tag and
    // acknowledgement on top of the payload.
    assert!(a.wire.bytes_out > a.bytes_out + 1000, "{a:?}");
    assert!(
        a.wire.datagrams_out > a.datagrams_out + a.requests_out,
        "{a:?}"
    );
    assert!(b.wire.bytes_in > 0 && b.wire.datagrams_in > 0, "{b:?}");
    assert!(alice.transport.max_datagram_size() >= DEFAULT_MAX_DATAGRAM_SIZE);
    let peers = alice.transport.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].name, name("bob"));
    assert_eq!(peers[0].addr, bob.addr());
    assert!(peers[0].dialed_locally);

    alice.transport.close().await;
    bob.wait_down("alice").await;
    let err = alice
        .transport
        .request(bob.as_peer(), b"late".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
}

#[tokio::test]
async fn ed25519_and_p256_nodes_talk_both_ways() {
    // `quicswim certs` issues Ed25519 node keys; certificates with ECDSA P-256 keys (earlier
    // versions, other CAs) must keep working beside them, in both handshake roles.
    let ca = CertAuthority::generate("test").unwrap();
    let p256 = ca
        .issue_with_key(&name("bob"), &[], 1, tls::NodeKeyType::P256)
        .unwrap();
    let bob_id = Identity::from_pem(ca.cert_pem(), &p256.cert_pem, &p256.key_pem).unwrap();
    assert_eq!(
        tls::CertKeyring::new(&bob_id).unwrap().algorithm(),
        tls::KeyAlgorithm::EcdsaP256
    );
    let alice_id = ca.identity(&name("alice"), &[], 1).unwrap();
    assert_eq!(
        tls::CertKeyring::new(&alice_id).unwrap().algorithm(),
        tls::KeyAlgorithm::Ed25519
    );
    let mut alice = Node::start_with(alice_id, local_config()).await;
    let mut bob = Node::start_with(bob_id, local_config()).await;
    let carol_id = ca.identity(&name("carol"), &[], 1).unwrap();
    let mut carol = Node::start_with(carol_id, local_config()).await;

    // Ed25519 client, P-256 server; then P-256 client, Ed25519 server; then Ed25519 both.
    let (responder, reply) = alice
        .ask("alice to bob", bob.as_peer(), b"a")
        .await
        .unwrap();
    assert_eq!((responder, reply), (name("bob"), b"re:a".to_vec()));
    let (responder, _) = bob
        .ask("bob to carol", carol.as_peer(), b"b")
        .await
        .unwrap();
    assert_eq!(responder, name("carol"));
    let (responder, _) = carol
        .ask("carol to alice", alice.as_peer(), b"c")
        .await
        .unwrap();
    assert_eq!(responder, name("alice"));
    alice.wait_up("bob").await;
    bob.wait_up("carol").await;
    carol.wait_up("alice").await;
    for node in [&alice, &bob, &carol] {
        assert_eq!(node.transport.stats().refused.total(), 0);
    }
}

#[tokio::test]
async fn seed_dialled_by_address_is_learned_by_name() {
    let ca = CertAuthority::generate("test").unwrap();
    let mut alice = Node::start(&ca, "alice").await;
    let bob = Node::start(&ca, "bob").await;

    let (responder, _) = alice
        .ask("seed request", Peer::seed(bob.addr()), b"join")
        .await
        .unwrap();
    assert_eq!(responder, name("bob"));
    alice.wait_up("bob").await;

    // Known by name now: the pooled connection is reused, by name and by address.
    alice
        .ask("named request", bob.as_peer(), b"x")
        .await
        .unwrap();
    alice
        .ask("seed again", Peer::seed(bob.addr()), b"y")
        .await
        .unwrap();
    assert_eq!(alice.transport.stats().dials, 1);
    assert_eq!(alice.transport.peers()[0].name, name("bob"));
}

#[tokio::test]
async fn dialling_itself_is_an_error_not_a_peer() {
    let ca = CertAuthority::generate("test").unwrap();
    let alice = Node::start(&ca, "alice").await;
    let err = alice
        .ask("self dial", Peer::seed(alice.addr()), b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SelfDial { .. }), "{err}");
    assert!(alice.transport.peers().is_empty());
}

#[tokio::test]
async fn cert_from_another_ca_is_never_admitted() {
    let ca = CertAuthority::generate("cluster").unwrap();
    let rogue_ca = CertAuthority::generate("rogue").unwrap();
    let mut alice = Node::start(&ca, "alice").await;
    let bob = Node::start(&ca, "bob").await;

    // Mallory trusts the cluster CA, so her TLS 1.3 connect() completes; only alice's check
    // of mallory's client certificate stands in the way.
    let issued = rogue_ca.issue(&name("mallory"), &[], 1).unwrap();
    let foreign =
        Identity::from_pem(rogue_ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
    let trusting = Identity {
        roots: vec![ca.cert_der().clone()],
        ..foreign.clone()
    };
    let mut mallory = Node::start_with(trusting, local_config()).await;
    mallory
        .transport
        .send_datagram(alice.as_peer(), Bytes::from_static(b"evil"));
    let err = mallory
        .ask("mallory request", alice.as_peer(), b"evil")
        .await
        .unwrap_err();
    assert_refused(&err, Refusal::UnknownCa);
    alice.wait_refused(Refusal::UnknownCa).await;

    // A node of the other cluster altogether: refused on both sides.
    let mut outsider = Node::start_with(foreign, local_config()).await;
    let err = outsider
        .ask("outsider request", Peer::seed(alice.addr()), b"x")
        .await
        .unwrap_err();
    assert_refused(&err, Refusal::UnknownCa);

    // Traffic from a legitimate peer still flows, and nothing from mallory came before it.
    bob.transport
        .send_datagram(alice.as_peer(), Bytes::from_static(b"ok"));
    alice
        .wait_for("datagram from bob", |s| {
            s.is_from("bob") && matches!(s, Seen::Datagram { .. })
        })
        .await;
    let log = alice.drain();
    assert!(!log.iter().any(|s| s.is_from("mallory")), "{log:?}");
    assert!(mallory.drain().iter().all(|s| !matches!(s, Seen::Up(_))));
    assert!(outsider.drain().iter().all(|s| !matches!(s, Seen::Up(_))));
    assert_eq!(mallory.transport.stats().connections_pooled, 0);
    assert!(alice.transport.stats().refused.unknown_ca >= 2);
    assert_eq!(alice.transport.peers().len(), 1);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let ca = CertAuthority::generate("test").unwrap();
    let mut alice = Node::start(&ca, "alice").await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let mut crypto = rustls::ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![tls::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(crypto)).unwrap();
    let endpoint = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let connecting = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            alice.addr(),
            "alice",
        )
        .unwrap();

    // The client may believe it connected; nothing it sends gets an answer.
    let outcome = within("raw client", async {
        let conn = connecting.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(b"\0\0\0\x05hello").await?;
        send.finish()?;
        recv.read_to_end(1024).await?;
        Ok::<(), anyhow::Error>(())
    })
    .await;
    assert!(
        outcome.is_err(),
        "a client without a certificate got a reply"
    );
    alice.wait_refused(Refusal::NoClientCert).await;
    assert!(alice
        .drain()
        .iter()
        .all(|s| !matches!(s, Seen::Up(_) | Seen::Request { .. })));
    assert_eq!(alice.transport.stats().refused.no_client_cert, 1);
    assert!(alice.transport.peers().is_empty());
}

#[tokio::test]
async fn dialling_with_the_wrong_expected_name_is_refused() {
    let ca = CertAuthority::generate("test").unwrap();
    let mut alice = Node::start(&ca, "alice").await;
    let mut bob = Node::start(&ca, "bob").await;

    let carol_at_bobs_address = Peer::named(name("carol"), bob.addr());
    let err = alice
        .ask("misnamed request", carol_at_bobs_address.clone(), b"x")
        .await
        .unwrap_err();
    assert_refused(&err, Refusal::BadName);
    assert!(err.to_string().contains("carol"), "{err}");
    alice.wait_refused(Refusal::BadName).await;
    bob.wait_refused(Refusal::BadName).await;
    alice
        .transport
        .send_datagram(carol_at_bobs_address, Bytes::from_static(b"x"));
    alice
        .wait_stats("datagram dropped after refusal", |s| {
            s.datagrams_dropped == 1
        })
        .await;
    assert!(alice.drain().iter().all(|s| !matches!(s, Seen::Up(_))));
    assert!(bob
        .drain()
        .iter()
        .all(|s| !matches!(s, Seen::Up(_) | Seen::Datagram { .. })));
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let ca = CertAuthority::generate("test").unwrap();
    let mut alice = Node::start(&ca, "alice").await;
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let identity = identity_between(&ca, "old", now - 3 * day, now - day);
    let stale = Node::start_with(identity, local_config()).await;
    let err = stale
        .ask("expired request", alice.as_peer(), b"x")
        .await
        .unwrap_err();
    assert_refused(&err, Refusal::Expired);
    alice.wait_refused(Refusal::Expired).await;
}

/// An identity for `who` valid between the two times; assembled by hand, since
/// `Identity::from_pem` refuses one outside its validity.
fn identity_between(
    ca: &CertAuthority,
    who: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Identity {
    let issued = ca
        .issue_valid_between(&name(who), &[], not_before, not_after)
        .unwrap();
    Identity {
        name: name(who),
        roots: vec![ca.cert_der().clone()],
        chain: rustls_pemfile::certs(&mut issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap(),
        key: rustls_pemfile::private_key(&mut issued.key_pem.as_bytes())
            .unwrap()
            .unwrap(),
        crls: Vec::new(),
    }
}

#[tokio::test]
async fn a_peer_that_refused_is_dialled_again_only_after_a_growing_wait() {
    let ca = CertAuthority::generate("test").unwrap();
    let mut alice = Node::start(&ca, "alice").await;
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let stale = Node::start_with(
        identity_between(&ca, "old", now - 3 * day, now - day),
        local_config(),
    )
    .await;
    // Alice has something for the expired node every 20 ms for 4.5 s (bounded in count
    // and time), as gossip would.
    let started = tokio::time::Instant::now();
    for _ in 0..225 {
        alice
            .transport
            .send_datagram(stale.as_peer(), Bytes::from_static(b"gossip"));
        tokio::time::sleep(Duration::from_millis(20)).await; // the load's pace
    }
    let elapsed = started.elapsed();
    alice.wait_refused(Refusal::Expired).await;
    let stats = alice.transport.stats();
    // Dialled at once, then after 0.75-1.25 s, then 1.5-2.5 s after that, then 3-5 s
    // after: at most three dials in 4.5 s (a wait that did not grow would allow five), not
    // one per datagram.
    assert!(
        (2..=3).contains(&stats.dials),
        "{} dials in {elapsed:?}",
        stats.dials
    );
    assert!(stats.dials_paced >= 200, "{stats:?}");
    assert!(stats.refused.expired >= 1, "{stats:?}");
    // A request meanwhile fails at once, saying why.
    let err = alice
        .ask("paced request", stale.as_peer(), b"x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Paced { .. } | Error::Refused { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_closes_when_the_peers_certificate_expires() {
    let ca = CertAuthority::generate("test").unwrap();
    // Swept every 2 s; idle only after 8 s, so the expiry (in 3 s) closes it first.
    let config = TransportConfig {
        idle_timeout: Duration::from_secs(8),
        keep_alive: Some(Duration::from_secs(1)),
        ..local_config()
    };
    let alice =
        Node::start_with(ca.identity(&name("alice"), &[], 1).unwrap(), config.clone()).await;
    let now = SystemTime::now();
    let brief = Node::start_with(
        identity_between(
            &ca,
            "brief",
            now - Duration::from_secs(3_600),
            now + Duration::from_secs(3),
        ),
        config,
    )
    .await;
    let (from, reply) = alice
        .ask("request while valid", brief.as_peer(), b"hi")
        .await
        .unwrap();
    assert_eq!((from.as_str(), reply.as_slice()), ("brief", &b"re:hi"[..]));
    alice
        .wait_stats("the expired peer's connection closed", |s| {
            s.expired_closed == 1 && s.connections_pooled == 0
        })
        .await;
    // And it is not dialled anew: the handshake is refused, then paced.
    let err = alice
        .ask("request after expiry", brief.as_peer(), b"x")
        .await
        .unwrap_err();
    assert_refused(&err, Refusal::Expired);
    let err = alice
        .ask("request right after", brief.as_peer(), b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Paced { .. }), "{err}");
}

#[tokio::test]
async fn dial_race_leaves_one_connection_dialled_by_the_smaller_name() {
    let ca = CertAuthority::generate("test").unwrap();
    let mut alice = Node::start(&ca, "alice").await;
    let mut bob = Node::start(&ca, "bob").await;

    // Both dial at once: each send starts a dial task immediately.
    alice
        .transport
        .send_datagram(bob.as_peer(), Bytes::from_static(b"from alice"));
    bob.transport
        .send_datagram(alice.as_peer(), Bytes::from_static(b"from bob"));
    let (a, b) = within("crossed requests", async {
        tokio::join!(
            alice.transport.request(bob.as_peer(), b"a".to_vec()),
            bob.transport.request(alice.as_peer(), b"b".to_vec()),
        )
    })
    .await;
    assert_eq!(a.unwrap().1, b"re:a");
    assert_eq!(b.unwrap().1, b"re:b");
    bob.wait_for("alice's datagram", |s| matches!(s, Seen::Datagram { .. }))
        .await;
    alice
        .wait_for("bob's datagram", |s| matches!(s, Seen::Datagram { .. }))
        .await;

    for node in [&alice, &bob] {
        node.wait_stats("one connection left", |s| {
            s.connections_open == 1 && s.connections_pooled == 1
        })
        .await;
    }
    let at_alice = alice.transport.peers();
    let at_bob = bob.transport.peers();
    assert!(at_alice[0].dialed_locally, "alice < bob, alice's dial wins");
    assert!(
        !at_bob[0].dialed_locally,
        "bob keeps the connection alice dialled"
    );
    let closed =
        alice.transport.stats().duplicates_closed + bob.transport.stats().duplicates_closed;
    assert!(closed >= 1, "both dials completed, so one was a duplicate");

    // One PeerUp each, no PeerDown: the duplicate went quietly.
    let ups = |log: &[Seen]| log.iter().filter(|s| matches!(s, Seen::Up(_))).count();
    let downs = |log: &[Seen]| log.iter().filter(|s| matches!(s, Seen::Down(_))).count();
    assert_eq!((ups(alice.drain()), downs(alice.drain())), (1, 0));
    assert_eq!((ups(bob.drain()), downs(bob.drain())), (1, 0));

    // And the survivor carries traffic both ways.
    bob.ask("after race", alice.as_peer(), b"c").await.unwrap();
}

#[tokio::test]
async fn oversized_frames_and_datagrams_are_refused() {
    let ca = CertAuthority::generate("test").unwrap();
    let small = TransportConfig {
        frame_len_max: 1024,
        ..local_config()
    };
    let alice = Node::start(&ca, "alice").await;
    let bob_id = ca.identity(&name("bob"), &[], 1).unwrap();
    let mut bob = Node::start_with(bob_id, small.clone()).await;
    let carol_id = ca.identity(&name("carol"), &[], 1).unwrap();
    let carol = Node::start_with(carol_id, small).await;

    // Over bob's limit: bob refuses on reading the length, before allocating.
    let err = alice
        .ask("big request", bob.as_peer(), &[1u8; 4096])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FrameRefused { .. }), "{err}");
    bob.wait_stats("bob refused a frame", |s| s.frames_too_large == 1)
        .await;

    // Over carol's own limit: refused before anything is sent.
    let err = carol
        .ask("big local request", alice.as_peer(), &[1u8; 2048])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::FrameTooLarge {
                len: 2048,
                max: 1024,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(carol.transport.stats().dials, 0);

    // A reply over the requester's limit: carol refuses alice's reply on reading its length.
    let err = carol
        .ask("big reply", alice.as_peer(), b"size:5000")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::FrameTooLarge {
                len: 5000,
                max: 1024,
                ..
            }
        ),
        "{err}"
    );

    // A reply over the responder's own limit is not sent either.
    let err = alice
        .ask("reply over bob's limit", bob.as_peer(), b"size:3000")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FrameRefused { .. }), "{err}");
    bob.wait_stats("bob refused its own reply", |s| s.frames_too_large == 2)
        .await;

    // Requests within the limits still work on the same connections.
    let (_, reply) = alice
        .ask("small request", bob.as_peer(), b"size:1000")
        .await
        .unwrap();
    assert_eq!(reply.len(), 1000);
    assert!(bob
        .drain()
        .iter()
        .all(|s| !matches!(s, Seen::Request { bytes, .. } if bytes.len() > 1024)));

    // Datagrams over the connection's limit are counted, never sent.
    let max = alice.transport.max_datagram_size();
    alice
        .transport
        .send_datagram(bob.as_peer(), Bytes::from(vec![0u8; max + 1]));
    alice
        .wait_stats("datagram refused", |s| s.datagrams_too_large == 1)
        .await;
    alice
        .transport
        .send_datagram(bob.as_peer(), Bytes::from(vec![0u8; max]));
    bob.wait_for(
        "max-size datagram",
        |s| matches!(s, Seen::Datagram { bytes, .. } if bytes.len() == max),
    )
    .await;
    assert_eq!(bob.transport.stats().datagrams_in, 1);
}

#[tokio::test]
async fn pool_cap_evicts_the_least_recently_used() {
    let ca = CertAuthority::generate("test").unwrap();
    let alice_id = ca.identity(&name("alice"), &[], 1).unwrap();
    let capped = TransportConfig {
        max_connections: 1,
        // Handshakes accepted at once fit in the connection budget (a config rule).
        handshakes_in_max: 1,
        retry_above: 1,
        ..local_config()
    };
    let mut alice = Node::start_with(alice_id, capped).await;
    let bob = Node::start(&ca, "bob").await;
    let carol = Node::start(&ca, "carol").await;

    alice.ask("to bob", bob.as_peer(), b"1").await.unwrap();
    alice.ask("to carol", carol.as_peer(), b"2").await.unwrap();
    alice.wait_down("bob").await;
    let peers = alice.transport.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].name, name("carol"));
    assert_eq!(alice.transport.stats().evictions, 1);
    alice
        .wait_stats("evicted connection closed", |s| s.connections_open == 1)
        .await;
}

#[tokio::test]
async fn unused_connection_closes_after_idle_timeout() {
    let ca = CertAuthority::generate("test").unwrap();
    let quick = TransportConfig {
        idle_timeout: Duration::from_secs(1),
        ..local_config()
    };
    let alice_id = ca.identity(&name("alice"), &[], 1).unwrap();
    let mut alice = Node::start_with(alice_id, quick.clone()).await;
    let bob_id = ca.identity(&name("bob"), &[], 1).unwrap();
    let mut bob = Node::start_with(bob_id, quick).await;

    alice.ask("request", bob.as_peer(), b"x").await.unwrap();
    // QUIC's own idle timeout is an hour without keep-alives; the pool's sweep closes it
    // for lack of use.
    alice.wait_down("bob").await;
    bob.wait_down("alice").await;
    for node in [&alice, &bob] {
        node.wait_stats("connection closed", |s| s.connections_open == 0)
            .await;
    }
    // What QUIC counted on the closed connection stays counted.
    let closed = alice.transport.stats().wire;
    assert!(
        closed.bytes_out > 1000 && closed.datagrams_in > 0,
        "{closed:?}"
    );
    // The next send simply dials again.
    alice
        .ask("request again", bob.as_peer(), b"y")
        .await
        .unwrap();
    let stats = alice.transport.stats();
    assert_eq!(stats.dials, 2);
    assert!(stats.wire.bytes_out > closed.bytes_out, "{stats:?}");
}

/// A node that crashes (no CONNECTION_CLOSE sent) and is started again with the same key on
/// the same address answers its peers' next packet on an old connection with a stateless
/// reset they accept, so the dead connection closes at once instead of after QUIC's idle
/// timeout (an hour without keep-alives) and the next request dials the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_restarted_with_its_key_resets_the_connections_its_crash_left() {
    let ca = CertAuthority::generate("test").unwrap();
    let mut alice = Node::start(&ca, "alice").await;
    let bob_id = ca.identity(&name("bob"), &[], 1).unwrap();

    // bob runs on a runtime of its own, which the test drops without letting anything run:
    // its connections vanish without a word, as a killed process's do.
    let crashable = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let first_id = bob_id.clone();
    let bob = crashable
        .spawn(async move { Node::start_with(first_id, local_config()).await })
        .await
        .unwrap();
    let bob_addr = bob.addr();
    alice
        .ask("request to the first bob", bob.as_peer(), b"x")
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || crashable.shutdown_timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    drop(bob);

    let restarted = TransportConfig {
        bind: bob_addr,
        ..local_config()
    };
    let bob = Node::start_with(bob_id, restarted).await;
    assert_eq!(alice.transport.stats().connections_pooled, 1);
    // The datagram goes out on the dead connection; the reset closes it.
    alice
        .transport
        .send_datagram(bob.as_peer(), Bytes::from_static(b"lost"));
    alice.wait_down("bob").await;
    let (from, reply) = alice
        .ask("request to the restarted bob", bob.as_peer(), b"y")
        .await
        .unwrap();
    assert_eq!((from.as_str(), reply.as_slice()), ("bob", &b"re:y"[..]));
    assert_eq!(alice.transport.stats().dials, 2);
}

#[tokio::test]
async fn connection_kept_unused_outlives_the_idle_timeout() {
    let ca = CertAuthority::generate("test").unwrap();
    let quick = TransportConfig {
        idle_timeout: Duration::from_secs(1),
        ..local_config()
    };
    let start = |who: &str| {
        let identity = ca.identity(&name(who), &[], 1).unwrap();
        Node::start_with(identity, quick.clone())
    };
    // alice and bob keep unused connections for a minute; carol and dave do not.
    let alice = start("alice").await;
    let mut bob = start("bob").await;
    let mut carol = start("carol").await;
    let dave = start("dave").await;
    for node in [&alice, &bob] {
        node.transport.keep_unused_for(Duration::from_secs(60));
    }
    alice
        .ask("alice to bob", bob.as_peer(), b"x")
        .await
        .unwrap();
    carol
        .ask("carol to dave", dave.as_peer(), b"x")
        .await
        .unwrap();
    bob.wait_up("alice").await;

    // By the time the sweep has closed carol's unused connection, it has run over alice's
    // and bob's too, and left it; QUIC, without keep-alives, does not time it out either.
    carol.wait_down("dave").await;
    for node in [&alice, &bob] {
        let stats = node.transport.stats();
        assert_eq!(
            (stats.idle_closed, stats.connections_open),
            (0, 1),
            "{stats:?}"
        );
    }
    alice.ask("again", bob.as_peer(), b"y").await.unwrap();
    assert_eq!(alice.transport.stats().dials, 1, "no new handshake");
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_endpoint() {
    let ca = CertAuthority::generate("test").unwrap();
    let alice = Node::start(&ca, "alice").await;
    let mut bob = Node::start(&ca, "bob").await;
    alice.ask("request", bob.as_peer(), b"x").await.unwrap();
    let clone = alice.transport.clone();
    drop(alice);
    // A clone keeps it open ...
    within(
        "request via clone",
        clone.request(bob.as_peer(), b"y".to_vec()),
    )
    .await
    .unwrap();
    drop(clone);
    // ... and the last drop closes it.
    bob.wait_down("alice").await;
}

#[tokio::test]
async fn send_datagram_from_a_plain_thread_is_delivered() {
    let ca = CertAuthority::generate("test").unwrap();
    let alice = Node::start(&ca, "alice").await;
    let mut bob = Node::start(&ca, "bob").await;
    let transport = alice.transport.clone();
    let to = bob.as_peer();
    std::thread::spawn(move || transport.send_datagram(to, Bytes::from_static(b"thread")))
        .join()
        .expect("send_datagram outside the runtime must not panic");
    bob.wait_for(
        "datagram",
        |s| matches!(s, Seen::Datagram { bytes, .. } if bytes == "thread"),
    )
    .await;
}

#[tokio::test]
async fn request_refused_by_a_closing_connection_is_retried_on_a_new_one() {
    let ca = CertAuthority::generate("test").unwrap();
    let alice = Node::start(&ca, "alice").await;
    let bob_id = ca.identity(&name("bob"), &[], 1).unwrap();
    let capped = TransportConfig {
        max_connections: 1,
        // Handshakes accepted at once fit in the connection budget (a config rule).
        handshakes_in_max: 1,
        retry_above: 1,
        ..local_config()
    };
    let mut bob = Node::start_with(bob_id, capped).await;
    let carol = Node::start(&ca, "carol").await;

    // A request bob holds keeps alice's connection busy ...
    let held = {
        let transport = alice.transport.clone();
        let to = bob.as_peer();
        tokio::spawn(async move { transport.request(to, b"hold".to_vec()).await })
    };
    bob.wait_for(
        "held request",
        |s| matches!(s, Seen::Request { bytes, .. } if bytes == b"hold"),
    )
    .await;
    // ... so when carol's connection evicts it, bob only marks it closing and refuses new
    // streams on it, while alice still believes it open.
    carol
        .ask("carol to bob", bob.as_peer(), b"2")
        .await
        .unwrap();
    assert_eq!(bob.transport.stats().evictions, 1);
    let (responder, reply) = alice
        .ask("alice to bob again", bob.as_peer(), b"3")
        .await
        .unwrap();
    assert_eq!(
        (responder.as_str(), reply.as_slice()),
        ("bob", b"re:3".as_slice())
    );
    let stats = alice.transport.stats();
    assert_eq!((stats.requests_retried, stats.dials), (1, 2));
    // The held request completes on the old connection before bob closes it.
    bob.release();
    let (_, reply) = within("held reply", held).await.unwrap().unwrap();
    assert_eq!(reply, b"released");
    assert_eq!(alice.transport.stats().requests_failed, 0);
    bob.wait_stats("evicted connection closed once quiet", |s| {
        s.connections_open == 1
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_share_one_connection() {
    let ca = CertAuthority::generate("test").unwrap();
    let alice = Node::start(&ca, "alice").await;
    let bob = Node::start(&ca, "bob").await;
    let requests = (0..300).map(|i| {
        let transport = alice.transport.clone();
        let to = bob.as_peer();
        async move { transport.request(to, format!("{i}").into_bytes()).await }
    });
    let replies = within("300 requests", futures_join_all(requests)).await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap().1, format!("re:{i}").into_bytes());
    }
    let stats = alice.transport.stats();
    assert_eq!(
        (stats.dials, stats.requests_out, stats.requests_failed),
        (1, 300, 0)
    );
}

/// Runs futures concurrently and returns their outputs in order (no `futures` dependency).
async fn futures_join_all<F: Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("request task panicked"));
    }
    outputs
}
