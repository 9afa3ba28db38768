//! Scenario tests of suspicion on one core: the Lifeguard timeout and its confirmations,
//! refutation, and when a suspect is declared Dead.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::time::{Duration, Instant};

use quicswim_proto::protocol::codec::{MemberUpdate, Message};
use quicswim_proto::protocol::{Config, Event, State};

use core_harness::*;

fn is_dead(e: &Event) -> bool {
    matches!(e, Event::Dead(_))
}

/// The lan preset with memberlist's suspicion numbers (mult 4, max 6 · min, K = 2), which
/// these figures were worked out with.
fn memberlist_lan() -> Config {
    Config {
        suspicion_mult: 4,
        suspicion_max_timeout_mult: 6,
        suspicion_confirmations: 2,
        ..Config::lan()
    }
}

/// With `me` and five peers, n = 6: min = 4 · max(1, log10 6) · 1 s = 4 s, max = 6 · min =
/// 24 s, and K = 2 confirmations bring the timeout down to the min.
const MIN: Duration = Duration::from_secs(4);
const MAX: Duration = Duration::from_secs(24);

/// Gossips a suspicion of `e` from each accuser in turn at one instant; returns when `e` was
/// declared Dead (`None` if not within `MAX` plus a second).
fn dead_after(accusers: &[&str]) -> (Instant, Option<Instant>, Harness) {
    let mut h = Harness::with_peers(memberlist_lan());
    let suspected_at = h.now;
    for a in accusers {
        h.gossip(a, &[claim("e", 0, State::Suspect, Some(a))])
            .expect("valid datagram");
    }
    let suspects: Vec<_> = h
        .events_about("e")
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::Suspect(_)))
        .collect();
    assert_eq!(suspects.len(), 1, "one suspicion, then confirmations");
    h.run_until(suspected_at + MAX + Duration::from_secs(1));
    let dead = h
        .events_about("e")
        .into_iter()
        .find(|(_, e)| is_dead(e))
        .map(|(at, _)| at);
    (suspected_at, dead, h)
}

#[test]
fn unconfirmed_suspect_is_dead_at_the_max_timeout() {
    // e answers every Ping, the last call's too, with a bare Ack: only a refutation saves a
    // suspect (a member holding itself out answers Pings and lets the claim stand).
    let (at, dead, h) = dead_after(&["a"]);
    assert_eq!(dead, Some(at + MAX));
    assert_eq!(h.state_of("e"), Some((0, State::Dead)));
    assert_eq!(
        h.events_about("e").last(),
        Some(&(at + MAX, Event::Dead(member("e", 0, State::Dead))))
    );
}

#[test]
fn one_confirmation_shortens_the_timeout_by_the_lifeguard_formula() {
    let (at, dead, _) = dead_after(&["a", "b"]);
    // max − (max − min) · log(C + 1) / log(k + 1) with C = 1, k = 2.
    let expected = MAX.as_secs_f64() - (MAX - MIN).as_secs_f64() * 2f64.ln() / 3f64.ln();
    let dead = dead.expect("declared Dead").duration_since(at);
    assert!(
        (dead.as_secs_f64() - expected).abs() < 1e-6,
        "dead after {dead:?}, expected {expected} s"
    );
}

#[test]
fn our_own_failed_probe_of_a_suspect_confirms_the_suspicion() {
    let mut h = Harness::with_peers(memberlist_lan());
    h.silence("e");
    let suspected_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .expect("valid datagram");
    // The helpers are heard (they Nack), so our failed probe of e accuses it.
    h.run_until_true_nacking(MAX + Duration::from_secs(1), "e declared Dead", |h| {
        h.events_about("e").iter().any(|(_, e)| is_dead(e))
    });
    let dead = h
        .events_about("e")
        .into_iter()
        .find(|(_, e)| is_dead(e))
        .map(|(at, _)| at)
        .expect("declared Dead");
    // Our probe pass reaches e within five periods and fails: a second accuser, so the
    // timeout drops to max - (max - min) * log 2 / log 3, counted from the suspicion.
    let one_confirmation = MAX - (MAX - MIN).mul_f64(2f64.ln() / 3f64.ln());
    assert!(
        dead <= suspected_at + one_confirmation + Duration::from_millis(1),
        "dead after {:?}",
        dead - suspected_at
    );
    // ... and the accusation went out as gossip, for the others to count.
    let accused = h
        .sent_messages(|_| true)
        .into_iter()
        .any(|(_, _, p)| member_updates(&p).contains(&claim("e", 0, State::Suspect, Some("me"))));
    assert!(accused, "our confirmation was not gossiped");
}

