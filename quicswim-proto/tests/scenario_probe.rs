//! Scenario tests of failure detection on one core: Pings and their Acks, probes that fail
//! into indirect checks and suspicion, relayed probes for others, and the order in which
//! members are probed.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use quicswim_proto::protocol::codec::{decode_stream, Message, StreamMessage};
use quicswim_proto::protocol::{
    Config, Event, Incarnation, NodeName, State, Transmit, TransmitKind, RTT_BOUNDS_MICROS,
};

use core_harness::*;

// ------------------------------------------------------------------------------- pings

#[test]
fn ping_for_us_gets_exactly_one_ack_with_its_seq() {
    let mut h = Harness::with_peers(Config::lan());
    h.send("a", &ping(42, "me", None), &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (at, t) = &sent[0];
    assert_eq!(*at, h.now, "answered at once");
    assert_eq!(t.to, to("a"));
    assert_eq!(packet(t).message, Message::Ack { seq: 42 });
    assert_eq!(h.swim.stats().datagrams_in, 2);
}

#[test]
fn ping_for_another_target_is_ignored() {
    let mut h = Harness::with_peers(Config::lan());
    let before = h.table();
    // A Ping meant for whoever had this address before.
    h.send("a", &ping(42, "zz", None), &[]);
    assert!(h.take_sent().is_empty());
    assert!(h.take_events().is_empty());
    assert_eq!(h.table(), before);
}

#[test]
fn ping_carrying_a_suspicion_of_us_is_refuted_on_the_ack() {
    let mut h = Harness::with_peers(Config::lan());
    h.send("a", &ping(3, "me", Some(0)), &[]);
    assert_eq!(h.swim.local_member().incarnation, Incarnation(1));
    assert_eq!(h.swim.stats().refutations, 1);
    // Lifeguard: having to refute says we may be the slow one.
    assert_eq!(h.swim.health_score(), 1);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let p = packet(&sent[0].1);
    assert_eq!(sent[0].1.to, to("a"));
    assert_eq!(p.message, Message::Ack { seq: 3 });
    assert_eq!(
        member_updates(&p).first(),
        Some(&alive("me", 1)),
        "the refutation rides first on the Ack"
    );
}

#[test]
fn ping_from_a_member_that_missed_our_refutation_carries_it_again() {
    let mut h = Harness::with_peers(Config::lan());
    h.send("a", &ping(3, "me", Some(0)), &[]);
    // Send the refutation until it leaves the queue, as if every copy was lost on the way to b.
    h.run_for(Duration::from_secs(30));
    h.take_sent();
    assert_eq!(h.swim.local_member().incarnation, Incarnation(1));

    h.send("b", &ping(9, "me", Some(0)), &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let p = packet(&sent[0].1);
    assert_eq!(sent[0].1.to, to("b"));
    assert_eq!(p.message, Message::Ack { seq: 9 });
    assert_eq!(member_updates(&p).first(), Some(&alive("me", 1)));
    assert_eq!(
        h.swim.local_member().incarnation,
        Incarnation(1),
        "a stale suspicion is not refuted again"
    );
    assert_eq!(h.swim.stats().refutations, 1);
}

#[test]
fn stream_ping_for_us_is_answered_and_one_for_another_is_not() {
    let mut h = Harness::with_peers(Config::lan());
    let ours = StreamMessage::Ping {
        seq: 5,
        target: name("me"),
        suspected: None,
    };
    let reply = h.stream("a", &ours).expect("accepted").expect("a reply");
    assert_eq!(decode_stream(&reply), Ok(StreamMessage::Ack { seq: 5 }));
    let theirs = StreamMessage::Ping {
        seq: 6,
        target: name("zz"),
        suspected: None,
    };
    assert_eq!(h.stream("a", &theirs), Ok(None));
    assert!(h.take_sent().is_empty());
}

#[test]
fn unanswered_probe_asks_indirect_checks_then_suspects_at_the_next_period() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (probed_at, target, seq) = first_probe(&mut h);
    let tgt = target.as_str().to_owned();
    h.take_sent();

    h.run_until(probed_at + config.probe_timeout - NS);
    assert!(
        h.sent_messages(|m| matches!(m, Message::PingReq { .. }))
            .is_empty(),
        "no PingReq before probe_timeout"
    );
    assert!(h.sent.iter().all(|(_, t)| t.kind == TransmitKind::Datagram));

    h.run_until(probed_at + config.probe_timeout);
    let reqs = h.sent_messages(|m| matches!(m, Message::PingReq { .. }));
    assert_eq!(reqs.len(), config.indirect_checks, "{reqs:?}");
    let mut helpers = BTreeSet::new();
    for (at, t, p) in &reqs {
        assert_eq!(*at, probed_at + config.probe_timeout);
        assert_eq!(
            p.message,
            Message::PingReq {
                seq,
                target: target.clone(),
                target_addr: addr(&tgt),
            }
        );
        let helper = t.to.name.clone().expect("helpers are known by name");
        assert_ne!(helper, target, "the target is not its own helper");
        assert_eq!(t.to.addr, addr(helper.as_str()));
        helpers.insert(helper);
    }
    assert_eq!(helpers.len(), config.indirect_checks, "distinct helpers");
    // The same probe on a stream, to the target itself.
    let streams: Vec<&Transmit> = h
        .sent
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.kind == TransmitKind::Request)
        .collect();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0].to, to(&tgt));
    assert_eq!(
        decode_stream(&streams[0].payload),
        Ok(StreamMessage::Ping {
            seq,
            target: target.clone(),
            suspected: None,
        })
    );

    // One helper's Nack comes home: the helpers are alive, so the target is the one down.
    let helper = helpers.first().expect("three helpers").clone();
    h.send(helper.as_str(), &Message::Nack { seq }, &[]);

    h.run_until(probed_at + config.probe_interval - NS);
    assert!(h.events_about(&tgt).is_empty());
    assert_eq!(h.state_of(&tgt), Some((0, State::Alive)));

    h.run_until(probed_at + config.probe_interval);
    assert_eq!(
        h.events_about(&tgt),
        vec![(
            probed_at + config.probe_interval,
            Event::Suspect(member(&tgt, 0, State::Suspect))
        )]
    );
    let s = h.swim.stats();
    assert_eq!(
        (
            s.probes_failed,
            s.indirect_probes_sent,
            s.stream_probes_sent,
            s.suspicions_raised
        ),
        (1, 3, 1, 1)
    );
    // Lifeguard: three Nacks owed and one came, so the fault may be partly ours.
    assert_eq!(h.swim.health_score(), 2);
    // The suspicion is gossiped, naming us as the accuser.
    h.run_for(config.gossip_interval);
    let suspicion = claim(&tgt, 0, State::Suspect, Some("me"));
    assert!(
        h.sent_messages(|_| true)
            .iter()
            .any(|(at, _, p)| *at >= probed_at + config.probe_interval
                && member_updates(p).contains(&suspicion)),
        "suspicion not gossiped"
    );
}

