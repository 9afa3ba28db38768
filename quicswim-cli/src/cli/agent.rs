//! `quicswim agent`: run one cluster member and its control API until SIGINT or SIGTERM,
//! then leave the cluster gracefully; or until it is told to leave through its API
//! (`quicswim leave`), then exit the same way.
//!
//! Settings come from flags and from an optional TOML file (`--config`); a flag wins over the
//! file, the file over the defaults. Paths in the file are relative to the file's directory.
//!
//! ```toml
//! name = "alice"
//! bind = "0.0.0.0:7946"
//! advertise = "10.0.0.5:7946"
//! join = ["10.0.0.6:7946", "seed.example.net:7946", "dnssrv+_quicswim._udp.example.net"]
//! join_timeout = "5m"        # give up (exit 1) if no seed answers by then; default: never
//! bootstrap = false          # true: a deliberate first node, ready (/ready) while alone
//! certs = "certs"            # or ca = ..., cert = ..., key = ...
//! api = "127.0.0.1:7947"
//! profile = "lan"            # lan | wan | local
//! log_format = "text"        # text | json
//! meta = "zone=a"
//! leave_timeout = "5s"       # how long a stop waits for a member to confirm the leave
//! data_dir = "/var/lib/quicswim"   # keeps the members last known, to rejoin through
//! keep_alive = "20s"         # only across NATs or firewalls that forget quiet flows
//!
//! [protocol]                 # any protocol::Config field; overrides the profile
//! probe_interval = "500ms"
//! ```

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use quicswim::protocol::member::META_LEN_MAX;
use quicswim::protocol::{ConfigPatch, NodeName, Profile};
use quicswim::tls::Identity;
use quicswim::transport::TransportConfig;
use quicswim::{api, LeaveOutcome, Node, NodeConfig, Seed, StopReason, LEAVE_TIMEOUT_DEFAULT};
use serde::Deserialize;
use tokio::net::TcpListener;
use tracing::{info, warn};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

use super::http::DEFAULT_API;
use super::reload::{self, IdentityFiles};
use super::snapshot::Snapshot;

/// How long the API server may take to finish its requests after the node has left, beyond
/// the leave timeout (a `POST /v1/leave` answers once the transport has closed, which the
/// rest of that timeout bounds).
const API_DRAIN: Duration = Duration::from_secs(2);

