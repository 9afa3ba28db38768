//! What signed records (#14) cost: signing one member record, verifying one, and verifying a
//! whole gossip datagram's worth (8 records by 8 different members), for Ed25519 and ECDSA
//! P-256 node keys, through the node's real keyring (`CertKeyring`); sealing a batch of 64
//! key/value entries, and checking the delta that carries it; and learning a member's
//! certificate under an Ed25519 CA and a P-256 one.
//!
//! `cargo bench -p quicswim --bench signing`; figures in BENCHMARKS.md, "Signing cost".
//!
//! Every bench runs twice: `signing/...` in wall time (criterion's default) and
//! `signing-cpu/...` in the bench thread's CPU time, which other processes sharing the cores
//! do not inflate (the machine the figures come from is shared by concurrent builds).

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use quicswim::protocol::kv::{proof, KvEntry, OwnerDelta};
use quicswim::protocol::signing::{signed_bytes, RecordKind};
use quicswim::protocol::{Keyring, NodeName, Signature, Verdict};
use quicswim::tls::{CertAuthority, CertKeyring, Identity, NodeKeyType};

/// Records in one gossip datagram: about what fits beside a probe in 1,162 bytes once each
/// carries a 64-byte signature.
const RECORDS_PER_DATAGRAM: usize = 8;

/// Key/value entries in one full batch (`proof::BATCH_LEAVES_MAX`).
const KV_BATCH: usize = 64;

fn keyring(ca: &CertAuthority, name: &NodeName, key_type: NodeKeyType) -> (CertKeyring, Vec<u8>) {
    let issued = ca.issue_with_key(name, &[], 1, key_type).unwrap();
    let identity = Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem).unwrap();
    let der = identity.chain[0].to_vec();
    (CertKeyring::new(&identity).unwrap(), der)
}

/// A member's Alive as the core signs it: name, incarnation, address and a little metadata,
/// about 60 bytes of fields.
fn record(name: &NodeName, incarnation: u64) -> Vec<u8> {
    signed_bytes(
        RecordKind::Claim,
        &(
            name.as_str(),
            incarnation,
            "10.20.30.40:7946",
            b"zone=eu-west-1a;rack=r12;v=0.1.0".as_slice(),
        ),
    )
}

