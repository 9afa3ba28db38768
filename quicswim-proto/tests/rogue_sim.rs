//! Seeded simulations with a rogue member: a valid member whose core runs normally and
//! that, in addition, sends forgeries of every kind (claims, accusations, incarnation pushes,
//! key/value entries, user events, Acks, Nacks, PingReqs, certificates, garbage) to honest
//! members all run long, and answers probes of a crashed member in its stead.
//!
//! Each assertion message starts with the seed and the `quicswim simulate` flags that replay
//! the run. `QUICSWIM_SIM_SEEDS=7,8,9` runs other seeds.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

use std::time::{Duration, Instant};

use quicswim_proto::sim::rogue::ATTACKS;
use quicswim_proto::sim::{KvWorkload, Report, SimConfig, Simulation};

/// Slowest acceptable time for a crash to be held Dead by every live node (as in `sim.rs`).
const DETECTION_BOUND_S: f64 = 20.0;

fn seeds() -> Vec<u64> {
    match std::env::var("QUICSWIM_SIM_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("QUICSWIM_SIM_SEEDS is a comma list of u64")
            })
            .collect(),
        Err(_) => vec![11, 12],
    }
}

/// 80 nodes for 150 virtual seconds, one crash at 30 s, key/value writes from ten owners.
fn config(seed: u64, rogue: usize) -> SimConfig {
    SimConfig {
        crashes: 1,
        crash_at: Duration::from_secs(30),
        duration: Duration::from_secs(150),
        kv: Some(KvWorkload {
            writers: 10,
            writes_per_s: 5.0,
            from: Duration::from_secs(5),
            until: Duration::from_secs(100),
            keys_per_writer: 4,
            delete_fraction: 0.2,
            value_len: 16,
        }),
        rogue,
        ..SimConfig::new(80, seed)
    }
}

fn replay(c: &SimConfig) -> String {
    format!(
        "seed {}: quicswim simulate --nodes {} --seed {} --rogue {} --crash 1 --duration 150s \
         --kv-writers 10 --kv-rate 5 --kv-from 5s --kv-until 100s --kv-keys 4 --kv-deletes 0.2 \
         --kv-value-len 16",
        c.seed, c.nodes, c.seed, c.rogue
    )
}

fn run(config: SimConfig) -> Report {
    Simulation::new(config, Instant::now()).run(|_| {})
}

/// What must hold of a run, rogue or not: no honest member declared Dead, honest views
/// agree and are right, key/value state converged on the writes, the crash detected in time.
fn assert_honest_figures(ctx: &str, r: &Report) {
    assert_eq!(r.false_positives, 0, "{ctx}: false positives\n{r:#?}");
    assert!(r.final_views_agree, "{ctx}: honest views differ\n{r:#?}");
    assert!(
        r.final_views_correct,
        "{ctx}: views not the live nodes\n{r:#?}"
    );
    assert!(r.kv_states_agree, "{ctx}: key/value states differ\n{r:#?}");
    assert!(r.kv_matches_writes, "{ctx}: key/value writes lost\n{r:#?}");
    assert_eq!(r.crashes_detected, 1, "{ctx}: crash not detected\n{r:#?}");
    let detect = r.detect_all_max_s.expect("detected");
    assert!(
        detect <= DETECTION_BOUND_S,
        "{ctx}: crash detection took {detect:.2} s (bound {DETECTION_BOUND_S} s)\n{r:#?}"
    );
}

#[test]
fn rogue_member_forgeries_are_all_refused_and_change_no_figure() {
    for seed in seeds() {
        let c = config(seed, 1);
        let ctx = replay(&c);
        let r = run(c);
        assert_eq!(r.rogues, 1, "{ctx}");
        assert!(
            r.forged_sent >= 5 * ATTACKS,
            "{ctx}: the rogue sent only {} forgeries\n{r:#?}",
            r.forged_sent
        );
        assert_eq!(
            r.forged_accepted, 0,
            "{ctx}: honest nodes took in forgeries: {:?}\n{r:#?}",
            r.forged_accepted_examples
        );
        // Lost datagrams aside (none on this network), every forgery is refused and counted
        // by its victim, some several times (one record per refusal).
        assert!(
            r.forged_refused >= r.forged_sent,
            "{ctx}: {} forgeries sent, only {} refusals counted\n{r:#?}",
            r.forged_sent,
            r.forged_refused
        );
        assert_honest_figures(&ctx, &r);
    }
}

#[test]
fn run_without_rogue_has_the_same_honest_figures() {
    for seed in seeds() {
        let c = config(seed, 0);
        let ctx = replay(&c);
        let r = run(c);
        assert_eq!(
            (r.rogues, r.forged_sent, r.forged_refused, r.forged_accepted),
            (0, 0, 0, 0),
            "{ctx}"
        );
        assert_honest_figures(&ctx, &r);
    }
}
