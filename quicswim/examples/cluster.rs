//! Three nodes in one process with an in-memory CA: watch them find each other over QUIC with
//! mutual TLS, then leave one by one.
//!
//! ```text
//! cargo run --example cluster
//! ```

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use quicswim::protocol::{Config, Event, Member, NodeName, State};
use quicswim::tls::CertAuthority;
use quicswim::{Node, NodeConfig};

/// How long the example waits for any one step before giving up.
const STEP_DEADLINE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // One CA for the cluster; each node gets a certificate naming it (DNS SAN = node name).
    let ca = CertAuthority::generate("example cluster")?;
    // Quicker than the lan preset so the example finishes in seconds; checked once, here.
    let protocol = Config {
        probe_interval: Duration::from_millis(300),
        probe_timeout: Duration::from_millis(150),
        gossip_interval: Duration::from_millis(50),
        ..Config::local()
    }
    .validate()?;
    let start = |name: &str, seeds: Vec<SocketAddr>| {
        let identity = ca.identity(&NodeName::new(name)?, &[Ipv4Addr::LOCALHOST.into()], 1)?;
        let config = NodeConfig {
            protocol: protocol.clone(),
            meta: format!("role={name}").into_bytes(),
            ..NodeConfig::new(identity, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), seeds)
        };
        Ok::<_, Box<dyn Error>>(Node::start(config))
    };

    let alpha = start("alpha", vec![])?.await?;
    print_events(&alpha);
    println!("alpha listening on {}", alpha.addr());
    let beta = start("beta", vec![alpha.addr()])?.await?;
    print_events(&beta);
    let gamma = start("gamma", vec![alpha.addr()])?.await?;
    print_events(&gamma);

    for node in [&alpha, &beta, &gamma] {
        wait_until(node, "three members alive", |members| {
            members.iter().filter(|m| m.state == State::Alive).count() == 3
        })
        .await?;
    }
    println!("\nalpha's view:");
    for m in alpha.members().await? {
        println!(
            "  {:<6} {:<16} {:<7} incarnation {} meta {:?}",
            m.name.as_str(),
            m.addr,
            m.state.as_str(),
            m.incarnation,
            String::from_utf8_lossy(&m.meta)
        );
    }
    println!();

    // Key/value data: beta writes one of its own keys; every member ends up holding it.
    beta.set("config", b"version=1".to_vec()).await?;
    let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
    while gamma.get(beta.name(), "config").await?.is_none() {
        if tokio::time::Instant::now() > deadline {
            return Err("gamma never received beta's key".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "gamma reads beta/config = {:?}\n",
        String::from_utf8_lossy(&gamma.get(beta.name(), "config").await?.unwrap_or_default())
    );

    gamma.leave().await?;
    wait_until(&alpha, "gamma to be seen leaving", |members| {
        members
            .iter()
            .any(|m| m.name.as_str() == "gamma" && m.state == State::Left)
    })
    .await?;
    beta.leave().await?;
    wait_until(&alpha, "beta to be seen leaving", |members| {
        members
            .iter()
            .any(|m| m.name.as_str() == "beta" && m.state == State::Left)
    })
    .await?;
    alpha.leave().await?;
    println!("\nall three nodes left");
    Ok(())
}

/// Prints every membership event `node` sees, tagged with its name.
fn print_events(node: &Node) {
    let mut events = node.events();
    let me = node.name().clone();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            let (what, m) = match &event {
                Event::Joined(m) => ("joined", m),
                Event::Recovered(m) => ("recovered", m),
                Event::Updated(m) => ("updated", m),
                Event::Suspect(m) => ("suspect", m),
                Event::Dead(m) => ("dead", m),
                Event::Left(m) => ("left", m),
                Event::KvChanged { owner, key } => {
                    println!("[{me}] key {owner}/{key} changed");
                    continue;
                }
                Event::User(e) => {
                    println!("[{me}] user event {:?} from {}", e.name, e.origin);
                    continue;
                }
            };
            println!("[{me}] {} {what} ({})", m.name, m.addr);
        }
    });
}

/// Polls `node`'s member list until `done` holds, or fails after STEP_DEADLINE.
async fn wait_until(
    node: &Node,
    what: &str,
    done: impl Fn(&[Member]) -> bool,
) -> Result<(), Box<dyn Error>> {
    let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
    while !done(&node.members().await?) {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{} gave up waiting for {what}", node.name()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