/// The bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, d: &Duration) -> f64 {
        d.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Nanoseconds shown as ns / µs / ms, throughput as elements per second.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical_ns < 1e3 {
            (1.0, "ns")
        } else if typical_ns < 1e6 {
            (1e-3, "µs")
        } else {
            (1e-6, "ms")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_iteration = match *throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
        } as f64;
        values
            .iter_mut()
            .for_each(|v| *v = per_iteration * 1e9 / *v / 1e3);
        "Kelem/s (CPU)"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench_wall(c: &mut Criterion) {
    bench(c, "signing");
    bench_learn(c, "signing");
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "signing-cpu");
    bench_learn(c, "signing-cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let ca = CertAuthority::generate("bench ca").unwrap();
    let me = NodeName::new("verifier").unwrap();
    for (label, key_type) in [
        ("ed25519", NodeKeyType::Ed25519),
        ("p256", NodeKeyType::P256),
    ] {
        let (verifier, _) = keyring(&ca, &me, NodeKeyType::Ed25519);
        let signers: Vec<(NodeName, CertKeyring)> = (0..RECORDS_PER_DATAGRAM)
            .map(|i| {
                let name = NodeName::new(format!("node-{i:03}")).unwrap();
                let (ring, der) = keyring(&ca, &name, key_type);
                verifier.learn(&name, &der).unwrap();
                (name, ring)
            })
            .collect();
        let signed: Vec<(NodeName, Vec<u8>, Signature)> = signers
            .iter()
            .enumerate()
            .map(|(i, (name, ring))| {
                let rec = record(name, i as u64 + 1);
                let sig = ring.sign(&rec);
                (name.clone(), rec, sig)
            })
            .collect();
        let (first_name, first_ring) = &signers[0];
        let (_, first_rec, first_sig) = &signed[0];

        let mut group = c.benchmark_group(format!("{prefix}/{label}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("sign_record", |b| {
            let mut inc = 0u64;
            b.iter_batched(
                || {
                    inc += 1;
                    record(first_name, inc)
                },
                |rec| black_box(first_ring.sign(&rec)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("verify_record", |b| {
            b.iter(|| {
                let verdict = verifier.verify(first_name, black_box(first_rec), first_sig);
                assert_eq!(verdict, Verdict::Valid);
            })
        });
        group.throughput(Throughput::Elements(RECORDS_PER_DATAGRAM as u64));
        group.bench_function("verify_datagram_8_signers", |b| {
            b.iter(|| {
                for (name, rec, sig) in &signed {
                    let verdict = verifier.verify(name, black_box(rec), sig);
                    assert_eq!(verdict, Verdict::Valid);
                }
            })
        });
        // Key/value data is signed a batch at a time: what an owner pays to seal a burst of
        // 64 writes, and what a receiver pays to check the delta that carries them.
        let kv_entries = |owner: &NodeName| -> Vec<KvEntry> {
            (0..KV_BATCH)
                .map(|i| KvEntry {
                    owner: owner.clone(),
                    key: format!("service/{i:05}"),
                    version: i as u64 + 1,
                    value: Some(vec![7; 16]),
                    sealed: None,
                })
                .collect()
        };
        group.throughput(Throughput::Elements(KV_BATCH as u64));
        group.bench_function("seal_kv_batch_64", |b| {
            b.iter_batched(
                || kv_entries(first_name),
                |mut entries| {
                    proof::seal(first_ring, &mut entries);
                    black_box(entries)
                },
                BatchSize::SmallInput,
            )
        });
        let mut sealed = kv_entries(first_name);
        proof::seal(first_ring, &mut sealed);
        let delta = OwnerDelta::new(false, 0, sealed);
        group.bench_function("check_kv_delta_64", |b| {
            b.iter(|| {
                let batches = proof::rebuild(black_box(&delta.entries), &delta.proof).unwrap();
                for batch in batches {
                    let root = proof::root_bytes(first_name, &batch.root);
                    let verdict = verifier.verify(first_name, &root, &batch.batch.signature);
                    assert_eq!(verdict, Verdict::Valid);
                }
            })
        });
        group.finish();
        eprintln!(
            "{prefix}/{label}: record {} bytes, signature {} bytes, certificate {} bytes",
            first_rec.len(),
            first_sig.as_bytes().len(),
            verifier.certificate(first_name).unwrap().len()
        );
    }
}

/// Learning a member's certificate: the checks a handshake makes (the CA's signature, validity,
/// usage, name) and the key read out, as every node does once for every member. Under a CA with
/// an Ed25519 key (what `quicswim certs init` makes) and one with an ECDSA P-256 key (what
/// earlier versions made); the member's own key is Ed25519 either way.
fn bench_learn<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let me = NodeName::new("verifier").unwrap();
    let member = NodeName::new("node-001").unwrap();
    let mut group = c.benchmark_group(format!("{prefix}/learn_certificate"));
    group.throughput(Throughput::Elements(1));
    for (label, ca_key) in [
        ("ed25519_ca", NodeKeyType::Ed25519),
        ("p256_ca", NodeKeyType::P256),
    ] {
        let ca = CertAuthority::generate_with_key("bench ca", ca_key).unwrap();
        let (verifier, _) = keyring(&ca, &me, NodeKeyType::Ed25519);
        let (_, der) = keyring(&ca, &member, NodeKeyType::Ed25519);
        group.bench_function(label, |b| {
            b.iter(|| verifier.learn(&member, black_box(&der)).unwrap())
        });
    }
    group.finish();

    // A join reply's worth: 64 members' certificates at once (`Keyring::learn_all`), the
    // Ed25519 CA's signatures checked in one batch. Throughput is per certificate.
    let mut group = c.benchmark_group(format!("{prefix}/learn_certificates_together"));
    group.throughput(Throughput::Elements(64));
    let ca = CertAuthority::generate_with_key("bench ca", NodeKeyType::Ed25519).unwrap();
    let (verifier, _) = keyring(&ca, &me, NodeKeyType::Ed25519);
    let members: Vec<(NodeName, Vec<u8>)> = (0..64)
        .map(|i| {
            let name = NodeName::new(format!("node-{i:03}")).unwrap();
            let der = keyring(&ca, &name, NodeKeyType::Ed25519).1;
            (name, der)
        })
        .collect();
    let items: Vec<(&NodeName, &[u8])> = members.iter().map(|(n, d)| (n, d.as_slice())).collect();
    group.bench_function("ed25519_ca_64", |b| {
        b.iter(|| {
            let results = verifier.learn_all(black_box(&items));
            assert!(results.iter().all(|r| r.is_ok()));
        })
    });
    group.finish();
}

criterion_group!(wall, bench_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_cpu
}
criterion_main!(wall, cpu);
