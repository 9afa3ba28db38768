//! Property tests through the core's `handle_*` with the values a hostile member would pick:
//! `u64::MAX` and `COUNTER_MAX` incarnations, versions and sequence numbers, empty and
//! maximal (and one-over-maximal) names, keys and payloads, maximal counts. After every
//! input: no panic, every bound of `Swim::check_bounds`, and this node's own state (name,
//! address, state, the keys it wrote) changed by nothing but its own commands.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::time::Duration;

use proptest::prelude::*;
use quicswim_proto::protocol::codec::{
    encode_datagram, encode_stream, encode_update, Message, StreamMessage, Update,
};
use quicswim_proto::protocol::events::EVENT_NAME_LEN_MAX;
use quicswim_proto::protocol::kv::{proof, KvEntry, OwnerDelta, OwnerDigest};
use quicswim_proto::protocol::{
    Config, Incarnation, State, UserEvent, COUNTER_MAX, SELF_CLAIM_MAX,
};

use core_harness::*;

const WHO: [&str; 8] = ["me", "a", "b", "c", "d", "e", "f", "zz"];

fn counter() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(SELF_CLAIM_MAX),
        Just(SELF_CLAIM_MAX + 1),
        Just(COUNTER_MAX - 1),
        Just(COUNTER_MAX),
        Just(COUNTER_MAX + 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn len(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![Just(0), Just(1), Just(max), Just(max + 1), 0..=max]
}

fn who() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&WHO[..])
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Alive),
        Just(State::Suspect),
        Just(State::Dead),
        Just(State::Left)
    ]
}

#[derive(Clone, Debug)]
enum Input {
    Claims(&'static str, Vec<(&'static str, u64, State)>),
    Ping(&'static str, Option<u64>),
    Event(&'static str, &'static str, u64, usize, usize),
    Push(
        &'static str,
        &'static str,
        bool,
        u64,
        Vec<(usize, u64, Option<usize>)>,
    ),
    Sync(&'static str, Vec<(&'static str, u64, u64)>),
    Reply(&'static str, &'static str, Vec<(usize, u64)>),
    Wait(u64),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (
            who(),
            proptest::collection::vec((who(), counter(), state()), 0..8)
        )
            .prop_map(|(f, c)| Input::Claims(f, c)),
        (who(), proptest::option::of(counter())).prop_map(|(f, s)| Input::Ping(f, s)),
        (who(), who(), counter(), len(EVENT_NAME_LEN_MAX), len(1024))
            .prop_map(|(f, o, s, n, p)| Input::Event(f, o, s, n, p)),
        (
            who(),
            who(),
            any::<bool>(),
            counter(),
            proptest::collection::vec(
                (len(256), counter(), proptest::option::of(len(64 * 1024))),
                0..6
            )
        )
            .prop_map(|(f, o, r, g, e)| Input::Push(f, o, r, g, e)),
        (
            who(),
            proptest::collection::vec((who(), counter(), counter()), 0..8)
        )
            .prop_map(|(f, d)| Input::Sync(f, d)),
        (
            who(),
            who(),
            proptest::collection::vec((len(8), counter()), 0..6)
        )
            .prop_map(|(f, o, e)| Input::Reply(f, o, e)),
        (0u64..120_000).prop_map(Input::Wait),
    ]
}

fn entries(owner: &str, e: &[(usize, u64, Option<usize>)]) -> Vec<KvEntry> {
    e.iter()
        .map(|&(key_len, version, value)| {
            signed_entry(
                owner,
                &"k".repeat(key_len),
                version,
                value.map(|n| vec![7; n]),
            )
        })
        .collect()
}

