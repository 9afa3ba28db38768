//! Helpers shared by the core's criterion benches.
#![allow(dead_code)] // each bench uses its own subset

use std::time::Duration;

use criterion::Criterion;
use quicswim_proto::protocol::NodeName;

/// `node-0000`, `node-0001`, ...: the names every bench gives its members.
pub fn name(i: usize) -> NodeName {
    NodeName::new(format!("node-{i:04}")).expect("a DNS label")
}

/// Short runs: these benches compare changes on one machine, not publish absolute figures.
pub fn quick(sample_size: usize, measurement_time: Duration) -> Criterion {
    Criterion::default()
        .sample_size(sample_size)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(measurement_time)
}
