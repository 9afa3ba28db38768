//! Stopping and starting again, with the real binary: SIGTERM leaves after flushing the last
//! write and exits 0 within `--leave-timeout` (SIGHUP before it changes nothing); `--data-dir` lets a restarted node rejoin
//! without its seeds and survives a corrupt file; a taken port is one error line; and probe
//! round trips show in `/metrics`. Every wait is for a condition under a deadline.
#![cfg(unix)]

mod common;

use std::fs;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::process::*;
use common::DEADLINE;

/// The `--leave-timeout` these tests give, and what a stop may take beyond it (the API's
/// drain, the process exit): generous, since a loaded CI machine is slow; the outcome in the
/// log says what happened, the bound only that the stop did not hang.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
const EXIT_SLACK: Duration = Duration::from_secs(8);

fn wait_alive(agents: &[&Agent], want: &[&str]) {
    for agent in agents {
        wait_for("every member alive", DEADLINE, agents, || {
            let members = agent.members();
            names(&members) == want && members.iter().all(|m| m["state"] == "alive")
        });
    }
}

/// `quicswim kv get OWNER KEY` on `agent`, or `None` when it has no such key.
fn kv_get(agent: &Agent, owner: &str, key: &str) -> Option<String> {
    let out = quicswim(&["kv", "get", owner, key, "--api", &agent.api.to_string()]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn sigterm_flushes_the_last_write_leaves_and_exits_zero_in_time() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let [alice, mut bob, carol] = start_three(dir, &certs, &[]);
    wait_alive(&[&alice, &bob, &carol], &["alice", "bob", "carol"]);

    // Probes have been answered: the round-trip histogram has samples.
    wait_for("probe round trips in /metrics", DEADLINE, &[&alice], || {
        let text = alice.metrics();
        common::metric(
            &text,
            "quicswim_probe_rtt_seconds_count",
            Some("path=\"direct\""),
        )
        .is_some_and(|n| n > 0.0)
            && common::metric(
                &text,
                "quicswim_probe_rtt_seconds_bucket",
                Some("le=\"+Inf\""),
            )
            .is_some_and(|n| n > 0.0)
    });
    assert!(alice
        .metrics()
        .lines()
        .any(|l| l == "# TYPE quicswim_probe_rtt_seconds histogram"));

    // SIGHUP (systemd's reload) is logged and survived: bob still answers and is alive.
    bob.signal("-HUP");
    wait_for("bob logs the SIGHUP", DEADLINE, &[&bob], || {
        bob.log().contains("SIGHUP")
    });
    assert_eq!(alice.state_of("bob").as_deref(), Some("alive"));
    assert!(
        names(&bob.members()).len() == 3,
        "bob stopped answering after SIGHUP; log:\n{}",
        bob.log()
    );

    // A write, then at once SIGTERM: the write must outlive bob.
    quicswim_ok(&["kv", "set", "last", "words", "--api", &bob.api.to_string()]);
    let stopped = Instant::now();
    bob.signal("-TERM");
    let status = bob.wait_exit();
    let took = stopped.elapsed();
    assert!(
        status.success(),
        "bob exited with {status}; log:\n{}",
        bob.log()
    );
    assert!(
        took < LEAVE_TIMEOUT + EXIT_SLACK,
        "bob took {took:?} to stop"
    );
    assert!(bob.log().contains("leave confirmed"), "{}", bob.log());
    for agent in [&alice, &carol] {
        wait_for("bob left", DEADLINE, &[&alice, &carol], || {
            agent.state_of("bob").as_deref() == Some("left")
        });
        assert_eq!(
            kv_get(agent, "bob", "last").as_deref(),
            Some("words"),
            "{} lacks bob's last write",
            agent.name
        );
    }
}

#[test]
fn sigterm_with_nobody_answering_exits_zero_after_the_leave_timeout() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let [mut alice, bob, carol] = start_three(dir, &certs, &["--leave-timeout", "1500ms"]);
    wait_alive(&[&alice, &bob, &carol], &["alice", "bob", "carol"]);
    // Both others stopped dead: alice still holds them alive, but nobody will answer.
    for mut other in [bob, carol] {
        other.signal("-KILL");
        other.wait_exit();
    }
    let stopped = Instant::now();
    alice.signal("-TERM");
    let status = alice.wait_exit();
    let took = stopped.elapsed();
    assert!(status.success(), "alice exited with {status}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(1500) + EXIT_SLACK,
        "alice took {took:?}; log:\n{}",
        alice.log()
    );
    assert!(
        alice
            .log()
            .contains("no member confirmed the leave in time"),
        "{}",
        alice.log()
    );
}

