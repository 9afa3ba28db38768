//! Checking signed records before anything is applied or relayed, and fetching the
//! certificates to check them with.
//!
//! ```text
//!   B relays Alive(Z) to A; A holds no certificate for Z:
//!   B --- datagram [Alive(Z), sig by Z] ---------------> A   dropped, Z noted as wanted
//!   B <== CertificateRequest{Z} ======================== A   (at most once a second per Z)
//!   B === CertificateReply{Z's cert} ==================> A   checked against the CA, kept
//!   the next copy of Alive(Z), from anyone, is checked and applied
//! ```
//!
//! A peer that relayed a record had to check it first, so it holds the signer's certificate.
//! Joiners get every member's certificate with the seed's reply. A member record that waits
//! for its signer's certificate is parked (a bounded few per signer, for a few seconds) and
//! applied when the certificate comes: in a join storm the first copy of a newcomer's Alive
//! is often the only one a node gets from gossip, and dropping it would leave the newcomer
//! to anti-entropy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::warn;

use super::super::codec::{
    encode_stream, Accusation, Claim, MemberUpdate, StreamMessage, CERTIFICATES_PER_MESSAGE_MAX,
    CERTIFICATE_NAMES_MAX,
};
use super::super::kv::proof::RootCache;
use super::super::member::{Incarnation, NodeName};
use super::super::signing::{Certificate, Signature, Verdict};
use super::membership::Source;
use super::{Destination, Swim, Transmit, TransmitKind};

/// What a signed record states, for counting forgeries and for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecordKind {
    Claim,
    Accusation,
    Kv,
    Event,
}

/// Signers whose certificates may be wanted at once.
const CERTIFICATE_ASKS_MAX: usize = 4096;

/// One signer's certificate is asked for at most this often.
const CERTIFICATE_ASK_INTERVAL: Duration = Duration::from_secs(1);

/// A held certificate is asked for again, for a record that does not verify with it, at
/// most this often per signer: the signer may have rotated its certificate since.
const CERTIFICATE_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// How long an answer to a certificate asked for again is waited for: past it, what waited
/// is settled as if the answer had brought the certificate held (a relayer that does not
/// answer gets its forgeries counted all the same).
const CERTIFICATE_REFRESH_WAIT: Duration = Duration::from_secs(2);

/// One peer's forged records are logged at most this often; the counters count them all.
const FORGED_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Peers remembered for the rate limit of those logs.
const FORGED_WARN_PEERS_MAX: usize = 1024;

/// Member records parked for their signers' certificates, in all.
const PARKED_MAX: usize = 4096;

/// Records parked for one signer; the oldest goes first.
const PARKED_PER_SIGNER_MAX: usize = 4;

/// A parked record waits this long for its certificate, then goes when room is needed.
const PARKED_FOR: Duration = Duration::from_secs(5);

/// A full waiting room is swept of expired records at most this often.
const PARKED_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Names asked of peers (for a certificate, or for a record gossiped by digest), each at
/// most once per `interval`, at most `max` remembered at once.
#[derive(Debug)]
pub(super) struct Asks {
    at: BTreeMap<NodeName, Instant>,
    interval: Duration,
    max: usize,
}

impl Asks {
    pub(super) fn new(interval: Duration, max: usize) -> Self {
        Self {
            at: BTreeMap::new(),
            interval,
            max,
        }
    }

    /// Whether `name` may be asked for now: not asked within the interval, and room to
    /// remember it (a full set is first swept of expired asks).
    pub(super) fn may_ask(&mut self, name: &NodeName, now: Instant) -> bool {
        if self
            .at
            .get(name)
            .is_some_and(|at| now.duration_since(*at) < self.interval)
        {
            return false;
        }
        if self.at.len() >= self.max && !self.at.contains_key(name) {
            let interval = self.interval;
            self.at.retain(|_, at| now.duration_since(*at) < interval);
        }
        self.at.len() < self.max || self.at.contains_key(name)
    }

    /// `name` was asked for at `now`.
    pub(super) fn asked(&mut self, name: NodeName, now: Instant) {
        self.at.insert(name, now);
    }

    /// Whether `name` was asked for and not answered yet.
    pub(super) fn contains(&self, name: &NodeName) -> bool {
        self.at.contains_key(name)
    }

