//! Scenario tests of dissemination on one core: which members a gossip round reaches (with
//! and without connections), and when rounds go out.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use quicswim_proto::protocol::codec::Message;
use quicswim_proto::protocol::{Config, Incarnation, NodeName, State};

use core_harness::*;

// ------------------------------------------------------------------------------- connections

/// Gossip datagrams sent at an instant when no Ping went out (a Ping's instant may carry the
/// next probe's preparation), as (when, to whom).
fn gossip_rounds(h: &Harness) -> Vec<(Instant, NodeName)> {
    let ping_times: BTreeSet<Instant> = h
        .sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .map(|(at, _, _)| at)
        .collect();
    h.sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(at, _, _)| !ping_times.contains(at))
        .map(|(at, t, _)| (at, t.to.name.expect("gossip goes to members")))
        .collect()
}

/// [`gossip_rounds`] grouped by instant: the members each round went to, in send order.
fn rounds_by_instant(h: &Harness) -> Vec<Vec<NodeName>> {
    let mut rounds: Vec<(Instant, Vec<NodeName>)> = Vec::new();
    for (at, to) in gossip_rounds(h) {
        match rounds.last_mut() {
            Some((when, names)) if *when == at => names.push(to),
            _ => rounds.push((at, vec![to])),
        }
    }
    rounds.into_iter().map(|(_, names)| names).collect()
}

#[test]
fn gossip_picks_needing_a_dial_go_to_connected_members_while_one_is_being_dialled() {
    // Each update sent 4 times (of 5 peers), as rounds of 3 leave a second round short.
    let config = Config {
        retransmit_mult: 2,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    // "a" was heard from; "b" and "c" are reported up: three, as many as gossip_nodes. A
    // pick without a connection starts a dial that no peer here ever reports up, so for a
    // probe interval every later such pick is replaced: one member at most is dialled (none
    // if the dial `me` started while joining went to "d" or "e" and is still in flight).
    h.swim.handle_peer_up(h.now, &name("b"));
    h.swim.handle_peer_up(h.now, &name("c"));
    let connected: BTreeSet<NodeName> = ["a", "b", "c"].into_iter().map(name).collect();
    h.swim.set_meta(h.now, b"v1".to_vec()).unwrap();
    h.run_for(config.gossip_interval * 3);
    let rounds = gossip_rounds(&h);
    assert!(!rounds.is_empty(), "queued updates are gossiped");
    let dialled: BTreeSet<&NodeName> = rounds
        .iter()
        .map(|(_, to)| to)
        .filter(|to| !connected.contains(to))
        .collect();
    assert!(dialled.len() <= 1, "several dials at once: {rounds:?}");

    // With only "a" and "b" connected, once no other dial is under way (one from above is
    // given up on after a probe interval), rounds reach gossip_nodes members again, the
    // third without a connection. The news comes just after a probe, so that its rounds do
    // not share an instant with a Ping (`gossip_rounds` leaves those out); the members that
    // answered probes meanwhile are reported down.
    h.run_for(config.probe_interval);
    h.take_sent();
    h.run_until_true(config.probe_interval * 2, "a probe went out", |h| {
        !h.sent_messages(|m| matches!(m, Message::Ping { .. }))
            .is_empty()
    });
    h.run_for(Duration::from_millis(1));
    h.take_sent();
    for p in ["c", "d", "e"] {
        h.swim.handle_peer_down(&name(p));
    }
    h.swim.set_meta(h.now, b"v2".to_vec()).unwrap();
    h.run_for(config.gossip_interval * 3);
    let rounds = rounds_by_instant(&h);
    let full_rounds = rounds
        .iter()
        .map(|names| names.iter().cloned().collect::<BTreeSet<NodeName>>())
        .filter(|to| to.len() == config.gossip_nodes)
        .inspect(|to| {
            assert!(to.contains(&name("a")) && to.contains(&name("b")), "{to:?}");
        })
        .count();
    assert!(full_rounds > 0, "{rounds:?}");
}

#[test]
fn member_probed_next_without_a_connection_is_dialled_a_period_ahead() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    // Five probes: every member once. Only "a" (heard from) has a connection at first; a
    // member that answered a Ping has one from then on.
    first_probe(&mut h);
    h.run_for(config.probe_interval * 5);
    let pings: Vec<(Instant, NodeName)> = h
        .sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .map(|(at, t, _)| (at, t.to.name.expect("pings go to members")))
        .collect();
    assert!(pings.len() >= 5, "{pings:?}");
    let gossip: Vec<(Instant, NodeName)> = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .map(|(at, t, _)| (at, t.to.name.expect("gossip goes to members")))
        .collect();
    let mut connected: BTreeSet<NodeName> = BTreeSet::from([name("a")]);
    for pair in pings.windows(2) {
        let ((before, last), (_, next)) = (&pair[0], &pair[1]);
        connected.insert(last.clone()); // it answered
        let prepared = gossip.iter().any(|(at, to)| at == before && to == next);
        assert_eq!(
            prepared,
            !connected.contains(next),
            "{next} probed after {before:?}: prepared {prepared}"
        );
    }

    // Once every member has a connection, a probe comes with nothing extra.
    h.connect_all();
    h.take_sent();
    h.run_for(config.probe_interval * 5);
    let ping_times: BTreeSet<Instant> = h
        .sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .map(|(at, _, _)| at)
        .collect();
    assert!(!ping_times.is_empty());
    let extra = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(at, _, _)| ping_times.contains(at))
        .count();
    assert_eq!(extra, 0);
}