/// Feeds one input; refusals are expected, panics and broken bounds are not.
fn feed(h: &mut Harness, input: &Input) {
    match input {
        Input::Claims(from, claims) => {
            let updates: Vec<_> = claims
                .iter()
                .map(|&(w, inc, s)| claim(w, inc, s, Some("a")))
                .collect();
            let _ = h.gossip(from, &updates);
        }
        Input::Ping(from, suspected) => {
            let _ = h.deliver(from, &datagram(&ping(1, "me", *suspected), &[]));
        }
        Input::Event(from, origin, seq, name_len, payload) => {
            let e = Update::Event(signed_event(UserEvent {
                origin: name(origin),
                seq: *seq,
                name: "e".repeat(*name_len),
                payload: vec![1; *payload],
            }));
            let _ = h.deliver(
                from,
                &encode_datagram(&Message::Gossip, 1, &encode_update(&e)),
            );
        }
        Input::Push(from, owner, reset, gc_floor, e) => {
            let push = StreamMessage::KvPush {
                members: Vec::new(),
                deltas: vec![OwnerDelta::new(*reset, *gc_floor, entries(owner, e))],
            };
            let _ = h.stream(from, &push);
        }
        Input::Sync(from, digest) => {
            let digest = digest
                .iter()
                .map(|&(o, max_version, gc_floor)| OwnerDigest {
                    owner: name(o),
                    max_version,
                    fingerprint: max_version ^ gc_floor,
                    gc_floor,
                })
                .collect();
            let _ = h.stream(from, &StreamMessage::KvSync { digest });
        }
        Input::Reply(from, owner, e) => {
            let with_values: Vec<_> = e.iter().map(|&(k, v)| (k, v, Some(1))).collect();
            let reply = StreamMessage::KvSyncReply {
                delta: vec![OwnerDelta::new(false, 0, entries(owner, &with_values))],
                wants: Vec::new(),
            };
            // Sent as a reply, and as a request: the second must be refused.
            let _ = h.stream(from, &reply);
            let bytes = encode_stream(&reply);
            let refused = |h: &Harness| {
                let s = h.swim.stats();
                s.unasked_messages + s.decode_errors
            };
            let before = refused(h);
            assert!(h
                .swim
                .handle_stream_request(h.now, &name(from), &bytes)
                .is_err());
            assert_eq!(refused(h), before + 1, "refused and counted");
        }
        Input::Wait(ms) => wait(h, Duration::from_millis(*ms)),
    }
}

/// Fires every deadline within `d`. A deadline already passed (the contract of
/// `poll_timeout` allows it: "at once") fires now; the core must then move past it, so the
/// loop is bounded.
fn wait(h: &mut Harness, d: Duration) {
    let until = h.now + d;
    for _ in 0..100_000 {
        let Some(at) = h.swim.poll_timeout().filter(|&at| at <= until) else {
            h.now = until;
            return;
        };
        h.now = at.max(h.now);
        h.swim.handle_timeout(h.now);
        h.pump();
    }
    panic!("the core keeps asking to be woken before {until:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hostile_values_never_panic_break_a_bound_or_change_our_own_state(
        inputs in proptest::collection::vec(input(), 1..40),
    ) {
        // Pushback off: every peer here may say it holds nothing of ours, and five of five
        // would rightly have the last write below refused (`Backlogged`); the reports are
        // still taken, and bounded, all along.
        let config = Config {
            kv_backlog_max: Duration::ZERO,
            ..Config::lan()
        };
        let mut h = Harness::with_peers(config);
        h.swim.set(h.now, "mine", b"ours".to_vec()).unwrap();
        let incarnation = h.swim.local_member().incarnation;
        for input in &inputs {
            feed(&mut h, input);
            if let Err(broken) = h.swim.check_bounds() {
                return Err(TestCaseError::fail(format!("{broken} after {input:?}")));
            }
            let me = h.swim.local_member();
            prop_assert_eq!(&me.name, &name("me"));
            prop_assert_eq!(me.addr, addr("me"));
            prop_assert_eq!(me.state, State::Alive);
            prop_assert!(me.incarnation >= incarnation);
            prop_assert!(me.incarnation.0 <= SELF_CLAIM_MAX + 1);
            prop_assert_eq!(h.swim.kv_get(&name("me"), "mine"), Some(&b"ours"[..]));
        }
        // And the node can still write, above anything it was told about itself.
        let version = h.swim.set(h.now, "after", b"x".to_vec()).unwrap();
        // Beyond the highest claim taken, only our own writes (refutations included)
        // moved the counter: far below what peers accept.
        prop_assert!(version <= SELF_CLAIM_MAX + 2 + h.swim.stats().kv_refuted);
        prop_assert!(h.swim.publish(h.now, "after", Vec::new()).unwrap() <= SELF_CLAIM_MAX + 1);
        prop_assert!(h.swim.local_member().incarnation <= Incarnation(SELF_CLAIM_MAX + 1));
    }
}

