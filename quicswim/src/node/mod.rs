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
//!
//! This file holds the handle, [`Node`]; the driver task is in `driver`, the ring task in
//! `ring`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn, Instrument};

use crate::protocol::{
    CommandError, Config, ConfigError, Event, Keyring, Member, NodeName, Revocation, State, Stats,
    Swim, UserEvent, ValidConfig,
};
use crate::ring::{weight_from_meta, Ring, RingTracker};
use crate::tls::{CertKeyring, CertificateInfo, Identity};
use crate::transport::{self, Transport, TransportConfig, TransportStats};

mod driver;
mod join;
mod ready;
mod ring;
mod seed;

use driver::{Driver, REQUESTS_IN_FLIGHT_MAX};
use join::Joiner;
use ready::{readiness, ReadyFacts};
pub use ready::{NotReady, Readiness};
pub use ring::RingChanged;
use ring::{RingFeed, RingView};
use seed::SeedResolver;
pub use seed::{Seed, SeedParseError};

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
    /// Seeds to join through, by address or DNS name (names are resolved again before each
    /// join attempt; see [`Seed`]). Empty: start a new cluster. Joining is retried until a
    /// seed answers or a member joins this node ([`Node::wait_joined`]); this node's own
    /// address among them is skipped, and seeds that lead only back to this node are retried
    /// like seeds that do not answer (unless [`bootstrap`](Self::bootstrap)).
    pub seeds: Vec<Seed>,
    /// The DNS server to resolve seed names with; `None` (the default): the system's, from
    /// `/etc/resolv.conf`, with `/etc/hosts` first. For tests and unusual setups.
    pub nameserver: Option<SocketAddr>,
    /// A deliberate first node: it starts a cluster without waiting for its seeds (it goes
    /// on asking them until it has a live peer, so two first nodes merge), and
    /// [`Node::readiness`] is ready from the start and while alone. Without it, a node is
    /// ready only once it has exchanged full state with a member (a seed answered, or a
    /// member joined it) and while it has a live peer.
    pub bootstrap: bool,
    /// Protocol settings, validated where they came in ([`Config::validate`]).
    pub protocol: ValidConfig,
    /// Transport settings (its `bind` is replaced by [`NodeConfig::bind`]).
    pub transport: TransportConfig,
    /// Small application metadata gossiped with this node.
    pub meta: Vec<u8>,
}

impl NodeConfig {
    /// A config with the lan preset and default transport, binding `bind`, joining `seeds`
    /// (set [`seeds`](Self::seeds) for seeds by name).
    pub fn new(identity: Identity, bind: SocketAddr, seeds: Vec<SocketAddr>) -> Self {
        Self {
            identity,
            bind,
            advertise: None,
            seeds: seeds.into_iter().map(Seed::from).collect(),
            bootstrap: false,
            nameserver: None,
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
    /// The node's key cannot sign records (an unsupported key type, or not the key of its
    /// certificate).
    #[error("signing key: {0}")]
    Keyring(#[source] crate::tls::Error),
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
    KvPage(
        Option<(NodeName, String)>,
        usize,
        oneshot::Sender<Vec<KvItem>>,
    ),
    Publish(String, Vec<u8>, oneshot::Sender<Result<u64, CommandError>>),
    RecentEvents(oneshot::Sender<Vec<UserEvent>>),
    Metrics(oneshot::Sender<NodeMetrics>),
    SetMeta(Vec<u8>, oneshot::Sender<Result<(), CommandError>>),
    Restate(oneshot::Sender<Result<(), CommandError>>),
    Leave(Duration, oneshot::Sender<LeaveOutcome>),
    Ready(oneshot::Sender<ReadyFacts>),
    ForceLeave(NodeName, oneshot::Sender<Result<(), CommandError>>),
    Revoke(Vec<u8>, oneshot::Sender<Revocation>),
    RevocationsTaken(Vec<Vec<u8>>, Vec<NodeName>),
}

/// How long [`Node::leave`] waits for a member to confirm the leave.
pub const LEAVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// How a graceful leave ended ([`Node::leave_with_timeout`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// `by` answered with this node Left in its table and every key/value entry this node
    /// owns (it had them, or took them from this node before answering again); the user
    /// events this node published lately went with it.
    Confirmed {
        /// The member that confirmed.
        by: NodeName,
    },
    /// No active member was known: nobody to tell.
    Alone,
    /// No member confirmed within the timeout. The Left notices went out all the same; the
    /// others may still see this node Dead rather than Left.
    TimedOut,
}

/// Why a node stopped ([`Node::stopped`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It left gracefully (through any handle), with this outcome.
    Left(LeaveOutcome),
    /// [`Node::shutdown`] stopped it.
    Shutdown,
    /// Its driver task ended with neither: it panicked, or ended unexpectedly.
    Crashed,
}

/// Where a node is in its life; the driver task's guard records the end.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Leaving,
    Stopped(StopReason),
}

