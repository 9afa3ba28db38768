//! `quicswim demo`: a local encrypted cluster that shows itself working.
//!
//! Fresh CA and node certificates in a temporary directory, N nodes on 127.0.0.1 (QUIC,
//! mutual TLS 1.3), then: the cluster forms, a key set on one node arrives on all, a node
//! crashes and is seen Suspect then Dead, it restarts and is Alive again. Each step waits for
//! what it shows with a deadline and fails loudly if it does not happen.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use quicswim::protocol::{Event, Member, NodeName, Profile, State, ValidConfig};
use quicswim::tls::{self, Identity};
use quicswim::{Node, NodeConfig};
use serde::Serialize;

/// Arguments of `quicswim demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Nodes in the demo cluster (3..=64).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Protocol preset.
    #[arg(long, default_value = "lan", value_parser = super::profile_parser())]
    profile: Profile,
    /// Print one JSON object with the timings instead of the live story.
    #[arg(long)]
    json: bool,
}

/// How long any one step may take before the demo gives up.
const STEP_DEADLINE: Duration = Duration::from_secs(40);

/// The timings the demo measured, in seconds.
#[derive(Serialize, Debug)]
struct Timings {
    nodes: usize,
    profile: Profile,
    formed_s: f64,
    kv_all_s: f64,
    suspect_s: f64,
    detect_s: f64,
    rejoin_s: f64,
    incarnation_before: u64,
    incarnation_after: u64,
    total_s: f64,
}

/// Runs the demo; an error means a step did not happen.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !(3..=64).contains(&args.nodes) {
        bail!("--nodes must be between 3 and 64 (got {})", args.nodes);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let timings = runtime.block_on(demo(args.nodes, args.profile, !args.json))?;
    if args.json {
        println!("{}", serde_json::to_string(&timings)?);
    } else {
        println!();
        println!(
            "summary ({} nodes, {} profile, every byte between nodes over QUIC + mutual TLS 1.3)",
            timings.nodes, timings.profile
        );
        println!("  cluster formed            {:>6.2} s", timings.formed_s);
        println!("  key/value on every node   {:>6.2} s", timings.kv_all_s);
        println!("  crash first suspected     {:>6.2} s", timings.suspect_s);
        println!("  crash dead everywhere     {:>6.2} s", timings.detect_s);
        println!(
            "  restart alive everywhere  {:>6.2} s  (incarnation {} -> {})",
            timings.rejoin_s, timings.incarnation_before, timings.incarnation_after
        );
        println!("  whole demo                {:>6.2} s", timings.total_s);
    }
    Ok(())
}

struct Story {
    live: bool,
    started: Instant,
}

impl Story {
    fn say(&self, text: impl AsRef<str>) {
        if self.live {
            println!(
                "[{:>6.2}s] {}",
                self.started.elapsed().as_secs_f64(),
                text.as_ref()
            );
        }
    }

    fn spinner(&self, what: &str) -> ProgressBar {
        let bar = if self.live {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("         {spinner} {msg} ({elapsed})")
                .expect("template is valid"),
        );
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }
}

