//! `quicswim_probe_rtt_seconds`: the core's probe round-trip counts as one Prometheus
//! histogram family, labelled by the path the Ack took.
//!
//! The core counts samples into fixed buckets ([`RTT_BOUNDS_MICROS`]) from the `now`s it is
//! given, so a scrape only copies counts; the family is encoded from that snapshot like every
//! other one here, with no metric object kept between scrapes.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::protocol::{RttHistogram, RTT_BOUNDS_MICROS};

/// Encodes both paths' histograms under one family.
pub(super) fn encode_probe_rtt(
    e: &mut DescriptorEncoder,
    direct: &RttHistogram,
    indirect: &RttHistogram,
) -> fmt::Result {
    let mut family = e.encode_descriptor(
        "probe_rtt_seconds",
        "Probe round trips: path=direct from the ping to the target's own ack; path=indirect \
         from the ping-reqs to the first ack relayed by another member or sent on a stream, \
         for probes whose direct ping got no ack in time.",
        None,
        MetricType::Histogram,
    )?;
    for (path, h) in [("direct", direct), ("indirect", indirect)] {
        let bounds = RTT_BOUNDS_MICROS
            .iter()
            .map(|&micros| micros as f64 / 1e6)
            .chain([f64::INFINITY]);
        // Per bucket, not cumulative: the encoder adds them up.
        let buckets: Vec<(f64, u64)> = bounds.zip(h.counts.iter().copied()).collect();
        family
            .encode_family(&[("path", path)])?
            .encode_histogram::<NoLabelSet>(h.sum_micros as f64 / 1e6, h.count(), &buckets, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_are_cumulative_in_seconds_with_sum_and_count() {
        let mut direct = RttHistogram::default();
        for ms in [1, 3, 3, 700] {
            direct.observe(Duration::from_millis(ms));
        }
        let mut text = String::new();
        {
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(Both(direct, RttHistogram::default())));
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        }
        let line = |l: &str| assert!(text.lines().any(|x| x == l), "no {l:?} in\n{text}");
        line("# TYPE probe_rtt_seconds histogram");
        line("probe_rtt_seconds_count{path=\"direct\"} 4");
        line("probe_rtt_seconds_sum{path=\"direct\"} 0.707");
        line("probe_rtt_seconds_bucket{path=\"direct\",le=\"0.001\"} 1");
        line("probe_rtt_seconds_bucket{path=\"direct\",le=\"0.005\"} 3");
        line("probe_rtt_seconds_bucket{path=\"direct\",le=\"0.5\"} 3");
        line("probe_rtt_seconds_bucket{path=\"direct\",le=\"1\"} 4");
        line("probe_rtt_seconds_bucket{path=\"direct\",le=\"+Inf\"} 4");
        line("probe_rtt_seconds_count{path=\"indirect\"} 0");
    }

    #[derive(Debug)]
    struct Both(RttHistogram, RttHistogram);

    impl prometheus_client::collector::Collector for Both {
        fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
            encode_probe_rtt(&mut e, &self.0, &self.1)
        }
    }
}
