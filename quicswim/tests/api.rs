//! The control API over real nodes on 127.0.0.1: JSON shapes, states, health and metrics.
//! Every wait is for a condition under a deadline.

use quicswim_testkit as common;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use quicswim::protocol::NodeName;
use quicswim::tls::CertAuthority;
use quicswim::{api, Node, NodeConfig};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use common::{fast, get, metric, DEADLINE};

/// A node with its API server.
struct Served {
    node: Node,
    api: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

async fn start(ca: &CertAuthority, name: &str, seeds: Vec<SocketAddr>, meta: &[u8]) -> Served {
    let name = NodeName::new(name).unwrap();
    let identity = ca
        .identity(&name, &[Ipv4Addr::LOCALHOST.into()], 1)
        .unwrap();
    let config = NodeConfig {
        protocol: fast(),
        meta: meta.to_vec(),
        ..NodeConfig::new(identity, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), seeds)
    };
    let node = Node::start(config).await.expect("node starts");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let api = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(node.clone(), listener, async move {
        let _ = stopped.await;
    }));
    Served {
        node,
        api,
        stop: Some(stop),
        server,
    }
}

async fn cluster(ca: &CertAuthority) -> Vec<Served> {
    let a = start(ca, "node-a", vec![], b"zone=a").await;
    let seed = a.node.addr();
    let b = start(ca, "node-b", vec![seed], &[0xff, b'x']).await;
    let c = start(ca, "node-c", vec![seed], b"").await;
    vec![a, b, c]
}

async fn members(api: SocketAddr) -> Vec<Value> {
    let (status, body) = get(api, "/v1/members").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .expect("JSON")
        .as_array()
        .expect("an array")
        .clone()
}

fn state_of(members: &[Value], name: &str) -> Option<String> {
    members
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["state"].as_str())
        .map(str::to_string)
}

/// Polls `check` until it returns true, panicking with `what` at the deadline.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval, not a settle wait
    }
}

async fn wait_all_alive(nodes: &[Served]) {
    for n in nodes {
        wait_for("three alive members over the API", || async {
            let m = members(n.api).await;
            m.len() == 3 && m.iter().all(|m| m["state"] == "alive")
        })
        .await;
    }
}

