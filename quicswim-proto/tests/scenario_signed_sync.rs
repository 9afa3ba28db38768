//! Signed records in full-state exchanges and gossip: digests instead of whole tables, records
//! that wait for their signer's certificate, and gossip rounds that drain a deep queue.

mod core_harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use core_harness::*;
use quicswim_proto::protocol::codec::{
    decode_stream, encode_datagram, encode_update, MemberDigest, MemberUpdate, Message,
    StreamMessage, Update,
};
use quicswim_proto::protocol::signing::{CertificateRefused, Keyring, Signature, Verdict};
use quicswim_proto::protocol::{Config, Incarnation, NodeName, State, TransmitKind, UserEvent};

#[test]
fn a_record_waits_for_its_signers_certificate_and_applies_when_it_comes() {
    let mut h = Harness::with_peers(Config::lan());
    // "g" is not among the names whose certificates `me` holds.
    h.gossip("a", &[alive("g", 5)]).unwrap();
    assert_eq!(h.state_of("g"), None, "not applied without a certificate");
    assert_eq!(h.swim.stats().unverified_records, 1);
    assert_eq!(
        certificate_requests(&mut h),
        [("a".to_string(), vec!["g".to_string()])]
    );
    // The reply alone applies the record: no second copy of it is needed.
    let reply = StreamMessage::CertificateReply {
        certificates: vec![certificate_of("g")],
    };
    assert_eq!(h.stream("a", &reply), Ok(None));
    assert_eq!(h.state_of("g"), Some((5, State::Alive)));
    assert_eq!(h.swim.stats().certificates_learned, 1);
    // And it is news here, so it is relayed.
    h.run_until_true(std::time::Duration::from_secs(5), "g relayed", |h| {
        relayed_in_full(h, "g")
    });
}

