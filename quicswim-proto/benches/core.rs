//! The protocol core at 1000 members: one Ping carrying ~30 piggybacked updates, and the
//! timer-driven probe cycle; and the key/value store answering a key/value round.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod common;

use common::name;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use quicswim_proto::protocol::codec::{
    decode_datagram, encode_datagram, encode_stream, encode_update, MemberUpdate, Message,
    StreamMessage, Update,
};
use quicswim_proto::protocol::kv::{KvStore, OwnerDelta};
use quicswim_proto::protocol::{KvLimits, State, Swim, TransmitKind, ValidConfig};

const MEMBERS: usize = 1000;
/// About what fits in a 1162-byte datagram next to a Ping.
const UPDATES: usize = 30;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7946))
}

fn alive(i: usize, incarnation: u64) -> MemberUpdate {
    common::signed_update(i, addr(i), incarnation, State::Alive, None)
}

fn datagram(message: &Message, updates: &[MemberUpdate]) -> Vec<u8> {
    let body: Vec<u8> = updates
        .iter()
        .flat_map(|u| encode_update(&Update::Member(u.clone())))
        .collect();
    encode_datagram(message, updates.len(), &body)
}

/// Drains the core's output, answering its Pings at once so that nobody is suspected and
/// the table stays as it is.
fn drain_and_ack(swim: &mut Swim, now: Instant) {
    while let Some(t) = swim.poll_transmit() {
        if t.kind != TransmitKind::Datagram {
            continue;
        }
        if let Ok(p) = decode_datagram(&t.payload) {
            if let (Message::Ping { seq, target, .. }, Some(_)) = (p.message, &t.to.name) {
                let ack = datagram(&Message::Ack { seq }, &[]);
                swim.handle_datagram(now, &target, t.to.addr, &ack)
                    .expect("ack is accepted");
            }
        }
    }
    while swim.poll_event().is_some() {}
}

/// Node 0 after joining a 1000-member cluster and two virtual minutes of quiet, so the
/// piggyback queue from the join has drained.
fn steady_core() -> (Swim, Instant) {
    let t0 = Instant::now();
    let mut swim = Swim::new(
        name(0),
        addr(0),
        Vec::new(),
        ValidConfig::default(),
        1,
        t0,
        common::keyring(0, MEMBERS),
    )
    .expect("empty metadata");
    swim.join(t0, &[addr(1)]);
    while swim.poll_transmit().is_some() {}
    let reply = StreamMessage::PushPullReply {
        wants: Vec::new(),
        members: (1..=MEMBERS).map(|i| alive(i, 0)).collect(),
        kv_delta: Vec::new(),
        kv_digest: Vec::new(),
        events: Vec::new(),
        certificates: Vec::new(),
        revocations: Vec::new(),
        revocation_ids: Vec::new(),
    };
    swim.handle_stream_reply(t0, &name(1), &encode_stream(&reply))
        .expect("reply is accepted");
    let mut now = t0;
    while now < t0 + Duration::from_secs(120) {
        now = swim.poll_timeout().expect("timers are set");
        swim.handle_timeout(now);
        drain_and_ack(&mut swim, now);
    }
    assert_eq!(swim.alive_count(), MEMBERS + 1);
    (swim, now)
}