    /// `name` was answered; returns whether it had been asked for.
    pub(super) fn answered(&mut self, name: &NodeName) -> bool {
        self.at.remove(name).is_some()
    }
}

/// A member record that waits for its signer's certificate.
#[derive(Debug)]
struct Parked {
    at: Instant,
    from: NodeName,
    update: MemberUpdate,
    source: Source,
}

/// A signer's records that failed with its held certificate while it was asked for again,
/// and were dropped rather than parked (key/value batches, user events; their data comes
/// again by anti-entropy): counted as forged if the peer asked answers with no newer
/// certificate, or not in time; forgotten if a newer certificate is learned (they were signed
/// with it, most likely).
#[derive(Debug)]
struct Unsettled {
    /// The peer asked: only its answer settles them.
    asked_of: NodeName,
    /// The peer that sent the last of them, named if they are counted.
    from: NodeName,
    kv: u64,
    event: u64,
}

/// Certificates wanted, records waiting for them, and the forgers recently logged.
#[derive(Debug)]
pub(super) struct Verification {
    /// Signers whose certificate was asked for, and when.
    asked: Asks,
    /// Signers whose held certificate was asked for again, and when (see `verified`).
    refreshed: Asks,
    /// Parked records are being checked again, with the certificate just learned or
    /// confirmed: a failure now is final, never a reason to ask again.
    rechecking: bool,
    /// Signers asked for again and not answered yet, with what failed of theirs meanwhile
    /// and was not parked (see `Unsettled`).
    stale: BTreeMap<NodeName, Unsettled>,
    /// The record at hand made its signer's certificate asked for again: it is parked, not
    /// dropped (see `park`).
    refreshing: bool,
    /// Records that failed their checks, forged or waiting for their signer's certificate to
    /// be asked for again: a message's key/value checks stop at its first.
    pub(super) failed_checks: u64,
    /// Member records waiting for their signer's certificate, by signer.
    parked: BTreeMap<NodeName, Vec<Parked>>,
    /// Records in `parked`.
    parked_len: usize,
    /// When a full waiting room was last swept of expired records.
    swept_at: Option<Instant>,
    /// Per peer, the signers to ask it for once the input at hand is done.
    pending: BTreeMap<NodeName, BTreeSet<NodeName>>,
    /// Peers logged for forged records or refused certificates, and when.
    warned: BTreeMap<NodeName, Instant>,
    /// Key/value batch roots whose owner's signature was checked.
    pub(super) kv_roots: RootCache,
    /// The sender of the datagram at hand and its address.
    pub(super) sender: Option<(NodeName, SocketAddr)>,
}

impl Default for Verification {
    fn default() -> Self {
        Self {
            asked: Asks::new(CERTIFICATE_ASK_INTERVAL, CERTIFICATE_ASKS_MAX),
            refreshed: Asks::new(CERTIFICATE_REFRESH_INTERVAL, CERTIFICATE_ASKS_MAX),
            rechecking: false,
            stale: BTreeMap::new(),
            refreshing: false,
            failed_checks: 0,
            parked: BTreeMap::new(),
            parked_len: 0,
            swept_at: None,
            pending: BTreeMap::new(),
            warned: BTreeMap::new(),
            kv_roots: RootCache::default(),
            sender: None,
        }
    }
}

impl Swim {
    /// Whether `signature` over `bytes` was made by `signer`. A forgery is counted and
    /// logged naming `from`, the peer that sent it; for an unknown signer, `from` is asked
    /// for its certificate.
    ///
    /// A record that does not verify with the signer's held certificate may be signed with
    /// a newer one (the signer rotated it, and `from` checked the record with that): the
    /// first such record of a signer in [`CERTIFICATE_REFRESH_INTERVAL`] makes `from` asked
    /// for the signer's certificate instead, and it and those that follow until the answer
    /// wait for it as records of an unknown signer do; each is counted as forged if it
    /// still does not verify after.
    pub(super) fn verified(
        &mut self,
        now: Instant,
        from: &NodeName,
        kind: RecordKind,
        signer: &NodeName,
        bytes: &[u8],
        signature: &Signature,
    ) -> bool {
        self.verification.refreshing = false;
        match self.keyring.verify(signer, bytes, signature) {
            Verdict::Valid => true,
            Verdict::Invalid => {
                if self.awaits_refresh(now, from, kind, signer) {
                    self.verification.failed_checks += 1;
                    self.stats.unverified_records += 1;
                } else {
                    self.count_forged(now, from, kind, signer);
                }
                false
            }
            Verdict::UnknownSigner => {
                self.stats.unverified_records += 1;
                let _ = self.want_certificate(now, from, signer);
                false
            }
        }
    }

