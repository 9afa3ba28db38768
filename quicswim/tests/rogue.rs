//! A real rogue member against a cluster of real nodes (QUIC + mTLS on 127.0.0.1): it holds a
//! valid cluster certificate ("rogue"), joins with its own signed claim, and then sends
//! whatever the test crafts, as datagrams and stream messages. One test per attack of issue
//! #14; each checks that the attack is refused and counted, and that the victim's state, its
//! own view and the other members' views are unchanged.
//!
//! "Nothing changed" is checked only after a legitimate marker sent after the attack on the
//! same connection has been answered (a Ping's Ack for datagrams; a request's reply for
//! streams), so the attack was processed before the check. Every wait has a deadline.

use quicswim_testkit as common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use quicswim::protocol::codec::{
    decode_datagram, decode_stream, encode_datagram, encode_stream, encode_update, Accusation,
    Claim, MemberUpdate, Message, SignedEvent, StreamMessage, Update,
};
use quicswim::protocol::kv::{proof, OwnerDelta};
use quicswim::protocol::swim::ForgedCounts;
use quicswim::protocol::{
    Certificate, Incarnation, Keyring, KvEntry, Member, NodeName, RevocationList, Signature, State,
    UserEvent, COUNTER_MAX,
};
use quicswim::tls::{CertAuthority, CertKeyring};
use quicswim::transport::{Incoming, Peer, Transport, TransportConfig};
use quicswim::Node;
use tokio::sync::Notify;

/// A signature of the right length that verifies for nobody.
fn garbage() -> Signature {
    Signature::new(vec![0x5a; 64])
}

/// A delta of `entries` in the victim's name as one batch: signed by the rogue's own key,
/// or, with `garbage`, with a signature that verifies for nobody.
fn forged_delta(
    rogue: &Rogue,
    reset: bool,
    gc_floor: u64,
    mut entries: Vec<KvEntry>,
    garbage_signature: bool,
) -> OwnerDelta {
    proof::seal(&rogue.keyring, &mut entries);
    let mut delta = OwnerDelta::new(reset, gc_floor, entries);
    if garbage_signature {
        for b in &mut delta.proof.batches {
            b.signature = garbage();
        }
    }
    delta
}

/// A member with a valid certificate whose messages the test writes.
struct Rogue {
    name: NodeName,
    transport: Transport,
    keyring: CertKeyring,
    cert: Vec<u8>,
    /// Sequence numbers of the Acks received.
    acks: Arc<(Mutex<HashSet<u64>>, Notify)>,
    /// (sender, seq) of every datagram Ping received, the rogue's own probes included.
    pings: Arc<Mutex<Vec<(NodeName, SocketAddr, u64)>>>,
    /// The member table the seed gave at the join: genuine signed claims of every member.
    table: Vec<MemberUpdate>,
    task: tokio::task::JoinHandle<()>,
}

