//! Scenarios 5 and 6: random loss on every node, and a rolling restart with new certificates.

use std::time::{Duration, Instant};

use crate::common::metric;
use crate::observe::{dropped, false_positives, user_deliveries, Downtime};
use crate::scenarios::{check_no_false_dead, wait_entries, write};
use crate::{faults, lan_suspicion_timeout, Ctx};

/// How long writes and events made under loss get to reach every node, loss still on.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);
/// How long the cluster gets to be whole again once a fault is lifted.
const RECOVERY: Duration = Duration::from_secs(90);
/// One key/value write and one user event every this often while a fault holds.
const WRITE_EVERY: Duration = Duration::from_secs(2);

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// How many (entry, node) pairs are held, of how many due.
fn kv_held(ctx: &Ctx, entries: &[(String, String, String)]) -> (usize, usize) {
    let mut held = 0;
    for node in &ctx.lab.nodes {
        let list = ctx.api.kv_list(&node.api()).unwrap_or_default();
        held += entries
            .iter()
            .filter(|(o, k, v)| {
                list.iter()
                    .any(|(lo, lk, lv)| lo == o && lk == k && lv == v)
            })
            .count();
    }
    (held, entries.len() * ctx.lab.nodes.len())
}

/// Direct probes sent, and those whose datagram Ping went unanswered in time (each is then
/// repeated on a stream, beside the indirect probes), summed over every node: evidence that
/// the loss rules bite.
fn probe_counts(ctx: &Ctx) -> (f64, f64) {
    let mut sums = (0.0, 0.0);
    for node in &ctx.lab.nodes {
        let text = ctx.api.metrics(&node.api()).unwrap_or_default();
        sums.0 += metric(&text, "quicswim_probes_sent_total", None).unwrap_or_default();
        sums.1 += metric(&text, "quicswim_stream_probes_sent_total", None).unwrap_or_default();
    }
    sums
}

fn percent(part: usize, whole: usize) -> String {
    format!(
        "{part}/{whole} ({:.1} %)",
        100.0 * part as f64 / whole.max(1) as f64
    )
}

/// Scenario 5: `percent` % loss on every node for the plan's loss duration, with a key/value write and
/// a user event every 2 s. At 10 %: no false Dead, no suspicion of a live node longer than
/// one suspicion timeout, every write and event on every node. Other rates are measured only.
pub fn loss(ctx: &mut Ctx, percent_lost: u32) {
    let scenario = format!("loss {percent_lost}%");
    let asserted = percent_lost <= 10;
    let n = ctx.lab.nodes.len();
    let names = ctx.names();
    let probes_before = probe_counts(ctx);
    let start = Instant::now();
    faults::loss(&ctx.lab, percent_lost);
    let mut entries = Vec::new();
    let mut events = Vec::new();
    let mut k = 0usize;
    while start.elapsed() < ctx.plan.loss {
        // The API is reached over TCP from the host, outside the lossy node-to-node paths.
        entries.push(write(
            ctx,
            k % n,
            &format!("loss{percent_lost}-{k}"),
            &k.to_string(),
        ));
        let origin = (k + 1) % n;
        let seq = ctx
            .api
            .publish(
                &ctx.lab.nodes[origin].api(),
                &format!("loss{percent_lost}"),
                &k.to_string(),
            )
            .unwrap_or_else(|e| panic!("publish on {}: {e}", names[origin]));
        events.push((names[origin].clone(), seq));
        k += 1;
        std::thread::sleep(WRITE_EVERY); // the write rate, not a settle wait
    }
    let loss_end = Instant::now();
    let kv_at_end = kv_held(ctx, &entries);
    let events_at_end = user_deliveries(&ctx.watcher.since(start), &events, &names);
    // Still under loss: everything must arrive, within a bound.
    let complete = ctx.poll_until(DELIVERY_WAIT, |ctx| {
        let (held, due) = kv_held(ctx, &entries);
        let (got, owed) = user_deliveries(&ctx.watcher.since(start), &events, &ctx.names());
        held == due && got == owed
    });
    let kv_after = kv_held(ctx, &entries);
    let events_after = user_deliveries(&ctx.watcher.since(start), &events, &names);
    let end = Instant::now();
    let seen = ctx.watcher.since(start);
    let limit = lan_suspicion_timeout(n);
    let fp = false_positives(&seen, start, end, &Downtime::default(), limit);
    let probes_after = probe_counts(ctx);
    let lifted = Instant::now();
    faults::heal(&ctx.lab);
    let whole = ctx
        .poll_until(RECOVERY, |ctx| {
            ctx.all_alive(&(0..n).collect::<Vec<_>>(), n)
        })
        .map(|_| lifted.elapsed());

    ctx.figure(
        &scenario,
        format!(
            "{n} nodes, {} under loss with a write and an event every {}: false Dead {}, suspicions of live nodes {} (longest {}, {} over one suspicion timeout of {}) {}",
            secs(end.duration_since(start)),
            secs(WRITE_EVERY),
            fp.dead.len(),
            fp.suspicions,
            secs(fp.longest),
            fp.long_suspicions.len(),
            secs(limit),
            fp.examples.join(" ")
        ),
    );
    ctx.figure(
        &scenario,
        format!(
            "delivery when the writes stopped: key/value {}, user events {}; {} later: key/value {}, user events {}{}",
            percent(kv_at_end.0, kv_at_end.1),
            percent(events_at_end.0, events_at_end.1),
            secs(end.duration_since(loss_end)),
            percent(kv_after.0, kv_after.1),
            percent(events_after.0, events_after.1),
            match complete {
                Some(t) => format!(" (complete {} after the writes stopped)", secs(t)),
                None => " (incomplete)".to_string(),
            }
        ),
    );
    let probes = probes_after.0 - probes_before.0;
    let unanswered = probes_after.1 - probes_before.1;
    ctx.figure(
        &scenario,
        format!(
            "direct probes {probes:.0}, of which the datagram Ping got no Ack in time {unanswered:.0} ({:.1} %)",
            100.0 * unanswered / probes.max(1.0)
        ),
    );
    ctx.figure(
        &scenario,
        match whole {
            Some(t) => format!(
                "loss lifted: all alive everywhere {} after the first rule went",
                secs(t)
            ),
            None => format!(
                "loss lifted: NOT all alive everywhere within {}",
                secs(RECOVERY)
            ),
        },
    );
    let lost = dropped(&seen);
    if lost > 0 {
        ctx.figure(
            &scenario,
            format!(
                "monitor streams fell behind and lost {lost} events: counts above may be short"
            ),
        );
    }
    if asserted {
        assert!(
            fp.dead.is_empty(),
            "{scenario}: live nodes held Dead: {:?}",
            fp.dead
        );
        assert!(
            fp.long_suspicions.is_empty(),
            "{scenario}: live nodes suspected longer than {limit:?}: {:?}",
            fp.long_suspicions
        );
        assert!(
            complete.is_some(),
            "{scenario}: writes or events missing after {DELIVERY_WAIT:?}: key/value {kv_after:?}, events {events_after:?}"
        );
    }
    assert!(
        whole.is_some(),
        "{scenario}: the cluster was not whole {RECOVERY:?} after the loss was lifted\n{}",
        ctx.report()
    );
}