#[test]
fn a_certificate_met_in_a_handshake_applies_what_waited_for_it_and_asks_nothing_more() {
    let mut h = Harness::with_peers(Config::lan());
    h.gossip("a", &[alive("g", 5)]).unwrap();
    assert_eq!(h.state_of("g"), None);
    h.take_sent();
    // "g" connects: the runtime hands over the certificate it presented.
    let now = h.now;
    h.swim
        .handle_peer_certificate(now, &name("g"), certificate_of("g").der);
    h.pump();
    assert_eq!(h.state_of("g"), Some((5, State::Alive)));
    // Its next record checks at once: nothing waits and nothing is asked.
    h.gossip("b", &[alive("g", 6)]).unwrap();
    assert_eq!(h.state_of("g"), Some((6, State::Alive)));
    assert!(certificate_requests(&mut h).is_empty());
    // A certificate that is not the cluster's is refused and counted.
    let refused = h.swim.stats().certificates_refused;
    h.swim
        .handle_peer_certificate(now, &name("zz"), vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    assert_eq!(h.swim.stats().certificates_refused, refused + 1);
}

#[test]
fn a_forged_record_that_waited_fails_against_the_certificate_when_it_comes() {
    let mut h = Harness::with_peers(Config::lan());
    // A record about "g" signed by "b": once g's certificate is held it does not verify.
    let mut forged = alive("g", 9);
    forged.signature = keys("b").sign(&forged.claim.signed_bytes());
    h.gossip("a", &[forged]).unwrap();
    h.take_sent();
    let reply = StreamMessage::CertificateReply {
        certificates: vec![certificate_of("g")],
    };
    h.stream("a", &reply).unwrap();
    assert_eq!(
        h.state_of("g"),
        None,
        "the parked forgery fails against the certificate"
    );
    assert_eq!(h.swim.stats().forged.claim, 1);
}

#[test]
fn a_full_state_request_is_a_digest_and_the_reply_carries_only_news() {
    let mut h = Harness::with_peers(Config::lan());
    h.gossip("a", &[alive("b", 3)]).unwrap();
    h.take_sent();
    // "a" holds c at a newer incarnation than us, b at an older one, d the same, and knows
    // nothing of e.
    let digest = vec![
        MemberDigest {
            name: name("b"),
            incarnation: Incarnation(1),
            state: State::Alive,
        },
        MemberDigest {
            name: name("c"),
            incarnation: Incarnation(4),
            state: State::Alive,
        },
        MemberDigest {
            name: name("d"),
            incarnation: Incarnation(0),
            state: State::Alive,
        },
        MemberDigest {
            name: name("me"),
            incarnation: h.swim.local_member().incarnation,
            state: State::Alive,
        },
    ];
    let request = StreamMessage::PushPull {
        join: false,
        sender: name("a"),
        members: vec![alive("a", 0)],
        digest,
        kv_digest: Vec::new(),
        events: Vec::new(),
        certificates: Vec::new(),
        revocation_ids: Vec::new(),
    };
    let reply = h.stream("a", &request).unwrap().expect("a reply");
    let Ok(StreamMessage::PushPullReply { members, wants, .. }) = decode_stream(&reply) else {
        panic!("not a reply");
    };
    let mut sent: Vec<(String, u64)> = members
        .iter()
        .map(|u| (u.claim.name.to_string(), u.claim.incarnation.0))
        .collect();
    sent.sort();
    // b (ours is newer), e (it lacks it) and a itself (our record of the requester); not d,
    // not c, not me (level).
    assert_eq!(
        sent,
        [("a".into(), 0), ("b".into(), 3), ("e".into(), 0)],
        "{sent:?}"
    );
    assert_eq!(wants, [name("c")]);

    // Its KvPush brings c's record, which applies.
    let push = StreamMessage::KvPush {
        deltas: Vec::new(),
        members: vec![alive("c", 4)],
    };
    h.stream("a", &push).unwrap();
    assert_eq!(h.state_of("c"), Some((4, State::Alive)));
}

#[test]
fn our_periodic_request_is_our_record_and_a_digest_and_we_send_what_the_reply_wants() {
    let mut h = Harness::with_peers(Config::lan());
    h.run_until_true(
        Config::lan().push_pull_interval * 2,
        "a full-state request",
        |h| {
            h.sent.iter().any(|(_, t)| {
                matches!(
                    decode_stream(&t.payload),
                    Ok(StreamMessage::PushPull { join: false, .. })
                )
            })
        },
    );
    let (peer, request) = h
        .take_sent()
        .into_iter()
        .find_map(|(_, t)| match decode_stream(&t.payload) {
            Ok(m @ StreamMessage::PushPull { .. }) => Some((t.to.name.expect("by name"), m)),
            _ => None,
        })
        .expect("found above");
    let StreamMessage::PushPull {
        members,
        digest,
        certificates,
        ..
    } = request
    else {
        unreachable!()
    };
    let own: Vec<&MemberUpdate> = members.iter().collect();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].claim.name, name("me"));
    let mut listed: Vec<String> = digest.iter().map(|d| d.name.to_string()).collect();
    listed.sort();
    assert_eq!(listed, PEERS.map(String::from));
    assert_eq!(
        certificates
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
        [name("me")],
        "our own certificate, and only ours"
    );

    // The peer wants b's record and ours.
    let reply = StreamMessage::PushPullReply {
        members: Vec::new(),
        wants: vec![name("b"), name("me")],
        kv_delta: Vec::new(),
        kv_digest: Vec::new(),
        events: Vec::new(),
        certificates: Vec::new(),
        revocations: Vec::new(),
        revocation_ids: Vec::new(),
    };
    h.stream(peer.as_str(), &reply).unwrap();
    let pushed: Vec<String> = h
        .take_sent()
        .into_iter()
        .filter_map(|(_, t)| match decode_stream(&t.payload) {
            Ok(StreamMessage::KvPush { members, .. }) => Some(members),
            _ => None,
        })
        .flatten()
        .map(|u| u.claim.name.to_string())
        .collect();
    assert_eq!(pushed, ["b", "me"]);
}

/// The gossip datagrams `me` sent, by member, each as the event sequences it carried.
fn gossip_by_member(h: &mut Harness) -> BTreeMap<String, Vec<Vec<u64>>> {
    let mut out: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for (_, t) in h.take_sent() {
        if t.kind != TransmitKind::Datagram {
            continue;
        }
        assert!(t.payload.len() <= Config::lan().max_datagram_size);
        let p = packet(&t);
        if p.message != Message::Gossip {
            continue;
        }
        let seqs = p
            .updates
            .iter()
            .filter_map(|u| match u {
                Update::Event(e) => Some(e.event.seq),
                Update::Member(_) | Update::Digest(_) => None,
            })
            .collect();
        out.entry(t.to.name.expect("by name").to_string())
            .or_default()
            .push(seqs);
    }
    out
}