/// The largest `--leave-timeout`: a stop that waits longer is a typo, not a wish.
const LEAVE_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// The largest `--join-timeout` (30 days); above it, leave the flag out to keep trying.
const JOIN_TIMEOUT_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Arguments of `quicswim agent`, and the keys of its `--config` file: one definition, so a
/// flag and its key cannot drift apart. A flag wins over the file, the file over the defaults.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentArgs {
    /// Node name; must be the DNS name in the node's certificate.
    #[arg(long, value_name = "NAME")]
    name: Option<NodeName>,
    /// UDP address to listen on for QUIC, e.g. 0.0.0.0:7946 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Address other members reach this node at [default: the bound address; required when
    /// binding 0.0.0.0].
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// A member to join through (repeatable): IP:PORT; HOST:PORT or dns+HOST:PORT (every A
    /// and AAAA record); dnssrv+NAME (every SRV record's target and port). Names are
    /// resolved again at every join attempt, and one that does not resolve yet is retried.
    /// None: start a new cluster.
    #[arg(long = "join", value_name = "SEED")]
    #[serde(default)]
    join: Vec<String>,
    /// This is a deliberate first node: it starts the cluster without waiting for its seeds
    /// (and keeps asking them until it has a peer), and `/ready` answers 200 from the start.
    /// Without it, a node is ready only once it has joined (a seed answered, or a member joined
    /// it) and while it has a live peer; seeds that resolve only to itself are retried.
    #[arg(long)]
    #[serde(default)]
    bootstrap: bool,
    /// Give up and exit with status 1 if no seed has answered within this time (e.g. 5m)
    /// [default: keep trying].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    join_timeout: Option<Duration>,
    /// DNS server (IP:PORT) to resolve seed names with, instead of the system's
    /// /etc/resolv.conf; for tests and unusual setups.
    #[arg(long, value_name = "ADDR")]
    dns_server: Option<SocketAddr>,
    /// Directory with ca.pem, NAME.pem and NAME-key.pem: the DIR/NAME that `quicswim certs
    /// issue` writes (a DIR holding NAME/ is looked into).
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// CA certificate(s) to trust, PEM [default: DIR/ca.pem].
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// This node's certificate, PEM [default: DIR/NAME.pem].
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// This node's private key, PEM [default: DIR/NAME-key.pem].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Certificate revocation lists published by the CA, PEM (`X509 CRL` blocks): a peer
    /// certificate they list is refused. Reloaded with the certificates (SIGHUP, file change).
    #[arg(long, value_name = "FILE")]
    crl: Option<PathBuf>,
    /// TCP address of the HTTP control API [default: 127.0.0.1:7947]. Without
    /// --api-token-file anyone who reaches it may call it: keep it on loopback or set a token.
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// File holding the API's bearer token (first line). With it, every API route but
    /// /health and /ready needs `Authorization: Bearer TOKEN`; the client commands read the
    /// same file from QUICSWIM_API_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    api_token_file: Option<PathBuf>,
    /// Host name with dots the API answers to, besides IP addresses and dotless names such as
    /// localhost (repeatable); a request naming any other host is refused, which stops DNS
    /// rebinding from a browser.
    #[arg(long = "api-host", value_name = "NAME")]
    #[serde(default)]
    api_host: Vec<String>,
    /// TOML file holding any of these settings, plus a [protocol] table of protocol fields
    /// that override the profile. Flags win over the file.
    // This doc comment is also the flag's --help text, shown as written: `[protocol]` names
    // the TOML table, and escaping it for rustdoc would put backslashes in the help.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Protocol timing preset [default: lan].
    #[arg(long, value_parser = super::profile_parser())]
    profile: Option<Profile>,
    /// Log line format on stderr (filter with RUST_LOG, default info) [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Application metadata gossiped with this node (at most 128 bytes).
    #[arg(long, value_name = "STRING")]
    meta: Option<String>,
    /// On SIGTERM or SIGINT, how long to wait for a member to confirm the leave (it has this
    /// node Left and this node's keys) before exiting anyway [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    leave_timeout: Option<Duration>,
    /// Directory where the members last known are kept (created if missing), so that a
    /// restarted node rejoins through them when its seeds are gone.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Send a QUIC keep-alive on each quiet connection this often (e.g. 20s, below 30s) to
    /// keep open a path that forgets quiet flows, such as a NAT or stateful firewall between
    /// members. Off unless set: probes establish liveness, and keep-alives on a connection to
    /// every member cost packets that grow with the cluster.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    keep_alive: Option<Duration>,
    /// The file's `[protocol]` table: protocol fields laid over the profile's preset.
    #[arg(skip)]
    protocol: Option<ConfigPatch>,
}

impl AgentArgs {
    /// Reads a `--config` file; relative paths inside become relative to its directory.
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut file: AgentArgs = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| line_col(&text, s.start))
                .unwrap_or_default();
            anyhow!("{}{at}: {}", path.display(), e.message().trim())
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let paths = [
            &mut file.certs,
            &mut file.ca,
            &mut file.cert,
            &mut file.key,
            &mut file.crl,
            &mut file.data_dir,
            &mut file.api_token_file,
        ];
        for p in paths.into_iter().flatten() {
            *p = base.join(&*p);
        }
        Ok(file)
    }

    /// These settings (the flags) laid over `file`'s.
    fn over(self, file: AgentArgs) -> AgentArgs {
        AgentArgs {
            name: self.name.or(file.name),
            bind: self.bind.or(file.bind),
            advertise: self.advertise.or(file.advertise),
            join: if self.join.is_empty() {
                file.join
            } else {
                self.join
            },
            bootstrap: self.bootstrap || file.bootstrap,
            join_timeout: self.join_timeout.or(file.join_timeout),
            dns_server: self.dns_server.or(file.dns_server),
            certs: self.certs.or(file.certs),
            ca: self.ca.or(file.ca),
            cert: self.cert.or(file.cert),
            key: self.key.or(file.key),
            crl: self.crl.or(file.crl),
            api: self.api.or(file.api),
            api_token_file: self.api_token_file.or(file.api_token_file),
            api_host: if self.api_host.is_empty() {
                file.api_host
            } else {
                self.api_host
            },
            config: self.config,
            profile: self.profile.or(file.profile),
            log_format: self.log_format.or(file.log_format),
            meta: self.meta.or(file.meta),
            leave_timeout: self.leave_timeout.or(file.leave_timeout),
            data_dir: self.data_dir.or(file.data_dir),
            keep_alive: self.keep_alive.or(file.keep_alive),
            protocol: file.protocol,
        }
    }
}