#[test]
fn probe_without_a_single_nack_accuses_nobody() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (probed_at, target, _) = first_probe(&mut h);
    h.run_until(probed_at + config.probe_interval);
    // Helpers were asked and none answered: this node is the likelier one cut off.
    assert!(h.events_about(target.as_str()).is_empty());
    assert_eq!(h.state_of(target.as_str()), Some((0, State::Alive)));
    let s = h.swim.stats();
    assert_eq!((s.probes_failed, s.suspicions_raised), (1, 0));
    assert_eq!(h.swim.health_score(), 3);
}

#[test]
fn nacks_count_only_from_helpers_asked_and_once_each() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (probed_at, target, seq) = first_probe(&mut h);
    h.run_until(probed_at + config.probe_timeout);
    let helpers: BTreeSet<NodeName> = h
        .sent_messages(|m| matches!(m, Message::PingReq { .. }))
        .into_iter()
        .map(|(_, t, _)| t.to.name.expect("helpers are known by name"))
        .collect();
    assert_eq!(helpers.len(), config.indirect_checks);
    let not_asked: Vec<&str> = PEERS
        .into_iter()
        .filter(|p| !helpers.contains(&name(p)))
        .collect();
    assert!(
        not_asked.contains(&target.as_str()),
        "the target is no helper"
    );
    assert!(not_asked.len() >= 2, "{not_asked:?}");
    // Members we did not ask (the target among them) Nack this probe, and a stranger too.
    for who in not_asked.iter().copied().chain(["zz"]) {
        for _ in 0..3 {
            h.send(who, &Message::Nack { seq }, &[]);
        }
    }
    h.run_until(probed_at + config.probe_interval);
    // As with no Nack at all: the fault is likelier ours, nobody is accused.
    assert!(h.events_about(target.as_str()).is_empty());
    assert_eq!(h.swim.stats().suspicions_raised, 0);
    assert_eq!(h.swim.health_score(), 3);

    // The next probe: one helper Nacks it three times over, which counts as one Nack.
    let score = h.swim.health_score();
    let (next_at, next_target, next_seq) = next_probe(&mut h, probed_at);
    let helper = loop {
        let at = h.swim.poll_timeout().expect("timers are set");
        h.run_until(at);
        let asked =
            h.sent_messages(|m| matches!(m, Message::PingReq { seq, .. } if *seq == next_seq));
        if let Some((_, t, _)) = asked.into_iter().next() {
            break t.to.name.expect("helpers are known by name");
        }
    };
    for _ in 0..3 {
        h.send(helper.as_str(), &Message::Nack { seq: next_seq }, &[]);
    }
    next_probe(&mut h, next_at);
    assert_eq!(
        h.swim.health_score() as usize,
        score as usize + config.indirect_checks - 1,
        "one Nack of {} counted",
        config.indirect_checks
    );
    assert!(
        h.events_about(next_target.as_str())
            .iter()
            .any(|(_, e)| matches!(e, Event::Suspect(_))),
        "with one helper's Nack home the target is accused"
    );
}

