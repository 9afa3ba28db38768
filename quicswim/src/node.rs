//! The node runtime: a handle for applications, and the driver task that owns the protocol
//! core and the transport.
//!
//! ```text
//!   Node (handle) --commands--> Driver task --------------------------+
//!        ^                        | owns Swim (sans-IO) + Transport   |
//!        +---- events (broadcast) | one sleep, reset to poll_timeout()|
//!        |                        v                                   |
//!        |     transport Incoming: datagrams, requests, peer up/down  |
//!        |     request replies from spawned request tasks <-----------+
//!        |                        |
//!        |                        | member states (see [`ring`])
//!        +-- ring(), ring_events() <-- ring task: RingTracker, one rebuild per batch
//! ```
//!
//! Every input to the core carries the peer's certificate name as its sender; the core never
//! takes a sender name from a payload.
//!
//! Membership events and ring changes are two streams, [`Node::events`] and
//! [`Node::ring_events`]: most applications want one or the other, a ring change is derived
//! from membership (it is not a fact about a member), and it carries the ring it produced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn, Instrument};

use crate::protocol::{
    CommandError, Config, ConfigError, Destination, Event, Member, NodeName, PeerError, State,
    Stats, Swim, Transmit, TransmitKind, UserEvent, ValidConfig,
};
use crate::ring::{weight_from_meta, Ring, RingTracker};
use crate::tls::Identity;
use crate::transport::{self, Incoming, Peer, Transport, TransportConfig, TransportStats};

mod ring;

pub use ring::RingChanged;
use ring::{RingFeed, RingView};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Certificates: the node's name is its certificate's DNS SAN.
    pub identity: Identity,
    /// UDP address to listen and dial from (port 0 picks one).
    pub bind: SocketAddr,
    /// Address other members reach this node at; default: the bound address. Needed when
    /// binding to `0.0.0.0`.
    pub advertise: Option<SocketAddr>,
    /// Seeds to join through, by address. Empty: start a new cluster.
    pub seeds: Vec<SocketAddr>,
    /// Protocol settings, validated where they came in ([`Config::validate`]).
    pub protocol: ValidConfig,
    /// Transport settings (its `bind` is replaced by [`NodeConfig::bind`]).
    pub transport: TransportConfig,
    /// Small application metadata gossiped with this node.
    pub meta: Vec<u8>,
}

impl NodeConfig {
    /// A config with the lan preset and default transport, binding `bind`, joining `seeds`.
    pub fn new(identity: Identity, bind: SocketAddr, seeds: Vec<SocketAddr>) -> Self {
        Self {
            identity,
            bind,
            advertise: None,
            seeds,
            protocol: ValidConfig::default(),
            transport: TransportConfig::default(),
            meta: Vec::new(),
        }
    }
}

/// Why a node could not start or answer. Nothing was started, or the node is gone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A protocol setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport could not bind or is misconfigured.
    #[error("transport: {0}")]
    Transport(#[from] transport::Error),
    /// The address to advertise is unspecified (`0.0.0.0`); set `advertise`.
    #[error("cannot advertise the unspecified address {0}; set an advertise address")]
    UnspecifiedAdvertise(SocketAddr),
    /// A command was refused by the core.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The driver task has stopped (the node left or was shut down).
    #[error("the node has stopped")]
    Stopped,
}

/// A snapshot of counters and gauges for `/metrics`.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    /// This node's name.
    pub name: NodeName,
    /// This node's incarnation.
    pub incarnation: u64,
    /// Members by state, this node included: alive, suspect, dead, left.
    pub members: [usize; 4],
    /// Lifeguard local health multiplier (0 healthy ..= awareness_max_multiplier).
    pub health_score: u32,
    /// Updates waiting to be piggybacked.
    pub pending_broadcasts: usize,
    /// Live key/value entries held, over every owner.
    pub kv_entries: usize,
    /// Bytes of those keys and values.
    pub kv_bytes: usize,
    /// Protocol counters.
    pub core: Stats,
    /// Transport counters.
    pub transport: TransportStats,
}

/// One live key/value entry, as [`Node::kv_entries`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvItem {
    /// The owning node.
    pub owner: NodeName,
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The owner's version of it.
    pub version: u64,
}