    /// Whether `u`'s claim is signed by the member it is about.
    pub(super) fn claim_verified(
        &mut self,
        now: Instant,
        from: &NodeName,
        u: &MemberUpdate,
    ) -> bool {
        let bytes = u.claim.signed_bytes();
        if self.take_checked_together(u, &bytes) {
            return true;
        }
        self.verified(
            now,
            from,
            RecordKind::Claim,
            &u.claim.name,
            &bytes,
            &u.signature,
        )
    }

    /// Whether `accusation` against the member of `claim` is signed by its accuser.
    pub(super) fn accusation_verified(
        &mut self,
        now: Instant,
        from: &NodeName,
        claim: &Claim,
        accusation: &Accusation,
    ) -> bool {
        let bytes = Accusation::signed_bytes(
            &claim.name,
            claim.incarnation,
            accusation.dead,
            &accusation.accuser,
        );
        let accuser = accusation.accuser.clone();
        self.verified(
            now,
            from,
            RecordKind::Accusation,
            &accuser,
            &bytes,
            &accusation.signature,
        )
    }

    /// This node's own accusation against `subject` at `incarnation`.
    pub(super) fn accuse(
        &self,
        subject: &NodeName,
        incarnation: Incarnation,
        dead: bool,
    ) -> Accusation {
        let bytes = Accusation::signed_bytes(subject, incarnation, dead, &self.me.name);
        Accusation {
            dead,
            accuser: self.me.name.clone(),
            signature: self.keyring.sign(&bytes),
        }
    }

    pub(super) fn count_forged(
        &mut self,
        now: Instant,
        from: &NodeName,
        kind: RecordKind,
        signer: &NodeName,
    ) {
        self.verification.failed_checks += 1;
        let forged = &mut self.stats.forged;
        let counter = match kind {
            RecordKind::Claim => &mut forged.claim,
            RecordKind::Accusation => &mut forged.accusation,
            RecordKind::Kv => &mut forged.kv,
            RecordKind::Event => &mut forged.event,
        };
        *counter = counter.saturating_add(1);
        if self.warn_due(now, from) {
            warn!(peer = %from, signer = %signer, kind = ?kind, "record whose signature does not verify; dropped (logged once a minute per peer)");
        }
    }

    /// Whether a warning about `peer` may be logged now (once a minute per peer).
    pub(super) fn warn_due(&mut self, now: Instant, peer: &NodeName) -> bool {
        let warned = &mut self.verification.warned;
        if warned
            .get(peer)
            .is_some_and(|at| now.duration_since(*at) < FORGED_WARN_INTERVAL)
        {
            return false;
        }
        if warned.len() >= FORGED_WARN_PEERS_MAX && !warned.contains_key(peer) {
            warned.retain(|_, at| now.duration_since(*at) < FORGED_WARN_INTERVAL);
            if warned.len() >= FORGED_WARN_PEERS_MAX {
                return false;
            }
        }
        warned.insert(peer.clone(), now);
        true
    }

    /// Queues a request to `from` for `signer`'s certificate; whether one is queued.
    fn want_certificate(&mut self, now: Instant, from: &NodeName, signer: &NodeName) -> bool {
        if *from == self.me.name {
            return false;
        }
        let v = &mut self.verification;
        if !v.asked.may_ask(signer, now) {
            return false;
        }
        // Marked asked only when a request goes out (`send_certificate_requests`): a peer
        // this node cannot address yet must not hold the ask back from the next relayer.
        let names = v.pending.entry(from.clone()).or_default();
        if names.len() < CERTIFICATES_PER_MESSAGE_MAX {
            names.insert(signer.clone());
            return true;
        }
        false
    }