#[test]
fn a_claim_about_ourselves_beyond_self_claim_max_is_refused_and_counted() {
    let mut h = Harness::with_peers(Config::lan());
    let before = h.swim.local_member().incarnation;
    h.gossip(
        "a",
        &[claim("me", SELF_CLAIM_MAX + 1, State::Suspect, Some("a"))],
    )
    .unwrap();
    assert_eq!(h.swim.local_member().incarnation, before);
    assert_eq!(h.swim.stats().self_claims_refused, 1);
    // At the bound it is refuted, and the refutation is still within what peers accept.
    h.gossip(
        "a",
        &[claim("me", SELF_CLAIM_MAX, State::Suspect, Some("a"))],
    )
    .unwrap();
    assert_eq!(h.swim.local_member().incarnation.0, SELF_CLAIM_MAX + 1);
}

#[test]
fn our_key_pushed_back_at_a_higher_version_is_written_again_above_it() {
    let mut h = Harness::with_peers(Config::lan());
    h.swim.set(h.now, "colour", b"blue".to_vec()).unwrap();
    let push = StreamMessage::KvPush {
        members: Vec::new(),
        deltas: vec![OwnerDelta::new(
            true,
            SELF_CLAIM_MAX,
            vec![signed_entry(
                "me",
                "colour",
                SELF_CLAIM_MAX - 5,
                Some(b"red".to_vec()),
            )],
        )],
    };
    h.stream("a", &push).unwrap();
    assert_eq!(h.swim.kv_get(&name("me"), "colour"), Some(&b"blue"[..]));
    assert_eq!(h.swim.stats().kv_refuted, 1);
    let (_, _, _, version) = h
        .swim
        .kv_entries()
        .into_iter()
        .find(|(o, k, _, _)| **o == name("me") && *k == "colour")
        .expect("our key");
    assert!(
        version > SELF_CLAIM_MAX - 5,
        "written again above the peer's copy"
    );
}

#[test]
fn a_maximal_push_about_all_our_keys_refutes_each_key_once() {
    use quicswim_proto::protocol::codec::ENTRIES_PER_DELTA_MAX;
    const OWN_KEYS: usize = 10_000; // the default keys_per_node_max
    let mut h = Harness::with_peers(Config::lan());
    for i in 0..OWN_KEYS {
        h.swim
            .set(h.now, &format!("k{i}"), b"ours".to_vec())
            .unwrap();
    }
    // Every entry a claim that one of our keys was deleted at a higher version, each key ~6
    // times over (deletions: a value each would take the message past its element budget).
    let claimed = 1_000_000;
    // Signed as "me" (a stolen key, or a replay of what we wrote before a restart), in
    // batches as a node signs its writes.
    let mut entries: Vec<KvEntry> = (0..ENTRIES_PER_DELTA_MAX)
        .map(|i| KvEntry {
            owner: name("me"),
            key: format!("k{}", i % OWN_KEYS),
            version: claimed + i as u64,
            value: None,
            sealed: None,
        })
        .collect();
    proof::seal(&*keys("me"), &mut entries);
    let push = StreamMessage::KvPush {
        members: Vec::new(),
        deltas: vec![OwnerDelta::new(true, 0, entries)],
    };
    h.stream("a", &push).unwrap();
    assert_eq!(h.swim.stats().kv_refuted, OWN_KEYS as u64, "each key once");
    let ours: Vec<_> = h
        .swim
        .kv_entries()
        .into_iter()
        .filter(|(o, _, _, _)| **o == name("me"))
        .collect();
    assert_eq!(ours.len(), OWN_KEYS);
    let highest_claim = claimed + ENTRIES_PER_DELTA_MAX as u64 - 1;
    for (_, key, value, version) in ours {
        assert_eq!(value, b"ours", "{key} kept its value");
        assert!(
            version > highest_claim,
            "{key} written again above the claims"
        );
    }
}

#[test]
fn an_empty_kv_sync_is_answered_with_no_data() {
    let mut h = Harness::with_peers(Config::lan());
    for i in 0..100 {
        h.swim.set(h.now, &format!("k{i}"), vec![0; 1000]).unwrap();
    }
    let answer = h
        .stream("a", &StreamMessage::KvSync { digest: Vec::new() })
        .unwrap()
        .expect("an answer");
    assert!(
        answer.len() < 64,
        "{} bytes for an empty digest",
        answer.len()
    );
    // A digest that names us at an older version is answered with what it lacks.
    let digest = vec![OwnerDigest {
        owner: name("me"),
        max_version: 0,
        fingerprint: 0,
        gc_floor: 0,
    }];
    let answer = h
        .stream("a", &StreamMessage::KvSync { digest })
        .unwrap()
        .expect("an answer");
    assert!(answer.len() > 100_000);
}
