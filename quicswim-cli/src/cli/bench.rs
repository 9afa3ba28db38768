//! `quicswim bench`: whole-cluster figures from real nodes in this process. Arguments and
//! output only; the measuring is in `crate::bench`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::bench::{self, steady_warmup, steady_window, BenchConfig, BenchReport, Observer, Phase};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use quicswim::protocol::Profile;
use quicswim::transport::TransportConfig;

use super::parse_duration;

/// Arguments of `quicswim bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Nodes in the cluster (each a QUIC endpoint with mutual TLS on 127.0.0.1).
    #[arg(long, default_value_t = 32)]
    nodes: usize,
    /// Nodes started first, that the others join through.
    #[arg(long, default_value_t = 1)]
    seeds: usize,
    /// Protocol preset.
    #[arg(long, default_value = "lan", value_parser = super::profile_parser())]
    profile: Profile,
    /// Metadata updates timed in the broadcast phase.
    #[arg(long, default_value_t = 10)]
    updates: usize,
    /// Wait after the join before the steady window. Default: one probe pass (2 x (nodes - 1) x
    /// probe_interval) and at least 15 s, so join-time exchanges are over, periodic ones
    /// have begun, and every node has probed, hence connected to, every member once.
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Length of the steady-state window. Default: one periodic full-state exchange
    /// interval at this size (lan: 30 s up to 32 nodes, 90 s at 128, 120 s at 256), so each
    /// node's exchange counts once, at its average rate.
    #[arg(long, value_parser = parse_duration)]
    steady: Option<Duration>,
    /// Length of the key/value write window (0s skips the phase).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    kv_window: Duration,
    /// Key/value writes per second over the cluster.
    #[arg(long, default_value_t = 5000.0)]
    kv_rate: f64,
    /// Bytes of each written value.
    #[arg(long, default_value_t = 16)]
    kv_value_len: usize,
    /// How long deliveries are waited for after the write window.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    kv_drain: Duration,
    /// Pushback: how far a node's own writes may be behind before it refuses more
    /// (`kv_backlog_max`; 0s never refuses). Default: the profile's.
    #[arg(long, value_parser = parse_duration)]
    kv_backlog_max: Option<Duration>,
    /// Bound on each open-ended wait (join, one update, detection).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    timeout: Duration,
    /// Transport: close a connection after this long without traffic (QUIC idle timeout
    /// and the pool's idle sweep). Default: the transport's.
    #[arg(long, value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// Transport: QUIC keep-alive interval, below --idle-timeout. Default: the transport's
    /// (none).
    #[arg(long, value_parser = parse_duration)]
    keep_alive: Option<Duration>,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
    /// Also write raw samples (CSV), plots (SVG) and the report (JSON) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One progress bar per phase on stderr; when stderr is not a terminal, one line per
/// finished phase instead.
struct Progress {
    bar: Mutex<Option<ProgressBar>>,
    terminal: bool,
}

/// Steps of a bar, for phases that know how far through they are.
const BAR_STEPS: u64 = 1000;

impl Observer for Progress {
    fn phase_started(&self, phase: Phase, planned: Option<Duration>) {
        if !self.terminal {
            return;
        }
        let bar = match planned {
            Some(_) => ProgressBar::new(BAR_STEPS).with_style(
                ProgressStyle::with_template("{spinner} {prefix:>9} [{bar:30}] {msg} ({elapsed})")
                    .expect("template is valid")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {prefix:>9} {msg} ({elapsed})")
                    .expect("template is valid"),
            ),
        };
        bar.set_prefix(phase.as_str());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn phase_progress(&self, _phase: Phase, fraction: Option<f64>, status: &str) {
        if let Some(bar) = self.bar.lock().ok().and_then(|b| b.clone()) {
            if let Some(f) = fraction {
                bar.set_position((f.clamp(0.0, 1.0) * BAR_STEPS as f64) as u64);
            }
            bar.set_message(status.to_string());
        }
    }

    fn phase_finished(&self, phase: Phase, summary: &str) {
        let bar = self.bar.lock().ok().and_then(|mut b| b.take());
        match bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("  {prefix:>9} {msg}").expect("template is valid"),
                );
                bar.finish_with_message(summary.to_string());
            }
            None => eprintln!("{:>9}: {summary}", phase.as_str()),
        }
    }
}