    /// Whether a record of `signer` (of `kind`) that failed with its held certificate is to
    /// wait for that certificate to be asked for again (see [`verified`](Self::verified)):
    /// it is asked for now, or was within [`CERTIFICATE_REFRESH_INTERVAL`] and not answered
    /// yet. Either way the record is parked (member records) or noted as unsettled (the
    /// rest) until the answer.
    fn awaits_refresh(
        &mut self,
        now: Instant,
        from: &NodeName,
        kind: RecordKind,
        signer: &NodeName,
    ) -> bool {
        if *from == self.me.name || *signer == self.me.name {
            return false;
        }
        let interval = self.verification.refreshed.interval;
        let asked_at = self.verification.refreshed.at.get(signer).copied();
        let asked_lately = asked_at.is_some_and(|at| now.duration_since(at) < interval);
        if self.verification.stale.contains_key(signer) && !asked_lately {
            // Asked for long enough ago and never answered.
            self.settle(now, signer);
        }
        if !self.verification.stale.contains_key(signer) {
            let v = &mut self.verification;
            if v.rechecking || !v.refreshed.may_ask(signer, now) {
                return false;
            }
            if self.verification.stale.len() >= CERTIFICATE_ASKS_MAX {
                for name in self.stale_asked_before(now, interval) {
                    self.settle(now, &name);
                }
                if self.verification.stale.len() >= CERTIFICATE_ASKS_MAX {
                    return false;
                }
            }
            // Only when a request can go out: otherwise nobody would answer.
            if !self.want_certificate(now, from, signer) {
                return false;
            }
            let v = &mut self.verification;
            v.refreshed.asked(signer.clone(), now);
            v.stale.insert(
                signer.clone(),
                Unsettled {
                    asked_of: from.clone(),
                    from: from.clone(),
                    kv: 0,
                    event: 0,
                },
            );
        }
        let v = &mut self.verification;
        if let Some(u) = v.stale.get_mut(signer) {
            u.from = from.clone();
            match kind {
                RecordKind::Kv => u.kv += 1,
                RecordKind::Event => u.event += 1,
                RecordKind::Claim | RecordKind::Accusation => {}
            }
        }
        v.refreshing = true;
        true
    }

    /// Settles the signers asked for again more than [`CERTIFICATE_REFRESH_WAIT`] ago and
    /// not answered: their unsettled records are counted as forged, and their parked ones
    /// checked once more (and counted, still failing). Called once a protocol period.
    pub(super) fn settle_unanswered(&mut self, now: Instant) {
        if self.verification.stale.is_empty() {
            return;
        }
        let overdue = self.stale_asked_before(now, CERTIFICATE_REFRESH_WAIT);
        for name in &overdue {
            self.settle(now, name);
        }
        self.unpark(now, &overdue);
    }

    /// The signers asked for again at least `ago` before `now` and not answered.
    fn stale_asked_before(&self, now: Instant, ago: Duration) -> Vec<NodeName> {
        let refreshed = &self.verification.refreshed;
        self.verification
            .stale
            .keys()
            .filter(|name| {
                refreshed
                    .at
                    .get(*name)
                    .is_none_or(|at| now.duration_since(*at) >= ago)
            })
            .cloned()
            .collect()
    }

    /// `signer`'s certificate asked for again brought nothing newer (or nothing in time):
    /// what failed of its records meanwhile is counted as forged now. Parked records are
    /// checked again by the caller, and counted then.
    fn settle(&mut self, now: Instant, signer: &NodeName) {
        let Some(u) = self.verification.stale.remove(signer) else {
            return;
        };
        for (kind, n) in [(RecordKind::Kv, u.kv), (RecordKind::Event, u.event)] {
            for _ in 0..n {
                self.count_forged(now, &u.from, kind, signer);
            }
        }
    }

