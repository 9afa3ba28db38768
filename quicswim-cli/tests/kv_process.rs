//! Key/value data and user events through the real binary: three `quicswim agent` processes
//! on 127.0.0.1, driven with `quicswim kv` and `quicswim event`/`events` as a user would.
//! Every wait is for a condition under a deadline.
#![cfg(unix)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::process::*;
use common::DEADLINE;
use serde_json::Value;

/// How soon a write must be readable on every other agent.
const SPREAD_DEADLINE: Duration = Duration::from_secs(5);

fn api(agent: &Agent) -> String {
    agent.api.to_string()
}

/// `quicswim kv get OWNER KEY` on `agent`: the value, or `None` when the agent answers that
/// it has no such key. Any other failure panics.
fn kv_get(agent: &Agent, owner: &str, key: &str) -> Option<Vec<u8>> {
    let out = quicswim(&["kv", "get", owner, key, "--api", &api(agent)]);
    if out.status.success() {
        return Some(out.stdout);
    }
    let line = one_error_line(&out);
    assert!(line.contains("no key"), "kv get failed: {line}");
    None
}

fn kv_set(agent: &Agent, key: &str, value: &str) -> String {
    quicswim_ok(&["kv", "set", key, value, "--api", &api(agent)])
}

/// Waits until every agent in `readers` reads `want` for `owner`'s `key`.
fn wait_value(readers: &[&Agent], owner: &str, key: &str, want: Option<&[u8]>) {
    for reader in readers {
        let what = format!(
            "{} to read {owner}/{key} as {:?}",
            reader.name,
            want.map(<[u8]>::len)
        );
        wait_for(&what, SPREAD_DEADLINE, readers, || {
            kv_get(reader, owner, key).as_deref() == want
        });
    }
}

/// `quicswim events --json` on `agent`.
fn events(agent: &Agent) -> Vec<Value> {
    let out = quicswim_ok(&["events", "--json", "--api", &api(agent)]);
    serde_json::from_str::<Value>(&out)
        .expect("events --json prints JSON")
        .as_array()
        .expect("an array")
        .clone()
}

/// How many times `agent` lists the event `origin`/`seq`.
fn times_listed(agent: &Agent, origin: &str, seq: u64) -> usize {
    events(agent)
        .iter()
        .filter(|e| e["origin"] == origin && e["seq"] == seq)
        .count()
}

fn stdout_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn values_and_events_set_on_one_agent_are_seen_on_every_other() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let [alice, bob, mut carol] = start_three(dir, &certs, &[]);
    {
        let all = [&alice, &bob, &carol];
        for agent in all {
            wait_for("three alive members", DEADLINE, &all, || {
                let members = agent.members();
                members.len() == 3 && members.iter().all(|m| m["state"] == "alive")
            });
        }
    }

    // A small value set on alice is read on bob and carol.
    let line = kv_set(&alice, "colour", "blue");
    assert!(line.starts_with("set alice/colour version "), "{line}");
    wait_value(&[&alice, &bob, &carol], "alice", "colour", Some(b"blue"));

    // 48 KiB of binary from standard input: far over a datagram, so it travels on streams.
    let big: Vec<u8> = (0..48 * 1024).map(|i| (i % 251) as u8).collect();
    let out = quicswim_with_input(
        &["kv", "set", "blob", "-", "--api", &api(&bob)],
        Some(big.clone()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_value(&[&alice, &bob, &carol], "bob", "blob", Some(&big));

    // The list on carol shows both, the binary one in base64 only.
    let out = quicswim_ok(&["kv", "list", "--json", "--api", &api(&carol)]);
    let items: Vec<Value> = serde_json::from_str(&out).expect("kv list --json prints JSON");
    let keys: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i["owner"].as_str().unwrap(), i["key"].as_str().unwrap()))
        .collect();
    assert_eq!(keys, [("alice", "colour"), ("bob", "blob")]);
    assert_eq!(items[0]["value"], "blue");
    assert_eq!(items[1]["value"], Value::Null);
    let table = quicswim_ok(&["kv", "list", "--api", &api(&carol)]);
    assert!(table.starts_with("OWNER"), "{table}");
    assert!(
        table.contains("colour") && table.contains("blue"),
        "{table}"
    );

    // An event sent on alice: every agent lists it.
    let line = quicswim_ok(&["event", "send", "deploy", "v1.2.3", "--api", &api(&alice)]);
    let seq: u64 = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no sequence number in {line:?}"));
    for agent in [&alice, &bob, &carol] {
        wait_for(
            "the event on every agent",
            SPREAD_DEADLINE,
            &[agent],
            || times_listed(agent, "alice", seq) >= 1,
        );
    }

    // A delete on alice is seen everywhere.
    let line = quicswim_ok(&["kv", "del", "colour", "--api", &api(&alice)]);
    assert!(line.starts_with("deleted alice/colour version "), "{line}");
    wait_value(&[&alice, &bob, &carol], "alice", "colour", None);
    let out = quicswim(&["kv", "del", "colour", "--api", &api(&alice)]);
    let line = one_error_line(&out);
    assert!(line.contains("colour"), "{line}");

    // By now gossip has repeated the event many times: each agent still lists it once.
    for agent in [&alice, &bob, &carol] {
        assert_eq!(times_listed(agent, "alice", seq), 1, "{}", agent.name);
    }

    // carol writes, is killed -9 and comes back with no state: its new write wins everywhere.
    kv_set(&carol, "counter", "old");
    wait_value(&[&alice, &bob, &carol], "carol", "counter", Some(b"old"));
    carol.process.0.kill().expect("SIGKILL carol");
    carol.wait_exit();
    let carol = carol.start_again();
    kv_set(&carol, "counter", "new");
    // The old value may come back to carol from the others first; the new one must win.
    for agent in [&alice, &bob, &carol] {
        wait_for("carol's new counter everywhere", DEADLINE, &[agent], || {
            kv_get(agent, "carol", "counter").as_deref() == Some(b"new")
        });
    }

    // Oversized: refused with the limit, in one line, and nothing is stored.
    let out = quicswim_with_input(
        &["kv", "set", "huge", "-", "--api", &api(&alice)],
        Some(vec![b'x'; 70_000]),
    );
    assert_eq!(
        one_error_line(&out),
        "error: value is 70000 bytes; the limit is 65536"
    );
    assert_eq!(kv_get(&alice, "alice", "huge"), None);
    // Over what any agent may take: refused before anything is sent.
    let out = quicswim_with_input(
        &["kv", "set", "huge", "-", "--api", &api(&alice)],
        Some(vec![b'x'; 5 << 20]),
    );
    assert_eq!(
        one_error_line(&out),
        "error: value is over 4194304 bytes; no agent takes values over 4194304 bytes"
    );
    let big_payload = "p".repeat(600);
    let out = quicswim(&["event", "send", "big", &big_payload, "--api", &api(&alice)]);
    assert_eq!(
        one_error_line(&out),
        "error: event payload is 600 bytes; the limit is 512"
    );

    // Seconds later, after gossip has stopped repeating it: still once on the agents that ran
    // throughout (the restarted carol started with an empty list).
    for agent in [&alice, &bob] {
        assert_eq!(times_listed(agent, "alice", seq), 1, "{}", agent.name);
    }
    let table = stdout_text(&quicswim(&["events", "--api", &api(&bob)]));
    assert!(table.starts_with("ORIGIN"), "{table}");
    assert!(
        table.contains("deploy") && table.contains("v1.2.3"),
        "{table}"
    );
}
