//! A revocation handed to one running agent (`quicswim certs revoke`, then `quicswim
//! revoke FILE --api`) reaches every agent through the real binary: each shows the member
//! banned in `quicswim members --json`, refuses it restarted with the same certificate, and
//! a node that joins later refuses it too. Every wait is under a deadline.
#![cfg(unix)]

mod common;

use std::time::Instant;

use common::process::*;
use common::DEADLINE;

fn counter(agent: &Agent, name: &str) -> f64 {
    agent
        .metrics()
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_revocation_handed_to_one_agent_bans_the_member_on_every_agent() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let certs = make_certs(dir, "certs", &names);
    let config = write_fast_config(dir);
    let common = local_args(&config, &certs);
    let alice = Agent::start(dir, "alice", &common);
    let seed = alice.addr.to_string();
    let join = ["--join", seed.as_str()];
    let mut agents = vec![alice];
    for name in &names[1..5] {
        agents.push(Agent::start(dir, name, &[&common[..], &join].concat()));
    }
    let refs: Vec<&Agent> = agents.iter().collect();
    wait_for("five agents alive everywhere", DEADLINE, &refs, || {
        refs.iter().all(|a| {
            let members = a.members();
            members.len() == 5 && members.iter().all(|m| m["state"] == "alive")
        })
    });
    let serial = agents[0]
        .members()
        .iter()
        .find(|m| m["name"] == "carol")
        .and_then(|m| m["cert_serial"].as_str().map(str::to_string))
        .expect("carol's serial");

    // The operator makes the list with the CA key and hands it to bob alone.
    let crl = dir.join("revoked.pem");
    let crl_arg = crl.to_str().expect("test paths are UTF-8");
    certs_revoke(&certs, "carol", &crl);
    let handed = Instant::now();
    let out = quicswim_ok(&["revoke", crl_arg, "--api", &agents[1].api.to_string()]);
    assert!(out.contains("taken: banned carol"), "{out}");
    let others: Vec<&Agent> = agents.iter().filter(|a| a.name != "carol").collect();
    wait_for(
        "carol banned on every other agent",
        DEADLINE,
        &others,
        || {
            others
                .iter()
                .all(|a| a.state_of("carol").as_deref() == Some("banned"))
        },
    );
    println!(
        "carol banned on alice, bob, dave and erin {:?} after `quicswim revoke` was started",
        handed.elapsed()
    );
    for agent in &others {
        let carol = agent
            .members()
            .into_iter()
            .find(|m| m["name"] == "carol")
            .expect("carol listed");
        assert_eq!(carol["cert_serial"], serial.as_str(), "at {}", agent.name);
        let banned = quicswim_ok(&[
            "members",
            "--api",
            &agent.api.to_string(),
            "--state",
            "banned",
            "--json",
        ]);
        assert!(banned.contains("\"carol\""), "at {}: {banned}", agent.name);
    }
    // Handed again: nothing changes.
    let out = quicswim_ok(&["revoke", crl_arg, "--api", &agents[3].api.to_string()]);
    assert!(out.contains("already held"), "{out}");

    // Carol restarted with the same certificate is refused everywhere, with the reason.
    let carol = agents.remove(2);
    drop(carol);
    let before: f64 = agents
        .iter()
        .map(|a| counter(a, "quicswim_handshakes_refused_total{reason=\"revoked\"}"))
        .sum();
    assert_join_refused_as_revoked("carol", &[&common[..], &join].concat());
    let after: f64 = agents
        .iter()
        .map(|a| counter(a, "quicswim_handshakes_refused_total{reason=\"revoked\"}"))
        .sum();
    assert!(
        after > before,
        "no revoked handshake counted ({before} -> {after})"
    );

    // A node that joins later takes the list in its first exchange, and refuses carol.
    let frank = Agent::start(dir, "frank", &[&common[..], &join].concat());
    wait_for("frank took the list", DEADLINE, &[&frank], || {
        counter(&frank, "quicswim_revocations_taken_total") >= 1.0
    });
    let frank_addr = frank.addr.to_string();
    assert_join_refused_as_revoked("carol", &[&common[..], &["--join", &frank_addr]].concat());

    // A list not signed by the cluster CA is refused, naming why; nothing changes.
    let stranger = make_certs(dir, "other", &["zed"]);
    let forged = dir.join("forged.pem");
    certs_revoke(&stranger, "zed", &forged);
    let out = quicswim(&[
        "revoke",
        forged.to_str().expect("test paths are UTF-8"),
        "--api",
        &agents[0].api.to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("not a CA this node trusts"), "{stderr}");
    assert_eq!(agents[0].state_of("dave").as_deref(), Some("alive"));
}
