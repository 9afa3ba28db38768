//! Helpers shared by the real-cluster tests: certificates in memory, fast timings, and
//! waiting for conditions under a deadline.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use quicswim::protocol::{Config, Member, NodeName, State};
use quicswim::tls::{CertAuthority, Identity};
use quicswim::{Node, NodeConfig};

/// Longest any one condition may take; generous so a loaded CI machine does not flake.
pub const DEADLINE: Duration = Duration::from_secs(40);

pub fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("test names are valid")
}

/// A quick profile so that detection takes seconds, not tens of seconds.
pub fn fast() -> Config {
    Config {
        probe_interval: Duration::from_millis(300),
        probe_timeout: Duration::from_millis(150),
        gossip_interval: Duration::from_millis(50),
        suspicion_mult: 3,
        indirect_checks: 2,
        join_retry_interval: Duration::from_millis(500),
        reconnect_interval: Duration::from_secs(2),
        ..Config::local()
    }
}

pub fn identity(ca: &CertAuthority, n: &str) -> Identity {
    ca.identity(&name(n), &[Ipv4Addr::LOCALHOST.into()], 1)
        .expect("issue test certificate")
}

pub async fn start(identity: Identity, seeds: Vec<SocketAddr>) -> Node {
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = NodeConfig {
        protocol: fast(),
        ..NodeConfig::new(identity, bind, seeds)
    };
    Node::start(config).await.expect("node starts")
}

pub async fn start_cluster(ca: &CertAuthority, n: usize) -> Vec<Node> {
    let first = start(identity(ca, "node-0"), vec![]).await;
    let seed = first.addr();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start(identity(ca, &format!("node-{i}")), vec![seed]).await);
    }
    nodes
}

pub fn state_of(members: &[Member], who: &str) -> Option<(State, u64)> {
    members
        .iter()
        .find(|m| m.name.as_str() == who)
        .map(|m| (m.state, m.incarnation.0))
}

/// Polls `cond` over every node's member list until it holds for all, or fails at DEADLINE.
pub async fn wait_all(what: &str, nodes: &[&Node], cond: impl Fn(&[Member]) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut ok = true;
        for node in nodes {
            let members = node.members().await.expect("node is running");
            if !cond(&members) {
                ok = false;
                break;
            }
        }
        if ok {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let mut views = String::new();
            for node in nodes {
                let members = node.members().await.unwrap_or_default();
                let view: Vec<String> = members
                    .iter()
                    .map(|m| format!("{}={}@{}", m.name, m.state, m.incarnation))
                    .collect();
                views.push_str(&format!("\n  {}: {}", node.name(), view.join(" ")));
            }
            panic!("timed out waiting for {what}; views:{views}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval, not a settle wait
    }
}

pub fn all_alive(n: usize) -> impl Fn(&[Member]) -> bool {
    move |members: &[Member]| members.iter().filter(|m| m.state == State::Alive).count() == n
}