enum Command {
    Members(oneshot::Sender<Vec<Member>>),
    Set(String, Vec<u8>, oneshot::Sender<Result<u64, CommandError>>),
    Delete(String, oneshot::Sender<Result<Option<u64>, CommandError>>),
    Get(NodeName, String, oneshot::Sender<Option<Vec<u8>>>),
    KvEntries(oneshot::Sender<Vec<KvItem>>),
    Publish(String, Vec<u8>, oneshot::Sender<Result<u64, CommandError>>),
    RecentEvents(oneshot::Sender<Vec<UserEvent>>),
    Metrics(oneshot::Sender<NodeMetrics>),
    SetMeta(Vec<u8>, oneshot::Sender<Result<(), CommandError>>),
    Leave(oneshot::Sender<()>),
}

/// A running cluster member. Cheap to clone; the node runs until [`Node::leave`] or
/// [`Node::shutdown`] (or the last handle is dropped, which stops it like a crash).
#[derive(Clone)]
pub struct Node {
    name: NodeName,
    addr: SocketAddr,
    config: Arc<ValidConfig>,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    ring: RingView,
    driver: Arc<DriverHandle>,
}

struct DriverHandle {
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    transport: Transport,
}

impl Drop for DriverHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().map(|mut t| t.take()).ok().flatten() {
            task.abort();
        }
    }
}

/// Events kept for a slow subscriber before it sees `Lagged`.
const EVENT_CAPACITY: usize = 4096;
/// Stream requests in flight at once; beyond it, new ones are dropped (the core retries).
const REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// User events kept for [`Node::recent_events`].
const RECENT_EVENTS_MAX: usize = 256;
/// How long a graceful leave waits for its Left notices to be acknowledged.
const LEAVE_WAIT: Duration = Duration::from_secs(3);
/// How often the transport's datagram size is read again between connection changes. The
/// smallest size over the pool changes when a connection comes or goes (read again at once)
/// and when MTU discovery raises a path's size (read within this period). Reading it locks
/// every pooled connection, which on every wake-up was the driver's largest cost.
const DATAGRAM_SIZE_REFRESH: Duration = Duration::from_secs(1);

impl Node {
    /// Binds the transport, joins through the seeds (retrying until one answers) and starts
    /// the driver task.
    pub async fn start(config: NodeConfig) -> Result<Node, Error> {
        let name = config.identity.name.clone();
        let transport_config = TransportConfig {
            bind: config.bind,
            ..config.transport.clone()
        };
        let (transport, incoming) = Transport::bind(transport_config, &config.identity).await?;
        let addr = config.advertise.unwrap_or_else(|| transport.local_addr());
        if addr.ip().is_unspecified() {
            return Err(Error::UnspecifiedAdvertise(addr));
        }
        let now = Instant::now();
        let mut core = Swim::new(
            name.clone(),
            addr,
            config.meta.clone(),
            config.protocol.clone(),
            rand::random(),
            now,
        )?;
        // Versions and event numbers start at wall-clock microseconds, so a node restarted with
        // no state still writes above everything it wrote before.
        let floor = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        core.set_version_floor(floor);
        core.join(now, &config.seeds);
        let (commands, command_rx) = mpsc::channel(64);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (replies, reply_rx) = mpsc::channel(REQUESTS_IN_FLIGHT_MAX);
        // This node owns keys from the start, before anyone else is heard of.
        let mut tracker = RingTracker::default();
        tracker.apply(&name, State::Alive, weight_from_meta(&config.meta));
        let (ring_feed, ring) = RingFeed::start(tracker);
        let driver = Driver {
            ring: ring_feed,
            events_dropped: 0,
            recent: std::collections::VecDeque::new(),
            core,
            transport: transport.clone(),
            events: events.clone(),
            replies,
            requests: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
            datagram_size_due: now,
            kept_for_size: 0,
        };
        info!(node = %name, %addr, seeds = config.seeds.len(), "node started");
        let span = tracing::info_span!("node", name = %name);
        let task = tokio::spawn(driver.run(incoming, command_rx, reply_rx).instrument(span));
        Ok(Node {
            name,
            addr,
            config: Arc::new(config.protocol),
            commands,
            events,
            ring,
            driver: Arc::new(DriverHandle {
                task: std::sync::Mutex::new(Some(task)),
                transport,
            }),
        })
    }

    /// This node's name.
    pub fn name(&self) -> &NodeName {
        &self.name
    }

