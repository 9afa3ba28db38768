//! Member weights: how many units of virtual nodes a member places on the ring.
//!
//! A member's weight travels in its metadata as one `key=value` pair among others separated
//! by `;`, for example `zone=eu-1;weight=4`:
//!
//! - keys and values are trimmed of ASCII whitespace; keys compare exactly (`weight`);
//! - the value is decimal digits only; the first `weight` pair counts, later ones are ignored;
//! - no `weight` pair, an empty or non-decimal value gives [`WEIGHT_DEFAULT`];
//! - a value outside `1..=`[`WEIGHT_MAX`] is clamped into it (so `0` gives 1), which bounds the
//!   number of virtual nodes one member can claim however its metadata was filled in.
//!
//! Bytes that are not UTF-8 elsewhere in the metadata do not spoil the weight: parsing works on
//! bytes.

/// Weight of a member that states none.
pub const WEIGHT_DEFAULT: u32 = 1;

/// Largest weight honoured; larger ones are clamped to it.
pub const WEIGHT_MAX: u32 = 64;

/// Brings `weight` into `1..=WEIGHT_MAX`.
pub fn clamp_weight(weight: u32) -> u32 {
    weight.clamp(1, WEIGHT_MAX)
}

/// The weight stated in a member's metadata (see the [module docs](self) for the format).
pub fn weight_from_meta(meta: &[u8]) -> u32 {
    for pair in meta.split(|&b| b == b';') {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        if key == b"weight" {
            return parse_decimal(value).map_or(WEIGHT_DEFAULT, clamp_weight);
        }
    }
    WEIGHT_DEFAULT
}

/// Decimal digits to a number, saturating at `u32::MAX`; `None` if empty or not all digits.
fn parse_decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u32, |n, &d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_is_read_among_other_pairs() {
        assert_eq!(weight_from_meta(b"weight=4"), 4);
        assert_eq!(weight_from_meta(b"zone=eu-1;weight=3;rack=7"), 3);
        assert_eq!(weight_from_meta(b" zone = a ; weight = 12 "), 12);
    }

    #[test]
    fn missing_or_malformed_weight_is_the_default() {
        for meta in [
            &b""[..],
            b"zone=eu",
            b"weight",
            b"weight=",
            b"weight=-2",
            b"weight=+2",
            b"weight=2.5",
            b"weight=two",
            b"weights=5",
            b"Weight=5",
        ] {
            assert_eq!(weight_from_meta(meta), WEIGHT_DEFAULT, "{meta:?}");
        }
    }

    #[test]
    fn weight_is_clamped_into_bounds() {
        assert_eq!(weight_from_meta(b"weight=0"), 1);
        assert_eq!(weight_from_meta(b"weight=64"), 64);
        assert_eq!(weight_from_meta(b"weight=65"), WEIGHT_MAX);
        assert_eq!(weight_from_meta(b"weight=99999999999999999999"), WEIGHT_MAX);
    }

    #[test]
    fn first_weight_pair_counts() {
        assert_eq!(weight_from_meta(b"weight=2;weight=9"), 2);
        assert_eq!(weight_from_meta(b"weight=x;weight=9"), WEIGHT_DEFAULT);
    }

    #[test]
    fn non_utf8_elsewhere_does_not_hide_the_weight() {
        assert_eq!(weight_from_meta(b"blob=\xff\xfe;weight=5"), 5);
    }

    #[test]
    fn clamp_keeps_weights_in_range() {
        assert_eq!(clamp_weight(0), 1);
        assert_eq!(clamp_weight(7), 7);
        assert_eq!(clamp_weight(u32::MAX), WEIGHT_MAX);
    }
}
