//! `quicswim simulate`: a whole cluster in virtual time.

use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use quicswim::protocol::Profile;
use quicswim_proto::sim::{
    Direction, FaultPlan, FlapPlan, GrayPlan, KvWorkload, NetworkConfig, PartitionPlan, Report,
    SimConfig, Simulation, StallPlan,
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
    /// Each link's minimum latency, drawn once per link from this range, as `1ms..20ms`
    /// (an exponential tail with a mean of 2 ms comes on top). Default: 1 ms for every link.
    #[arg(long, value_parser = parse_latency_range)]
    latency: Option<(Duration, Duration)>,
    /// When the gray failures below start; they last to the end of the run.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    faults_at: Duration,
    /// When the gray failures end (default: they last to the end of the run).
    #[arg(long, value_parser = parse_duration)]
    faults_until: Option<Duration>,
    /// Share of nodes that are gray: they lose --gray-loss of their packets (0.0..1.0).
    #[arg(long)]
    gray: Option<f64>,
    /// The gray nodes' loss rate, 0.0..=1.0.
    #[arg(long, default_value_t = 0.8)]
    gray_loss: f64,
    /// Which of the gray nodes' packets are lost: both, ingress or egress.
    #[arg(long, default_value = "both", value_parser = parse_direction)]
    gray_direction: Direction,
    /// Nodes whose ingress loss flips between 100 % and 0 % every --flap-period.
    #[arg(long, default_value_t = 0)]
    flap: usize,
    /// How long each flapping state lasts.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    flap_period: Duration,
    /// Share of nodes that stall (stop handling anything) for --stall-for every --stall-every.
    #[arg(long)]
    stall: Option<f64>,
    /// How long a stall lasts.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    stall_for: Duration,
    /// How often a stalling node stalls (each on its own phase).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    stall_every: Duration,
    /// Links to cut, each between two healthy nodes that still reach every other node.
    #[arg(long, default_value_t = 0)]
    cut_links: usize,
    /// Rogue members: valid members (the last nodes) that also send forged records and
    /// messages of every kind to honest members throughout the run.
    #[arg(long, default_value_t = 0)]
    rogue: usize,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

fn parse_latency_range(text: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not a range like 1ms..20ms"))?;
    let (lo, hi) = (parse_duration(lo)?, parse_duration(hi)?);
    if lo.is_zero() || hi < lo {
        return Err(format!(
            "{text:?}: the range must start above zero and end at or after its start"
        ));
    }
    Ok((lo, hi))
}

fn parse_direction(text: &str) -> Result<Direction, String> {
    match text {
        "both" => Ok(Direction::Both),
        "ingress" => Ok(Direction::Ingress),
        "egress" => Ok(Direction::Egress),
        _ => Err(format!("{text:?} is not one of both, ingress, egress")),
    }
}

/// The gray failures the flags ask for, or `None` when they ask for none.
fn fault_plan(args: &SimulateArgs) -> anyhow::Result<Option<FaultPlan>> {
    for (flag, share) in [("--gray", args.gray), ("--stall", args.stall)] {
        if let Some(f) = share.filter(|f| !(*f > 0.0 && *f < 1.0)) {
            bail!("{flag} must be in (0.0, 1.0) (got {f})");
        }
    }
    if !(0.0..=1.0).contains(&args.gray_loss) {
        bail!("--gray-loss must be in 0.0..=1.0 (got {})", args.gray_loss);
    }
    if args.faults_until.is_some_and(|u| u <= args.faults_at) {
        bail!("--faults-until must come after --faults-at");
    }
    if args.flap_period.is_zero() {
        bail!("--flap-period must be above zero");
    }
    if args.stall_every.is_zero() || args.stall_for >= args.stall_every {
        bail!("--stall-for must be shorter than --stall-every, and both above zero");
    }
    let faulty = args.gray.map_or(0.0, |f| f * args.nodes as f64).ceil() as usize
        + args.flap
        + args.stall.map_or(0.0, |f| f * args.nodes as f64).ceil() as usize;
    if faulty + args.crash + 2 * args.cut_links > args.nodes {
        bail!(
            "--gray, --flap, --stall, --crash and --cut-links ask for more nodes than --nodes ({})",
            args.nodes
        );
    }
    let plan = FaultPlan {
        gray: args.gray.map(|fraction| GrayPlan {
            fraction,
            loss: args.gray_loss,
            direction: args.gray_direction,
        }),
        flap: (args.flap > 0).then_some(FlapPlan {
            nodes: args.flap,
            period: args.flap_period,
        }),
        stall: args.stall.map(|fraction| StallPlan {
            fraction,
            stall_for: args.stall_for,
            every: args.stall_every,
        }),
        cut_links: args.cut_links,
        until: args.faults_until,
        ..FaultPlan::starting_at(args.faults_at)
    };
    let any = plan.gray.is_some() || plan.flap.is_some() || plan.stall.is_some();
    Ok((any || plan.cut_links > 0).then_some(plan))
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
    if args.rogue + args.crash >= args.nodes {
        bail!(
            "--rogue plus --crash must be below --nodes ({} + {} >= {})",
            args.rogue,
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
    let faults = fault_plan(&args)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let defaults = NetworkConfig::default();
    let (latency_min, latency_link_max) = args
        .latency
        .unwrap_or((defaults.latency_min, Duration::ZERO));
    let config = SimConfig {
        protocol,
        network: NetworkConfig {
            loss: args.loss,
            duplication: args.duplication,
            latency_min,
            latency_link_max,
            ..defaults
        },
        join_spread: args.join_spread,
        crashes: args.crash,
        crash_at: args.crash_at,
        restart_after: args.restart_after,
        partition,
        updates: args.updates,
        duration: args.duration,
        kv,
        faults,
        rogue: args.rogue,
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
        "  dissemination (max)     {}, median {}  ({}/{} updates reached every live node)",
        secs(r.dissemination_max_s),
        secs(r.dissemination_p50_s),
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
    if r.rogues > 0 {
        println!(
            "  rogue members           {}: {} forgeries sent, {} refusals counted, {} accepted",
            r.rogues, r.forged_sent, r.forged_refused, r.forged_accepted
        );
        for example in &r.forged_accepted_examples {
            println!("    accepted: {example}");
        }
    }
    if r.faulty > 0 {
        println!(
            "  faulty nodes            {}: {} declared Dead, all Dead everywhere after {}, at most {} state changes and {} returns each",
            r.faulty,
            r.health.faulty_declared_dead,
            secs(r.health.faulty_dead_everywhere_max_s),
            r.health.faulty_state_changes_max,
            r.health.faulty_returns_max
        );
    }
    println!(
        "  healthy members         {} suspected, {} declared Dead, {} state changes seen",
        r.health.healthy_suspected, r.health.healthy_declared_dead, r.health.healthy_state_changes
    );
    println!(
        "  healthy views agree     since {} ({:.2} membership changes per healthy node after the faults)",
        secs(r.health.healthy_views_agree_s),
        r.health.membership_changes_per_healthy_node
    );
    if r.kv_writes > 0 {
        println!(
            "  key/value               {} writes ({} refused as backlogged), {} live keys, states agree: {}, match last writes: {}",
            r.kv_writes, r.kv_writes_backlogged, r.kv_live_keys, r.kv_states_agree, r.kv_matches_writes
        );
    }
    println!(
        "  anti-entropy            {} exchanges, {:.1} KB each on average, {} entries synced",
        r.push_pulls,
        r.anti_entropy_bytes as f64 / r.push_pulls.max(1) as f64 / 1e3,
        r.kv_entries_synced
    );
    println!(
        "  certificates            {} learned, {} records arrived before their signer's",
        r.certificates_learned, r.unverified_records
    );
    println!(
        "  fetches                 {:.1} MB of record and certificate requests and replies",
        r.fetch_bytes as f64 / 1e6
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
