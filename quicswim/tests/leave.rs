//! Graceful leave through the library: confirmed by a member that holds the leaver Left and
//! its keys, or ended by the timeout. Every wait is for a condition under a deadline.

use quicswim_testkit as common;

use std::time::{Duration, Instant};

use common::*;
use quicswim::protocol::State;
use quicswim::tls::CertAuthority;
use quicswim::{LeaveOutcome, StopReason};

/// What a leave may take beyond its timeout on a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_is_confirmed_by_a_member_holding_the_last_write() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 3).await;
    nodes[2].set("last", b"words".to_vec()).await.unwrap();
    let outcome = nodes[2]
        .leave_with_timeout(Duration::from_secs(5))
        .await
        .unwrap();
    let LeaveOutcome::Confirmed { by } = outcome else {
        panic!("not confirmed: {outcome:?}");
    };
    let by = nodes.iter().find(|n| *n.name() == by).expect("a member");
    // The confirming member has both, the moment the leave returns.
    let members = by.members().await.unwrap();
    assert_eq!(state_of(&members, "node-2").map(|s| s.0), Some(State::Left));
    assert_eq!(
        by.get(nodes[2].name(), "last").await.unwrap().as_deref(),
        Some(&b"words"[..])
    );
    assert!(nodes[2].leave().await.is_err(), "a second leave: stopped");
    shutdown_all(&nodes[..2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_with_nobody_answering_ends_at_the_timeout() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 3).await;
    shutdown_all(&nodes[..2]).await;
    let started = Instant::now();
    let outcome = nodes[2]
        .leave_with_timeout(Duration::from_millis(800))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(outcome, LeaveOutcome::TimedOut);
    // The upper bound only says it did not hang: a loaded CI machine is slow.
    assert!(
        took >= Duration::from_millis(750) && took < Duration::from_millis(800) + SLACK,
        "{took:?}"
    );
    assert_eq!(
        nodes[2].stopped().await,
        StopReason::Left(LeaveOutcome::TimedOut)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_alone_leaves_at_once() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let node = start(identity(&ca, "node-0"), vec![]).await;
    let started = Instant::now();
    // A timeout far above the bound below: only an early end meets it.
    let outcome = node
        .leave_with_timeout(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(outcome, LeaveOutcome::Alone);
    assert!(started.elapsed() < SLACK, "{:?}", started.elapsed());
    assert_eq!(node.stopped().await, StopReason::Left(LeaveOutcome::Alone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_too_large_to_add_does_not_panic() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let node = start(identity(&ca, "node-0"), vec![]).await;
    let outcome = node.leave_with_timeout(Duration::MAX).await.unwrap();
    assert_eq!(outcome, LeaveOutcome::Alone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_is_told_from_a_leave() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let node = start(identity(&ca, "node-0"), vec![]).await;
    node.shutdown().await;
    assert_eq!(node.stopped().await, StopReason::Shutdown);
}
