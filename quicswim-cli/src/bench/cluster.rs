//! The nodes under test: certificates from one in-memory CA, seeds started first, the rest
//! started all at once by the join phase, a listener per node, and teardown.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};

use super::recorder::{node_name, spawn_listener, Kind, SharedLog};
use super::{BenchConfig, Error, Observer, Phase};
use quicswim::node::NodeMetrics;
use quicswim::protocol::{NodeName, ValidConfig};
use quicswim::tls::{CertAuthority, Identity};
use quicswim::transport::TransportConfig;
use quicswim::{Node, NodeConfig};

/// How often a phase looks at the logs while it waits. The figures come from the event
/// stamps, so this only decides how soon a phase notices it is done.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(5);

/// How long teardown waits for the nodes to close their endpoints.
const TEARDOWN_BOUND: Duration = Duration::from_secs(15);

pub(crate) struct BenchCluster {
    pub size: usize,
    identities: Vec<Identity>,
    protocol: ValidConfig,
    transport: TransportConfig,
    /// `None` until started.
    pub nodes: Vec<Option<Node>>,
    pub logs: Vec<SharedLog>,
    listeners: Vec<JoinHandle<()>>,
    pub seeds: Vec<SocketAddr>,
    /// Nodes crashed on purpose.
    pub crashed: Vec<bool>,
}

fn bind_any() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

impl BenchCluster {
    /// Issues every certificate and starts the seeds, each joining the first; returns once
    /// they all see each other.
    pub async fn setup(config: &BenchConfig, observer: &dyn Observer) -> Result<Self, Error> {
        let ca = CertAuthority::generate("quicswim bench")?;
        let mut identities = Vec::with_capacity(config.nodes);
        for i in 0..config.nodes {
            let name = NodeName::new(node_name(i)).expect("bench node names are DNS labels");
            identities.push(ca.identity(&name, &[Ipv4Addr::LOCALHOST.into()], 1)?);
            if i % 16 == 15 {
                let status = format!("{}/{} certificates", i + 1, config.nodes);
                observer.phase_progress(Phase::Setup, None, &status);
            }
        }
        let mut cluster = Self {
            size: config.nodes,
            identities,
            protocol: config.protocol.clone(),
            transport: config.transport.clone(),
            nodes: vec![None; config.nodes],
            logs: (0..config.nodes)
                .map(|i| SharedLog::new(i, config.nodes))
                .collect(),
            listeners: Vec::new(),
            seeds: Vec::new(),
            crashed: vec![false; config.nodes],
        };
        for i in 0..config.seeds {
            let first = cluster.seeds.first().copied().into_iter().collect();
            let node = cluster.start_one(i, first).await?;
            cluster.seeds.push(node.addr());
        }
        let seeds = config.seeds;
        let together = cluster
            .wait_logs(config.phase_timeout, |logs| {
                logs[..seeds].iter().enumerate().all(|(i, log)| {
                    let log = log.lock();
                    (0..seeds).filter(|m| *m != i).all(|m| log.holds_alive(m))
                })
            })
            .await;
        if !together {
            return Err(Error::Config(format!(
                "the {seeds} seeds did not find each other within {:?}",
                config.phase_timeout
            )));
        }
        Ok(cluster)
    }

    fn node_config(&self, i: usize, seeds: Vec<SocketAddr>) -> NodeConfig {
        NodeConfig {
            protocol: self.protocol.clone(),
            transport: self.transport.clone(),
            meta: b"bench".to_vec(),
            ..NodeConfig::new(self.identities[i].clone(), bind_any(), seeds)
        }
    }

    async fn start_one(&mut self, i: usize, seeds: Vec<SocketAddr>) -> Result<Node, Error> {
        let node = Node::start(self.node_config(i, seeds))
            .await
            .map_err(|source| Error::Node {
                node: node_name(i),
                source,
            })?;
        self.listeners
            .push(spawn_listener(node.events(), self.logs[i].clone()));
        self.nodes[i] = Some(node.clone());
        Ok(node)
    }

    /// Starts nodes `from..` all at once, each joining through the seeds.
    pub async fn start_rest(&mut self, from: usize) -> Result<(), Error> {
        let mut starting = JoinSet::new();
        for i in from..self.size {
            let config = self.node_config(i, self.seeds.clone());
            let log = self.logs[i].clone();
            starting.spawn(async move {
                let node = match Node::start(config).await {
                    Ok(node) => node,
                    Err(source) => return Err((i, source)),
                };
                // Subscribed before this task yields: the first events need a handshake
                // and a round trip, so none is missed.
                let listener = spawn_listener(node.events(), log);
                Ok((i, node, listener))
            });
        }
        let mut first_error = None;
        while let Some(joined) = starting.join_next().await {
            match joined.expect("a node start task does not panic") {
                Ok((i, node, listener)) => {
                    self.nodes[i] = Some(node);
                    self.listeners.push(listener);
                }
                Err((i, source)) => {
                    first_error.get_or_insert(Error::Node {
                        node: node_name(i),
                        source,
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Started nodes that were not crashed, with their index.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.crashed[*i])
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// Waits until `done` holds over the logs, looking every [`CHECK_EVERY`]; false when
    /// `bound` passed first.
    pub async fn wait_logs(&self, bound: Duration, done: impl Fn(&[SharedLog]) -> bool) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            if done(&self.logs) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    /// Every live node's metrics, by index.
    pub async fn metrics(&self) -> Result<Vec<(usize, NodeMetrics)>, Error> {
        let mut out = Vec::with_capacity(self.size);
        for (i, node) in self.live() {
            let m = node.metrics().await.map_err(|source| Error::Node {
                node: node_name(i),
                source,
            })?;
            out.push((i, m));
        }
        Ok(out)
    }

    /// Waits until no live node has updates left to piggyback; false when `bound` passed
    /// first. Asks the nodes every 50 ms.
    pub async fn wait_queues_empty(&self, bound: Duration) -> Result<bool, Error> {
        let deadline = Instant::now() + bound;
        loop {
            let pending: usize = self
                .metrics()
                .await?
                .iter()
                .map(|(_, m)| m.pending_broadcasts)
                .sum();
            if pending == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Suspicions seen on any node about any member but `except`, stamped in `from..to`.
    pub fn suspicions_excluding(&self, except: usize, from: Instant, to: Instant) -> u64 {
        let mut n = 0;
        for log in &self.logs {
            let log = log.lock();
            n += log
                .records
                .iter()
                .filter(|r| r.kind == Kind::Suspect && r.member != except)
                .filter(|r| (from..to).contains(&r.at))
                .count() as u64;
        }
        n
    }

    /// Events the listeners missed.
    pub fn events_lost(&self) -> u64 {
        self.logs.iter().map(|l| l.lock().lost).sum()
    }

    /// Stops every listener and every live node (as crashes: no leave), in parallel.
    pub async fn shutdown(&mut self) {
        for listener in self.listeners.drain(..) {
            listener.abort();
        }
        let mut stopping = JoinSet::new();
        for (_, node) in self.live() {
            let node = node.clone();
            stopping.spawn(async move { node.shutdown().await });
        }
        let all = async { while stopping.join_next().await.is_some() {} };
        // Closing waits for peers to be told; a bound keeps a stuck close from hanging the run.
        let _ = tokio::time::timeout(TEARDOWN_BOUND, all).await;
        self.nodes.iter_mut().for_each(|n| *n = None);
    }
}
