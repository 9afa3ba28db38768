//! Certificates rotated live ([`Node::reload_identity`]): no restart, nobody suspected,
//! nothing called forged, every key/value write delivered. Every wait is for a condition
//! under a deadline.

use quicswim_testkit as common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::*;
use quicswim::protocol::{CommandError, Event, State};
use quicswim::tls::{CertAuthority, Identity};
use quicswim::Node;
use tokio::sync::broadcast::error::RecvError;

/// A new identity for `who`, newer than the one [`identity`] issued (which begins an hour
/// before it was made): it begins half an hour ago.
fn rotated(ca: &CertAuthority, who: &str) -> Identity {
    let now = SystemTime::now();
    let issued = ca
        .issue_valid_between(
            &name(who),
            &[Ipv4Addr::LOCALHOST.into()],
            now - Duration::from_secs(1_800),
            now + Duration::from_secs(86_400),
        )
        .expect("issue the rotated certificate");
    Identity::from_pem(ca.cert_pem(), &issued.cert_pem, &issued.key_pem)
        .expect("the rotated certificate loads")
}

fn serial(node: &Node, of: &str) -> Option<String> {
    node.certificate_info(&name(of)).map(|c| c.serial)
}

/// Every Suspect or Dead event any of `nodes` raises from now on, as `observer: member`.
fn watch_failures(nodes: &[Node]) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    for node in nodes {
        let mut events = node.events();
        let (seen, observer) = (seen.clone(), node.name().to_string());
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Suspect(m) | Event::Dead(m)) => {
                        seen.lock().unwrap().push(format!("{observer}: {}", m.name));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        seen.lock().unwrap().push(format!("{observer}: lagged {n}"));
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_rotates_its_certificate_live_while_writes_go_on() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 5).await;
    let failures = watch_failures(&nodes);

    // Each node writes a new key every 20 ms until told to stop; `made` counts them.
    let stop = Arc::new(AtomicBool::new(false));
    let made: Arc<Vec<AtomicUsize>> = Arc::new(nodes.iter().map(|_| AtomicUsize::new(0)).collect());
    let mut writers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let (node, stop, made) = (node.clone(), stop.clone(), made.clone());
        writers.push(tokio::spawn(async move {
            let mut written = BTreeMap::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) && i < 5_000 {
                let (key, value) = (format!("k{i}"), format!("v{i}").into_bytes());
                match node.set(&key, value.clone()).await {
                    Ok(_) => {
                        written.insert(key, value);
                        i += 1;
                        made[n].fetch_add(1, Ordering::Relaxed);
                    }
                    // Pushback while the spread is slow: tried again at the next tick, and
                    // `writes_past` still wants ten more writes on every node.
                    Err(quicswim::node::Error::Command(CommandError::Backlogged { .. })) => {}
                    Err(e) => panic!("write {key}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await; // write pacing
            }
            (node.name().clone(), written)
        }));
    }
    // Writes are going on before the first rotation and after the last.
    let writes_past = |floor: Vec<usize>| {
        let made = made.clone();
        async move {
            eventually("ten more writes on every node", || {
                let (made, floor) = (&made, &floor);
                async move {
                    made.iter()
                        .zip(floor)
                        .all(|(m, f)| m.load(Ordering::Relaxed) >= f + 10)
                }
            })
            .await;
        }
    };
    writes_past(vec![0; nodes.len()]).await;

    for node in &nodes {
        let who = node.name().to_string();
        let before = serial(node, &who).expect("own certificate held");
        node.reload_identity(&rotated(&ca, &who))
            .await
            .expect("the rotated identity is taken");
        let after = serial(node, &who).expect("own certificate held");
        assert_ne!(before, after, "{who} still presents its old certificate");
        eventually(&format!("{who}'s new certificate held everywhere"), || {
            let (nodes, who, after) = (&nodes, &who, &after);
            async move {
                nodes
                    .iter()
                    .all(|n| serial(n, who).as_deref() == Some(after.as_str()))
            }
        })
        .await;
    }

    writes_past(made.iter().map(|m| m.load(Ordering::Relaxed)).collect()).await;
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for w in writers {
        written.push(w.await.expect("writer"));
    }
    eventually("every write on every node", || {
        let (nodes, written) = (&nodes, &written);
        async move {
            for node in nodes {
                let held: BTreeMap<(String, String), Vec<u8>> = node
                    .kv_entries()
                    .await
                    .expect("node runs")
                    .into_iter()
                    .map(|e| ((e.owner.to_string(), e.key), e.value))
                    .collect();
                for (owner, keys) in written {
                    for (key, value) in keys {
                        if held.get(&(owner.to_string(), key.clone())) != Some(value) {
                            return false;
                        }
                    }
                }
            }
            true
        }
    })
    .await;

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "suspected during the rotation: {failures:?}"
    );
    for node in &nodes {
        let forged = node.metrics().await.expect("node runs").core.forged;
        assert_eq!(
            forged.total(),
            0,
            "{} counted forgeries: {forged:?}",
            node.name()
        );
    }

    // A node started now meets only the new certificates in its handshakes and its join,
    // and still checks what the others signed before rotating.
    let late = start(identity(&ca, "node-5"), vec![nodes[2].addr()]).await;
    wait_all("the late node in", &[&late], all_alive(6)).await;
    for node in &nodes {
        let who = node.name().to_string();
        assert_eq!(
            serial(&late, &who),
            serial(node, &who),
            "{who} at the late node"
        );
    }
    eventually("every write at the late node", || {
        let (late, written) = (&late, &written);
        async move {
            let held = late.kv_entries().await.expect("node runs").len();
            held >= written.iter().map(|(_, w)| w.len()).sum::<usize>()
        }
    })
    .await;
    let forged = late.metrics().await.expect("node runs").core.forged;
    assert_eq!(
        forged.total(),
        0,
        "the late node counted forgeries: {forged:?}"
    );
    late.shutdown().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_for_another_node_is_refused_and_the_old_one_stays() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let nodes = start_alive_cluster(&ca, 2).await;
    let before = serial(&nodes[0], "node-0");
    let err = nodes[0]
        .reload_identity(&rotated(&ca, "node-1"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("it names node-1, and this node is node-0"),
        "{err}"
    );
    assert_eq!(serial(&nodes[0], "node-0"), before);
    // Still a member, still presenting its certificate: a new node joins through it.
    let late = start(identity(&ca, "node-2"), vec![nodes[0].addr()]).await;
    wait_all(
        "the late node in",
        &[&late, &nodes[0], &nodes[1]],
        all_alive(3),
    )
    .await;
    assert_eq!(serial(&late, "node-0"), before);
    late.shutdown().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_list_taken_live_cuts_the_member_it_names_off() {
    let ca = CertAuthority::generate("test cluster").unwrap();
    let ids = identities(&ca, 3);
    let nodes = start_alive_cluster_of(&ids).await;
    let refs: Vec<&Node> = nodes.iter().collect();

    let listed = serial(&nodes[0], "node-2").expect("node-2's certificate held");
    let crl = ca.revocation_list(&[&listed], 7).unwrap();
    for (node, id) in nodes.iter().zip(&ids).take(2) {
        let with_list = id.clone().with_crls_pem(&crl, "test crl").unwrap();
        node.reload_identity(&with_list).await.unwrap();
        assert_eq!(
            serial(node, "node-2"),
            None,
            "{} still holds it",
            node.name()
        );
    }
    // Its connections are closed and its handshakes refused: the two others lose it, and
    // count its dials as revoked.
    wait_all("node-2 failed at node-0 and node-1", &refs[..2], |m| {
        state_of(m, "node-2").is_some_and(|(s, _)| s == State::Dead)
    })
    .await;
    for node in &nodes[..2] {
        // A list from the files is banned and passed on as one handed to `revoke` is.
        let metrics = node.metrics().await.unwrap();
        assert_eq!(metrics.core.revocations_taken, 1, "at {}", node.name());
        assert!(node.banned(&name("node-2")).is_some(), "at {}", node.name());
    }
    // node-2, still running, dials them again (it is declared Dead at once, before it
    // needs to): refused as revoked.
    eventually("a revoked handshake counted", || async {
        let mut total = 0;
        for node in &nodes[..2] {
            total += node.metrics().await.unwrap().transport.refused.revoked;
        }
        total >= 1
    })
    .await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_before_a_rotation_reaches_nodes_that_join_after_the_old_certificate_expires()
{
    let ca = CertAuthority::generate("test cluster").unwrap();
    // node-0's first certificate runs out a few seconds from now; it rotates before then.
    let now = SystemTime::now();
    let short = ca
        .issue_valid_between(
            &name("node-0"),
            &[Ipv4Addr::LOCALHOST.into()],
            now - Duration::from_secs(3_600),
            now + Duration::from_secs(8),
        )
        .unwrap();
    let first = Identity::from_pem(ca.cert_pem(), &short.cert_pem, &short.key_pem).unwrap();
    let ids = vec![first, identity(&ca, "node-1")];
    let nodes = start_alive_cluster_of(&ids).await;
    let owner = name("node-0");
    for i in 0..5 {
        nodes[0]
            .set(&format!("key-{i}"), format!("value-{i}").into_bytes())
            .await
            .unwrap();
    }
    nodes[0].delete("key-4").await.unwrap();
    eventually("node-0's data at node-1", || async {
        nodes[1].get(&owner, "key-3").await.unwrap().is_some()
            && nodes[1].get(&owner, "key-4").await.unwrap().is_none()
    })
    .await;
    nodes[0]
        .reload_identity(&rotated(&ca, "node-0"))
        .await
        .unwrap();
    // The old certificate expires: records checked with it only are no longer checkable.
    eventually("the first certificate expired", || async {
        SystemTime::now() > now + Duration::from_secs(9)
    })
    .await;
    // A node that joins now, through node-1, gets every entry node-0 wrote before rotating.
    let late = start(identity(&ca, "node-2"), vec![nodes[1].addr()]).await;
    eventually("node-0's data at the late node", || async {
        let mut all = true;
        for i in 0..4 {
            let want = format!("value-{i}").into_bytes();
            all &= late.get(&owner, &format!("key-{i}")).await.unwrap() == Some(want);
        }
        all
    })
    .await;
    assert_eq!(late.get(&owner, "key-4").await.unwrap(), None);
    let forged = late.metrics().await.unwrap().core.forged;
    assert_eq!(
        forged.total(),
        0,
        "the late node counted forgeries: {forged:?}"
    );
    late.shutdown().await;
    shutdown_all(&nodes).await;
}
