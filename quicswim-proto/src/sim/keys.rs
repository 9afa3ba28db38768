//! The simulator's stand-in for a cluster CA: every node's Ed25519 key pair made from the
//! run's seed and the node's name, its "certificate" the 32-byte public key, which a node
//! keeps only when it is the key the authority issued for that name (as a real node keeps a
//! certificate only when it chains to the CA and names the member).
//!
//! Signatures are real Ed25519, made and checked with ring. Checking is memoised across the
//! whole simulation by a digest of (key, record, signature), because a thousand simulated
//! nodes on one core check the same records a thousand times: the first check of each is
//! real, and a forged record never enters the memo, so every forgery is checked and refused.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use ring::digest::{digest, SHA256};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::protocol::member::{NameMap, NodeName};
use crate::protocol::signing::{CertificateRefused, Keyring, Signature, Verdict};

/// Memoised checks kept at most; the memo starts again past it.
const MEMO_MAX: usize = 4 << 20;

/// Issues every simulated node's key and remembers which signatures checked out.
pub struct SimAuthority {
    seed: u64,
    keys: Mutex<HashMap<NodeName, Arc<Ed25519KeyPair>>>,
    /// Each name's public key, made once, and a number for the name: a node's keyring holds
    /// the numbers of the keys it learned and looks the keys up here, as nodes in one process
    /// would if they shared certificates. A keyring of its own per node would hold a name and
    /// a pointer per member, about 60 bytes: 6 GB over the 10⁸ pairs of a 10,000-node run,
    /// none of it a real node's.
    certificates: Mutex<NameMap<Issued>>,
    memo: Mutex<HashSet<[u8; 32]>>,
}

/// A name's key as issued, and the number keyrings know it by.
#[derive(Clone)]
struct Issued {
    id: u32,
    key: Arc<[u8]>,
}

impl fmt::Debug for SimAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimAuthority").finish_non_exhaustive()
    }
}

impl SimAuthority {
    /// An authority whose keys derive from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            seed,
            keys: Mutex::default(),
            certificates: Mutex::default(),
            memo: Mutex::default(),
        })
    }

    /// The key pair issued to `name` (made on first use).
    fn key(&self, name: &NodeName) -> Arc<Ed25519KeyPair> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let key = keys.entry(name.clone()).or_insert_with(|| {
            let mut input = self.seed.to_le_bytes().to_vec();
            input.extend_from_slice(name.as_str().as_bytes());
            let secret = digest(&SHA256, &input);
            let pair = Ed25519KeyPair::from_seed_unchecked(secret.as_ref())
                .expect("a 32-byte seed makes an Ed25519 key");
            Arc::new(pair)
        });
        Arc::clone(key)
    }

    /// `name`'s public key: its certificate in the simulation.
    pub fn certificate(&self, name: &NodeName) -> Arc<[u8]> {
        self.issue(name).key
    }

    /// `name`'s key and number, issued on first use.
    fn issue(&self, name: &NodeName) -> Issued {
        let mut certificates = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = u32::try_from(certificates.len()).expect("fewer than 2^32 simulated names");
        certificates
            .entry(name.clone())
            .or_insert_with(|| Issued {
                id: next,
                key: Arc::from(self.key(name).public_key().as_ref()),
            })
            .clone()
    }

    /// `name`'s key and number if one was issued, issuing none.
    fn issued(&self, name: &NodeName) -> Option<Issued> {
        self.certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The keyring of the node named `name`: it signs with `name`'s key and starts out
    /// holding only its own certificate.
    pub fn keyring(self: &Arc<Self>, name: &NodeName) -> Arc<dyn Keyring> {
        let key = self.key(name);
        let own = self.issue(name).id;
        Arc::new(SimKeyring {
            authority: Arc::clone(self),
            key,
            own,
            held: Mutex::new(HashSet::from([own])),
        })
    }

    fn check(&self, public_key: &[u8], record: &[u8], signature: &Signature) -> bool {
        let mut input =
            Vec::with_capacity(public_key.len() + signature.as_bytes().len() + record.len());
        input.extend_from_slice(public_key);
        input.extend_from_slice(signature.as_bytes());
        input.extend_from_slice(record);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest(&SHA256, &input).as_ref());
        if self
            .memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
        {
            return true;
        }
        let valid = UnparsedPublicKey::new(&ED25519, public_key)
            .verify(record, signature.as_bytes())
            .is_ok();
        if valid {
            let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
            if memo.len() >= MEMO_MAX {
                memo.clear();
            }
            memo.insert(key);
        }
        valid
    }
}

/// One simulated node's keyring.
struct SimKeyring {
    authority: Arc<SimAuthority>,
    key: Arc<Ed25519KeyPair>,
    /// The number of this node's own key, which it never forgets.
    own: u32,
    /// The numbers of the keys it holds (see [`SimAuthority::issue`]).
    held: Mutex<HashSet<u32>>,
}

impl fmt::Debug for SimKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimKeyring").finish_non_exhaustive()
    }
}

impl Keyring for SimKeyring {
    fn sign(&self, record: &[u8]) -> Signature {
        Signature::new(self.key.sign(record).as_ref())
    }

    fn verify(&self, signer: &NodeName, record: &[u8], signature: &Signature) -> Verdict {
        match self.certificate(signer) {
            None => Verdict::UnknownSigner,
            Some(key) if self.authority.check(&key, record, signature) => Verdict::Valid,
            Some(_) => Verdict::Invalid,
        }
    }

    fn learn(&self, name: &NodeName, der: &[u8]) -> Result<(), CertificateRefused> {
        let issued = self.authority.issue(name);
        if *issued.key != *der {
            return Err(CertificateRefused {
                name: name.to_string(),
                reason: "not the key the authority issued for this name".into(),
            });
        }
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(issued.id);
        Ok(())
    }

    fn certificate(&self, name: &NodeName) -> Option<Arc<[u8]>> {
        let issued = self.authority.issued(name)?;
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&issued.id)
            .then_some(issued.key)
    }

    fn forget(&self, name: &NodeName) {
        let Some(issued) = self.authority.issued(name) else {
            return;
        };
        if issued.id != self.own {
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&issued.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_name as name;

    #[test]
    fn a_record_verifies_only_as_its_signer_and_unchanged() {
        let authority = SimAuthority::new(7);
        let a = authority.keyring(&name("a"));
        let b = authority.keyring(&name("b"));
        b.learn(&name("a"), &authority.certificate(&name("a")))
            .unwrap();
        let sig = a.sign(b"record");
        assert_eq!(b.verify(&name("a"), b"record", &sig), Verdict::Valid);
        assert_eq!(b.verify(&name("a"), b"recorD", &sig), Verdict::Invalid);
        assert_eq!(b.verify(&name("b"), b"record", &sig), Verdict::Invalid);
        assert_eq!(
            b.verify(&name("c"), b"record", &sig),
            Verdict::UnknownSigner
        );
        // Memoised or not, a forgery stays refused.
        assert_eq!(b.verify(&name("a"), b"recorD", &sig), Verdict::Invalid);
    }

    #[test]
    fn a_key_other_than_the_issued_one_is_refused() {
        let authority = SimAuthority::new(7);
        let b = authority.keyring(&name("b"));
        let wrong = authority.certificate(&name("c"));
        assert!(b.learn(&name("a"), &wrong).is_err());
        assert_eq!(b.certificate(&name("a")), None);
        b.forget(&name("b"));
        assert!(b.certificate(&name("b")).is_some(), "own certificate kept");
    }
}