async fn demo(n: usize, profile: Profile, live: bool) -> anyhow::Result<Timings> {
    let protocol = profile.config();
    let story = Story {
        live,
        started: Instant::now(),
    };
    let dir = tempfile::tempdir()
        .context("cannot make a temporary directory for the demo certificates")?;
    let names: Vec<NodeName> = (1..=n)
        .map(|i| NodeName::new(format!("node-{i}")).expect("valid name"))
        .collect();
    tls::init_ca_dir(dir.path())?;
    for name in &names {
        tls::issue_to_dir(dir.path(), name, &[Ipv4Addr::LOCALHOST.into()], 1)?;
    }
    story.say(format!(
        "made a cluster CA and {n} node certificates in {}",
        dir.path().display()
    ));

    // 1. The cluster forms: every node joins through the first.
    let t0 = Instant::now();
    let mut nodes = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let seeds = nodes
            .first()
            .map(|first: &Node| vec![first.addr()])
            .unwrap_or_default();
        let node = start_node(dir.path(), name, seeds, &protocol).await?;
        if i == 0 {
            story.say(format!(
                "{name} listening on {} (QUIC, mutual TLS 1.3)",
                node.addr()
            ));
        }
        nodes.push(node);
    }
    story.say(format!(
        "started {n} nodes on 127.0.0.1; waiting for each to see all {n} alive"
    ));
    let bar = story.spinner("forming the cluster");
    wait_views("every node sees every node alive", &nodes, &bar, |m| {
        alive(m) == n
    })
    .await?;
    bar.finish_and_clear();
    let formed_s = t0.elapsed().as_secs_f64();
    story.say(format!(
        "cluster formed: {n} of {n} nodes alive on every node ({formed_s:.2} s)"
    ));

    // 2. A key set on one node arrives on every node.
    let writer = &nodes[0];
    let value = format!(
        "hello from {} at {:.3}",
        writer.name(),
        story.started.elapsed().as_secs_f64()
    );
    let t1 = Instant::now();
    writer.set("greeting", value.clone().into_bytes()).await?;
    story.say(format!("{} set greeting = {value:?}", writer.name()));
    let bar = story.spinner("spreading the key");
    let owner = writer.name().clone();
    within("the key to reach every node", &bar, async {
        loop {
            let mut all = true;
            for node in &nodes {
                all &= node.get(&owner, "greeting").await?.as_deref() == Some(value.as_bytes());
            }
            if all {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    bar.finish_and_clear();
    let kv_all_s = t1.elapsed().as_secs_f64();
    story.say(format!(
        "every node reads {owner}/greeting ({kv_all_s:.3} s)"
    ));

    // 3. A node crashes (no goodbye): the others suspect it, then declare it dead.
    let victim = nodes.pop().expect("at least three nodes");
    let victim_name = victim.name().clone();
    let incarnation_before =
        member_of(&nodes[0].members().await?, &victim_name).map_or(0, |m| m.incarnation.0);
    let mut watch = nodes[0].events();
    let t2 = Instant::now();
    victim.shutdown().await;
    story.say(format!("crashed {victim_name} (stopped without leaving)"));
    let bar = story.spinner(&format!("waiting for the others to notice {victim_name}"));
    let suspect_name = victim_name.clone();
    let suspect_s = within("a suspicion of the crashed node", &bar, async {
        loop {
            match watch.recv().await {
                Ok(Event::Suspect(m)) | Ok(Event::Dead(m)) if m.name == suspect_name => {
                    return Ok(t2.elapsed().as_secs_f64());
                }
                Ok(_) => {}
                Err(e) => bail!("event stream: {e}"),
            }
        }
    })
    .await?;
    story.say(format!(
        "{} suspects {victim_name} ({suspect_s:.2} s)",
        nodes[0].name()
    ));
    bar.set_message(format!(
        "waiting for {victim_name} to be declared dead everywhere"
    ));
    wait_views(
        "the crashed node dead on every other node",
        &nodes,
        &bar,
        |m| member_of(m, &victim_name).is_some_and(|v| v.state == State::Dead),
    )
    .await?;
    bar.finish_and_clear();
    let detect_s = t2.elapsed().as_secs_f64();
    story.say(format!(
        "{victim_name} is dead on all {} other nodes ({detect_s:.2} s)",
        nodes.len()
    ));

    // 4. It restarts with the same name and no state, and is alive again everywhere.
    let t3 = Instant::now();
    let back = start_node(dir.path(), &victim_name, vec![nodes[0].addr()], &protocol).await?;
    story.say(format!(
        "restarted {victim_name} on {} with no state",
        back.addr()
    ));
    nodes.push(back);
    let bar = story.spinner(&format!("waiting for {victim_name} to be alive everywhere"));
    wait_views("the restarted node alive everywhere", &nodes, &bar, |m| {
        alive(m) == n
            && member_of(m, &victim_name).is_some_and(|v| v.incarnation.0 > incarnation_before)
    })
    .await?;
    bar.finish_and_clear();
    let rejoin_s = t3.elapsed().as_secs_f64();
    let incarnation_after =
        member_of(&nodes[0].members().await?, &victim_name).map_or(0, |m| m.incarnation.0);
    story.say(format!(
        "{victim_name} alive again on every node with incarnation {incarnation_after} (was {incarnation_before}) ({rejoin_s:.2} s)"
    ));

    // All at once: a node leaving after its peers left would wait on requests to them.
    let leaving: Vec<_> = nodes
        .iter()
        .cloned()
        .map(|node| tokio::spawn(async move { node.leave().await }))
        .collect();
    for task in leaving {
        task.await.context("a leaving node's task failed")??;
    }
    story.say("every node left gracefully; removing the temporary certificates");
    drop(dir);
    Ok(Timings {
        nodes: n,
        profile,
        formed_s,
        kv_all_s,
        suspect_s,
        detect_s,
        rejoin_s,
        incarnation_before,
        incarnation_after,
        total_s: story.started.elapsed().as_secs_f64(),
    })
}

async fn start_node(
    dir: &Path,
    name: &NodeName,
    seeds: Vec<SocketAddr>,
    protocol: &ValidConfig,
) -> anyhow::Result<Node> {
    // `certs issue` puts each node's files in a directory of its own.
    let dir = dir.join(name.as_str());
    let identity = Identity::load(
        &dir.join("ca.pem"),
        &dir.join(format!("{name}.pem")),
        &dir.join(format!("{name}-key.pem")),
    )?;
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = NodeConfig {
        protocol: protocol.clone(),
        ..NodeConfig::new(identity, bind, seeds)
    };
    Node::start(config)
        .await
        .with_context(|| format!("cannot start {name}"))
}

fn alive(members: &[Member]) -> usize {
    members.iter().filter(|m| m.state == State::Alive).count()
}

fn member_of<'a>(members: &'a [Member], name: &NodeName) -> Option<&'a Member> {
    members.iter().find(|m| m.name == *name)
}

/// Runs `step` with the demo's deadline; a timeout names the step.
async fn within<T>(
    what: &str,
    bar: &ProgressBar,
    step: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(STEP_DEADLINE, step).await {
        Ok(result) => result,
        Err(_) => {
            bar.finish_and_clear();
            bail!(
                "demo failed: {what} did not happen within {} s",
                STEP_DEADLINE.as_secs()
            )
        }
    }
}

/// Polls every node's member list until `cond` holds on all of them.
async fn wait_views(
    what: &str,
    nodes: &[Node],
    bar: &ProgressBar,
    cond: impl Fn(&[Member]) -> bool,
) -> anyhow::Result<()> {
    within(what, bar, async {
        loop {
            let mut done = 0;
            for node in nodes {
                if cond(&node.members().await?) {
                    done += 1;
                }
            }
            if done == nodes.len() {
                return Ok(());
            }
            bar.set_message(format!("{what}: {done} of {} nodes so far", nodes.len()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}
