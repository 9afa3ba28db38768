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
