//! Helpers shared by the workspace's integration tests: certificates in memory, fast timings,
//! waiting for conditions under a deadline, and talking to the control API. Not published.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use quicswim::protocol::{Config, Member, NodeName, State, ValidConfig};
use quicswim::tls::{CertAuthority, Identity};
use quicswim::{Node, NodeConfig};

pub mod dns;
pub mod flood;

/// Longest any one condition may take; generous so a loaded CI machine does not flake.
pub const DEADLINE: Duration = Duration::from_secs(40);

pub fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("test names are valid")
}

/// A quick profile so that detection takes seconds, not tens of seconds.
pub fn fast() -> ValidConfig {
    Config {
        probe_interval: Duration::from_millis(300),
        probe_timeout: Duration::from_millis(150),
        gossip_interval: Duration::from_millis(50),
        suspicion_mult: 3,
        indirect_checks: 2,
        join_retry_interval: Duration::from_millis(500),
        reconnect_interval: Duration::from_secs(2),
        ..Config::local()
    }
    .validate()
    .expect("the fast test profile is valid")
}

pub fn identity(ca: &CertAuthority, n: &str) -> Identity {
    ca.identity(&name(n), &[Ipv4Addr::LOCALHOST.into()], 1)
        .expect("issue test certificate")
}

pub async fn start(identity: Identity, seeds: Vec<SocketAddr>) -> Node {
    let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = NodeConfig {
        protocol: fast(),
        ..NodeConfig::new(identity, bind, seeds)
    };
    Node::start(config).await.expect("node starts")
}

pub async fn start_cluster(ca: &CertAuthority, n: usize) -> Vec<Node> {
    start_cluster_of(&identities(ca, n)).await
}

/// `node-0` .. `node-{n-1}`, issued by `ca`.
pub fn identities(ca: &CertAuthority, n: usize) -> Vec<Identity> {
    (0..n).map(|i| identity(ca, &format!("node-{i}"))).collect()
}

/// A node for each of `ids`, the first alone and the others seeded with it.
pub async fn start_cluster_of(ids: &[Identity]) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::with_capacity(ids.len());
    for id in ids {
        let seeds = nodes.first().map(Node::addr).into_iter().collect();
        nodes.push(start(id.clone(), seeds).await);
    }
    nodes
}

/// [`start_cluster_of`], then waits until every node holds them all Alive.
pub async fn start_alive_cluster_of(ids: &[Identity]) -> Vec<Node> {
    let nodes = start_cluster_of(ids).await;
    let n = nodes.len();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_all(&format!("{n} nodes alive everywhere"), &refs, all_alive(n)).await;
    nodes
}

/// [`start_cluster`], then waits until every node holds all `n` Alive.
pub async fn start_alive_cluster(ca: &CertAuthority, n: usize) -> Vec<Node> {
    start_alive_cluster_of(&identities(ca, n)).await
}

/// Shuts every node down, one after the other.
pub async fn shutdown_all<'a>(nodes: impl IntoIterator<Item = &'a Node>) {
    for node in nodes {
        node.shutdown().await;
    }
}

pub fn state_of(members: &[Member], who: &str) -> Option<(State, u64)> {
    members
        .iter()
        .find(|m| m.name.as_str() == who)
        .map(|m| (m.state, m.incarnation.0))
}

/// Polls `cond` over every node's member list until it holds for all, or fails at DEADLINE.
pub async fn wait_all(what: &str, nodes: &[&Node], cond: impl Fn(&[Member]) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut ok = true;
        for node in nodes {
            let members = node.members().await.expect("node is running");
            if !cond(&members) {
                ok = false;
                break;
            }
        }
        if ok {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let mut views = String::new();
            for node in nodes {
                let members = node.members().await.unwrap_or_default();
                let view: Vec<String> = members
                    .iter()
                    .map(|m| format!("{}={}@{}", m.name, m.state, m.incarnation))
                    .collect();
                views.push_str(&format!("\n  {}: {}", node.name(), view.join(" ")));
            }
            panic!("timed out waiting for {what}; views:{views}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval, not a settle wait
    }
}

pub fn all_alive(n: usize) -> impl Fn(&[Member]) -> bool {
    move |members: &[Member]| members.iter().filter(|m| m.state == State::Alive).count() == n
}

/// `GET path` on the API at `addr`: the status and the body as text. Panics if the exchange
/// fails or takes over 10 s.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let answer = request(addr, "GET", path, None, Vec::new()).await;
    let body = String::from_utf8(answer.body).expect("UTF-8 body");
    (answer.status, body)
}

/// The value of the first sample of `name` whose labels include `label` (`key="value"`), in
/// a Prometheus text exposition.
pub fn metric(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let series = line.rsplit_once(' ').map_or(*line, |(s, _)| s);
            let (metric_name, labels) = series.split_once('{').unwrap_or((series, ""));
            metric_name == name && label.is_none_or(|l| labels.contains(l))
        })
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
}

/// One HTTP answer: its status, `Content-Type`, other headers and body.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON; panics (showing it) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` text of a JSON error body.
    pub fn error(&self) -> String {
        let json = self.json();
        json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text in {json}"))
            .to_string()
    }
}

/// `METHOD path` with `body` on the API at `addr`. Panics if the exchange fails or takes over
/// 10 s.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let headers: &[(&str, &str)] = match content_type {
        Some(content_type) => &[("content-type", content_type)],
        None => &[],
    };
    request_with(addr, method, path, headers, body).await
}

/// [`request`] with any request headers (`Authorization`, `Host`, ...).
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let exchange = async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
        let mut builder = client
            .request(method, format!("http://{addr}{path}"))
            .body(body);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let answer = builder.send().await.expect("an answer");
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let headers = answer.headers().clone();
        let body = answer.bytes().await.expect("a body");
        Answer {
            status,
            content_type,
            headers,
            body: body.to_vec(),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} on {addr} took over 10 s"))
}

/// A node's control API served on 127.0.0.1, stopped when dropped.
pub struct ApiServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ApiServer {
    pub async fn start(node: &Node) -> ApiServer {
        ApiServer::start_with(node, quicswim::api::ServeOptions::default()).await
    }

    /// [`ApiServer::start`] with the server's options (token, hosts).
    pub async fn start_with(node: &Node, options: quicswim::api::ServeOptions) -> ApiServer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the API");
        let addr = listener.local_addr().expect("bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(quicswim::api::serve_with(
            node.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
            options,
        ));
        ApiServer {
            addr,
            stop: Some(stop),
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `check` until it returns true; panics with `what` at DEADLINE.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval, not a settle wait
    }
}