/// Runs the benchmark and prints its figures.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    // Nodes' logs only when asked for: they would run through the progress bar.
    if std::env::var_os("RUST_LOG").is_some() {
        super::agent::init_logging(super::agent::LogFormat::Text)?;
    }
    let mut protocol = args.profile.config();
    if let Some(max) = args.kv_backlog_max {
        protocol = quicswim::protocol::Config {
            kv_backlog_max: max,
            ..protocol.into_inner()
        }
        .validate()
        .map_err(|e| anyhow::anyhow!("--kv-backlog-max: {e}"))?;
    }
    let warmup = args
        .warmup
        .unwrap_or_else(|| steady_warmup(args.nodes, &protocol));
    let steady = args
        .steady
        .unwrap_or_else(|| steady_window(args.nodes, &protocol));
    let config = BenchConfig {
        seeds: args.seeds,
        profile: args.profile,
        protocol,
        transport: {
            let defaults = TransportConfig::default();
            // Every node of the bench shares 127.0.0.1, and the limits on strangers' handshakes
            // are per IP address, sized for one host: scaled here so the whole cluster
            // starting at once is not taken for one host's flood.
            let nodes = u32::try_from(args.nodes).unwrap_or(u32::MAX);
            // At most max_connections, which the transport's config requires.
            let handshakes_in_max = defaults
                .handshakes_in_max
                .max(args.nodes)
                .min(defaults.max_connections);
            TransportConfig {
                idle_timeout: args.idle_timeout.unwrap_or(defaults.idle_timeout),
                keep_alive: args.keep_alive.or(defaults.keep_alive),
                handshakes_per_ip_rate: defaults.handshakes_per_ip_rate.saturating_mul(nodes),
                handshakes_per_ip_burst: defaults.handshakes_per_ip_burst.saturating_mul(nodes),
                handshakes_in_max,
                handshakes_per_ip_open_max: handshakes_in_max,
                ..defaults
            }
        },
        updates: args.updates,
        warmup,
        steady,
        kv_window: args.kv_window,
        kv_rate: args.kv_rate,
        kv_value_len: args.kv_value_len,
        kv_drain: args.kv_drain,
        phase_timeout: args.timeout,
        ..BenchConfig::new(args.nodes)
    };
    config.validate()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        runtime.worker_threads(threads);
    }
    let runtime = runtime.build().context("cannot start the runtime")?;
    let progress = Progress {
        bar: Mutex::new(None),
        terminal: std::io::stderr().is_terminal(),
    };
    let outcome = runtime.block_on(bench::run(&config, &progress))?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Some(dir) = &args.out {
        let files = outcome.write_dir(dir)?;
        eprintln!("wrote {} files to {}", files.len(), dir.display());
    }
    if args.json {
        println!("{}", serde_json::to_string(&outcome.report)?);
    } else {
        print_human(&outcome.report);
    }
    Ok(())
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_string(), |s| format!("{s:.3} s"))
}

fn print_human(r: &BenchReport) {
    println!(
        "{} nodes ({} seed(s)), {} profile, {} CPUs, QUIC + mutual TLS on 127.0.0.1",
        r.nodes, r.seeds, r.profile, r.cpus
    );
    println!("  join converged            {}", secs(r.join_converged_s));
    println!(
        "  broadcast to all          p50 {}  p90 {}  max {}  ({}/{} updates)",
        secs(r.broadcast_all_p50_s),
        secs(r.broadcast_all_p90_s),
        secs(r.broadcast_all_max_s),
        r.broadcast.completed,
        r.broadcast.updates
    );
    println!(
        "  crash detected            first suspect {}  Dead everywhere {}",
        secs(r.detect_first_suspect_s),
        secs(r.detect_all_s)
    );
    let s = &r.steady;
    println!(
        "  steady, per node per s    {:.3} ms CPU  {:.0} B on the wire in {:.1} packets; payload {:.0} B ({:.0} B datagrams, {:.0} B anti-entropy) in {:.1} datagrams",
        s.cpu_ms_per_node_s,
        s.wire_bytes_out_per_node_s,
        s.packets_out_per_node_s,
        s.payload_bytes_out_per_node_s,
        s.datagram_bytes_out_per_node_s,
        s.anti_entropy_bytes_out_per_node_s,
        s.datagrams_out_per_node_s
    );
    if let Some(kv) = &r.kv {
        println!(
            "  key/value                 {} writes at {:.0}/s (target {:.0}/s): {} on every node, {}/s delivered to all",
            kv.writes,
            kv.write_rate,
            kv.target_rate,
            kv.delivered_all,
            kv.updates_per_s
                .map_or_else(|| "none".to_string(), |v| format!("{v:.0}"))
        );
        println!(
            "  key/value lag             p50 {}  p99 {}  max {}  ({} pairs never delivered)",
            secs(kv.lag_p50_s),
            secs(kv.lag_p99_s),
            secs(kv.lag_max_s),
            kv.pairs_missing
        );
    }
    println!(
        "  false suspicions          {}   events missed by listeners {}",
        r.false_suspicions, r.events_lost
    );
    println!("  wall time                 {:.1} s", r.wall_s);
}
