//! Revocation lists: how a certificate revoked by the CA is cut off cluster-wide.
//!
//! A list is a CRL exactly as its CA signed it; the keyring checks the CA's signature and
//! keeps the newest list per CA. A node that takes a new one (from the operator, or a peer)
//! pushes it to a few members at once, who do the same, so it reaches every member in a few
//! round trips; every push-pull names the lists each side holds by id, and the side that
//! lacks one is sent it, so a member the push missed, or one that joins later, has it after
//! its next exchange (a joiner, in its first).
//!
//! ```text
//!   operator ──revoke──> A ──Revocations──> B, C, D      each checks the CA's signature,
//!                                    B ──Revocations──> E, F, ...   takes it, passes it on
//!   joiner ──PushPull{ids: []}──> A ──PushPullReply{revocations: [list], members..}──> joiner
//! ```
//!
//! Each member whose certificate a taken list names is declared Dead here (this node's own
//! accusation, so members that have not taken the list yet learn it too), and the runtime,
//! told through [`Swim::poll_revoked`], closes its connections and refuses its handshakes.
//! Lists the runtime takes from its own files come in through [`Swim::revocations_taken`]
//! and are banned and pushed the same way.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::Swim;
use crate::protocol::broadcast::retransmit_limit;
use crate::protocol::codec::{encode_stream, StreamMessage, REVOCATIONS_PER_MESSAGE_MAX};
use crate::protocol::member::{NodeName, State};
use crate::protocol::signing::{Revocation, RevocationList};

use super::output::{Transmit, TransmitKind};

impl Swim {
    /// Takes a revocation list the operator handed this node (DER, as its CA signed it): the
    /// keyring checks it; a new one is pushed to a few members and the members it names
    /// are declared Dead. What the keyring made of it is returned; nothing changes unless
    /// it is [`Revocation::Taken`].
    pub fn revoke(&mut self, now: Instant, der: Vec<u8>) -> Revocation {
        let news = self.news_mark();
        let outcome = self.take_revocation(now, None, RevocationList { der });
        self.gossip_if_new(now, news);
        outcome
    }

    /// Whether a revocation list was taken since the last call: the runtime then checks
    /// handshakes against the keyring's lists and closes the connections they no longer
    /// admit.
    pub fn poll_revoked(&mut self) -> bool {
        std::mem::take(&mut self.revoked)
    }

    /// The runtime took `lists` itself (DER; from the files it was given), which cut off
    /// `banned`: they are declared Dead here, and each list is pushed to a few members, as
    /// one handed to [`revoke`](Self::revoke) is. The runtime has applied them to its
    /// handshakes already.
    pub fn revocations_taken(&mut self, now: Instant, lists: Vec<Vec<u8>>, banned: &[NodeName]) {
        let news = self.news_mark();
        for name in banned {
            self.ban(now, name);
        }
        for der in lists {
            self.taken(now, None, &RevocationList { der }, &[]);
        }
        self.gossip_if_new(now, news);
    }

    /// The ids of the revocation lists held.
    pub(super) fn revocation_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .keyring
            .revocations()
            .iter()
            .map(|der| RevocationList::id(der))
            .collect();
        ids.truncate(REVOCATIONS_PER_MESSAGE_MAX);
        ids
    }

    /// The revocation lists held whose ids `theirs` does not name.
    pub(super) fn revocations_missing_from(&self, theirs: &[u64]) -> Vec<RevocationList> {
        let mut lists: Vec<RevocationList> = self
            .keyring
            .revocations()
            .iter()
            .filter(|der| !theirs.contains(&RevocationList::id(der)))
            .map(|der| RevocationList { der: der.to_vec() })
            .collect();
        lists.truncate(REVOCATIONS_PER_MESSAGE_MAX);
        lists
    }

    /// Sends `to` the lists it lacks by `theirs` (the ids its push-pull reply named), if any.
    pub(super) fn send_missing_revocations(&mut self, to: &NodeName, theirs: &[u64]) {
        let lists = self.revocations_missing_from(theirs);
        if !lists.is_empty() {
            self.push_revocations(to, lists);
        }
    }

    /// Takes lists from peer `from` (a push, or a push-pull reply).
    pub(super) fn take_revocations(
        &mut self,
        now: Instant,
        from: &NodeName,
        lists: Vec<RevocationList>,
    ) {
        for list in lists {
            self.take_revocation(now, Some(from), list);
        }
    }

    fn take_revocation(
        &mut self,
        now: Instant,
        from: Option<&NodeName>,
        list: RevocationList,
    ) -> Revocation {
        let outcome = self.keyring.learn_revocation(&list.der);
        let id = RevocationList::id(&list.der);
        match &outcome {
            Revocation::Known => {}
            Revocation::Refused(reason) => {
                self.stats.revocations_refused += 1;
                match from {
                    Some(peer) => {
                        debug!(%peer, id = format_args!("{id:016x}"), %reason, "revocation list refused")
                    }
                    None => {
                        warn!(id = format_args!("{id:016x}"), %reason, "revocation list refused")
                    }
                }
            }
            Revocation::Taken { banned } => {
                self.revoked = true;
                self.taken(now, from, &list, banned);
            }
        }
        outcome
    }

    /// A list taken (from `from`, or the operator), which cut `banned` off: counted, the
    /// members declared Dead here, the list pushed on.
    fn taken(
        &mut self,
        now: Instant,
        from: Option<&NodeName>,
        list: &RevocationList,
        banned: &[NodeName],
    ) {
        self.stats.revocations_taken += 1;
        info!(
            id = format_args!("{:016x}", RevocationList::id(&list.der)),
            from = from.map_or("operator", NodeName::as_str),
            banned = ?banned.iter().map(NodeName::as_str).collect::<Vec<_>>(),
            "revocation list taken"
        );
        for name in banned {
            self.ban(now, name);
        }
        self.spread_revocation(from, list);
    }

    /// A member whose certificate was revoked: declared Dead here, if it was active.
    fn ban(&mut self, now: Instant, name: &NodeName) {
        let Some(e) = self.members.get(name) else {
            return;
        };
        if !e.member.state.is_active() {
            return;
        }
        let incarnation = e.member.incarnation;
        let Some(u) = self.held_update(name) else {
            return;
        };
        let accusation = self.accuse(name, incarnation, true);
        self.on_dead(now, u.claim, u.signature, Some(accusation));
    }

    /// Pushes a list just taken to as many active members as an update is gossiped to
    /// ([`retransmit_limit`]: all of them in a cluster of up to 1 + 2 · `retransmit_mult`),
    /// not the peer it came from, each
    /// of whom does the same when it is new to them: a member is missed only if every one of
    /// the pushes aimed at it fails, and then its next push-pull mends it.
    fn spread_revocation(&mut self, from: Option<&NodeName>, list: &RevocationList) {
        let n = self.cluster_size();
        let fanout = retransmit_limit(self.config.retransmit_mult, n) as usize;
        let targets = self.random_members(fanout, |e| e.member.state.is_active(), from);
        for to in targets {
            self.push_revocations(&to, vec![list.clone()]);
        }
    }

    fn push_revocations(&mut self, to: &NodeName, lists: Vec<RevocationList>) {
        if self.me.state == State::Left {
            return;
        }
        let payload = encode_stream(&StreamMessage::Revocations { lists });
        self.stats.fetch_bytes_out += payload.len() as u64;
        let to = self.destination_of(to);
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Request,
            payload,
        });
    }
}
