//! Records gossiped by digest: after its first few copies a member record travels as its
//! digest ([`Update::Digest`](super::super::codec::Update::Digest)), and a node for which the
//! digest is news asks the sender for the signed record.
//!
//! ```text
//!   B relays Z's record; it has gone in full twice, so now as a digest:
//!   B --- datagram [Digest(Z, incarnation 3, Alive)] ----> A   news to A: Z asked of B
//!   B <== RecordRequest{[Z], certificates: [Z]} ========== A   (Z asked once a second)
//!   B === RecordReply{[Z's record], [Z's certificate]} ==> A   checked, applied, relayed
//! ```
//!
//! A peer that relays a digest held the record and checked it, so it can send both. The
//! record is checked like any other; a digest alone changes nothing here. Only Alive and Left
//! records are sent brief: a suspicion's accuser is a Lifeguard confirmation, which a digest
//! does not name.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::super::codec::{
    encode_stream, MemberDigest, MemberUpdate, StreamMessage, RECORD_NAMES_MAX,
};
use super::super::member::{overrides, NodeName, State};
use super::super::signing::Certificate;
use super::membership::Source;
use super::verify::Asks;
use super::{Destination, Swim, Transmit, TransmitKind};

/// One member's record is asked for at most this often: the first ask's reply usually comes
/// within a round trip, while the digest comes from several members within a gossip round.
const RECORD_ASK_INTERVAL: Duration = Duration::from_secs(1);

/// Members whose records may be asked for at once.
const RECORD_ASKS_MAX: usize = 4096;

/// Records asked for, and those a datagram at hand made news.
#[derive(Debug)]
pub(super) struct Fetches {
    /// Members whose record was asked for, and when.
    asked: Asks,
    /// Names from the datagram at hand to ask its sender for.
    pending: BTreeSet<NodeName>,
}

impl Default for Fetches {
    fn default() -> Self {
        Self {
            asked: Asks::new(RECORD_ASK_INTERVAL, RECORD_ASKS_MAX),
            pending: BTreeSet::new(),
        }
    }
}

impl Swim {
    /// Whether a peer's digest of a member is news here: a member not held that the peer
    /// holds Alive, or a newer incarnation or state than ours (this node's own included, so
    /// that it hears of a suspicion and refutes it).
    pub(super) fn digest_is_news(&self, d: &MemberDigest) -> bool {
        let held = if d.name == self.me.name {
            Some((self.me.incarnation, self.me.state))
        } else {
            self.members
                .get(&d.name)
                .map(|e| (e.member.incarnation, e.member.state))
        };
        match held {
            None => d.state == State::Alive,
            Some(h) => overrides((d.incarnation, d.state), h),
        }
    }

    /// A member's digest gossiped by `from`: if it is news and not asked for lately, its
    /// record is asked of `from` once the datagram is read.
    pub(super) fn on_digest(&mut self, now: Instant, from: &NodeName, d: MemberDigest) {
        if *from == self.me.name || d.name == self.me.name || !self.digest_is_news(&d) {
            return;
        }
        let f = &mut self.fetches;
        if f.asked.may_ask(&d.name, now) && f.pending.len() < RECORD_NAMES_MAX {
            f.pending.insert(d.name);
        }
    }

    /// Asks `from`, at `addr`, for the records its datagram made news, with the certificates
    /// of their members that this node lacks.
    pub(super) fn send_record_request(&mut self, now: Instant, from: &NodeName, addr: SocketAddr) {
        if self.fetches.pending.is_empty() {
            return;
        }
        let names: Vec<NodeName> = std::mem::take(&mut self.fetches.pending)
            .into_iter()
            .collect();
        for name in &names {
            self.fetches.asked.asked(name.clone(), now);
        }
        let certificates = names
            .iter()
            .filter(|n| self.keyring.certificate(n).is_none())
            .cloned()
            .collect();
        let payload = encode_stream(&StreamMessage::RecordRequest {
            names,
            certificates,
        });
        self.stats.fetch_bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit {
            to: Destination {
                addr,
                name: Some(from.clone()),
            },
            kind: TransmitKind::Request,
            payload,
        });
    }

    /// A peer asks for records: those held (our own among them), and the certificates asked
    /// for of members sent.
    pub(super) fn on_record_request(
        &mut self,
        names: &[NodeName],
        certificates: &[NodeName],
    ) -> Vec<u8> {
        let members = self.records_of(names);
        let sent: BTreeSet<&NodeName> = members.iter().map(|u| &u.claim.name).collect();
        let certificates: Vec<Certificate> = certificates
            .iter()
            .filter(|n| sent.contains(n))
            .flat_map(|n| self.certificates_of(n))
            .collect();
        let reply = encode_stream(&StreamMessage::RecordReply {
            members,
            certificates,
        });
        self.stats.fetch_bytes_out += reply.len() as u64;
        reply
    }

    /// The records a reply to our request brought: only those asked for are looked at, and
    /// each is checked and applied as if gossiped (relayed if news).
    pub(super) fn on_record_reply(
        &mut self,
        now: Instant,
        from: &NodeName,
        members: Vec<MemberUpdate>,
        certificates: Vec<Certificate>,
    ) {
        let asked: Vec<MemberUpdate> = members
            .into_iter()
            .filter(|u| self.fetches.asked.answered(&u.claim.name))
            .collect();
        // Only certificates this node lacks, as it asked: a held one is replaced only by
        // the member's own handshake or a full-state exchange.
        let wanted: BTreeSet<NodeName> = asked
            .iter()
            .map(|u| u.claim.name.clone())
            .filter(|n| self.keyring.certificate(n).is_none())
            .collect();
        self.learn_certificates(now, from, certificates, |n| wanted.contains(n));
        self.apply_all(now, from, asked, Source::Gossip);
    }
}
