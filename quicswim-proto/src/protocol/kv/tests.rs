//! Unit tests of the key/value store: writes, deltas, digests, limits and tombstones.
use super::*;

fn n(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

/// `e` signed by its owner, a batch of one, as deltas carry only signed entries.
fn sealed(mut e: KvEntry) -> KvEntry {
    static AUTHORITY: std::sync::OnceLock<std::sync::Arc<crate::sim::SimAuthority>> =
        std::sync::OnceLock::new();
    let authority = AUTHORITY.get_or_init(|| crate::sim::SimAuthority::new(1));
    proof::seal(&*authority.keyring(&e.owner), std::slice::from_mut(&mut e));
    e
}

fn put(owner: &str, key: &str, version: u64, value: &str) -> KvEntry {
    sealed(KvEntry {
        owner: n(owner),
        key: key.into(),
        version,
        value: Some(value.as_bytes().to_vec()),
        sealed: None,
    })
}

/// A digest claiming `max_version` of `owner` and nothing else.
fn at(owner: &str, max_version: u64) -> OwnerDigest {
    OwnerDigest {
        owner: n(owner),
        max_version,
        fingerprint: 0,
        gc_floor: 0,
    }
}

fn del(owner: &str, key: &str, version: u64) -> KvEntry {
    sealed(KvEntry {
        owner: n(owner),
        key: key.into(),
        version,
        value: None,
        sealed: None,
    })
}

#[test]
fn newer_versions_win_and_older_are_stale() {
    let t = Instant::now();
    let mut s = KvStore::new(KvLimits::default());
    assert_eq!(
        s.apply(t, &put("a", "k", 2, "two")).unwrap(),
        Applied::Changed
    );
    assert_eq!(
        s.apply(t, &put("a", "k", 1, "one")).unwrap(),
        Applied::Stale
    );
    assert_eq!(s.get(&n("a"), "k"), Some(&b"two"[..]));
    assert_eq!(s.apply(t, &del("a", "k", 3)).unwrap(), Applied::Changed);
    assert_eq!(s.get(&n("a"), "k"), None);
    assert_eq!(s.version(&n("a"), "k"), Some(3));
    assert_eq!(s.totals(), (0, 0));
}

#[test]
fn limits_are_enforced_on_receipt_and_change_nothing() {
    let t = Instant::now();
    let limits = KvLimits {
        value_len_max: 4,
        keys_per_node_max: 1,
        ..KvLimits::default()
    };
    let mut s = KvStore::new(limits);
    assert!(matches!(
        s.apply(t, &put("a", "k", 1, "toolong")),
        Err(KvError::ValueTooLarge { .. })
    ));
    s.apply(t, &put("a", "k", 1, "ok")).unwrap();
    assert!(matches!(
        s.apply(t, &put("a", "j", 2, "no")),
        Err(KvError::TooManyKeys { .. })
    ));
    assert_eq!(s.iter().len(), 1);
    assert!(matches!(
        s.apply(t, &put("a", "", 3, "x")),
        Err(KvError::EmptyKey)
    ));
}

#[test]
fn equal_stores_have_nothing_to_send() {
    let t = Instant::now();
    let mut a = KvStore::new(KvLimits::default());
    let mut b = KvStore::new(KvLimits::default());
    for e in [
        put("x", "1", 1, "a"),
        put("x", "2", 2, "b"),
        del("y", "3", 7),
    ] {
        a.apply(t, &e).unwrap();
        b.apply(t, &e).unwrap();
    }
    assert!(a.delta_for(&b.digest(), 1 << 20).is_empty());
}

#[test]
fn delta_sends_only_what_is_newer_than_their_max() {
    let t = Instant::now();
    let mut a = KvStore::new(KvLimits::default());
    let mut b = KvStore::new(KvLimits::default());
    for v in 1..=100 {
        let e = put("x", &format!("k{v}"), v, "v");
        a.apply(t, &e).unwrap();
        if v <= 95 {
            b.apply(t, &e).unwrap();
        }
    }
    let delta = a.delta_for(&b.digest(), 1 << 20);
    assert_eq!(delta.len(), 1);
    assert_eq!(delta[0].entries.len(), 5);
    let (changed, refused) = b.apply_delta(t, delta);
    assert_eq!((changed.len(), refused), (5, 0));
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn a_round_moves_each_side_only_what_the_other_lacks() {
    let t = Instant::now();
    let mut a = KvStore::new(KvLimits::default());
    let mut b = KvStore::new(KvLimits::default());
    for v in 1..=10 {
        a.apply(t, &put("x", &format!("k{v}"), v, "v")).unwrap();
        b.apply(t, &put("x", &format!("k{v}"), v, "v")).unwrap();
    }
    a.apply(t, &put("x", "k11", 11, "v")).unwrap(); // a ahead on x
    b.apply(t, &put("y", "k", 1, "v")).unwrap(); // b alone holds y
    b.apply(t, &put("z", "k", 4, "v")).unwrap();
    a.apply(t, &put("z", "k", 4, "v")).unwrap(); // equal on z

    // a asks with its digest; b answers with y and names x as wanted.
    let from_b = b.delta_for(&a.digest(), 1 << 20);
    let wants = b.wants(&a.digest());
    assert_eq!(
        from_b
            .iter()
            .flat_map(|d| &d.entries)
            .map(|e| (e.owner.as_str(), e.key.as_str()))
            .collect::<Vec<_>>(),
        vec![("y", "k")]
    );
    assert_eq!(
        wants.iter().map(|d| d.owner.as_str()).collect::<Vec<_>>(),
        vec!["x"]
    );
    // a pushes only the wanted owner, and only above b's version of it.
    let from_a = a.delta_for_listed(&wants, 1 << 20);
    assert_eq!(from_a.len(), 1);
    assert_eq!(from_a[0].entries, vec![put("x", "k11", 11, "v")]);
    a.apply_delta(t, from_b);
    b.apply_delta(t, from_a);
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn an_owner_we_lack_is_wanted_whole() {
    let t = Instant::now();
    let mut a = KvStore::new(KvLimits::default());
    let b = KvStore::new(KvLimits::default());
    a.apply(t, &put("x", "k1", 1, "v")).unwrap();
    a.apply(t, &del("x", "k2", 2)).unwrap();
    let wants = b.wants(&a.digest());
    assert_eq!(wants.len(), 1);
    assert_eq!((wants[0].max_version, wants[0].fingerprint), (0, 0));
    let delta = a.delta_for_listed(&wants, 1 << 20);
    assert_eq!(
        delta[0].entries,
        vec![put("x", "k1", 1, "v"), del("x", "k2", 2)]
    );
}

#[test]
fn overwrites_and_collection_keep_the_version_index_exact() {
    let t0 = Instant::now();
    let grace = Duration::from_secs(1);
    let mut a = KvStore::new(KvLimits::default());
    a.apply(t0, &put("x", "k", 1, "one")).unwrap();
    a.apply(t0, &put("x", "k", 5, "five")).unwrap();
    a.apply(t0, &del("x", "gone", 6)).unwrap();
    a.collect_tombstones(t0 + grace, grace);
    // Nothing above 1 but k@5: the overwritten version and the collected tombstone are
    // no longer indexed.
    let delta = a.delta_for(&[at("x", 1)], 1 << 20);
    assert_eq!(delta[0].entries, vec![put("x", "k", 5, "five")]);
    assert!(a.delta_for(&[at("x", u64::MAX)], 1 << 20).is_empty());
}

#[test]
fn a_hole_below_the_max_is_repaired_by_a_full_owner_sync() {
    let t = Instant::now();
    let mut a = KvStore::new(KvLimits::default());
    let mut b = KvStore::new(KvLimits::default());
    for v in 1..=3 {
        a.apply(t, &put("x", &format!("k{v}"), v, "v")).unwrap();
    }
    b.apply(t, &put("x", "k1", 1, "v")).unwrap();
    b.apply(t, &put("x", "k3", 3, "v")).unwrap(); // k2 lost in gossip
    let delta = a.delta_for(&b.digest(), 1 << 20);
    b.apply_delta(t, delta);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(b.get(&n("x"), "k2"), Some(&b"v"[..]));
}

#[test]
fn collected_tombstones_are_not_resurrected_and_a_long_absence_resets() {
    let t0 = Instant::now();
    let grace = Duration::from_secs(10);
    let mut a = KvStore::new(KvLimits::default());
    let mut away = KvStore::new(KvLimits::default());
    for e in [put("x", "gone", 1, "old"), put("x", "kept", 2, "v")] {
        a.apply(t0, &e).unwrap();
        away.apply(t0, &e).unwrap();
    }
    a.apply(t0, &del("x", "gone", 3)).unwrap();
    a.apply(t0, &put("x", "new", 4, "v")).unwrap();
    assert_eq!(a.collect_tombstones(t0 + grace, grace), 1);
    // The old value comes back by gossip: refused, it is below the floor.
    assert_eq!(
        a.apply(t0, &put("x", "gone", 1, "old")).unwrap(),
        Applied::Stale
    );
    // The node that was away gets a reset and drops the deleted key.
    let delta = a.delta_for(&away.digest(), 1 << 20);
    assert!(delta[0].reset);
    away.apply_delta(t0 + grace, delta);
    assert_eq!(away.get(&n("x"), "gone"), None);
    assert_eq!(away.get(&n("x"), "new"), Some(&b"v"[..]));
    assert_eq!(away.get(&n("x"), "kept"), Some(&b"v"[..]));
}

#[test]
fn budget_cuts_a_delta_but_the_next_one_continues() {
    let t = Instant::now();
    let mut a = KvStore::new(KvLimits::default());
    let mut b = KvStore::new(KvLimits::default());
    for v in 1..=50 {
        a.apply(
            t,
            &sealed(KvEntry {
                owner: n("x"),
                key: format!("k{v}"),
                version: v,
                value: Some(vec![0; 100]),
                sealed: None,
            }),
        )
        .unwrap();
    }
    let mut rounds = 0;
    loop {
        let delta = a.delta_for(&b.digest(), 1000);
        if delta.is_empty() {
            break;
        }
        assert!(delta[0].entries.len() <= 9, "budget respected");
        b.apply_delta(t, delta);
        rounds += 1;
        assert!(rounds < 20);
    }
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn two_keys_at_one_version_are_both_held_and_replicas_converge() {
    let t = Instant::now();
    let mut a = KvStore::new(KvLimits::default());
    // A peer sends two keys at one version: both are held, and the index keeps both.
    a.apply(t, &put("o", "x", 5, "1")).unwrap();
    a.apply(t, &put("o", "y", 5, "2")).unwrap();
    a.apply(t, &put("o", "x", 6, "3")).unwrap();
    a.check_quotas().unwrap();
    // A replica that holds neither gets both, and the digests then agree.
    let mut b = KvStore::new(KvLimits::default());
    let (changed, refused) = b.apply_delta(t, a.delta_for(&b.digest(), 1 << 20));
    assert_eq!((changed.len(), refused), (2, 0));
    assert_eq!(b.digest(), a.digest());
    assert_eq!(b.get(&n("o"), "y"), Some(&b"2"[..]));
    // Collecting one of two entries at one version leaves the other indexed.
    a.apply(t, &del("o", "y", 7)).unwrap();
    a.collect_tombstones(t + Duration::from_secs(3600), Duration::from_secs(1));
    a.check_quotas().unwrap();
    assert_eq!(a.delta_for(&[at("o", 5)], 1 << 20)[0].entries.len(), 1);
}

#[test]
fn tombstones_count_against_the_key_and_byte_quotas() {
    let t = Instant::now();
    let limits = KvLimits {
        keys_per_node_max: 2,
        bytes_per_node_max: 64,
        ..KvLimits::default()
    };
    let mut s = KvStore::new(limits);
    s.apply(t, &del("a", "k1", 1)).unwrap();
    s.apply(t, &del("a", "k2", 2)).unwrap();
    assert!(matches!(
        s.apply(t, &del("a", "k3", 3)),
        Err(KvError::TooManyKeys { .. })
    ));
    assert!(matches!(
        s.apply(t, &put("a", "k4", 4, "v")),
        Err(KvError::TooManyKeys { .. })
    ));
    // A held key can still change, and tombstones leave room once collected.
    s.apply(t, &put("a", "k1", 5, "v")).unwrap();
    s.apply(t, &del("a", "k1", 6)).unwrap();
    s.collect_tombstones(t + Duration::from_secs(3600), Duration::from_secs(1));
    s.apply(t, &del("a", "k3", 7)).unwrap();
    s.check_quotas().unwrap();
    // Long keys of tombstones count against the bytes.
    let mut s = KvStore::new(KvLimits {
        bytes_per_node_max: 64,
        ..KvLimits::default()
    });
    s.apply(t, &del("a", &"x".repeat(40), 1)).unwrap();
    assert!(matches!(
        s.apply(t, &del("a", &"y".repeat(40), 2)),
        Err(KvError::TooManyBytes { .. })
    ));
}

#[test]
fn a_refused_first_entry_leaves_no_owner_behind() {
    let t = Instant::now();
    let mut s = KvStore::new(KvLimits {
        owners_max: 1,
        keys_per_node_max: 1,
        ..KvLimits::default()
    });
    s.apply(t, &put("a", "k", 1, "v")).unwrap();
    s.apply(t, &put("a", "j", 2, "v")).unwrap_err();
    assert!(matches!(
        s.apply(t, &put("b", "k", 1, "v")),
        Err(KvError::TooManyOwners(1))
    ));
    assert_eq!(s.owner_count(), 1);
}

#[test]
fn a_delta_above_the_largest_version_is_empty() {
    let t = Instant::now();
    let mut s = KvStore::new(KvLimits::default());
    s.apply(t, &put("a", "k", u64::MAX, "v")).unwrap();
    let theirs = OwnerDigest {
        owner: n("a"),
        max_version: u64::MAX,
        fingerprint: 0,
        gc_floor: 0,
    };
    // Equal max versions, different fingerprints: the whole owner is sent, not a range
    // above u64::MAX.
    assert_eq!(s.delta_for(&[theirs], 1 << 20)[0].entries.len(), 1);
}

#[test]
fn a_page_ends_at_its_byte_budget_and_holds_at_least_one_entry() {
    let t = Instant::now();
    let limits = KvLimits::default();
    let value_len = limits.value_len_max;
    let mut s = KvStore::new(limits);
    let big = "x".repeat(value_len);
    let count = PAGE_BYTES / value_len + 10;
    for i in 0..count {
        s.apply(t, &put("a", &format!("k{i:05}"), 1, &big)).unwrap();
    }
    let page = s.page(None, 10_000);
    let bytes: usize = page.iter().map(|e| e.1.len() + e.2.len()).sum();
    assert!(page.len() < count, "the whole store in one page");
    assert!(
        bytes >= PAGE_BYTES && bytes < PAGE_BYTES + value_len + 16,
        "{bytes} bytes"
    );
    assert!(page_is_full(page.len(), bytes, 10_000));
    // The next page carries on where it ended, and the pages together hold every entry.
    let last = page.last().unwrap().1.to_string();
    let rest = s.page(Some((&n("a"), &last)), 10_000);
    assert_eq!(page.len() + rest.len(), count);
    assert!(!page_is_full(
        rest.len(),
        rest.iter().map(|e| e.1.len() + e.2.len()).sum(),
        10_000
    ));
    // A page of one entry, whatever its size.
    assert_eq!(s.page(None, 1).len(), 1);
}

#[test]
fn the_budget_bounds_proofs_of_entries_whose_batches_were_mostly_overwritten() {
    use crate::protocol::codec::{encode_stream, StreamMessage};
    let t = Instant::now();
    let authority = crate::sim::SimAuthority::new(2);
    let mut a = KvStore::new(KvLimits::default());
    // 200 entries, each the one survivor of its batch of 64: the other 63 leaves travel as
    // hashes, ~2.2 KB of proof per entry.
    for b in 0..200u64 {
        let mut batch: Vec<KvEntry> = (0..64)
            .map(|i| KvEntry {
                owner: n("x"),
                key: format!("b{b}-{i}"),
                version: b * 64 + i + 1,
                value: Some(vec![1; 8]),
                sealed: None,
            })
            .collect();
        proof::seal(&*authority.keyring(&n("x")), &mut batch);
        a.apply(t, &batch[0]).unwrap();
    }
    let budget = 100_000;
    let mut b = KvStore::new(KvLimits::default());
    let mut rounds = 0;
    loop {
        let delta = a.delta_for(&b.digest(), budget);
        if delta.iter().all(|d| d.entries.is_empty()) {
            break;
        }
        let missing: usize = delta[0].proof.batches.iter().map(|b| b.missing.len()).sum();
        assert_eq!(missing, 63 * delta[0].entries.len());
        let bytes = encode_stream(&StreamMessage::KvPush {
            deltas: delta.clone(),
            members: Vec::new(),
        })
        .len();
        assert!(bytes <= budget, "{bytes} bytes for a budget of {budget}");
        let (changed, refused) = b.apply_delta(t, delta);
        assert!(!changed.is_empty() && refused == 0);
        rounds += 1;
        assert!(rounds <= 10, "200 entries of ~2.2 KB in 100 KB deltas");
    }
    assert_eq!(a.digest(), b.digest());
    assert!(rounds >= 4, "the proofs counted: {rounds} rounds");
}
