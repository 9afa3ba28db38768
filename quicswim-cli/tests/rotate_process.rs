//! `quicswim agent` reloads its certificates live, through the real binary: a certificate
//! issued again where the agent loaded it is taken without a restart and reaches every
//! member; a key that does not match is refused with the file and the reason, and the old
//! identity stays; SIGHUP reloads and never stops the agent. Every wait is under a deadline.
#![cfg(unix)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::process::*;
use common::DEADLINE;
use serde_json::Value;

/// Waits until each of `agents` holds all of them Alive.
fn wait_all_alive(agents: &[&Agent]) {
    wait_for("every agent alive everywhere", DEADLINE, agents, || {
        agents.iter().all(|a| {
            let members = a.members();
            members.len() == agents.len() && members.iter().all(|m| m["state"] == "alive")
        })
    });
}

/// Issues `name` a new certificate over its files, valid a day longer than the first
/// (`make_certs`' 90 days): the newer of the two even if both began in the same second.
fn reissue(certs: &std::path::Path, name: &str) {
    issue_cert(certs, name, &["--days", "91"]);
}

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
    wait_all_alive(&agents);
    let (bob_before, carol_before) = (serial_of(&alice, "bob"), serial_of(&alice, "carol"));
    assert!(bob_before.is_some() && carol_before.is_some());

    // Bob's certificate issued again, over his files: he takes it by himself, and every
    // member comes to hold it.
    reissue(&certs, "bob");
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

/// `quicswim kv list --json` on `agent`, as (owner, key, value) triples.
fn kv_list(agent: &Agent) -> BTreeSet<(String, String, String)> {
    let out = quicswim_ok(&["kv", "list", "--json", "--api", &agent.api.to_string()]);
    let items: Vec<Value> = serde_json::from_str(&out).expect("kv list --json prints JSON");
    items
        .iter()
        .map(|i| {
            let text = |f: &str| i[f].as_str().unwrap_or_default().to_string();
            (text("owner"), text("key"), text("value"))
        })
        .collect()
}

