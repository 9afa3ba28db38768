//! The ring on real nodes over QUIC + mTLS on 127.0.0.1: it follows membership, every node
//! routes alike, a crash moves only the crashed node's keys, and `RingChanged` tells of it.
//! Every wait is for a condition under a deadline.

use quicswim_testkit as common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use common::*;
use quicswim::protocol::NodeName;
use quicswim::ring::Ring;
use quicswim::tls::CertAuthority;
use quicswim::{api, Node, RingChanged};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

const KEYS: usize = 2_000;

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS).map(|i| format!("key-{i}").into_bytes()).collect()
}

fn owners(ring: &Ring, keys: &[Vec<u8>]) -> Vec<NodeName> {
    keys.iter()
        .map(|k| ring.owner(k).expect("the ring has members").clone())
        .collect()
}

fn ring_names(ring: &Ring) -> Vec<&str> {
    ring.members().iter().map(|n| n.as_str()).collect()
}

/// Polls every node's ring until `cond` holds for all, or fails at DEADLINE showing them.
async fn wait_rings(what: &str, nodes: &[&Node], cond: impl Fn(&Ring) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if nodes.iter().all(|n| cond(&n.ring())) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let rings: Vec<String> = nodes
                .iter()
                .map(|n| {
                    let ring = n.ring();
                    format!("\n  {}: {:?} {:?}", n.name(), ring_names(&ring), ring)
                })
                .collect();
            panic!("timed out waiting for {what}; rings:{}", rings.concat());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // poll interval
    }
}

