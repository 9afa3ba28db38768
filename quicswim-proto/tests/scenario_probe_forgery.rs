//! Scenario tests of a member that answers probes it has no part in, on one core: Acks from
//! a third member or with a guessed sequence number, PingReqs that would send this node
//! elsewhere, and Pings that would set its incarnation. Each is refused, counted, and
//! changes nothing; the honest answers still count.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::collections::BTreeSet;
use std::time::Duration;

use quicswim_proto::protocol::codec::{decode_stream, Message, StreamMessage};
use quicswim_proto::protocol::{
    Config, DecodeError, Event, ForgedCounts, Incarnation, NodeName, PeerError, State, COUNTER_MAX,
    SELF_CLAIM_MAX,
};

use core_harness::*;

/// Fires the next deadline.
fn step(h: &mut Harness) {
    let at = h.swim.poll_timeout().expect("timers are set");
    h.run_until(at);
}

/// The seq of `me`'s direct Pings to `target` sent so far, in order.
fn pings_to(h: &Harness, target: &str) -> Vec<u64> {
    h.sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .filter(|(_, t, _)| t.to.name == Some(name(target)))
        .map(|(_, _, p)| match p.message {
            Message::Ping { seq, .. } => seq,
            _ => unreachable!(),
        })
        .collect()
}

/// Runs until the probe with `seq` has sent its PingReqs; returns the helpers asked.
fn helpers_of(h: &mut Harness, seq: u64) -> BTreeSet<NodeName> {
    for _ in 0..1000 {
        let asked: BTreeSet<NodeName> = h
            .sent_messages(|m| matches!(m, Message::PingReq { seq: s, .. } if *s == seq))
            .into_iter()
            .map(|(_, t, _)| t.to.name.expect("helpers are known by name"))
            .collect();
        if !asked.is_empty() {
            return asked;
        }
        step(h);
    }
    panic!("no PingReq for probe {seq}");
}

// ------------------------------------------------------------------------------- acks

#[test]
fn a_crashed_member_is_declared_dead_while_another_member_acks_its_probes() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    let (crashed, rogue) = ("b", "a");
    h.silence(crashed);
    // The rogue answers every probe of the crashed member the moment it goes out, by
    // datagram and on a stream, with the right seq; helpers asked Nack, as live ones do.
    let (mut answered, mut nacked, mut forged) = (0, 0, 0);
    let deadline = h.now + Duration::from_secs(120);
    while h.state_of(crashed).map(|(_, s)| s) != Some(State::Dead) {
        assert!(
            h.now <= deadline,
            "{crashed} not declared Dead within 120 s"
        );
        step(&mut h);
        let seqs = pings_to(&h, crashed);
        for &seq in &seqs[answered..] {
            h.send(rogue, &Message::Ack { seq }, &[]);
            assert_eq!(h.stream(rogue, &StreamMessage::Ack { seq }), Ok(None));
            forged += 2;
        }
        answered = seqs.len();
        let reqs = h.sent_messages(|m| matches!(m, Message::PingReq { .. }));
        for (_, t, p) in &reqs[nacked..] {
            let helper = t.to.name.clone().expect("helpers are known by name");
            if let Message::PingReq { seq, .. } = p.message {
                h.send(helper.as_str(), &Message::Nack { seq }, &[]);
            }
        }
        nacked = reqs.len();
    }
    assert!(answered >= 1, "the crashed member was probed");
    let kinds: Vec<&str> = h
        .events_about(crashed)
        .iter()
        .map(|(_, e)| match e {
            Event::Suspect(_) => "suspect",
            Event::Dead(_) => "dead",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["suspect", "dead"]);
    let s = h.swim.stats();
    assert_eq!(
        s.forged,
        ForgedCounts {
            ack: forged,
            ..ForgedCounts::default()
        }
    );
    assert!(s.probes_failed >= 1);
    assert_eq!(
        h.state_of(rogue),
        Some((0, State::Alive)),
        "the rogue is not punished, only refused"
    );
}