    /// The address this node advertises.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The protocol settings the node started with (its limits, for example).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The UDP address the node's socket is bound to (differs from [`Node::addr`] when an
    /// advertise address was given).
    pub fn local_addr(&self) -> SocketAddr {
        self.driver.transport.local_addr()
    }

    /// Every member known (tombstones included), sorted by name.
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Members(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Counters and gauges.
    pub async fn metrics(&self) -> Result<NodeMetrics, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Metrics(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Changes this node's metadata (gossiped with a new incarnation).
    pub async fn set_meta(&self, meta: Vec<u8>) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SetMeta(meta, tx)).await?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::from)
    }

    /// Sets one of this node's keys; every member eventually holds it. Returns its version.
    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<u64, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Set(key.to_string(), value, tx)).await?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::from)
    }

    /// Deletes one of this node's keys; `None` when it did not exist.
    pub async fn delete(&self, key: &str) -> Result<Option<u64>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Delete(key.to_string(), tx)).await?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::from)
    }

    /// The value `owner` holds under `key`, as known here.
    pub async fn get(&self, owner: &NodeName, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Get(owner.clone(), key.to_string(), tx))
            .await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Every live key/value entry known here, sorted by owner then key.
    pub async fn kv_entries(&self) -> Result<Vec<KvItem>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::KvEntries(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Publishes a user event to every member (fire and forget); returns its sequence number.
    pub async fn publish(&self, name: &str, payload: Vec<u8>) -> Result<u64, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Publish(name.to_string(), payload, tx))
            .await?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::from)
    }

    /// The most recent user events received here (at most 256), oldest first.
    pub async fn recent_events(&self) -> Result<Vec<UserEvent>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::RecentEvents(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Membership events from now on: joined, recovered, updated, suspect, dead, left. A
    /// subscriber that falls more than 4096 events behind gets `Lagged`.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The current consistent-hash ring: every member Alive or Suspect (a suspicion does not
    /// move keys), this node included while it runs, weighted by the `weight=N` pair in each
    /// member's metadata (see [`weight_from_meta`]). A snapshot: cheap to take (an `Arc` clone,
    /// no call into the driver) and never changed by later membership changes.
    ///
    /// The ring follows membership events moments after [`Node::events`] delivers them; watch
    /// [`Node::ring_events`] to know when it has.
    pub fn ring(&self) -> Arc<Ring> {
        Arc::clone(&self.ring.ring.borrow())
    }

    /// Ring changes from now on: members added, removed or reweighted, with the ring each
    /// change produced. Changes that arrive together may come as one. A subscriber that
    /// falls more than 256 changes behind gets `Lagged` and can resume from [`Node::ring`].
    pub fn ring_events(&self) -> broadcast::Receiver<RingChanged> {
        self.ring.events.subscribe()
    }

    /// Leaves gracefully: the others see this node Left (not Dead), then the transport closes.
    pub async fn leave(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Leave(tx)).await?;
        rx.await.map_err(|_| Error::Stopped)?;
        self.driver.transport.close().await;
        Ok(())
    }

    /// Stops at once, without leaving: to the others this looks like a crash.
    pub async fn shutdown(&self) {
        let task = self.driver.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.driver.transport.close().await;
    }

    async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Stopped)
    }
}

struct Driver {
    /// Where membership changes go to move the ring.
    ring: RingFeed,
    /// The core's count of dropped events when last looked at: when it grows, the ring
    /// missed changes and is rebuilt from the member table.
    events_dropped: u64,
    recent: std::collections::VecDeque<UserEvent>,
    core: Swim,
    transport: Transport,
    events: broadcast::Sender<Event>,
    replies: mpsc::Sender<(NodeName, Vec<u8>)>,
    requests: Arc<Semaphore>,
    /// When to read the transport's datagram size again (see [`DATAGRAM_SIZE_REFRESH`]).
    datagram_size_due: Instant,
    /// The cluster size the transport's unused-connection time was last set for.
    kept_for_size: usize,
}

