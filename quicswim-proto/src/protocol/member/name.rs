//! Node names: the [`NodeName`] newtype (a DNS label, stored inline when short), and the
//! hashing and table that key members by name with an order that is the same on every run.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

/// Longest node name accepted (a DNS label is at most 63 bytes).
pub const NAME_LEN_MAX: usize = 63;

/// A node's identity: a DNS label (`[a-z0-9-]`, 1..=63 bytes, no leading or trailing hyphen)
/// that must equal the DNS SAN of the certificate the node presents.
///
/// 16 bytes. Names of up to [`NAME_INLINE_MAX`] bytes (most host names, every simulated one)
/// are stored inline: names are map keys compared on every gossiped update, and a pointer
/// chase per compare would dominate a large simulation. Longer ones go to the heap. Every
/// node keeps a copy of every member's name in its table and its probe list, so the size of
/// this type is paid `nodes²` times in a simulation (64 bytes inline would be 6.4 GB at
/// 10,000 nodes).
#[derive(Clone)]
pub struct NodeName(Repr);

/// Longest name stored inline in a [`NodeName`].
pub const NAME_INLINE_MAX: usize = 14;

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; NAME_INLINE_MAX],
    },
    Heap(Box<LongName>),
}

#[derive(Clone)]
struct LongName {
    len: u8,
    bytes: [u8; NAME_LEN_MAX],
}

/// Why a string is not a valid [`NodeName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The name is empty.
    #[error("node name is empty")]
    Empty,
    /// The name is longer than [`NAME_LEN_MAX`] bytes.
    #[error("node name {0:?} is longer than 63 bytes")]
    TooLong(String),
    /// The name holds a character outside `[a-z0-9-]` or starts/ends with `-`.
    #[error("node name {0:?} is not a DNS label (use a-z, 0-9 and '-', not at either end)")]
    NotDnsLabel(String),
}

impl NodeName {
    /// Checks `name` is a DNS label and wraps it. Upper case is refused rather than folded, so
    /// the name compares equal to the certificate's SAN byte for byte.
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidName> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(InvalidName::Empty);
        }
        if name.len() > NAME_LEN_MAX {
            return Err(InvalidName::TooLong(name.to_string()));
        }
        let ok_chars = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_chars || name.starts_with('-') || name.ends_with('-') {
            return Err(InvalidName::NotDnsLabel(name.to_string()));
        }
        let len = name.len() as u8;
        if name.len() <= NAME_INLINE_MAX {
            let mut bytes = [0u8; NAME_INLINE_MAX];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            return Ok(Self(Repr::Inline { len, bytes }));
        }
        let mut bytes = [0u8; NAME_LEN_MAX];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self(Repr::Heap(Box::new(LongName { len, bytes }))))
    }

    fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Heap(long) => &long.bytes[..long.len as usize],
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("a NodeName holds only ASCII")
    }
}

impl PartialEq for NodeName {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // The unused tail is zero, so whole arrays compare as the names do, in two loads.
            (Repr::Inline { len: a, bytes: x }, Repr::Inline { len: b, bytes: y }) => {
                a == b && x == y
            }
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for NodeName {}

impl PartialOrd for NodeName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for NodeName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Serialize for NodeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl serde::de::Visitor<'_> for NameVisitor {
            type Value = NodeName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node name (a DNS label)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NodeName, E> {
                NodeName::new(v).map_err(E::custom)
            }
        }
        d.deserialize_str(NameVisitor)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::str::FromStr for NodeName {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeName::new(s)
    }
}

/// A map keyed by member name, with [`NameHasher`]: fast, and with no random seed, so its
/// iteration order is the same on every run and simulator runs are reproducible.
pub type NameMap<V> = HashMap<NodeName, V, BuildHasherDefault<NameHasher>>;

/// Fx hashing with a murmur3 finaliser. Plain Fx leaves the high bits of short strings that
/// differ only in their last characters (`n00017`, `n00018`) nearly equal, and hashbrown
/// keys on those bits: lookups degenerate into long runs of string compares.
#[derive(Default)]
pub struct NameHasher(rustc_hash::FxHasher);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.0.write_usize(i);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0.finish();
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The hash a [`NameMap`] gives `name`.
fn name_hash(name: &NodeName) -> u64 {
    BuildHasherDefault::<NameHasher>::default().hash_one(name)
}