#[test]
fn an_ack_with_a_guessed_seq_is_refused_and_the_probe_still_fails() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (_, target, seq) = first_probe(&mut h);
    // What a counter from 0 would have made easy: every small seq, from the target itself
    // and from a third member, by datagram and on a stream.
    let other = PEERS
        .into_iter()
        .find(|p| *p != target.as_str())
        .expect("five peers");
    let guesses: Vec<u64> = (0..64).filter(|g| *g != seq).collect();
    assert_eq!(guesses.len(), 64, "the real seq is no small number");
    for &guess in &guesses {
        for who in [target.as_str(), other] {
            h.send(who, &Message::Ack { seq: guess }, &[]);
            assert_eq!(h.stream(who, &StreamMessage::Ack { seq: guess }), Ok(None));
        }
    }
    assert_eq!(h.swim.stats().forged.ack, 4 * guesses.len() as u64);
    // Nothing was answered: the probe goes indirect, and with a helper's Nack home, accuses.
    let helpers = helpers_of(&mut h, seq);
    let helper = helpers.first().expect("helpers were asked");
    h.send(helper.as_str(), &Message::Nack { seq }, &[]);
    let before = h.swim.stats().probes_failed;
    h.run_for(config.probe_interval);
    assert_eq!(h.swim.stats().probes_failed, before + 1);
    assert!(h
        .events_about(target.as_str())
        .iter()
        .any(|(_, e)| matches!(e, Event::Suspect(_))));
    let s = h.swim.stats();
    assert_eq!(
        (s.forged.nack, s.forged.ping_req, s.forged.suspected),
        (0, 0, 0)
    );
}

#[test]
fn probe_seqs_are_drawn_at_random_not_counted() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.run_for(config.probe_interval * 40);
    let seqs: Vec<u64> = h
        .sent_messages(|m| matches!(m, Message::Ping { .. }))
        .into_iter()
        .map(|(_, _, p)| match p.message {
            Message::Ping { seq, .. } => seq,
            _ => unreachable!(),
        })
        .collect();
    assert!(seqs.len() >= 30, "{} probes", seqs.len());
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), seqs.len(), "no seq repeats");
    // From 64 random bits: none small (each is below 2^32 once in 4 billion draws), and no
    // two in a row one apart.
    assert!(seqs.iter().all(|s| *s > u64::from(u32::MAX)), "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1].wrapping_sub(w[0]) != 1));
    assert_eq!(h.swim.stats().forged, ForgedCounts::default());
}

#[test]
fn a_relayed_ack_counts_only_from_a_helper_asked_for_that_probe() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (_, target, seq) = first_probe(&mut h);
    let helpers = helpers_of(&mut h, seq);
    let not_asked: Vec<&str> = PEERS
        .into_iter()
        .filter(|p| *p != target.as_str() && !helpers.contains(&name(p)))
        .collect();
    assert!(!not_asked.is_empty(), "{helpers:?}");
    // A member not asked, and an asked helper on a stream (helpers relay by datagram only).
    let helper = helpers.first().expect("helpers were asked").clone();
    for who in &not_asked {
        h.send(who, &Message::Ack { seq }, &[]);
    }
    assert_eq!(
        h.stream(helper.as_str(), &StreamMessage::Ack { seq }),
        Ok(None)
    );
    let s = h.swim.stats();
    assert_eq!(s.forged.ack, not_asked.len() as u64 + 1);
    assert_eq!(s.indirect_probe_rtt.count(), 0, "not taken as an answer");
    // The asked helper's relayed Ack by datagram answers the probe.
    h.send(helper.as_str(), &Message::Ack { seq }, &[]);
    let before = h.swim.stats().probes_failed;
    h.run_for(config.probe_interval);
    let s = h.swim.stats();
    assert_eq!(s.indirect_probe_rtt.count(), 1);
    assert_eq!(s.probes_failed, before, "the probe was answered");
    assert!(h.events_about(target.as_str()).is_empty());
    assert_eq!(s.forged.ack, not_asked.len() as u64 + 1);
}