/// Runs until `me` has sent a probe after `after` (closing the one before); returns when,
/// the target and the seq.
fn next_probe(h: &mut Harness, after: Instant) -> (Instant, NodeName, u64) {
    for _ in 0..1000 {
        let pings = h.sent_messages(|m| matches!(m, Message::Ping { .. }));
        if let Some((at, _, p)) = pings.into_iter().find(|(at, _, _)| *at > after) {
            let Message::Ping { seq, target, .. } = p.message else {
                unreachable!()
            };
            return (at, target, seq);
        }
        let at = h.swim.poll_timeout().expect("timers are set");
        h.run_until(at);
    }
    panic!("no probe sent");
}

#[test]
fn probe_answered_only_on_the_stream_raises_no_suspicion() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    for p in PEERS {
        // Every datagram to a peer is lost; streams get through.
        h.answer_datagrams.remove(&name(p));
    }
    let (probed_at, target, _) = first_probe(&mut h);
    h.run_until(probed_at + config.probe_interval * 10);
    let suspects: Vec<_> = h
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Suspect(_)))
        .collect();
    assert!(suspects.is_empty(), "{suspects:?}");
    let s = h.swim.stats();
    assert_eq!(s.suspicions_raised, 0);
    assert!(s.stream_probes_sent >= 1, "{s:?}");
    assert_eq!(h.state_of(target.as_str()), Some((0, State::Alive)));
}

#[test]
fn probe_saved_by_the_stream_does_not_lower_the_health_score() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (probed_at, _, _) = first_probe(&mut h);
    h.run_until(probed_at + config.probe_interval);
    assert_eq!(h.swim.health_score(), 3);
    // Datagrams still lost, streams answered: every probe is saved by the stream, which
    // keeps the target from being accused but says nothing good about our datagrams.
    for p in PEERS {
        h.answer_streams.insert(name(p));
    }
    h.run_for(config.probe_interval * 40);
    assert_eq!(h.swim.stats().suspicions_raised, 0);
    assert_eq!(h.swim.health_score(), 3);
    // Datagram Acks again: the score falls back to healthy.
    for p in PEERS {
        h.answer_datagrams.insert(name(p));
    }
    h.run_for(config.probe_interval * 40);
    assert_eq!(h.swim.health_score(), 0);
}

// ------------------------------------------------------------------------------- relays

