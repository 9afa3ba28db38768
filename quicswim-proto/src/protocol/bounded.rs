//! Decoding with every peer-controlled length, count and number bounded as it is read.
//!
//! postcard announces a sequence's length before its elements, so a message that names
//! 1.6 million owners in 8 MiB would be decoded whole (and take ~20 times its bytes in
//! memory) before any check after decoding saw it. The fields of wire types therefore
//! deserialize through the functions here (`#[serde(deserialize_with = ...)]`), which
//! refuse a length over the field's limit at its prefix, before anything is allocated, and
//! charge every element of every sequence to one budget per message, so nested sequences
//! (entries of many owners) cannot multiply past it either.
//!
//! ```text
//!   decode(bytes, items) --> budget = items, refusal = none
//!     field: len > max  or  len > budget left  --> refusal = (field, len, max), error
//!     postcard error + refusal set           --> DecodeError::FieldTooLong { field, .. }
//! ```
//!
//! postcard drops the text of a serde error, so the refusal is kept beside the budget in a
//! thread-local cell and read back by [`decode_bounded`]; a decode never spans threads.
//! Outside [`decode_bounded`] (our own round trips in tests) the budget is unlimited and
//! only the per-field limits apply.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::codec::DecodeError;

/// The largest counter (incarnation, version, sequence number) accepted from a peer; a
/// message with a larger one is refused whole at decode.
pub const COUNTER_MAX: u64 = i64::MAX as u64;

/// The largest counter a node accepts in a claim about itself (its own incarnation, key
/// versions, event sequence numbers); a larger one is refused and counted.
///
/// A node answers a claim about itself by raising its own counter past it, and what it
/// then sends must still be under [`COUNTER_MAX`] for its peers to take it: this leaves it
/// 2^62 steps between the two, so nothing a peer sends can make its counters wrap,
/// saturate, go out of what peers accept, or stop its writes. Real counters start at
/// wall-clock microseconds (about 2^51 today) and grow by one per write.
pub const SELF_CLAIM_MAX: u64 = COUNTER_MAX / 2;

/// A field over its limit, as found while decoding.
#[derive(Clone, Copy, Debug)]
struct Refusal {
    field: &'static str,
    len: usize,
    max: usize,
}

thread_local! {
    /// Sequence elements the message being decoded may still hold.
    static ITEMS_LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Why the decode in progress was refused, when a bound refused it.
    static REFUSED: Cell<Option<Refusal>> = const { Cell::new(None) };
}

/// Decodes `T` from exactly `body`, with at most `items` sequence elements in total.
pub(crate) fn decode_bounded<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    items: usize,
) -> Result<T, DecodeError> {
    ITEMS_LEFT.with(|c| c.set(items));
    REFUSED.with(|c| c.set(None));
    let result = postcard::take_from_bytes::<T>(body);
    ITEMS_LEFT.with(|c| c.set(usize::MAX));
    let refused = REFUSED.with(|c| c.take());
    match result {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(DecodeError::TrailingBytes(rest.len())),
        Err(e) => Err(match refused {
            Some(r) => DecodeError::FieldTooLong {
                field: r.field,
                len: r.len,
                max: r.max,
            },
            None => DecodeError::Malformed(e.to_string()),
        }),
    }
}

fn refuse<E: de::Error>(field: &'static str, len: usize, max: usize) -> E {
    REFUSED.with(|c| c.set(Some(Refusal { field, len, max })));
    E::custom(format_args!(
        "field `{field}` over its limit: {len} > {max}"
    ))
}

/// Checks a sequence's announced length against its field's limit and the message's budget,
/// and takes `charge` elements from the budget.
fn admit<E: de::Error>(
    field: &'static str,
    len: usize,
    max: usize,
    charge: usize,
) -> Result<(), E> {
    if len > max {
        return Err(refuse(field, len, max));
    }
    let left = ITEMS_LEFT.with(Cell::get);
    if charge > left {
        return Err(refuse("elements in the message", charge, left));
    }
    ITEMS_LEFT.with(|c| c.set(left - charge));
    Ok(())
}

struct SeqVisitor<T> {
    field: &'static str,
    max: usize,
    /// Bytes are one allocation whatever their count: charged as one element.
    per_element: bool,
    marker: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {} elements", self.max)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // postcard always announces the length; a format that does not is refused rather
        // than read unbounded.
        let len = seq
            .size_hint()
            .ok_or_else(|| refuse(self.field, usize::MAX, self.max))?;
        let charge = if self.per_element { len } else { 1 };
        admit(self.field, len, self.max, charge)?;
        // Room for what is announced, up to a page's worth: a prefix with nothing behind it
        // costs no more than the bytes that carried it.
        let mut out = Vec::with_capacity(len.min(4096 / std::mem::size_of::<T>().max(1)));
        while let Some(x) = seq.next_element()? {
            if out.len() == len {
                return Err(refuse(self.field, len + 1, self.max));
            }
            out.push(x);
        }
        Ok(out)
    }
}

/// A sequence of at most `max` elements, each charged to the message's budget.
pub(crate) fn seq<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    field: &'static str,
    max: usize,
) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(SeqVisitor {
        field,
        max,
        per_element: true,
        marker: PhantomData,
    })
}

