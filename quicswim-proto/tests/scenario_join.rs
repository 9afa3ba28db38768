//! Scenario tests of joining on one core: the retry backoff, seeds resolved by the caller for
//! every attempt, a node whose seeds lead only to itself, and a deliberate first node.
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
    h.swim.join_resolving(h.now, false);
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
fn a_node_whose_seeds_lead_only_to_itself_keeps_looking_until_a_member_joins_it() {
    let first = Config::lan().join_retry_interval;
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join_resolving(h.now, false);
    assert_eq!(h.swim.poll_join_attempt(), Some(1));
    h.swim.handle_seed_addrs(&[addr("me")]);
    h.pump();
    assert!(!h.swim.is_joined(), "itself is no cluster");
    assert!(h.swim.seeds_found_only_self());
    assert!(join_requests(&mut h).is_empty());
    // The names are resolved again at the next attempt, and the next.
    h.run_until(h.t0 + first);
    assert_eq!(h.swim.poll_join_attempt(), Some(2));
    h.swim.handle_seed_addrs(&[addr("me")]);
    h.run_for(Duration::from_secs(60));
    assert!(h.swim.poll_join_attempt().is_some());
    assert!(!h.swim.is_joined());

    // Another node that found this one asks it to join: answered, and that is the join.
    let request = push_pull(true, "a", vec![alive("a", 0)]);
    let answer = h.stream("a", &request).expect("a valid request");
    assert!(answer.is_some(), "an unjoined node answers join requests");
    assert!(h.swim.is_joined());
    assert!(!h.swim.is_seeking_join());
    assert!(!h.swim.seeds_found_only_self());
    assert_eq!(
        h.state_of("a"),
        Some((0, quicswim_proto::protocol::State::Alive))
    );
    h.take_sent();
    h.run_for(Duration::from_secs(120));
    assert_eq!(h.swim.poll_join_attempt(), None, "joined: no more attempts");
    assert!(join_requests(&mut h).is_empty());

    // Listed among others, its own address is skipped and the others are asked.
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join_resolving(h.now, false);
    let _ = h.swim.poll_join_attempt();
    h.swim.handle_seed_addrs(&[addr("me"), addr("seed")]);
    h.pump();
    assert!(!h.swim.is_joined());
    assert!(!h.swim.seeds_found_only_self());
    assert_eq!(join_requests(&mut h), vec![(Duration::ZERO, addr("seed"))]);

    // The same for seeds given by address: retried, not a cluster of one.
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join(h.now, &[addr("me")]);
    assert!(!h.swim.is_joined());
    assert!(h.swim.seeds_found_only_self());
    h.run_for(Duration::from_secs(10));
    assert!(h.swim.is_seeking_join());
}

#[test]
fn a_first_node_starts_the_cluster_and_asks_its_seeds_until_it_has_a_live_peer() {
    let first = Config::lan().join_retry_interval;
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join_resolving(h.now, true);
    assert!(
        h.swim.is_joined(),
        "a first node is a cluster from the start"
    );
    assert_eq!(h.swim.poll_join_attempt(), Some(1));
    h.swim.handle_seed_addrs(&[addr("me")]);
    h.run_until(h.t0 + first);
    assert_eq!(h.swim.poll_join_attempt(), Some(2));
    // Another first node's address appears: asked, and its answer merges the two.
    h.swim.handle_seed_addrs(&[addr("me"), addr("other")]);
    h.pump();
    assert_eq!(join_requests(&mut h), vec![(first, addr("other"))]);
    let reply = push_pull_reply(vec![alive("other", 0)]);
    assert_eq!(h.stream("other", &reply), Ok(None));
    assert!(!h.swim.is_seeking_join());
    h.run_for(Duration::from_secs(120));
    assert_eq!(
        h.swim.poll_join_attempt(),
        None,
        "a live peer: no more attempts"
    );

    // A live peer learned any other way (gossip) ends the attempts too.
    let mut h = Harness::unjoined(Config::lan());
    h.swim.join_resolving(h.now, true);
    let _ = h.swim.poll_join_attempt();
    h.gossip("a", &[alive("a", 0)]).expect("valid datagram");
    assert!(!h.swim.is_seeking_join());
    h.run_for(Duration::from_secs(120));
    assert_eq!(h.swim.poll_join_attempt(), None);
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