/// Scenario 6: Every node restarted in turn (`docker restart`: a graceful leave, then a new start),
/// each with a newly issued certificate: no node that was up is held Dead, and every key
/// written before and during the roll is on every node at the end.
pub fn rolling_restart(ctx: &mut Ctx) {
    const STEP: Duration = Duration::from_secs(60);
    let n = ctx.lab.nodes.len();
    let names = ctx.names();
    let all: Vec<usize> = (0..n).collect();
    let mut entries: Vec<_> = (0..n)
        .map(|i| write(ctx, i, "roll-before", &format!("{}-before", names[i])))
        .collect();
    wait_entries(
        ctx,
        "the keys written before the roll everywhere",
        &all,
        &entries,
        STEP,
    );

    let start = Instant::now();
    let mut down = Downtime::default();
    let mut took = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let next = (i + 1) % n;
        let before = ctx
            .view_of(next, name)
            .expect("a neighbour knows the node")
            .1;
        let old = ctx.lab.certificate(i);
        let new = ctx.lab.reissue_certificate(i);
        assert_ne!(old, new, "{name}'s certificate was not issued anew");
        entries.push(write(ctx, next, &format!("roll-during-{i}"), name));
        let t = Instant::now();
        down.begin(name, t);
        ctx.restart(i);
        ctx.wait_until(
            &format!("{name} back with a new incarnation everywhere"),
            STEP,
            |ctx| {
                all.iter().all(|&j| {
                    ctx.view_of(j, name)
                        .is_some_and(|(s, inc)| s == "alive" && inc > before)
                })
            },
        );
        down.end(name, Instant::now());
        took.push(t.elapsed());
    }
    let kv = wait_entries(
        ctx,
        "every key written before and during the roll everywhere",
        &all,
        &entries,
        STEP,
    );
    let slowest = took.iter().max().copied().unwrap_or_default();
    let mean = took.iter().sum::<Duration>() / took.len().max(1) as u32;
    ctx.figure(
        "roll",
        format!(
            "{n} nodes restarted one at a time with new certificates in {}: each back everywhere after {} on average, {} at most; all {} keys on every node {} after the last",
            secs(start.elapsed()),
            secs(mean),
            secs(slowest),
            entries.len(),
            secs(kv)
        ),
    );
    check_no_false_dead(ctx, "roll", start, &down);
}