#[test]
fn five_agents_rotate_every_certificate_one_by_one_while_writes_go_on() {
    const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &NAMES);
    let config = write_fast_config(dir);
    let common = local_args(&config, &certs);
    let first = Agent::start(dir, NAMES[0], &common);
    let seed = first.addr.to_string();
    let mut agents = vec![first];
    for name in &NAMES[1..] {
        agents.push(Agent::start(
            dir,
            name,
            &[&common[..], &["--join", &seed]].concat(),
        ));
    }
    let all: Vec<&Agent> = agents.iter().collect();
    wait_all_alive(&all);
    let before: Vec<Option<String>> = NAMES.iter().map(|n| serial_of(&agents[0], n)).collect();

    // Writes through every agent's API, one after the other, until the rotations are done.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(BTreeSet::new()));
    let apis: Vec<(String, String)> = agents
        .iter()
        .map(|a| (a.name.clone(), a.api.to_string()))
        .collect();
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && i < 2_000 {
                let (owner, api) = &apis[i % apis.len()];
                let (key, value) = (format!("k{i}"), format!("v{i}"));
                quicswim_ok(&["kv", "set", &key, &value, "--api", api]);
                written.lock().unwrap().insert((owner.clone(), key, value));
                i += 1;
            }
        })
    };
    let writes_made = || written.lock().unwrap().len();
    wait_for("writes going on", DEADLINE, &all, || writes_made() >= 10);

    for (i, name) in NAMES.iter().enumerate() {
        reissue(&certs, name);
        wait_for(
            &format!("{name}'s new certificate everywhere"),
            DEADLINE,
            &all,
            || {
                let own = serial_of(&agents[i], name);
                own != before[i] && all.iter().all(|a| serial_of(a, name) == own)
            },
        );
    }
    let floor = writes_made();
    wait_for("writes after the last rotation", DEADLINE, &all, || {
        writes_made() >= floor + 10
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");

    let written = written.lock().unwrap().clone();
    wait_for("every write on every agent", DEADLINE, &all, || {
        all.iter().all(|a| written.is_subset(&kv_list(a)))
    });
    for (i, a) in agents.iter_mut().enumerate() {
        assert!(
            a.process.0.try_wait().expect("poll agent").is_none(),
            "{} exited",
            a.name
        );
        let log = a.log();
        assert!(log.contains("certificates reloaded"), "{}: {log}", a.name);
        assert!(!log.contains("member suspect"), "{}: {log}", a.name);
        assert!(!log.contains("member dead"), "{}: {log}", a.name);
        assert!(!log.contains("does not verify"), "{}: {log}", a.name);
        assert_ne!(serial_of(a, NAMES[i]), before[i]);
    }
}

#[test]
fn a_revocation_list_reloaded_live_refuses_the_certificate_it_lists() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let ca = quicswim::tls::CertAuthority::load(&certs).expect("the test CA loads");
    let crl = dir.join("crl.pem");
    fs::write(&crl, ca.revocation_list(&[], 7).expect("an empty list")).expect("write crl");
    let config = write_fast_config(dir);
    let common = local_args(&config, &certs);
    let crl_arg = ["--crl", crl.to_str().expect("test paths are UTF-8")];
    let alice = Agent::start(dir, "alice", &[&common[..], &crl_arg].concat());
    let seed = alice.addr.to_string();
    let join = ["--join", seed.as_str()];
    let bob = Agent::start(dir, "bob", &[&common[..], &crl_arg, &join].concat());
    let mut carol = Agent::start(dir, "carol", &[&common[..], &join].concat());
    let agents = [&alice, &bob, &carol];
    wait_all_alive(&agents);

    // The CA lists carol's certificate; alice and bob take the new list by themselves.
    let serial = serial_of(&alice, "carol").expect("carol's serial");
    let out = certs_revoke(&certs, "carol", &crl);
    assert!(
        out.contains(&format!("revoking carol: serial {serial}")),
        "{out}"
    );
    assert_eq!(quicswim::tls::revoked_serials(&crl).unwrap(), [serial]);
    wait_for("the list reloaded", DEADLINE, &agents, || {
        [&alice, &bob]
            .iter()
            .all(|a| a.log().contains("certificates reloaded"))
    });
    // Carol, restarted with the same certificate, is refused with the reason.
    carol.signal("-KILL");
    carol.wait_exit();
    assert_join_refused_as_revoked("carol", &[&common[..], &join].concat());
    let refused = alice
        .metrics()
        .lines()
        .find(|l| l.starts_with("quicswim_handshakes_refused_total{reason=\"revoked\"}"))
        .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string());
    assert!(
        refused.as_deref().is_some_and(|n| n != "0"),
        "alice counted no revoked handshake: {refused:?}"
    );
}

#[test]
fn certs_revoke_keeps_what_the_list_named_and_names_what_it_cannot_find() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob"]);
    let certs_arg = certs.to_str().expect("test paths are UTF-8");
    let crl = dir.join("revoked.pem");
    let crl_arg = crl.to_str().expect("test paths are UTF-8");
    let serial = |who: &str| {
        quicswim::tls::serial_of_cert_file(&certs.join(who).join(format!("{who}.pem"))).unwrap()
    };
    quicswim_ok(&[
        "certs", "revoke", "alice", "--dir", certs_arg, "--out", crl_arg,
    ]);
    quicswim_ok(&[
        "certs", "revoke", "0abc", "--dir", certs_arg, "--out", crl_arg,
    ]);
    quicswim_ok(&[
        "certs", "revoke", "bob", "--dir", certs_arg, "--out", crl_arg,
    ]);
    let mut want = vec![serial("alice"), serial("bob"), "0abc".to_string()];
    want.sort();
    let mut got = quicswim::tls::revoked_serials(&crl).unwrap();
    got.sort();
    assert_eq!(got, want);
    let out = quicswim(&[
        "certs", "revoke", "nobody", "--dir", certs_arg, "--out", crl_arg,
    ]);
    let line = one_error_line(&out);
    assert!(line.contains("\"nobody\": neither a node"), "{line}");
}