/// Log line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A duration in the config file, as humantime text (`"5s"`, `"500ms"`).
fn duration_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    super::parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `:LINE:COLUMN` (1-based) of a byte offset in `text`.
fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(":{line}:{column}")
}

/// Everything the agent runs with, merged and checked.
struct Settings {
    node: NodeConfig,
    api: SocketAddr,
    api_token: Option<String>,
    api_hosts: Vec<String>,
    /// Files that should be readable by their owner alone, and what they hold.
    secret_files: Vec<(PathBuf, &'static str)>,
    log_format: LogFormat,
    profile: Profile,
    leave_timeout: Duration,
    data_dir: Option<PathBuf>,
    join_timeout: Option<Duration>,
    /// Where the identity came from, to reload it from.
    identity_files: IdentityFiles,
}

/// Merges flags over the file over defaults, and checks everything that can be checked
/// before binding a socket.
fn resolve(flags: AgentArgs) -> anyhow::Result<Settings> {
    let joins_from_flags = !flags.join.is_empty();
    let args = match &flags.config {
        Some(path) => {
            let file = AgentArgs::load(path)?;
            flags.over(file)
        }
        None => flags,
    };
    let in_file = |key: &str| match &args.config {
        Some(path) => format!("`{key}` in {}", path.display()),
        None => format!("`{key}` in a --config file"),
    };

    let name = args
        .name
        .clone()
        .ok_or_else(|| anyhow!("no node name: give --name NAME (or {})", in_file("name")))?;
    let bind = args.bind.ok_or_else(|| {
        anyhow!(
            "no address to listen on: give --bind ADDR, e.g. 0.0.0.0:7946 (or {})",
            in_file("bind")
        )
    })?;
    let advertise = args.advertise;
    match advertise {
        Some(a) if a.ip().is_unspecified() || a.port() == 0 => {
            bail!("--advertise {a} cannot be reached by others; give a routable IP and a port")
        }
        None if bind.ip().is_unspecified() => bail!(
            "--bind {bind} listens on every interface; give --advertise ADDR so others know \
             which address reaches this node"
        ),
        _ => {}
    }

    let origin = if joins_from_flags {
        "--join".to_string()
    } else {
        in_file("join")
    };
    // Only the syntax is checked here: names are resolved at every join attempt.
    let seeds = args
        .join
        .iter()
        .map(|s| s.parse::<Seed>().map_err(|e| anyhow!("{origin} {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.join_timeout.is_some_and(|t| t.is_zero()) {
        bail!("--join-timeout must be above zero");
    }
    if let Some(t) = args.join_timeout.filter(|t| *t > JOIN_TIMEOUT_MAX) {
        bail!(
            "--join-timeout {} is too long: at most {} (leave it out to keep trying)",
            humantime::format_duration(t),
            humantime::format_duration(JOIN_TIMEOUT_MAX)
        );
    }
    if let Some(t) = args.leave_timeout.filter(|t| *t > LEAVE_TIMEOUT_MAX) {
        bail!(
            "--leave-timeout {} is too long: at most {}",
            humantime::format_duration(t),
            humantime::format_duration(LEAVE_TIMEOUT_MAX)
        );
    }

    let transport = TransportConfig {
        keep_alive: args.keep_alive,
        ..TransportConfig::default()
    };
    // Said in the agent's terms: it does not expose the idle timeout as a setting.
    if let Some(k) = args.keep_alive {
        if !transport.keep_alive_fits(k) {
            bail!(
                "--keep-alive (or {}) {} must be above zero and below the transport's idle timeout, {}",
                in_file("keep_alive"),
                humantime::format_duration(k),
                humantime::format_duration(transport.idle_timeout)
            );
        }
    }
    // The bind address is the node's; only what a flag set can be at fault here.
    transport
        .validate()
        .map_err(|e| anyhow!("--keep-alive (or {}): {e}", in_file("keep_alive")))?;

    let profile = args.profile.unwrap_or_default();
    let protocol = profile
        .with_patch(args.protocol.unwrap_or_default())
        .map_err(|e| match &args.config {
            Some(path) => anyhow!(
                "{e} (profile {profile} with [protocol] from {})",
                path.display()
            ),
            None => anyhow!("{e} (profile {profile})"),
        })?;

    let meta = args.meta.unwrap_or_default().into_bytes();
    if meta.len() > META_LEN_MAX {
        bail!(
            "--meta is {} bytes; the limit is {META_LEN_MAX}",
            meta.len()
        );
    }

    let (identity, identity_files) =
        load_identity(&name, args.certs, args.ca, args.cert, args.key, args.crl)?;
    let api_token = args
        .api_token_file
        .as_deref()
        .map(|path| super::token::read_token(path, "--api-token-file"))
        .transpose()?;
    // Warned about once logging is up (resolve runs before it).
    let mut secret_files = vec![(identity_files.key.clone(), "node private key")];
    secret_files.extend(args.api_token_file.map(|p| (p, "API token file")));

    Ok(Settings {
        node: NodeConfig {
            identity,
            bind,
            advertise,
            seeds,
            bootstrap: args.bootstrap,
            nameserver: args.dns_server,
            protocol,
            transport,
            meta,
        },
        api: args.api.unwrap_or_else(|| {
            DEFAULT_API
                .parse()
                .expect("DEFAULT_API is a socket address")
        }),
        api_token,
        api_hosts: args.api_host,
        secret_files,
        log_format: args.log_format.unwrap_or(LogFormat::Text),
        profile,
        leave_timeout: args.leave_timeout.unwrap_or(LEAVE_TIMEOUT_DEFAULT),
        data_dir: args.data_dir,
        join_timeout: args.join_timeout,
        identity_files,
    })
}

/// Loads the certificates, each from its own flag or else from the certs directory, and
/// checks that they name `name`, then the revocation lists in `crl` if given; says which
/// files they came from.
pub(super) fn load_identity(
    name: &NodeName,
    dir: Option<PathBuf>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    crl: Option<PathBuf>,
) -> anyhow::Result<(Identity, IdentityFiles)> {
    // `certs issue` writes each node's files into DIR/NAME/; a DIR holding that directory is
    // read there, and a DIR holding the files themselves (the node's own directory, or the
    // flat layout of earlier versions) is read as it is.
    let dir = dir.map(|d| {
        let own = d.join(name.as_str());
        if own.join(format!("{name}.pem")).is_file() {
            own
        } else {
            d
        }
    });
    let from_dir = |file: String, flag: &str| {
        dir.as_ref().map(|d| d.join(file)).ok_or_else(|| {
            anyhow!("no {flag} file: give --certs DIR (holding ca.pem, NAME.pem, NAME-key.pem) or --{flag} FILE")
        })
    };
    let uses_dir = ca.is_none() || cert.is_none() || key.is_none();
    let ca = ca.map_or_else(|| from_dir("ca.pem".into(), "ca"), Ok)?;
    let cert = cert.map_or_else(|| from_dir(format!("{name}.pem"), "cert"), Ok)?;
    let key = key.map_or_else(|| from_dir(format!("{name}-key.pem"), "key"), Ok)?;
    let identity = Identity::load(&ca, &cert, &key).map_err(|e| match &dir {
        Some(d) if uses_dir => anyhow!(
            "cannot load certificates: {e} (--certs {} should hold ca.pem, {name}.pem and \
             {name}-key.pem; make them with `quicswim certs issue {name}`)",
            d.display()
        ),
        _ => anyhow!("cannot load certificates: {e}"),
    })?;
    if identity.name != *name {
        bail!(
            "{}: the certificate is for node {:?}, not {:?} (--name); a node must present a \
             certificate issued to its own name",
            cert.display(),
            identity.name.as_str(),
            name.as_str()
        );
    }
    let identity = match &crl {
        Some(path) => identity
            .with_crl_file(path)
            .map_err(|e| anyhow!("cannot load --crl: {e}"))?,
        None => identity,
    };
    Ok((identity, IdentityFiles { ca, cert, key, crl }))
}

pub(crate) fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(|e| {
            let value = std::env::var("RUST_LOG").unwrap_or_default();
            anyhow!("RUST_LOG={value:?}: {e}")
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let done = match format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    done.map_err(|e| anyhow!("cannot set up logging: {e}"))
}

/// SIGINT and SIGTERM, registered up front so that neither kills the process once the agent
/// has said it is running; and SIGHUP (systemd's `ExecReload`, `kill -HUP`), which reloads
/// the certificates ([`super::reload`]) and would otherwise kill the agent without a leave.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    /// Taken by the reloader once the node runs.
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())
                    .context("cannot install a SIGINT handler")?,
                terminate: signal(SignalKind::terminate())
                    .context("cannot install a SIGTERM handler")?,
                hangup: Some(
                    signal(SignalKind::hangup()).context("cannot install a SIGHUP handler")?,
                ),
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal that stops the agent and names it.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        return tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        };
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Runs the agent until a signal, then leaves and returns.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let settings = resolve(args)?;
    init_logging(settings.log_format)?;
    for (path, what) in &settings.secret_files {
        quicswim::tls::warn_if_readable_by_others(path, what);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let Settings {
        node: mut config,
        api: api_addr,
        api_token,
        api_hosts,
        profile,
        leave_timeout,
        data_dir,
        join_timeout,
        identity_files,
        ..
    } = settings;
    let name = config.identity.name.clone();
    let mut signals = Signals::register()?;
    let snapshot = data_dir.as_deref().map(Snapshot::open).transpose()?;
    if let Some(snapshot) = &snapshot {
        // The members last known join the seeds: any of them still up lets this node back in.
        let known = snapshot.load(&name);
        info!(members = known.len(), "member snapshot read");
        let mut seen: std::collections::HashSet<Seed> = config.seeds.iter().cloned().collect();
        for seed in known.into_iter().map(Seed::from) {
            if seen.insert(seed.clone()) {
                config.seeds.push(seed);
            }
        }
    }
    let listener = TcpListener::bind(api_addr)
        .await
        .with_context(|| format!("cannot listen for the API on {api_addr} (--api)"))?;
    let api_addr = listener.local_addr()?;
    if api_token.is_none() && !api_addr.ip().is_loopback() {
        warn!(
            api = %api_addr,
            "THE CONTROL API LISTENS BEYOND LOOPBACK WITHOUT A TOKEN: anyone who reaches \
             {api_addr} can read this node's data, write its keys and make it leave; set \
             --api-token-file or bind --api to 127.0.0.1"
        );
    }
    let bind = config.bind;
    let node = Node::start(config)
        .await
        .with_context(|| format!("cannot start node {name} on {bind} (--bind)"))?;
    info!(node = %name, bound = %node.local_addr(), advertised = %node.addr(), api = %api_addr,
        %profile, "agent running");
    println!(
        "node {name} bound to {} (advertised as {}); API at http://{api_addr}",
        node.local_addr(),
        node.addr()
    );

    #[cfg(unix)]
    if let Some(hangup) = signals.hangup.take() {
        tokio::spawn(reload::run(
            node.clone(),
            name.clone(),
            identity_files,
            hangup,
        ));
    }
    #[cfg(not(unix))]
    tokio::spawn(reload::run(node.clone(), name.clone(), identity_files));
    let keeper = snapshot.map(|s| s.keep(node.clone()));
    let (stop_api, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = api::ServeOptions {
        leave_timeout,
        token: api_token,
        hosts: api_hosts,
    };
    let mut api_task = tokio::spawn(api::serve_with(
        node.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
        options,
    ));
    // Requests in progress when the API is told to stop may include a leave, which answers
    // once the transport has closed (bounded by the leave timeout).
    let drain = leave_timeout.saturating_add(API_DRAIN);
    let gave_up = async {
        match join_timeout {
            Some(limit) => {
                if tokio::time::timeout(limit, node.wait_joined())
                    .await
                    .is_err()
                {
                    return limit;
                }
                std::future::pending().await
            }
            None => std::future::pending().await,
        }
    };
    let signal = tokio::select! {
        signal = signals.next() => signal,
        reason = node.stopped() => {
            // The snapshot's last write happened as the leave began (see Keeper); this
            // waits for it.
            if let Some(keeper) = keeper {
                keeper.finish().await;
            }
            let _ = stop_api.send(());
            let outcome = match reason {
                StopReason::Left(outcome) => outcome,
                StopReason::Shutdown | StopReason::Crashed => {
                    drain_api(api_task, API_DRAIN).await;
                    return Err(anyhow!(
                        "node {name} stopped unexpectedly ({reason:?}) without leaving the cluster"
                    ));
                }
            };
            // Left through the API (`quicswim leave`): stop as on a signal, once the
            // leave request has been answered.
            info!("left the cluster as asked through the API");
            log_outcome(Ok(outcome), leave_timeout);
            drain_api(api_task, drain).await;
            info!(node = %name, "stopped");
            return Ok(());
        }
        limit = gave_up => {
            node.shutdown().await;
            let _ = stop_api.send(());
            return Err(anyhow!(
                "could not join the cluster within {} (--join-timeout): no seed answered; \
                 the warnings above say what was tried",
                humantime::format_duration(limit)
            ));
        }
        ended = &mut api_task => {
            node.shutdown().await;
            return match ended {
                Ok(Ok(())) => Err(anyhow!("the API server on {api_addr} stopped unexpectedly")),
                Ok(Err(e)) => Err(anyhow!("the API server on {api_addr} failed: {e}")),
                Err(e) => Err(anyhow!("the API server on {api_addr} crashed: {e}")),
            };
        }
    };
    info!(%signal, "leaving the cluster");
    if let Some(keeper) = keeper {
        keeper.finish().await;
    }
    tokio::select! {
        left = node.leave_with_timeout(leave_timeout) => log_outcome(left, leave_timeout),
        again = signals.next() => {
            warn!(signal = %again, "second signal: stopping without waiting for the leave");
            node.shutdown().await;
        }
    }
    let _ = stop_api.send(());
    drain_api(api_task, API_DRAIN).await;
    info!(node = %name, "stopped");
    Ok(())
}

/// Logs how a leave ended.
fn log_outcome(left: Result<LeaveOutcome, quicswim::node::Error>, timeout: Duration) {
    match left {
        Ok(LeaveOutcome::Confirmed { by }) => info!(%by, "leave confirmed"),
        Ok(LeaveOutcome::Alone) => info!("no other member to tell"),
        Ok(LeaveOutcome::TimedOut) => warn!(
            ?timeout,
            "no member confirmed the leave in time; stopping anyway"
        ),
        Err(e) => warn!(error = %e, "could not leave gracefully"),
    }
}

/// Waits (at most `limit`) for the API server, told to stop, to answer its last requests:
/// a leave request among them.
async fn drain_api(api_task: tokio::task::JoinHandle<std::io::Result<()>>, limit: Duration) {
    match tokio::time::timeout(limit, api_task).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "API server failed while stopping"),
        Ok(_) => {}
        Err(_) => warn!("API server did not stop within {limit:?}; exiting anyway"),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn join_timeout_is_read_from_the_file_like_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "join_timeout = \"90s\"\ndns_server = \"127.0.0.1:53\"\n",
        )
        .unwrap();
        let file = AgentArgs::load(&path).unwrap();
        assert_eq!(file.join_timeout, Some(Duration::from_secs(90)));
        std::fs::write(&path, "join_timeout = \"soon\"\n").unwrap();
        let err = AgentArgs::load(&path).unwrap_err().to_string();
        assert!(err.contains("agent.toml:1:"), "{err}");
    }

