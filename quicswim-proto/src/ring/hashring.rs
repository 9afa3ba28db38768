//! The consistent-hash ring itself: an immutable, sorted list of virtual-node points.
//!
//! ```text
//!   0 ---a----c--b-----a------c---b----a-- 2^64 (wraps to 0)
//!            ^
//!            xxh64(key) lands here: owner = next point clockwise = c
//!            replicas(key, 3) = c, b, a   (keep walking, skip members already taken)
//! ```
//!
//! Each member places `weight * vnodes_per_member` points at `xxh64(name ++ index_le32,
//! POINT_SEED)`. A key belongs to the first point at or after `xxh64(key, KEY_SEED)`. Points
//! that hash equal are ordered by member name, so every node resolves them the same way.
//!
//! A ring never changes once built; membership changes build a new one (see
//! [`RingTracker`](super::RingTracker)), which keeps lookups a plain binary search. A new
//! ring is built from the old one: points of members kept with the same weight are reused
//! (their order does not change), and only the points of new or reweighted members are hashed
//! and sorted, then merged in. A node that sees a hundred members join one after another
//! rebuilds its ring many times in a few seconds, so a rebuild should cost what changed, not
//! every member's 512 points.

use std::collections::BTreeMap;
use std::fmt;

use super::weight::clamp_weight;
use crate::hash::xxh64;
use crate::protocol::member::NAME_LEN_MAX;
use crate::protocol::NodeName;

/// Virtual nodes per unit of weight unless told otherwise.
///
/// Chosen by measurement. With 16 members of weight 1, the largest member's share over the
/// mean share, across 1,000 random sets of 16 names: median 1.076, 90th percentile 1.111,
/// 99th 1.146, worst 1.186 (768 points: 99th 1.116; 1024: 99th 1.106, at twice the memory,
/// 16 bytes a point). A test counts 1,000,000 keys on one such set and holds it to 1.15.
pub const VNODES_PER_MEMBER_DEFAULT: u32 = 512;

/// Most virtual nodes per unit of weight a ring accepts; larger requests are clamped.
pub const VNODES_PER_MEMBER_MAX: u32 = 4096;

/// Seed for hashing keys.
pub const KEY_SEED: u64 = 0;

/// Seed for hashing virtual-node points ("quicswim" in ASCII), distinct from [`KEY_SEED`] so
/// a key that happens to spell a member's name and index is not special.
pub const POINT_SEED: u64 = 0x7175_6963_7377_696D;

/// A point list allocated for a rebuild has room for `1 / ROOM_TO_GROW` (a quarter) more
/// points than the ring it is built for.
const ROOM_TO_GROW: usize = 4;

/// Index of a member in the ring's name-sorted member list.
type MemberIndex = u32;

/// Virtual-node points: `(hash, member)`, sorted.
pub(crate) type Points = Vec<(u64, MemberIndex)>;

/// A consistent-hash ring over a set of weighted members. Cheap to query, immutable once built.
#[derive(Clone)]
pub struct Ring {
    vnodes_per_member: u32,
    /// Sorted by name, no duplicates.
    members: Vec<NodeName>,
    /// `weights[i]` is the weight of `members[i]`, in `1..=WEIGHT_MAX`.
    weights: Vec<u32>,
    /// Sorted by hash, then by member index (so by name): the tie-break on equal points.
    points: Points,
    checksum: u64,
}

impl Ring {
    /// An empty ring that will place `vnodes_per_member` points per unit of weight (clamped
    /// to `1..=VNODES_PER_MEMBER_MAX`) when given members with [`Ring::with_members`].
    pub fn new(vnodes_per_member: u32) -> Self {
        let vnodes_per_member = vnodes_per_member.clamp(1, VNODES_PER_MEMBER_MAX);
        Ring {
            vnodes_per_member,
            members: Vec::new(),
            weights: Vec::new(),
            points: Vec::new(),
            checksum: checksum_of(vnodes_per_member, &[], &[]),
        }
    }

