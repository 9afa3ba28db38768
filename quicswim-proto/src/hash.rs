//! The ring's hash: xxHash64 (XXH64), written from its specification.
//!
//! Key placement must be identical on every node, every platform and every release, so the
//! hash cannot be std's default hasher (its algorithm is unspecified and may change between
//! Rust releases) nor anything keyed at random. XXH64 is fully specified (Yann Collet's `xxhash_spec.md`), reads
//! its input as little-endian words whatever the host, passes SMHasher, and hashes short keys in
//! a few nanoseconds. The known-answer tests below pin the implementation to published values,
//! so any change to it, deliberate or not, fails the build's tests rather than silently moving
//! every key in a running cluster.
//!
//! ```text
//!   input < 32 bytes:   acc = seed + P5
//!   input >= 32 bytes:  four lanes v1..v4 absorb 32-byte stripes, then merge into acc
//!   acc += len; fold the tail in 8-, 4- and 1-byte steps; avalanche
//! ```

const PRIME_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME_5: u64 = 0x27D4_EB2F_1656_67C5;

/// Bytes consumed per stripe by the four-lane loop.
const STRIPE_LEN: usize = 32;

/// XXH64 of `input` with `seed`: the same value on every platform and in every release of this
/// crate (pinned by known-answer tests).
pub fn xxh64(input: &[u8], seed: u64) -> u64 {
    let mut rest = input;
    let mut acc = if input.len() >= STRIPE_LEN {
        let mut lanes = [
            seed.wrapping_add(PRIME_1).wrapping_add(PRIME_2),
            seed.wrapping_add(PRIME_2),
            seed,
            seed.wrapping_sub(PRIME_1),
        ];
        while rest.len() >= STRIPE_LEN {
            let (stripe, tail) = rest.split_at(STRIPE_LEN);
            for (lane, word) in lanes.iter_mut().zip(stripe.chunks_exact(8)) {
                *lane = round(*lane, read_u64(word));
            }
            rest = tail;
        }
        let [v1, v2, v3, v4] = lanes;
        let mut acc = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        for lane in lanes {
            acc = merge_lane(acc, lane);
        }
        acc
    } else {
        seed.wrapping_add(PRIME_5)
    };

    // usize -> u64 is lossless on every target Rust supports.
    acc = acc.wrapping_add(input.len() as u64);

    while rest.len() >= 8 {
        let (word, tail) = rest.split_at(8);
        acc ^= round(0, read_u64(word));
        acc = acc
            .rotate_left(27)
            .wrapping_mul(PRIME_1)
            .wrapping_add(PRIME_4);
        rest = tail;
    }
    if rest.len() >= 4 {
        let (word, tail) = rest.split_at(4);
        acc ^= u64::from(read_u32(word)).wrapping_mul(PRIME_1);
        acc = acc
            .rotate_left(23)
            .wrapping_mul(PRIME_2)
            .wrapping_add(PRIME_3);
        rest = tail;
    }
    for &byte in rest {
        acc ^= u64::from(byte).wrapping_mul(PRIME_5);
        acc = acc.rotate_left(11).wrapping_mul(PRIME_1);
    }
    avalanche(acc)
}

/// Absorbs one 8-byte word into a lane.
fn round(lane: u64, word: u64) -> u64 {
    lane.wrapping_add(word.wrapping_mul(PRIME_2))
        .rotate_left(31)
        .wrapping_mul(PRIME_1)
}

/// Folds a finished lane into the accumulator.
fn merge_lane(acc: u64, lane: u64) -> u64 {
    (acc ^ round(0, lane))
        .wrapping_mul(PRIME_1)
        .wrapping_add(PRIME_4)
}

/// Final mix so that every input bit affects every output bit.
fn avalanche(mut acc: u64) -> u64 {
    acc ^= acc >> 33;
    acc = acc.wrapping_mul(PRIME_2);
    acc ^= acc >> 29;
    acc = acc.wrapping_mul(PRIME_3);
    acc ^ (acc >> 32)
}

fn read_u64(word: &[u8]) -> u64 {
    let bytes: [u8; 8] = word.try_into().expect("callers pass exactly 8 bytes");
    u64::from_le_bytes(bytes)
}

fn read_u32(word: &[u8]) -> u32 {
    let bytes: [u8; 4] = word.try_into().expect("callers pass exactly 4 bytes");
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENTENCE: &[u8] = b"Nobody inspects the spammish repetition";

    fn sequence_256() -> Vec<u8> {
        (0..=255u8).collect()
    }

    #[test]
    fn matches_published_values_with_seed_zero() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(xxh64(b"ABC", 0), 0xE66A_E735_4FCF_EE98);
        assert_eq!(xxh64(b"xxhash", 0), 0x32DD_3895_2C4B_C720);
        // 39 bytes: one 32-byte stripe, then a 4-byte word and three single bytes.
        assert_eq!(xxh64(SENTENCE, 0), 0xFBCE_A83C_8A37_8BF1);
        assert_eq!(xxh64(&sequence_256(), 0), 0x1FAC_BE84_06CD_904B);
    }

    #[test]
    fn matches_published_values_with_a_seed() {
        let seed = 0x9E37_79B1;
        assert_eq!(xxh64(b"", seed), 0xAC75_FDA2_929B_17EF);
        assert_eq!(xxh64(b"abc", seed), 0x1318_DF30_094A_85FD);
        assert_eq!(xxh64(SENTENCE, seed), 0x56DB_22DD_5B05_1147);
        assert_eq!(xxh64(&sequence_256(), seed), 0xD481_95F4_5908_996C);
    }

    #[test]
    fn every_tail_length_hashes_differently() {
        // Lengths 0..=80 walk every branch: no stripe / stripes, and each 8/4/1-byte tail mix.
        let data: Vec<u8> = (0..80u8).collect();
        let mut seen = std::collections::BTreeSet::new();
        for len in 0..=data.len() {
            assert!(
                seen.insert(xxh64(&data[..len], 0)),
                "collision at length {len}"
            );
        }
    }
}
