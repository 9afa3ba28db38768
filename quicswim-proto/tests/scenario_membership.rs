//! Scenario tests of membership on one core: leaving, joining through a seed, reaping
//! tombstones and timer upkeep.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::collections::BTreeSet;
use std::time::Duration;

use quicswim_proto::protocol::codec::{decode_stream, Message, StreamMessage};
use quicswim_proto::protocol::kv::{OwnerDelta, OwnerDigest};
use quicswim_proto::protocol::{
    CommandError, Config, Destination, Event, Incarnation, LeaveStatus, State, Transmit,
    TransmitKind,
};

use core_harness::*;
use quicswim_proto::protocol::signing::Certificate;

// ------------------------------------------------------------------------------- leaving

#[test]
fn graceful_leave_sends_left_to_every_member_and_stops_timers() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.swim.leave(h.now);
    h.pump();
    assert_eq!(h.swim.local_member().state, State::Left);
    let sent = h.take_sent();
    let left = claim("me", 0, State::Left, None);
    // A datagram carrying the Left claim to every member (up to a fan-out of 16)...
    let mut reached = BTreeSet::new();
    for (_, t) in sent
        .iter()
        .filter(|(_, t)| t.kind == TransmitKind::Datagram)
    {
        let p = packet(t);
        assert_eq!(p.message, Message::Gossip);
        assert!(member_updates(&p).contains(&left), "no Left in {p:?}");
        assert!(reached.insert(t.to.name.clone().expect("members are known by name")));
    }
    assert_eq!(reached, PEERS.iter().map(|p| name(p)).collect());
    // ...and to gossip_nodes of them the full state on a stream, which is not lost.
    let requests: Vec<&Transmit> = sent
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.kind == TransmitKind::Request)
        .collect();
    assert_eq!(requests.len(), config.gossip_nodes);
    for t in &requests {
        assert!(reached.contains(t.to.name.as_ref().expect("by name")));
        match decode_stream(&t.payload) {
            Ok(StreamMessage::PushPull {
                join: false,
                members,
                ..
            }) => assert!(members.contains(&left), "{members:?}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(h.swim.leave_status(), LeaveStatus::Unconfirmed);
    // One reply that lists this node Left confirms it (it owns no keys to push).
    let by = requests[0].to.name.clone().expect("by name");
    h.stream(by.as_str(), &push_pull_reply(vec![left.clone()]))
        .unwrap();
    assert_eq!(h.swim.leave_status(), LeaveStatus::Confirmed { by });
    assert!(h.take_sent().is_empty());
    assert_eq!(h.swim.poll_timeout(), None, "timers stopped");
    h.swim.handle_timeout(h.now + Duration::from_secs(3600));
    h.pump();
    assert!(h.take_sent().is_empty());
    // Probes to a node that left go unanswered.
    h.send("a", &ping(1, "me", None), &[]);
    assert!(h.take_sent().is_empty());
}

/// The leave PushPulls a test's peers were sent, by peer, with the digest each carried.
fn leave_requests(h: &mut Harness) -> Vec<(String, Vec<u8>)> {
    h.take_sent()
        .into_iter()
        .filter(|(_, t)| t.kind == TransmitKind::Request)
        .filter_map(|(_, t)| match decode_stream(&t.payload) {
            Ok(StreamMessage::PushPull { .. }) => {
                Some((t.to.name.expect("by name").to_string(), t.payload))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn leave_counts_as_confirmed_only_once_a_peer_holds_this_nodes_keys() {
    let mut h = Harness::with_peers(Config::lan());
    h.swim.set(h.now, "colour", b"blue".to_vec()).unwrap();
    h.pump();
    h.take_sent();
    h.swim.leave(h.now);
    h.pump();
    let left = claim("me", 0, State::Left, None);
    let (peer, request) = leave_requests(&mut h).remove(0);
    let Ok(StreamMessage::PushPull { kv_digest, .. }) = decode_stream(&request) else {
        panic!("a PushPull");
    };
    // The peer has the Left claim but none of our keys: it is pushed them, not yet confirmed.
    h.stream(&peer, &push_pull_reply(vec![left.clone()]))
        .unwrap();
    assert_eq!(h.swim.leave_status(), LeaveStatus::Unconfirmed);
    let pushed: Vec<_> = h
        .take_sent()
        .into_iter()
        .filter_map(|(_, t)| match decode_stream(&t.payload) {
            Ok(StreamMessage::KvPush { deltas, .. }) => Some((t.to.name, deltas)),
            _ => None,
        })
        .collect();
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(
        pushed[0].0.as_ref().map(|n| n.as_str()),
        Some(peer.as_str())
    );
    let keys: Vec<&str> = pushed[0]
        .1
        .iter()
        .flat_map(|d| &d.entries)
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(keys, ["colour"]);
    // Its ack starts one more exchange, whose reply shows it level with us.
    h.stream(&peer, &StreamMessage::KvPushAck).unwrap();
    let again = leave_requests(&mut h);
    assert_eq!(
        again.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        [peer.as_str()]
    );
    let level = StreamMessage::PushPullReply {
        wants: Vec::new(),
        members: vec![left],
        kv_delta: Vec::new(),
        kv_digest,
        events: Vec::new(),
        certificates: Vec::new(),
        revocations: Vec::new(),
        revocation_ids: Vec::new(),
    };
    h.stream(&peer, &level).unwrap();
    assert_eq!(
        h.swim.leave_status(),
        LeaveStatus::Confirmed { by: name(&peer) }
    );
}

#[test]
fn unconfirmed_leave_asks_one_more_member_each_interval_up_to_a_bound() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.swim.leave(h.now);
    h.pump();
    let mut asked: BTreeSet<String> = leave_requests(&mut h).into_iter().map(|(p, _)| p).collect();
    assert_eq!(asked.len(), config.gossip_nodes);
    h.run_for(config.probe_interval);
    let next = leave_requests(&mut h);
    assert_eq!(next.len(), 1, "{next:?}");
    assert!(asked.insert(next[0].0.clone()), "asked {} twice", next[0].0);
    // A reply that does not list us Left (an older exchange's) confirms nothing.
    h.stream(&next[0].0, &push_pull_reply(vec![alive("me", 0)]))
        .unwrap();
    assert_eq!(h.swim.leave_status(), LeaveStatus::Unconfirmed);
    h.run_for(config.probe_interval * 60);
    assert!(h.swim.poll_timeout().is_none(), "the resends end");
    assert_eq!(h.swim.leave_status(), LeaveStatus::Unconfirmed);
}

#[test]
fn node_alone_leaves_with_nothing_to_wait_for() {
    let mut h = Harness::alone(Config::lan());
    h.swim.leave(h.now);
    h.pump();
    assert_eq!(h.swim.leave_status(), LeaveStatus::Alone);
    assert_eq!(h.swim.poll_timeout(), None);
}

#[test]
fn member_that_leaves_is_left_not_dead() {
    let mut h = Harness::with_peers(Config::lan());
    h.gossip("e", &[claim("e", 0, State::Left, None)]).unwrap();
    assert_eq!(h.state_of("e"), Some((0, State::Left)));
    assert_eq!(
        h.take_events()
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>(),
        vec![Event::Left(member("e", 0, State::Left))]
    );
}

// ------------------------------------------------------------------------------- joining

#[test]
fn join_through_a_seed_sends_one_request_and_its_reply_completes_the_join() {
    let config = Config::lan();
    let mut h = Harness::unjoined(config.clone());
    h.swim.join(h.now, &[addr("seed")]);
    h.pump();
    assert!(!h.swim.is_joined());
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let t = &sent[0].1;
    assert_eq!(t.kind, TransmitKind::Request);
    assert_eq!(
        t.to,
        Destination {
            addr: addr("seed"),
            name: None,
        },
        "a seed is known by address only"
    );
    let mut expected = push_pull(true, "me", vec![alive("me", 0)]);
    if let StreamMessage::PushPull { certificates, .. } = &mut expected {
        // Its own certificate, so the seed can check its records.
        certificates.push(Certificate {
            name: name("me"),
            der: authority().certificate(&name("me")).to_vec(),
        });
    }
    assert_eq!(decode_stream(&t.payload), Ok(expected));

    // No answer yet: asked again after join_retry_interval, not before.
    let asked_at = h.now;
    h.run_until(asked_at + config.join_retry_interval - NS);
    assert!(h.sent.iter().all(|(_, t)| t.kind != TransmitKind::Request));
    h.run_until(asked_at + config.join_retry_interval);
    let retries: Vec<_> = h
        .take_sent()
        .into_iter()
        .filter(|(_, t)| t.kind == TransmitKind::Request)
        .collect();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].1.payload, t.payload);

    let reply = push_pull_reply(vec![alive("seed", 0), alive("other", 2), alive("me", 0)]);
    assert_eq!(h.stream("seed", &reply), Ok(None));
    assert!(h.swim.is_joined());
    assert_eq!(
        h.take_events()
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>(),
        vec![
            Event::Joined(member("seed", 0, State::Alive)),
            Event::Joined(member("other", 2, State::Alive)),
        ]
    );
    assert_eq!(h.swim.alive_count(), 3);
    assert_eq!(h.swim.local_member().incarnation, Incarnation(0));
    // Joined: no more join requests to the seed's bare address (the early full-state syncs
    // that follow a join go to members by name).
    h.run_for(config.join_retry_interval * 3);
    let sent = h.take_sent();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|(_, t)| t.to.name.is_some()), "{sent:?}");
}

#[test]
fn restarted_node_told_it_is_dead_refutes_above_that_incarnation() {
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join(h.now, &[addr("seed")]);
    h.pump();
    h.take_sent();
    let reply = push_pull_reply(vec![alive("seed", 0), claim("me", 5, State::Dead, None)]);
    assert_eq!(h.stream("seed", &reply), Ok(None));
    assert_eq!(h.swim.local_member().incarnation, Incarnation(6));
    assert_eq!(h.swim.local_member().state, State::Alive);
    assert_eq!(h.swim.stats().refutations, 1);
    // The refutation goes out on the next datagram.
    h.run_until_true(Config::lan().probe_interval, "a datagram went out", |h| {
        !h.sent_messages(|_| true).is_empty()
    });
    let (_, _, p) = &h.sent_messages(|_| true)[0];
    assert!(member_updates(p).contains(&alive("me", 6)), "{p:?}");
}

#[test]
fn a_full_state_exchange_marks_the_node_synced_either_way() {
    // Joining through a seed: synced by the seed's reply, not before.
    let mut joiner = Harness::unjoined(Config::lan());
    joiner.swim.join(joiner.now, &[addr("seed")]);
    joiner.pump();
    assert!(!joiner.swim.is_synced());
    // Gossip alone is not a full state.
    joiner.gossip("seed", &[alive("seed", 0)]).unwrap();
    assert!(!joiner.swim.is_synced());
    let reply = push_pull_reply(vec![alive("seed", 0), alive("me", 0)]);
    assert_eq!(joiner.stream("seed", &reply), Ok(None));
    assert!(joiner.swim.is_joined() && joiner.swim.is_synced());

    // A node with no seeds is joined at once, and synced once someone joins it.
    let mut first = Harness::alone(Config::lan());
    assert!(!first.swim.is_synced());
    let join = push_pull(true, "a", vec![alive("a", 0)]);
    assert!(matches!(first.stream("a", &join), Ok(Some(_))));
    assert!(first.swim.is_synced());
}

#[test]
fn force_leave_drops_a_dead_members_tombstone_and_refuses_live_ones() {
    let mut h = Harness::with_peers(Config::lan());
    h.gossip("a", &[claim("e", 0, State::Dead, Some("a"))])
        .unwrap();
    h.gossip("a", &[claim("d", 0, State::Left, None)]).unwrap();
    h.gossip("a", &[claim("c", 0, State::Suspect, Some("a"))])
        .unwrap();
    h.take_sent();
    h.take_events();

    assert_eq!(
        h.swim.force_leave(h.now, &name("b")),
        Err(CommandError::MemberActive {
            name: name("b"),
            state: State::Alive
        })
    );
    assert!(matches!(
        h.swim.force_leave(h.now, &name("c")),
        Err(CommandError::MemberActive {
            state: State::Suspect,
            ..
        })
    ));
    assert_eq!(
        h.swim.force_leave(h.now, &name("me")),
        Err(CommandError::ForceLeaveSelf)
    );
    assert_eq!(
        h.swim.force_leave(h.now, &name("nobody")),
        Err(CommandError::UnknownMember(name("nobody")))
    );

    assert_eq!(h.swim.force_leave(h.now, &name("e")), Ok(()));
    assert_eq!(h.swim.force_leave(h.now, &name("d")), Ok(()));
    assert_eq!(h.state_of("e"), None);
    assert_eq!(h.state_of("d"), None);
    assert_eq!(h.swim.count(State::Dead), 0);
    assert_eq!(h.swim.count(State::Left), 0);
    assert_eq!(h.state_of("c"), Some((0, State::Suspect)));
    // Local only: nothing is sent about it, and no event is raised.
    h.pump();
    assert!(h.take_sent().is_empty());
    assert!(h.take_events().is_empty());
    // A stale Dead about it does not bring it back.
    h.gossip("a", &[claim("e", 0, State::Dead, Some("a"))])
        .unwrap();
    assert_eq!(h.state_of("e"), None);
}

/// One key of `owner` as a peer sends it.
fn their_key(owner: &str, key: &str, version: u64) -> OwnerDelta {
    OwnerDelta::new(
        false,
        0,
        vec![signed_entry(owner, key, version, Some(b"v".to_vec()))],
    )
}

#[test]
fn a_force_left_members_keys_are_not_taken_back_until_it_returns() {
    let mut h = Harness::with_peers(Config::lan());
    h.gossip("a", &[claim("e", 0, State::Dead, Some("a"))])
        .unwrap();
    let push = |owner: &str, key: &str| StreamMessage::KvPush {
        members: Vec::new(),
        deltas: vec![their_key(owner, key, 1)],
    };
    h.stream("a", &push("e", "old")).unwrap();
    assert!(h.swim.kv_get(&name("e"), "old").is_some());
    assert_eq!(h.swim.force_leave(h.now, &name("e")), Ok(()));
    assert_eq!(h.swim.kv_get(&name("e"), "old"), None, "dropped with it");

    // A peer that still holds e's data sends it whole, by every path: it is refused.
    h.stream("a", &push("e", "old")).unwrap();
    let reply = StreamMessage::PushPullReply {
        wants: Vec::new(),
        members: vec![alive("a", 0)],
        kv_delta: vec![their_key("e", "old", 1)],
        kv_digest: Vec::new(),
        events: Vec::new(),
        certificates: Vec::new(),
        revocations: Vec::new(),
        revocation_ids: Vec::new(),
    };
    h.stream("a", &reply).unwrap();
    let sync_reply = StreamMessage::KvSyncReply {
        delta: vec![their_key("e", "old", 1)],
        wants: Vec::new(),
    };
    h.stream("a", &sync_reply).unwrap();
    assert_eq!(h.swim.kv_get(&name("e"), "old"), None);
    assert_eq!(
        h.state_of("e"),
        None,
        "the member does not come back either"
    );
    // Nor is it asked for in a key/value round.
    let digest = |owner: &str| OwnerDigest {
        owner: name(owner),
        max_version: 1,
        fingerprint: 1,
        gc_floor: 0,
    };
    let sync = StreamMessage::KvSync {
        digest: vec![digest("e"), digest("f")],
    };
    let answer = h.stream("a", &sync).unwrap().expect("a reply");
    let Ok(StreamMessage::KvSyncReply { wants, .. }) = decode_stream(&answer) else {
        panic!("a KvSyncReply");
    };
    assert!(wants.is_empty(), "neither e nor f is a member here");
    // An owner not known yet (gossip lags) is refused, and taken once it is a member: its
    // data would otherwise stay for good, with no member to be reaped with.
    h.stream("a", &push("f", "new")).unwrap();
    assert_eq!(h.swim.kv_get(&name("f"), "new"), None);
    assert!(h.swim.stats().kv_owner_not_member >= 1);
    h.gossip("b", &[alive("f", 1)]).unwrap();
    let answer = h.stream("a", &sync).unwrap().expect("a reply");
    let Ok(StreamMessage::KvSyncReply { wants, .. }) = decode_stream(&answer) else {
        panic!("a KvSyncReply");
    };
    let wanted: Vec<&str> = wants.iter().map(|w| w.owner.as_str()).collect();
    assert_eq!(wanted, ["f"]);
    h.stream("a", &push("f", "new")).unwrap();
    assert!(h.swim.kv_get(&name("f"), "new").is_some());

    // Once e is back in the table, its data is taken again.
    h.gossip("b", &[alive("e", 1)]).unwrap();
    assert_eq!(h.state_of("e"), Some((1, State::Alive)));
    h.stream("a", &push("e", "old")).unwrap();
    assert!(h.swim.kv_get(&name("e"), "old").is_some());
}

#[test]
fn a_reaped_members_keys_are_refused_until_dead_retention_passes_again() {
    let config = Config {
        dead_retention: Duration::from_secs(60),
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    h.gossip("a", &[claim("e", 0, State::Dead, Some("a"))])
        .unwrap();
    let push = StreamMessage::KvPush {
        members: Vec::new(),
        deltas: vec![their_key("e", "old", 1)],
    };
    h.stream("a", &push).unwrap();
    h.run_for(config.dead_retention + Duration::from_secs(10));
    assert_eq!(h.state_of("e"), None, "reaped");
    assert_eq!(h.swim.kv_get(&name("e"), "old"), None);
    // A peer that reaps later still sends it: refused.
    h.stream("a", &push).unwrap();
    assert_eq!(h.swim.kv_get(&name("e"), "old"), None);
    // The record is bounded in time: by then every member has reaped e. Its data is still
    // refused while it is no member, and taken once it is one again.
    h.run_for(config.dead_retention + Duration::from_secs(10));
    h.stream("a", &push).unwrap();
    assert_eq!(h.swim.kv_get(&name("e"), "old"), None);
    h.gossip("b", &[alive("e", 1)]).unwrap();
    h.stream("a", &push).unwrap();
    assert!(h.swim.kv_get(&name("e"), "old").is_some());
}

#[test]
fn leave_stops_pushing_to_a_peer_that_never_comes_level() {
    let config = Config::lan();
    let mut h = Harness::with_peers(config.clone());
    h.swim.set(h.now, "colour", b"blue".to_vec()).unwrap();
    h.pump();
    h.take_sent();
    h.swim.leave(h.now);
    h.pump();
    let left = claim("me", 0, State::Left, None);
    // Every peer holds our newest version but a different set (a tombstone collected on
    // one side): pushes never make it level.
    let reply = |mut kv_digest: Vec<OwnerDigest>| {
        for d in &mut kv_digest {
            d.fingerprint ^= 1;
        }
        StreamMessage::PushPullReply {
            wants: Vec::new(),
            members: vec![left.clone()],
            kv_delta: Vec::new(),
            kv_digest,
            events: Vec::new(),
            certificates: Vec::new(),
            revocations: Vec::new(),
            revocation_ids: Vec::new(),
        }
    };
    let mut push_pulls = 0;
    let mut pushes = 0;
    for _ in 0..1000 {
        let sent = h.take_sent();
        if sent.is_empty() {
            if h.swim.poll_timeout().is_none() {
                break;
            }
            h.run_for(config.probe_interval);
            continue;
        }
        for (_, t) in sent
            .into_iter()
            .filter(|(_, t)| t.kind == TransmitKind::Request)
        {
            let peer = t.to.name.expect("by name").to_string();
            match decode_stream(&t.payload) {
                Ok(StreamMessage::PushPull { kv_digest, .. }) => {
                    push_pulls += 1;
                    h.stream(&peer, &reply(kv_digest)).unwrap();
                }
                Ok(StreamMessage::KvPush { .. }) => {
                    pushes += 1;
                    h.stream(&peer, &StreamMessage::KvPushAck).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(h.swim.poll_timeout(), None, "the resends end by themselves");
    assert_eq!(h.swim.leave_status(), LeaveStatus::Unconfirmed);
    // Each of the 5 peers: asked, then at most 3 pushes each followed by a PushPull.
    assert!(pushes <= 3 * PEERS.len(), "{pushes} pushes");
    assert!(push_pulls <= 8 + 3 * PEERS.len(), "{push_pulls} PushPulls");
}

// ------------------------------------------------------------------------------- upkeep

#[test]
fn tombstones_are_reaped_after_dead_retention() {
    let config = Config {
        dead_retention: Duration::from_secs(60),
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    h.run_for(Duration::from_millis(1234));
    let died_at = h.now;
    h.gossip("a", &[claim("e", 0, State::Dead, Some("a"))])
        .unwrap();
    assert_eq!(h.state_of("e"), Some((0, State::Dead)));
    h.run_until(died_at + config.dead_retention - NS);
    assert_eq!(
        h.state_of("e"),
        Some((0, State::Dead)),
        "kept until retention"
    );
    assert_eq!(h.swim.count(State::Dead), 1);
    // Tombstones are looked at every 10 s.
    h.run_until(died_at + config.dead_retention + Duration::from_secs(10));
    assert_eq!(h.state_of("e"), None, "reaped");
    assert_eq!(h.swim.count(State::Dead), 0);
    assert_eq!(h.swim.alive_count(), PEERS.len());
}

#[test]
fn handle_timeout_called_early_fires_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    let next = h.swim.poll_timeout().expect("timers are set");
    assert!(next > h.t0);
    let before = (h.table(), h.swim.stats(), h.swim.health_score());
    for early in [h.t0, next - NS] {
        h.swim.handle_timeout(early);
        h.pump();
        assert!(h.take_sent().is_empty());
        assert!(h.take_events().is_empty());
        assert_eq!(h.swim.poll_timeout(), Some(next));
        assert_eq!((h.table(), h.swim.stats(), h.swim.health_score()), before);
    }
    h.swim.handle_timeout(next);
    assert_ne!(h.swim.poll_timeout(), Some(next), "the due timer fired");
}