fn events_from_a(seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    let count = seqs.clone().count();
    let body: Vec<u8> = seqs
        .flat_map(|seq| {
            encode_update(&Update::Event(signed_event(UserEvent {
                origin: name("a"),
                seq,
                name: "deploy".into(),
                payload: vec![7; 64],
            })))
        })
        .collect();
    encode_datagram(&Message::Gossip, count, &body)
}

#[test]
fn a_deep_queue_goes_out_in_several_datagrams_a_member_each_with_different_updates() {
    let mut h = Harness::with_peers(Config::lan());
    h.connect_all();
    h.drain_news();
    h.take_sent();
    // ~40 signed events of ~150 bytes: several datagrams' worth.
    h.deliver("a", &events_from_a(1..=40)).unwrap();
    let round = gossip_by_member(&mut h);
    assert_eq!(round.len(), Config::lan().gossip_nodes, "{round:?}");
    for (member, datagrams) in &round {
        assert!(
            (2..=Config::lan().gossip_datagrams_max).contains(&datagrams.len()),
            "{member}: {datagrams:?}"
        );
        let mut seqs: Vec<u64> = datagrams.iter().flatten().copied().collect();
        let carried = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(
            seqs.len(),
            carried,
            "{member} got an update twice: {datagrams:?}"
        );
        assert!(carried > datagrams[0].len());
    }

    // Once drained, news that fits one datagram goes out as one a member.
    h.drain_news();
    h.take_sent();
    h.deliver("a", &events_from_a(41..=41)).unwrap();
    let round = gossip_by_member(&mut h);
    assert!(!round.is_empty());
    for (member, datagrams) in &round {
        assert_eq!(datagrams.len(), 1, "{member}: {datagrams:?}");
    }
}

/// `me`'s keyring, checking lists together by checking each claim (the core's side of a
/// batch does not depend on the scheme), and counting the lists and the single checks.
#[derive(Debug)]
struct Together {
    inner: Arc<dyn Keyring>,
    lists: AtomicUsize,
    singles: AtomicUsize,
}

impl Keyring for Together {
    fn sign(&self, record: &[u8]) -> Signature {
        self.inner.sign(record)
    }
    fn verify(&self, signer: &NodeName, record: &[u8], signature: &Signature) -> Verdict {
        self.singles.fetch_add(1, Ordering::Relaxed);
        self.inner.verify(signer, record, signature)
    }
    fn verify_together(&self, items: &[(&NodeName, &[u8], &Signature)]) -> bool {
        self.lists.fetch_add(1, Ordering::Relaxed);
        items
            .iter()
            .all(|(signer, record, sig)| self.inner.verify(signer, record, sig) == Verdict::Valid)
    }
    fn learn(&self, name: &NodeName, der: &[u8]) -> Result<(), CertificateRefused> {
        self.inner.learn(name, der)
    }
    fn certificate(&self, name: &NodeName) -> Option<Arc<[u8]>> {
        self.inner.certificate(name)
    }
    fn forget(&self, name: &NodeName) {
        self.inner.forget(name)
    }
}

/// `me` joining through `seed`, with a keyring that checks lists together.
fn joiner_checking_together() -> (Harness, Arc<Together>) {
    let together = Arc::new(Together {
        inner: keys("me"),
        lists: AtomicUsize::new(0),
        singles: AtomicUsize::new(0),
    });
    let mut h = Harness::unjoined_with_keyring(Config::lan(), together.clone());
    h.swim.join(h.now, &[addr("seed")]);
    h.take_sent();
    (h, together)
}

const EVERY_PEER: [&str; 9] = ["a", "b", "c", "d", "e", "seed", "other", "zz", "f"];

#[test]
fn a_join_reply_checks_its_claims_together_and_applies_them_all() {
    let (mut h, together) = joiner_checking_together();
    let members = EVERY_PEER.iter().map(|who| alive(who, 3)).collect();
    h.stream("seed", &push_pull_reply(members)).unwrap();
    assert_eq!(together.lists.load(Ordering::Relaxed), 1);
    assert_eq!(
        together.singles.load(Ordering::Relaxed),
        0,
        "none checked again alone"
    );
    for who in EVERY_PEER {
        assert_eq!(h.state_of(who), Some((3, State::Alive)), "{who}");
    }
    assert_eq!(h.swim.stats().forged.claim, 0);
}

