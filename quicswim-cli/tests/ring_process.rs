//! `quicswim ring` and `quicswim ring owner` against real agent processes on 127.0.0.1: every
//! agent places every key alike, weights from `--meta` count, and a crash moves only the
//! crashed agent's keys. Every wait is for a condition under a deadline.
#![cfg(unix)]

mod common;

use common::process::*;
use common::DEADLINE;
use serde_json::{Map, Value};

/// `quicswim ring --json` on `agent`.
fn ring(agent: &Agent) -> Value {
    let out = quicswim_ok(&["ring", "--json", "--api", &agent.api.to_string()]);
    serde_json::from_str(&out).expect("ring --json prints JSON")
}

/// Names on `agent`'s ring, in the order listed.
fn ring_names(agent: &Agent) -> Vec<String> {
    ring(agent)["members"]
        .as_array()
        .expect("members is an array")
        .iter()
        .map(|m| m["name"].as_str().expect("a name").to_string())
        .collect()
}

/// `quicswim ring owner KEYS... --json [--replicas N]` on `agent`.
fn owners(agent: &Agent, keys: &[String], replicas: Option<usize>) -> Map<String, Value> {
    let api = agent.api.to_string();
    let mut args = vec!["ring", "owner"];
    args.extend(keys.iter().map(String::as_str));
    args.extend(["--json", "--api", &api]);
    let n = replicas.map(|n| n.to_string());
    if let Some(n) = &n {
        args.extend(["--replicas", n]);
    }
    let out = quicswim_ok(&args);
    let value: Value = serde_json::from_str(&out).expect("ring owner --json prints JSON");
    value.as_object().expect("an object").clone()
}

#[test]
fn ring_owner_agrees_on_every_agent_and_a_crash_moves_only_its_keys() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let [alice, bob, mut carol] = start_three(dir, &certs, &["--meta", "weight=2"]);
    let all = [&alice, &bob, &carol];

    // One ring everywhere: same members, same checksum.
    for agent in all {
        wait_for("three members on the ring", DEADLINE, &all, || {
            ring_names(agent) == ["alice", "bob", "carol"]
        });
    }
    let summary = ring(&alice);
    for agent in &all[1..] {
        assert_eq!(
            ring(agent)["checksum"],
            summary["checksum"],
            "{}",
            agent.name
        );
    }
    let members = summary["members"].as_array().unwrap();
    let per_unit = summary["vnodes_per_member"].as_u64().unwrap();
    assert_eq!(members[0]["weight"], 2, "alice's --meta weight=2");
    assert_eq!(members[0]["vnodes"], 2 * per_unit);
    assert_eq!(members[1]["weight"], 1);
    let total: f64 = members.iter().map(|m| m["share"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "{summary}");

    // Every agent places every key alike; with --replicas, owner first, distinct members.
    let keys: Vec<String> = (0..60).map(|i| format!("user:{i}")).collect();
    let placed = owners(&alice, &keys, None);
    assert_eq!(placed.len(), keys.len());
    let replicated = owners(&alice, &keys, Some(2));
    for agent in &all[1..] {
        assert_eq!(owners(agent, &keys, None), placed, "{}", agent.name);
        assert_eq!(owners(agent, &keys, Some(2)), replicated, "{}", agent.name);
    }
    for key in &keys {
        let owner = placed[key].as_str().expect("an owner's name");
        assert!(["alice", "bob", "carol"].contains(&owner), "{owner}");
        let pair = replicated[key].as_array().expect("a list with --replicas");
        assert_eq!(pair.len(), 2);
        assert_eq!(pair[0], owner);
        assert_ne!(pair[0], pair[1]);
    }
    let by_carol = keys.iter().filter(|k| placed[*k] == "carol").count();
    assert!(by_carol > 0, "carol owns none of {} keys", keys.len());

    // The text forms.
    let api = alice.api.to_string();
    let text = quicswim_ok(&["ring", "owner", "user:0", "--api", &api]);
    let expected = format!(
        "KEY     OWNER\nuser:0  {}\n",
        placed["user:0"].as_str().unwrap()
    );
    assert_eq!(text, expected);
    let text = quicswim_ok(&["ring", "--api", &api]);
    let checksum = summary["checksum"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("ring {checksum}: 3 members")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("alice ")), "{text}");

    // kill -9 carol: the others drop her from their rings; only her keys move.
    carol.process.0.kill().expect("SIGKILL carol");
    carol.wait_exit();
    for agent in [&alice, &bob] {
        wait_for("carol off the ring", DEADLINE, &[&alice, &bob], || {
            ring_names(agent) == ["alice", "bob"]
        });
    }
    let after = owners(&alice, &keys, None);
    assert_eq!(owners(&bob, &keys, None), after);
    for key in &keys {
        if placed[key] == "carol" {
            assert_ne!(after[key], "carol", "{key}");
        } else {
            assert_eq!(after[key], placed[key], "{key} moved off a live agent");
        }
    }

    // Mistakes print one line.
    let out = quicswim(&["ring", "owner", "k", "--replicas", "0", "--api", &api]);
    let line = one_error_line(&out);
    assert!(line.contains("--replicas"), "{line}");
    let unused = unused_addr();
    let line = one_error_line(&quicswim(&["ring", "--api", &unused.to_string()]));
    assert!(line.contains(&unused.to_string()), "{line}");
}