#[test]
fn honest_acks_direct_relayed_on_a_stream_and_late_count_nothing_as_forged() {
    let config = Config::lan();
    // Direct datagram Acks (the harness answers every Ping), then stream-only answers.
    let mut h = Harness::with_peers(config.clone());
    h.run_for(config.probe_interval * 10);
    let s = h.swim.stats();
    assert!(s.probe_rtt.count() >= 5, "{s:?}");
    for p in PEERS {
        h.answer_datagrams.remove(&name(p));
    }
    h.run_for(config.probe_interval * 10);
    let s = h.swim.stats();
    assert!(s.stream_probes_sent >= 5, "{s:?}");
    assert_eq!(s.suspicions_raised, 0);
    assert_eq!(s.forged, ForgedCounts::default());

    // A late Ack: the target answers its probe only once the next probe has begun.
    h.silence_all();
    h.take_sent();
    let (first_at, target, seq) = first_probe(&mut h);
    let helpers = helpers_of(&mut h, seq);
    while !h
        .sent_messages(|m| matches!(m, Message::Ping { .. }))
        .iter()
        .any(|(at, _, _)| *at > first_at)
    {
        assert!(
            h.now < first_at + config.probe_interval * 3,
            "no next probe"
        );
        step(&mut h);
    }
    h.send(target.as_str(), &Message::Ack { seq }, &[]);
    // ... and a helper's late Nack for it.
    let helper = helpers.first().expect("helpers were asked");
    h.send(helper.as_str(), &Message::Nack { seq }, &[]);
    assert_eq!(h.swim.stats().forged, ForgedCounts::default());
}

#[test]
fn a_nack_counts_only_from_a_helper_asked_and_others_are_refused() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let (_, target, seq) = first_probe(&mut h);
    let helpers = helpers_of(&mut h, seq);
    let helper = helpers.first().expect("helpers were asked").clone();
    h.send(target.as_str(), &Message::Nack { seq }, &[]);
    h.send(helper.as_str(), &Message::Nack { seq }, &[]);
    h.send(helper.as_str(), &Message::Nack { seq }, &[]);
    h.send(helper.as_str(), &Message::Nack { seq: seq ^ 1 }, &[]);
    // The target's and the one for no probe; the helper's second copy is only ignored.
    assert_eq!(h.swim.stats().forged.nack, 2);
    // The helper's first Nack counted: with it home, the probe accuses the target.
    h.run_for(config.probe_interval);
    assert!(h
        .events_about(target.as_str())
        .iter()
        .any(|(_, e)| matches!(e, Event::Suspect(_))));
    assert_eq!(h.swim.stats().forged.nack, 2);
}

// ------------------------------------------------------------------------------- relays

#[test]
fn a_relay_forwards_only_the_ack_of_the_member_it_pinged() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence("b");
    let req = Message::PingReq {
        seq: 7,
        target: name("b"),
        target_addr: addr("b"),
    };
    h.send("a", &req, &[]);
    let relayed = pings_to(&h, "b");
    assert_eq!(relayed.len(), 1);
    let our_seq = relayed[0];
    h.take_sent();
    // A third member, the requester itself, and the target on a stream: not forwarded.
    h.send("c", &Message::Ack { seq: our_seq }, &[]);
    h.send("a", &Message::Ack { seq: our_seq }, &[]);
    assert_eq!(
        h.stream("b", &StreamMessage::Ack { seq: our_seq }),
        Ok(None)
    );
    assert!(h.take_sent().is_empty());
    assert_eq!(h.swim.stats().forged.ack, 3);
    // The target's own Ack is.
    h.send("b", &Message::Ack { seq: our_seq }, &[]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.to, to("a"));
    assert_eq!(packet(&sent[0].1).message, Message::Ack { seq: 7 });
    // A second copy of it is neither forwarded nor called forged.
    h.send("b", &Message::Ack { seq: our_seq }, &[]);
    assert!(h.take_sent().is_empty());
    assert_eq!(h.swim.stats().forged.ack, 3);
}

