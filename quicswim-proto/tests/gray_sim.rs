//! Gray failures, CI-sized: the fault scenarios of the Rapid paper (USENIX ATC 2018) and of
//! Lifeguard on 100 nodes with the lan preset, over a few virtual minutes. The full-size
//! figures (1,000 nodes, 10 virtual minutes) are in BENCHMARKS.md.
//!
//! Each assertion message starts with the seed and the `quicswim simulate` flags that replay
//! the run; `QUICSWIM_SIM_SEEDS=7,8` runs other seeds than the default ones.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

use std::time::{Duration, Instant};

use quicswim_proto::sim::{
    Direction, FaultPlan, FlapPlan, GrayPlan, Report, SimConfig, Simulation, StallPlan,
};

const NODES: usize = 100;
/// Faults start once the cluster has long converged (it takes about 1 s at this size).
const FAULTS_AT: Duration = Duration::from_secs(20);

fn seeds() -> Vec<u64> {
    std::env::var("QUICSWIM_SIM_SEEDS").map_or_else(
        |_| vec![1, 2],
        |list| {
            list.split(',')
                .map(|s| s.trim().parse().expect("QUICSWIM_SIM_SEEDS lists u64s"))
                .collect()
        },
    )
}

/// A run of `NODES` nodes for `secs` virtual seconds with `faults`.
fn config(seed: u64, secs: u64, faults: FaultPlan) -> SimConfig {
    SimConfig {
        duration: Duration::from_secs(secs),
        faults: Some(faults),
        ..SimConfig::new(NODES, seed)
    }
}

/// The command line that replays `c`, for failure messages.
fn replay(c: &SimConfig) -> String {
    let f = c.faults.as_ref().expect("every run here has faults");
    let mut cmd = format!(
        "seed {s}: quicswim simulate --nodes {n} --seed {s} --duration {d}s --faults-at {a}s",
        s = c.seed,
        n = c.nodes,
        d = c.duration.as_secs(),
        a = f.at.as_secs(),
    );
    if let Some(u) = f.until {
        cmd += &format!(" --faults-until {}s", u.as_secs());
    }
    if let Some(g) = &f.gray {
        let direction = match g.direction {
            Direction::Both => "both",
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };
        cmd += &format!(
            " --gray {} --gray-loss {} --gray-direction {direction}",
            g.fraction, g.loss
        );
    }
    if let Some(p) = &f.flap {
        cmd += &format!(" --flap {} --flap-period {}s", p.nodes, p.period.as_secs());
    }
    if let Some(s) = &f.stall {
        cmd += &format!(
            " --stall {} --stall-for {}s --stall-every {}s",
            s.fraction,
            s.stall_for.as_secs(),
            s.every.as_secs()
        );
    }
    if f.cut_links > 0 {
        cmd += &format!(" --cut-links {}", f.cut_links);
    }
    if c.crashes > 0 {
        cmd += &format!(
            " --crash {} --crash-at {}s",
            c.crashes,
            c.crash_at.as_secs()
        );
    }
    cmd
}

fn run(c: &SimConfig) -> (Report, String) {
    let ctx = replay(c);
    (Simulation::new(c.clone(), Instant::now()).run(|_| {}), ctx)
}

fn assert_healthy_untouched(ctx: &str, r: &Report) {
    assert_eq!(
        (r.health.healthy_declared_dead, r.false_positives),
        (0, 0),
        "{ctx}: healthy members declared Dead\n{r:#?}"
    );
    assert!(r.final_views_agree, "{ctx}: healthy views disagree\n{r:#?}");
}

fn gray(direction: Direction) -> FaultPlan {
    FaultPlan {
        gray: Some(GrayPlan {
            fraction: 0.02,
            loss: 0.8,
            direction,
        }),
        ..FaultPlan::starting_at(FAULTS_AT)
    }
}

