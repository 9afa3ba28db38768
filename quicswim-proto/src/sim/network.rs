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
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(1),
            latency_exp_mean: Duration::from_millis(2),
            loss: 0.0,
            duplication: 0.0,
        }
    }
}

/// The network's state: which side of a partition each node is on.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    /// `Some(side)` per node while a partition is in force.
    sides: Option<Vec<bool>>,
}

impl Network {
    /// A fully connected network.
    pub fn new(config: NetworkConfig) -> Self {
        Self {
            config,
            sides: None,
        }
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

    /// One trip's delay: the minimum plus an exponential tail.
    pub fn delay(&self, rng: &mut SmallRng) -> Duration {
        let mean = self.config.latency_exp_mean.as_secs_f64();
        // Inverse transform; 1 - u is in (0, 1] so the log is finite.
        let tail = -mean * (1.0 - rng.random::<f64>()).ln();
        self.config.latency_min + Duration::from_secs_f64(tail)
    }

    /// A stream message's delay over `trips` one-way trips. Streams are reliable, but not
    /// free under loss: each lost packet costs QUIC a probe timeout before it is resent
    /// (`rtt + 4·rttvar + max_ack_delay`, doubling on each consecutive loss).
    pub fn stream_delay(&self, rng: &mut SmallRng, trips: u32) -> Duration {
        let mut delay = Duration::ZERO;
        let rtt = (self.config.latency_min + self.config.latency_exp_mean) * 2;
        let pto = rtt + rtt * 2 + Duration::from_millis(25);
        for _ in 0..trips {
            delay += self.delay(rng);
            let mut backoff = pto;
            for _ in 0..8 {
                if self.config.loss <= 0.0 || rng.random::<f64>() >= self.config.loss {
                    break;
                }
                delay += backoff;
                backoff *= 2;
            }
        }
        delay
    }

    /// How many copies of a datagram arrive: 0 (lost), 1, or 2 (duplicated).
    pub fn datagram_copies(&self, rng: &mut SmallRng) -> usize {
        if self.config.loss > 0.0 && rng.random::<f64>() < self.config.loss {
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
            .filter(|_| net.datagram_copies(&mut rng) == 0)
            .count();
        assert!((9_000..11_000).contains(&lost), "{lost}");
    }

    #[test]
    fn delay_is_at_least_the_minimum_with_the_configured_mean() {
        let net = Network::new(NetworkConfig::default());
        let mut rng = SmallRng::seed_from_u64(2);
        let delays: Vec<f64> = (0..50_000)
            .map(|_| net.delay(&mut rng).as_secs_f64())
            .collect();
        assert!(delays.iter().all(|d| *d >= 0.001));
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!((mean - 0.003).abs() < 0.0002, "{mean}");
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
