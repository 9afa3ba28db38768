//! The machinery behind [`Transport`](super::Transport). This file: the pool, admission,
//! datagram and request sending, idle sweep and shutdown; `handshake.rs`: dialling and
//! accepting; `tasks.rs`: what each admitted connection runs.
//!
//! Locking: one `std::sync::Mutex<State>` guards the pool and the dials in progress; it is
//! never held across an `.await`. Events are collected under the lock and sent after.

mod handshake;
mod tasks;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, SendDatagramError, VarInt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tracing::{debug, info, trace, warn, Instrument, Span};

use self::handshake::Failure;
use super::frame::{read_frame, write_frame, FrameError};
use super::inbox::FairQueue;
use super::link::{keep_new, lru_victim, peer_certificate_of, Link};
use super::stats::{add, bump, Counters, WireStats};
use super::strangers::{IpRates, LogGate};
use super::DEFAULT_MAX_DATAGRAM_SIZE;
use super::{codes, Error, Incoming, Peer, PeerInfo, TransportConfig, TransportStats};
use crate::protocol::NodeName;
use crate::tls;

/// Datagrams queued behind one dial in progress; more are dropped and counted.
const QUEUED_DATAGRAMS_MAX: usize = 64;
/// QUIC datagram buffers per connection, each way.
const DATAGRAM_BUFFER: usize = 1 << 20;
/// Bytes a peer may send on one stream before this node reads them (QUIC stream flow
/// control); frames are read as they come, so this only bounds what quinn buffers.
const STREAM_RECEIVE_WINDOW: u32 = 1 << 20;
/// Bytes a peer may have unread on all its streams of one connection together (QUIC's
/// default is unbounded in practice: about 800 MiB per connection).
const CONNECTION_RECEIVE_WINDOW: u32 = 4 << 20;
/// New connections quinn holds for the accept loop at once; the loop decides each in
/// microseconds, so this only absorbs bursts. Beyond it quinn refuses by itself.
const INCOMING_QUEUE_MAX: usize = 4096;
/// At most one refusal WARN line per this period; the others are counted and the next line
/// says how many.
const REFUSAL_LOG_PERIOD_MS: u64 = 10_000;
/// After a peer refuses a handshake, it is not dialled again for this long, doubled at each
/// refusal in a row up to [`DIAL_PACE_MAX`], each wait drawn within ±25 %: a peer whose
/// certificate expired (or was revoked) is not hammered by every member at every gossip
/// round, and members do not come back to it in step.
const DIAL_PACE_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between dials of a peer that keeps refusing.
const DIAL_PACE_MAX: Duration = Duration::from_secs(60);
/// Peers remembered for pacing at once; beyond it, those whose wait is over go first, and
/// then refusals are not remembered (bounded memory under a flood of refusing addresses).
const PACED_PEERS_MAX: usize = 4096;

/// Longest an unused link is kept when the owner asks for more than `idle_timeout`.
pub(crate) const KEEP_UNUSED_MAX: Duration = Duration::from_secs(3600);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) struct Engine {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    local_name: NodeName,
    /// Random per process; sent in the admission round trip.
    instance: u64,
    config: TransportConfig,
    /// quinn's transport parameters, shared by the server and client configurations (kept
    /// to build new ones when the identity changes).
    quic_transport: Arc<quinn::TransportConfig>,
    /// What this node dials with; replaced by [`Engine::set_identity`].
    client_config: Mutex<quinn::ClientConfig>,
    /// The identity both configurations were built from, revocation lists included.
    identity: Mutex<tls::Identity>,
    events: mpsc::Sender<Incoming>,
    /// Datagrams from admitted peers, one fair queue per connection.
    datagrams: Arc<FairQueue>,
    counters: Counters,
    state: Mutex<State>,
    /// How long the idle sweep keeps a pooled link the application does not use, in ms:
    /// `idle_timeout` unless the owner asked for longer ([`Engine::keep_unused_for`]).
    keep_unused_ms: AtomicU64,
    started: Instant,
    span: Span,
    /// Captured at bind, so tasks can be started from threads outside the runtime (a
    /// `send_datagram` from a plain thread must not panic).
    runtime: tokio::runtime::Handle,
}