/// At most `max` bytes.
pub(crate) fn bytes<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
    max: usize,
) -> Result<Vec<u8>, D::Error> {
    d.deserialize_seq(SeqVisitor {
        field,
        max,
        per_element: false,
        marker: PhantomData,
    })
}

struct OptionBytes {
    field: &'static str,
    max: usize,
}

impl<'de> Visitor<'de> for OptionBytes {
    type Value = Option<Vec<u8>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nothing, or at most {} bytes", self.max)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        bytes(d, self.field, self.max).map(Some)
    }
}

/// Nothing, or at most `max` bytes.
pub(crate) fn option_bytes<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
    max: usize,
) -> Result<Option<Vec<u8>>, D::Error> {
    d.deserialize_option(OptionBytes { field, max })
}

struct StrVisitor {
    field: &'static str,
    max: usize,
}

impl Visitor<'_> for StrVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string of at most {} bytes", self.max)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
        if s.len() > self.max {
            return Err(refuse(self.field, s.len(), self.max));
        }
        Ok(s.to_owned())
    }
}

/// A string of at most `max` bytes, checked before it is copied.
pub(crate) fn string<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
    max: usize,
) -> Result<String, D::Error> {
    d.deserialize_str(StrVisitor { field, max })
}

/// A counter (incarnation, version, sequence number) of at most [`COUNTER_MAX`].
pub(crate) fn counter<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    check_counter(field, v)
}

/// Nothing, or a counter of at most [`COUNTER_MAX`].
pub(crate) fn option_counter<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)?
        .map(|v| check_counter(field, v))
        .transpose()
}

fn check_counter<E: de::Error>(field: &'static str, v: u64) -> Result<u64, E> {
    if v > COUNTER_MAX {
        // Reported as a length over its limit; on 64-bit targets the conversions are exact.
        return Err(refuse(
            field,
            usize::try_from(v).unwrap_or(usize::MAX),
            usize::try_from(COUNTER_MAX).unwrap_or(usize::MAX),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Outer {
        #[serde(deserialize_with = "inners")]
        inners: Vec<Inner>,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Inner {
        #[serde(deserialize_with = "values")]
        values: Vec<u32>,
        #[serde(deserialize_with = "name")]
        name: String,
        #[serde(deserialize_with = "version")]
        version: u64,
    }

    fn inners<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Inner>, D::Error> {
        seq(d, "inners", 4)
    }
    fn values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        seq(d, "values", 8)
    }
    fn name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        string(d, "name", 5)
    }
    fn version<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        counter(d, "version")
    }

    fn inner(values: usize, name: &str, version: u64) -> Inner {
        Inner {
            values: (0..values as u32).collect(),
            name: name.into(),
            version,
        }
    }

    fn decode(o: &Outer, items: usize) -> Result<Outer, DecodeError> {
        let bytes = postcard::to_stdvec(o).unwrap();
        decode_bounded(&bytes, items)
    }

    fn refused_field(r: Result<Outer, DecodeError>) -> &'static str {
        match r {
            Err(DecodeError::FieldTooLong { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn values_within_every_bound_decode() {
        let o = Outer {
            inners: vec![inner(8, "abcde", COUNTER_MAX), inner(0, "", 0)],
        };
        assert_eq!(decode(&o, 10).unwrap(), o);
    }

    #[test]
    fn each_bound_is_refused_by_name() {
        let long_seq = Outer {
            inners: (0..5).map(|_| inner(0, "", 0)).collect(),
        };
        assert_eq!(refused_field(decode(&long_seq, 100)), "inners");
        let long_inner = Outer {
            inners: vec![inner(9, "", 0)],
        };
        assert_eq!(refused_field(decode(&long_inner, 100)), "values");
        let long_name = Outer {
            inners: vec![inner(0, "abcdef", 0)],
        };
        assert_eq!(refused_field(decode(&long_name, 100)), "name");
        let big_counter = Outer {
            inners: vec![inner(0, "", COUNTER_MAX + 1)],
        };
        assert_eq!(refused_field(decode(&big_counter, 100)), "version");
    }

    #[test]
    fn nested_sequences_share_one_budget() {
        let o = Outer {
            inners: (0..4).map(|_| inner(8, "", 0)).collect(),
        };
        // 4 inners + 32 values.
        assert!(decode(&o, 36).is_ok());
        assert_eq!(refused_field(decode(&o, 35)), "elements in the message");
    }

    #[test]
    fn an_announced_length_is_refused_before_its_elements_are_read() {
        // A length prefix of 2^32 with no elements behind it: refused by the bound, not
        // read until the bytes run out.
        let mut bytes = vec![0x80, 0x80, 0x80, 0x80, 0x10];
        bytes.extend([0; 4]);
        assert!(matches!(
            decode_bounded::<Outer>(&bytes, usize::MAX),
            Err(DecodeError::FieldTooLong {
                field: "inners",
                ..
            })
        ));
    }

    #[test]
    fn the_budget_is_unlimited_again_after_a_decode() {
        let o = Outer {
            inners: vec![inner(8, "", 0)],
        };
        assert!(decode(&o, 1).is_err());
        let bytes = postcard::to_stdvec(&o).unwrap();
        assert_eq!(postcard::from_bytes::<Outer>(&bytes).unwrap(), o);
    }
}