#[test]
fn ping_req_pings_the_target_and_forwards_its_ack() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence("b");
    let req = Message::PingReq {
        seq: 7,
        target: name("b"),
        target_addr: addr("b"),
    };
    h.send("a", &req, &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.to, to("b"));
    let Message::Ping {
        seq: our_seq,
        target,
        suspected,
    } = packet(&sent[0].1).message
    else {
        panic!("expected a Ping: {sent:?}");
    };
    assert_eq!((target, suspected), (name("b"), None));

    h.send("b", &Message::Ack { seq: our_seq }, &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.to, to("a"));
    assert_eq!(packet(&sent[0].1).message, Message::Ack { seq: 7 });

    // Answered: no Nack follows.
    h.run_for(config.probe_timeout * 2);
    assert!(h
        .sent_messages(|m| matches!(m, Message::Nack { .. }))
        .is_empty());
}

#[test]
fn ping_req_without_ack_is_nacked_at_four_fifths_of_the_probe_timeout() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence("b");
    let asked_at = h.now;
    let req = Message::PingReq {
        seq: 7,
        target: name("b"),
        target_addr: addr("b"),
    };
    h.send("a", &req, &[]);
    let relayed = h.sent_messages(|m| matches!(m, Message::Ping { .. }));
    let Message::Ping { seq: our_seq, .. } = relayed[0].2.message else {
        unreachable!()
    };
    // Early enough to reach the requester before it closes its probe, half a period after
    // it sent the PingReq (Lifeguard).
    let nack_at = asked_at + config.probe_timeout * 4 / 5;
    h.run_until(nack_at - NS);
    assert!(h
        .sent_messages(|m| matches!(m, Message::Nack { .. }))
        .is_empty());
    h.run_until(nack_at);
    let nacks = h.sent_messages(|m| matches!(m, Message::Nack { .. }));
    assert_eq!(nacks.len(), 1, "{nacks:?}");
    let (at, t, p) = &nacks[0];
    assert_eq!(*at, nack_at);
    assert_eq!(t.to, to("a"));
    assert_eq!(p.message, Message::Nack { seq: 7 });
    // A late Ack is not forwarded: the relay is over.
    h.take_sent();
    h.send("b", &Message::Ack { seq: our_seq }, &[]);
    assert!(h.take_sent().is_empty());
}

#[test]
fn ping_req_for_ourselves_is_ignored() {
    let mut h = Harness::with_peers(Config::lan());
    let req = Message::PingReq {
        seq: 7,
        target: name("me"),
        target_addr: addr("me"),
    };
    h.send("a", &req, &[]);
    assert!(h.take_sent().is_empty());
}

// ------------------------------------------------------------------------------- probe order

/// The members `me` pinged directly (relayed pings excluded), in order.
fn probe_targets(h: &Harness) -> Vec<NodeName> {
    h.sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .filter_map(|(_, t, p)| match p.message {
            Message::Ping { target, .. } if t.to.name.as_ref() == Some(&target) => Some(target),
            _ => None,
        })
        .collect()
}

/// The watch order is `xxh64(name)`; the member after `me` in it, wrapping round.
fn watched_by_me() -> NodeName {
    watch_order()[0].clone()
}

/// [`PEERS`] in the watch order, starting after `me`.
fn watch_order() -> Vec<NodeName> {
    let key = |s: &str| quicswim_proto::hash::xxh64(s.as_bytes(), 0);
    let mine = key("me");
    let mut peers = PEERS.to_vec();
    peers.sort_by_key(|p| key(p).wrapping_sub(mine).wrapping_sub(1));
    peers.into_iter().map(name).collect()
}

#[test]
fn every_other_probe_goes_to_the_watched_member_and_the_pass_still_covers_everyone() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.run_for(config.probe_interval * 24);
    let targets = probe_targets(&h);
    assert!(targets.len() >= 20, "only {} probes", targets.len());
    let watched = watched_by_me();
    for (i, pair) in targets.windows(2).enumerate() {
        assert!(
            pair.contains(&watched),
            "probes {i} and {} went to {:?}, neither to the watched {watched}",
            i + 1,
            pair
        );
    }
    for p in PEERS {
        assert!(
            targets.contains(&name(p)),
            "{p} never probed in {targets:?}"
        );
    }
}

