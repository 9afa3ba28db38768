//! Seeds by DNS name, against a small DNS server inside the test: names resolved at every
//! join attempt, every address of a name tried, a node that lists itself, and two nodes whose
//! seeds at first lead each only to itself. Every wait is for a condition under a deadline.

use quicswim_testkit as common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::dns::TestDns;
use common::*;
use quicswim::tls::{CertAuthority, Identity};
use quicswim::{Node, NodeConfig, NotReady, Seed};

async fn start_with(identity: Identity, bind: SocketAddr, seeds: Vec<Seed>, dns: &TestDns) -> Node {
    start_node(identity, bind, seeds, dns, false).await
}

async fn start_node(
    identity: Identity,
    bind: SocketAddr,
    seeds: Vec<Seed>,
    dns: &TestDns,
    bootstrap: bool,
) -> Node {
    let config = NodeConfig {
        protocol: fast(),
        seeds,
        nameserver: Some(dns.addr()),
        bootstrap,
        ..NodeConfig::new(identity, bind, Vec::new())
    };
    Node::start(config).await.expect("node starts")
}

async fn joined_within_deadline(node: &Node, what: &str) {
    tokio::time::timeout(DEADLINE, node.wait_joined())
        .await
        .unwrap_or_else(|_| panic!("{what}: not joined within {DEADLINE:?}"))
        .expect("node runs");
}

/// A UDP port free on 127.0.0.1 just now, where nothing answers.
fn unused_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("address").port()
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_several_addresses_joins_through_the_live_one() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let dns = TestDns::start().await;
    // The live seed on 127.0.0.2; the same port on 127.0.0.3 and .4 has nobody.
    let port = unused_port();
    let seed = start_with(
        identity(&ca, "seed"),
        SocketAddr::new(loopback(2), port),
        vec![],
        &dns,
    )
    .await;
    dns.set_ips("seeds.test", &[loopback(3), loopback(2), loopback(4)]);
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let by_name = vec![Seed::Host {
        name: "seeds.test".into(),
        port,
    }];
    let joiner = start_with(identity(&ca, "joiner"), bind, by_name, &dns).await;
    joined_within_deadline(&joiner, "A records").await;

    // The same through SRV records, each target with its own port, one of them dead.
    dns.set_srv(
        "_quicswim._udp.cluster.test",
        &[("dead.test", unused_port()), ("live.test", port)],
    );
    dns.set_ips("dead.test", &[loopback(1)]);
    dns.set_ips("live.test", &[loopback(2)]);
    let srv = vec!["dnssrv+_quicswim._udp.cluster.test".parse().unwrap()];
    let other = start_with(identity(&ca, "other"), bind, srv, &dns).await;
    joined_within_deadline(&other, "SRV records").await;

    let nodes = [&seed, &joiner, &other];
    wait_all("three alive", &nodes, all_alive(3)).await;
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_only_later_is_joined_once_it_does() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let dns = TestDns::start().await;
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let seed = start_with(identity(&ca, "seed"), bind, vec![], &dns).await;
    let late = format!("late.test:{}", seed.addr().port()).parse().unwrap();
    let joiner = start_with(identity(&ca, "joiner"), bind, vec![late], &dns).await;
    // Not in DNS yet: asked at least twice (the name is looked up again at each attempt),
    // and the node runs on, unjoined, rather than failing.
    eventually("the name looked up at two attempts", || async {
        dns.queries("late.test") >= 2
    })
    .await;
    assert!(!joiner.is_joined());
    dns.set_ips("late.test", &[loopback(1)]);
    joined_within_deadline(&joiner, "after the name appeared").await;
    wait_all("two alive", &[&seed, &joiner], all_alive(2)).await;
    shutdown_all([&seed, &joiner]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_listing_itself_as_seed_is_harmless() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let dns = TestDns::start().await;
    // As a StatefulSet's pods: every pod lists the same name, which resolves to them all.
    let (port0, port1, port2) = (unused_port(), unused_port(), unused_port());
    let pod0 = SocketAddr::new(loopback(1), port0);
    dns.set_srv("_quicswim._udp.pods.test", &[("pod-0.test", port0)]);
    dns.set_ips("pod-0.test", &[loopback(1)]);
    let pods: Vec<Seed> = vec!["dnssrv+_quicswim._udp.pods.test".parse().unwrap()];
    // Pod 0 alone, its only seed itself: a deliberate first node starts the cluster, and is
    // ready alone.
    let first = start_node(identity(&ca, "pod-0"), pod0, pods.clone(), &dns, true).await;
    joined_within_deadline(&first, "pod 0, a first node").await;
    assert_eq!(first.members().await.unwrap().len(), 1);
    assert_eq!(first.readiness().await, Ok(()));
    // Pod 1 finds both, itself among them, and joins pod 0.
    dns.set_srv(
        "_quicswim._udp.pods.test",
        &[("pod-0.test", port0), ("pod-1.test", port1)],
    );
    dns.set_ips("pod-1.test", &[loopback(1)]);
    let pod1 = SocketAddr::new(loopback(1), port1);
    let second = start_with(identity(&ca, "pod-1"), pod1, pods, &dns).await;
    joined_within_deadline(&second, "pod 1").await;
    wait_all("both alive", &[&first, &second], all_alive(2)).await;
    // Seeds by address, this node's own among them (first, so it is met before pod 0's):
    // skipped, and pod 0 joined.
    let pod2 = SocketAddr::new(loopback(1), port2);
    let third = start_with(
        identity(&ca, "pod-2"),
        pod2,
        vec![Seed::Addr(pod2), Seed::Addr(pod0)],
        &dns,
    )
    .await;
    joined_within_deadline(&third, "pod 2").await;
    let nodes = [&first, &second, &third];
    wait_all("three alive", &nodes, all_alive(3)).await;
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_each_find_only_themselves_become_one_cluster_once_they_see_each_other() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let dns = TestDns::start().await;
    // Two pods started together, each resolving the service while only its own record exists.
    let port = unused_port();
    let (ip_a, ip_b) = (loopback(5), loopback(6));
    dns.set_ips("view-a.test", &[ip_a]);
    dns.set_ips("view-b.test", &[ip_b]);
    let seed = |view: &str| {
        vec![Seed::Host {
            name: view.into(),
            port,
        }]
    };
    let a = start_with(
        identity(&ca, "pod-a"),
        SocketAddr::new(ip_a, port),
        seed("view-a.test"),
        &dns,
    )
    .await;
    let b = start_with(
        identity(&ca, "pod-b"),
        SocketAddr::new(ip_b, port),
        seed("view-b.test"),
        &dns,
    )
    .await;
    // Each sees only itself, at two attempts at least: neither is a cluster of one.
    eventually("each name looked up at two attempts", || async {
        dns.queries("view-a.test") >= 2 && dns.queries("view-b.test") >= 2
    })
    .await;
    for node in [&a, &b] {
        assert!(!node.is_joined());
        assert_eq!(node.readiness().await, Err(NotReady::OnlySelf));
    }
    // Both records are in now: whichever asks first, the two end up in one cluster.
    dns.set_ips("view-a.test", &[ip_a, ip_b]);
    dns.set_ips("view-b.test", &[ip_b, ip_a]);
    joined_within_deadline(&a, "pod a").await;
    joined_within_deadline(&b, "pod b").await;
    wait_all("two alive", &[&a, &b], all_alive(2)).await;
    for node in [&a, &b] {
        assert_eq!(node.readiness().await, Ok(()));
    }
    shutdown_all([&a, &b]).await;
}
