//! A walk over the positions `0..len` of a table that, while the length stays the same,
//! reaches every position once before any twice, in an order drawn at random, with no memory
//! beyond a few numbers.

use rand::Rng;

/// Positions of a table in a cyclic order: from a random start, steps of a random stride
/// coprime with the length, so `len` successive positions are all distinct and the walk
/// then repeats them in the same order.
///
/// Used where successive random picks should not repeat a member before every other has had
/// its turn (see `Swim::gossip`). A shuffled list would do the same at the cost of a name per
/// member per node, which a 10,000-node simulation cannot afford.
#[derive(Clone, Debug, Default)]
pub struct Cycle {
    /// The table's length the stride was chosen for.
    len: u64,
    /// The position the next step returns.
    at: u64,
    stride: u64,
}

impl Cycle {
    /// The next position below `len` (the table's length now), or `None` for an empty
    /// table. When the length changed since the last step the walk goes on from where it
    /// was, keeping its stride if that still reaches every position.
    pub fn next(&mut self, rng: &mut impl Rng, len: usize) -> Option<usize> {
        let len = len as u64;
        if len == 0 {
            return None;
        }
        if len != self.len {
            self.at = if self.len == 0 {
                rng.random_range(0..len)
            } else {
                self.at % len
            };
            if gcd(self.stride, len) != 1 {
                self.stride = loop {
                    let s = rng.random_range(1..len);
                    if gcd(s, len) == 1 {
                        break s;
                    }
                };
            }
            self.len = len;
        }
        let at = self.at;
        self.at = (self.at + self.stride) % len;
        Some(usize::try_from(at).expect("a position below a usize length fits a usize"))
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    /// `n` steps at a fixed length.
    fn walk(cycle: &mut Cycle, rng: &mut SmallRng, len: usize, n: usize) -> Vec<usize> {
        (0..n).map(|_| cycle.next(rng, len).unwrap()).collect()
    }

    #[test]
    fn any_len_successive_positions_are_distinct() {
        let mut rng = SmallRng::seed_from_u64(7);
        for len in [1usize, 2, 3, 10, 12, 97, 128, 1000] {
            let mut cycle = Cycle::default();
            let steps = walk(&mut cycle, &mut rng, len, 3 * len);
            for window in steps.windows(len) {
                let mut seen = vec![false; len];
                for &p in window {
                    assert!(!seen[p], "len {len}: {p} twice in {window:?}");
                    seen[p] = true;
                }
            }
        }
    }

    #[test]
    fn walks_differ_between_nodes() {
        let mut rng = SmallRng::seed_from_u64(3);
        let first = walk(&mut Cycle::default(), &mut rng, 50, 50);
        let others: Vec<Vec<usize>> = (0..5)
            .map(|_| walk(&mut Cycle::default(), &mut rng, 50, 50))
            .collect();
        assert!(others.iter().all(|w| *w != first), "{first:?} {others:?}");
    }

    #[test]
    fn strides_are_drawn_at_random() {
        let mut rng = SmallRng::seed_from_u64(5);
        let strides: std::collections::HashSet<usize> = (0..20)
            .map(|_| {
                let w = walk(&mut Cycle::default(), &mut rng, 50, 2);
                (w[1] + 50 - w[0]) % 50
            })
            .collect();
        assert!(strides.len() > 3, "{strides:?}");
    }

    #[test]
    fn a_stride_that_still_reaches_every_position_is_kept() {
        let mut rng = SmallRng::seed_from_u64(9);
        let mut cycle = Cycle::default();
        let w = walk(&mut cycle, &mut rng, 10, 2);
        let stride = (w[1] + 10 - w[0]) % 10;
        // 11 is prime: the stride drawn for 10 reaches every position of 11 too.
        let w = walk(&mut cycle, &mut rng, 11, 2);
        assert_eq!((w[1] + 11 - w[0]) % 11, stride);
    }

    #[test]
    fn a_table_that_changed_length_is_walked_in_full() {
        let mut rng = SmallRng::seed_from_u64(2);
        for (before, after) in [(20, 5), (4, 9), (6, 12), (12, 6), (1, 2)] {
            let mut cycle = Cycle::default();
            walk(&mut cycle, &mut rng, before, before / 2 + 1);
            let mut steps = walk(&mut cycle, &mut rng, after, after);
            steps.sort_unstable();
            assert_eq!(steps, (0..after).collect::<Vec<_>>(), "{before} -> {after}");
        }
    }

    #[test]
    fn an_empty_table_has_no_position() {
        let mut rng = SmallRng::seed_from_u64(0);
        assert_eq!(Cycle::default().next(&mut rng, 0), None);
    }
}
