//! The real `quicswim` binary, driven the way a user would: `certs init`, `certs issue`,
//! `agent` processes on 127.0.0.1 and `members --json`. Every wait is for a condition under a
//! deadline; every child process is killed when its guard drops.
#![cfg(unix)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::process::*;
use common::DEADLINE;

/// How soon a SIGTERMed agent must show as left.
const LEAVE_DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn agents_form_a_cluster_refuse_strangers_and_report_dead_and_left() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let foreign = make_certs(dir, "foreign", &["mallory"]);
    let config = write_fast_config(dir);
    let certs = certs.to_str().unwrap();
    // Node keys are Ed25519 by default; carol's is reissued as ECDSA P-256, so the cluster
    // runs both key types (and both handshake roles between them).
    let issued = quicswim_ok(&[
        "certs",
        "issue",
        "carol",
        "--dir",
        certs,
        "--ip",
        "127.0.0.1",
        "--key-type",
        "p256",
    ]);
    assert!(issued.contains("(ECDSA P-256, mode 0600)"), "{issued}");
    let common = [
        "--bind",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ];

    let alice = Agent::start(dir, "alice", &[&common[..], &["--certs", certs]].concat());
    let seed = alice.addr.to_string();
    let joining = [&common[..], &["--certs", certs, "--join", &seed]].concat();
    let mut bob = Agent::start(dir, "bob", &joining);
    let mut carol = Agent::start(dir, "carol", &joining);
    let all = [&alice, &bob, &carol];
    for agent in all {
        wait_for("three alive members", DEADLINE, &all, || {
            let members = agent.members();
            names(&members) == ["alice", "bob", "carol"]
                && members.iter().all(|m| m["state"] == "alive")
        });
    }
    let alice_view = alice.members();
    assert_eq!(alice_view[0]["addr"], alice.addr.to_string());
    for m in &alice_view {
        let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "addr",
                "cert_not_after",
                "cert_serial",
                "incarnation",
                "name",
                "state"
            ]
        );
        // Every member's certificate is held, so each has its serial and expiry.
        assert!(m["cert_serial"].is_string(), "{m}");
        assert!(m["cert_not_after"].is_string(), "{m}");
    }

    // An impostor: --name alice with bob's certificate. It must stop before joining.
    let started = Instant::now();
    let out = quicswim(
        &[
            &["agent", "--name", "alice"],
            &common[..],
            &[
                "--ca",
                &format!("{certs}/bob/ca.pem"),
                "--cert",
                &format!("{certs}/bob/bob.pem"),
                "--key",
                &format!("{certs}/bob/bob-key.pem"),
                "--join",
                &seed,
            ],
        ]
        .concat(),
    );
    let line = one_error_line(&out);
    assert!(
        line.contains("bob.pem") && line.contains("\"bob\"") && line.contains("\"alice\""),
        "{line}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "impostor was slow to fail"
    );

    // A stranger from another CA: refused at the handshake, never a member anywhere.
    let foreign = foreign.to_str().unwrap();
    let mallory = Agent::start(
        dir,
        "mallory",
        &[&common[..], &["--certs", foreign, "--join", &seed]].concat(),
    );
    wait_for(
        "alice to refuse mallory's handshake",
        DEADLINE,
        &all,
        || {
            let text = alice.metrics();
            ["unknown_ca", "bad_name", "other"].iter().any(|reason| {
                let label = format!("reason=\"{reason}\"");
                common::metric(&text, "quicswim_handshakes_refused_total", Some(&label))
                    .is_some_and(|n| n >= 1.0)
            })
        },
    );
    let unknown_ca = |a: &Agent| {
        common::metric(
            &a.metrics(),
            "quicswim_handshakes_refused_total",
            Some("reason=\"unknown_ca\""),
        )
        .unwrap()
    };
    assert!(
        unknown_ca(&alice) + unknown_ca(&mallory) >= 1.0,
        "the refusal was not classed unknown_ca:\n{}\n{}\n{}",
        alice.metrics(),
        mallory.metrics(),
        mallory.log()
    );
    for agent in all {
        assert_eq!(names(&agent.members()), ["alice", "bob", "carol"]);
    }
    assert_eq!(names(&mallory.members()), ["mallory"]);

    // kill -9: carol is declared dead by the others.
    carol.process.0.kill().expect("SIGKILL carol");
    carol.wait_exit();
    for agent in [&alice, &bob] {
        wait_for("carol dead", DEADLINE, &[&alice, &bob], || {
            agent.state_of("carol").as_deref() == Some("dead")
        });
    }

    // SIGTERM: bob leaves gracefully, shows as left (not dead) within seconds, exits 0.
    bob.signal("-TERM");
    wait_for("bob left", LEAVE_DEADLINE, &[&alice], || {
        alice.state_of("bob").as_deref() == Some("left")
    });
    let status = bob.wait_exit();
    assert!(
        status.success(),
        "bob exited with {status}; log:\n{}",
        bob.log()
    );
    assert!(bob.log().contains("SIGTERM"), "{}", bob.log());

    // Neither the stranger nor the impostor ever became a member.
    let final_view = alice.members();
    assert_eq!(names(&final_view), ["alice", "bob", "carol"]);
    assert_eq!(final_view[0]["addr"], alice.addr.to_string());
    assert_eq!(names(&mallory.members()), ["mallory"]);
}

