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
//! [`RingTracker`](super::RingTracker)), which keeps lookups a plain binary search.

use std::collections::BTreeMap;
use std::fmt;

use super::hash::xxh64;
use super::weight::clamp_weight;
use crate::protocol::member::NAME_LEN_MAX;
use crate::protocol::NodeName;

/// Virtual nodes per unit of weight unless told otherwise.
///
/// Chosen by measurement: with 16 members of weight 1, the member with the most of 1,000,000
/// keys holds at most 1.15 times the mean (see the `largest_share_*` test for the figure).
pub const VNODES_PER_MEMBER_DEFAULT: u32 = 512;

/// Most virtual nodes per unit of weight a ring accepts; larger requests are clamped.
pub const VNODES_PER_MEMBER_MAX: u32 = 4096;

/// Seed for hashing keys.
pub const KEY_SEED: u64 = 0;

/// Seed for hashing virtual-node points ("quicswim" in ASCII), distinct from [`KEY_SEED`] so
/// a key that happens to spell a member's name and index is not special.
pub const POINT_SEED: u64 = 0x7175_6963_7377_696D;

/// Index of a member in the ring's name-sorted member list.
type MemberIndex = u32;

/// A consistent-hash ring over a set of weighted members. Cheap to query, immutable once built.
#[derive(Clone)]
pub struct Ring {
    vnodes_per_member: u32,
    /// Sorted by name, no duplicates.
    members: Vec<NodeName>,
    /// `weights[i]` is the weight of `members[i]`, in `1..=WEIGHT_MAX`.
    weights: Vec<u32>,
    /// Sorted by hash, then by member index (so by name): the tie-break on equal points.
    points: Vec<(u64, MemberIndex)>,
    checksum: u64,
}

impl Ring {
    /// An empty ring that will place `vnodes_per_member` points per unit of weight (clamped
    /// to `1..=VNODES_PER_MEMBER_MAX`) when given members with [`Ring::with_members`].
    pub fn new(vnodes_per_member: u32) -> Self {
        Self::assemble(
            vnodes_per_member.clamp(1, VNODES_PER_MEMBER_MAX),
            BTreeMap::new(),
        )
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
        let mut merged: BTreeMap<NodeName, u32> = BTreeMap::new();
        for (name, weight) in members {
            let weight = clamp_weight(weight);
            let held = merged.entry(name).or_insert(weight);
            *held = (*held).max(weight);
        }
        Self::assemble(self.vnodes_per_member, merged)
    }

    fn assemble(vnodes_per_member: u32, members: BTreeMap<NodeName, u32>) -> Self {
        let (members, weights): (Vec<NodeName>, Vec<u32>) = members.into_iter().unzip();
        let total: usize = weights
            .iter()
            .map(|&w| w as usize * vnodes_per_member as usize)
            .sum();
        let mut points = Vec::with_capacity(total);
        for (index, (name, &weight)) in members.iter().zip(&weights).enumerate() {
            let index = MemberIndex::try_from(index).expect("fewer than 2^32 members");
            for vnode in 0..weight * vnodes_per_member {
                points.push((vnode_point(name, vnode), index));
            }
        }
        points.sort_unstable();
        let checksum = checksum_of(vnodes_per_member, &members, &weights);
        Ring {
            vnodes_per_member,
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
        let mut chosen: Vec<usize> = Vec::with_capacity(want);
        let Some(start) = self.point_index(key).filter(|_| want > 0) else {
            return Vec::new();
        };
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