impl Driver {
    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Incoming>,
        mut commands: mpsc::Receiver<Command>,
        mut reply_rx: mpsc::Receiver<(NodeName, Vec<u8>)>,
    ) {
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        loop {
            self.flush();
            let deadline = self
                .core
                .poll_timeout()
                .map_or_else(far, tokio::time::Instant::from_std);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                _ = &mut sleep => self.core.handle_timeout(Instant::now()),
                Some(input) = incoming.recv() => self.on_incoming(input),
                Some((from, bytes)) = reply_rx.recv() => {
                    if let Err(e) = self.core.handle_stream_message(Instant::now(), &from, &bytes) {
                        self.log_peer_error(&e);
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Leave(done)) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => return, // every handle dropped: stop like a crash
                },
            }
        }
    }

    fn on_incoming(&mut self, input: Incoming) {
        let now = Instant::now();
        match input {
            Incoming::Datagram { from, addr, bytes } => {
                if let Err(e) = self.core.handle_datagram(now, &from, addr, &bytes) {
                    self.log_peer_error(&e);
                }
            }
            Incoming::Request {
                from, bytes, reply, ..
            } => {
                match self.core.handle_stream_message(now, &from, &bytes) {
                    Ok(Some(answer)) => {
                        let _ = reply.send(answer);
                    }
                    Ok(None) => {} // a reply sent as a request: merged, nothing to answer
                    Err(e) => self.log_peer_error(&e), // dropping `reply` resets the stream
                }
            }
            Incoming::PeerUp { name, addr } => {
                self.datagram_size_due = now;
                self.core.handle_peer_up(now, &name);
                debug!(peer = %name, %addr, "connection up");
            }
            Incoming::PeerDown { name, reason } => {
                self.datagram_size_due = now;
                self.core.handle_peer_down(&name);
                debug!(peer = %name, %reason, "connection down");
            }
            Incoming::Refused { addr, reason } => info!(%addr, %reason, "refused peer"),
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Members(tx) => {
                let mut members: Vec<Member> = self.core.members().cloned().collect();
                members.sort_by(|a, b| a.name.cmp(&b.name));
                let _ = tx.send(members);
            }
            Command::Metrics(tx) => {
                let mut by_state = [0usize; 4];
                for (i, s) in [State::Alive, State::Suspect, State::Dead, State::Left]
                    .into_iter()
                    .enumerate()
                {
                    by_state[i] =
                        self.core.count(s) + usize::from(self.core.local_member().state == s);
                }
                let _ = tx.send(NodeMetrics {
                    name: self.core.name().clone(),
                    incarnation: self.core.local_member().incarnation.0,
                    members: by_state,
                    health_score: self.core.health_score(),
                    pending_broadcasts: self.core.pending_broadcasts(),
                    kv_entries: self.core.kv_totals().0,
                    kv_bytes: self.core.kv_totals().1,
                    core: self.core.stats(),
                    transport: self.transport.stats(),
                });
            }
            Command::Set(key, value, tx) => {
                let _ = tx.send(self.core.set(Instant::now(), &key, value));
            }
            Command::Delete(key, tx) => {
                let _ = tx.send(self.core.delete(Instant::now(), &key));
            }
            Command::Get(owner, key, tx) => {
                let _ = tx.send(self.core.kv_get(&owner, &key).map(<[u8]>::to_vec));
            }
            Command::KvEntries(tx) => {
                let items = self
                    .core
                    .kv_entries()
                    .into_iter()
                    .map(|(owner, key, value, version)| KvItem {
                        owner: owner.clone(),
                        key: key.to_string(),
                        value: value.to_vec(),
                        version,
                    })
                    .collect();
                let _ = tx.send(items);
            }
            Command::Publish(name, payload, tx) => {
                let _ = tx.send(self.core.publish(Instant::now(), &name, payload));
            }
            Command::RecentEvents(tx) => {
                let _ = tx.send(self.recent.iter().cloned().collect());
            }
            Command::SetMeta(meta, tx) => {
                let result = self.core.set_meta(Instant::now(), meta);
                if result.is_ok() {
                    // The core raises no event about itself; its weight may have changed.
                    let me = self.core.local_member();
                    self.ring
                        .push(&me.name, me.state, weight_from_meta(&me.meta));
                }
                let _ = tx.send(result);
            }
            Command::Leave(_) => unreachable!("handled by the loop"),
        }
    }

    /// Hands every pending transmit to the transport and publishes every pending event.
    fn flush(&mut self) {
        let now = Instant::now();
        if now >= self.datagram_size_due {
            self.core
                .set_max_datagram_size(self.transport.max_datagram_size());
            self.datagram_size_due = now + DATAGRAM_SIZE_REFRESH;
        }
        let size = self.core.cluster_size();
        if size != self.kept_for_size {
            self.kept_for_size = size;
            // Each member probes every other once per pass over the members, in random
            // order, so the same pair is probed again within two passes. A connection closed
            // sooner is dialled again at the next probe: at 128 members each pair is probed
            // about every 64 s, and the 30 s idle timeout kept the cluster re-handshaking
            // (BENCHMARKS.md: 300 s halved the steady CPU).
            let keep = crate::protocol::probe_pass(size, self.core.config()).saturating_mul(2);
            self.transport.keep_unused_for(keep);
        }
        while let Some(t) = self.core.poll_transmit() {
            self.send(t, None);
        }
        let mut membership = Vec::new();
        while let Some(event) = self.core.poll_event() {
            log_event(&event);
            if let Some(m) = event.member() {
                membership.push((m.name.clone(), m.state, weight_from_meta(&m.meta)));
            }
            if let Event::User(e) = &event {
                if self.recent.len() >= RECENT_EVENTS_MAX {
                    self.recent.pop_front();
                }
                self.recent.push_back(e.clone());
            }
            let _ = self.events.send(event);
        }
        let dropped = self.core.stats().events_dropped;
        if dropped != self.events_dropped {
            self.events_dropped = dropped;
            warn!(
                dropped,
                "membership events were dropped; resyncing the ring"
            );
            let table = self
                .core
                .members()
                .map(|m| (&m.name, m.state, weight_from_meta(&m.meta)));
            self.ring.resync(table);
        } else if !membership.is_empty() {
            self.ring
                .push_all(membership.iter().map(|(n, s, w)| (n, *s, *w)));
        }
    }

    /// Sends one transmit; a request's reply comes back through `replies`, and `done` is told
    /// when it has finished either way.
    fn send(&self, t: Transmit, done: Option<mpsc::Sender<()>>) {
        let Transmit { to, kind, payload } = t;
        let peer = peer_of(to);
        match kind {
            TransmitKind::Datagram => self.transport.send_datagram(peer, Bytes::from(payload)),
            TransmitKind::Request => {
                let Ok(permit) = self.requests.clone().try_acquire_owned() else {
                    debug!(%peer, "too many requests in flight; dropped (will be retried)");
                    return;
                };
                let transport = self.transport.clone();
                let replies = self.replies.clone();
                tokio::spawn(
                    async move {
                        match transport.request(peer.clone(), payload).await {
                            Ok((from, reply)) => {
                                let _ = replies.send((from, reply)).await;
                            }
                            Err(e) => debug!(%peer, error = %e, "request failed"),
                        }
                        drop(permit);
                        drop(done);
                    }
                    .in_current_span(),
                );
            }
        }
    }

    async fn leave(&mut self) {
        self.core.leave(Instant::now());
        self.ring.push(self.core.name(), State::Left, 0);
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        while let Some(t) = self.core.poll_transmit() {
            self.send(t, Some(done_tx.clone()));
        }
        drop(done_tx);
        // Every request task holds a sender; recv() returns None once all have finished.
        let _ = tokio::time::timeout(LEAVE_WAIT, done_rx.recv()).await;
        info!(node = %self.core.name(), "left the cluster");
    }

    fn log_peer_error(&self, e: &PeerError) {
        match e {
            PeerError::NameMismatch { .. } => warn!(error = %e, "refused message"),
            PeerError::Decode { .. } => debug!(error = %e, "dropped malformed message"),
        }
    }
}

fn peer_of(to: Destination) -> Peer {
    Peer {
        addr: to.addr,
        name: to.name,
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Joined(m) => {
            info!(member = %m.name, addr = %m.addr, incarnation = m.incarnation.0, "member joined")
        }
        Event::Recovered(m) => {
            info!(member = %m.name, incarnation = m.incarnation.0, "member recovered")
        }
        Event::Updated(m) => {
            debug!(member = %m.name, incarnation = m.incarnation.0, "member updated")
        }
        Event::Suspect(m) => {
            info!(member = %m.name, incarnation = m.incarnation.0, "member suspect")
        }
        Event::Dead(m) => info!(member = %m.name, incarnation = m.incarnation.0, "member dead"),
        Event::Left(m) => info!(member = %m.name, incarnation = m.incarnation.0, "member left"),
        Event::KvChanged { owner, key } => debug!(%owner, %key, "key changed"),
        Event::User(e) => debug!(origin = %e.origin, name = %e.name, seq = e.seq, "user event"),
    }
}