/// Records `reason` unless a reason is already recorded (the first one is the true one:
/// a shutdown aborts the task, whose guard then sees it already stopped).
fn mark_stopped(phase: &watch::Sender<Phase>, reason: StopReason) {
    phase.send_if_modified(|p| {
        if matches!(p, Phase::Stopped(_)) {
            return false;
        }
        *p = Phase::Stopped(reason);
        true
    });
}

/// Lives in the driver task: dropped without [`StopGuard::stop`] (a panic, an abort), it
/// records a crash, so that [`Node::stopped`] never takes a dead driver for a leave.
struct StopGuard(Arc<watch::Sender<Phase>>);

impl StopGuard {
    fn stop(self, reason: StopReason) {
        mark_stopped(&self.0, reason);
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        mark_stopped(&self.0, StopReason::Crashed);
    }
}

/// A deadline `after` from `now`; a duration too large to add (`Duration::MAX`) means a
/// deadline that never comes, not a panic.
pub(crate) fn deadline_after<I>(now: I, after: Duration) -> I
where
    I: Copy + CheckedAdd,
{
    now.checked_add_duration(after)
        .or_else(|| now.checked_add_duration(FAR_FUTURE))
        .unwrap_or(now)
}

/// About 30 years: the deadline that stands for "never".
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `checked_add` of the two clocks in use (std's and tokio's).
pub(crate) trait CheckedAdd: Sized {
    fn checked_add_duration(self, d: Duration) -> Option<Self>;
}

impl CheckedAdd for Instant {
    fn checked_add_duration(self, d: Duration) -> Option<Self> {
        self.checked_add(d)
    }
}

impl CheckedAdd for tokio::time::Instant {
    fn checked_add_duration(self, d: Duration) -> Option<Self> {
        self.checked_add(d)
    }
}

impl LeaveOutcome {
    /// Whether a member confirmed the leave.
    pub fn is_confirmed(&self) -> bool {
        matches!(self, LeaveOutcome::Confirmed { .. })
    }
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
    joined: watch::Receiver<bool>,
    driver: Arc<DriverHandle>,
    bootstrap: bool,
    /// Running, leaving, or stopped and why (see [`Node::stopped`]).
    phase: watch::Receiver<Phase>,
    /// The keyring the core signs and checks with: read for the certificates it holds.
    keyring: Arc<CertKeyring>,
    /// Held through [`Node::reload_identity`].
    reloading: Arc<tokio::sync::Mutex<()>>,
}

struct DriverHandle {
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    transport: Transport,
    phase: Arc<watch::Sender<Phase>>,
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

/// From this long before its certificate expires, a node logs a WARN about it, at start and
/// then every [`EXPIRY_CHECK_EVERY`].
pub const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 86_400);

/// How often a running node looks at its certificate's expiry.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(3_600);

