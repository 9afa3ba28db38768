//! Scenario tests of refused input on one core: forged senders and malformed datagrams or
//! stream messages are refused and change nothing.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use quicswim_proto::protocol::codec::{encode_stream, Message, WIRE_VERSION};
use quicswim_proto::protocol::member::META_LEN_MAX;
use quicswim_proto::protocol::{Config, DecodeError, Incarnation, PeerError, State};

use core_harness::*;

#[test]
fn push_pull_naming_another_sender_is_refused_and_changes_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    let before = h.table();
    let stats = h.swim.stats();
    let forged = push_pull(
        false,
        "b",
        vec![alive("zz", 0), claim("c", 3, State::Dead, None)],
    );
    assert_eq!(
        h.stream("a", &forged),
        Err(PeerError::NameMismatch {
            peer: name("a"),
            claimed: Box::new(name("b")),
        })
    );
    assert_eq!(h.table(), before);
    assert!(h.take_sent().is_empty());
    assert!(h.take_events().is_empty());
    let after = h.swim.stats();
    assert_eq!(after.name_mismatches, stats.name_mismatches + 1);
    assert_eq!(after.push_pulls_answered, stats.push_pulls_answered);
}

#[test]
fn malformed_datagrams_are_refused_and_change_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    // A datagram that would add a member and kill another, then spoiled in several ways.
    let good = datagram(
        &ping(1, "me", Some(0)),
        &[alive("zz", 0), claim("c", 5, State::Dead, None)],
    );
    let mut trailing = good.clone();
    trailing.push(0);
    let mut version = good.clone();
    version[0] = WIRE_VERSION + 1;
    let mut big_meta = alive("zz", 0);
    big_meta.claim.meta = vec![0; META_LEN_MAX + 1];
    type Case = (&'static str, Vec<u8>, fn(&DecodeError) -> bool);
    let cases: Vec<Case> = vec![
        ("empty", Vec::new(), |e| *e == DecodeError::Empty),
        ("version", version, |e| {
            *e == DecodeError::UnknownVersion(WIRE_VERSION + 1)
        }),
        // Cut inside the last signature: refused as malformed or by the signature's bound.
        ("truncated", good[..good.len() - 3].to_vec(), |e| {
            matches!(
                e,
                DecodeError::Malformed(_) | DecodeError::FieldTooLong { .. }
            )
        }),
        ("trailing", trailing, |e| {
            *e == DecodeError::TrailingBytes(1)
        }),
        (
            "metadata",
            datagram(&Message::Gossip, &[alive("d", 9), big_meta]),
            |e| matches!(e, DecodeError::FieldTooLong { field: "meta", .. }),
        ),
    ];
    let before = h.table();
    let incarnation = h.swim.local_member().incarnation;
    for (i, (what, bytes, expected)) in cases.into_iter().enumerate() {
        let stats = h.swim.stats();
        match h.deliver("a", &bytes) {
            Err(PeerError::Decode { peer, source }) => {
                assert_eq!(peer, name("a"), "{what}");
                assert!(expected(&source), "{what}: {source:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let after = h.swim.stats();
        assert_eq!(after.decode_errors, stats.decode_errors + 1, "{what}");
        assert_eq!(after.decode_errors, i as u64 + 1, "{what}");
        assert_eq!(after.datagrams_in, stats.datagrams_in, "{what}");
        assert_eq!(h.table(), before, "{what}");
        assert_eq!(h.swim.local_member().incarnation, incarnation, "{what}");
        assert!(h.take_sent().is_empty(), "{what}");
        assert!(h.take_events().is_empty(), "{what}");
    }
    // The unspoiled datagram does all of it, so the cases above were refused for cause.
    h.deliver("a", &good).expect("valid");
    assert_eq!(h.state_of("zz"), Some((0, State::Alive)));
    assert_eq!(h.state_of("c"), Some((5, State::Dead)));
    assert_eq!(h.swim.local_member().incarnation, Incarnation(1));
}

#[test]
fn malformed_stream_message_is_refused_and_changes_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    let before = h.table();
    let mut bytes = encode_stream(&push_pull_reply(vec![alive("zz", 0)]));
    bytes.truncate(bytes.len() - 2);
    assert!(matches!(
        h.swim.handle_stream_reply(h.now, &name("a"), &bytes),
        Err(PeerError::Decode { .. })
    ));
    assert_eq!(h.swim.stats().decode_errors, 1);
    assert_eq!(h.table(), before);
}
