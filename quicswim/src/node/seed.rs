//! Seeds: the members a node joins through, by address or by DNS name, and their resolution
//! before every join attempt.
//!
//! Names are resolved anew at each attempt, so a seed that is not in DNS yet (a pod not yet
//! scheduled) or whose address changed (a pod rescheduled) is found when it is there. The
//! resolver is hickory's, in pure Rust: it reads `/etc/resolv.conf` and `/etc/hosts` itself,
//! so it works in a statically linked binary in an empty container, where the C library's
//! resolver (NSS) cannot.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use tokio::task::JoinSet;

/// Addresses kept from one seed name (its A and AAAA records, or its SRV targets').
const ADDRS_PER_SEED_MAX: usize = 64;
/// SRV targets resolved for one `dnssrv+` seed.
const SRV_TARGETS_MAX: usize = 32;
/// How long one DNS query waits for its answer (each is tried twice, and a name may be tried
/// with each search domain in turn).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one round's resolution may take in all. Seeds, and a `dnssrv+` seed's targets,
/// are looked up at once, but a long search list still chains queries: a seed not resolved by
/// then counts as failed for this round, and the others keep what they found.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// A member to join through.
///
/// Parsed from the agent's `--join` syntaxes:
///
/// | text | seed |
/// |---|---|
/// | `10.0.0.6:7946`, `[fd00::6]:7946` | [`Seed::Addr`] |
/// | `seed.example.net:7946`, `dns+seed.example.net:7946` | [`Seed::Host`]: every A and AAAA record |
/// | `dnssrv+_quicswim._udp.example.net` | [`Seed::Srv`]: every SRV record's target and port |
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seed {
    /// One address.
    Addr(SocketAddr),
    /// A DNS name and the port its addresses listen on.
    Host {
        /// The name, resolved at each join attempt.
        name: String,
        /// The members' QUIC port.
        port: u16,
    },
    /// A DNS name whose SRV records list the members (target and port each).
    Srv(String),
}

impl From<SocketAddr> for Seed {
    fn from(addr: SocketAddr) -> Self {
        Seed::Addr(addr)
    }
}

/// A seed that cannot be parsed: what was given and what was expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?}: {reason} (expected IP:PORT, HOST:PORT, dns+HOST:PORT or dnssrv+NAME)")]
pub struct SeedParseError {
    text: String,
    reason: &'static str,
}

impl FromStr for Seed {
    type Err = SeedParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| SeedParseError {
            text: text.to_string(),
            reason,
        };
        if let Some(name) = text.strip_prefix("dnssrv+") {
            check_name(name).map_err(error)?;
            return Ok(Seed::Srv(name.to_string()));
        }
        let explicit = text.strip_prefix("dns+");
        if explicit.is_none() {
            if let Ok(addr) = text.parse::<SocketAddr>() {
                return Ok(Seed::Addr(addr));
            }
        }
        let host_port = explicit.unwrap_or(text);
        let (name, port) = host_port.rsplit_once(':').ok_or_else(|| error("no port"))?;
        let port = port.parse::<u16>().map_err(|_| error("bad port"))?;
        if port == 0 {
            return Err(error("port 0"));
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if name.parse::<std::net::IpAddr>().is_err() {
            check_name(name).map_err(error)?;
        }
        Ok(Seed::Host {
            name: name.to_string(),
            port,
        })
    }
}

/// A DNS name as a seed may give it: labels of letters, digits, `-` and `_` (SRV names),
/// an optional trailing dot.
fn check_name(name: &str) -> Result<(), &'static str> {
    let labels = name.strip_suffix('.').unwrap_or(name);
    if labels.is_empty() {
        return Err("no name");
    }
    if labels.len() > 253 {
        return Err("name longer than 253 characters");
    }
    let valid = labels.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if valid {
        Ok(())
    } else {
        Err("not a DNS name")
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seed::Addr(a) => write!(f, "{a}"),
            Seed::Host { name, port } if name.contains(':') => write!(f, "[{name}]:{port}"),
            Seed::Host { name, port } => write!(f, "{name}:{port}"),
            Seed::Srv(name) => write!(f, "dnssrv+{name}"),
        }
    }
}

/// What one seed resolved to at one attempt.
#[derive(Clone, Debug)]
pub(super) struct SeedLookup {
    pub(super) seed: Seed,
    /// Its addresses, or why there are none (the resolver's words).
    pub(super) addrs: Result<Vec<SocketAddr>, String>,
}

/// Resolves seeds; a new hickory resolver per attempt, so changes to `/etc/resolv.conf` and
/// `/etc/hosts` are seen and no cached answer outlives the attempt.
#[derive(Clone, Debug)]
pub(super) struct SeedResolver {
    /// A DNS server to ask instead of the system's.
    nameserver: Option<SocketAddr>,
}

impl SeedResolver {
    pub(super) fn new(nameserver: Option<SocketAddr>) -> Self {
        Self { nameserver }
    }