#[test]
fn news_reaching_an_empty_queue_is_gossiped_at_once() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    // Let the queue empty: every update sent its retransmit limit.
    for _ in 0..1000 {
        if h.swim.pending_broadcasts() == 0 {
            break;
        }
        h.run_for(config.gossip_interval);
    }
    assert_eq!(h.swim.pending_broadcasts(), 0);
    h.take_sent();
    h.swim.set_meta(h.now, b"v1".to_vec()).unwrap();
    h.pump();
    let now: Vec<NodeName> = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(at, _, _)| *at == h.now)
        .map(|(_, t, _)| t.to.name.expect("gossip goes to members"))
        .collect();
    assert_eq!(now.len(), config.gossip_nodes, "{now:?}");

    // News heard while the queue is busy waits for the next round.
    h.take_sent();
    h.gossip("a", &[alive("b", 5)]).unwrap();
    assert!(h.sent_messages(|m| matches!(m, Message::Gossip)).is_empty());
}

// ------------------------------------------------------------------------------- rounds

/// Every peer connected, and enough retransmissions that news sent in one round is still
/// queued a round later (as in a larger cluster).
fn connected_with_long_retransmits() -> (Config, Harness) {
    let config = Config {
        retransmit_mult: 10,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    (config, h)
}

#[test]
fn a_node_sends_its_copies_of_an_update_to_distinct_members() {
    let config = Config {
        gossip_nodes: 2,
        retransmit_mult: 2,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    h.drain_news();
    // Six nodes: each update is sent 4 times, in rounds of 2, among 5 connected peers.
    for incarnation in 1..=20 {
        h.take_sent();
        h.gossip("a", &[alive("b", incarnation)])
            .expect("valid datagram");
        h.drain_news();
        let reached: Vec<NodeName> = h
            .sent_messages(|m| matches!(m, Message::Gossip))
            .into_iter()
            .filter(|(_, _, p)| {
                member_mentions(p)
                    .iter()
                    .any(|(n, i)| *n == name("b") && *i == Incarnation(incarnation))
            })
            .map(|(_, t, _)| t.to.name.expect("members are known by name"))
            .collect();
        assert!(reached.len() >= 3, "update {incarnation}: {reached:?}");
        let distinct: HashSet<&NodeName> = reached.iter().collect();
        assert_eq!(
            distinct.len(),
            reached.len(),
            "update {incarnation}: {reached:?}"
        );
    }
}

#[test]
fn a_round_sends_to_a_member_once_however_few_it_can_reach() {
    let config = Config {
        gossip_nodes: 3,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config);
    h.drain_news();
    // One connection: a round reaches it, and at most one member it must dial.
    h.swim.handle_peer_up(h.now, &name("a"));
    for incarnation in 1..=5 {
        h.take_sent();
        h.gossip("a", &[alive("b", incarnation)])
            .expect("valid datagram");
        h.drain_news();
        let rounds = rounds_by_instant(&h);
        assert!(!rounds.is_empty(), "update {incarnation} went out");
        for names in &rounds {
            let distinct: HashSet<&NodeName> = names.iter().collect();
            assert_eq!(distinct.len(), names.len(), "one round: {names:?}");
        }
    }
}

#[test]
fn news_goes_out_at_once_even_behind_queued_news_but_rounds_stay_a_quarter_interval_apart() {
    let (config, mut h) = connected_with_long_retransmits();
    let carries = |h: &Harness, who: &str| {
        h.sent_messages(|m| matches!(m, Message::Gossip))
            .into_iter()
            .filter(|(_, _, p)| member_mentions(p).iter().any(|(n, _)| *n == name(who)))
            .count()
    };
    h.drain_news();
    h.take_sent();
    h.gossip("a", &[alive("b", 1)]).expect("valid datagram");
    assert_eq!(
        carries(&h, "b"),
        config.gossip_nodes,
        "a round at once for b"
    );
    // More news at the same instant waits: the last round was just now.
    h.gossip("a", &[alive("c", 1)]).expect("valid datagram");
    assert_eq!(
        carries(&h, "c"),
        0,
        "c went out within a quarter interval of b"
    );
    // c goes at the next tick; a quarter interval after it, while it is still being
    // retransmitted, news goes out at once again.
    h.run_until_true(config.gossip_interval, "c went out", |h| {
        carries(h, "c") > 0
    });
    h.run_for(config.gossip_interval / 4);
    h.take_sent();
    assert!(h.swim.pending_broadcasts() > 0, "news still queued");
    h.gossip("a", &[alive("d", 1)]).expect("valid datagram");
    assert_eq!(
        carries(&h, "d"),
        config.gossip_nodes,
        "a round at once for d"
    );
}

#[test]
fn an_idle_node_wakes_only_to_probe_and_news_restarts_the_gossip_rounds() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    h.drain_news();
    // Nothing queued, every probe answered: over ten probe intervals the node wakes for its
    // probes (and the rare periodic exchange), not for gossip ticks or answered timeouts.
    let from = h.now;
    let mut wakes = 0;
    while let Some(at) = h
        .swim
        .poll_timeout()
        .filter(|&at| at <= from + config.probe_interval * 10)
    {
        h.run_until(at);
        wakes += 1;
    }
    assert!(
        wakes <= 14,
        "{wakes} wake-ups in ten probe intervals with nothing to gossip"
    );
    assert_eq!(h.swim.pending_broadcasts(), 0);
    // News: a round at once, then rounds an interval apart until it has been sent enough.
    h.take_sent();
    h.swim.set_meta(h.now, b"v2".to_vec()).unwrap();
    h.pump();
    let first = h.now;
    while h.swim.pending_broadcasts() > 0 {
        let at = h.swim.poll_timeout().expect("news queued: a round is due");
        assert!(at <= h.now + config.gossip_interval, "next round by {at:?}");
        h.run_until(at);
    }
    let rounds: BTreeSet<Instant> = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .map(|(at, _, _)| at)
        .collect();
    assert_eq!(rounds.first(), Some(&first), "the first round at once");
    assert!(
        rounds.len() >= 2,
        "retransmitted in later rounds: {rounds:?}"
    );
}

#[test]
fn a_suspicion_raised_by_a_timer_on_an_idle_node_goes_out_in_one_round() {
    let (config, mut h) = connected_with_long_retransmits();
    h.drain_news();
    // Idle for a while, so the gossip tick is long past when the news comes.
    h.run_for(config.probe_interval * 3);
    h.silence("c");
    h.take_sent();
    h.run_until_true_nacking(config.probe_interval * 30, "c suspected", |h| {
        h.state_of("c") == Some((0, State::Suspect))
    });
    let suspected_at = h.now;
    let rounds = h
        .sent_messages(|m| matches!(m, Message::Gossip))
        .into_iter()
        .filter(|(at, _, _)| *at == suspected_at)
        .count();
    assert!(
        (1..=config.gossip_nodes).contains(&rounds),
        "{rounds} gossip datagrams at the instant of the suspicion"
    );
}
