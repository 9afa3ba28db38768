//! The ring over a simulated cluster of 100 protocol cores: every live node builds its ring
//! from its own membership view, and they all route every key alike; when a member crashes
//! and is detected, only the keys it owned move. Virtual time, seeded: a failure prints the
//! seed, and the same seed replays it.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use quicswim_proto::protocol::{Member, NodeName, State};
use quicswim_proto::ring::{weight_from_meta, Ring, RingChange, RingTracker};
use quicswim_proto::sim::{NetworkConfig, SimConfig, Simulation};

const NODES: usize = 100;
const KEYS: usize = 10_000;
const SEED: u64 = 0x5eed_0001;
/// When the one crash happens; the cluster has converged well before.
const CRASH_AT: Duration = Duration::from_secs(40);
/// Longest, in virtual time, that convergence or detection may take.
const BOUND: Duration = Duration::from_secs(60);

/// Feeds a node's current view to its tracker, as the node runtime does with events: Alive
/// puts a member on, Dead and Left take it off, Suspect keeps its place.
fn follow(tracker: &mut RingTracker, view: &[Member]) -> Option<RingChange> {
    tracker.apply_many(
        view.iter()
            .map(|m| (&m.name, m.state, weight_from_meta(&m.meta))),
    )
}

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| format!("user:{i}:profile").into_bytes())
        .collect()
}

fn owners<'r>(ring: &'r Ring, keys: &[Vec<u8>]) -> Vec<&'r NodeName> {
    keys.iter()
        .map(|k| ring.owner(k).expect("the ring has members"))
        .collect()
}

/// Steps virtual time a second at a time until `done` holds for the live views, failing
/// (with the seed) if it has not within `within` of `from`.
fn run_until_views(
    sim: &mut Simulation,
    from: Duration,
    within: Duration,
    what: &str,
    done: impl Fn(&[(NodeName, Vec<Member>)]) -> bool,
) -> Duration {
    let mut at = from;
    loop {
        sim.run_until(at);
        if done(&sim.live_views()) {
            return at;
        }
        assert!(
            at < from + within,
            "seed {SEED:#x}: no {what} within {within:?} of {from:?}"
        );
        at += Duration::from_secs(1);
    }
}

fn state_in(view: &[Member], who: &NodeName) -> Option<State> {
    view.iter().find(|m| m.name == *who).map(|m| m.state)
}

#[test]
fn every_live_node_routes_alike_and_a_crash_moves_only_its_keys() {
    let config = SimConfig {
        network: NetworkConfig {
            loss: 0.01,
            ..NetworkConfig::default()
        },
        crashes: 1,
        crash_at: CRASH_AT,
        duration: CRASH_AT + BOUND,
        ..SimConfig::new(NODES, SEED)
    };
    let mut sim = Simulation::new(config, Instant::now());

    // Converged: every node holds all NODES members Alive.
    let converged_at = run_until_views(
        &mut sim,
        Duration::from_secs(1),
        CRASH_AT - Duration::from_secs(2),
        "convergence",
        |views| {
            views.len() == NODES
                && views.iter().all(|(_, view)| {
                    view.iter().filter(|m| m.state == State::Alive).count() == NODES
                })
        },
    );
    let views = sim.live_views();
    let mut trackers: BTreeMap<NodeName, RingTracker> = BTreeMap::new();
    for (name, view) in &views {
        let mut tracker = RingTracker::default();
        follow(&mut tracker, view);
        assert_eq!(
            tracker.ring().len(),
            NODES,
            "seed {SEED:#x}: {name}'s ring at {converged_at:?}"
        );
        trackers.insert(name.clone(), tracker);
    }
    let keys = keys();
    let first = trackers.values().next().expect("live nodes").ring().clone();
    let reference = owners(&first, &keys);
    for (name, tracker) in &trackers {
        assert_eq!(
            tracker.ring().checksum(),
            first.checksum(),
            "seed {SEED:#x}: {name}'s ring differs"
        );
        assert!(
            owners(tracker.ring(), &keys) == reference,
            "seed {SEED:#x}: {name} places keys differently"
        );
    }
    let before: BTreeMap<NodeName, Ring> = trackers
        .iter()
        .map(|(name, t)| (name.clone(), Ring::clone(t.ring())))
        .collect();

    // One member crashes; wait until every survivor holds it Dead and nobody else off.
    sim.run_until(CRASH_AT);
    let survivors: Vec<NodeName> = sim.live_views().into_iter().map(|(n, _)| n).collect();
    assert_eq!(survivors.len(), NODES - 1, "seed {SEED:#x}: one crash");
    let victim = views
        .iter()
        .map(|(n, _)| n)
        .find(|n| !survivors.contains(n))
        .expect("the crashed node")
        .clone();
    let victim_owned = reference.iter().filter(|o| ***o == victim).count();
    assert!(victim_owned > 0, "seed {SEED:#x}: {victim} owned no key");
    let detected_at = run_until_views(&mut sim, CRASH_AT, BOUND, "detection", |views| {
        views.iter().all(|(_, view)| {
            state_in(view, &victim) == Some(State::Dead)
                && view
                    .iter()
                    .filter(|m| m.name != victim)
                    .all(|m| m.state.is_active())
        })
    });

    let after_views = sim.live_views();
    let mut after_reference: Option<Vec<NodeName>> = None;
    for (name, view) in &after_views {
        let tracker = trackers.get_mut(name).expect("a survivor was tracked");
        let change = follow(tracker, view);
        assert_eq!(
            change,
            Some(RingChange {
                removed: vec![victim.clone()],
                ..RingChange::default()
            }),
            "seed {SEED:#x}: {name}'s ring change at {detected_at:?}"
        );
        let was = owners(&before[name], &keys);
        let now = owners(tracker.ring(), &keys);
        let mut moved = 0;
        for ((key, old), new) in keys.iter().zip(&was).zip(&now) {
            if *old == &victim {
                assert_ne!(*new, &victim, "seed {SEED:#x}: key still on the dead node");
                moved += 1;
            } else {
                assert_eq!(
                    old,
                    new,
                    "seed {SEED:#x}: on {name}, key {:?} moved though {old} is alive",
                    String::from_utf8_lossy(key)
                );
            }
        }
        assert_eq!(moved, victim_owned, "seed {SEED:#x}");
        let now: Vec<NodeName> = now.into_iter().cloned().collect();
        match &after_reference {
            None => after_reference = Some(now),
            Some(r) => assert!(
                *r == now,
                "seed {SEED:#x}: {name} places keys differently after the crash"
            ),
        }
    }
}