#[test]
fn user_errors_print_one_line_naming_the_culprit() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice"]);
    let certs = certs.to_str().unwrap();

    // An unknown key in the config file: the file and the key are named.
    let bad = dir.join("bad.toml");
    fs::write(&bad, "name = \"alice\"\nprobe_interval = \"1s\"\n").unwrap();
    let line = one_error_line(&quicswim(&["agent", "--config", bad.to_str().unwrap()]));
    assert!(
        line.contains("bad.toml") && line.contains("probe_interval"),
        "{line}"
    );

    // An unknown protocol key.
    fs::write(&bad, "[protocol]\nprobe_intervall = \"1s\"\n").unwrap();
    let bad_arg = bad.to_str().unwrap();
    let args = ["agent", "--name", "alice", "--bind", "127.0.0.1:0"];
    let line = one_error_line(&quicswim(
        &[&args[..], &["--certs", certs, "--config", bad_arg]].concat(),
    ));
    assert!(
        line.contains("bad.toml") && line.contains("probe_intervall"),
        "{line}"
    );

    // No certificate for the name in --certs.
    let line = one_error_line(&quicswim(&[
        "agent",
        "--name",
        "dave",
        "--bind",
        "127.0.0.1:0",
        "--certs",
        certs,
    ]));
    assert!(line.contains("dave.pem"), "{line}");

    // An API nobody listens on.
    let unused = unused_addr();
    let line = one_error_line(&quicswim(&["members", "--api", &unused.to_string()]));
    assert!(line.contains(&unused.to_string()), "{line}");
}

#[test]
fn a_token_guards_the_api_and_the_client_sends_it_from_its_file() {
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice"]);
    let config = write_fast_config(dir);
    // The same token twice: a private file, and one other users can read.
    let token = dir.join("api-token");
    let open = dir.join("open-token");
    for (path, mode) in [(&token, 0o600), (&open, 0o644)] {
        fs::write(path, "t0ken-for-tests\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    let args = [
        &local_args(&config, &certs)[..],
        &["--bootstrap", "--api-token-file", open.to_str().unwrap()],
    ]
    .concat();
    let alice = Agent::start(dir, "alice", &args);
    let api = alice.api.to_string();
    // The agent uses it, and its log says others can read it.
    let log = alice.log();
    assert!(
        log.contains("API token file is readable by other users") && log.contains("open-token"),
        "{log}"
    );

    // Without the token: refused, and the one line says what is missing.
    let line = one_error_line(&quicswim(&["members", "--api", &api]));
    assert!(line.contains("bearer token"), "{line}");

    // With the file named in the environment: answered; a file others can read is still
    // used, with a warning on stderr naming it.
    for (path, warned) in [(&token, false), (&open, true)] {
        let out = std::process::Command::new(BIN)
            .args(["members", "--api", &api, "--json"])
            .env("QUICSWIM_API_TOKEN_FILE", path)
            .output()
            .expect("run quicswim members");
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.contains("warning") && stderr.contains("open-token"),
            warned,
            "{stderr}"
        );
    }
}
