//! Scenario tests of key/value rounds on one core: when they start and stop, and what they
//! fetch and push.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use quicswim_proto::protocol::codec::{decode_stream, StreamMessage};
use quicswim_proto::protocol::{Config, Event, NodeName, TransmitKind};

use core_harness::*;

/// The key/value round requests sent so far, with when and to whom.
fn kv_syncs(h: &Harness) -> Vec<(Instant, NodeName)> {
    h.sent
        .iter()
        .filter(|(_, t)| t.kind == TransmitKind::Request)
        .filter(|(_, t)| matches!(decode_stream(&t.payload), Ok(StreamMessage::KvSync { .. })))
        .map(|(at, t)| {
            (
                *at,
                t.to.name.clone().expect("rounds go to members by name"),
            )
        })
        .collect()
}

#[test]
fn a_write_starts_key_value_rounds_at_once_and_a_quiet_node_stops_them() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.run_for(config.kv_sync_interval * 20);
    assert!(kv_syncs(&h).is_empty(), "no key/value data, no rounds");

    let written_at = h.now;
    h.swim.set(h.now, "k", b"v".to_vec()).expect("valid write");
    h.run_for(config.kv_sync_interval * 40);
    let syncs = kv_syncs(&h);
    let rounds = quicswim_proto::protocol::swim::kv_rounds(PEERS.len() + 1) as usize;
    assert_eq!(syncs.len(), rounds * config.gossip_nodes, "{syncs:?}");
    // The first round goes at the write, the rest one interval apart.
    for (i, round) in syncs.chunks(config.gossip_nodes).enumerate() {
        let due = written_at + config.kv_sync_interval * i as u32;
        assert!(
            round.iter().all(|(at, _)| *at == due),
            "round {i}: {round:?}"
        );
        let targets: BTreeSet<&NodeName> = round.iter().map(|(_, to)| to).collect();
        assert_eq!(
            targets.len(),
            config.gossip_nodes,
            "distinct members per round"
        );
    }
}

/// Writes a key, sends the first digest of the round it starts, and `delay` later has "a"
/// answer it: here is a's key, and a holds nothing of ours. Returns the harness and the
/// keys (owner, key) this node then pushed to "a".
fn round_answered_after(delay: Duration) -> (Harness, Vec<(String, String)>) {
    use quicswim_proto::protocol::kv::{OwnerDelta, OwnerDigest};

    let mut h = Harness::with_peers(Config::lan());
    h.silence_all();
    h.swim
        .set(h.now, "mine", b"m".to_vec())
        .expect("valid write");
    h.run_for(NS);
    assert_eq!(kv_syncs(&h).len(), 1, "the round's first digest went");
    h.run_for(delay);
    h.take_sent();
    let theirs = signed_entry("a", "theirs", 9, Some(b"t".to_vec()));
    let reply = StreamMessage::KvSyncReply {
        delta: vec![OwnerDelta::new(false, 0, vec![theirs])],
        wants: vec![OwnerDigest {
            owner: name("me"),
            max_version: 0,
            fingerprint: 0,
            gc_floor: 0,
        }],
    };
    assert_eq!(h.stream("a", &reply), Ok(None));
    assert_eq!(h.swim.kv_get(&name("a"), "theirs"), Some(&b"t"[..]));
    assert!(h.take_events().iter().any(|(_, e)| *e
        == Event::KvChanged {
            owner: name("a"),
            key: "theirs".into()
        }));
    let pushed = h
        .take_sent()
        .into_iter()
        .filter(|(_, t)| t.to == to("a") && t.kind == TransmitKind::Request)
        .filter_map(|(_, t)| match decode_stream(&t.payload) {
            Ok(StreamMessage::KvPush { deltas, .. }) => Some(deltas),
            _ => None,
        })
        .flatten()
        .flat_map(|d| d.entries)
        .map(|e| (e.owner.to_string(), e.key))
        .collect();
    (h, pushed)
}