/// A value a [`NameTable`] finds by the name it holds.
pub trait Named {
    /// The name this value is filed under.
    fn name(&self) -> &NodeName;
}

/// Values in one chunk of a [`NameTable`]: a power of two, so a growing chunk ends at exactly
/// this capacity, and small enough that the last, partly filled chunk wastes little.
const CHUNK: usize = 256;

/// A set of values keyed by the name each holds, for a node's member table.
///
/// Each name is stored once (in its value) rather than again as a map key, values sit in
/// fixed-size chunks rather than one table that doubles (a `HashMap` of 10,000 members has
/// 16,384 slots), and the hash index holds only a `u32` position. The values are dense: a
/// removal moves the last one into the hole, so position `0..len` is a uniform random pick.
///
/// [`values`](Self::values) runs in the order a [`NameMap`] holding the same names would
/// (the index is keyed by the same hash), so replacing one by the other changes no
/// seeded outcome.
pub struct NameTable<V> {
    chunks: Vec<Vec<V>>,
    len: usize,
    /// Position in `chunks` of each value, by the hash of its name.
    index: hashbrown::HashTable<u32>,
}

impl<V: Named> NameTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
            index: hashbrown::HashTable::new(),
        }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at position `i` (`0..len`); positions change when a value is removed.
    pub fn at(&self, i: usize) -> &V {
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    fn at_mut(&mut self, i: usize) -> &mut V {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    fn position(&self, name: &NodeName) -> Option<usize> {
        let chunks = &self.chunks;
        self.index
            .find(name_hash(name), |&i| {
                chunks[i as usize / CHUNK][i as usize % CHUNK].name() == name
            })
            .map(|&i| i as usize)
    }

    /// The value filed under `name`.
    pub fn get(&self, name: &NodeName) -> Option<&V> {
        self.position(name).map(|i| self.at(i))
    }

    /// The value filed under `name`, to change. Its name must not change.
    pub fn get_mut(&mut self, name: &NodeName) -> Option<&mut V> {
        self.position(name).map(|i| self.at_mut(i))
    }

    /// Files `value` under its name, replacing and returning any value filed there.
    pub fn insert(&mut self, value: V) -> Option<V> {
        if let Some(i) = self.position(value.name()) {
            return Some(std::mem::replace(self.at_mut(i), value));
        }
        let hash = name_hash(value.name());
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::new());
        }
        self.chunks
            .last_mut()
            .expect("a chunk with room was just ensured")
            .push(value);
        let i = u32::try_from(self.len).expect("a member table holds fewer than 2^32 names");
        self.len += 1;
        let chunks = &self.chunks;
        self.index.insert_unique(hash, i, |&j| {
            name_hash(chunks[j as usize / CHUNK][j as usize % CHUNK].name())
        });
        None
    }

    /// Removes and returns the value filed under `name`; the last value takes its position.
    pub fn remove(&mut self, name: &NodeName) -> Option<V> {
        let chunks = &self.chunks;
        let entry = self
            .index
            .find_entry(name_hash(name), |&i| {
                chunks[i as usize / CHUNK][i as usize % CHUNK].name() == name
            })
            .ok()?;
        let i = *entry.get() as usize;
        entry.remove();
        let last = self.len - 1;
        let mut value = self.chunks[last / CHUNK]
            .pop()
            .expect("the last position is in the last chunk");
        if self.chunks[last / CHUNK].is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        if i != last {
            // The last value moves into the hole; point its index entry at the new position.
            std::mem::swap(self.at_mut(i), &mut value);
            let moved = self
                .index
                .find_mut(name_hash(self.at(i).name()), |&j| j as usize == last)
                .expect("every value has an index entry");
            *moved = i as u32;
        }
        Some(value)
    }

    /// Every value, in the order a [`NameMap`] of the same names would give.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.index.iter().map(|&i| self.at(i as usize))
    }

    /// Every value, by position.
    pub fn by_position(&self) -> impl Iterator<Item = &V> {
        self.chunks.iter().flatten()
    }
}

