//! No plaintext on the wire: key/value data and user events cross the network only encrypted.
//!
//! ```text
//!   aa-writer --+                          +-- per client: own socket --+
//!               +--> relay 127.0.0.1:R ---+                             +--> zz-target
//!   bb-peer  ---+    (records every byte   +-- per client: own socket --+    (advertises R)
//!                     both ways)
//! ```
//!
//! zz-target advertises the relay's address, so the others reach it only through the relay
//! (its real port is known to nobody else), and because their names sort first, a connection
//! they dialled wins any dial race. The test checks that zz-target never dialled anyone
//! itself, so every byte it exchanged crossed the relay; then that the recording holds
//! neither the value, nor the key, nor the event's name or payload.

use quicswim_testkit as common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use common::*;
use quicswim::{Node, NodeConfig};
use tokio::net::UdpSocket;
use tokio::task::{JoinHandle, JoinSet};

const KEY: &str = "relay-test-key-name-4c9e1b7f";
const VALUE: &str = "relay-test-value-marker-8f2d6a03";
const EVENT_NAME: &str = "relay-test-event-name-a51c";
const EVENT_PAYLOAD: &str = "relay-test-event-payload-e07b93d4";
/// A key whose value is far over a datagram, so it travels on a QUIC stream.
const BULK_KEY: &str = "relay-test-bulk";

/// Which way a datagram went through the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    ToTarget,
    FromTarget,
}

/// Every byte the relay forwarded, concatenated per client and direction (so that a marker
/// split across two datagrams of one flow would still be found).
#[derive(Default)]
struct Recording {
    flows: BTreeMap<(SocketAddr, Direction), Vec<u8>>,
    datagrams: usize,
}

impl Recording {
    fn add(&mut self, client: SocketAddr, direction: Direction, bytes: &[u8]) {
        self.flows
            .entry((client, direction))
            .or_default()
            .extend_from_slice(bytes);
        self.datagrams += 1;
    }

    fn bytes(&self, direction: Direction) -> usize {
        self.flows
            .iter()
            .filter(|((_, d), _)| *d == direction)
            .map(|(_, flow)| flow.len())
            .sum()
    }