#[test]
fn gray_nodes_at_eighty_percent_loss_are_declared_dead_and_kept_out() {
    for seed in seeds() {
        for direction in [Direction::Both, Direction::Ingress, Direction::Egress] {
            let (r, ctx) = run(&config(seed, 150, gray(direction)));
            assert_eq!(r.faulty, 2, "{ctx}");
            assert_eq!(
                r.health.faulty_declared_dead, 2,
                "{ctx}: not all evicted\n{r:#?}"
            );
            // The bound is for loss both ways. One way, the node's probes of others
            // fail less often (a one-way fault leaves half the round trip intact, and the
            // stream fallback saves many), so it takes longer to hold itself out, and others'
            // probes of it fail less often, so it takes longer to be suspected.
            let bound = if direction == Direction::Both {
                60.0
            } else {
                120.0
            };
            let evicted = r.health.faulty_dead_everywhere_max_s;
            assert!(
                evicted.is_some_and(|s| s <= bound),
                "{ctx}: a gray node was not Dead everywhere within {bound} s\n{r:#?}"
            );
            assert!(
                r.health.faulty_returns_max <= 1,
                "{ctx}: a gray node kept coming back\n{r:#?}"
            );
            assert_healthy_untouched(&ctx, &r);
            assert!(
                r.health.healthy_views_agree_s.is_some(),
                "{ctx}: healthy views never settled\n{r:#?}"
            );
        }
    }
}

fn flapping(until: Option<Duration>) -> FaultPlan {
    FaultPlan {
        flap: Some(FlapPlan {
            nodes: 3,
            period: Duration::from_secs(20),
        }),
        until,
        ..FaultPlan::starting_at(FAULTS_AT)
    }
}

#[test]
fn flapping_nodes_are_held_out_and_move_no_healthy_member() {
    for seed in seeds() {
        let (r, ctx) = run(&config(seed, 200, flapping(None)));
        assert_eq!(
            (r.health.healthy_suspected, r.health.healthy_state_changes),
            (0, 0),
            "{ctx}: a deaf node's accusations moved healthy members\n{r:#?}"
        );
        // Alive -> Suspect -> Dead, then held out: four more would be one return and out
        // again; over nine flaps unchecked it would be dozens.
        assert!(
            r.health.faulty_state_changes_max <= 4,
            "{ctx}: flapping members were let back in\n{r:#?}"
        );
        assert_eq!(r.health.faulty_declared_dead, 3, "{ctx}\n{r:#?}");
        assert_healthy_untouched(&ctx, &r);
    }
}

#[test]
fn flapping_node_comes_back_once_stable_again() {
    for seed in seeds() {
        let c = config(seed, 300, flapping(Some(Duration::from_secs(100))));
        let (r, ctx) = run(&c);
        assert_eq!(r.health.faulty_declared_dead, 3, "{ctx}\n{r:#?}");
        assert!(
            r.final_views_correct,
            "{ctx}: a node stable for 200 s is still held out\n{r:#?}"
        );
        assert_healthy_untouched(&ctx, &r);
    }
}

#[test]
fn stalling_nodes_are_never_declared_dead_and_crashes_still_are() {
    for seed in seeds() {
        let plan = FaultPlan {
            stall: Some(StallPlan {
                fraction: 0.05,
                stall_for: Duration::from_secs(2),
                every: Duration::from_secs(30),
            }),
            ..FaultPlan::starting_at(FAULTS_AT)
        };
        let c = SimConfig {
            crashes: 2,
            crash_at: Duration::from_secs(60),
            ..config(seed, 150, plan)
        };
        let (r, ctx) = run(&c);
        assert_eq!(
            r.health.faulty_declared_dead, 0,
            "{ctx}: a stalled, live node was declared Dead\n{r:#?}"
        );
        // The clean figure at this size is 10-12 s (tests/sim.rs bounds it by 20 s).
        assert!(
            r.detect_all_max_s.is_some_and(|s| s <= 15.0),
            "{ctx}: crash detection slowed by stalling nodes\n{r:#?}"
        );
        assert_healthy_untouched(&ctx, &r);
    }
}

#[test]
fn ends_of_a_cut_link_are_never_declared_dead() {
    for seed in seeds() {
        let plan = FaultPlan {
            cut_links: 2,
            ..FaultPlan::starting_at(FAULTS_AT)
        };
        let (r, ctx) = run(&config(seed, 150, plan));
        assert_eq!(r.health.healthy_declared_dead, 0, "{ctx}\n{r:#?}");
        assert_healthy_untouched(&ctx, &r);
        assert!(r.final_views_correct, "{ctx}\n{r:#?}");
    }
}