impl Rogue {
    /// Binds, answers Pings (so the cluster keeps it Alive) and joins through `seed` with its
    /// own signed claim, as an honest member would.
    async fn join(ca: &CertAuthority, seed: SocketAddr) -> Rogue {
        let id = identity(ca, "rogue");
        let keyring = CertKeyring::new(&id).expect("keyring for the rogue");
        let (transport, mut inbox) = Transport::bind(TransportConfig::default(), &id)
            .await
            .expect("bind the rogue");
        let acks: Arc<(Mutex<HashSet<u64>>, Notify)> = Arc::default();
        let pings: Arc<Mutex<Vec<(NodeName, SocketAddr, u64)>>> = Arc::default();
        let me = name("rogue");
        let task = {
            let (transport, acks, pings, me) =
                (transport.clone(), acks.clone(), pings.clone(), me.clone());
            tokio::spawn(async move {
                while let Some(incoming) = inbox.recv().await {
                    match incoming {
                        Incoming::Datagram { from, addr, bytes } => {
                            let Ok(packet) = decode_datagram(&bytes) else {
                                continue;
                            };
                            match packet.message {
                                Message::Ping { seq, target, .. } => {
                                    pings.lock().unwrap().push((from.clone(), addr, seq));
                                    if target == me {
                                        let ack = encode_datagram(&Message::Ack { seq }, 0, &[]);
                                        transport.send_datagram(
                                            Peer::named(from, addr),
                                            Bytes::from(ack),
                                        );
                                    }
                                }
                                Message::Ack { seq } => {
                                    acks.0.lock().unwrap().insert(seq);
                                    acks.1.notify_waiters();
                                }
                                _ => {}
                            }
                        }
                        Incoming::Request { bytes, reply, .. } => {
                            // Answer stream probes; drop everything else (the requester gets
                            // an error, as from a member that is busy).
                            if let Ok(StreamMessage::Ping { seq, .. }) = decode_stream(&bytes) {
                                let _ = reply.send(encode_stream(&StreamMessage::Ack { seq }));
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        let mut rogue = Rogue {
            name: me.clone(),
            transport,
            keyring,
            cert: id.chain[0].as_ref().to_vec(),
            acks,
            pings,
            table: Vec::new(),
            task,
        };
        let own = rogue.own_update();
        let join = StreamMessage::PushPull {
            digest: Vec::new(),
            join: true,
            sender: me.clone(),
            members: vec![own],
            kv_digest: vec![],
            events: vec![],
            certificates: vec![Certificate {
                name: me,
                der: rogue.cert.clone(),
            }],
            revocation_ids: Vec::new(),
        };
        match rogue.request(seed, &join).await {
            StreamMessage::PushPullReply { members, .. } => rogue.table = members,
            other => panic!("the join was answered with {other:?}"),
        }
        rogue
    }

    /// The rogue's own claim, honestly signed.
    fn own_update(&self) -> MemberUpdate {
        let claim = Claim {
            name: self.name.clone(),
            addr: self.transport.local_addr(),
            incarnation: Incarnation(1),
            left: false,
            meta: vec![],
        };
        let signature = self.keyring.sign(&claim.signed_bytes());
        MemberUpdate {
            claim,
            signature,
            accusation: None,
        }
    }

    /// The genuine signed update the seed gave for `who`.
    fn genuine(&self, who: &str) -> MemberUpdate {
        self.table
            .iter()
            .find(|u| u.name().as_str() == who)
            .unwrap_or_else(|| panic!("{who} in the join table"))
            .clone()
    }

    /// One request and its decoded reply; panics if it is refused.
    async fn request(&self, to: SocketAddr, message: &StreamMessage) -> StreamMessage {
        let (_, reply) = self
            .transport
            .request(Peer::seed(to), encode_stream(message))
            .await
            .expect("the request is answered");
        decode_stream(&reply).expect("a well-formed reply")
    }

    fn datagram(&self, to: &Node, message: &Message, updates: &[Update]) {
        let mut bytes = Vec::new();
        for u in updates {
            bytes.extend_from_slice(&encode_update(u));
        }
        let datagram = encode_datagram(message, updates.len(), &bytes);
        self.transport.send_datagram(
            Peer::named(to.name().clone(), to.addr()),
            Bytes::from(datagram),
        );
    }

    /// Gossips `updates` to `to`, then waits until `to` has processed them: it answers a Ping
    /// sent after them on the same connection.
    async fn gossip_and_sync(&self, to: &Node, updates: &[Update]) {
        self.datagram(to, &Message::Gossip, updates);
        self.marker(to).await;
    }

    /// A legitimate Ping to `to`, resent until its Ack arrives (datagrams may be lost).
    async fn marker(&self, to: &Node) {
        let seq: u64 = rand::random::<u64>() >> 2;
        let ping = Message::Ping {
            seq,
            target: to.name().clone(),
            suspected: None,
        };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.acks.1.notified();
            if self.acks.0.lock().unwrap().contains(&seq) {
                return;
            }
            self.datagram(to, &ping, &[]);
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never acked the marker",
                to.name()
            );
            // Woken by any Ack; the timeout only bounds a resend after a lost datagram.
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    async fn close(self) {
        self.transport.close().await;
        self.task.abort();
    }
}

async fn forged(node: &Node) -> ForgedCounts {
    node.metrics().await.expect("node is running").core.forged
}

/// `node`'s forgery counts once `done` holds of them, under the deadline. A forgery of a
/// signer whose certificate the node holds is counted once it has asked the sender for that
/// certificate again (the signer may have rotated it) and the answer brought the same one,
/// or none came in time: after the marker, not before.
async fn forged_until(node: &Node, done: impl Fn(&ForgedCounts) -> bool) -> ForgedCounts {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let counts = forged(node).await;
        if done(&counts) {
            return counts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: forgeries not counted in time: {counts:?}",
            node.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval, not a settle wait
    }
}

/// Every node's view of the members other than the rogue: name, state, incarnation, address.
async fn views(nodes: &[&Node]) -> Vec<Vec<(String, State, u64, SocketAddr)>> {
    let mut out = Vec::new();
    for node in nodes {
        let mut members: Vec<Member> = node.members().await.expect("node is running");
        members.retain(|m| m.name.as_str() != "rogue");
        members.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(
            members
                .into_iter()
                .map(|m| (m.name.to_string(), m.state, m.incarnation.0, m.addr))
                .collect(),
        );
    }
    out
}

/// Three honest nodes and the rogue, all Alive everywhere.
async fn cluster_with_rogue(ca: &CertAuthority) -> (Vec<Node>, Rogue) {
    let nodes = start_alive_cluster(ca, 3).await;
    let rogue = Rogue::join(ca, nodes[0].addr()).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_all("the rogue alive everywhere", &refs, all_alive(4)).await;
    (nodes, rogue)
}

/// Asserts that every honest view (names, states, incarnations, addresses) is as `before`,
/// and that every honest member is Alive in it.
async fn assert_unchanged(nodes: &[Node], before: &[Vec<(String, State, u64, SocketAddr)>]) {
    let refs: Vec<&Node> = nodes.iter().collect();
    let after = views(&refs).await;
    assert_eq!(after, before, "views changed");
    for view in &after {
        assert!(
            view.iter().all(|(_, s, _, _)| *s == State::Alive),
            "{view:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_kv_entries_for_another_owner_are_refused_everywhere() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let victim = &nodes[1];
    victim.set("k", b"mine".to_vec()).await.unwrap();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_kv(&refs, victim.name(), "k", Some(b"mine")).await;
    let overwrite = KvEntry {
        owner: victim.name().clone(),
        key: "k".into(),
        version: 1_000,
        value: Some(b"forged".to_vec()),
        sealed: None,
    };
    let erase = KvEntry {
        key: "k".into(),
        version: 1_001,
        value: None,
        ..overwrite.clone()
    };
    // A new key in the victim's name.
    let fresh = KvEntry {
        key: "planted".into(),
        version: 2_000,
        value: Some(b"x".to_vec()),
        sealed: None,
        ..overwrite.clone()
    };
    for node in &nodes {
        let before = forged(node).await.kv;
        let push = StreamMessage::KvPush {
            members: Vec::new(),
            // Signed by the rogue's own key; with a garbage signature.
            deltas: vec![
                forged_delta(&rogue, false, 0, vec![overwrite.clone()], false),
                forged_delta(&rogue, false, 0, vec![erase.clone()], true),
                forged_delta(&rogue, false, 0, vec![fresh.clone()], true),
            ],
        };
        // The reply comes after the push was applied.
        let reply = rogue.request(node.addr(), &push).await;
        assert_eq!(reply, StreamMessage::KvPushAck);
        let after = forged_until(node, |c| c.kv > before).await.kv;
        assert!(
            after > before,
            "{}: forged kv not counted ({before} -> {after})",
            node.name()
        );
    }
    for node in &nodes {
        assert_eq!(
            node.get(victim.name(), "k").await.unwrap().as_deref(),
            Some(&b"mine"[..]),
            "{} holds a forged value",
            node.name()
        );
        assert_eq!(node.get(victim.name(), "planted").await.unwrap(), None);
    }
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_reset_with_the_highest_floor_erases_nothing() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let victim = &nodes[1];
    victim.set("k", b"mine".to_vec()).await.unwrap();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_kv(&refs, victim.name(), "k", Some(b"mine")).await;
    let entry = KvEntry {
        owner: victim.name().clone(),
        key: "other".into(),
        version: COUNTER_MAX,
        value: None,
        sealed: None,
    };
    for node in &nodes {
        let before = forged(node).await.kv;
        let push = StreamMessage::KvPush {
            members: Vec::new(),
            deltas: vec![forged_delta(
                &rogue,
                true,
                COUNTER_MAX,
                vec![entry.clone()],
                true,
            )],
        };
        assert_eq!(
            rogue.request(node.addr(), &push).await,
            StreamMessage::KvPushAck
        );
        forged_until(node, |c| c.kv > before).await;
    }
    for node in &nodes {
        assert_eq!(
            node.get(victim.name(), "k").await.unwrap().as_deref(),
            Some(&b"mine"[..]),
            "{} lost the victim's key to a forged reset",
            node.name()
        );
    }
    // The owner's next write still reaches everyone: nothing sits above it.
    victim.set("k", b"later".to_vec()).await.unwrap();
    wait_kv(&refs, victim.name(), "k", Some(b"later")).await;
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_at_counter_max_cannot_mask_the_owners_later_writes() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let victim = &nodes[1];
    victim.set("k", b"v1".to_vec()).await.unwrap();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_kv(&refs, victim.name(), "k", Some(b"v1")).await;
    let stuck = KvEntry {
        owner: victim.name().clone(),
        key: "k".into(),
        version: COUNTER_MAX,
        value: Some(b"stuck".to_vec()),
        sealed: None,
    };
    let push = StreamMessage::KvPush {
        members: Vec::new(),
        deltas: vec![forged_delta(&rogue, false, 0, vec![stuck], true)],
    };
    for node in [&nodes[0], &nodes[2]] {
        let before = forged(node).await.kv;
        assert_eq!(
            rogue.request(node.addr(), &push).await,
            StreamMessage::KvPushAck
        );
        forged_until(node, |c| c.kv > before).await;
    }
    // Sent to the owner itself: refused (a copy of its own key it never wrote).
    let victim_before = victim.metrics().await.unwrap().core;
    assert_eq!(
        rogue.request(victim.addr(), &push).await,
        StreamMessage::KvPushAck
    );
    let victim_after = victim.metrics().await.unwrap().core;
    assert!(
        victim_after.forged.kv > victim_before.forged.kv
            || victim_after.self_claims_refused > victim_before.self_claims_refused,
        "the owner neither counted a forgery nor refused the claim"
    );
    assert_eq!(
        victim.get(victim.name(), "k").await.unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    let version = victim.set("k", b"v2".to_vec()).await.unwrap();
    assert!(
        version < COUNTER_MAX / 2,
        "the owner's version jumped to {version}"
    );
    wait_kv(&refs, victim.name(), "k", Some(b"v2")).await;
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_leave_and_forged_dead_are_refused() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let before = views(&refs).await;
    let genuine = rogue.genuine("node-1");
    // Left: the victim's claim with `left` set, the signature left as it was (it covers
    // `left`), and one with a garbage signature at a higher incarnation.
    let mut left = genuine.clone();
    left.claim.left = true;
    let mut left_higher = left.clone();
    left_higher.claim.incarnation = Incarnation(genuine.claim.incarnation.0 + 1);
    left_higher.signature = garbage();
    // Dead: the genuine claim with an accusation from another member, not signed by it.
    let mut dead = genuine.clone();
    dead.accusation = Some(Accusation {
        dead: true,
        accuser: name("node-2"),
        signature: garbage(),
    });
    for node in &nodes {
        let counts = forged(node).await;
        let updates = [
            Update::Member(left.clone()),
            Update::Member(left_higher.clone()),
            Update::Member(dead.clone()),
        ];
        rogue.gossip_and_sync(node, &updates).await;
        let victim = node.name() == genuine.name();
        let after = forged_until(node, |c| {
            if victim {
                c.total() > counts.total()
            } else {
                c.claim >= counts.claim + 2 && c.accusation > counts.accusation
            }
        })
        .await;
        if !victim {
            assert!(
                after.claim >= counts.claim + 2,
                "{}: {after:?}",
                node.name()
            );
            assert!(
                after.accusation > counts.accusation,
                "{}: {after:?}",
                node.name()
            );
        } else {
            assert!(after.total() > counts.total(), "the victim counted nothing");
        }
    }
    // The same by stream, in a full-state exchange.
    let push_pull = StreamMessage::PushPull {
        digest: Vec::new(),
        join: false,
        sender: rogue.name.clone(),
        members: vec![rogue.own_update(), left, left_higher, dead],
        kv_digest: vec![],
        events: vec![],
        certificates: vec![],
        revocation_ids: Vec::new(),
    };
    let before_stream = forged(&nodes[0]).await.total();
    rogue.request(nodes[0].addr(), &push_pull).await;
    assert!(
        forged_until(&nodes[0], |c| c.total() > before_stream)
            .await
            .total()
            > before_stream
    );
    assert_unchanged(&nodes, &before).await;
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_suspecting_a_huge_incarnation_is_refused() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let before = views(&refs).await;
    let victim = &nodes[1];
    let own_before = victim.metrics().await.unwrap().incarnation;
    let counts = forged(victim).await.suspected;
    for suspected in [COUNTER_MAX, u64::from(u32::MAX), own_before + 1_000] {
        let ping = Message::Ping {
            seq: rand::random::<u64>() >> 2,
            target: victim.name().clone(),
            suspected: Some(Incarnation(suspected)),
        };
        rogue.datagram(victim, &ping, &[]);
    }
    // And by stream.
    let stream_ping = StreamMessage::Ping {
        seq: 7,
        target: victim.name().clone(),
        suspected: Some(Incarnation(COUNTER_MAX)),
    };
    let _ = rogue
        .transport
        .request(
            Peer::named(victim.name().clone(), victim.addr()),
            encode_stream(&stream_ping),
        )
        .await;
    rogue.marker(victim).await;
    let after = forged(victim).await.suspected;
    assert!(
        after >= counts + 3,
        "suspected pings counted {counts} -> {after}"
    );
    assert_eq!(victim.metrics().await.unwrap().incarnation, own_before);
    assert_unchanged(&nodes, &before).await;
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_that_never_connected_is_not_announced() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let before = views(&refs).await;
    // "ghost" holds a genuine certificate from the cluster CA, offered along, but never
    // connected: its claim is signed by the rogue.
    let ghost_cert = identity(&ca, "ghost").chain[0].as_ref().to_vec();
    let claim = Claim {
        name: name("ghost"),
        addr: "127.0.0.1:9".parse().unwrap(),
        incarnation: Incarnation(1),
        left: false,
        meta: vec![],
    };
    let ghost = MemberUpdate {
        signature: rogue.keyring.sign(&claim.signed_bytes()),
        claim,
        accusation: None,
    };
    let push_pull = StreamMessage::PushPull {
        digest: Vec::new(),
        join: false,
        sender: rogue.name.clone(),
        members: vec![rogue.own_update(), ghost.clone()],
        kv_digest: vec![],
        events: vec![],
        certificates: vec![
            Certificate {
                name: rogue.name.clone(),
                der: rogue.cert.clone(),
            },
            Certificate {
                name: name("ghost"),
                der: ghost_cert,
            },
        ],
        revocation_ids: Vec::new(),
    };
    for node in &nodes {
        let counts = forged(node).await.claim;
        rogue.request(node.addr(), &push_pull).await;
        rogue
            .gossip_and_sync(node, &[Update::Member(ghost.clone())])
            .await;
        let after = forged_until(node, |c| c.claim >= counts + 2).await.claim;
        assert!(after >= counts + 2, "{}: {counts} -> {after}", node.name());
    }
    assert_unchanged(&nodes, &before).await;
    for node in &nodes {
        let members = node.members().await.unwrap();
        assert!(
            state_of(&members, "ghost").is_none(),
            "{} holds the ghost",
            node.name()
        );
    }
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirecting_a_members_address_is_refused() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let before = views(&refs).await;
    let genuine = rogue.genuine("node-1");
    let mut moved = genuine.clone();
    moved.claim.addr = rogue.transport.local_addr();
    let mut moved_higher = moved.clone();
    moved_higher.claim.incarnation = Incarnation(genuine.claim.incarnation.0 + 1);
    moved_higher.signature = rogue.keyring.sign(&moved_higher.claim.signed_bytes());
    for node in [&nodes[0], &nodes[2]] {
        let counts = forged(node).await.claim;
        rogue
            .gossip_and_sync(
                node,
                &[
                    Update::Member(moved.clone()),
                    Update::Member(moved_higher.clone()),
                ],
            )
            .await;
        // The claim at the held incarnation would change nothing, so it is dropped unchecked;
        // the one above it is checked and refused.
        let after = forged_until(node, |c| c.claim > counts).await.claim;
        assert!(after > counts, "{}: {counts} -> {after}", node.name());
    }
    assert_unchanged(&nodes, &before).await;
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_lifeguard_confirmations_are_refused() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let before = views(&refs).await;
    let genuine = rogue.genuine("node-1");
    // Suspicions of node-1 in the names of node-0 and node-2, unsigned by them, and one in
    // node-2's name signed by the rogue.
    let mut updates = Vec::new();
    for accuser in ["node-0", "node-2"] {
        let mut u = genuine.clone();
        u.accusation = Some(Accusation {
            dead: false,
            accuser: name(accuser),
            signature: garbage(),
        });
        updates.push(Update::Member(u));
    }
    let mut signed_by_rogue = genuine.clone();
    signed_by_rogue.accusation = Some(Accusation {
        dead: false,
        accuser: name("node-2"),
        signature: rogue.keyring.sign(&Accusation::signed_bytes(
            genuine.name(),
            genuine.claim.incarnation,
            false,
            &name("node-2"),
        )),
    });
    updates.push(Update::Member(signed_by_rogue));
    for node in [&nodes[0], &nodes[2]] {
        let counts = forged(node).await.accusation;
        rogue.gossip_and_sync(node, &updates).await;
        let after = forged_until(node, |c| c.accusation >= counts + 2)
            .await
            .accusation;
        assert!(after >= counts + 2, "{}: {counts} -> {after}", node.name());
    }
    assert_unchanged(&nodes, &before).await;
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_user_events_in_another_name_are_not_delivered() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let mut subscribers: Vec<_> = nodes.iter().map(|n| n.events()).collect();
    let forged_event = |seq: u64, signature: Signature| SignedEvent {
        event: UserEvent {
            origin: name("node-1"),
            seq,
            name: "forged".into(),
            payload: b"evil".to_vec(),
        },
        signature,
    };
    let by_rogue = {
        let e = forged_event(2, garbage());
        let sig = rogue.keyring.sign(&SignedEvent::signed_bytes(&e.event));
        SignedEvent {
            signature: sig,
            ..e
        }
    };
    let updates = [
        Update::Event(forged_event(1, garbage())),
        Update::Event(by_rogue.clone()),
    ];
    for node in &nodes {
        let counts = forged(node).await.event;
        rogue.gossip_and_sync(node, &updates).await;
        let push_pull = StreamMessage::PushPull {
            digest: Vec::new(),
            join: false,
            sender: rogue.name.clone(),
            members: vec![rogue.own_update()],
            kv_digest: vec![],
            events: vec![forged_event(3, garbage()), by_rogue.clone()],
            certificates: vec![],
            revocation_ids: Vec::new(),
        };
        rogue.request(node.addr(), &push_pull).await;
        let after = forged_until(node, |c| c.event >= counts + 2).await.event;
        assert!(after >= counts + 2, "{}: {counts} -> {after}", node.name());
    }
    // A genuine event from node-1 after the forged ones: every node delivers it, and none
    // delivered a forged one before it.
    nodes[1].publish("genuine", b"ok".to_vec()).await.unwrap();
    for (node, rx) in nodes.iter().zip(subscribers.iter_mut()) {
        let got = tokio::time::timeout(DEADLINE, async {
            loop {
                match rx.recv().await {
                    Ok(quicswim::protocol::Event::User(u)) => return u,
                    Ok(_) => continue,
                    Err(e) => panic!("event stream: {e}"),
                }
            }
        })
        .await
        .expect("the genuine event arrives");
        assert_eq!(got.name, "genuine", "{} delivered {got:?}", node.name());
        let recent = node.recent_events().await.unwrap();
        assert!(recent.iter().all(|e| e.name != "forged"), "{recent:?}");
    }
    rogue.close().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_member_is_dead_everywhere_while_the_rogue_acks_for_it() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 4).await;
    let rogue = Rogue::join(&ca, nodes[0].addr()).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_all("the rogue alive everywhere", &refs, all_alive(5)).await;
    nodes[3].shutdown().await;
    let honest = &nodes[..3];
    let honest_refs: Vec<&Node> = honest.iter().collect();
    let started = tokio::time::Instant::now();
    // Until node-3 is Dead everywhere: Acks to every prober, for guessed sequence numbers
    // (small counters, and around the ones seen in Pings sent to the rogue).
    let deadline = started + DEADLINE;
    let mut sent = 0u64;
    let mut round = 0u64;
    loop {
        // A round of forged Acks first, then the check: node-3 can be Dead everywhere soon
        // after its shutdown (its connections close), and the test is of forgeries sent
        // while the others were deciding.
        let seen: Vec<(NodeName, SocketAddr, u64)> = rogue.pings.lock().unwrap().clone();
        for node in honest {
            let mut seqs: Vec<u64> = (round * 16..round * 16 + 16).collect();
            for (from, _, seq) in &seen {
                if from == node.name() {
                    seqs.extend(seq.saturating_sub(4)..seq.saturating_add(8));
                }
            }
            for seq in seqs {
                rogue.datagram(node, &Message::Ack { seq }, &[]);
                sent += 1;
            }
        }
        round += 1;
        let mut all_dead = true;
        for node in honest {
            let members = node.members().await.unwrap();
            if state_of(&members, "node-3").map(|(s, _)| s) != Some(State::Dead) {
                all_dead = false;
            }
        }
        if all_dead {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node-3 not Dead everywhere while the rogue acked for it: {:?}",
            views(&honest_refs).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // pacing of the attack
    }
    let took = started.elapsed();
    // The usual bound without a rogue: every member probes each other member once per pass
    // over them (n intervals), the suspicion then lasts at most its maximum, and the Dead
    // claim spreads within a couple of intervals; plus 2 s for a loaded test machine.
    let config = nodes[0].config();
    let n = 5;
    let min =
        quicswim::protocol::suspicion::min_timeout(config.suspicion_mult, n, config.probe_interval);
    let bound = config.probe_interval * (n as u32 + 2)
        + min * config.suspicion_max_timeout_mult
        + Duration::from_secs(2);
    assert!(
        took <= bound,
        "node-3 took {took:?} to be Dead everywhere, over the usual {bound:?}"
    );
    // Forgeries are counted once read, which can be after node-3 was Dead everywhere.
    let counted_by = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let mut refused = 0;
        for node in honest {
            refused += forged(node).await.ack;
        }
        if refused > 0 {
            break refused;
        }
        assert!(
            tokio::time::Instant::now() < counted_by,
            "none of {sent} forged Acks was counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "node-3 Dead everywhere after {took:?} (bound {bound:?}); {sent} forged Acks sent, \
         {refused} counted"
    );
    rogue.close().await;
    shutdown_all(honest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_req_cannot_make_a_member_dial_another_address() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let before = views(&refs).await;
    // Where the rogue would like node-0 to send: a socket the test watches.
    let trap = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let helper = &nodes[0];
    let counts = forged(helper).await.ping_req;
    rogue.datagram(
        helper,
        &Message::PingReq {
            seq: 11,
            target: name("node-1"),
            target_addr: trap_addr,
        },
        &[],
    );
    rogue.datagram(
        helper,
        &Message::PingReq {
            seq: 12,
            target: name("nobody"),
            target_addr: trap_addr,
        },
        &[],
    );
    // A legitimate PingReq afterwards: its relayed Ack proves the helper processed the two.
    let seq = rand::random::<u64>() >> 2;
    let legit = Message::PingReq {
        seq,
        target: name("node-2"),
        target_addr: nodes[2].addr(),
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let notified = rogue.acks.1.notified();
        if rogue.acks.0.lock().unwrap().contains(&seq) {
            break;
        }
        rogue.datagram(helper, &legit, &[]);
        assert!(tokio::time::Instant::now() < deadline, "no relayed Ack");
        let _ = tokio::time::timeout(Duration::from_millis(300), notified).await;
    }
    let after = forged(helper).await.ping_req;
    assert!(
        after >= counts + 2,
        "forged PingReqs counted {counts} -> {after}"
    );
    let mut buf = [0u8; 2048];
    assert!(
        trap.recv_from(&mut buf).is_err(),
        "the helper sent to the rogue's address"
    );
    assert_unchanged(&nodes, &before).await;
    rogue.close().await;
    shutdown_all(&nodes).await;
}

/// Waits until every node holds `want` for `owner`'s `key`.
async fn wait_kv(nodes: &[&Node], owner: &NodeName, key: &str, want: Option<&[u8]>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut ok = true;
        for node in nodes {
            if node.get(owner, key).await.unwrap().as_deref() != want {
                ok = false;
            }
        }
        if ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{owner}/{key} never became {want:?} everywhere"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_revocation_lists_are_refused_and_ban_nobody() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let (nodes, rogue) = cluster_with_rogue(&ca).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let before = views(&refs).await;
    let victim = nodes[1]
        .certificate_info(&name("node-2"))
        .expect("node-2's certificate")
        .serial;
    let der = |pem: String| {
        rustls_pemfile::crls(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    };
    // A list naming node-2 made by a CA of the same name with another key, one of another
    // CA, a list cut short, and bytes that are no list at all.
    let same_name = der(CertAuthority::generate("test cluster")
        .unwrap()
        .revocation_list(&[&victim], 7)
        .unwrap());
    let other = der(CertAuthority::generate("other")
        .unwrap()
        .revocation_list(&[&victim], 7)
        .unwrap());
    let genuine = der(ca.revocation_list(&[&victim], 7).unwrap());
    let lists: Vec<RevocationList> = [
        same_name,
        other,
        genuine[..genuine.len() - 9].to_vec(),
        vec![0x30, 0x82, 0xff, 0xff, 0],
    ]
    .into_iter()
    .map(|der| RevocationList { der })
    .collect();
    for node in [&nodes[0], &nodes[1]] {
        let reply = rogue
            .request(
                node.addr(),
                &StreamMessage::Revocations {
                    lists: lists.clone(),
                },
            )
            .await;
        assert_eq!(reply, StreamMessage::RevocationsAck);
        let core = node.metrics().await.unwrap().core;
        assert_eq!(core.revocations_refused, 4, "at {}", node.name());
        assert_eq!(core.revocations_taken, 0, "at {}", node.name());
        assert!(node.banned(&name("node-2")).is_none());
        assert!(node.certificate_info(&name("node-2")).is_some());
    }
    assert_unchanged(&nodes, &before).await;
    rogue.close().await;
    shutdown_all(&nodes).await;
}