#[test]
fn a_key_value_round_gets_what_we_lack_and_pushes_what_the_peer_wants() {
    let (_, pushed) = round_answered_after(Duration::ZERO);
    assert_eq!(
        pushed,
        vec![("me".to_string(), "mine".to_string())],
        "only the wanted owner"
    );
}

#[test]
fn a_reply_that_comes_back_after_a_round_interval_is_taken_but_pushes_nothing() {
    // Its `wants` are that old: the peer has had its own rounds and others' pushes since.
    let interval = Config::lan().kv_sync_interval;
    let (mut h, pushed) = round_answered_after(interval + NS);
    assert_eq!(pushed, Vec::<(String, String)>::new());
    // Within the interval, it still pushes.
    let (_, pushed) = round_answered_after(interval - NS);
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    // The peer gets ours by its own round, with a fresh digest.
    let ours = our_entries_for(&mut h, "a");
    assert!(ours
        .iter()
        .flat_map(|d| &d.entries)
        .any(|e| e.key == "mine"));
}

#[test]
fn a_key_value_round_waits_for_the_last_ones_replies_within_a_bound() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.silence_all();
    let written_at = h.now;
    h.swim.set(h.now, "k", b"v".to_vec()).expect("valid write");
    h.run_for(config.kv_sync_interval * 12);
    let at: BTreeSet<Instant> = kv_syncs(&h).into_iter().map(|(at, _)| at).collect();
    // Unanswered, the next round waits five intervals (the bound), not one.
    let interval = config.kv_sync_interval;
    assert_eq!(
        at.into_iter().collect::<Vec<_>>(),
        vec![
            written_at,
            written_at + interval * 5,
            written_at + interval * 10
        ]
    );
}

