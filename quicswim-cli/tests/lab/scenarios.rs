//! Scenarios 1-4: form, crash and restart, graceful stop, partition and heal.

use std::time::{Duration, Instant};

use crate::observe::{false_positives, first_state, Downtime, What};
use crate::{faults, lan_suspicion_timeout, Ctx, LAN_DETECTION_BOUND};

/// Longest any step that has no bound of its own may take (joins, a restart, a key's spread).
const STEP: Duration = Duration::from_secs(60);

fn all(ctx: &Ctx) -> Vec<usize> {
    (0..ctx.lab.nodes.len()).collect()
}

fn others(ctx: &Ctx, but: usize) -> Vec<usize> {
    all(ctx).into_iter().filter(|&i| i != but).collect()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The latest and earliest of `times` after `start`, for "every observer by" figures.
fn spread(times: impl Iterator<Item = Instant>, start: Instant) -> (Duration, Duration) {
    let elapsed: Vec<Duration> = times.map(|t| t.saturating_duration_since(start)).collect();
    let first = elapsed.iter().min().copied().unwrap_or_default();
    let last = elapsed.iter().max().copied().unwrap_or_default();
    (first, last)
}

/// Waits until every node in `nodes` holds every `(owner, key, value)` of `entries`.
pub fn wait_entries(
    ctx: &Ctx,
    what: &str,
    nodes: &[usize],
    entries: &[(String, String, String)],
    within: Duration,
) -> Duration {
    ctx.wait_until(what, within, |ctx| {
        nodes.iter().all(|&i| {
            let Ok(list) = ctx.api.kv_list(&ctx.lab.nodes[i].api()) else {
                return false;
            };
            entries.iter().all(|(o, k, v)| {
                list.iter()
                    .any(|(lo, lk, lv)| lo == o && lk == k && lv == v)
            })
        })
    })
}

/// Sets `key` = `value` on node `i`; returns the entry as `(owner, key, value)`. A 429
/// (the node's earlier writes not yet spread, `kv_backlog_max`) is sent again, as a client
/// would, for up to 10 s; any other refusal fails the test.
pub fn write(ctx: &Ctx, i: usize, key: &str, value: &str) -> (String, String, String) {
    let node = &ctx.lab.nodes[i];
    let mut last = String::new();
    ctx.poll_until(Duration::from_secs(10), |ctx| {
        match ctx.api.kv_set(&node.api(), key, value) {
            Ok(()) => true,
            Err(e) if e.contains("status 429") => {
                last = e;
                false
            }
            Err(e) => panic!("write {key} on {}: {e}", node.name),
        }
    })
    .unwrap_or_else(|| panic!("write {key} on {}: still refused: {last}", node.name));
    (node.name.clone(), key.to_string(), value.to_string())
}

/// Asserts that no node was held Dead while up, and prints the suspicions of live nodes.
pub fn check_no_false_dead(ctx: &mut Ctx, scenario: &str, start: Instant, down: &Downtime) {
    let n = ctx.lab.nodes.len();
    let fp = false_positives(
        &ctx.watcher.since(start),
        start,
        Instant::now(),
        down,
        lan_suspicion_timeout(n),
    );
    ctx.figure(
        scenario,
        format!(
            "false Dead {}, suspicions of live nodes {} (longest {}) {}",
            fp.dead.len(),
            fp.suspicions,
            secs(fp.longest),
            fp.examples.join(" ")
        ),
    );
    assert!(
        fp.dead.is_empty(),
        "{scenario}: live nodes held Dead: {:?}",
        fp.dead
    );
}

/// Scenario 1: All N see all N alive; `/ready` is 200 everywhere.
pub fn form(ctx: &mut Ctx, started: Instant) {
    let n = ctx.lab.nodes.len();
    let nodes = all(ctx);
    ctx.wait_until(&format!("{n} nodes alive everywhere"), STEP, |ctx| {
        ctx.all_alive(&nodes, n)
    });
    let alive = started.elapsed();
    ctx.wait_until("/ready 200 everywhere", STEP, |ctx| {
        ctx.lab
            .nodes
            .iter()
            .all(|node| ctx.api.ready(&node.api()) == Ok(200))
    });
    ctx.figure(
        "form",
        format!(
            "{n} nodes started one by one and all alive everywhere {} after the first `docker run`; /ready 200 everywhere at {}",
            secs(alive),
            secs(started.elapsed())
        ),
    );
}

/// Scenario 2: A crash is Dead everywhere within the lan bound; the node comes back with a higher
/// incarnation and its new writes win everywhere.
pub fn crash_and_restart(ctx: &mut Ctx) {
    let n = ctx.lab.nodes.len();
    let victim = n - 1;
    let name = ctx.lab.nodes[victim].name.clone();
    let rest = others(ctx, victim);
    let entry = write(ctx, victim, "crash-key", "before");
    wait_entries(
        ctx,
        "the victim's key everywhere",
        &all(ctx),
        &[entry],
        STEP,
    );
    let before = ctx.view_of(0, &name).expect("node1 knows the victim").1;

    let start = Instant::now();
    let mut down = Downtime::default();
    down.begin(&name, start);
    ctx.lab.kill(victim);
    ctx.wait_until(&format!("{name} Dead everywhere"), STEP, |ctx| {
        rest.iter()
            .all(|&i| ctx.view_of(i, &name).is_some_and(|(s, _)| s == "dead"))
    });
    let dead = first_state(&ctx.watcher.since(start), &name, "dead");
    let (first, last) = spread(dead.values().copied(), start);
    ctx.figure(
        "crash",
        format!(
            "`docker kill {name}`: Dead on the first node after {}, on all {} others after {} (bound {})",
            secs(first),
            rest.len(),
            secs(last),
            secs(LAN_DETECTION_BOUND)
        ),
    );
    assert_eq!(
        dead.len(),
        rest.len(),
        "some node reported no Dead event: {dead:?}"
    );
    assert!(
        last <= LAN_DETECTION_BOUND,
        "crash detection took {last:?}, over the lan bound {LAN_DETECTION_BOUND:?}"
    );

    let restarted = Instant::now();
    ctx.start(victim);
    ctx.wait_until(
        &format!("{name} Alive again, incarnation above {before}"),
        STEP,
        |ctx| {
            all(ctx).iter().all(|&i| {
                ctx.view_of(i, &name)
                    .is_some_and(|(s, inc)| s == "alive" && inc > before)
            })
        },
    );
    let back = restarted.elapsed();
    down.end(&name, Instant::now());
    let after = ctx.view_of(0, &name).expect("node1 knows it").1;
    let entry = write(ctx, victim, "crash-key", "after");
    let spread_kv = wait_entries(
        ctx,
        "the restarted node's new write everywhere",
        &all(ctx),
        &[entry],
        STEP,
    );
    ctx.figure(
        "crash",
        format!(
            "`docker start {name}`: Alive everywhere at incarnation {after} (was {before}) {} after the start; its new write won on every node in {}",
            secs(back),
            secs(spread_kv)
        ),
    );
    check_no_false_dead(ctx, "crash", start, &down);
}

/// Scenario 3: A graceful stop is Left everywhere within 2 s.
pub fn graceful_stop(ctx: &mut Ctx) {
    const LEFT_BOUND: Duration = Duration::from_secs(2);
    let n = ctx.lab.nodes.len();
    let victim = n - 2;
    let name = ctx.lab.nodes[victim].name.clone();
    let rest = others(ctx, victim);
    let start = Instant::now();
    let mut down = Downtime::default();
    down.begin(&name, start);
    let mut stop = ctx.lab.stop_in_background(victim);
    ctx.wait_until(&format!("{name} Left everywhere"), STEP, |ctx| {
        rest.iter()
            .all(|&i| ctx.view_of(i, &name).is_some_and(|(s, _)| s == "left"))
    });
    let status = stop.wait().expect("wait for docker stop");
    assert!(status.success(), "docker stop {name}: {status}");
    let exited = start.elapsed();
    let left = first_state(&ctx.watcher.since(start), &name, "left");
    let (first, last) = spread(left.values().copied(), start);
    ctx.figure(
        "stop",
        format!(
            "`docker stop {name}`: Left on the first node after {}, on all {} others after {} (bound {}); the container exited after {}",
            secs(first),
            rest.len(),
            secs(last),
            secs(LEFT_BOUND),
            secs(exited)
        ),
    );
    assert_eq!(
        left.len(),
        rest.len(),
        "some node reported no Left event: {left:?}"
    );
    assert!(last <= LEFT_BOUND, "Left took {last:?} to reach everyone");

    ctx.start(victim);
    ctx.wait_until(&format!("{name} back and all {n} alive"), STEP, |ctx| {
        ctx.all_alive(&all(ctx), n)
    });
    down.end(&name, Instant::now());
    check_no_false_dead(ctx, "stop", start, &down);
}

/// Scenario 4: A 2 | 3 partition for 60 s: each side holds the other Suspect or Dead; healed, views
/// agree within 60 s with no operator action and writes from both sides are everywhere.
pub fn partition_and_heal(ctx: &mut Ctx) {
    const HOLD: Duration = Duration::from_secs(60);
    const HEAL_BOUND: Duration = Duration::from_secs(60);
    let n = ctx.lab.nodes.len();
    let cut = (2 * n / 5).max(1);
    let a: Vec<usize> = (0..cut).collect();
    let b: Vec<usize> = (cut..n).collect();
    let names = ctx.names();
    let start = Instant::now();
    faults::partition(&ctx.lab, &a);
    let apart = |ctx: &Ctx, side: &[usize], other: &[usize]| {
        side.iter().all(|&i| {
            ctx.members(i).is_ok_and(|m| {
                other.iter().all(|&j| {
                    m.iter()
                        .any(|v| v.name == names[j] && (v.state == "suspect" || v.state == "dead"))
                })
            })
        })
    };
    let seen_apart = ctx.wait_until("each side holding the other Suspect or Dead", HOLD, |ctx| {
        apart(ctx, &a, &b) && apart(ctx, &b, &a)
    });
    let entries = vec![
        write(ctx, a[0], "partition-key", "side-a"),
        write(ctx, b[0], "partition-key", "side-b"),
    ];
    // Both sides wrote; now the partition holds until its time is up.
    while start.elapsed() < HOLD {
        std::thread::sleep(Duration::from_millis(250)); // the fault's duration, not a settle wait
    }
    let views_during: usize = (0..n)
        .filter(|&i| {
            let other = if a.contains(&i) { &b } else { &a };
            apart(ctx, &[i], other)
        })
        .count();
    // Timed from the first node's rules going: the nodes healed first start merging at once.
    let healed = Instant::now();
    faults::heal(&ctx.lab);
    let applied = healed.elapsed();
    ctx.wait_until("all alive everywhere after the heal", HEAL_BOUND, |ctx| {
        ctx.all_alive(&all(ctx), n)
    });
    let agree = healed.elapsed();
    // From the nodes' own events: when the last of them saw the last of the other side alive.
    let merged = ctx
        .watcher
        .since(healed)
        .iter()
        .filter(|s| match &s.what {
            What::Member { name, state, .. } => {
                let observer_in_a = names[..cut].contains(&s.observer);
                let subject_in_a = names[..cut].contains(name);
                state == "alive" && observer_in_a != subject_in_a
            }
            _ => false,
        })
        .map(|s| s.at.duration_since(healed))
        .max()
        .unwrap_or_default();
    let kv = wait_entries(
        ctx,
        "both sides' writes everywhere",
        &all(ctx),
        &entries,
        HEAL_BOUND,
    );
    ctx.figure(
        "partition",
        format!(
            "{} | {} for {}: each side held the other Suspect/Dead after {}; {views_during}/{n} nodes still did at the end",
            a.len(),
            b.len(),
            secs(HOLD),
            secs(seen_apart),
        ),
    );
    ctx.figure(
        "partition",
        format!(
            "healed (rules removed from all {n} in {}): last node saw the last of the other side alive after {}; all {n} alive on every node by {} (bound {}); both sides' writes everywhere by {}",
            secs(applied),
            secs(merged),
            secs(agree),
            secs(HEAL_BOUND),
            secs(agree + kv)
        ),
    );
    assert_eq!(
        views_during, n,
        "a node stopped seeing the partition while it lasted"
    );
    let fp = false_positives(
        &ctx.watcher.since(healed),
        healed,
        Instant::now(),
        &Downtime::default(),
        lan_suspicion_timeout(n),
    );
    ctx.figure(
        "partition",
        format!(
            "after the heal: {} Dead and {} suspicions newly raised about reachable nodes {}",
            fp.dead.len(),
            fp.suspicions,
            fp.examples.join(" ")
        ),
    );
}
