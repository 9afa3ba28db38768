//! The ring's hash: xxHash64 (XXH64), from the `xxhash-rust` crate.
//!
//! Key placement must be identical on every node, every platform and every release, so the
//! hash cannot be std's default hasher (its algorithm is unspecified and may change between
//! Rust releases) nor anything keyed at random. XXH64 is fully specified (Yann Collet's
//! `xxhash_spec.md`), reads its input as little-endian words whatever the host, passes SMHasher,
//! and hashes short keys in a few nanoseconds. The known-answer tests below pin the hash to
//! published values, so a change of crate, version or feature that altered it would fail the
//! tests rather than silently move every key in a running cluster.

/// XXH64 of `input` with `seed`: the same value on every platform and in every release of this
/// crate (pinned by known-answer tests).
pub fn xxh64(input: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(input, seed)
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