    /// The flows in which `needle` occurs.
    fn find(&self, needle: &[u8]) -> Vec<(SocketAddr, Direction)> {
        self.flows
            .iter()
            .filter(|(_, flow)| contains(flow, needle))
            .map(|(flow, _)| *flow)
            .collect()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A UDP relay on 127.0.0.1 that forwards to one target and records what passes.
struct Relay {
    front: Arc<UdpSocket>,
    recording: Arc<Mutex<Recording>>,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    async fn bind() -> Relay {
        let front = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the relay");
        Relay {
            front: Arc::new(front),
            recording: Arc::default(),
            task: None,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.front.local_addr().expect("relay address")
    }

    /// Starts forwarding: each client's datagrams go to `target` from a socket of that
    /// client's own, and what comes back on it returns to that client from the front socket.
    fn forward_to(&mut self, target: SocketAddr) {
        let front = self.front.clone();
        let recording = self.recording.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with this task, which aborts every backward task.
            let mut backward = JoinSet::new();
            let mut backs: BTreeMap<SocketAddr, Arc<UdpSocket>> = BTreeMap::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                // A failed receive (an ICMP error for an earlier send) is not the end.
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                recording
                    .lock()
                    .unwrap()
                    .add(client, Direction::ToTarget, &buf[..n]);
                let back = match backs.get(&client) {
                    Some(back) => back.clone(),
                    None => {
                        let back = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                            .await
                            .expect("bind a relay back socket");
                        back.connect(target).await.expect("connect to the target");
                        let back = Arc::new(back);
                        backward.spawn(carry_back(
                            back.clone(),
                            front.clone(),
                            client,
                            recording.clone(),
                        ));
                        backs.insert(client, back.clone());
                        back
                    }
                };
                let _ = back.send(&buf[..n]).await;
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Target -> client, for one client.
async fn carry_back(
    back: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    recording: Arc<Mutex<Recording>>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok(n) = back.recv(&mut buf).await else {
            continue;
        };
        recording
            .lock()
            .unwrap()
            .add(client, Direction::FromTarget, &buf[..n]);
        let _ = front.send_to(&buf[..n], client).await;
    }
}

#[test]
fn search_finds_a_marker_anywhere_in_a_flow() {
    assert!(contains(
        b"xx relay-test-value-marker-8f2d6a03",
        VALUE.as_bytes()
    ));
    assert!(contains(VALUE.as_bytes(), VALUE.as_bytes()));
    assert!(!contains(
        b"relay-test-value-marker-8f2d6a0",
        VALUE.as_bytes()
    ));
    assert!(!contains(b"", VALUE.as_bytes()));
    // Split over two datagrams of one flow: still found.
    let client: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut recording = Recording::default();
    recording.add(client, Direction::ToTarget, b"..relay-test-value-");
    recording.add(client, Direction::ToTarget, b"marker-8f2d6a03..");
    assert_eq!(
        recording.find(VALUE.as_bytes()),
        [(client, Direction::ToTarget)]
    );
}

/// The relay and the search together do catch plaintext: a datagram carrying the marker,
/// echoed back by a plain UDP socket, is found in both directions.
#[tokio::test]
async fn relay_records_plaintext_that_crosses_it() {
    let echo = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let echoing = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let (n, from) = echo.recv_from(&mut buf).await.unwrap();
        echo.send_to(&buf[..n], from).await.unwrap();
    });
    let mut relay = Relay::bind().await;
    relay.forward_to(echo_addr);
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let client_addr = client.local_addr().unwrap();
    client
        .send_to(format!("plain {VALUE}").as_bytes(), relay.addr())
        .await
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(DEADLINE, client.recv_from(&mut buf))
        .await
        .expect("the echo comes back through the relay")
        .unwrap();
    assert_eq!(from, relay.addr());
    assert!(contains(&buf[..n], VALUE.as_bytes()));
    echoing.await.unwrap();
    let recording = relay.recording.lock().unwrap();
    assert_eq!(
        recording.find(VALUE.as_bytes()),
        [
            (client_addr, Direction::ToTarget),
            (client_addr, Direction::FromTarget)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_events_cross_the_network_only_encrypted() {
    let ca = quicswim::tls::CertAuthority::generate("no plaintext test").unwrap();
    let mut relay = Relay::bind().await;
    let target = Node::start(NodeConfig {
        advertise: Some(relay.addr()),
        protocol: fast(),
        ..NodeConfig::new(
            identity(&ca, "zz-target"),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            vec![],
        )
    })
    .await
    .expect("target starts");
    relay.forward_to(target.local_addr());
    let writer = start(identity(&ca, "aa-writer"), vec![relay.addr()]).await;
    let peer = start(identity(&ca, "bb-peer"), vec![relay.addr()]).await;
    let nodes = [&writer, &peer, &target];
    wait_all("3 nodes alive", &nodes, all_alive(3)).await;

    writer.set(KEY, VALUE.as_bytes().to_vec()).await.unwrap();
    let bulk = VALUE.repeat(1500); // ~48 KiB, on a stream
    writer
        .set(BULK_KEY, bulk.clone().into_bytes())
        .await
        .unwrap();
    let seq = writer
        .publish(EVENT_NAME, EVENT_PAYLOAD.as_bytes().to_vec())
        .await
        .unwrap();
    let owner = writer.name().clone();
    eventually("zz-target to hold both values and the event", || async {
        let value = target.get(&owner, KEY).await.unwrap();
        let big = target.get(&owner, BULK_KEY).await.unwrap();
        let events = target.recent_events().await.unwrap();
        value.as_deref() == Some(VALUE.as_bytes())
            && big.as_deref() == Some(bulk.as_bytes())
            && events
                .iter()
                .any(|e| e.origin == owner && e.seq == seq && e.payload == EVENT_PAYLOAD.as_bytes())
    })
    .await;

    // Every connection of the target was dialled to the relay's address, so everything it
    // received (the value, the bulk value, the event) came through the relay.
    let metrics = target.metrics().await.unwrap();
    assert_eq!(
        metrics.transport.dials, 0,
        "zz-target dialled someone directly, bypassing the relay"
    );
    {
        let recording = relay.recording.lock().unwrap();
        let (inbound, outbound) = (
            recording.bytes(Direction::ToTarget),
            recording.bytes(Direction::FromTarget),
        );
        assert!(
            inbound > bulk.len() && outbound > 0,
            "the relay saw too little: {inbound} bytes in, {outbound} out"
        );
        for marker in [KEY, VALUE, EVENT_NAME, EVENT_PAYLOAD] {
            let found = recording.find(marker.as_bytes());
            assert!(
                found.is_empty(),
                "{marker:?} crossed the wire in plaintext in {found:?}"
            );
        }
        eprintln!(
            "relay forwarded {} datagrams, {inbound} bytes in, {outbound} out: no marker found",
            recording.datagrams
        );
    }
    shutdown_all(nodes).await;
}