#[test]
fn a_repeated_accuser_is_not_a_confirmation() {
    let (at, dead, _) = dead_after(&["a", "a", "a"]);
    assert_eq!(dead, Some(at + MAX));
}

#[test]
fn k_independent_confirmations_reach_the_min_and_no_lower() {
    let (at, dead, _) = dead_after(&["a", "b", "c"]);
    assert_eq!(dead, Some(at + MIN));
    // More accusers than k do not go below the min.
    let (at, dead, _) = dead_after(&["a", "b", "c", "d"]);
    assert_eq!(dead, Some(at + MIN));
}

#[test]
fn late_confirmation_past_the_new_deadline_calls_the_suspect_and_kills_a_probe_timeout_later() {
    let mut h = Harness::with_peers(memberlist_lan());
    let suspected_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .unwrap();
    h.run_until(suspected_at + Duration::from_secs(10));
    h.gossip("b", &[claim("e", 0, State::Suspect, Some("b"))])
        .unwrap();
    h.gossip("c", &[claim("e", 0, State::Suspect, Some("c"))])
        .unwrap();
    // The deadline is now suspected_at + MIN, already past: the last call goes at the next
    // wake-up, which is now, and e (answering Pings, but with no refutation) is Dead once
    // the Ack's probe timeout has passed.
    assert_eq!(h.swim.poll_timeout(), Some(h.now));
    let confirmed_at = h.now;
    h.run_until(confirmed_at);
    assert!(last_calls(&h, 0).contains(&confirmed_at));
    assert_eq!(h.state_of("e"), Some((0, State::Suspect)));
    h.run_until(confirmed_at + memberlist_lan().probe_timeout);
    let dead: Vec<_> = h
        .events_about("e")
        .into_iter()
        .filter(|(_, e)| is_dead(e))
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, confirmed_at + memberlist_lan().probe_timeout);
}

/// When `me` sent e a Ping naming the suspicion at `incarnation`: its own probes of e and
/// the last call alike.
fn last_calls(h: &Harness, incarnation: u64) -> Vec<Instant> {
    h.sent_messages(|m| {
        matches!(m, Message::Ping { target, suspected: Some(i), .. }
            if target.as_str() == "e" && i.0 == incarnation)
    })
    .into_iter()
    .map(|(at, _, _)| at)
    .collect()
}

/// e's Ack to the last Ping `me` sent it, carrying `updates`.
fn answer_last_ping(h: &mut Harness, updates: &[MemberUpdate]) {
    let (_, _, p) = h
        .sent_messages(|m| matches!(m, Message::Ping { target, .. } if target.as_str() == "e"))
        .pop()
        .expect("e was pinged");
    let Message::Ping { seq, .. } = p.message else {
        unreachable!("filtered on Pings")
    };
    h.send("e", &Message::Ack { seq }, updates);
}

#[test]
fn suspect_whose_refutation_missed_us_answers_the_last_call_and_stays_alive() {
    let mut h = Harness::with_peers(memberlist_lan());
    // e refuted (Alive at 1), but every relayed copy of the refutation missed this node: a
    // member relays an update a bounded number of times, so at scale some member misses
    // all of them now and then. e answers only the Ping below, by hand.
    h.silence("e");
    let suspected_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .unwrap();
    let call_at = suspected_at + MAX - memberlist_lan().probe_timeout;
    h.run_until(call_at);
    assert!(
        last_calls(&h, 0).contains(&call_at),
        "no Ping naming the suspicion a probe timeout before the deadline: {:?}",
        last_calls(&h, 0)
    );
    assert_eq!(h.state_of("e"), Some((0, State::Suspect)));
    answer_last_ping(&mut h, &[alive("e", 1)]);
    h.run_until(suspected_at + MAX * 2);
    assert_eq!(h.state_of("e"), Some((1, State::Alive)));
    assert!(
        !h.events_about("e").iter().any(|(_, e)| is_dead(e)),
        "{:?}",
        h.events_about("e")
    );
}