    #[test]
    fn timeouts_above_the_maximum_are_refused_by_flag() {
        let args = |leave, join| AgentArgs {
            name: Some(NodeName::new("a").unwrap()),
            bind: Some("127.0.0.1:0".parse().unwrap()),
            leave_timeout: leave,
            join_timeout: join,
            ..AgentArgs::default()
        };
        let huge = Some(Duration::from_secs(u64::MAX / 2));
        let err = resolve(args(huge, None)).err().unwrap().to_string();
        assert!(err.contains("--leave-timeout"), "{err}");
        let err = resolve(args(None, huge)).err().unwrap().to_string();
        assert!(err.contains("--join-timeout"), "{err}");
    }

    #[test]
    fn keep_alive_is_off_by_default_and_checked_when_set() {
        let args = |keep_alive| AgentArgs {
            name: Some(NodeName::new("a").unwrap()),
            bind: Some("127.0.0.1:0".parse().unwrap()),
            keep_alive,
            ..AgentArgs::default()
        };
        // The identity is missing, so resolve fails after the transport check: the error
        // says which check it came from.
        let err = resolve(args(None)).err().unwrap().to_string();
        assert!(!err.contains("keep-alive"), "{err}");
        let err = resolve(args(Some(Duration::from_secs(60))))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--keep-alive"), "{err}");
        assert!(err.contains("1m must be above zero and below"), "{err}");
        assert!(err.contains("idle timeout, 30s"), "{err}");
        assert!(
            !err.contains("idle_timeout"),
            "a setting the agent has not: {err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "keep_alive = \"20s\"\n").unwrap();
        let file = AgentArgs::load(&path).unwrap();
        assert_eq!(file.keep_alive, Some(Duration::from_secs(20)));
    }

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), ":1:1");
        assert_eq!(line_col(text, 6), ":2:1");
        assert_eq!(line_col(text, 9), ":2:4");
    }

    #[test]
    fn protocol_table_is_typed_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "name = \"a\"\n[protocol]\nprobe_intervall = \"1s\"\n",
        )
        .unwrap();
        let err = AgentArgs::load(&path).unwrap_err().to_string();
        assert!(err.contains("agent.toml:3:1"), "{err}");
        assert!(err.contains("probe_intervall"), "{err}");
        std::fs::write(&path, "[protocol]\ngossip_nodes = 5\n").unwrap();
        let file = AgentArgs::load(&path).unwrap();
        assert_eq!(file.protocol.unwrap().gossip_nodes, Some(5));
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = AgentArgs {
            name: Some(NodeName::new("from-file").unwrap()),
            join: vec!["a:1".into()],
            meta: Some("file".into()),
            ..AgentArgs::default()
        };
        let flags = AgentArgs {
            name: Some(NodeName::new("from-flag").unwrap()),
            ..AgentArgs::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.name.unwrap().as_str(), "from-flag");
        assert_eq!(merged.join, vec!["a:1".to_string()]);
        assert_eq!(merged.meta.as_deref(), Some("file"));
    }

    #[test]
    fn file_refuses_unknown_keys_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "name = \"alice\"\nbindd = \"127.0.0.1:1\"\n").unwrap();
        let err = AgentArgs::load(&path).unwrap_err().to_string();
        assert!(err.contains("agent.toml:2:1"), "{err}");
        assert!(err.contains("bindd"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn file_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "certs = \"certs\"\nkey = \"/abs/k.pem\"\n").unwrap();
        let file = AgentArgs::load(&path).unwrap();
        assert_eq!(file.certs.unwrap(), dir.path().join("certs"));
        assert_eq!(file.key.unwrap(), PathBuf::from("/abs/k.pem"));
    }
}