/// What this node answers `from`'s key/value round that says it holds nothing of ours.
fn our_entries_for(h: &mut Harness, from: &str) -> Vec<quicswim_proto::protocol::kv::OwnerDelta> {
    use quicswim_proto::protocol::kv::OwnerDigest;
    let ask = StreamMessage::KvSync {
        digest: vec![OwnerDigest {
            owner: name("me"),
            max_version: 0,
            fingerprint: 0,
            gc_floor: 0,
        }],
    };
    let reply = h
        .stream(from, &ask)
        .expect("a valid round")
        .expect("answered");
    match decode_stream(&reply) {
        Ok(StreamMessage::KvSyncReply { delta, .. }) => delta,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn a_burst_of_writes_leaves_as_one_signed_batch_and_later_writes_wait_for_the_next_round() {
    use quicswim_proto::protocol::kv::proof;
    use quicswim_proto::protocol::signing::Verdict;

    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    for i in 0..40 {
        h.swim.set(h.now, &format!("k{i}"), vec![i]).unwrap();
    }
    let deltas = our_entries_for(&mut h, "a");
    assert_eq!(deltas.len(), 1);
    let d = &deltas[0];
    assert_eq!(d.entries.len(), 40);
    assert_eq!(d.proof.batches.len(), 1, "one signature for the burst");
    assert!(d.proof.batches[0].missing.is_empty());
    // Anyone holding our certificate checks all 40 with that one signature.
    let checker = keys("a");
    checker
        .learn(&name("me"), &authority().certificate(&name("me")))
        .unwrap();
    let batches = proof::rebuild(&d.entries, &d.proof).expect("holds together");
    let root = proof::root_bytes(&name("me"), &batches[0].root);
    assert_eq!(
        checker.verify(&name("me"), &root, &batches[0].batch.signature),
        Verdict::Valid
    );

    // Written right after: it waits for the next round rather than go alone.
    h.swim.set(h.now, "late", b"l".to_vec()).unwrap();
    let deltas = our_entries_for(&mut h, "b");
    let keys_sent = |deltas: &[quicswim_proto::protocol::kv::OwnerDelta]| -> Vec<String> {
        deltas
            .iter()
            .flat_map(|d| &d.entries)
            .map(|e| e.key.clone())
            .collect()
    };
    assert_eq!(keys_sent(&deltas).len(), 40);
    assert!(!keys_sent(&deltas).contains(&"late".to_string()));
    h.run_for(config.kv_sync_interval);
    let deltas = our_entries_for(&mut h, "c");
    assert_eq!(keys_sent(&deltas).len(), 41);
    assert_eq!(
        deltas[0].proof.batches.len(),
        2,
        "the burst's batch, then the late one's"
    );
}

#[test]
fn after_one_forged_batch_the_rest_of_the_message_is_refused_unchecked() {
    use quicswim_proto::protocol::kv::{proof, KvEntry, OwnerDelta};

    let mut h = Harness::with_peers(Config::lan());
    // "a" relays 1,000 entries in b's name, each its own batch, signed with a's key: each
    // would cost a signature check. Then one honest batch of its own.
    let mut deltas: Vec<OwnerDelta> = (0..1_000)
        .map(|i| {
            let mut e = KvEntry {
                owner: name("b"),
                key: format!("k{i}"),
                version: i + 1,
                value: Some(b"forged".to_vec()),
                sealed: None,
            };
            proof::seal(&*keys("a"), std::slice::from_mut(&mut e));
            OwnerDelta::new(false, 0, vec![e])
        })
        .collect();
    deltas.push(OwnerDelta::new(
        false,
        0,
        vec![signed_entry("a", "honest", 1, Some(b"h".to_vec()))],
    ));
    let push = StreamMessage::KvPush {
        deltas,
        members: Vec::new(),
    };
    let before = h.swim.stats().clone();
    h.stream("a", &push).unwrap();
    // b may have rotated its certificate since `me` learned it: `a` is asked for it first,
    // and the forgery is counted when `a` answers with the one `me` holds.
    assert_eq!(h.swim.stats().forged.kv, before.forged.kv);
    assert_eq!(
        answer_certificate_requests(&mut h),
        [("a".to_string(), vec!["b".to_string()])]
    );
    let after = h.swim.stats();
    assert_eq!(
        after.forged.kv - before.forged.kv,
        1,
        "checked until the first forgery"
    );
    assert_eq!(
        after.kv_refused - before.kv_refused,
        1_000,
        "the rest refused unchecked"
    );
    assert_eq!(h.swim.kv_get(&name("b"), "k0"), None);
    assert_eq!(h.swim.kv_get(&name("a"), "honest"), None);

    // The same honest batch alone is taken, and many honest batches in one message too.
    let honest: Vec<OwnerDelta> = (0..50)
        .map(|i| {
            OwnerDelta::new(
                false,
                0,
                vec![signed_entry(
                    "c",
                    &format!("c{i}"),
                    i + 1,
                    Some(b"c".to_vec()),
                )],
            )
        })
        .collect();
    let push = StreamMessage::KvPush {
        deltas: honest,
        members: Vec::new(),
    };
    h.stream("a", &push).unwrap();
    assert_eq!(h.swim.stats().forged.kv, after.forged.kv);
    assert!((0..50).all(|i| h.swim.kv_get(&name("c"), &format!("c{i}")).is_some()));
}

/// `me` among peers that neither answer its rounds nor report, having written `k0`; the
/// version it took.
fn one_write_nobody_reports(config: &Config) -> (Harness, u64) {
    let mut h = Harness::with_peers(config.clone());
    h.answer_streams.clear();
    let version = h
        .swim
        .set(h.now, "k0", b"v".to_vec())
        .expect("nothing behind");
    (h, version)
}

/// What `peer`'s key/value round says it holds of ours: up to `version`.
fn peer_holds_ours(h: &mut Harness, peer: &str, version: u64) {
    use quicswim_proto::protocol::kv::OwnerDigest;
    let ask = StreamMessage::KvSync {
        digest: vec![OwnerDigest {
            owner: name("me"),
            max_version: version,
            fingerprint: 0,
            gc_floor: 0,
        }],
    };
    h.stream(peer, &ask)
        .expect("a valid round")
        .expect("answered");
}

#[test]
fn writes_are_refused_while_earlier_ones_have_not_spread_and_taken_once_they_have() {
    use quicswim_proto::protocol::CommandError;
    let config = Config::lan();
    let max = config.kv_backlog_max;
    // Only what peers say they hold counts: the rounds this write starts go unanswered.
    let (mut h, first) = one_write_nobody_reports(&config);
    // A peer's ask signs it: from now on it can leave, and the clock runs.
    peer_holds_ours(&mut h, "e", 0);
    h.run_for(max);
    let second = h
        .swim
        .set(h.now, "k1", b"v".to_vec())
        .expect("behind by the bound, not more");
    h.run_for(Duration::from_millis(1));
    let refused = h.swim.set(h.now, "k2", b"v".to_vec());
    assert!(
        matches!(refused, Err(CommandError::Backlogged { behind, max: m })
            if behind > max && m == max),
        "{refused:?}"
    );
    assert_eq!(h.swim.kv_get(&name("me"), "k2"), None, "nothing written");
    assert!(matches!(
        h.swim.delete(h.now, "k0"),
        Err(CommandError::Backlogged { .. })
    ));
    assert_eq!(h.swim.kv_get(&name("me"), "k0"), Some(&b"v"[..]));
    assert_eq!(h.swim.stats().kv_writes_backlogged, 2);

    // Two peers hold the first write, three nothing: the median holds nothing.
    peer_holds_ours(&mut h, "a", first);
    peer_holds_ours(&mut h, "b", first);
    for peer in ["c", "d", "e"] {
        peer_holds_ours(&mut h, peer, 0);
    }
    let r = h.swim.set(h.now, "k2", b"v".to_vec());
    assert!(r.is_err(), "{r:?} first {first} second {second}");
    // Now most hold the first: the second, made `max` later, is not behind by more.
    peer_holds_ours(&mut h, "c", first);
    peer_holds_ours(&mut h, "d", first);
    h.swim
        .set(h.now, "k2", b"v".to_vec())
        .expect("the oldest write not spread is the second, 1 ms old");
    // Most hold everything up to the second: nothing older is behind.
    for peer in PEERS {
        peer_holds_ours(&mut h, peer, second);
    }
    h.run_for(max * 2);
    let third = h.swim.set(h.now, "k3", b"v".to_vec());
    assert!(
        third.is_err(),
        "k2 went unspread for twice the bound: {third:?}"
    );
    for peer in PEERS {
        peer_holds_ours(&mut h, peer, second + 1);
    }
    h.swim
        .set(h.now, "k3", b"v".to_vec())
        .expect("all spread: taken again");
}

#[test]
fn a_node_alone_has_nobody_to_fall_behind_and_never_refuses() {
    let config = Config::lan();
    let mut h = Harness::alone(config.clone());
    for i in 0..20 {
        h.swim
            .set(h.now, &format!("k{i}"), b"v".to_vec())
            .expect("alone: nothing to spread to");
        h.run_for(config.kv_backlog_max);
    }
    assert_eq!(h.swim.stats().kv_writes_backlogged, 0);
}

#[test]
fn a_zero_bound_never_refuses() {
    let config = Config {
        kv_backlog_max: Duration::ZERO,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config);
    h.answer_streams.clear(); // nobody says it holds anything of ours
    for i in 0..20 {
        h.swim
            .set(h.now, &format!("k{i}"), b"v".to_vec())
            .expect("pushback off");
        h.run_for(Duration::from_secs(1));
    }
}

/// Runs `me` for `time`, answering each of its key/value rounds from a peer that holds
/// nothing of ours, and acknowledging the pushes that follow when `ack`.
fn rounds_answered_holding_nothing(h: &mut Harness, time: Duration, ack: bool) -> usize {
    use quicswim_proto::protocol::codec::encode_stream;
    use quicswim_proto::protocol::kv::OwnerDigest;
    let end = h.now + time;
    let mut acked = 0;
    while h.now < end {
        h.run_for(Duration::from_millis(10));
        for (_, t) in h.take_sent() {
            let Some(peer) = t.to.name.clone() else {
                continue;
            };
            let answer = match decode_stream(&t.payload) {
                Ok(StreamMessage::KvSync { .. }) => StreamMessage::KvSyncReply {
                    delta: Vec::new(),
                    wants: vec![OwnerDigest {
                        owner: name("me"),
                        max_version: 0,
                        fingerprint: 0,
                        gc_floor: 0,
                    }],
                },
                Ok(StreamMessage::KvPush { .. }) if ack => {
                    acked += 1;
                    StreamMessage::KvPushAck
                }
                _ => continue,
            };
            h.swim
                .handle_stream_reply(h.now, &peer, &encode_stream(&answer))
                .expect("a reply to our own request");
            h.pump();
        }
    }
    acked
}

#[test]
fn a_peer_that_acknowledges_our_push_holds_what_it_carried() {
    use quicswim_proto::protocol::CommandError;
    let config = Config::lan();
    let max = config.kv_backlog_max;
    for ack in [true, false] {
        let mut h = Harness::with_peers(config.clone());
        h.answer_streams.clear();
        h.swim
            .set(h.now, "k0", b"v".to_vec())
            .expect("nothing behind");
        let acked = rounds_answered_holding_nothing(&mut h, max + Duration::from_millis(50), ack);
        let next = h.swim.set(h.now, "k1", b"v".to_vec());
        if ack {
            assert!(acked >= 3, "pushes acknowledged: {acked}");
            assert!(next.is_ok(), "{next:?}");
        } else {
            // Every reply said the peer holds nothing of ours, and no push was acknowledged.
            assert!(
                matches!(next, Err(CommandError::Backlogged { .. })),
                "{next:?}"
            );
        }
    }
}

#[test]
fn a_node_that_left_says_so_rather_than_backlogged() {
    use quicswim_proto::protocol::CommandError;
    let config = Config::lan();
    let (mut h, _) = one_write_nobody_reports(&config);
    h.run_for(config.kv_backlog_max * 2);
    assert!(matches!(
        h.swim.set(h.now, "k1", b"v".to_vec()),
        Err(CommandError::Backlogged { .. })
    ));
    h.swim.leave(h.now);
    assert_eq!(
        h.swim.set(h.now, "k1", b"v".to_vec()),
        Err(CommandError::Left)
    );
}

#[test]
fn while_a_write_is_not_known_to_have_spread_rounds_go_on_and_stop_once_it_has() {
    let config = Config::lan();
    let max = config.kv_backlog_max;
    let (mut h, version) = one_write_nobody_reports(&config);
    // Well past the rounds a change starts, rounds still go out, one each half bound.
    h.run_for(config.kv_sync_interval * 20);
    h.take_sent();
    h.run_for(max * 4);
    let later = kv_syncs(&h).len();
    assert!(later >= 4, "rounds while behind: {later}");
    // The partition heals: peers say they hold it. The rounds stop.
    for peer in PEERS {
        peer_holds_ours(&mut h, peer, version);
    }
    h.run_for(max);
    h.take_sent();
    h.run_for(max * 4);
    assert!(kv_syncs(&h).is_empty(), "spread: no more rounds");
}

#[test]
fn a_write_while_an_earlier_one_is_being_confirmed_goes_out_at_once() {
    let config = Config::lan();
    let (mut h, _) = one_write_nobody_reports(&config);
    // Its rounds (three at six members) are answered "holding nothing of yours", and the
    // pushes never acknowledged: unconfirmed, so a slower confirming round is due next.
    rounds_answered_holding_nothing(&mut h, config.kv_sync_interval * 3, false);
    h.swim
        .set(h.now, "k1", b"v".to_vec())
        .expect("behind by less than the bound");
    h.run_until(h.now);
    assert_eq!(
        kv_syncs(&h).first().map(|(at, _)| *at),
        Some(h.now),
        "news goes at once, not at the confirming round's time"
    );
}