    /// Keeps `update` until `signer`'s certificate arrives (see the module notes), if it is a
    /// certificate this node lacks or asked for again; a record that failed otherwise with
    /// the certificate held was forged and is not kept.
    pub(super) fn park(
        &mut self,
        now: Instant,
        signer: &NodeName,
        from: &NodeName,
        update: MemberUpdate,
        source: Source,
    ) {
        let refreshing = std::mem::take(&mut self.verification.refreshing);
        let held = self.keyring.certificate(signer).is_some();
        if (held && !refreshing) || *from == self.me.name {
            return;
        }
        let v = &mut self.verification;
        if v.parked_len >= PARKED_MAX {
            // A sweep walks every waiting record: at most one a second, so a room kept full
            // (by a flood of unknown signers) does not cost that walk per record received.
            if v.swept_at
                .is_none_or(|at| now.duration_since(at) >= PARKED_SWEEP_INTERVAL)
            {
                v.swept_at = Some(now);
                v.parked.retain(|_, records| {
                    records.retain(|p| now.duration_since(p.at) < PARKED_FOR);
                    !records.is_empty()
                });
                v.parked_len = v.parked.values().map(Vec::len).sum();
            }
            if v.parked_len >= PARKED_MAX {
                self.stats.parked_dropped += 1;
                return;
            }
        }
        let records = v.parked.entry(signer.clone()).or_default();
        if records.len() >= PARKED_PER_SIGNER_MAX {
            records.remove(0);
            v.parked_len -= 1;
            self.stats.parked_dropped += 1;
        }
        records.push(Parked {
            at: now,
            from: from.clone(),
            update,
            source,
        });
        v.parked_len += 1;
    }

    /// Applies the records parked for `signers`, whose certificates were just learned, their
    /// claims checked together where there are enough (a join's certificate reply brings up
    /// to [`CERTIFICATE_NAMES_MAX`] at once).
    fn unpark(&mut self, now: Instant, signers: &[NodeName]) {
        let mut records = Vec::new();
        for signer in signers {
            if let Some(parked) = self.verification.parked.remove(signer) {
                self.verification.parked_len -= parked.len();
                records.extend(parked);
            }
        }
        records.retain(|p| now.duration_since(p.at) < PARKED_FOR);
        self.check_claims_together(records.iter().map(|p| &p.update));
        self.verification.rechecking = true;
        for p in records {
            self.apply(now, &p.from, p.update, p.source);
        }
        self.verification.rechecking = false;
        self.checked_together.clear();
    }

    /// Sends the certificate requests one input gathered: to each peer, its names in
    /// requests of at most [`CERTIFICATE_NAMES_MAX`] (a join storm's full-state reply can
    /// name hundreds of signers, and one left out waits for another relayer).
    pub(super) fn send_certificate_requests(&mut self, now: Instant) {
        let pending = std::mem::take(&mut self.verification.pending);
        for (peer, names) in pending {
            // A relayer not in the table yet (nodes starting together) is asked at the
            // address its datagram came from.
            let to = match (self.members.get(&peer), &self.verification.sender) {
                (Some(_), _) => self.destination_of(&peer),
                (None, Some((name, addr))) if *name == peer => Destination {
                    addr: *addr,
                    name: Some(peer.clone()),
                },
                (None, _) => continue,
            };
            let names: Vec<NodeName> = names.into_iter().collect();
            for chunk in names.chunks(CERTIFICATE_NAMES_MAX) {
                for name in chunk {
                    self.verification.asked.asked(name.clone(), now);
                }
                let payload = encode_stream(&StreamMessage::CertificateRequest {
                    names: chunk.to_vec(),
                });
                self.stats.fetch_bytes_out += payload.len() as u64;
                self.transmits.push_back(Transmit {
                    to: to.clone(),
                    kind: TransmitKind::Request,
                    payload,
                });
            }
        }
    }

    /// A peer asks for certificates: those held of members in the table (and our own).
    pub(super) fn on_certificate_request(&mut self, names: &[NodeName]) -> Vec<u8> {
        let certificates = names
            .iter()
            .filter(|n| **n == self.me.name || self.members.get(n).is_some())
            .flat_map(|n| self.certificates_of(n))
            .collect();
        let reply = encode_stream(&StreamMessage::CertificateReply { certificates });
        self.stats.fetch_bytes_out += reply.len() as u64;
        reply
    }

    /// The certificate held for `name`, as it travels.
    pub(super) fn certificate_of(&self, name: &NodeName) -> Option<Certificate> {
        self.keyring.certificate(name).map(|der| Certificate {
            name: name.clone(),
            der: der.to_vec(),
        })
    }

    /// Whether `c` is held already, as its name's newest certificate or the one before.
    fn holds_certificate(&self, c: &Certificate) -> bool {
        let same = |held: Option<std::sync::Arc<[u8]>>| held.is_some_and(|h| *h == *c.der);
        same(self.keyring.certificate(&c.name)) || same(self.keyring.previous_certificate(&c.name))
    }

