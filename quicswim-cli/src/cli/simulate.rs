//! `quicswim simulate`: a whole cluster in virtual time.

use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use quicswim::protocol::Profile;
use quicswim_proto::sim::{
    KvWorkload, NetworkConfig, PartitionPlan, Report, SimConfig, Simulation,
};

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
    /// Nodes start one after another over this window, each joining through up to three
    /// nodes already started (0s: all at the same instant, still one after another).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    join_spread: Duration,
    /// Virtual time to simulate.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    duration: Duration,
    /// Metadata updates injected (one per second from 15 s) to time dissemination.
    #[arg(long, default_value_t = 5)]
    updates: usize,
    /// Protocol preset.
    #[arg(long, default_value = "lan", value_parser = super::profile_parser())]
    profile: Profile,
    /// Nodes that write key/value entries (0: no key/value workload).
    #[arg(long, default_value_t = 0)]
    kv_writers: usize,
    /// Key/value writes per second over the cluster.
    #[arg(long, default_value_t = 100.0)]
    kv_rate: f64,
    /// When key/value writes start.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    kv_from: Duration,
    /// When key/value writes stop (the run should go on, quiet, after it).
    #[arg(long, value_parser = parse_duration, default_value = "40s")]
    kv_until: Duration,
    /// Keys each writer cycles through.
    #[arg(long, default_value_t = 20)]
    kv_keys: usize,
    /// Share of key/value writes that are deletes.
    #[arg(long, default_value_t = 0.2)]
    kv_deletes: f64,
    /// Key/value value length in bytes.
    #[arg(long, default_value_t = 32)]
    kv_value_len: usize,
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
    let protocol = args.profile.config();
    let kv = (args.kv_writers > 0).then(|| KvWorkload {
        writers: args.kv_writers.min(args.nodes),
        writes_per_s: args.kv_rate,
        from: args.kv_from,
        until: args.kv_until,
        keys_per_writer: args.kv_keys,
        delete_fraction: args.kv_deletes,
        value_len: args.kv_value_len,
    });
    if kv.is_some() && args.kv_value_len > protocol.kv.value_len_max {
        bail!(
            "--kv-value-len {} is over the value limit of {} bytes",
            args.kv_value_len,
            protocol.kv.value_len_max
        );
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let config = SimConfig {
        protocol,
        network: NetworkConfig {
            loss: args.loss,
            duplication: args.duplication,
            ..NetworkConfig::default()
        },
        join_spread: args.join_spread,
        crashes: args.crash,
        crash_at: args.crash_at,
        restart_after: args.restart_after,
        partition,
        updates: args.updates,
        duration: args.duration,
        kv,
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
    if r.kv_writes > 0 {
        println!(
            "  key/value               {} writes, {} live keys, states agree: {}, match last writes: {}",
            r.kv_writes, r.kv_live_keys, r.kv_states_agree, r.kv_matches_writes
        );
    }
    println!(
        "  anti-entropy            {} exchanges, {:.1} KB each on average, {} entries synced",
        r.push_pulls,
        r.anti_entropy_bytes as f64 / r.push_pulls.max(1) as f64 / 1e3,
        r.kv_entries_synced
    );
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
