//! A member writing keys and events at ten times the others' limits, over real nodes on
//! 127.0.0.1: the others refuse what is over and count it (in `/metrics` too), hold no more
//! than their limits, and still deliver everyone else's data; a local writer over a limit gets
//! an error naming it. Every wait is for a condition under a deadline.

use quicswim_testkit as common;

use std::net::{Ipv4Addr, SocketAddr};

use common::*;
use quicswim::protocol::{Config, KvLimits};
use quicswim::tls::CertAuthority;
use quicswim::{Node, NodeConfig};

/// The honest nodes' limits; the writer's are ten times these.
const KEYS: usize = 10;
const PAYLOAD: usize = 100;

fn config(scale: usize) -> Config {
    Config {
        kv: KvLimits {
            keys_per_node_max: KEYS * scale,
            ..KvLimits::default()
        },
        event_payload_len_max: PAYLOAD * scale,
        ..fast().into_inner()
    }
}

async fn start_with(ca: &CertAuthority, n: &str, seeds: Vec<SocketAddr>, config: Config) -> Node {
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = NodeConfig {
        protocol: config.validate().expect("valid test config"),
        ..NodeConfig::new(identity(ca, n), bind, seeds)
    };
    Node::start(config).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_over_the_limits_is_refused_and_counted_and_others_data_still_arrives() {
    let ca = CertAuthority::generate("limits test").unwrap();
    let honest = start_with(&ca, "node-0", vec![], config(1)).await;
    let seed = honest.addr();
    let other = start_with(&ca, "node-1", vec![seed], config(1)).await;
    let loud = start_with(&ca, "node-2", vec![seed], config(10)).await;
    let nodes = [&honest, &other, &loud];
    wait_all("3 nodes alive everywhere", &nodes, all_alive(3)).await;

    // The loud member writes ten times the keys the others allow, and events ten times
    // as large; its own node lets it.
    for i in 0..KEYS * 10 {
        loud.set(&format!("loud-{i}"), vec![b'x'; 64])
            .await
            .unwrap();
    }
    for i in 0..5 {
        loud.publish(&format!("loud-{i}"), vec![b'y'; PAYLOAD * 10])
            .await
            .unwrap();
    }
    // An honest member's data, written meanwhile.
    for i in 0..KEYS / 2 {
        other
            .set(&format!("mine-{i}"), b"v".to_vec())
            .await
            .unwrap();
    }
    // A local writer over its own limit is told which one.
    for i in KEYS / 2..KEYS {
        other
            .set(&format!("mine-{i}"), b"v".to_vec())
            .await
            .unwrap();
    }
    let err = other.set("one-too-many", b"v".to_vec()).await.unwrap_err();
    assert!(
        err.to_string().contains("kv.keys_per_node_max"),
        "the error names the limit: {err}"
    );
    let err = other
        .publish("big", vec![0; PAYLOAD + 1])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit is 100"), "{err}");

    // The honest node gets the other's data in full, and of the loud member's no more
    // than its limit, refusing and counting the rest.
    let node_1 = name("node-1");
    let node_2 = name("node-2");
    eventually(
        "node-0 holds node-1's keys and refused node-2's excess",
        || async {
            let mut held_1 = 0;
            for i in 0..KEYS {
                held_1 += usize::from(
                    honest
                        .get(&node_1, &format!("mine-{i}"))
                        .await
                        .unwrap()
                        .is_some(),
                );
            }
            let m = honest.metrics().await.unwrap();
            held_1 == KEYS && m.core.kv_refused > 0 && m.core.user_events_refused > 0
        },
    )
    .await;
    let mut held_2 = 0;
    for i in 0..KEYS * 10 {
        held_2 += usize::from(
            honest
                .get(&node_2, &format!("loud-{i}"))
                .await
                .unwrap()
                .is_some(),
        );
    }
    assert!(held_2 <= KEYS, "node-0 holds {held_2} of node-2's keys");
    let m = honest.metrics().await.unwrap();
    assert!(m.kv_entries <= 2 * KEYS, "{} entries held", m.kv_entries);
    let local = other.metrics().await.unwrap();
    assert_eq!(local.core.local_writes_refused, 2);

    // And the counters are in /metrics.
    let api = ApiServer::start(&honest).await;
    let (status, text) = get(api.addr, "/metrics").await;
    assert_eq!(status, 200);
    for family in [
        "quicswim_kv_refused_total",
        "quicswim_user_events_refused_total",
    ] {
        let value = metric(&text, family, None).unwrap_or_else(|| panic!("{family} missing"));
        assert!(value > 0.0, "{family} = {value}");
    }
    shutdown_all(nodes).await;
}