/// The next ring change on `events` for which `pick` holds, within DEADLINE.
async fn next_change(
    who: &Node,
    events: &mut broadcast::Receiver<RingChanged>,
    what: &str,
    pick: impl Fn(&RingChanged) -> bool,
) -> RingChanged {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(change) if pick(&change) => return change,
                Ok(_) => continue,
                Err(e) => panic!("{}'s ring events: {e}", who.name()),
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("{} saw no ring change with {what}", who.name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_follows_a_crash_and_a_restart_and_only_the_crashed_nodes_keys_move() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 4).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_rings("4 members on every ring", &refs, |r| r.len() == 4).await;

    // Converged: one ring, so one owner per key, on every node.
    let keys = keys();
    let full = nodes[0].ring();
    let full_owners = owners(&full, &keys);
    for node in &nodes {
        let ring = node.ring();
        assert_eq!(ring.checksum(), full.checksum(), "{}'s ring", node.name());
        assert_eq!(
            owners(&ring, &keys),
            full_owners,
            "{}'s owners",
            node.name()
        );
    }
    let victim = name("node-3");
    let victim_owned = full_owners.iter().filter(|o| **o == victim).count();
    assert!(victim_owned > 0, "node-3 owned no key of {KEYS}");

    // node-3 crashes: every survivor tells of it, and only its keys move.
    let survivors: Vec<&Node> = nodes[..3].iter().collect();
    let mut events: Vec<_> = survivors.iter().map(|n| n.ring_events()).collect();
    nodes[3].shutdown().await;
    for (node, events) in survivors.iter().zip(&mut events) {
        let change = next_change(node, events, "node-3 removed", |c| {
            c.removed.contains(&victim)
        })
        .await;
        assert!(change.added.is_empty(), "{change:?}");
        assert!(!change.ring.contains(&victim));
    }
    let shrunk = survivors[0].ring();
    assert_eq!(ring_names(&shrunk), ["node-0", "node-1", "node-2"]);
    let shrunk_owners = owners(&shrunk, &keys);
    let mut moved = 0;
    for (old, new) in full_owners.iter().zip(&shrunk_owners) {
        if *old == victim {
            moved += 1;
        } else {
            assert_eq!(old, new, "a key moved off {old}, which is alive");
        }
    }
    assert_eq!(moved, victim_owned);
    for node in &survivors {
        assert_eq!(node.ring().checksum(), shrunk.checksum(), "{}", node.name());
    }

    // node-3 comes back (no state, a new port): it is added again, to the same keys.
    let back = start(identity(&ca, "node-3"), vec![nodes[0].addr()]).await;
    for (node, events) in survivors.iter().zip(&mut events) {
        let change = next_change(node, events, "node-3 added", |c| c.added.contains(&victim)).await;
        assert!(change.ring.contains(&victim));
    }
    let all: Vec<&Node> = survivors.iter().copied().chain([&back]).collect();
    wait_rings("the full ring again everywhere", &all, |r| {
        r.checksum() == full.checksum()
    })
    .await;
    for node in &all {
        assert_eq!(owners(&node.ring(), &keys), full_owners, "{}", node.name());
    }

    back.shutdown().await;
    shutdown_all(&nodes[..3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_in_metadata_reweights_the_member_everywhere() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 3).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_rings("3 members on every ring", &refs, |r| r.len() == 3).await;
    let heavy = name("node-1");
    let mut events = nodes[0].ring_events();
    let mut own_events = nodes[1].ring_events();

    nodes[1]
        .set_meta(b"zone=a;weight=3".to_vec())
        .await
        .unwrap();
    let change = next_change(&nodes[0], &mut events, "node-1 reweighted", |c| {
        c.reweighted.contains(&heavy)
    })
    .await;
    assert!(change.added.is_empty() && change.removed.is_empty());
    // The node's own ring changes too, though the core raises no event about itself.
    next_change(&nodes[1], &mut own_events, "itself reweighted", |c| {
        c.reweighted.contains(&heavy)
    })
    .await;
    wait_rings("weight 3 for node-1 everywhere", &refs, |r| {
        r.weight(&heavy) == Some(3)
    })
    .await;
    let shares: BTreeMap<NodeName, f64> = nodes[2].ring().shares().into_iter().collect();
    let (light, heavy_share) = (shares[&name("node-0")], shares[&heavy]);
    assert!(
        heavy_share > 2.0 * light,
        "weight 3 owns {heavy_share:.3}, weight 1 owns {light:.3}"
    );
    shutdown_all(&nodes).await;
}

/// Serves `node`'s API on 127.0.0.1 and returns its address.
async fn serve(node: &Node) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api::serve(node.clone(), listener, std::future::pending()));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_owners_and_a_summary_from_the_nodes_ring() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 3).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_rings("3 members on every ring", &refs, |r| r.len() == 3).await;
    let addr = serve(&nodes[0]).await;
    let ring: Arc<Ring> = nodes[0].ring();

    let (status, body) = get(addr, "/v1/ring").await;
    assert_eq!(status, 200, "{body}");
    let summary: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["checksum"], format!("{:016x}", ring.checksum()));
    assert_eq!(summary["vnodes"], ring.vnodes());
    let members = summary["members"].as_array().unwrap();
    let names: Vec<&str> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node-0", "node-1", "node-2"]);
    let total: f64 = members.iter().map(|m| m["share"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    for m in members {
        assert_eq!(m["weight"], 1);
        assert_eq!(m["vnodes"], ring.vnodes_per_member());
    }

    let (status, body) = get(addr, "/v1/ring/owner?key=alpha&key=user%3A42&key=alpha").await;
    assert_eq!(status, 200, "{body}");
    let expected = serde_json::json!({
        "alpha": ring.owner(b"alpha").unwrap().as_str(),
        "user:42": ring.owner(b"user:42").unwrap().as_str(),
    });
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), expected);

    let (status, body) = get(addr, "/v1/ring/owner?key=alpha&replicas=5").await;
    assert_eq!(status, 200, "{body}");
    let replicas: Vec<&str> = ring
        .replicas(b"alpha", 5)
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(replicas.len(), 3, "no more replicas than members");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({ "alpha": replicas })
    );

    for (path, expect) in [
        ("/v1/ring/owner", "no key"),
        ("/v1/ring/owner?key=a&replicas=0", "at least 1"),
        ("/v1/ring/owner?kee=a", "unknown query parameter"),
    ] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(expect),
            "{path}: {body}"
        );
    }
    shutdown_all(&nodes).await;
}
