//! `quicswim agent --join` with seeds by name, through the real binary: a name that does not
//! resolve is retried rather than fatal, every failed attempt is reported, and
//! `--join-timeout` ends the agent with status 1. Every wait is under a deadline.
#![cfg(unix)]

mod common;

use std::time::{Duration, Instant};

use common::dns::TestDns;
use common::process::*;
use common::DEADLINE;

#[test]
fn join_timeout_exits_non_zero_after_reporting_each_failed_attempt() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice"]);
    let config = write_fast_config(dir);
    let runtime = tokio::runtime::Runtime::new().expect("runtime for the test's DNS server");
    let dns = runtime.block_on(TestDns::start());
    let (dns_addr, dead) = (dns.addr().to_string(), unused_addr().to_string());

    let started = Instant::now();
    let out = quicswim(
        &[
            &["agent", "--name", "alice"][..],
            &local_args(&config, &certs),
            &["--join", "nowhere.test:7946", "--join", &dead],
            &["--dns-server", &dns_addr, "--join-timeout", "3s"],
        ]
        .concat(),
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        took >= Duration::from_secs(3) && took < DEADLINE,
        "{took:?}"
    );
    assert!(
        stderr.contains("could not join the cluster within 3s (--join-timeout)"),
        "{stderr}"
    );
    // The name was asked for at every attempt, and each attempt's failure said what was
    // tried: the name and why it gave nothing, the address and what it did.
    assert!(dns.queries("nowhere.test") >= 2, "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("could not join the cluster"))
        .collect();
    assert!(warnings.len() >= 2, "{stderr}");
    for w in &warnings {
        assert!(w.contains("nowhere.test:7946 -> no such name"), "{w}");
        assert!(w.contains(&dead), "{w}");
    }
}

#[test]
fn an_agent_pointed_at_another_cluster_under_one_ca_names_both_and_never_joins() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = dir.join("certs");
    let certs_arg = certs.to_str().expect("test paths are UTF-8");
    quicswim_ok(&["certs", "init", "--dir", certs_arg, "--cluster", "blue"]);
    let issue = |name: &str, extra: &[&str]| issue_cert(&certs, name, extra);
    let alice = issue("alice", &[]);
    assert!(alice.contains("cluster blue"), "{alice}");
    let bob = issue("bob", &["--cluster", "green"]);
    assert!(bob.contains("cluster green"), "{bob}");

    let config = write_fast_config(dir);
    let alice = Agent::start(dir, "alice", &local_args(&config, &certs));
    let seed = alice.addr.to_string();
    let out = quicswim(
        &[
            &["agent", "--name", "bob"][..],
            &local_args(&config, &certs),
            &["--join", &seed, "--join-timeout", "3s"],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("server certificate is for cluster blue, and this node is in cluster green"),
        "{stderr}"
    );
    // Alice never took bob in, and shows her own certificate's serial and expiry.
    let members = alice.members();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0]["name"], "alice");
    assert!(
        members[0]["cert_serial"]
            .as_str()
            .is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit())),
        "{members:?}"
    );
    assert!(members[0]["cert_not_after"].is_string(), "{members:?}");
}