#[test]
fn a_ping_req_with_another_address_dials_nowhere_and_is_nacked() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.gossip("a", &[claim("e", 1, State::Dead, Some("a"))])
        .expect("valid datagram");
    assert_eq!(h.state_of("e"), Some((1, State::Dead)));
    h.take_sent();
    h.take_events();
    let before = h.table();
    let cases = [
        ("b", addr("other")), // a member we hold, at an address it does not have
        ("zz", addr("zz")),   // a member we do not hold
        ("e", addr("e")),     // a member we hold Dead
    ];
    for (seq, (target, target_addr)) in (100..).zip(cases) {
        let req = Message::PingReq {
            seq,
            target: name(target),
            target_addr,
        };
        h.send("c", &req, &[]);
        let sent = h.take_sent();
        assert!(
            sent.iter().all(|(_, t)| t.to == to("c")),
            "only the requester hears back: {sent:?}"
        );
        let messages: Vec<Message> = sent.iter().map(|(_, t)| packet(t).message).collect();
        assert_eq!(messages, [Message::Nack { seq }], "{target}");
    }
    // The Dead one is counted apart: honest members send those while views differ.
    let s = h.swim.stats();
    assert_eq!((s.forged.ping_req, s.ping_reqs_for_inactive), (2, 1));
    // Nothing was pinged later either, and nothing changed.
    h.run_for(config.probe_timeout * 2);
    assert!(h
        .sent
        .iter()
        .all(|(_, t)| t.to.addr != addr("other") && t.to.name != Some(name("zz"))));
    assert!(h
        .sent_messages(|m| matches!(m, Message::Ping { target, .. } if target.as_str() == "e"))
        .is_empty());
    assert_eq!(h.table(), before);
    assert!(h.take_events().is_empty());
    // The same PingReq with the address we hold is served.
    h.take_sent();
    let req = Message::PingReq {
        seq: 200,
        target: name("b"),
        target_addr: addr("b"),
    };
    h.silence("b");
    h.send("c", &req, &[]);
    assert_eq!(pings_to(&h, "b").len(), 1);
    let s = h.swim.stats();
    assert_eq!((s.forged.ping_req, s.ping_reqs_for_inactive), (2, 1));
}

// ------------------------------------------------------------------------------- suspicions

#[test]
fn a_ping_suspecting_us_above_our_incarnation_leaves_it_unchanged() {
    let mut h = Harness::with_peers(Config::lan());
    let health = h.swim.health_score();
    for (seq, inc) in [(1, 1), (2, SELF_CLAIM_MAX), (3, COUNTER_MAX)] {
        h.send("a", &ping(seq, "me", Some(inc)), &[]);
        // Still answered: we are alive.
        let sent = h.take_sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let ack = packet(&sent[0].1);
        assert_eq!(ack.message, Message::Ack { seq });
        assert!(
            member_updates(&ack)
                .iter()
                .all(|u| u.claim.name != name("me")),
            "no Alive of ours: nothing to refute"
        );
    }
    let stream_ping = StreamMessage::Ping {
        seq: 4,
        target: name("me"),
        suspected: Some(Incarnation(COUNTER_MAX)),
    };
    let reply = h
        .stream("b", &stream_ping)
        .expect("accepted")
        .expect("a reply");
    assert_eq!(decode_stream(&reply), Ok(StreamMessage::Ack { seq: 4 }));
    // Past what any peer may send, it does not even decode.
    let over = datagram(&ping(5, "me", Some(u64::MAX)), &[]);
    assert!(matches!(
        h.deliver("a", &over),
        Err(PeerError::Decode {
            source: DecodeError::FieldTooLong { .. },
            ..
        })
    ));
    assert_eq!(h.swim.local_member().incarnation, Incarnation(0));
    let s = h.swim.stats();
    assert_eq!(s.forged.suspected, 4);
    assert_eq!((s.refutations, s.self_claims_refused), (0, 0));
    assert_eq!(h.swim.health_score(), health);

    // A suspicion at our own incarnation is refuted as before, one above it.
    h.send("a", &ping(6, "me", Some(0)), &[]);
    assert_eq!(h.swim.local_member().incarnation, Incarnation(1));
    assert_eq!(h.swim.stats().refutations, 1);
    // And the one above our old incarnation is now ours: no longer refused.
    h.send("a", &ping(7, "me", Some(1)), &[]);
    assert_eq!(h.swim.local_member().incarnation, Incarnation(2));
    assert_eq!(h.swim.stats().forged.suspected, 4);
}

#[test]
fn our_incarnation_saturates_rather_than_wraps() {
    assert_eq!(Incarnation(u64::MAX).next(), Incarnation(u64::MAX));
    assert_eq!(
        Incarnation(COUNTER_MAX).next(),
        Incarnation(COUNTER_MAX + 1)
    );
}
