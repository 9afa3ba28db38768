//! Scenario tests of the self-check on one core: a node whose health score is pinned at its
//! maximum (Nacks owed and missing, probe after probe) holds itself out, lets the cluster's
//! claims about it stand, accuses nobody, and comes back with a new incarnation once it has
//! been clear for the hold-down.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::time::Duration;

use quicswim_proto::protocol::{Config, Incarnation, State};

use core_harness::*;

/// Nobody answers anything: every probe fails with three Nacks missing.
fn cut_off() -> Harness {
    let mut h = Harness::with_peers(Config::lan());
    h.silence_all();
    h.run_until_true(
        Duration::from_secs(60),
        "health score at its maximum",
        |h| h.swim.health_score() == Config::lan().awareness_max_multiplier,
    );
    h.take_sent();
    h.take_events();
    h
}

fn answer_again(h: &mut Harness) {
    for p in PEERS {
        h.answer_datagrams.insert(name(p));
        h.answer_streams.insert(name(p));
    }
}

#[test]
fn cut_off_node_lets_claims_about_itself_stand() {
    let mut h = cut_off();
    h.gossip("a", &[claim("me", 0, State::Suspect, Some("a"))])
        .expect("valid datagram");
    h.send("b", &ping(9, "me", Some(0)), &[]);
    assert_eq!(h.swim.local_member().incarnation, Incarnation(0));
    assert_eq!(h.swim.stats().refutations, 0);
    // A Dead claim at a higher incarnation is caught up with, still not refuted, so that
    // coming back overrides it.
    h.gossip("c", &[claim("me", 4, State::Dead, Some("c"))])
        .expect("valid datagram");
    assert_eq!(h.swim.local_member().incarnation, Incarnation(4));
    assert_eq!(h.swim.local_member().state, State::Alive);
    let refutation = alive("me", 5);
    assert!(h
        .sent_messages(|_| true)
        .iter()
        .all(|(_, _, p)| !member_updates(p).contains(&refutation)));
}

#[test]
fn cut_off_node_declares_no_suspect_dead() {
    let mut h = cut_off();
    h.gossip("a", &[claim("b", 0, State::Suspect, Some("a"))])
        .expect("valid datagram");
    // Far past the longest suspicion timeout: it cannot tell whether b refuted.
    h.run_for(Duration::from_secs(120));
    assert_eq!(h.state_of("b"), Some((0, State::Suspect)));
    assert_eq!(h.swim.stats().suspicions_raised, 0);
}

#[test]
fn node_clear_again_for_the_hold_down_comes_back_with_a_new_incarnation() {
    let mut h = cut_off();
    h.gossip("a", &[claim("me", 0, State::Dead, Some("a"))])
        .expect("valid datagram");
    answer_again(&mut h);
    let back_from = h.now;
    h.run_until_true(Duration::from_secs(200), "back with incarnation 1", |h| {
        h.swim.local_member().incarnation == Incarnation(1)
    });
    // From the maximum the score falls by one per answered probe at stretched intervals
    // (8 + 7 + ... + 2 s after the first), then the hold-down (10 intervals) must pass clear.
    let waited = h.now - back_from;
    assert!(waited >= Duration::from_secs(35 + 10), "{waited:?}");
    assert_eq!(h.swim.health_score(), 0);
    h.run_for(Config::lan().gossip_interval);
    let comeback = alive("me", 1);
    assert!(
        h.sent_messages(|_| true)
            .iter()
            .any(|(_, _, p)| member_updates(p).contains(&comeback)),
        "the return is gossiped"
    );
}

#[test]
fn a_node_that_handles_its_deadlines_late_grows_less_sure_of_itself_but_never_takes_itself_out() {
    let config = Config::lan();
    let max = config.awareness_max_multiplier;
    // Alone: no probe moves the score, only lag does.
    let mut on_time = Harness::alone(config.clone());
    on_time.run_for(Duration::from_secs(120));
    assert_eq!(on_time.swim.health_score(), 0);
    assert_eq!(on_time.swim.stats().timers_late, 0);

    let mut h = Harness::alone(config.clone());
    let late = config.probe_timeout / 4;
    let mut scores = Vec::new();
    for _ in 0..200 {
        let due = h.swim.poll_timeout().expect("a lone node keeps timers");
        h.now = h.now.max(due + late);
        h.swim.handle_timeout(h.now);
        h.pump();
        scores.push(h.swim.health_score());
    }
    assert!(h.swim.stats().timers_late >= 200, "{:?}", h.swim.stats());
    assert_eq!(scores.iter().max(), Some(&(max - 1)), "{scores:?}");
    assert_eq!(
        h.swim.local_member().state,
        State::Alive,
        "lag alone never takes a node out"
    );
    // Each step a probe interval apart at the least.
    assert!(scores.windows(2).all(|w| w[1] <= w[0] + 1), "{scores:?}");

    // Just under the threshold counts as on time.
    let mut h = Harness::alone(config.clone());
    for _ in 0..50 {
        let due = h.swim.poll_timeout().expect("timers");
        h.now = h.now.max(due + late - NS);
        h.swim.handle_timeout(h.now);
        h.pump();
    }
    assert_eq!((h.swim.health_score(), h.swim.stats().timers_late), (0, 0));
}
