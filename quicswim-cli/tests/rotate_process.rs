//! `quicswim agent` reloads its certificates live, through the real binary: a certificate
//! issued again where the agent loaded it is taken without a restart and reaches every
//! member; a key that does not match is refused with the file and the reason, and the old
//! identity stays; SIGHUP reloads and never stops the agent. Every wait is under a deadline.
#![cfg(unix)]

mod common;

use std::fs;

use common::process::*;
use common::DEADLINE;

/// The serial `agent` holds for `who`'s certificate.
fn serial_of(agent: &Agent, who: &str) -> Option<String> {
    agent
        .members()
        .iter()
        .find(|m| m["name"] == who)
        .and_then(|m| m["cert_serial"].as_str().map(str::to_string))
}

#[test]
fn agents_take_certificates_issued_again_and_refuse_a_key_that_does_not_match() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let [alice, bob, carol] = start_three(dir, &certs, &[]);
    let agents = [&alice, &bob, &carol];
    wait_for("three alive everywhere", DEADLINE, &agents, || {
        agents.iter().all(|a| {
            let members = a.members();
            members.len() == 3 && members.iter().all(|m| m["state"] == "alive")
        })
    });
    let (bob_before, carol_before) = (serial_of(&alice, "bob"), serial_of(&alice, "carol"));
    assert!(bob_before.is_some() && carol_before.is_some());

    // Bob's certificate issued again, over his files: he takes it by himself, and every
    // member comes to hold it. (`--days` longer than the first one's 90, so the new one is
    // the newer even if both began in the same second.)
    let certs_arg = certs.to_str().expect("test paths are UTF-8");
    quicswim_ok(&[
        "certs",
        "issue",
        "bob",
        "--dir",
        certs_arg,
        "--ip",
        "127.0.0.1",
        "--days",
        "91",
    ]);
    wait_for(
        "bob's new certificate everywhere",
        DEADLINE,
        &agents,
        || {
            let own = serial_of(&bob, "bob");
            own != bob_before && agents.iter().all(|a| serial_of(a, "bob") == own)
        },
    );
    assert!(bob.log().contains("certificates reloaded"), "{}", bob.log());

    // SIGHUP with nothing changed: said so, and the agent carries on.
    bob.signal("-HUP");
    wait_for("bob's answer to SIGHUP", DEADLINE, &agents, || {
        bob.log()
            .contains("SIGHUP: the certificate files are unchanged")
    });
    assert_eq!(bob.state_of("bob").as_deref(), Some("alive"));

    // Carol's key replaced by bob's: refused, naming the key file, and her certificate in
    // use stays the one every member holds.
    let carol_key = certs.join("carol").join("carol-key.pem");
    fs::copy(certs.join("bob").join("bob-key.pem"), &carol_key).expect("copy a wrong key");
    wait_for(
        "carol's refusal of the wrong key",
        DEADLINE,
        &agents,
        || carol.log().contains("new certificates refused"),
    );
    let log = carol.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("new certificates refused"))
        .expect("the refusal line");
    assert!(refusal.contains("carol-key.pem"), "{refusal}");
    assert!(refusal.contains("does not match"), "{refusal}");
    for a in agents {
        assert_eq!(serial_of(a, "carol"), carol_before, "carol at {}", a.name);
        assert_eq!(a.state_of("carol").as_deref(), Some("alive"));
    }
    // Nobody was suspected through all of it.
    for a in agents {
        let log = a.log();
        assert!(!log.contains("member suspect"), "{}: {log}", a.name);
        assert!(!log.contains("member dead"), "{}: {log}", a.name);
    }
}
