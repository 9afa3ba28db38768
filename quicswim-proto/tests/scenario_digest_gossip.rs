//! Member records gossiped by digest after their first copies: a node asks the sender for a
//! record its digest made news, checks it, applies and relays it; nothing else changes.

mod core_harness;

use std::time::Duration;

use core_harness::*;
use quicswim_proto::protocol::broadcast::FULL_TRANSMITS;
use quicswim_proto::protocol::codec::{
    decode_stream, encode_datagram, encode_update, MemberDigest, Message, StreamMessage, Update,
};
use quicswim_proto::protocol::{Config, Incarnation, State, TransmitKind};

fn digest(who: &str, incarnation: u64, state: State) -> MemberDigest {
    MemberDigest {
        name: name(who),
        incarnation: Incarnation(incarnation),
        state,
    }
}

/// A gossip datagram from `from` with these digests.
fn gossip_digests(h: &mut Harness, from: &str, digests: &[MemberDigest]) {
    let body: Vec<u8> = digests
        .iter()
        .flat_map(|d| encode_update(&Update::Digest(d.clone())))
        .collect();
    let bytes = encode_datagram(&Message::Gossip, digests.len(), &body);
    h.deliver(from, &bytes).expect("valid datagram");
}

/// The record requests `me` sent: (to whom, names, certificates asked).
fn record_requests(h: &mut Harness) -> Vec<(String, Vec<String>, Vec<String>)> {
    let strings = |v: Vec<_>| v.iter().map(ToString::to_string).collect();
    h.take_sent()
        .into_iter()
        .filter(|(_, t)| t.kind == TransmitKind::Request)
        .filter_map(|(_, t)| match decode_stream(&t.payload) {
            Ok(StreamMessage::RecordRequest {
                names,
                certificates,
            }) => Some((
                t.to.name.expect("asked by name").to_string(),
                strings(names),
                strings(certificates),
            )),
            _ => None,
        })
        .collect()
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

#[test]
fn a_digest_that_is_news_is_asked_for_and_the_record_applied_and_relayed() {
    let mut h = Harness::with_peers(Config::lan());
    // "g": a member `me` has never heard of, whose certificate it lacks; "b" at a newer
    // incarnation; "c" as held (no news).
    gossip_digests(
        &mut h,
        "a",
        &[
            digest("g", 5, State::Alive),
            digest("b", 3, State::Alive),
            digest("c", 0, State::Alive),
        ],
    );
    assert_eq!(h.state_of("g"), None, "a digest alone changes nothing");
    assert_eq!(h.state_of("b"), Some((0, State::Alive)));
    assert_eq!(
        record_requests(&mut h),
        [("a".to_string(), owned(&["b", "g"]), owned(&["g"]))]
    );
    // Another member's digest of the same news within the ask interval asks nothing more.
    gossip_digests(&mut h, "d", &[digest("g", 5, State::Alive)]);
    assert!(record_requests(&mut h).is_empty());

    let reply = StreamMessage::RecordReply {
        members: vec![alive("g", 5), alive("b", 3)],
        certificates: vec![certificate_of("g")],
    };
    assert_eq!(h.stream("a", &reply), Ok(None));
    assert_eq!(h.state_of("g"), Some((5, State::Alive)));
    assert_eq!(h.state_of("b"), Some((3, State::Alive)));
    // News here, so relayed: in full first.
    h.run_until_true(Duration::from_secs(5), "g relayed in full", |h| {
        relayed_in_full(h, "g")
    });
}

#[test]
fn a_reply_with_records_not_asked_or_forged_changes_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    gossip_digests(&mut h, "a", &[digest("b", 4, State::Alive)]);
    assert_eq!(record_requests(&mut h).len(), 1);
    // "b" forged by "a", and "c" never asked for.
    let mut forged = alive("b", 4);
    forged.signature = keys("a").sign(&forged.claim.signed_bytes());
    let reply = StreamMessage::RecordReply {
        members: vec![forged, alive("c", 9)],
        certificates: vec![certificate_of("g")],
    };
    h.stream("a", &reply).unwrap();
    assert_eq!(h.state_of("b"), Some((0, State::Alive)));
    assert_eq!(h.state_of("c"), Some((0, State::Alive)), "not asked for");
    // Counted once `a`, asked for b's certificate (b may have rotated it), answers with the
    // one `me` holds; meanwhile the forgery waits, applied nowhere.
    assert_eq!(h.swim.stats().forged.claim, 0);
    assert_eq!(
        answer_certificate_requests(&mut h),
        [("a".to_string(), vec!["b".to_string()])]
    );
    assert_eq!(h.state_of("b"), Some((0, State::Alive)));
    assert_eq!(h.swim.stats().forged.claim, 1);
    assert_eq!(h.swim.stats().certificates_learned, 0, "not asked for");
    // A reply is never taken as a request, nor a request as a reply.
    let request = StreamMessage::RecordRequest {
        names: vec![name("b")],
        certificates: Vec::new(),
    };
    let bytes = quicswim_proto::protocol::codec::encode_stream(&request);
    let now = h.now;
    assert!(h.swim.handle_stream_reply(now, &name("a"), &bytes).is_err());
}