/// Logs a WARN if `certificate` (this node's) expires within [`EXPIRY_WARNING`] or has.
fn warn_if_expiring(name: &NodeName, certificate: Option<CertificateInfo>) {
    let Some(c) = certificate else {
        return;
    };
    let expires = humantime::format_rfc3339_seconds(c.not_after);
    match c.not_after.duration_since(std::time::SystemTime::now()) {
        Ok(left) if left < EXPIRY_WARNING => {
            let left = humantime::format_duration(Duration::from_secs(left.as_secs()));
            warn!(node = %name, serial = %c.serial, %expires, %left, "this node's certificate expires soon: issue a new one (quicswim certs issue) and restart the node with it");
        }
        Ok(_) => {}
        Err(_) => {
            warn!(node = %name, serial = %c.serial, %expires, "this node's certificate has expired: peers refuse its handshakes");
        }
    }
}

impl Node {
    /// Binds the transport, joins through the seeds (retrying until one answers) and starts
    /// the driver task.
    pub async fn start(config: NodeConfig) -> Result<Node, Error> {
        let name = config.identity.name.clone();
        let transport_config = TransportConfig {
            bind: config.bind,
            ..config.transport.clone()
        };
        let keyring = Arc::new(CertKeyring::new(&config.identity).map_err(Error::Keyring)?);
        // Handshakes take the keyring's lists: checked, and the newest of each CA's only.
        let mut identity = config.identity.clone();
        identity.crls = keyring.revocation_lists();
        let (transport, incoming) = Transport::bind(transport_config, &identity).await?;
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
            keyring.clone(),
        )?;
        // Versions and event numbers start at wall-clock microseconds, and the incarnation at
        // wall-clock seconds, so a node restarted with no state (or a new key) still writes
        // above everything it wrote before.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        core.set_version_floor((since_epoch.as_micros() as u64).max(1));
        core.set_incarnation_floor(since_epoch.as_secs());
        if config.seeds.is_empty() {
            core.join(now, &[]);
        } else {
            core.join_resolving(now, config.bootstrap);
        }
        let (commands, command_rx) = mpsc::channel(64);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (replies, reply_rx) = mpsc::channel(REQUESTS_IN_FLIGHT_MAX);
        // This node owns keys from the start, before anyone else is heard of.
        let mut tracker = RingTracker::default();
        tracker.apply(&name, State::Alive, weight_from_meta(&config.meta));
        let (ring_feed, ring) = RingFeed::start(tracker);
        let (join_news, join_news_rx) = mpsc::channel(REQUESTS_IN_FLIGHT_MAX);
        let (joined_tx, joined) = watch::channel(core.is_joined());
        let joiner = Joiner::new(
            config.seeds.clone(),
            SeedResolver::new(config.nameserver),
            join_news,
            addr,
            transport.local_addr(),
            joined_tx,
        );
        let reloading: Arc<tokio::sync::Mutex<()>> = Arc::default();
        let driver = Driver::new(
            core,
            transport.clone(),
            events.clone(),
            replies,
            ring_feed,
            joiner,
            driver::RevocationFeed {
                keyring: keyring.clone(),
                lock: reloading.clone(),
            },
        );
        let cluster = keyring
            .cluster()
            .map_or_else(String::new, ToString::to_string);
        info!(node = %name, %addr, seeds = config.seeds.len(), cluster, "node started");
        let span = tracing::info_span!("node", name = %name);
        let (phase_tx, phase) = watch::channel(Phase::Running);
        let phase_tx = Arc::new(phase_tx);
        let guard = StopGuard(Arc::clone(&phase_tx));
        let mut expiry_phase = phase.clone();
        let (expiry_keyring, expiry_name) = (keyring.clone(), name.clone());
        tokio::spawn(async move {
            loop {
                warn_if_expiring(&expiry_name, expiry_keyring.certificate_info(&expiry_name));
                tokio::select! {
                    _ = tokio::time::sleep(EXPIRY_CHECK_EVERY) => {}
                    changed = expiry_phase.changed() => {
                        if changed.is_err() || matches!(*expiry_phase.borrow(), Phase::Stopped(_)) {
                            break;
                        }
                    }
                }
            }
        });
        let task = tokio::spawn(
            async move {
                let guard = guard;
                let left = driver
                    .run(incoming, command_rx, reply_rx, join_news_rx)
                    .await;
                guard.stop(left.map_or(StopReason::Crashed, StopReason::Left));
            }
            .instrument(span),
        );
        Ok(Node {
            name,
            addr,
            config: Arc::new(config.protocol),
            commands,
            events,
            ring,
            joined,
            driver: Arc::new(DriverHandle {
                task: std::sync::Mutex::new(Some(task)),
                transport,
                phase: phase_tx,
            }),
            bootstrap: config.bootstrap,
            phase,
            keyring,
            reloading,
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

    /// Whether this node is in a cluster: a seed answered, a member joined it, or it started
    /// one (no seeds, or [`NodeConfig::bootstrap`]).
    pub fn is_joined(&self) -> bool {
        *self.joined.borrow()
    }

    /// Waits until [`is_joined`](Self::is_joined); join attempts go on until then, with no
    /// limit: wrap this in a timeout to give up.
    pub async fn wait_joined(&self) -> Result<(), Error> {
        let mut joined = self.joined.clone();
        joined
            .wait_for(|j| *j)
            .await
            .map(|_| ())
            .map_err(|_| Error::Stopped)
    }

    /// The serial and expiry of the certificate this node holds for `name` (its own
    /// included): every member's is learned, checked against the CA, before its first record
    /// is applied, so an operator can watch a rotation roll out. `None` for a name whose
    /// certificate is not held (a member forgotten, or never heard of).
    pub fn certificate_info(&self, name: &NodeName) -> Option<CertificateInfo> {
        self.keyring.certificate_info(name)
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

    /// Whether this node is ready to serve: joined (or a bootstrap node), its first full-state
    /// exchange done, and a live peer held (see [`NodeConfig::bootstrap`] and [`NotReady`]).
    /// Never an error: a stopped node is [`NotReady::Stopped`].
    pub async fn readiness(&self) -> Readiness {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Ready(tx)).await.is_err() {
            return Err(NotReady::Stopped);
        }
        let facts = rx.await.map_err(|_| NotReady::Stopped)?;
        readiness(facts, self.bootstrap)
    }

    /// Drops a dead or left member's tombstone here now, instead of after `dead_retention`
    /// (see [`Swim::force_leave`]: local, refused for alive and suspect members).
    pub async fn force_leave(&self, name: &NodeName) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::ForceLeave(name.clone(), tx)).await?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::from)
    }

    /// Completes once the node has stopped, and says why: it left (through any handle), was
    /// shut down, or its driver crashed. Lets an agent notice a leave asked for through its
    /// API, and tell it from a crash.
    pub async fn stopped(&self) -> StopReason {
        let mut phase = self.phase.clone();
        let reason = match phase.wait_for(|p| matches!(p, Phase::Stopped(_))).await {
            Ok(p) => match &*p {
                Phase::Stopped(reason) => reason.clone(),
                Phase::Running | Phase::Leaving => StopReason::Crashed,
            },
            // The sender lives in the handle this borrows: not reached.
            Err(_) => StopReason::Crashed,
        };
        reason
    }

    /// Completes once a leave has begun (through any handle) or the node has stopped: the
    /// moment to save what the node knows, while it still answers.
    pub async fn leaving(&self) {
        let mut phase = self.phase.clone();
        let _ = phase.wait_for(|p| !matches!(p, Phase::Running)).await;
    }

    /// Presents and signs with `identity` from now on (a rotated certificate and key, or a
    /// new CA bundle), without a restart: new handshakes use it at once, both ways;
    /// connections already up carry on until they close; this node states itself anew
    /// signed with the new key, and members holding its old certificate ask for the new one
    /// when that record reaches them. Members keep the old certificate behind the new one
    /// while it is valid, so what this node signed before still verifies.
    ///
    /// `identity` must be this node's: the same name and cluster, a key that matches its
    /// certificate, chained to its roots ([`Identity::load`] checks all but the first two).
    /// On error ([`Error::Keyring`] naming the part at fault, or [`Error::Transport`])
    /// nothing changes and the identity in use stays. Members whose certificates the new
    /// roots or revocation lists no longer admit are dropped from the keyring and their
    /// connections closed.
    pub async fn reload_identity(&self, identity: &Identity) -> Result<(), Error> {
        // One reload at a time: the transport and the keyring take the same identity.
        let _one = self.reloading.lock().await;
        let rotation = self
            .keyring
            .prepare_rotation(identity)
            .map_err(Error::Keyring)?;
        // The lists the cluster passed on stay, beside the identity's own.
        let mut identity = identity.clone();
        identity.crls = self.keyring.revocation_lists_with(&rotation);
        let new_lists = self.keyring.new_lists(&rotation);
        self.driver.transport.set_identity(&identity)?;
        let before = Keyring::certificate(&*self.keyring, &self.name);
        let banned = self.keyring.commit_rotation(rotation);
        // And one the core took meanwhile, whose own update waits for this lock.
        self.driver
            .transport
            .set_revocation_lists(self.keyring.revocation_lists())?;
        let serial = self
            .keyring
            .certificate_info(&self.name)
            .map(|c| c.serial)
            .unwrap_or_default();
        info!(node = %self.name, %serial, "identity reloaded: new handshakes present this certificate");
        let keyring = &self.keyring;
        self.driver
            .transport
            .close_revoked(|name, der| keyring.admits(name, der))
            .await;
        if !new_lists.is_empty() || !banned.is_empty() {
            // Banned and passed on as a list handed to `revoke` is.
            self.send(Command::RevocationsTaken(new_lists, banned))
                .await?;
        }
        if Keyring::certificate(&*self.keyring, &self.name) == before {
            // The same certificate (a new CA bundle or revocation list): nothing to restate.
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.send(Command::Restate(tx)).await?;
        if let Ok(Err(e)) = rx.await {
            // The identity is in use; only its announcement failed (the node is leaving).
            warn!(node = %self.name, error = %e, "identity reloaded, but not restated");
        }
        Ok(())
    }

    /// Takes a certificate revocation list (DER, as its CA signed it, e.g. from
    /// `quicswim certs revoke`) and passes it to the cluster: once its CA's signature checks
    /// out here, and it is newer than the list held from that CA, this node refuses
    /// handshakes with the certificates it names, closes their connections, declares their
    /// members Dead and shows them banned ([`Node::banned`]), and pushes the list to a few
    /// members, who check it and do the same; push-pull exchanges carry it to any member
    /// the pushes missed, and to every node that joins later, in its first exchange.
    ///
    /// Returns what the keyring made of it: [`Revocation::Taken`] with the members it
    /// banned, [`Revocation::Known`] (held already, or older than the one held: nothing
    /// changed), or [`Revocation::Refused`] with the reason (nothing changed).
    pub async fn revoke(&self, der: Vec<u8>) -> Result<Revocation, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Revoke(der, tx)).await?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// The certificate that cut `name` off, when a revocation list named `name`'s certificate
    /// and no newer one of its is held here, while that certificate could still be valid.
    pub fn banned(&self, name: &NodeName) -> Option<CertificateInfo> {
        self.keyring.banned(name)
    }

    /// Changes this node's metadata (gossiped with a new incarnation).
    pub async fn set_meta(&self, meta: Vec<u8>) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SetMeta(meta, tx)).await?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::from)
    }

    /// Sets one of this node's keys; every member eventually holds it. Returns its version.
    ///
    /// Refused with [`CommandError::Backlogged`],
    /// nothing written, while this node's earlier writes are further behind on their way to
    /// the cluster than `kv_backlog_max`: the cluster is taking writes slower than they come.
    /// Try again later (or set the bound to zero to never be refused).
    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<u64, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Set(key.to_string(), value, tx)).await?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::from)
    }

    /// Deletes one of this node's keys; `None` when it did not exist. Refused as
    /// [`set`](Self::set) is while writes are behind.
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

    /// At most `limit` live entries after `after` (owner, key), in the order of
    /// [`kv_entries`](Self::kv_entries): one page of a listing, for which the driver copies
    /// only the page.
    pub async fn kv_page(
        &self,
        after: Option<(NodeName, String)>,
        limit: usize,
    ) -> Result<Vec<KvItem>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::KvPage(after, limit, tx)).await?;
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
    /// member's metadata (see [`weight_from_meta`]). A snapshot: cheap to take once the ring
    /// exists (an `Arc` clone, no call into the driver) and never changed by later membership
    /// changes.
    ///
    /// A node builds no ring until asked: the first call of this or [`Node::ring_events`]
    /// builds it from the membership as it stands, on the calling thread (about 27 ms at a
    /// thousand members, `cargo bench -p quicswim-proto --bench ring`), and from then on a
    /// task keeps it current.
    ///
    /// The ring follows membership events moments after [`Node::events`] delivers them; watch
    /// [`Node::ring_events`] to know when it has.
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.ring()
    }

    /// Ring changes from now on: members added, removed or reweighted, with the ring each
    /// change produced. Changes that arrive together may come as one. A subscriber that
    /// falls more than 256 changes behind gets `Lagged` and can resume from [`Node::ring`].
    pub fn ring_events(&self) -> broadcast::Receiver<RingChanged> {
        self.ring.subscribe()
    }

    /// Leaves gracefully: the others see this node Left (not Dead), then the transport
    /// closes. Waits up to [`LEAVE_TIMEOUT_DEFAULT`] for a member to confirm; see
    /// [`Node::leave_with_timeout`].
    pub async fn leave(&self) -> Result<(), Error> {
        self.leave_with_timeout(LEAVE_TIMEOUT_DEFAULT)
            .await
            .map(|_| ())
    }

    /// Leaves gracefully and waits, at most `timeout`, until one member confirms that it
    /// holds this node Left and every key/value entry this node owns (so a write just before
    /// leaving is not lost with it); then the transport closes. Requests, replies and
    /// commands are still served while it waits. `Error::Stopped` when the node had already
    /// left or stopped.
    pub async fn leave_with_timeout(&self, timeout: Duration) -> Result<LeaveOutcome, Error> {
        /// Time the transport's close always gets to tell peers the connections are over.
        const CLOSE_MIN: Duration = Duration::from_millis(100);
        let give_up = deadline_after(Instant::now(), timeout);
        self.driver.phase.send_if_modified(|p| {
            let running = matches!(p, Phase::Running);
            if running {
                *p = Phase::Leaving;
            }
            running
        });
        let (tx, rx) = oneshot::channel();
        self.send(Command::Leave(timeout, tx)).await?;
        let outcome = rx.await.map_err(|_| Error::Stopped)?;
        // Closing waits for peers to acknowledge; dead ones never do, and the leave is over
        // either way: the rest of the timeout bounds it, so a stop takes about `timeout`.
        let left = give_up
            .saturating_duration_since(Instant::now())
            .max(CLOSE_MIN);
        let _ = tokio::time::timeout(left, self.driver.transport.close()).await;
        Ok(outcome)
    }

    /// Stops at once, without leaving: to the others this looks like a crash.
    pub async fn shutdown(&self) {
        let task = self.driver.task.lock().ok().and_then(|mut t| t.take());
        mark_stopped(&self.driver.phase, StopReason::Shutdown);
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