    /// A ring of `members` (name, weight) with [`VNODES_PER_MEMBER_DEFAULT`].
    ///
    /// Weights are clamped to `1..=WEIGHT_MAX`. A name given more than once keeps its largest
    /// weight, so the ring does not depend on the order the members come in.
    pub fn build<I>(members: I) -> Self
    where
        I: IntoIterator<Item = (NodeName, u32)>,
    {
        Ring::default().with_members(members)
    }

    /// A ring of `members` with this ring's vnode count; this ring's own members are ignored.
    /// Same rules as [`Ring::build`].
    pub fn with_members<I>(&self, members: I) -> Self
    where
        I: IntoIterator<Item = (NodeName, u32)>,
    {
        self.with_members_in(members, Vec::new())
    }

    /// [`Ring::with_members`], writing the new ring's points into `spare` (cleared first),
    /// typically the list of a ring no longer in use ([`Ring::into_spare`]): its memory is
    /// already mapped, so the rebuild takes no page faults: zeroing fresh pages would be a
    /// large part of a rebuild's time, and a node rebuilds often while a cluster starts.
    pub(crate) fn with_members_in<I>(&self, members: I, spare: Points) -> Self
    where
        I: IntoIterator<Item = (NodeName, u32)>,
    {
        let mut merged: BTreeMap<NodeName, u32> = BTreeMap::new();
        for (name, weight) in members {
            let weight = clamp_weight(weight);
            let held = merged.entry(name).or_insert(weight);
            *held = (*held).max(weight);
        }
        self.reassemble(merged, spare)
    }

    /// This ring's point list, emptied, to build a later ring in.
    pub(crate) fn into_spare(self) -> Points {
        let mut points = self.points;
        points.clear();
        points
    }

    /// The ring of `members` with this ring's vnode count: the same ring as one built from
    /// nothing, reusing this ring's points for every member kept with the same weight.
    fn reassemble(&self, members: BTreeMap<NodeName, u32>, mut points: Points) -> Self {
        let (members, weights): (Vec<NodeName>, Vec<u32>) = members.into_iter().unzip();
        // Old member index -> new index, for the members whose points are kept. Both lists
        // are sorted by name, so the map is increasing and kept points stay in order.
        let mut kept: Vec<Option<MemberIndex>> = vec![None; self.members.len()];
        let mut added = Vec::new();
        for (index, (name, &weight)) in members.iter().zip(&weights).enumerate() {
            let index = MemberIndex::try_from(index).expect("fewer than 2^32 members");
            match self.members.binary_search(name) {
                Ok(old) if self.weights[old] == weight => kept[old] = Some(index),
                _ => added.push((name, weight * self.vnodes_per_member, index)),
            }
        }
        let mut fresh = Vec::with_capacity(added.iter().map(|&(_, n, _)| n as usize).sum());
        for (name, count, index) in added {
            fresh.extend((0..count).map(|vnode| (vnode_point(name, vnode), index)));
        }
        fresh.sort_unstable();
        let total: usize = weights
            .iter()
            .map(|&w| w as usize * self.vnodes_per_member as usize)
            .sum();
        points.clear();
        if points.capacity() < total {
            // Replaced, not grown: growing would copy the old list (cleared, so of no use)
            // into fresh memory. The room to spare lets a cluster that grows a member at a
            // time rebuild in the same two lists for a while.
            points = Points::with_capacity(total.saturating_add(total / ROOM_TO_GROW));
        }
        let mut old = self
            .points
            .iter()
            .filter_map(|&(hash, i)| kept[i as usize].map(|j| (hash, j)))
            .peekable();
        let mut new = fresh.into_iter().peekable();
        loop {
            let next = match (old.peek(), new.peek()) {
                (Some(a), Some(b)) if a <= b => old.next(),
                (Some(_), Some(_)) => new.next(),
                (Some(_), None) => old.next(),
                (None, Some(_)) => new.next(),
                (None, None) => break,
            };
            points.extend(next);
        }
        debug_assert_eq!(points.len(), total);
        let checksum = checksum_of(self.vnodes_per_member, &members, &weights);
        Ring {
            vnodes_per_member: self.vnodes_per_member,
            members,
            weights,
            points,
            checksum,
        }
    }

