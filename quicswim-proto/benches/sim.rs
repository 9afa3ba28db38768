//! The simulator: 200 lan-preset nodes for 10 virtual seconds per iteration (joining
//! included), reported as simulator steps (messages delivered and timers fired) per second.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quicswim_proto::sim::{SimConfig, Simulation};

const NODES: usize = 200;

fn config() -> SimConfig {
    SimConfig {
        duration: Duration::from_secs(10),
        updates: 0,
        ..SimConfig::new(NODES, 1)
    }
}

fn steps(c: &mut Criterion) {
    // Runs are deterministic, so one run gives every iteration's step count.
    let steps = Simulation::new(config(), Instant::now()).run(|_| {}).steps;
    let mut group = c.benchmark_group(format!("sim/{NODES}-nodes-10s"));
    group.throughput(Throughput::Elements(steps));
    group.bench_function("run", |b| {
        b.iter(|| Simulation::new(config(), Instant::now()).run(|_| {}))
    });
    group.finish();
    println!("sim/{NODES}-nodes-10s: {steps} steps per iteration (elements = steps)");
}

criterion_group! {
    name = benches;
    config = common::quick(10, Duration::from_secs(3));
    targets = steps
}
criterion_main!(benches);
