//! Key/value data and user events across real nodes over QUIC + mTLS on 127.0.0.1.

use quicswim_testkit as common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use quicswim::protocol::Event;
use quicswim::tls::CertAuthority;
use quicswim::Node;

/// Polls every node's `get(owner, key)` until all return `want`.
async fn wait_value(nodes: &[&Node], owner: &str, key: &str, want: Option<&[u8]>) {
    let owner = name(owner);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut ok = true;
        for node in nodes {
            if node.get(&owner, key).await.unwrap().as_deref() != want {
                ok = false;
            }
        }
        if ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{owner}/{key} never reached every node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_large_values_and_deletes_reach_every_node() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 4).await;
    let refs: Vec<&Node> = nodes.iter().collect();

    nodes[1].set("colour", b"blue".to_vec()).await.unwrap();
    wait_value(&refs, "node-1", "colour", Some(b"blue")).await;

    // 48 KiB: far over a datagram, so it travels on streams.
    let big: Vec<u8> = (0..48 * 1024).map(|i| (i % 251) as u8).collect();
    nodes[2].set("blob", big.clone()).await.unwrap();
    wait_value(&refs, "node-2", "blob", Some(&big)).await;

    assert!(nodes[1].delete("colour").await.unwrap().is_some());
    wait_value(&refs, "node-1", "colour", None).await;
    assert_eq!(
        nodes[1].delete("colour").await.unwrap(),
        None,
        "already gone"
    );

    // An oversized value is refused with the limit named, and nothing changes.
    let err = nodes[0].set("huge", vec![0; 65 * 1024]).await.unwrap_err();
    assert!(err.to_string().contains("65536"), "{err}");
    assert_eq!(nodes[0].get(&name("node-0"), "huge").await.unwrap(), None);
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_owner_writes_win_over_its_old_ones() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 4).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    for i in 0..5 {
        nodes[3]
            .set("counter", format!("old-{i}").into_bytes())
            .await
            .unwrap();
    }
    wait_value(&refs, "node-3", "counter", Some(b"old-4")).await;
    nodes[3].shutdown().await;
    // Back with no state at all: its first write must still win everywhere.
    let back = start(identity(&ca, "node-3"), vec![nodes[0].addr()]).await;
    back.set("counter", b"new".to_vec()).await.unwrap();
    let mut all: Vec<&Node> = nodes[..3].iter().collect();
    all.push(&back);
    wait_value(&all, "node-3", "counter", Some(b"new")).await;
    shutdown_all(all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_event_reaches_every_node_once() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 4).await;
    let mut streams: Vec<_> = nodes.iter().map(|n| n.events()).collect();
    let seq = nodes[0]
        .publish("deploy", b"v1.2.3".to_vec())
        .await
        .unwrap();
    // Every node delivers it; give gossip time to repeat it, then count deliveries.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    while counts.len() < nodes.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "event reached {counts:?} only"
        );
        for (i, s) in streams.iter_mut().enumerate() {
            while let Ok(e) = s.try_recv() {
                if let Event::User(u) = e {
                    assert_eq!(
                        (u.name.as_str(), u.payload.as_slice(), u.seq),
                        ("deploy", &b"v1.2.3"[..], seq)
                    );
                    *counts.entry(i).or_default() += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
    // Gossip keeps retransmitting for a while; the recent-events list shows it once per node.
    for node in &nodes {
        let recent = node.recent_events().await.unwrap();
        assert_eq!(
            recent.iter().filter(|e| e.seq == seq).count(),
            1,
            "{}",
            node.name()
        );
    }
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    shutdown_all(&nodes).await;
}
