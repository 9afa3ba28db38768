//! Consistent-hash ring: lookup and build costs at 1000 members with the default vnode count.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use quicswim_proto::protocol::NodeName;
use quicswim_proto::ring::Ring;

const MEMBERS: usize = 1000;

/// Distinct keys to cycle through, so lookups are not all served from one cache line.
const KEYS: usize = 4096;

fn members() -> Vec<(NodeName, u32)> {
    members_of(MEMBERS)
}

fn members_of(count: usize) -> Vec<(NodeName, u32)> {
    (0..count)
        .map(|i| {
            let name = common::name(i);
            (name, 1)
        })
        .collect()
}

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| format!("user:{i}:profile").into_bytes())
        .collect()
}

fn lookups(c: &mut Criterion) {
    let ring = Ring::build(members());
    let keys = keys();

    let mut i = 0;
    c.bench_function("owner/1000-members", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(ring.owner(black_box(&keys[i])))
        })
    });

    let mut i = 0;
    c.bench_function("replicas-3/1000-members", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(ring.replicas(black_box(&keys[i]), 3))
        })
    });
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("1000-members", |b| {
        b.iter_batched(
            members,
            |m| black_box(Ring::build(m)),
            BatchSize::LargeInput,
        )
    });
    // What a node does while a 128-node cluster starts: a ring of 112 grows by 16.
    let before = Ring::build(members_of(112));
    group.bench_function("128-members-from-112", |b| {
        b.iter_batched(
            || members_of(128),
            |m| black_box(before.with_members(m)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, lookups, build);
criterion_main!(benches);