/// One forged claim fails the list; each claim is then checked alone, so the forgery is
/// refused and counted, and the others are applied.
#[test]
fn a_forged_claim_fails_the_list_and_only_itself() {
    let (mut h, together) = joiner_checking_together();
    let mut members: Vec<MemberUpdate> = EVERY_PEER.iter().map(|who| alive(who, 3)).collect();
    members[4].signature = keys("b").sign(&members[4].claim.signed_bytes());
    h.stream("seed", &push_pull_reply(members)).unwrap();
    assert_eq!(together.lists.load(Ordering::Relaxed), 1);
    assert_eq!(together.singles.load(Ordering::Relaxed), EVERY_PEER.len());
    // e's certificate, held from before, is asked for again (e may have rotated it); the
    // answer brings the same one, and the claim, checked once more, is counted.
    assert_eq!(h.swim.stats().forged.claim, 0);
    assert_eq!(
        answer_certificate_requests(&mut h),
        [("seed".to_string(), vec!["e".to_string()])]
    );
    assert_eq!(h.swim.stats().forged.claim, 1);
    assert_eq!(h.state_of("e"), None, "the forged claim about e");
    for who in EVERY_PEER.iter().filter(|w| **w != "e") {
        assert_eq!(h.state_of(who), Some((3, State::Alive)), "{who}");
    }
}

/// Members whose certificates `me` forgets in the tests below, so their records wait.
const UNCERTIFIED: [&str; 8] = ["a", "b", "c", "d", "e", "f", "other", "zz"];

/// `me` joined through `seed`, holding the records of [`UNCERTIFIED`] (`members`, in order)
/// parked for want of their certificates, which it asked `seed` for; the keyring's counts as
/// they were then.
fn parked_records(mut members: Vec<MemberUpdate>) -> (Harness, Arc<Together>, usize, usize) {
    let (mut h, together) = joiner_checking_together();
    for who in UNCERTIFIED {
        together.forget(&name(who));
    }
    members.push(alive("seed", 1));
    h.stream("seed", &push_pull_reply(members)).unwrap();
    assert_eq!(
        certificate_requests(&mut h),
        [("seed".to_string(), UNCERTIFIED.map(String::from).to_vec())]
    );
    for who in UNCERTIFIED {
        assert_eq!(h.state_of(who), None, "{who} waits for its certificate");
    }
    let lists = together.lists.load(Ordering::Relaxed);
    let singles = together.singles.load(Ordering::Relaxed);
    (h, together, lists, singles)
}

fn certificates_of_the_uncertified() -> StreamMessage {
    StreamMessage::CertificateReply {
        certificates: UNCERTIFIED.iter().map(|w| certificate_of(w)).collect(),
    }
}

#[test]
fn records_that_waited_for_certificates_are_checked_together_when_they_come() {
    let members = UNCERTIFIED.iter().map(|who| alive(who, 3)).collect();
    let (mut h, together, lists, singles) = parked_records(members);
    h.stream("seed", &certificates_of_the_uncertified())
        .unwrap();
    assert_eq!(together.lists.load(Ordering::Relaxed), lists + 1);
    assert_eq!(together.singles.load(Ordering::Relaxed), singles);
    for who in UNCERTIFIED {
        assert_eq!(h.state_of(who), Some((3, State::Alive)), "{who}");
    }
    assert_eq!(h.swim.stats().forged.claim, 0);
}

#[test]
fn a_forged_record_that_waited_fails_its_list_and_only_itself() {
    let mut members: Vec<MemberUpdate> = UNCERTIFIED.iter().map(|who| alive(who, 3)).collect();
    members[2].signature = keys("b").sign(&members[2].claim.signed_bytes());
    let (mut h, together, lists, singles) = parked_records(members);
    h.stream("seed", &certificates_of_the_uncertified())
        .unwrap();
    assert_eq!(together.lists.load(Ordering::Relaxed), lists + 1);
    assert_eq!(
        together.singles.load(Ordering::Relaxed),
        singles + UNCERTIFIED.len()
    );
    assert_eq!(h.swim.stats().forged.claim, 1);
    assert_eq!(h.state_of("c"), None, "the forged record about c");
    for who in UNCERTIFIED.iter().filter(|w| **w != "c") {
        assert_eq!(h.state_of(who), Some((3, State::Alive)), "{who}");
    }
}
