//! The simulated network: latency, loss, duplication and partitions.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;

/// How the simulated network behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Every message takes at least this long (default 1 ms).
    pub latency_min: Duration,
    /// Mean of the exponential delay added on top (default 2 ms).
    pub latency_exp_mean: Duration,
    /// Probability a datagram is lost, `0.0..1.0` (streams are reliable).
    pub loss: f64,
    /// Probability a datagram arrives twice.
    pub duplication: f64,
    /// When above `latency_min`, each link's own minimum is drawn once, uniformly from
    /// `latency_min..latency_link_max` (a stable hash of the pair and the run's seed), so
    /// some peers are near and some far, as on a real network; the exponential tail comes on
    /// top. Zero (the default): every link's minimum is `latency_min`.
    pub latency_link_max: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(1),
            latency_exp_mean: Duration::from_millis(2),
            loss: 0.0,
            duplication: 0.0,
            latency_link_max: Duration::ZERO,
        }
    }
}

/// The network's state: which side of a partition each node is on.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    /// `Some(side)` per node while a partition is in force.
    sides: Option<Vec<bool>>,
    /// Seeds the per-link minimum latencies.
    link_seed: u64,
}

impl Network {
    /// A fully connected network.
    pub fn new(config: NetworkConfig) -> Self {
        Self::with_seed(config, 0)
    }

    /// A fully connected network whose per-link latencies come from `seed`.
    pub fn with_seed(config: NetworkConfig, seed: u64) -> Self {
        Self {
            config,
            sides: None,
            link_seed: seed,
        }
    }

    /// The network's own datagram loss rate.
    pub fn loss(&self) -> f64 {
        self.config.loss
    }

    /// The minimum latency of the link between `a` and `b` (the same both ways).
    pub fn link_latency(&self, a: usize, b: usize) -> Duration {
        let (lo, hi) = (self.config.latency_min, self.config.latency_link_max);
        if hi <= lo {
            return lo;
        }
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&(a.min(b) as u64).to_le_bytes());
        key[8..].copy_from_slice(&(a.max(b) as u64).to_le_bytes());
        let h = crate::hash::xxh64(&key, self.link_seed);
        // 53 bits of the hash as a uniform fraction in [0, 1).
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo).mul_f64(u)
    }

    /// Splits the nodes: `true` on one side, `false` on the other.
    pub fn partition(&mut self, sides: Vec<bool>) {
        self.sides = Some(sides);
    }

    /// Joins the sides again.
    pub fn heal(&mut self) {
        self.sides = None;
    }

    /// Whether `a` and `b` can reach each other now.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.sides.as_ref().is_none_or(|s| s[a] == s[b])
    }

    /// Whether a partition is in force.
    pub fn is_partitioned(&self) -> bool {
        self.sides.is_some()
    }

    /// One trip's delay from `from` to `to`: the link's minimum plus an exponential tail.
    pub fn delay(&self, rng: &mut SmallRng, from: usize, to: usize) -> Duration {
        let mean = self.config.latency_exp_mean.as_secs_f64();
        // Inverse transform; 1 - u is in (0, 1] so the log is finite.
        let tail = -mean * (1.0 - rng.random::<f64>()).ln();
        self.link_latency(from, to) + Duration::from_secs_f64(tail)
    }

    /// A stream message's delay over `trips` one-way trips from `from` to `to` at packet
    /// loss `loss`. Streams are reliable, but not free under loss: each lost packet costs
    /// QUIC a probe timeout before it is resent (`rtt + 4·rttvar + max_ack_delay`, doubling
    /// on each consecutive loss). `None` when a packet is lost eight times running: by then
    /// (about 11 s of backoff on a LAN) the connection is as good as gone, and with a link
    /// that delivers nothing at all it would never arrive.
    pub fn stream_delay(
        &self,
        rng: &mut SmallRng,
        trips: u32,
        loss: f64,
        from: usize,
        to: usize,
    ) -> Option<Duration> {
        let mut delay = Duration::ZERO;
        let rtt = (self.link_latency(from, to) + self.config.latency_exp_mean) * 2;
        let pto = rtt + rtt * 2 + Duration::from_millis(25);
        for _ in 0..trips {
            delay += self.delay(rng, from, to);
            let mut backoff = pto;
            let mut delivered = false;
            for _ in 0..8 {
                if loss <= 0.0 || rng.random::<f64>() >= loss {
                    delivered = true;
                    break;
                }
                delay += backoff;
                backoff *= 2;
            }
            if !delivered {
                return None;
            }
        }
        Some(delay)
    }

    /// How many copies of a datagram arrive at loss `loss`: 0 (lost), 1, or 2 (duplicated).
    pub fn datagram_copies(&self, rng: &mut SmallRng, loss: f64) -> usize {
        if loss > 0.0 && rng.random::<f64>() < loss {
            return 0;
        }
        if self.config.duplication > 0.0 && rng.random::<f64>() < self.config.duplication {
            return 2;
        }
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn loss_rate_is_close_to_configured() {
        let net = Network::new(NetworkConfig {
            loss: 0.1,
            ..NetworkConfig::default()
        });
        let mut rng = SmallRng::seed_from_u64(1);
        let lost = (0..100_000)
            .filter(|_| net.datagram_copies(&mut rng, 0.1) == 0)
            .count();
        assert!((9_000..11_000).contains(&lost), "{lost}");
    }

    #[test]
    fn delay_is_at_least_the_minimum_with_the_configured_mean() {
        let net = Network::new(NetworkConfig::default());
        let mut rng = SmallRng::seed_from_u64(2);
        let delays: Vec<f64> = (0..50_000)
            .map(|_| net.delay(&mut rng, 0, 1).as_secs_f64())
            .collect();
        assert!(delays.iter().all(|d| *d >= 0.001));
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!((mean - 0.003).abs() < 0.0002, "{mean}");
    }

    #[test]
    fn link_latency_is_stable_per_pair_and_within_range() {
        let net = Network::with_seed(
            NetworkConfig {
                latency_link_max: Duration::from_millis(20),
                ..NetworkConfig::default()
            },
            3,
        );
        let all: Vec<Duration> = (0..200).map(|b| net.link_latency(7, b)).collect();
        assert!(all
            .iter()
            .all(|d| *d >= Duration::from_millis(1) && *d < Duration::from_millis(20)));
        assert_eq!(net.link_latency(7, 9), net.link_latency(9, 7));
        let spread = all
            .iter()
            .max()
            .unwrap()
            .saturating_sub(*all.iter().min().unwrap());
        assert!(spread > Duration::from_millis(15), "{spread:?}");
    }

    #[test]
    fn stream_over_a_dead_link_never_arrives() {
        let net = Network::new(NetworkConfig::default());
        let mut rng = SmallRng::seed_from_u64(4);
        assert_eq!(net.stream_delay(&mut rng, 2, 1.0, 0, 1), None);
        assert!(net.stream_delay(&mut rng, 2, 0.0, 0, 1).is_some());
    }

    #[test]
    fn partition_separates_sides_until_healed() {
        let mut net = Network::new(NetworkConfig::default());
        net.partition(vec![true, true, false]);
        assert!(net.connected(0, 1));
        assert!(!net.connected(0, 2));
        net.heal();
        assert!(net.connected(0, 2));
    }
}