async fn stop_all(nodes: Vec<Served>) {
    for mut n in nodes {
        n.node.shutdown().await;
        let _ = n.stop.take().map(|s| s.send(()));
        let _ = tokio::time::timeout(DEADLINE, n.server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_health_show_a_running_cluster() {
    let ca = CertAuthority::generate("api test").unwrap();
    let nodes = cluster(&ca).await;
    wait_all_alive(&nodes).await;

    let list = members(nodes[1].api).await;
    let names: Vec<&str> = list.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"], "sorted by name");
    for (m, n) in list.iter().zip(&nodes) {
        let object = m.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "addr",
                "cert_not_after",
                "cert_serial",
                "incarnation",
                "meta",
                "name",
                "state"
            ]
        );
        assert_eq!(m["addr"], n.node.addr().to_string());
        assert!(m["incarnation"].is_u64());
        // The certificate node-b holds for each member is the one the member presents.
        let own = n.node.certificate_info(n.node.name()).unwrap();
        assert_eq!(m["cert_serial"], own.serial.as_str());
        assert!(
            own.serial.len() >= 2 && own.serial.chars().all(|c| c.is_ascii_hexdigit()),
            "{own:?}"
        );
        let not_after = humantime::parse_rfc3339(m["cert_not_after"].as_str().unwrap()).unwrap();
        let left = not_after
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        // Test certificates are issued for one day.
        assert!(left <= Duration::from_secs(86_400), "{left:?}");
        assert!(left > Duration::from_secs(86_400 - 600), "{left:?}");
    }
    assert_eq!(list[0]["meta"], "zone=a");
    assert_eq!(list[1]["meta"], "\u{fffd}x", "invalid UTF-8 is replaced");
    assert_eq!(list[2]["meta"], "");

    let (status, body) = get(nodes[0].api, "/health").await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["name"], "node-a");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["state"], "alive");
    assert_eq!(health["members_alive"], 3);

    let (status, body) = get(nodes[0].api, "/v1/nothing-here").await;
    assert_eq!(status, 404);
    let error: Value = serde_json::from_str(&body).expect("a JSON error");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("/v1/nothing-here"),
        "{body}"
    );
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_counters_that_move() {
    let ca = CertAuthority::generate("api test").unwrap();
    let nodes = cluster(&ca).await;
    wait_all_alive(&nodes).await;
    let api = nodes[0].api;

    let (status, first) = get(api, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "quicswim_members",
        "quicswim_probes_sent_total",
        "quicswim_probes_failed_total",
        "quicswim_indirect_probes_sent_total",
        "quicswim_stream_probes_sent_total",
        "quicswim_suspicions_raised_total",
        "quicswim_refutations_total",
        "quicswim_core_datagrams_sent_total",
        "quicswim_core_datagrams_received_bytes_total",
        "quicswim_transport_datagrams_sent_total",
        "quicswim_transport_received_bytes_total",
        "quicswim_transport_udp_sent_bytes_total",
        "quicswim_transport_udp_datagrams_sent_total",
        "quicswim_decode_errors_total",
        "quicswim_name_mismatches_total",
        "quicswim_handshakes_refused_total",
        "quicswim_push_pulls_started_total",
        "quicswim_push_pulls_answered_total",
        "quicswim_health_multiplier",
        "quicswim_pending_broadcasts",
        "quicswim_connections_open",
    ] {
        assert!(
            first.contains(&format!("# TYPE {name} ")),
            "no TYPE line for {name}"
        );
        assert!(metric(&first, name, None).is_some(), "no sample of {name}");
    }
    assert_eq!(
        metric(&first, "quicswim_members", Some("state=\"alive\"")),
        Some(3.0)
    );
    assert!(metric(&first, "quicswim_connections_open", None).unwrap() >= 1.0);
    // node-b and node-c joined through node-a: node-a answered their full-state exchanges.
    assert!(metric(&first, "quicswim_push_pulls_answered_total", None).unwrap() >= 2.0);

    // On the wire, QUIC's headers, acknowledgements and handshakes come on top of payload.
    assert!(
        metric(&first, "quicswim_transport_udp_sent_bytes_total", None).unwrap()
            > metric(&first, "quicswim_transport_sent_bytes_total", None).unwrap()
    );

    // Probing goes on: the counters grow between scrapes.
    let probes = metric(&first, "quicswim_probes_sent_total", None).unwrap();
    let bytes = metric(&first, "quicswim_transport_sent_bytes_total", None).unwrap();
    wait_for("probe and byte counters to grow", || async {
        let (_, text) = get(api, "/metrics").await;
        metric(&text, "quicswim_probes_sent_total", None).unwrap() > probes
            && metric(&text, "quicswim_transport_sent_bytes_total", None).unwrap() > bytes
    })
    .await;

    // A crash shows up in the member gauges and the suspicion counter.
    nodes[2].node.shutdown().await;
    wait_for("node-c dead in node-a's metrics", || async {
        let (_, text) = get(api, "/metrics").await;
        metric(&text, "quicswim_members", Some("state=\"dead\"")) == Some(1.0)
            && metric(&text, "quicswim_members", Some("state=\"alive\"")) == Some(2.0)
    })
    .await;
    let (_, text) = get(nodes[1].api, "/metrics").await;
    let suspicions = metric(&text, "quicswim_suspicions_raised_total", None).unwrap();
    let (_, text) = get(api, "/metrics").await;
    let suspicions = suspicions + metric(&text, "quicswim_suspicions_raised_total", None).unwrap();
    assert!(suspicions >= 1.0, "nobody suspected the crashed node");
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_describe_the_build_and_the_process() {
    let ca = CertAuthority::generate("api test").unwrap();
    let served = start(&ca, "node-a", vec![], b"").await;
    let answer = common::request(served.api, "GET", "/metrics", None, Vec::new()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(answer.body).expect("UTF-8 body");
    assert!(
        text.contains("# TYPE quicswim_build_info gauge\n"),
        "{text}"
    );
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        metric(&text, "quicswim_build_info", Some(&version)),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "quicswim_node_info", Some("name=\"node-a\"")),
        Some(1.0)
    );
    if cfg!(target_os = "linux") {
        let get = |name| metric(&text, name, None).unwrap_or_else(|| panic!("no {name}"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(get("process_cpu_seconds_total") > 0.0, "the node has run");
        let resident = get("process_resident_memory_bytes");
        assert!(resident > 1_000_000.0, "resident memory {resident}");
        assert!(get("process_virtual_memory_bytes") >= resident);
        let open = get("process_open_fds");
        assert!(open >= 3.0, "open fds {open}");
        assert!(get("process_max_fds") >= open);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = get("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "started {started}, now {now}"
        );
    }
    stop_all(vec![served]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_node_answers_503_and_others_show_it_left() {
    let ca = CertAuthority::generate("api test").unwrap();
    let mut nodes = cluster(&ca).await;
    wait_all_alive(&nodes).await;

    nodes[2].node.leave().await.unwrap();
    let (status, body) = get(nodes[2].api, "/health").await;
    assert_eq!(status, 503, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "stopped");
    assert_eq!(health["name"], "node-c");
    let (status, _) = get(nodes[2].api, "/v1/members").await;
    assert_eq!(status, 503);

    for n in &nodes[..2] {
        wait_for("node-c left over the API", || async {
            state_of(&members(n.api).await, "node-c").as_deref() == Some("left")
        })
        .await;
    }
    let (_, body) = get(nodes[0].api, "/health").await;
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["members_alive"], 2);

    // The server stops when its shutdown future completes.
    let mut left = nodes.pop().unwrap();
    let _ = left.stop.take().unwrap().send(());
    let served = tokio::time::timeout(DEADLINE, left.server)
        .await
        .expect("the server stops after its shutdown signal");
    served.unwrap().unwrap();
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_node_is_ready_alone_and_its_monitor_ends_with_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let ca = CertAuthority::generate("api test").unwrap();
    let identity = ca
        .identity(
            &NodeName::new("first").unwrap(),
            &[Ipv4Addr::LOCALHOST.into()],
            1,
        )
        .unwrap();
    let config = NodeConfig {
        protocol: fast(),
        bootstrap: true,
        ..NodeConfig::new(identity, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), vec![])
    };
    let node = Node::start(config).await.expect("node starts");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(node.clone(), listener, async move {
        let _ = stopped.await;
    }));

    let (status, body) = get(addr, "/ready").await;
    assert_eq!(status, 200, "{body}");
    let answer = common::request(addr, "POST", "/v1/force-leave/first", None, vec![]).await;
    assert_eq!(answer.status, 400, "this node itself");
    let answer = common::request(addr, "POST", "/v1/force-leave/nobody", None, vec![]).await;
    assert_eq!(answer.status, 404);
    assert!(answer.error().contains("nobody"), "{}", answer.error());
    let (status, body) = get(addr, "/v1/members?state=zombie").await;
    assert_eq!(status, 400, "{body}");

    // A monitor stream, by hand: HTTP/1.1, chunked, open until the server stops.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/monitor HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, "\r\n\r\n").await;
    let head = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("application/x-ndjson"), "{head}");
    node.set("color", b"blue".to_vec()).await.unwrap();
    read_until(
        &mut stream,
        &mut seen,
        r#""type":"kv","owner":"first","key":"color"}"#,
    )
    .await;

    // Stopping the server ends the stream (the last chunk), and the server then finishes.
    let _ = stop.send(());
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("the stream ends when the server stops")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&rest).ends_with("0\r\n\r\n"),
        "{rest:?}"
    );
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    node.shutdown().await;
}

/// Reads from `stream` into `seen` until `wanted` is in it.
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, wanted: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(wanted) {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {wanted:?} in {:?}", String::from_utf8_lossy(seen)))
            .unwrap();
        assert!(
            n > 0,
            "closed before {wanted:?}: {:?}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}
