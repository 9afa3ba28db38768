//! Scenario tests of joining on one core: the retry backoff, seeds resolved by the caller for
//! every attempt, and a node that lists itself as a seed.
#![allow(clippy::disallowed_methods)] // `Instant::now()` is only an arbitrary epoch here

mod core_harness;

use std::time::Duration;

use quicswim_proto::protocol::{Config, TransmitKind};

use core_harness::*;

/// When each join request went out, to whom.
fn join_requests(h: &mut Harness) -> Vec<(Duration, std::net::SocketAddr)> {
    let t0 = h.t0;
    h.take_sent()
        .into_iter()
        .filter(|(_, t)| t.kind == TransmitKind::Request && t.to.name.is_none())
        .map(|(at, t)| (at - t0, t.to.addr))
        .collect()
}

#[test]
fn join_retries_back_off_exponentially_with_jitter_up_to_the_cap() {
    let config = Config::lan();
    let (first, max) = (config.join_retry_interval, config.join_retry_max);
    let mut h = Harness::unjoined(config);
    h.swim.join(h.now, &[addr("seed")]);
    h.pump();
    h.run_for(Duration::from_secs(600));
    assert!(!h.swim.is_joined());
    let at: Vec<Duration> = join_requests(&mut h).into_iter().map(|(t, _)| t).collect();
    assert_eq!(at[0], Duration::ZERO);
    assert_eq!(
        at[1], first,
        "the first retry waits exactly join_retry_interval"
    );
    let mut waits_at_cap = Vec::new();
    for (i, pair) in at.windows(2).enumerate().skip(1) {
        let wait = pair[1] - pair[0];
        let backoff = first.saturating_mul(1 << i.min(20)).min(max);
        assert!(
            wait <= backoff && wait >= backoff.mul_f64(0.75),
            "wait {i} was {wait:?}, backoff {backoff:?}"
        );
        if backoff == max {
            waits_at_cap.push(wait);
        }
    }
    assert!(waits_at_cap.len() >= 10, "{at:?}");
    waits_at_cap.sort();
    waits_at_cap.dedup();
    assert!(
        waits_at_cap.len() > 1,
        "capped waits are jittered: {waits_at_cap:?}"
    );
}

#[test]
fn resolving_join_asks_for_addresses_at_every_attempt_until_a_seed_answers() {
    let config = Config::lan();
    let first = config.join_retry_interval;
    let mut h = Harness::unjoined(config);
    h.swim.join_resolving(h.now);
    assert_eq!(h.swim.poll_join_attempt(), Some(1));
    assert_eq!(h.swim.poll_join_attempt(), None, "asked once per attempt");
    // The name does not resolve yet: nothing is sent, and this is no first node.
    h.swim.handle_seed_addrs(&[]);
    h.pump();
    assert!(join_requests(&mut h).is_empty());
    assert!(!h.swim.is_joined());

    h.run_until(h.t0 + first - NS);
    assert_eq!(h.swim.poll_join_attempt(), None);
    h.run_until(h.t0 + first);
    assert_eq!(h.swim.poll_join_attempt(), Some(2));
    // Now it resolves to two addresses (and a duplicate): each is asked once.
    h.swim
        .handle_seed_addrs(&[addr("seed"), addr("other"), addr("seed")]);
    h.pump();
    let asked = join_requests(&mut h);
    assert_eq!(
        asked,
        vec![(first, addr("seed")), (first, addr("other"))],
        "{asked:?}"
    );

    let reply = push_pull_reply(vec![alive("seed", 0)]);
    assert_eq!(h.stream("seed", &reply), Ok(None));
    assert!(h.swim.is_joined());
    h.run_for(Duration::from_secs(120));
    assert_eq!(h.swim.poll_join_attempt(), None, "joined: no more attempts");
    assert!(join_requests(&mut h).is_empty());
}

#[test]
fn a_node_whose_only_seed_is_itself_starts_the_cluster() {
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join_resolving(h.now);
    assert_eq!(h.swim.poll_join_attempt(), Some(1));
    h.swim.handle_seed_addrs(&[addr("me")]);
    h.pump();
    assert!(h.swim.is_joined());
    assert!(join_requests(&mut h).is_empty());
    h.run_for(Duration::from_secs(60));
    assert_eq!(h.swim.poll_join_attempt(), None);

    // Listed among others, its own address is skipped and the others are asked.
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join_resolving(h.now);
    let _ = h.swim.poll_join_attempt();
    h.swim.handle_seed_addrs(&[addr("me"), addr("seed")]);
    h.pump();
    assert!(!h.swim.is_joined());
    assert_eq!(join_requests(&mut h), vec![(Duration::ZERO, addr("seed"))]);

    // The same for seeds given by address.
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join(h.now, &[addr("me")]);
    assert!(h.swim.is_joined());
}

#[test]
fn join_retry_max_below_the_interval_is_refused() {
    let config = Config {
        join_retry_max: Duration::from_secs(1),
        ..Config::lan()
    };
    let err = config.validate().unwrap_err();
    assert_eq!(err.field, "join_retry_max");
}