#[test]
fn when_the_watched_member_dies_the_next_in_the_order_is_watched() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.run_for(config.probe_interval * 4);
    let order = watch_order();
    let (gone, next) = (order[0].clone(), order[1].clone());
    let reporter = PEERS.iter().find(|p| name(p) != gone).expect("peers");
    h.gossip(reporter, &[claim(gone.as_str(), 0, State::Dead, None)])
        .expect("valid datagram");
    assert_eq!(h.state_of(gone.as_str()), Some((0, State::Dead)));
    h.take_sent();
    h.run_for(config.probe_interval * 10);
    let targets = probe_targets(&h);
    assert!(
        !targets.contains(&gone),
        "probed the dead {gone}: {targets:?}"
    );
    for pair in targets.windows(2) {
        assert!(pair.contains(&next), "{pair:?}: neither is {next}");
    }
    // It comes back: watched again.
    h.gossip(reporter, &[alive(gone.as_str(), 1)])
        .expect("valid datagram");
    h.take_sent();
    h.run_for(config.probe_interval * 10);
    let targets = probe_targets(&h);
    for pair in targets.windows(2) {
        assert!(pair.contains(&gone), "{pair:?}: neither is {gone}");
    }
}

#[test]
fn a_suspicion_heard_from_another_member_is_probed_next() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    // A member other than the watched one, so only the suspicion can make it the next target.
    let suspect = PEERS
        .iter()
        .map(|p| name(p))
        .find(|p| *p != watched_by_me())
        .expect("peers");
    h.run_for(config.probe_interval * 3);
    h.take_sent();
    h.gossip(
        "a",
        &[claim(suspect.as_str(), 0, State::Suspect, Some("a"))],
    )
    .expect("valid datagram");
    // With six members every hearer probes (3k / n = 6 / 6).
    let (_, target, _) = first_probe(&mut h);
    assert_eq!(target, suspect);
    // It answers: the suspicion stays until it refutes, and no one else's probe is held up.
    h.run_for(config.probe_interval * 2);
    assert_eq!(h.state_of(suspect.as_str()), Some((0, State::Suspect)));
}

// ------------------------------------------------------------------------------- round trips

#[test]
fn probe_round_trips_are_timed_from_the_nows_given() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (_, target, seq) = first_probe(&mut h);
    // The target's own Ack, 3 ms after the Ping: a direct round trip in the 2.5-5 ms bucket.
    h.now += Duration::from_millis(3);
    h.send(target.as_str(), &Message::Ack { seq }, &[]);
    let rtt = h.swim.stats().probe_rtt;
    assert_eq!(rtt.count(), 1);
    assert_eq!(rtt.sum_micros, 3_000);
    let bucket = RTT_BOUNDS_MICROS.partition_point(|&b| b < 3_000);
    assert_eq!(rtt.counts[bucket], 1);
    assert_eq!(RTT_BOUNDS_MICROS[bucket], 5_000);
    // A second Ack for the same probe is not counted again.
    h.send(target.as_str(), &Message::Ack { seq }, &[]);
    assert_eq!(h.swim.stats().probe_rtt.count(), 1);
    assert_eq!(h.swim.stats().indirect_probe_rtt.count(), 0);

    // The next probe times out; a helper's relayed Ack 40 ms after the PingReqs is indirect.
    h.take_sent();
    let (_, target, seq) = first_probe(&mut h);
    h.run_for(config.probe_timeout);
    let helper = h
        .sent_messages(|m| matches!(m, Message::PingReq { .. }))
        .into_iter()
        .map(|(_, t, _)| t.to.name.expect("helpers by name"))
        .next()
        .expect("a PingReq went out");
    assert_ne!(helper, target);
    h.now += Duration::from_millis(40);
    h.send(helper.as_str(), &Message::Ack { seq }, &[]);
    let stats = h.swim.stats();
    assert_eq!(stats.probe_rtt.count(), 1);
    assert_eq!(stats.indirect_probe_rtt.count(), 1);
    assert_eq!(stats.indirect_probe_rtt.sum_micros, 40_000);
}
