//! Percentiles and share-over-time curves.

/// The nearest-rank `p` quantile (0 < p <= 1) of `samples`, where `None` stands for
/// "never happened" and sorts above every value. `None` when the rank lands on one of those,
/// or when there are no samples.
pub(crate) fn quantile(samples: &[Option<f64>], p: f64) -> Option<f64> {
    let mut values: Vec<f64> = samples.iter().flatten().copied().collect();
    if samples.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = nearest_rank(samples.len(), p);
    values.get(rank).copied()
}

/// Zero-based index of the nearest-rank `p` quantile among `n` sorted samples.
pub(crate) fn nearest_rank(n: usize, p: f64) -> usize {
    let rank = (p.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    rank.clamp(1, n.max(1)) - 1
}

/// The same over integer samples already sorted, `missing` more standing above them all.
pub(crate) fn quantile_sorted_u32(sorted: &[u32], missing: usize, p: f64) -> Option<u32> {
    let n = sorted.len() + missing;
    if n == 0 {
        return None;
    }
    sorted.get(nearest_rank(n, p)).copied()
}

/// The share of `total` that had happened by each time in `times` (seconds; `None`: never),
/// as the corner points of a step curve starting at (0, 0).
pub(crate) fn share_curve(times: &[Option<f64>], total: usize) -> Vec<(f64, f64)> {
    let mut at: Vec<f64> = times.iter().flatten().copied().collect();
    at.sort_by(f64::total_cmp);
    let total = total.max(1) as f64;
    let mut points = vec![(0.0, 0.0)];
    for (k, t) in at.iter().enumerate() {
        points.push((*t, k as f64 / total));
        points.push((*t, (k + 1) as f64 / total));
    }
    points
}

/// The mean of several step curves (each a share over time), sampled at `steps + 1` even
/// times from 0 to `until`.
pub(crate) fn mean_curve(curves: &[Vec<(f64, f64)>], until: f64, steps: usize) -> Vec<(f64, f64)> {
    if curves.is_empty() || steps == 0 {
        return Vec::new();
    }
    (0..=steps)
        .map(|s| {
            let t = until * s as f64 / steps as f64;
            let sum: f64 = curves.iter().map(|c| value_at(c, t)).sum();
            (t, sum / curves.len() as f64)
        })
        .collect()
}

/// The value of a step curve (as [`share_curve`] makes) at time `t`.
fn value_at(curve: &[(f64, f64)], t: f64) -> f64 {
    curve
        .iter()
        .take_while(|(x, _)| *x <= t)
        .last()
        .map_or(0.0, |(_, y)| *y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank_and_never_happened_sorts_last() {
        let s: Vec<Option<f64>> = (1..=10).map(|i| Some(f64::from(i))).collect();
        assert_eq!(quantile(&s, 0.5), Some(5.0));
        assert_eq!(quantile(&s, 0.9), Some(9.0));
        assert_eq!(quantile(&s, 1.0), Some(10.0));
        let mut with_missing = s.clone();
        with_missing[0] = None;
        assert_eq!(quantile(&with_missing, 0.5), Some(6.0));
        assert_eq!(quantile(&with_missing, 1.0), None);
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile_sorted_u32(&[1, 2, 3], 1, 0.75), Some(3));
        assert_eq!(quantile_sorted_u32(&[1, 2, 3], 1, 0.99), None);
    }

    #[test]
    fn share_curve_steps_up_at_each_time() {
        let c = share_curve(&[Some(2.0), None, Some(1.0)], 4);
        assert_eq!(
            c,
            vec![(0.0, 0.0), (1.0, 0.0), (1.0, 0.25), (2.0, 0.25), (2.0, 0.5)]
        );
        let mean = mean_curve(&[c.clone(), share_curve(&[Some(0.5)], 1)], 2.0, 2);
        assert_eq!(mean, vec![(0.0, 0.0), (1.0, 0.625), (2.0, 0.75)]);
    }
}
