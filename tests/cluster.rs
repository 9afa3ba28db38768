//! Clusters of real nodes over QUIC + mTLS on 127.0.0.1. Every wait is for a condition under
//! a deadline; nothing sleeps to let things settle.

mod common;

use std::time::Duration;

use common::*;
use quicswim::protocol::{Event, State};
use quicswim::tls::CertAuthority;
use quicswim::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_a_cluster() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_cluster(&ca, 5).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_all("5 nodes alive everywhere", &refs, all_alive(5)).await;
    for node in &nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_node_is_dead_everywhere_and_comes_back_with_higher_incarnation() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_cluster(&ca, 5).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_all("5 nodes alive everywhere", &refs, all_alive(5)).await;
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
    for node in &nodes[..4] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_shows_as_left() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_cluster(&ca, 4).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_all("4 nodes alive everywhere", &refs, all_alive(4)).await;
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
    for node in &nodes[..3] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_from_another_ca_is_never_admitted() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_cluster(&ca, 3).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_all("3 nodes alive", &refs, all_alive(3)).await;
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
    for node in &nodes {
        node.shutdown().await;
    }
}