struct State {
    closed: bool,
    pool: HashMap<NodeName, Arc<Link>>,
    dials: HashMap<DialKey, PendingDial>,
    /// This node's dials between the first packet and admission (at most `max_connections`).
    dials_in_progress: usize,
    /// Accepted handshakes between the first packet and admission (at most
    /// `handshakes_in_max`); counted apart from dials so strangers cannot take their room.
    accepts_in_progress: usize,
    /// New handshakes per source IP.
    rates: IpRates,
    /// Rate limit of refusal log lines.
    refusal_log: LogGate,
    /// Every admitted connection not yet closed (pooled, or a loser being closed), by
    /// `stable_id`: the wire counters are summed over them.
    open: HashMap<usize, Arc<Link>>,
    /// Wire counters of the connections closed so far.
    closed_wire: WireStats,
    /// Peers that refused handshakes, not dialled again until their time.
    paced: HashMap<DialKey, Pace>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum DialKey {
    Name(NodeName),
    Addr(SocketAddr),
}

impl DialKey {
    fn of(peer: &Peer) -> Self {
        match &peer.name {
            Some(name) => DialKey::Name(name.clone()),
            None => DialKey::Addr(peer.addr),
        }
    }
}

type DialResult = Result<Arc<Link>, Failure>;

/// A peer that refused handshakes: how many in a row, and when it may be dialled again.
struct Pace {
    refusals: u32,
    until_ms: u64,
}

#[derive(Default)]
struct PendingDial {
    waiters: Vec<oneshot::Sender<DialResult>>,
    datagrams: Vec<Bytes>,
}

/// How one request attempt on one link went.
enum Attempt {
    /// The peer closed the connection or refused the stream before processing the request;
    /// sending it again on another connection is safe.
    Retry(String),
    Failed(Error),
}

/// quinn's server and client configurations for `identity`, over `transport`.
fn quic_configs(
    identity: &tls::Identity,
    transport: &Arc<quinn::TransportConfig>,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), Error> {
    let tls_err = |reason: String| {
        Error::Tls(tls::Error::Config {
            name: identity.name.to_string(),
            reason,
        })
    };
    let server_tls = Arc::new(tls::server_config(identity)?);
    let client_tls = Arc::new(tls::client_config(identity)?);
    let server_crypto =
        QuicServerConfig::try_from(server_tls).map_err(|e| tls_err(format!("quic server: {e}")))?;
    let client_crypto =
        QuicClientConfig::try_from(client_tls).map_err(|e| tls_err(format!("quic client: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server
        .transport_config(transport.clone())
        .max_incoming(INCOMING_QUEUE_MAX);
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport.clone());
    Ok((server, client))
}

/// quinn's endpoint settings for `identity`: stateless resets and connection ids keyed by
/// secrets derived from its private key rather than random ones. A node restarted with the
/// same key on the same address then recognises the connection ids its earlier process
/// handed out and answers a packet on one with a stateless reset the peer can verify, so
/// the peer closes the dead connection at its next send and dials again; with random keys
/// the peer would keep sending into it until QUIC's idle timeout, which without keep-alives
/// is long.
fn endpoint_config(identity: &tls::Identity) -> quinn::EndpointConfig {
    let reset = identity.derived_secret("quic stateless reset");
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    let cid = identity.derived_secret("quic connection id");
    let cid_key = u64::from_le_bytes(cid[..8].try_into().expect("8 of 32 bytes"));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

impl Engine {
    pub fn bind(
        config: TransportConfig,
        identity: &tls::Identity,
        events: mpsc::Sender<Incoming>,
        datagrams: Arc<FairQueue>,
    ) -> Result<Arc<Self>, Error> {
        config.validate()?;
        let mut transport = quinn::TransportConfig::default();
        // Without keep-alives a pooled connection is quiet between the owner's uses (at 128
        // members a pair is probed about once a minute), so QUIC's own idle timeout must
        // outlast the longest the pool keeps a link unused; the pool's sweep is what closes
        // links nobody uses.
        let quic_idle = match config.keep_alive {
            Some(_) => config.idle_timeout,
            None => KEEP_UNUSED_MAX,
        };
        let idle = quinn::IdleTimeout::try_from(quic_idle).map_err(|_| Error::Config {
            reason: format!("idle timeout {quic_idle:?} too large for quic"),
        })?;
        transport
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(config.keep_alive)
            .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
            .datagram_send_buffer_size(DATAGRAM_BUFFER)
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .max_concurrent_bidi_streams(VarInt::from_u32(config.streams_per_peer_max))
            .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
            .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
        let quic_transport = Arc::new(transport);
        let (server, client_config) = quic_configs(identity, &quic_transport)?;

        let bind_err = |source| Error::Bind {
            addr: config.bind,
            source,
        };
        let socket = std::net::UdpSocket::bind(config.bind).map_err(bind_err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| bind_err(std::io::Error::other("no async runtime")))?;
        let endpoint =
            quinn::Endpoint::new(endpoint_config(identity), Some(server), socket, runtime)
                .map_err(bind_err)?;
        let local_addr = endpoint.local_addr().map_err(bind_err)?;
        let span = tracing::info_span!("transport", node = %identity.name, addr = %local_addr);
        let engine = Arc::new(Engine {
            endpoint,
            local_addr,
            local_name: identity.name.clone(),
            instance: rand::random(),
            quic_transport,
            client_config: Mutex::new(client_config),
            identity: Mutex::new(identity.clone()),
            events,
            datagrams,
            counters: Counters::default(),
            state: Mutex::new(State {
                closed: false,
                pool: HashMap::new(),
                dials: HashMap::new(),
                dials_in_progress: 0,
                accepts_in_progress: 0,
                rates: IpRates::new(
                    config.handshakes_per_ip_rate,
                    config.handshakes_per_ip_burst,
                ),
                refusal_log: LogGate::new(REFUSAL_LOG_PERIOD_MS),
                open: HashMap::new(),
                closed_wire: WireStats::default(),
                paced: HashMap::new(),
            }),
            keep_unused_ms: AtomicU64::new(millis(config.idle_timeout)),
            config,
            started: Instant::now(),
            span,
            runtime: tokio::runtime::Handle::current(),
        });
        info!(parent: &engine.span, "listening");
        engine.spawn(Engine::accept_loop(engine.clone()));
        engine.spawn(Engine::idle_sweep(Arc::downgrade(&engine)));
        Ok(engine)
    }

    /// Handshakes from now on present `identity` and trust its roots, both ways; the
    /// connections up carry on with the identity they were made with until they close.
    /// Nothing changes on error.
    pub fn set_identity(&self, identity: &tls::Identity) -> Result<(), Error> {
        let mut held = self.identity.lock().unwrap_or_else(PoisonError::into_inner);
        self.use_identity(identity)?;
        *held = identity.clone();
        // Peers that refused the identity before may take this one.
        self.state().paced.clear();
        Ok(())
    }

    /// Handshakes from now on are checked against `lists` (in place of the revocation
    /// lists in use), both ways. Nothing changes on error.
    pub fn set_revocation_lists(
        &self,
        lists: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
    ) -> Result<(), Error> {
        let mut held = self.identity.lock().unwrap_or_else(PoisonError::into_inner);
        if held.crls == lists {
            return Ok(());
        }
        let mut next = held.clone();
        next.crls = lists;
        self.use_identity(&next)?;
        *held = next;
        Ok(())
    }

    fn use_identity(&self, identity: &tls::Identity) -> Result<(), Error> {
        let (server, client) = quic_configs(identity, &self.quic_transport)?;
        self.endpoint.set_server_config(Some(server));
        *self
            .client_config
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = client;
        Ok(())
    }

    /// What a dial presents and trusts now.
    pub(super) fn client_config(&self) -> quinn::ClientConfig {
        self.client_config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves State consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(task.instrument(self.span.clone()));
    }

    async fn emit(&self, event: Incoming) {
        // A dropped receiver means the owner is gone; nothing left to tell.
        let _ = self.events.send(event).await;
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn local_name(&self) -> &NodeName {
        &self.local_name
    }

    pub fn max_datagram_size(&self) -> usize {
        self.state()
            .pool
            .values()
            .filter_map(|link| link.conn.max_datagram_size())
            .filter(|size| *size >= DEFAULT_MAX_DATAGRAM_SIZE)
            .min()
            .unwrap_or(DEFAULT_MAX_DATAGRAM_SIZE)
    }

    pub fn stats(&self) -> TransportStats {
        // One lock for both parts, so a connection closing meanwhile is counted exactly once.
        let (pooled, wire) = {
            let state = self.state();
            let mut wire = state.closed_wire;
            for link in state.open.values() {
                wire += WireStats::of(&link.conn);
            }
            (state.pool.len(), wire)
        };
        self.counters.snapshot(pooled, wire)
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .state()
            .pool
            .values()
            .map(|link| PeerInfo {
                name: link.name.clone(),
                addr: link.conn.remote_address(),
                dialed_locally: link.dialed_locally,
                max_datagram_size: link.conn.max_datagram_size(),
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers
    }

    /// The pooled, usable link for `peer`: by name, or for a seed by address.
    fn find(state: &State, peer: &Peer) -> Option<Arc<Link>> {
        match &peer.name {
            Some(name) => state.pool.get(name).filter(|l| l.is_usable()).cloned(),
            None => state
                .pool
                .values()
                .find(|l| l.conn.remote_address() == peer.addr && l.is_usable())
                .cloned(),
        }
    }

    /// Joins the dial in progress for `peer`, or starts one. With `datagram`, queues it
    /// behind the dial; otherwise returns a receiver for the dial's outcome.
    fn join_dial(
        self: &Arc<Self>,
        state: &mut State,
        peer: &Peer,
        datagram: Option<Bytes>,
    ) -> Result<Option<oneshot::Receiver<DialResult>>, Failure> {
        let key = DialKey::of(peer);
        let pending = match state.dials.entry(key.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                if state.dials_in_progress >= self.config.max_connections {
                    return Err(Failure::Busy);
                }
                let now = self.now_ms();
                if let Some(pace) = state.paced.get(&key).filter(|p| p.until_ms > now) {
                    bump(&self.counters.dials_paced);
                    return Err(Failure::Paced {
                        retry_in: Duration::from_millis(pace.until_ms - now),
                    });
                }
                state.dials_in_progress += 1;
                self.spawn(Engine::dial(self.clone(), peer.clone(), key));
                entry.insert(PendingDial::default())
            }
        };
        match datagram {
            Some(bytes) if pending.datagrams.len() < QUEUED_DATAGRAMS_MAX => {
                pending.datagrams.push(bytes);
                Ok(None)
            }
            Some(_) => {
                bump(&self.counters.datagrams_dropped);
                debug!(peer = %peer, "datagram dropped: too many queued behind a dial");
                Ok(None)
            }
            None => {
                let (tx, rx) = oneshot::channel();
                pending.waiters.push(tx);
                Ok(Some(rx))
            }
        }
    }

    pub fn send_datagram(self: &Arc<Self>, to: Peer, bytes: Bytes) {
        let link = {
            let mut state = self.state();
            if state.closed {
                bump(&self.counters.datagrams_dropped);
                return;
            }
            match Engine::find(&state, &to) {
                Some(link) => link,
                None => {
                    if let Err(failure) = self.join_dial(&mut state, &to, Some(bytes)) {
                        bump(&self.counters.datagrams_dropped);
                        debug!(peer = %to, ?failure, "datagram dropped: cannot dial");
                    }
                    return;
                }
            }
        };
        self.send_on(&link, bytes);
    }

    fn send_on(&self, link: &Link, bytes: Bytes) {
        let len = bytes.len();
        match link.conn.send_datagram(bytes) {
            Ok(()) => {
                bump(&self.counters.datagrams_out);
                add(&self.counters.bytes_out, len);
                link.touch(self.now_ms());
                trace!(peer = %link.name, len, "datagram out");
            }
            Err(SendDatagramError::TooLarge) => {
                bump(&self.counters.datagrams_too_large);
                debug!(
                    peer = %link.name,
                    len,
                    max = ?link.conn.max_datagram_size(),
                    "datagram refused: larger than the connection's max_datagram_size"
                );
            }
            Err(e) => {
                bump(&self.counters.datagrams_dropped);
                debug!(peer = %link.name, len, error = %e, "datagram dropped");
            }
        }
    }

    pub async fn request(
        self: &Arc<Self>,
        to: &Peer,
        bytes: Vec<u8>,
    ) -> Result<(NodeName, Vec<u8>), Error> {
        bump(&self.counters.requests_out);
        let max = self.config.frame_len_max;
        let result = if bytes.len() > max {
            bump(&self.counters.frames_too_large);
            Err(Error::FrameTooLarge {
                peer: to.to_string(),
                len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                max,
            })
        } else {
            let bound = self.config.request_timeout;
            match timeout(bound, self.request_with_retry(to, &bytes)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout {
                    peer: to.to_string(),
                    timeout: bound,
                }),
            }
        };
        if let Err(e) = &result {
            bump(&self.counters.requests_failed);
            debug!(parent: &self.span, peer = %to, error = %e, "request failed");
        }
        result
    }

    async fn request_with_retry(
        self: &Arc<Self>,
        to: &Peer,
        bytes: &[u8],
    ) -> Result<(NodeName, Vec<u8>), Error> {
        let mut retried = false;
        loop {
            let link = self
                .link_for(to)
                .await
                .map_err(|f| f.into_error(to, self))?;
            match self.exchange(&link, to, bytes).await {
                Ok(reply) => return Ok((link.name.clone(), reply)),
                Err(Attempt::Retry(detail)) if !retried => {
                    // The peer is closing this connection; the next lookup skips it.
                    link.mark_closing();
                    bump(&self.counters.requests_retried);
                    debug!(peer = %link.name, %detail, "request not processed; retrying");
                    retried = true;
                }
                Err(Attempt::Retry(detail)) => {
                    return Err(Error::ConnectionLost {
                        peer: to.to_string(),
                        detail,
                    })
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
    }

    /// The usable pooled link for `peer`, dialling (or joining a dial) if there is none.
    async fn link_for(self: &Arc<Self>, peer: &Peer) -> Result<Arc<Link>, Failure> {
        let receiver = {
            let mut state = self.state();
            if state.closed {
                return Err(Failure::Closed);
            }
            if let Some(link) = Engine::find(&state, peer) {
                return Ok(link);
            }
            self.join_dial(&mut state, peer, None)?
        };
        match receiver {
            Some(rx) => rx.await.unwrap_or(Err(Failure::Closed)),
            None => Err(Failure::Closed),
        }
    }

    /// One request/reply on a new bi-stream of `link`.
    async fn exchange(
        &self,
        link: &Arc<Link>,
        to: &Peer,
        bytes: &[u8],
    ) -> Result<Vec<u8>, Attempt> {
        let Some(_guard) = link.begin() else {
            return Err(Attempt::Retry("connection is closing".into()));
        };
        let max = self.config.frame_len_max;
        let (mut send, mut recv) = link
            .conn
            .open_bi()
            .await
            .map_err(|e| self.attempt_error(to, FrameError::Lost(e), bytes.len()))?;
        write_frame(&mut send, bytes, max)
            .await
            .map_err(|e| self.attempt_error(to, e, bytes.len()))?;
        add(&self.counters.bytes_out, bytes.len());
        link.touch(self.now_ms());
        let reply = read_frame(&mut recv, max)
            .await
            .map_err(|e| self.attempt_error(to, e, bytes.len()))?;
        add(&self.counters.bytes_in, reply.len());
        link.touch(self.now_ms());
        Ok(reply)
    }

    fn attempt_error(&self, to: &Peer, err: FrameError, request_len: usize) -> Attempt {
        let peer = to.to_string();
        let failed = |e| Attempt::Failed(e);
        match err {
            FrameError::Lost(ConnectionError::ApplicationClosed(close))
                if codes::is_quiet_close(close.error_code) =>
            {
                Attempt::Retry(format!("closed by peer: {close}"))
            }
            FrameError::Reset(code) | FrameError::Stopped(code) if code == codes::CLOSING => {
                Attempt::Retry("stream refused: connection closing".into())
            }
            FrameError::Reset(code) | FrameError::Stopped(code)
                if code == codes::FRAME_TOO_LARGE =>
            {
                debug!(peer = %to, request_len, "peer refused a frame over its limit");
                failed(Error::FrameRefused { peer })
            }
            FrameError::TooLarge { len, max } => {
                bump(&self.counters.frames_too_large);
                warn!(peer = %to, len, max, "reply frame over frame_len_max refused");
                failed(Error::FrameTooLarge { peer, len, max })
            }
            FrameError::Lost(e) => failed(Error::ConnectionLost {
                peer,
                detail: e.to_string(),
            }),
            other => failed(Error::Stream {
                peer,
                detail: other.to_string(),
            }),
        }
    }

    /// Puts a freshly admitted connection in the pool (or retires it, or the one it meets),
    /// emits what changed and starts its tasks. Returns the link to use for the peer.
    async fn admit(
        self: &Arc<Self>,
        conn: quinn::Connection,
        name: NodeName,
        dialed_locally: bool,
        peer_instance: u64,
    ) -> Result<Arc<Link>, Failure> {
        let link = Arc::new(Link::new(
            conn,
            name,
            dialed_locally,
            peer_instance,
            self.now_ms(),
            self.config.frame_len_max,
        ));
        bump(&self.counters.connections_open);
        let mut events = Vec::new();
        let mut retire = Vec::new();
        let winner = {
            let mut state = self.state();
            if state.closed {
                drop(state);
                link.conn.close(codes::SHUTDOWN, b"shutting down");
                self.counters.connection_closed();
                return Err(Failure::Closed);
            }
            let addr = link.conn.remote_address();
            state.open.insert(link.conn.stable_id(), link.clone());
            match state.pool.get(&link.name).cloned() {
                Some(existing) => {
                    let restarted = existing.peer_instance != link.peer_instance;
                    let replace = restarted
                        || !existing.is_usable()
                        || keep_new(
                            self.local_name < link.name,
                            existing.dialed_locally,
                            link.dialed_locally,
                        );
                    if replace {
                        state.pool.insert(link.name.clone(), link.clone());
                        retire.push((existing, !restarted));
                        link.clone()
                    } else {
                        retire.push((link.clone(), true));
                        existing
                    }
                }
                None => {
                    if state.pool.len() >= self.config.max_connections {
                        if let Some(victim) = lru_victim(state.pool.values()).cloned() {
                            state.pool.remove(&victim.name);
                            bump(&self.counters.evictions);
                            info!(peer = %victim.name, "evicting least recently used connection: pool full");
                            events.push(Incoming::PeerDown {
                                name: victim.name.clone(),
                                reason: "evicted: connection pool full".into(),
                            });
                            self.retire(victim, codes::EVICTED, b"pool full", true);
                        }
                    }
                    state.pool.insert(link.name.clone(), link.clone());
                    events.push(Incoming::PeerUp {
                        name: link.name.clone(),
                        addr,
                        certificate: peer_certificate_of(&link.conn).unwrap_or_default(),
                    });
                    link.clone()
                }
            }
        };
        for (loser, quiet) in retire {
            if quiet {
                bump(&self.counters.duplicates_closed);
                debug!(peer = %loser.name, dialed_locally = loser.dialed_locally, "closing duplicate connection");
                self.retire(loser, codes::DUPLICATE, b"duplicate connection", true);
            } else {
                info!(peer = %loser.name, "peer restarted; closing its old connection");
                self.retire(loser, codes::SUPERSEDED, b"peer restarted", false);
            }
        }
        for event in events {
            if let Incoming::PeerUp { name, addr, .. } = &event {
                info!(peer = %name, %addr, dialed_locally, "peer up");
            }
            self.emit(event).await;
        }
        self.spawn(Engine::read_datagrams(self.clone(), link.clone()));
        self.spawn(Engine::accept_streams(self.clone(), link.clone()));
        self.spawn(Engine::watch_closed(self.clone(), link));
        Ok(winner)
    }

    /// Stops new work on `link` and closes it: once its work in flight is done when `quiet`
    /// (bounded by `request_timeout`), at once otherwise.
    fn retire(&self, link: Arc<Link>, code: VarInt, reason: &'static [u8], quiet: bool) {
        link.mark_closing();
        if !quiet {
            link.conn.close(code, reason);
            return;
        }
        let bound = self.config.request_timeout;
        self.spawn(async move {
            link.wait_quiet(bound).await;
            link.conn.close(code, reason);
        });
    }

    /// Closes pooled links that carried no application traffic for `idle_timeout`. Keep-alive
    /// keeps QUIC from timing them out while the peer lives; this keeps the pool to peers in
    /// use.
    async fn idle_sweep(engine: Weak<Self>) {
        let period = match engine.upgrade() {
            Some(engine) => engine.config.idle_timeout / 4,
            None => return,
        };
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            if engine.state().closed {
                return;
            }
            engine.close_idle().await;
        }
    }

    /// Keeps pooled links the application has not used for up to `keep` (never less than
    /// `idle_timeout`, at most [`KEEP_UNUSED_MAX`]) before the idle sweep closes them.
    pub fn keep_unused_for(&self, keep: Duration) {
        let keep = keep.clamp(self.config.idle_timeout, KEEP_UNUSED_MAX);
        self.keep_unused_ms.store(millis(keep), Ordering::Relaxed);
    }

    async fn close_idle(&self) {
        self.close_expired().await;
        let idle_ms = self.keep_unused_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        let idle = |l: &Link| now.saturating_sub(l.last_used_ms()) >= idle_ms && l.in_flight() == 0;
        for name in self.close_pooled(idle, "idle", codes::IDLE).await {
            bump(&self.counters.idle_closed);
            debug!(peer = %name, "closed idle connection");
        }
    }

    /// Takes the pooled links `which` selects out of the pool, tells the owner each peer is
    /// down (`reason`), and closes each with `code` once no request is in flight on it.
    /// Returns their names.
    async fn close_pooled(
        &self,
        which: impl Fn(&Link) -> bool,
        reason: &'static str,
        code: VarInt,
    ) -> Vec<NodeName> {
        let links: Vec<Arc<Link>> = {
            let mut state = self.state();
            let names: Vec<NodeName> = state
                .pool
                .values()
                .filter(|l| which(l))
                .map(|l| l.name.clone())
                .collect();
            names
                .iter()
                .filter_map(|name| state.pool.remove(name))
                .collect()
        };
        let mut names = Vec::with_capacity(links.len());
        for link in links {
            self.emit(Incoming::PeerDown {
                name: link.name.clone(),
                reason: reason.into(),
            })
            .await;
            names.push(link.name.clone());
            self.retire(link, code, reason.as_bytes(), true);
        }
        names
    }

    /// Notes how a dial of `key` ended, for pacing: a refusal makes the next dial wait
    /// ([`DIAL_PACE_FIRST`], doubling, jittered); an admission forgets the refusals.
    fn pace(&self, key: &DialKey, refused: bool) {
        let mut state = self.state();
        if !refused {
            state.paced.remove(key);
            return;
        }
        let now = self.now_ms();
        if !state.paced.contains_key(key) && state.paced.len() >= PACED_PEERS_MAX {
            state.paced.retain(|_, p| p.until_ms > now);
            if state.paced.len() >= PACED_PEERS_MAX {
                return;
            }
        }
        let pace = state.paced.entry(key.clone()).or_insert(Pace {
            refusals: 0,
            until_ms: 0,
        });
        pace.refusals = pace.refusals.saturating_add(1);
        let doubled = DIAL_PACE_FIRST.saturating_mul(1 << (pace.refusals - 1).min(16));
        let wait = doubled
            .min(DIAL_PACE_MAX)
            .mul_f64(rand::random_range(0.75..1.25));
        pace.until_ms = now.saturating_add(millis(wait));
    }

    /// Closes pooled links whose peer's certificate has expired since the handshake (a new
    /// handshake would be refused): cleanly, once no request is in flight on them.
    async fn close_expired(&self) {
        // As WebPKI counts it: expired once the current second is past the last valid one.
        let expired = |l: &Link| {
            l.cert_not_after.is_some_and(|t| {
                std::time::SystemTime::now()
                    .duration_since(t)
                    .is_ok_and(|past| past >= Duration::from_secs(1))
            })
        };
        let closed = self
            .close_pooled(expired, "certificate expired", codes::EXPIRED)
            .await;
        for name in closed {
            bump(&self.counters.expired_closed);
            info!(peer = %name, "closed the connection: the peer's certificate has expired");
        }
    }

    /// Closes the pooled connections to `names` (their certificates were revoked), once no
    /// request is in flight on them; the peers are told down.
    pub async fn close_revoked(&self, admitted: impl Fn(&NodeName, &[u8]) -> bool) {
        // Checked outside the lock: each check is a signature verification.
        let pooled: Vec<Arc<Link>> = self.state().pool.values().cloned().collect();
        let doomed: Vec<Arc<Link>> = pooled
            .into_iter()
            .filter(|l| peer_certificate_of(&l.conn).is_some_and(|der| !admitted(&l.name, &der)))
            .collect();
        if doomed.is_empty() {
            return;
        }
        let closed = self
            .close_pooled(
                |l| doomed.iter().any(|d| std::ptr::eq(d.as_ref(), l)),
                "certificate revoked",
                codes::REVOKED,
            )
            .await;
        for name in closed {
            info!(peer = %name, "closed the connection: the peer's certificate is no longer admitted (revoked, or its CA left the bundle)");
        }
    }

    /// Marks the engine closed and closes the endpoint without waiting.
    pub fn shut_down_now(&self) {
        let (links, pending) = {
            let mut state = self.state();
            state.closed = true;
            let links: Vec<Arc<Link>> = state.pool.drain().map(|(_, l)| l).collect();
            let pending: Vec<PendingDial> = state.dials.drain().map(|(_, p)| p).collect();
            (links, pending)
        };
        for pending in pending {
            add(&self.counters.datagrams_dropped, pending.datagrams.len());
            for waiter in pending.waiters {
                let _ = waiter.send(Err(Failure::Closed));
            }
        }
        for link in links {
            link.mark_closing();
            link.conn.close(codes::SHUTDOWN, b"shutting down");
        }
        self.endpoint.close(codes::SHUTDOWN, b"shutting down");
    }

    pub async fn close(&self) {
        self.shut_down_now();
        let bound = self.config.request_timeout;
        if timeout(bound, self.endpoint.wait_idle()).await.is_err() {
            debug!("endpoint not idle within {bound:?} after close");
        }
        info!(parent: &self.span, "closed");
    }
}
