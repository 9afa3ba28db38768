//! Key/value dissemination in the simulator: hundreds of nodes, loss, crashes and restarts.
//! Every assertion names the seed, so a failure replays with `quicswim simulate --seed`.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

use std::time::{Duration, Instant};

use quicswim_proto::sim::{KvWorkload, NetworkConfig, SimConfig, Simulation};

fn workload(writers: usize) -> KvWorkload {
    KvWorkload {
        writers,
        writes_per_s: 50.0,
        from: Duration::from_secs(10),
        until: Duration::from_secs(40),
        keys_per_writer: 10,
        delete_fraction: 0.25,
        value_len: 48,
    }
}

#[test]
fn sustained_writes_then_quiet_leave_identical_state_everywhere() {
    const NODES: usize = 500;
    let seed = 41;
    let config = SimConfig {
        network: NetworkConfig {
            loss: 0.05,
            ..NetworkConfig::default()
        },
        kv: Some(workload(100)),
        // Writers among the crashed nodes come back with no state and keep writing.
        crashes: 5,
        crash_at: Duration::from_secs(20),
        restart_after: Some(Duration::from_secs(5)),
        updates: 0,
        duration: Duration::from_secs(200),
        ..SimConfig::new(NODES, seed)
    };
    let r = Simulation::new(config, Instant::now()).run(|_| {});
    assert!(
        r.kv_writes > 1000,
        "seed {seed}: only {} writes",
        r.kv_writes
    );
    assert!(
        r.kv_states_agree,
        "seed {seed}: key/value states differ between live nodes: {r:?}"
    );
    // Deletes are absent everywhere and a restarted owner's last writes won.
    assert!(
        r.kv_matches_writes,
        "seed {seed}: some node does not hold the last write: {r:?}"
    );
    assert_eq!(r.false_positives, 0, "seed {seed}: {r:?}");
    // Key/value rounds and anti-entropy send what differs, not everything: each write
    // crosses to each node about once, so the entries sent over the whole run stay within a
    // small multiple of (writes x nodes).
    let nodes = NODES as f64;
    let deliveries = r.kv_writes as f64 * nodes;
    assert!(
        (r.kv_entries_synced as f64) < 3.0 * deliveries,
        "seed {seed}: {} entries sent for {} writes to {nodes} nodes",
        r.kv_entries_synced,
        r.kv_writes
    );
}

#[test]
fn a_quiet_cluster_exchanges_no_key_value_entries() {
    let seed = 42;
    let mut config = SimConfig {
        kv: Some(workload(50)),
        updates: 0,
        duration: Duration::from_secs(60),
        ..SimConfig::new(100, seed)
    };
    let busy = Simulation::new(config.clone(), Instant::now()).run(|_| {});
    // The same run, but the last 10 minutes are quiet: anti-entropy keeps running and the
    // entries it carries must not grow with it.
    config.duration = Duration::from_secs(660);
    let quiet = Simulation::new(config, Instant::now()).run(|_| {});
    assert!(
        quiet.kv_states_agree && quiet.kv_matches_writes,
        "seed {seed}: {quiet:?}"
    );
    // 600 quiet seconds at a 90 s interval (30 s scaled for 100 nodes): several per node.
    assert!(
        quiet.push_pulls > busy.push_pulls + 300,
        "seed {seed}: exchanges kept running: {} then {}",
        busy.push_pulls,
        quiet.push_pulls
    );
    assert!(
        quiet.kv_entries_synced <= busy.kv_entries_synced + 50,
        "seed {seed}: quiet exchanges carried entries: {} after vs {} before",
        quiet.kv_entries_synced,
        busy.kv_entries_synced
    );
}