#[test]
fn node_waking_past_a_deadline_asks_the_suspect_before_declaring_it_dead() {
    let mut h = Harness::with_peers(memberlist_lan());
    h.silence("e");
    let suspected_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .unwrap();
    // A stall (a GC pause): the node wakes well past the deadline, its timers fire before
    // it reads what waited meanwhile, e's refutation among it.
    let woke = suspected_at + MAX + Duration::from_secs(2);
    h.now = woke;
    h.swim.handle_timeout(woke);
    h.pump();
    assert!(last_calls(&h, 0).contains(&woke));
    assert_eq!(h.state_of("e"), Some((0, State::Suspect)), "not Dead yet");
    answer_last_ping(&mut h, &[alive("e", 1)]);
    h.run_until(woke + MAX);
    assert_eq!(h.state_of("e"), Some((1, State::Alive)));
}
#[test]
fn suspect_refuting_at_a_higher_incarnation_recovers_and_stays_alive() {
    let mut h = Harness::with_peers(memberlist_lan());
    let suspected_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .unwrap();
    h.run_until(suspected_at + Duration::from_secs(2));
    h.gossip("b", &[alive("e", 1)]).unwrap();
    assert_eq!(h.state_of("e"), Some((1, State::Alive)));
    assert_eq!(
        h.events_about("e")
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>(),
        vec![
            Event::Suspect(member("e", 0, State::Suspect)),
            Event::Recovered(member("e", 1, State::Alive)),
        ]
    );
    // The old suspicion's timer outlives it and does nothing.
    h.run_until(suspected_at + MAX * 2);
    assert_eq!(h.state_of("e"), Some((1, State::Alive)));
    assert_eq!(h.events_about("e").len(), 2);
}

#[test]
fn alive_at_the_suspected_incarnation_does_not_clear_a_suspicion() {
    let mut h = Harness::with_peers(memberlist_lan());
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("a"))])
        .unwrap();
    h.gossip("b", &[alive("e", 0)]).unwrap();
    assert_eq!(h.state_of("e"), Some((0, State::Suspect)));
}

#[test]
fn member_relaying_a_refuted_suspicion_is_told_the_refutation() {
    let mut h = Harness::with_peers(memberlist_lan());
    h.gossip("b", &[alive("e", 1)]).unwrap();
    h.take_sent();
    // a missed e's refutation and still relays the suspicion at 0.
    h.gossip("a", &[claim("e", 0, State::Suspect, Some("c"))])
        .unwrap();
    assert_eq!(
        h.state_of("e"),
        Some((1, State::Alive)),
        "a stale claim changes nothing"
    );
    let told: Vec<_> = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(_, t, p)| {
            t.to.name.as_ref().is_some_and(|n| n.as_str() == "a")
                && member_updates(p).contains(&alive("e", 1))
        })
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(h.swim.stats().corrections_sent, 1);
    // A claim that is news, or stale only as Alive, is not answered.
    h.gossip(
        "a",
        &[alive("e", 0), claim("d", 0, State::Suspect, Some("c"))],
    )
    .unwrap();
    assert_eq!(h.swim.stats().corrections_sent, 1);
}

#[test]
fn member_relaying_a_refuted_suspicion_of_us_is_told_our_state() {
    let mut h = Harness::with_peers(memberlist_lan());
    h.gossip("a", &[claim("me", 0, State::Suspect, Some("b"))])
        .unwrap();
    assert_eq!(h.swim.local_member().incarnation.0, 1, "refuted");
    h.take_sent();
    h.gossip("c", &[claim("me", 0, State::Suspect, Some("b"))])
        .unwrap();
    let told = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .any(|(_, t, p)| {
            t.to.name.as_ref().is_some_and(|n| n.as_str() == "c")
                && member_updates(&p).contains(&alive("me", 1))
        });
    assert!(told);
}