fn handle_datagram(c: &mut Criterion) {
    let (mut swim, now) = steady_core();
    let from = name(1);
    let ping = Message::Ping {
        seq: 1,
        target: name(0),
        suspected: None,
    };

    let mut group = c.benchmark_group(format!("handle_datagram/{MEMBERS}-members"));
    // The usual case: the piggybacked claims are known already.
    let known = datagram(
        &ping,
        &(2..2 + UPDATES).map(|i| alive(i, 0)).collect::<Vec<_>>(),
    );
    group.bench_function(format!("ping-{UPDATES}-known-updates"), |b| {
        b.iter(|| {
            swim.handle_datagram(now, &from, addr(1), black_box(&known))
                .expect("accepted");
            black_box(swim.poll_transmit())
        })
    });
    // Every claim is news: each member gets a new incarnation, an event and a re-gossip.
    let mut round: u64 = 0;
    group.bench_function(format!("ping-{UPDATES}-new-updates"), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let first = (round as usize * UPDATES) % (MEMBERS - UPDATES) + 1;
                let incarnation = 1 + round * UPDATES as u64 / MEMBERS as u64;
                let updates: Vec<MemberUpdate> = (first..first + UPDATES)
                    .map(|i| alive(i, incarnation))
                    .collect();
                let bytes = datagram(&ping, &updates);
                let started = Instant::now();
                swim.handle_datagram(now, &from, addr(1), &bytes)
                    .expect("accepted");
                black_box(swim.poll_transmit());
                while swim.poll_event().is_some() {}
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

fn probe_cycle(c: &mut Criterion) {
    let (mut swim, mut now) = steady_core();
    let period = swim.config().probe_interval;
    let probes_before = swim.stats().probes_sent;
    let mut group = c.benchmark_group(format!("handle_timeout/{MEMBERS}-members"));
    // One protocol period of virtual time: a probe and its Ack, and now and then a push-pull
    // or tombstone sweep (with nothing queued there are no gossip rounds to wake for).
    group.bench_function("probe-period", |b| {
        b.iter(|| {
            let end = now + period;
            while let Some(at) = swim.poll_timeout().filter(|&at| at <= end) {
                swim.handle_timeout(at);
                drain_and_ack(&mut swim, at);
            }
            now = end;
        })
    });
    group.finish();
    if swim.stats().probes_sent == probes_before {
        return; // filtered out: `cargo bench -- <filter>` ran other benches only
    }
    let s = swim.stats();
    assert_eq!(s.probes_failed, 0, "every probe was answered");
    assert_eq!(swim.alive_count(), MEMBERS + 1);
}

/// A key/value round's work at the bench's 5,000 writes/s over 32 owners: a store of 32
/// owners x 1,500 keys (10 s of writes) answering a digest that lags by 6 writes per owner
/// (one 200 ms round), then applying that delta on the lagging side.
fn kv_round(c: &mut Criterion) {
    const OWNERS: usize = 32;
    const KEYS: u64 = 1_500;
    const LAG: u64 = 6;
    let t = Instant::now();
    let mut ahead = KvStore::new(KvLimits::default());
    let mut behind = KvStore::new(KvLimits::default());
    for o in 0..OWNERS {
        for v in 1..=KEYS {
            let e = common::signed_entry(o, format!("kv-{v}"), v, Some(vec![7; 16]));
            ahead.apply(t, &e).expect("within limits");
            if v <= KEYS - LAG {
                behind.apply(t, &e).expect("within limits");
            }
        }
    }
    let digest = behind.digest();
    let delta = ahead.delta_for(&digest, 1 << 20);
    let entries: usize = delta.iter().map(|d| d.entries.len()).sum();
    assert_eq!(entries, OWNERS * LAG as usize, "the delta is the lag");
    let mut group = c.benchmark_group(format!("kv/{OWNERS}-owners-{KEYS}-keys"));
    group.bench_function("digest", |b| b.iter(|| black_box(&behind).digest()));
    group.bench_function("delta-for-a-round", |b| {
        b.iter(|| ahead.delta_for(black_box(&digest), 1 << 20))
    });
    group.bench_function("wants", |b| {
        b.iter(|| behind.wants(black_box(&ahead.digest())))
    });
    // Each iteration applies the next round: LAG newer versions per owner, overwriting old
    // keys, so the store keeps its size.
    let mut next = KEYS + 1;
    group.bench_function("apply-a-round", |b| {
        b.iter_batched(
            || {
                let round = round_delta(OWNERS, next, LAG, KEYS);
                next += LAG;
                round
            },
            |d| behind.apply_delta(t, d),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Versions `from..from+lag` of every owner, each overwriting key `version % keys`.
fn round_delta(owners: usize, from: u64, lag: u64, keys: u64) -> Vec<OwnerDelta> {
    (0..owners)
        .map(|o| {
            OwnerDelta::new(
                false,
                0,
                (from..from + lag)
                    .map(|v| {
                        common::signed_entry(
                            o,
                            format!("kv-{}", v % keys + 1),
                            v,
                            Some(vec![7; 16]),
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

criterion_group! {
    name = benches;
    config = common::quick(20, Duration::from_secs(2));
    targets = handle_datagram, probe_cycle, kv_round
}
criterion_main!(benches);