    /// The member that owns `key`, or `None` if the ring is empty.
    pub fn owner(&self, key: &[u8]) -> Option<&NodeName> {
        let at = self.point_index(key)?;
        Some(&self.members[self.points[at].1 as usize])
    }

    /// Up to `n` distinct members for `key`: the owner first, then the next members met going
    /// clockwise round the ring. Fewer than `n` only when the ring has fewer members.
    pub fn replicas(&self, key: &[u8], n: usize) -> Vec<&NodeName> {
        let want = n.min(self.members.len());
        let Some(start) = self.point_index(key).filter(|_| want > 0) else {
            return Vec::new();
        };
        let mut chosen: Vec<usize> = Vec::with_capacity(want);
        // A short list is cheapest to scan; a long one gets a bitmap so the walk stays linear.
        let mut taken = if want > 8 {
            vec![false; self.members.len()]
        } else {
            Vec::new()
        };
        let clockwise = self.points[start..].iter().chain(&self.points[..start]);
        for &(_, member) in clockwise {
            let member = member as usize;
            let fresh = if taken.is_empty() {
                !chosen.contains(&member)
            } else {
                !std::mem::replace(&mut taken[member], true)
            };
            if fresh {
                chosen.push(member);
                if chosen.len() == want {
                    break;
                }
            }
        }
        chosen.into_iter().map(|m| &self.members[m]).collect()
    }

    /// Index in `points` of the point that owns `key`.
    fn point_index(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let hash = xxh64(key, KEY_SEED);
        let at = self.points.partition_point(|&(point, _)| point < hash);
        Some(if at == self.points.len() { 0 } else { at })
    }

    /// The members, sorted by name.
    pub fn members(&self) -> &[NodeName] {
        &self.members
    }

    /// The weight of `name`, if it is on the ring.
    pub fn weight(&self, name: &NodeName) -> Option<u32> {
        let at = self.members.binary_search(name).ok()?;
        Some(self.weights[at])
    }

    /// Whether `name` is on the ring.
    pub fn contains(&self, name: &NodeName) -> bool {
        self.members.binary_search(name).is_ok()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the ring has no members (every lookup gives `None` or nothing).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Number of virtual-node points on the ring.
    pub fn vnodes(&self) -> usize {
        self.points.len()
    }

    /// Virtual nodes placed per unit of weight.
    pub fn vnodes_per_member(&self) -> u32 {
        self.vnodes_per_member
    }

    /// A stable checksum of the vnode count and the member set with weights: equal on two
    /// nodes exactly when they route every key alike, whatever order they learnt members in.
    ///
    /// It is XXH64 (seed 0) of: `b"qsring1"`, `vnodes_per_member` (u32 LE), the member count
    /// (u32 LE), then per member in name order its name length (u8), name bytes and weight
    /// (u32 LE).
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// The fraction of the hash space each member owns, in name order; the fractions sum to 1
    /// (empty for an empty ring).
    pub fn shares(&self) -> Vec<(NodeName, f64)> {
        let Some(&(last, _)) = self.points.last() else {
            return Vec::new();
        };
        let mut owned = vec![0u128; self.members.len()];
        let mut previous = last;
        for (i, &(point, member)) in self.points.iter().enumerate() {
            // The arc (previous, point] belongs to this point; the first arc wraps past 2^64.
            let arc = if i == 0 {
                (1u128 << 64) - u128::from(last) + u128::from(point)
            } else {
                u128::from(point - previous)
            };
            owned[member as usize] += arc;
            previous = point;
        }
        let space = (1u128 << 64) as f64;
        self.members
            .iter()
            .zip(owned)
            .map(|(name, arc)| (name.clone(), arc as f64 / space))
            .collect()
    }
}

impl Default for Ring {
    /// An empty ring with [`VNODES_PER_MEMBER_DEFAULT`].
    fn default() -> Self {
        Ring::new(VNODES_PER_MEMBER_DEFAULT)
    }
}

/// Two rings are equal when they route every key alike: same vnode count, members and weights.
impl PartialEq for Ring {
    fn eq(&self, other: &Self) -> bool {
        self.vnodes_per_member == other.vnodes_per_member
            && self.members == other.members
            && self.weights == other.weights
    }
}

impl Eq for Ring {}

impl fmt::Debug for Ring {
    // The points are many and tell a reader nothing; the checksum identifies them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("members", &self.members.len())
            .field("vnodes", &self.points.len())
            .field("vnodes_per_member", &self.vnodes_per_member)
            .field("checksum", &format_args!("{:#018x}", self.checksum))
            .finish()
    }
}

