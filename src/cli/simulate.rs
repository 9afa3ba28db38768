//! `quicswim simulate`: a whole cluster in virtual time.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use quicswim::protocol::Config;
use quicswim::sim::{NetworkConfig, PartitionPlan, Report, SimConfig, Simulation};

use super::parse_duration;

/// Arguments of `quicswim simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Seed for every random choice (default: random, printed so the run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Datagram loss probability, 0.0..1.0.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Datagram duplication probability, 0.0..1.0.
    #[arg(long, default_value_t = 0.0)]
    duplication: f64,
    /// Nodes to crash (without leaving) at --crash-at.
    #[arg(long, default_value_t = 0)]
    crash: usize,
    /// When the crashes happen.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    crash_at: Duration,
    /// Restart crashed nodes (with no state) this long after they crash.
    #[arg(long, value_parser = parse_duration)]
    restart_after: Option<Duration>,
    /// Split off this fraction of the nodes (0.0..1.0) at --partition-at until --heal-at.
    #[arg(long)]
    partition: Option<f64>,
    /// When the partition starts.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    partition_at: Duration,
    /// When the partition heals.
    #[arg(long, value_parser = parse_duration, default_value = "90s")]
    heal_at: Duration,
    /// Virtual time to simulate.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    duration: Duration,
    /// Metadata updates injected (one per second from 15 s) to time dissemination.
    #[arg(long, default_value_t = 5)]
    updates: usize,
    /// Protocol preset: lan, wan or local.
    #[arg(long, default_value = "lan")]
    profile: String,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Runs the simulation and prints its figures.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.nodes < 2 {
        bail!("--nodes must be at least 2 (got {})", args.nodes);
    }
    for (flag, p) in [("--loss", args.loss), ("--duplication", args.duplication)] {
        if !(0.0..1.0).contains(&p) {
            bail!("{flag} must be in 0.0..1.0 (got {p})");
        }
    }
    if args.crash >= args.nodes {
        bail!(
            "--crash must be below --nodes ({} >= {})",
            args.crash,
            args.nodes
        );
    }
    let partition = match args.partition {
        Some(f) if !(f > 0.0 && f < 1.0) => bail!("--partition must be in (0.0, 1.0) (got {f})"),
        Some(_) if args.heal_at <= args.partition_at => {
            bail!("--heal-at must come after --partition-at")
        }
        Some(fraction) => Some(PartitionPlan {
            fraction,
            at: args.partition_at,
            heal_at: args.heal_at,
        }),
        None => None,
    };
    let protocol = Config::preset(&args.profile).context("--profile")?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let config = SimConfig {
        protocol,
        network: NetworkConfig {
            loss: args.loss,
            duplication: args.duplication,
            ..NetworkConfig::default()
        },
        crashes: args.crash,
        crash_at: args.crash_at,
        restart_after: args.restart_after,
        partition,
        updates: args.updates,
        duration: args.duration,
        ..SimConfig::new(args.nodes, seed)
    };
    let bar = ProgressBar::new(args.duration.as_secs());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} simulating {msg} [{bar:40}] {pos}/{len} virtual s ({elapsed})",
        )
        .expect("template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(format!("{} nodes, seed {seed}", args.nodes));
    let started = Instant::now();
    let mut report = Simulation::new(config, started).run(|t| bar.set_position(t.as_secs()));
    bar.finish_and_clear();
    report.wall_s = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_human(&report);
    }
    Ok(())
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_string(), |s| format!("{s:.2} s"))
}

fn print_human(r: &Report) {
    println!(
        "simulated {} nodes for {:.0} virtual s (seed {})",
        r.nodes, r.duration_s, r.seed
    );
    println!("  join converged          {}", secs(r.join_converged_s));
    println!(
        "  dissemination (max)     {}  ({}/{} updates reached every live node)",
        secs(r.dissemination_max_s),
        r.updates_disseminated,
        r.updates
    );
    if r.crashes > 0 {
        println!(
            "  crash detected by all   {}  ({}/{} crashes)",
            secs(r.detect_all_max_s),
            r.crashes_detected,
            r.crashes
        );
    }
    println!("  false positives         {}", r.false_positives);
    println!(
        "  final views agree       {} (correct: {})",
        r.final_views_agree, r.final_views_correct
    );
    println!(
        "  {} steps, {:.1} MB of datagrams, {:.2} s of wall time",
        r.steps,
        r.datagram_bytes as f64 / 1e6,
        r.wall_s
    );
}