impl<V: Named> Default for NameTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Named> std::ops::Index<&NodeName> for NameTable<V> {
    type Output = V;

    fn index(&self, name: &NodeName) -> &V {
        self.get(name).expect("name is in the table")
    }
}

impl<V: Named + fmt::Debug> fmt::Debug for NameTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_position()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_labels() {
        assert!(NodeName::new("node-1").is_ok());
        assert_eq!(NodeName::new(""), Err(InvalidName::Empty));
        assert!(matches!(
            NodeName::new("Node"),
            Err(InvalidName::NotDnsLabel(_))
        ));
        assert!(matches!(
            NodeName::new("-a"),
            Err(InvalidName::NotDnsLabel(_))
        ));
        assert!(matches!(
            NodeName::new("a-"),
            Err(InvalidName::NotDnsLabel(_))
        ));
        assert!(matches!(
            NodeName::new("a.b"),
            Err(InvalidName::NotDnsLabel(_))
        ));
        assert!(matches!(
            NodeName::new("a".repeat(64)),
            Err(InvalidName::TooLong(_))
        ));
        assert!(NodeName::new("a".repeat(63)).is_ok());
    }

    #[test]
    fn deserialising_checks_the_name() {
        let bytes = postcard::to_stdvec(&"BAD NAME").unwrap();
        assert!(postcard::from_bytes::<NodeName>(&bytes).is_err());
        let bytes = postcard::to_stdvec(&"good").unwrap();
        assert_eq!(
            postcard::from_bytes::<NodeName>(&bytes).unwrap().as_str(),
            "good"
        );
    }

    #[test]
    fn names_are_sixteen_bytes_and_long_ones_still_compare_by_content() {
        assert_eq!(std::mem::size_of::<NodeName>(), 16);
        let long = "a".repeat(40);
        assert_eq!(NodeName::new(&long).unwrap().as_str(), long);
        assert_eq!(NodeName::new(&long).unwrap(), NodeName::new(&long).unwrap());
        assert!(NodeName::new("b").unwrap() > NodeName::new(&long).unwrap());
        assert_eq!(
            name_hash(&NodeName::new("n00001").unwrap()),
            name_hash(&NodeName::new("n00001").unwrap())
        );
    }

    #[derive(Debug, PartialEq)]
    struct Named2(NodeName, u32);

    impl Named for Named2 {
        fn name(&self) -> &NodeName {
            &self.0
        }
    }

    #[test]
    fn name_table_iterates_as_a_name_map_and_stays_dense_after_removal() {
        let names: Vec<NodeName> = (0..700)
            .map(|i| NodeName::new(format!("n{i:05}")).unwrap())
            .collect();
        let mut table = NameTable::new();
        let mut map = NameMap::default();
        for (i, n) in names.iter().enumerate() {
            assert!(table.insert(Named2(n.clone(), i as u32)).is_none());
            map.insert(n.clone(), i as u32);
        }
        for n in names.iter().step_by(3) {
            assert_eq!(table.remove(n).map(|v| v.0), Some(n.clone()));
            map.remove(n);
        }
        assert!(table.remove(&names[0]).is_none());
        assert_eq!(table.len(), map.len());
        let from_table: Vec<u32> = table.values().map(|v| v.1).collect();
        let from_map: Vec<u32> = map.values().copied().collect();
        assert_eq!(from_table, from_map);
        for (n, &v) in &map {
            assert_eq!(table[n].1, v);
        }
        let mut positions: Vec<u32> = (0..table.len()).map(|i| table.at(i).1).collect();
        positions.sort_unstable();
        let mut expected = from_map.clone();
        expected.sort_unstable();
        assert_eq!(positions, expected);
        assert_eq!(
            table.insert(Named2(names[1].clone(), 9)).map(|v| v.1),
            Some(1)
        );
        assert_eq!(table[&names[1]].1, 9);
    }
}