/// Where virtual node `vnode` of `name` sits: XXH64 of the name followed by the index as
/// 4 little-endian bytes. The index has a fixed width, so distinct (name, index) pairs are
/// distinct inputs.
fn vnode_point(name: &NodeName, vnode: u32) -> u64 {
    let name = name.as_str().as_bytes();
    let mut input = [0u8; NAME_LEN_MAX + 4];
    input[..name.len()].copy_from_slice(name);
    input[name.len()..name.len() + 4].copy_from_slice(&vnode.to_le_bytes());
    xxh64(&input[..name.len() + 4], POINT_SEED)
}

fn checksum_of(vnodes_per_member: u32, members: &[NodeName], weights: &[u32]) -> u64 {
    let mut bytes = Vec::with_capacity(16 + members.len() * (1 + NAME_LEN_MAX + 4));
    bytes.extend_from_slice(b"qsring1");
    bytes.extend_from_slice(&vnodes_per_member.to_le_bytes());
    let count = u32::try_from(members.len()).expect("fewer than 2^32 members");
    bytes.extend_from_slice(&count.to_le_bytes());
    for (name, weight) in members.iter().zip(weights) {
        let name = name.as_str().as_bytes();
        let len = u8::try_from(name.len()).expect("a NodeName is at most 63 bytes");
        bytes.push(len);
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(&weight.to_le_bytes());
    }
    xxh64(&bytes, 0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    use super::*;
    use crate::ring::weight::WEIGHT_MAX;

    use crate::test_name as name;

    /// `node-1` ..= `node-{n}`, weight 1.
    fn members(n: usize) -> Vec<(NodeName, u32)> {
        (1..=n).map(|i| (name(&format!("node-{i}")), 1)).collect()
    }

    /// Keys sampled by the rebalancing tests.
    const MOVE_KEYS: u64 = 200_000;

    /// Each of the first [`MOVE_KEYS`] keys whose owner differs between the rings, with its
    /// owner before and after.
    fn moved_keys<'a>(
        before: &'a Ring,
        after: &'a Ring,
    ) -> Vec<(u64, Option<&'a NodeName>, Option<&'a NodeName>)> {
        (0..MOVE_KEYS)
            .map(|k| {
                (
                    k,
                    before.owner(&k.to_le_bytes()),
                    after.owner(&k.to_le_bytes()),
                )
            })
            .filter(|(_, was, now)| was != now)
            .collect()
    }

    /// One member in 16 joining or leaving moves about 1/16 of the keys.
    fn assert_moved_fraction_near_one_in_sixteen(moved: usize) {
        let fraction = moved as f64 / MOVE_KEYS as f64;
        assert!((0.03..=0.10).contains(&fraction), "moved {fraction:.4}");
    }

    /// How many of `keys` each member owns.
    fn key_counts(ring: &Ring, keys: u64) -> BTreeMap<NodeName, u64> {
        let mut counts = BTreeMap::new();
        for k in 0..keys {
            let owner = ring.owner(&k.to_le_bytes()).expect("ring has members");
            *counts.entry(owner.clone()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn empty_ring_owns_nothing() {
        let ring = Ring::default();
        assert!(ring.is_empty());
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.vnodes(), 0);
        assert_eq!(ring.owner(b"k"), None);
        assert!(ring.replicas(b"k", 3).is_empty());
        assert!(ring.shares().is_empty());
    }

    #[test]
    fn each_member_places_weight_times_vnodes_points() {
        let ring = Ring::new(10).with_members([(name("a"), 1), (name("b"), 3)]);
        assert_eq!(ring.vnodes(), 40);
        assert_eq!(ring.vnodes_per_member(), 10);
        assert_eq!(ring.weight(&name("b")), Some(3));
        assert_eq!(ring.weight(&name("c")), None);
        assert!(ring.contains(&name("a")));
        assert!(!ring.contains(&name("c")));
    }

    #[test]
    fn weights_and_vnode_counts_are_bounded() {
        let ring = Ring::new(0).with_members([(name("a"), 0), (name("b"), u32::MAX)]);
        assert_eq!(ring.vnodes_per_member(), 1);
        assert_eq!(ring.weight(&name("a")), Some(1));
        assert_eq!(ring.weight(&name("b")), Some(WEIGHT_MAX));
        assert_eq!(ring.vnodes(), 1 + WEIGHT_MAX as usize);
        assert_eq!(
            Ring::new(u32::MAX).vnodes_per_member(),
            VNODES_PER_MEMBER_MAX
        );
    }

    #[test]
    fn a_name_given_twice_keeps_its_largest_weight() {
        let one_way = Ring::build([(name("a"), 2), (name("a"), 5), (name("b"), 1)]);
        let other_way = Ring::build([(name("b"), 1), (name("a"), 5), (name("a"), 2)]);
        assert_eq!(one_way.members(), &[name("a"), name("b")]);
        assert_eq!(one_way.weight(&name("a")), Some(5));
        assert_eq!(one_way.checksum(), other_way.checksum());
    }

    #[test]
    fn lookups_do_not_depend_on_insertion_order() {
        let sorted = Ring::build(members(16));
        let mut shuffled_members = members(16);
        shuffled_members.shuffle(&mut SmallRng::seed_from_u64(7));
        let shuffled = Ring::build(shuffled_members);
        assert_eq!(sorted, shuffled);
        assert_eq!(sorted.checksum(), shuffled.checksum());
        for k in 0..10_000u64 {
            let key = format!("key-{k}");
            assert_eq!(sorted.owner(key.as_bytes()), shuffled.owner(key.as_bytes()));
            assert_eq!(
                sorted.replicas(key.as_bytes(), 3),
                shuffled.replicas(key.as_bytes(), 3)
            );
        }
    }

    #[test]
    fn placement_and_checksum_are_pinned_across_releases() {
        // Any change to the hash, the point layout or the checksum encoding moves keys in a
        // running cluster of mixed versions; these values must only change on purpose.
        let ring = Ring::build(members(5));
        let owners: Vec<&str> = ["alpha", "beta", "gamma", "delta", "epsilon", ""]
            .iter()
            .map(|k| ring.owner(k.as_bytes()).expect("non-empty").as_str())
            .collect();
        assert_eq!(owners, PINNED_OWNERS);
        assert_eq!(ring.checksum(), PINNED_CHECKSUM);
        assert_eq!(vnode_point(&name("node-1"), 0), PINNED_POINT);
    }
    const PINNED_OWNERS: [&str; 6] = ["node-2", "node-5", "node-3", "node-1", "node-4", "node-5"];
    const PINNED_CHECKSUM: u64 = 0x7427_A19E_3F26_EA8F;
    const PINNED_POINT: u64 = 0xD214_0011_50DF_9179;

    #[test]
    fn largest_share_of_a_million_keys_is_within_15_percent_of_the_mean() {
        let ring = Ring::build(members(16));
        let counts = key_counts(&ring, 1_000_000);
        assert_eq!(counts.len(), 16, "every member owns keys");
        let mean = 1_000_000.0 / 16.0;
        let largest = *counts.values().max().expect("16 members") as f64;
        assert!(
            largest / mean <= 1.15,
            "largest/mean = {:.3}",
            largest / mean
        );
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let before = Ring::build(members(16));
        let gone = name("node-7");
        let after = Ring::build(members(16).into_iter().filter(|(n, _)| *n != gone));
        let moved = moved_keys(&before, &after);
        for (k, was, _) in &moved {
            assert_eq!(*was, Some(&gone), "key {k} moved off a member that stayed");
        }
        assert_moved_fraction_near_one_in_sixteen(moved.len());
    }

    #[test]
    fn adding_a_member_moves_keys_only_to_it() {
        let before = Ring::build(members(16));
        let after = Ring::build(members(17));
        let newcomer = name("node-17");
        let moved = moved_keys(&before, &after);
        for (k, _, now) in &moved {
            assert_eq!(*now, Some(&newcomer), "key {k} moved between old members");
        }
        assert_moved_fraction_near_one_in_sixteen(moved.len());
    }

    #[test]
    fn replicas_are_distinct_and_start_with_the_owner() {
        let ring = Ring::build(members(16));
        for k in 0..2_000u64 {
            let key = k.to_le_bytes();
            let owner = ring.owner(&key).expect("non-empty");
            for n in [1, 3, 9, 16, 40] {
                let replicas = ring.replicas(&key, n);
                assert_eq!(replicas.len(), n.min(16));
                assert_eq!(replicas[0], owner);
                let distinct: std::collections::BTreeSet<_> = replicas.iter().collect();
                assert_eq!(distinct.len(), replicas.len(), "duplicate in {replicas:?}");
            }
            assert!(ring.replicas(&key, 0).is_empty());
        }
    }

    #[test]
    fn replicas_are_the_owners_on_successively_smaller_rings() {
        // Walking clockwise skipping taken members is the same as asking the ring without them:
        // the second replica is who would own the key if the first were gone.
        let ring = Ring::build(members(8));
        for k in 0..500u64 {
            let key = k.to_le_bytes();
            let replicas = ring.replicas(&key, 3);
            let without_first =
                Ring::build(members(8).into_iter().filter(|(n, _)| n != replicas[0]));
            assert_eq!(without_first.owner(&key), Some(replicas[1]));
        }
    }

    #[test]
    fn weight_two_gets_about_twice_the_share() {
        let mut weighted = members(8);
        weighted.push((name("heavy"), 2));
        let ring = Ring::build(weighted);
        let counts = key_counts(&ring, 500_000);
        let heavy = counts[&name("heavy")] as f64;
        let others: u64 = counts
            .iter()
            .filter(|(n, _)| n.as_str() != "heavy")
            .map(|(_, c)| c)
            .sum();
        let ratio = heavy / (others as f64 / 8.0);
        assert!((1.7..=2.3).contains(&ratio), "heavy/mean = {ratio:.3}");
    }

    #[test]
    fn shares_sum_to_one_and_agree_with_key_counts() {
        let ring = Ring::build(members(6));
        let shares = ring.shares();
        let total: f64 = shares.iter().map(|(_, s)| s).sum();
        assert!((total - 1.0).abs() < 1e-9, "total {total}");
        let counts = key_counts(&ring, 300_000);
        for (member, share) in shares {
            let counted = counts[&member] as f64 / 300_000.0;
            assert!(
                (counted - share).abs() < 0.01,
                "{member}: {counted} vs {share}"
            );
        }
        let alone = Ring::build([(name("solo"), 1)]);
        assert_eq!(alone.shares(), vec![(name("solo"), 1.0)]);
    }

    #[test]
    fn equal_points_go_to_the_smaller_name() {
        // Real collisions are too rare to find; lay two equal points by hand. Sorting
        // `(point, index)` puts the smaller index (smaller name) first among equals.
        let ring = Ring {
            vnodes_per_member: 1,
            members: vec![name("a"), name("b")],
            weights: vec![1, 1],
            points: vec![(u64::MAX, 0), (u64::MAX, 1)],
            checksum: 0,
        };
        for k in 0..100u64 {
            assert_eq!(ring.owner(&k.to_le_bytes()), Some(&name("a")));
            assert_eq!(ring.replicas(&k.to_le_bytes(), 2), [&name("a"), &name("b")]);
        }
        assert_eq!(ring.shares(), vec![(name("a"), 1.0), (name("b"), 0.0)]);
    }

    #[test]
    fn checksum_follows_members_weights_and_vnode_count() {
        let base = Ring::build(members(4));
        let mut reweighted = members(4);
        reweighted[2].1 = 2;
        let distinct = [
            base.checksum(),
            Ring::build(members(3)).checksum(),
            Ring::build(reweighted).checksum(),
            Ring::new(64).with_members(members(4)).checksum(),
            Ring::default().checksum(),
        ];
        let unique: std::collections::BTreeSet<_> = distinct.iter().collect();
        assert_eq!(unique.len(), distinct.len(), "{distinct:x?}");
        assert_eq!(base.checksum(), Ring::build(members(4)).checksum());
    }

    fn arb_members() -> impl Strategy<Value = Vec<(NodeName, u32)>> {
        proptest::collection::btree_map("[a-z][a-z0-9]{0,6}", 1u32..4, 1..24).prop_map(|m| {
            m.into_iter()
                .map(|(n, w)| (NodeName::new(n).expect("regex gives DNS labels"), w))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn replicas_are_a_distinct_prefix_led_by_the_owner(
            members in arb_members(),
            key in proptest::collection::vec(any::<u8>(), 0..40),
            n in 0usize..30,
        ) {
            let ring = Ring::new(16).with_members(members.clone());
            let replicas = ring.replicas(&key, n);
            prop_assert_eq!(replicas.len(), n.min(members.len()));
            let distinct: std::collections::BTreeSet<_> = replicas.iter().collect();
            prop_assert_eq!(distinct.len(), replicas.len());
            if n > 0 {
                prop_assert_eq!(Some(replicas[0]), ring.owner(&key));
            }
            let longer = ring.replicas(&key, n + 5);
            prop_assert_eq!(&longer[..replicas.len()], &replicas[..]);
        }

        #[test]
        fn a_ring_built_from_another_equals_one_built_afresh(
            before in arb_members(),
            after in arb_members(),
        ) {
            // `after` shares some names with `before` (short random labels collide), some
            // with the same weight and some reweighted.
            let old = Ring::new(16).with_members(before.clone());
            let mixed: Vec<(NodeName, u32)> =
                before.iter().step_by(2).cloned().chain(after).collect();
            let rebuilt = old.with_members(mixed.clone());
            let afresh = Ring::new(16).with_members(mixed);
            prop_assert_eq!(&rebuilt.members, &afresh.members);
            prop_assert_eq!(&rebuilt.weights, &afresh.weights);
            prop_assert_eq!(&rebuilt.points, &afresh.points);
            prop_assert_eq!(rebuilt.checksum(), afresh.checksum());
        }

        #[test]
        fn any_order_of_members_gives_the_same_ring(
            members in arb_members(),
            seed in any::<u64>(),
            keys in proptest::collection::vec(any::<u64>(), 1..50),
        ) {
            let ring = Ring::new(16).with_members(members.clone());
            let mut shuffled = members;
            shuffled.shuffle(&mut SmallRng::seed_from_u64(seed));
            let other = Ring::new(16).with_members(shuffled);
            prop_assert_eq!(ring.checksum(), other.checksum());
            for k in keys {
                prop_assert_eq!(ring.owner(&k.to_le_bytes()), other.owner(&k.to_le_bytes()));
            }
        }
    }
}