#[test]
fn restarted_node_rejoins_through_its_snapshot_when_its_seed_is_gone() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let data = dir.join("bob-data");
    let data_arg = data.to_str().unwrap();
    let config = write_fast_config(dir);
    let common = local_args(&config, &certs);
    let mut alice = Agent::start(dir, "alice", &common);
    let seed = alice.addr.to_string();
    let joining = [&common[..], &["--join", &seed]].concat();
    let mut bob = Agent::start(
        dir,
        "bob",
        &[&joining[..], &["--data-dir", data_arg]].concat(),
    );
    let carol = Agent::start(dir, "carol", &joining);
    wait_alive(&[&alice, &bob, &carol], &["alice", "bob", "carol"]);
    let snapshot = data.join("members.json");
    wait_for(
        "bob's snapshot to list alice and carol",
        DEADLINE,
        &[&bob],
        || {
            let text = fs::read_to_string(&snapshot).unwrap_or_default();
            text.contains("\"alice\"") && text.contains(&carol.addr.to_string())
        },
    );

    // Bob stops; then the seed is gone for good.
    bob.signal("-TERM");
    assert!(bob.wait_exit().success());
    alice.signal("-KILL");
    alice.wait_exit();

    // Started again with no --join at all: the snapshot gets it back in through carol.
    let bob = Agent::start(
        dir,
        "bob",
        &[&common[..], &["--data-dir", data_arg]].concat(),
    );
    wait_for("carol to see bob back", DEADLINE, &[&bob, &carol], || {
        carol.state_of("bob").as_deref() == Some("alive")
            && bob.state_of("carol").as_deref() == Some("alive")
    });
    assert!(bob.log().contains("member snapshot read"), "{}", bob.log());
}

#[test]
fn corrupt_snapshot_is_reported_and_ignored() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice"]);
    let data = dir.join("data");
    fs::create_dir(&data).unwrap();
    let file = data.join("members.json");
    fs::write(&file, "{\"node\": \"alice\", \"members\": [{\"name\": ").unwrap();
    let config = write_fast_config(dir);
    let mut alice = Agent::start(
        dir,
        "alice",
        &[
            &local_args(&config, &certs)[..],
            &["--data-dir", data.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(names(&alice.members()), ["alice"]);
    let log = alice.log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("corrupt"))
        .unwrap_or_else(|| panic!("no warning about the snapshot in:\n{log}"));
    assert!(warning.contains(&file.display().to_string()), "{warning}");
    alice.signal("-TERM");
    assert!(alice.wait_exit().success(), "{}", alice.log());
    // Rewritten whole at the stop.
    let text = fs::read_to_string(&file).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON now");
    assert_eq!(parsed["node"], "alice");
    assert_eq!(parsed["members"], serde_json::json!([]));
}

#[test]
fn taken_port_is_one_error_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice"]);
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let addr = taken.local_addr().unwrap().to_string();
    let out = quicswim(&[
        "agent",
        "--name",
        "alice",
        "--bind",
        &addr,
        "--api",
        "127.0.0.1:0",
        "--certs",
        certs.to_str().unwrap(),
    ]);
    let line = one_error_line(&out);
    assert!(line.contains(&addr), "{line}");
    assert_eq!(line.matches("in use").count(), 1, "{line}");
}
