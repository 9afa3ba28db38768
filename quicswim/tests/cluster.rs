//! Clusters of real nodes over QUIC + mTLS on 127.0.0.1. Every wait is for a condition under
//! a deadline; nothing sleeps to let things settle.

use quicswim_testkit as common;

use std::time::Duration;

use common::*;
use quicswim::protocol::{Event, State};
use quicswim::tls::CertAuthority;
use quicswim::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_a_cluster() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 5).await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_node_is_dead_everywhere_and_comes_back_with_higher_incarnation() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 5).await;
    let victim = &nodes[4];
    let old_incarnation = {
        let members = nodes[0].members().await.unwrap();
        state_of(&members, "node-4").unwrap().1
    };
    victim.shutdown().await;
    let others: Vec<&Node> = nodes[..4].iter().collect();
    wait_all("node-4 dead on the others", &others, |m| {
        state_of(m, "node-4").is_some_and(|(s, _)| s == State::Dead)
    })
    .await;
    // Restart with the same name and no state, on a new port.
    let back = start(identity(&ca, "node-4"), vec![nodes[0].addr()]).await;
    wait_all(
        "node-4 alive again with a higher incarnation",
        &others,
        |m| {
            state_of(m, "node-4").is_some_and(|(s, inc)| s == State::Alive && inc > old_incarnation)
        },
    )
    .await;
    back.shutdown().await;
    shutdown_all(&nodes[..4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_shows_as_left() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 4).await;
    let mut events = nodes[0].events();
    nodes[3].leave().await.unwrap();
    let others: Vec<&Node> = nodes[..3].iter().collect();
    // Left arrives by reliable request, well before any probe could call it Dead.
    wait_all("node-3 left on the others", &others, |m| {
        state_of(m, "node-3").is_some_and(|(s, _)| s == State::Left)
    })
    .await;
    let left = tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Ok(Event::Left(m)) if m.name.as_str() == "node-3" => return true,
                Ok(Event::Dead(m)) if m.name.as_str() == "node-3" => return false,
                Ok(_) => continue,
                Err(e) => panic!("event stream: {e}"),
            }
        }
    })
    .await
    .expect("a Left event");
    assert!(left, "node-3 was declared dead instead of left");
    shutdown_all(&nodes[..3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_from_another_ca_is_never_admitted() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 3).await;
    let rogue_ca = CertAuthority::generate("rogue").unwrap();
    let rogue = start(identity(&rogue_ca, "rogue"), vec![nodes[0].addr()]).await;
    // The refusal is counted by the seed; wait for it, then check nobody admitted the rogue.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let refused = nodes[0].metrics().await.unwrap().transport.refused.total();
        if refused > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the seed never refused the rogue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in &nodes {
        let members = node.members().await.unwrap();
        assert!(
            state_of(&members, "rogue").is_none(),
            "{} admitted the rogue",
            node.name()
        );
        assert_eq!(members.len(), 3);
    }
    let rogue_view = rogue.members().await.unwrap();
    assert_eq!(
        rogue_view.len(),
        1,
        "the rogue learned members: {rogue_view:?}"
    );
    rogue.shutdown().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_claiming_another_name_is_refused() {
    use quicswim::protocol::codec::{encode_stream, Claim, MemberUpdate, StreamMessage};
    use quicswim::protocol::signing::Signature;
    use quicswim::protocol::Incarnation;
    use quicswim::transport::{Peer, Transport, TransportConfig};

    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 2).await;
    // mallory holds a valid certificate for "mallory" but claims to be "node-1".
    let (mallory, _incoming) =
        Transport::bind(TransportConfig::default(), &identity(&ca, "mallory"))
            .await
            .unwrap();
    let claim = StreamMessage::PushPull {
        digest: Vec::new(),
        join: true,
        sender: name("node-1"),
        members: vec![MemberUpdate {
            claim: Claim {
                name: name("node-1"),
                addr: mallory.local_addr(),
                incarnation: Incarnation(u64::from(u32::MAX) * 4),
                left: false,
                meta: vec![],
            },
            signature: Signature::new(vec![0; 64]),
            accusation: None,
        }],
        kv_digest: vec![],
        events: vec![],
        certificates: vec![],
        revocation_ids: Vec::new(),
    };
    let answer = mallory
        .request(Peer::seed(nodes[0].addr()), encode_stream(&claim))
        .await;
    assert!(
        answer.is_err(),
        "the impostor's join was answered: {answer:?}"
    );
    let metrics = nodes[0].metrics().await.unwrap();
    assert_eq!(metrics.core.name_mismatches, 1);
    // Nothing changed: node-1 keeps its real address and incarnation, mallory is unknown.
    let members = nodes[0].members().await.unwrap();
    let node1 = members
        .iter()
        .find(|m| m.name.as_str() == "node-1")
        .unwrap();
    assert_eq!(node1.addr, nodes[1].addr());
    assert!(node1.incarnation.0 < u64::from(u32::MAX) * 4);
    assert!(members.iter().all(|m| m.name.as_str() != "mallory"));
    mallory.close().await;
    shutdown_all(&nodes).await;
}

/// Two clusters under one CA, each node's certificate naming its cluster: nodes seeded with
/// the other cluster's addresses (one of them with nothing else) are refused there, and the
/// two never merge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_under_one_ca_seeded_with_each_other_never_merge() {
    let ca = CertAuthority::generate("one ca for two clusters").unwrap();
    let in_cluster = |cluster: &str| {
        CertAuthority::from_pem(ca.cert_pem(), &ca.key_pem())
            .unwrap()
            .with_cluster(Some(name(cluster)))
    };
    let (blue, green) = (in_cluster("blue"), in_cluster("green"));
    let b0 = start(identity(&blue, "b0"), vec![]).await;
    // g0 is pointed at the blue cluster alone.
    let g0 = start(identity(&green, "g0"), vec![b0.addr()]).await;
    let b1 = start(identity(&blue, "b1"), vec![g0.addr(), b0.addr()]).await;
    let g1 = start(identity(&green, "g1"), vec![b0.addr(), g0.addr()]).await;
    wait_all("blue formed", &[&b0, &b1], all_alive(2)).await;
    wait_all("green formed", &[&g0, &g1], all_alive(2)).await;
    // Each side has refused the other's dials: wait for the counts, then look at the views.
    eventually("each cluster refused the other", || async {
        let blue_refused = b0.metrics().await.unwrap().transport.refused.total();
        let green_refused = g0.metrics().await.unwrap().transport.refused.total();
        blue_refused > 0 && green_refused > 0
    })
    .await;
    for (nodes, cluster) in [([&b0, &b1], ["b0", "b1"]), ([&g0, &g1], ["g0", "g1"])] {
        for node in nodes {
            let members = node.members().await.unwrap();
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names.len(), 2, "{}: {names:?}", node.name());
            assert!(
                names.iter().all(|n| cluster.contains(n)),
                "{} holds members of the other cluster: {names:?}",
                node.name()
            );
        }
    }
    shutdown_all([&b0, &b1, &g0, &g1]).await;
}
