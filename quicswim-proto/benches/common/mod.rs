//! Helpers shared by the core's criterion benches.
#![allow(dead_code)] // each bench uses its own subset

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use criterion::Criterion;
use quicswim_proto::protocol::codec::{Accusation, Claim, MemberUpdate};
use quicswim_proto::protocol::kv::proof;
use quicswim_proto::protocol::signing::Keyring;
use quicswim_proto::protocol::{Incarnation, KvEntry, NodeName, State};
use quicswim_proto::sim::SimAuthority;

/// The benches' keys: real Ed25519, made from a seed.
pub fn authority() -> &'static Arc<SimAuthority> {
    static AUTHORITY: OnceLock<Arc<SimAuthority>> = OnceLock::new();
    AUTHORITY.get_or_init(|| SimAuthority::new(1))
}

/// Node `i`'s keyring, holding the certificates of nodes `0..=members`.
pub fn keyring(i: usize, members: usize) -> Arc<dyn Keyring> {
    let keyring = authority().keyring(&name(i));
    for j in 0..=members {
        keyring
            .learn(&name(j), &authority().certificate(&name(j)))
            .expect("the authority's certificates are learned");
    }
    keyring
}

/// Node `i`'s claim in `state` at `incarnation`, signed by it (a Suspect or Dead signed
/// by `accuser`).
pub fn signed_update(
    i: usize,
    addr: SocketAddr,
    incarnation: u64,
    state: State,
    accuser: Option<usize>,
) -> MemberUpdate {
    let claim = Claim {
        name: name(i),
        addr,
        incarnation: Incarnation(incarnation),
        left: state == State::Left,
        meta: b"zone=eu-west-1a".to_vec(),
    };
    let signature = authority().keyring(&name(i)).sign(&claim.signed_bytes());
    let accusation = accuser.map(|a| {
        let dead = state == State::Dead;
        let bytes = Accusation::signed_bytes(&name(i), claim.incarnation, dead, &name(a));
        Accusation {
            dead,
            accuser: name(a),
            signature: authority().keyring(&name(a)).sign(&bytes),
        }
    });
    MemberUpdate {
        claim,
        signature,
        accusation,
    }
}

/// A key/value entry signed by owner `o`.
pub fn signed_entry(o: usize, key: String, version: u64, value: Option<Vec<u8>>) -> KvEntry {
    let mut e = KvEntry {
        owner: name(o),
        key,
        version,
        value,
        sealed: None,
    };
    proof::seal(
        &*authority().keyring(&name(o)),
        std::slice::from_mut(&mut e),
    );
    e
}

/// `node-0000`, `node-0001`, ...: the names every bench gives its members.
pub fn name(i: usize) -> NodeName {
    NodeName::new(format!("node-{i:04}")).expect("a DNS label")
}

/// Short runs: these benches compare changes on one machine, not publish absolute figures.
pub fn quick(sample_size: usize, measurement_time: Duration) -> Criterion {
    Criterion::default()
        .sample_size(sample_size)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(measurement_time)
}