#[test]
fn digests_of_what_is_held_of_unknown_leavers_or_of_ourselves_ask_nothing() {
    let mut h = Harness::with_peers(Config::lan());
    gossip_digests(
        &mut h,
        "a",
        &[
            // Held as is, or older.
            digest("b", 0, State::Alive),
            // Dead or Left of a member never held: it would bring it back.
            digest("g", 1, State::Left),
            // About `me`, at an incarnation it never signed.
            digest("me", 9, State::Alive),
        ],
    );
    assert!(record_requests(&mut h).is_empty());
}

#[test]
fn a_record_request_is_answered_with_the_records_held_and_the_certificates_asked() {
    let mut h = Harness::with_peers(Config::lan());
    let request = StreamMessage::RecordRequest {
        names: vec![name("b"), name("me"), name("zz")],
        certificates: vec![name("b"), name("zz")],
    };
    let reply = h.stream("a", &request).unwrap().expect("answered");
    let Ok(StreamMessage::RecordReply {
        members,
        certificates,
    }) = decode_stream(&reply)
    else {
        panic!("a record reply")
    };
    let names: Vec<String> = members.iter().map(|u| u.claim.name.to_string()).collect();
    assert_eq!(names, ["b", "me"], "zz is not a member here");
    let certs: Vec<String> = certificates.iter().map(|c| c.name.to_string()).collect();
    assert_eq!(certs, ["b"], "only for records sent");
}

#[test]
fn an_alive_record_goes_in_full_then_by_digest_and_a_suspicion_always_in_full() {
    let config = Config {
        retransmit_mult: 10,
        ..Config::lan()
    };
    let mut h = Harness::with_peers(config.clone());
    h.connect_all();
    h.drain_news();
    h.take_sent();
    h.gossip("a", &[alive("b", 1)]).unwrap();
    h.gossip("a", &[claim("c", 0, State::Suspect, Some("a"))])
        .unwrap();
    h.run_for(config.gossip_interval * 8);
    let (mut b_full, mut b_digest, mut c_full, mut c_digest) = (0, 0, 0, 0);
    for (_, t) in h.take_sent() {
        if t.kind != TransmitKind::Datagram {
            continue;
        }
        for u in packet(&t).updates {
            match u {
                Update::Member(m) if m.claim.name == name("b") => b_full += 1,
                Update::Member(m) if m.claim.name == name("c") => c_full += 1,
                Update::Digest(d) if d.name == name("b") => b_digest += 1,
                Update::Digest(d) if d.name == name("c") => c_digest += 1,
                _ => {}
            }
        }
    }
    assert_eq!(b_full, FULL_TRANSMITS as usize);
    assert!(b_digest > 0, "then by digest");
    assert!(
        c_full > FULL_TRANSMITS as usize,
        "a suspicion goes in full: {c_full}"
    );
    assert_eq!(c_digest, 0);
}
