//! A stranger that starts QUIC handshakes and never finishes them: real ClientHellos (QUIC
//! Initial packets made by quinn-proto's client side), sent from a plain UDP socket that never
//! reads what the node answers, so every handshake stays half open on the node's side until
//! the node gives up on it. Also the resident memory of this process, to bound a flood's cost.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_proto::crypto::rustls::QuicClientConfig;

/// Connections made per quinn-proto endpoint before a fresh one is taken, so the attacker's
/// own bookkeeping of abandoned connections stays small.
const HELLOS_PER_ENDPOINT: usize = 256;

/// Makes Initial datagrams, each opening a new connection (new connection IDs, new keys).
pub struct ClientHellos {
    endpoint: quinn_proto::Endpoint,
    config: quinn_proto::ClientConfig,
    target: SocketAddr,
    made: usize,
}

impl ClientHellos {
    /// Hellos for `target`, offering the cluster's ALPN so the node does its whole server
    /// flight, with no client certificate (a stranger has none from the cluster CA).
    pub fn new(target: SocketAddr) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        tls.alpn_protocols = vec![quicswim::tls::ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(Arc::new(tls)).expect("TLS 1.3 config for QUIC");
        ClientHellos {
            endpoint: new_endpoint(),
            config: quinn_proto::ClientConfig::new(Arc::new(crypto)),
            target,
            made: 0,
        }
    }

    /// The first datagram of a new connection: its Initial packet with the ClientHello.
    pub fn next_hello(&mut self) -> Vec<u8> {
        if self.made % HELLOS_PER_ENDPOINT == HELLOS_PER_ENDPOINT - 1 {
            self.endpoint = new_endpoint();
        }
        self.made += 1;
        let now = Instant::now();
        let (_, mut conn) = self
            .endpoint
            .connect(now, self.config.clone(), self.target, "seed.invalid")
            .expect("connect to a valid address");
        let mut buf = Vec::with_capacity(1500);
        let transmit = conn
            .poll_transmit(now, 1, &mut buf)
            .expect("a new connection sends its Initial at once");
        buf.truncate(transmit.segment_size.unwrap_or(transmit.size));
        buf
    }
}

fn new_endpoint() -> quinn_proto::Endpoint {
    quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    )
}

/// What a flood sent.
#[derive(Clone, Copy, Debug)]
pub struct FloodReport {
    /// ClientHellos sent.
    pub sent: usize,
    /// From the first to the last.
    pub elapsed: Duration,
}

/// Sends ClientHellos to `target` from `from` (an address in 127.0.0.0/8 other than the
/// cluster's, port 0) at `per_sec`, and never answers. Blocking: run it on its own thread.
/// Runs until `stop` is set, and stops by itself after `count_max` hellos or `time_max`,
/// whichever comes first, so a test that fails before setting `stop` still ends.
pub fn half_open_handshakes(
    from: SocketAddr,
    target: SocketAddr,
    per_sec: u32,
    count_max: usize,
    time_max: Duration,
    stop: &AtomicBool,
) -> FloodReport {
    let socket = UdpSocket::bind(from).expect("bind the attacker's address");
    let mut hellos = ClientHellos::new(target);
    let start = Instant::now();
    let give_up = start + time_max;
    let gap = Duration::from_secs(1) / per_sec.max(1);
    let mut sent: usize = 0;
    while sent < count_max && Instant::now() < give_up && !stop.load(Ordering::Relaxed) {
        // Paced: hello number `sent` is due `sent` gaps after the start.
        let due = start + gap.saturating_mul(u32::try_from(sent).unwrap_or(u32::MAX));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let hello = hellos.next_hello();
        // A full socket buffer or an ICMP error is the attacker's problem, not the test's.
        let _ = socket.send_to(&hello, target);
        sent += 1;
    }
    FloodReport {
        sent,
        elapsed: start.elapsed(),
    }
}

/// This process's resident memory in bytes (`VmRSS` from /proc/self/status); `None` where
/// there is no /proc.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