    /// The certificates held for `name` as they travel: the newest, then the one it
    /// replaced if still valid ([`Keyring::previous_certificate`]), so that a peer can check
    /// what `name` signed before rotating.
    ///
    /// [`Keyring::previous_certificate`]: super::super::signing::Keyring::previous_certificate
    pub(super) fn certificates_of(&self, name: &NodeName) -> Vec<Certificate> {
        let Some(newest) = self.certificate_of(name) else {
            return Vec::new();
        };
        let previous = self
            .keyring
            .previous_certificate(name)
            .map(|der| Certificate {
                name: name.clone(),
                der: der.to_vec(),
            });
        std::iter::once(newest).chain(previous).collect()
    }

    /// The certificates of the members in `records` that a peer holds no record of, so has
    /// never checked one of theirs (all of them for a joiner, whose digest is empty), up to
    /// the limit of one message. Asking for them after would cost the peer a round trip per
    /// relayer, and hold the records back that long.
    pub(super) fn certificates_for(
        &self,
        records: &[MemberUpdate],
        held_by_peer: impl Fn(&NodeName) -> bool,
    ) -> Vec<Certificate> {
        records
            .iter()
            .filter(|u| !held_by_peer(&u.claim.name))
            .flat_map(|u| self.certificates_of(&u.claim.name))
            .take(CERTIFICATES_PER_MESSAGE_MAX)
            .collect()
    }

    /// The certificates a reply to our request brought: only those asked for are checked.
    pub(super) fn on_certificate_reply(
        &mut self,
        now: Instant,
        from: &NodeName,
        certs: Vec<Certificate>,
    ) {
        let asked: BTreeSet<NodeName> = certs
            .iter()
            .filter(|c| self.verification.asked.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        self.learn_certificates(now, from, certs, |name| asked.contains(name));
        // Signers asked for again and answered with the certificate already held: what
        // waited for the answer is checked once more (and, still failing, counted).
        // Only the peer asked settles them: anyone else could answer with the certificate
        // held to have honest records counted as forged.
        let mut rechecked = Vec::new();
        for name in &asked {
            let answered = self
                .verification
                .stale
                .get(name)
                .is_some_and(|u| u.asked_of == *from);
            if answered {
                self.settle(now, name);
                self.verification.asked.answered(name);
                rechecked.push(name.clone());
            }
        }
        self.unpark(now, &rechecked);
    }

    /// Checks and keeps the certificates in `certs` that `wanted` selects and that differ
    /// from the one held. A certificate that does not check out is counted and dropped.
    pub(super) fn learn_certificates(
        &mut self,
        now: Instant,
        from: &NodeName,
        certs: Vec<Certificate>,
        wanted: impl Fn(&NodeName) -> bool,
    ) {
        // A certificate listed twice is checked once.
        let mut listed: BTreeMap<NodeName, usize> = BTreeMap::new();
        let mut offered: Vec<Certificate> = Vec::new();
        for c in certs {
            if c.name == self.me.name
                || !wanted(&c.name)
                || listed
                    .get(&c.name)
                    .is_some_and(|&i| offered[i].der == c.der)
                || self.holds_certificate(&c)
            {
                continue;
            }
            listed.insert(c.name.clone(), offered.len());
            offered.push(c);
        }
        let items: Vec<(&NodeName, &[u8])> = offered
            .iter()
            .map(|c| (&c.name, c.der.as_slice()))
            .collect();
        let results = self.keyring.learn_all(&items);
        debug_assert_eq!(results.len(), items.len(), "one result per certificate");
        let mut learned = Vec::new();
        for (c, result) in offered.iter().zip(results) {
            match result {
                Ok(()) => {
                    self.stats.certificates_learned += 1;
                    self.verification.asked.answered(&c.name);
                    // Taken as the signer's newest: what failed while it was asked for
                    // was most likely signed with it (checked again, or sent again).
                    let newest = self
                        .keyring
                        .certificate(&c.name)
                        .is_some_and(|held| *held == *c.der);
                    if newest {
                        self.verification.stale.remove(&c.name);
                    }
                    learned.push(c.name.clone());
                }
                Err(e) => {
                    self.stats.certificates_refused += 1;
                    if self.warn_due(now, from) {
                        warn!(peer = %from, error = %e, "certificate refused (logged once a minute per peer)");
                    }
                }
            }
        }
        self.unpark(now, &learned);
    }
}
