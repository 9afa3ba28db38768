//! Wire codec: a datagram filled to the pre-MTU-discovery size, and a 1000-member push-pull.

mod common;

use common::name;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quicswim_proto::protocol::codec::{
    datagram_overhead, decode_datagram, decode_stream, encode_datagram, encode_stream,
    encode_update, MemberUpdate, Message, StreamMessage, Update,
};
use quicswim_proto::protocol::State;

/// QUIC's datagram size before MTU discovery, the core's default fill.
const DATAGRAM_SIZE: usize = 1162;
const MEMBERS: usize = 1000;

/// A realistic mix: mostly Alive, some Suspect with an accuser, a few Dead.
fn update(i: usize) -> MemberUpdate {
    let (state, accuser) = match i % 10 {
        0 => (State::Suspect, Some(i + 1)),
        1 => (State::Dead, Some(i + 2)),
        _ => (State::Alive, None),
    };
    let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946));
    common::signed_update(i, addr, i as u64 % 7, state, accuser)
}

/// A Ping with as many pre-encoded updates as fit, as the core builds it.
fn full_datagram() -> (Message, usize, Vec<u8>) {
    let message = Message::Ping {
        seq: 123_456,
        target: name(999),
        suspected: None,
    };
    let budget = DATAGRAM_SIZE - datagram_overhead(&message, 200);
    let mut body = Vec::new();
    let mut count = 0;
    for i in 0.. {
        let bytes = encode_update(&Update::Member(update(i)));
        if body.len() + bytes.len() > budget {
            break;
        }
        body.extend_from_slice(&bytes);
        count += 1;
    }
    (message, count, body)
}

fn datagram(c: &mut Criterion) {
    let (message, count, body) = full_datagram();
    let bytes = encode_datagram(&message, count, &body);
    assert!(bytes.len() <= DATAGRAM_SIZE);
    assert_eq!(
        decode_datagram(&bytes).expect("decodes").updates.len(),
        count
    );

    let mut group = c.benchmark_group(format!("datagram-{count}-updates"));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| encode_datagram(black_box(&message), count, black_box(&body)))
    });
    group.bench_function("decode", |b| b.iter(|| decode_datagram(black_box(&bytes))));
    group.finish();

    // Done once per update when it is queued; each datagram then copies the bytes.
    let u = Update::Member(update(7));
    c.bench_function("update/encode", |b| b.iter(|| encode_update(black_box(&u))));
}

fn push_pull(c: &mut Criterion) {
    let message = StreamMessage::PushPull {
        digest: Vec::new(),
        join: false,
        sender: name(0),
        members: (0..MEMBERS).map(update).collect(),
        kv_digest: Vec::new(),
        events: Vec::new(),
        certificates: Vec::new(),
        revocation_ids: Vec::new(),
    };
    let bytes = encode_stream(&message);
    assert_eq!(decode_stream(&bytes).as_ref(), Ok(&message));

    let mut group = c.benchmark_group(format!("push-pull-{MEMBERS}-members"));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| b.iter(|| encode_stream(black_box(&message))));
    group.bench_function("decode", |b| b.iter(|| decode_stream(black_box(&bytes))));
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick(20, Duration::from_secs(2));
    targets = datagram, push_pull
}
criterion_main!(benches);