    /// Every seed's addresses, in the order given. Addresses need no lookup.
    pub(super) async fn resolve(&self, seeds: &[Seed]) -> Vec<SeedLookup> {
        if let Some(lookups) = without_names(seeds) {
            return lookups;
        }
        let resolver = match self.resolver() {
            Ok(r) => r,
            Err(e) => {
                return seeds
                    .iter()
                    .map(|seed| SeedLookup {
                        seed: seed.clone(),
                        addrs: match seed {
                            Seed::Addr(a) => Ok(vec![*a]),
                            _ => Err(e.clone()),
                        },
                    })
                    .collect();
            }
        };
        let mut tasks = JoinSet::new();
        for (i, seed) in seeds.iter().enumerate() {
            let (seed, resolver) = (seed.clone(), resolver.clone());
            tasks.spawn(async move {
                let addrs = lookup(&resolver, &seed).await;
                (i, SeedLookup { seed, addrs })
            });
        }
        let mut found: Vec<Option<SeedLookup>> = vec![None; seeds.len()];
        let give_up = tokio::time::Instant::now() + ROUND_TIMEOUT;
        loop {
            match tokio::time::timeout_at(give_up, tasks.join_next()).await {
                Ok(Some(Ok((i, one)))) => found[i] = Some(one),
                Ok(Some(Err(_))) => {} // a lookup task panicked: that seed counts as failed
                Ok(None) => break,
                Err(_) => {
                    tasks.abort_all();
                    break;
                }
            }
        }
        let late = format!(
            "DNS resolution timed out (the round's limit is {}s)",
            ROUND_TIMEOUT.as_secs()
        );
        seeds
            .iter()
            .zip(found)
            .map(|(seed, one)| {
                one.unwrap_or_else(|| SeedLookup {
                    seed: seed.clone(),
                    addrs: Err(late.clone()),
                })
            })
            .collect()
    }

    fn resolver(&self) -> Result<TokioResolver, String> {
        let mut builder = match self.nameserver {
            Some(server) => {
                let mut config = ResolverConfig::new();
                config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS settings: {e}"))?,
        };
        let options = builder.options_mut();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.timeout = QUERY_TIMEOUT;
        options.attempts = 2;
        Ok(builder.build())
    }
}

/// The lookups when no seed is a name.
pub(super) fn without_names(seeds: &[Seed]) -> Option<Vec<SeedLookup>> {
    seeds
        .iter()
        .map(|seed| match seed {
            Seed::Addr(a) => Some(SeedLookup {
                seed: seed.clone(),
                addrs: Ok(vec![*a]),
            }),
            _ => None,
        })
        .collect()
}

async fn lookup(resolver: &TokioResolver, seed: &Seed) -> Result<Vec<SocketAddr>, String> {
    match seed {
        Seed::Addr(a) => Ok(vec![*a]),
        Seed::Host { name, port } => {
            let ips = resolver.lookup_ip(name.as_str()).await.map_err(why)?;
            Ok(ips
                .iter()
                .take(ADDRS_PER_SEED_MAX)
                .map(|ip| SocketAddr::new(ip, *port))
                .collect())
        }
        Seed::Srv(name) => {
            let records = resolver.srv_lookup(name.as_str()).await.map_err(why)?;
            // The targets at once: one after another, a few slow ones would take the round.
            let mut targets = JoinSet::new();
            for (i, srv) in records.iter().take(SRV_TARGETS_MAX).enumerate() {
                let (target, port, resolver) = (srv.target().clone(), srv.port(), resolver.clone());
                targets.spawn(async move {
                    let found = resolver.lookup_ip(target.clone()).await;
                    (i, target.to_utf8(), port, found)
                });
            }
            let mut answers = Vec::new();
            while let Some(done) = targets.join_next().await {
                if let Ok(answer) = done {
                    answers.push(answer);
                }
            }
            answers.sort_by_key(|(i, ..)| *i);
            let mut addrs = Vec::new();
            let mut errors = Vec::new();
            for (_, target, port, found) in answers {
                match found {
                    Ok(ips) => addrs.extend(ips.iter().map(|ip| SocketAddr::new(ip, port))),
                    Err(e) => errors.push(format!("{target}: {}", why(e))),
                }
            }
            addrs.truncate(ADDRS_PER_SEED_MAX);
            if addrs.is_empty() && !errors.is_empty() {
                return Err(errors.join("; "));
            }
            Ok(addrs)
        }
    }
}

/// The resolver's error in a few words: the common cases named plainly.
fn why(e: ResolveError) -> String {
    if e.is_nx_domain() {
        "no such name".to_string()
    } else if e.is_no_records_found() {
        "no records".to_string()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_every_syntax_and_print_back() {
        let cases = [
            (
                "10.0.0.6:7946",
                Seed::Addr("10.0.0.6:7946".parse().unwrap()),
            ),
            ("[::1]:7946", Seed::Addr("[::1]:7946".parse().unwrap())),
            (
                "seed.example.net:7946",
                Seed::Host {
                    name: "seed.example.net".into(),
                    port: 7946,
                },
            ),
            (
                "dnssrv+_quicswim._udp.example.net",
                Seed::Srv("_quicswim._udp.example.net".into()),
            ),
        ];
        for (text, seed) in cases {
            assert_eq!(text.parse::<Seed>(), Ok(seed.clone()), "{text}");
            assert_eq!(seed.to_string(), text);
        }
        assert_eq!(
            "dns+seed.example.net:7946".parse::<Seed>(),
            "seed.example.net:7946".parse::<Seed>()
        );
        assert_eq!(
            "dns+10.0.0.6:7946".parse::<Seed>(),
            Ok(Seed::Host {
                name: "10.0.0.6".into(),
                port: 7946
            })
        );
    }

    #[test]
    fn bad_seeds_say_what_was_expected() {
        for text in [
            "no-port",
            "host:",
            "host:99999",
            "host:0",
            ":7946",
            "dnssrv+",
            "dns+bad name:1",
            "a..b:1",
        ] {
            let err = text.parse::<Seed>().unwrap_err().to_string();
            assert!(err.contains("expected IP:PORT"), "{text}: {err}");
        }
    }
}
