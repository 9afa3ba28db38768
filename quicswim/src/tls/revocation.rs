//! The certificate revocation lists a node honours: at most one per CA, the newest.
//!
//! A list comes from the operator (`--crl FILE`, or `quicswim revoke`) or from a peer that
//! passed it on; either way it is honoured only once its CA's signature checks out against a
//! CA this node trusts (a root of its bundle or an intermediate of its own chain), so no
//! member can make one up, change one, or replay an old one over a newer one: of two lists
//! from one CA the one with the higher CRL number (then the later thisUpdate, then the
//! larger bytes, so that every node keeps the same) replaces the other, as RFC 5280 has it.
//! webpki consults only the first list it finds for an issuer, so one per CA is also what it
//! needs.
//!
//! What webpki would refuse to use is refused here, so that a list taken never makes every
//! handshake with its CA's certificates fail: a SHA-1 signature, or an issuer whose key usage
//! leaves out cRLSign. (The keyring also tries this node's own certificate against a list
//! before taking it.)

use std::cmp::Ordering;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::num_bigint::BigUint;
use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use quicswim_proto::protocol::REVOCATION_LEN_MAX;

/// One CA's list, checked.
pub(super) struct HeldList {
    pub(super) der: Arc<[u8]>,
    /// The issuer's name, DER (with its tag): the CA it replaces a list of.
    issuer: Vec<u8>,
    number: Option<BigUint>,
    this_update: i64,
    /// As webpki checks certificates against it.
    pub(super) parsed: webpki::CertRevocationList<'static>,
}

/// What orders two lists of one CA.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Rank<'a> {
    number: Option<&'a BigUint>,
    this_update: i64,
    der: &'a [u8],
}

impl HeldList {
    /// `der` checked: a CRL webpki takes, signed by one of `issuers` (CA certificates, DER).
    /// `Ok(None)` when it is not newer than the list `held` holds from its CA: then nothing
    /// more is checked, so a list replayed costs a parse, not a signature check. The error
    /// is a reason phrase.
    pub(super) fn check(
        der: &[u8],
        issuers: &[CertificateDer<'_>],
        held: &Lists,
    ) -> Result<Option<HeldList>, String> {
        if der.len() > REVOCATION_LEN_MAX {
            return Err(format!(
                "{} bytes, longer than {REVOCATION_LEN_MAX}",
                der.len()
            ));
        }
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| format!("does not parse: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the list".into());
        }
        let issuer = crl.issuer().as_raw();
        let rank = Rank {
            number: crl.crl_number(),
            this_update: crl.last_update().timestamp(),
            der,
        };
        if held
            .held
            .iter()
            .any(|h| h.issuer == issuer && rank <= h.rank())
        {
            return Ok(None);
        }
        let algorithm = &crl.signature_algorithm.algorithm;
        if *algorithm == OID_PKCS1_SHA1WITHRSA || *algorithm == OID_SHA1_WITH_RSA {
            return Err("signed with SHA-1, which handshakes do not take".into());
        }
        let mut why = format!("issued by {}, not a CA this node trusts", crl.issuer());
        let mut signed = false;
        for ca in issuers
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
            .filter(|c| c.subject().as_raw() == issuer)
        {
            if let Ok(Some(usage)) = ca.key_usage() {
                if !usage.value.crl_sign() {
                    why = format!(
                        "{} may not sign revocation lists (no cRLSign)",
                        ca.subject()
                    );
                    continue;
                }
            }
            match crl.verify_signature(ca.public_key()) {
                Ok(()) => {
                    signed = true;
                    break;
                }
                Err(e) => why = format!("its signature does not verify with {}: {e}", ca.subject()),
            }
        }
        if !signed {
            return Err(why);
        }
        let parsed = webpki::OwnedCertRevocationList::from_der(der)
            .map(webpki::CertRevocationList::from)
            .map_err(|e| format!("does not parse: {e:?}"))?;
        Ok(Some(HeldList {
            der: der.into(),
            issuer: issuer.to_vec(),
            number: crl.crl_number().cloned(),
            this_update: crl.last_update().timestamp(),
            parsed,
        }))
    }

    /// [`check`](Self::check) with no list held to compare with.
    pub(super) fn check_alone(
        der: &[u8],
        issuers: &[CertificateDer<'_>],
    ) -> Result<HeldList, String> {
        Self::check(der, issuers, &Lists::default())
            .and_then(|list| list.ok_or_else(|| "not newer than itself".into()))
    }

    fn rank(&self) -> Rank<'_> {
        Rank {
            number: self.number.as_ref(),
            this_update: self.this_update,
            der: &self.der,
        }
    }
}

/// The lists a node honours, one per CA.
#[derive(Clone, Default)]
pub(super) struct Lists {
    pub(super) held: Vec<Arc<HeldList>>,
}

impl Lists {
    /// Takes `list` if no list of its CA is held or it is newer than the one held, which it
    /// replaces; `false` when it is that one or older (nothing changes).
    pub(super) fn take(&mut self, list: Arc<HeldList>) -> bool {
        match self.held.iter_mut().find(|h| h.issuer == list.issuer) {
            None => {
                self.held.push(list);
                true
            }
            Some(held) if list.rank().cmp(&held.rank()) == Ordering::Greater => {
                *held = list;
                true
            }
            Some(_) => false,
        }
    }

    /// Whether `der` is one of the lists held.
    pub(super) fn holds(&self, der: &[u8]) -> bool {
        self.held.iter().any(|h| *h.der == *der)
    }

    /// For webpki.
    pub(super) fn parsed(&self) -> Vec<&webpki::CertRevocationList<'static>> {
        self.held.iter().map(|h| &h.parsed).collect()
    }

    /// Each list, DER.
    pub(super) fn ders(&self) -> Vec<Arc<[u8]>> {
        self.held.iter().map(|h| h.der.clone()).collect()
    }

    /// Each list, as rustls takes them.
    pub(super) fn rustls(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.held
            .iter()
            .map(|h| CertificateRevocationListDer::from(h.der.to_vec()))
            .collect()
    }
}
