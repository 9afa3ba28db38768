//! `quicswim certs`: make a cluster CA and node certificates.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use quicswim::protocol::NodeName;
use quicswim::tls;

/// Subcommands of `quicswim certs`.
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create a new cluster CA: DIR/ca.pem and DIR/ca-key.pem, and DIR/cluster with
    /// --cluster (refuses to overwrite any of them).
    Init {
        /// Directory to write the CA into (created if missing).
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Keep the CA already in DIR, if there is a usable one, and succeed (for scripts and
        /// one-shot containers that may run again).
        #[arg(long)]
        if_missing: bool,
        /// The CA's key type: Ed25519 (the default; nodes check the CA's signature once per
        /// member they learn, and Ed25519's checks fastest) or p256, ECDSA P-256, for tools
        /// and policies that do not take Ed25519. Node keys of either type work under both.
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key_type: KeyType,
        /// The cluster its node certificates are issued in by default (written to
        /// DIR/cluster). Nodes of different clusters refuse each other's handshakes and
        /// records even under one CA, so two clusters can never merge.
        #[arg(long, value_name = "NAME")]
        cluster: Option<NodeName>,
    },
    /// Issue node certificates signed by the CA in DIR: for each NAME, a directory OUT/NAME
    /// holding ca.pem, NAME.pem and NAME-key.pem (and not the CA key), to give the node's agent
    /// as --certs.
    Issue {
        /// Node names: DNS labels (a-z, 0-9, '-'), each written as its certificate's DNS SAN.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<NodeName>,
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Where the nodes' directories go [default: DIR]. Point it away from DIR to keep the
        /// CA's directory for the CA alone (for example a volume nodes never mount).
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        /// IP address to add as an IP SAN (repeatable; added to every certificate issued).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<IpAddr>,
        /// Validity in days (1..=36500). Short by default: a stolen node key is good for at
        /// most this long; renew by issuing again.
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Node key type. Ed25519 makes the smaller certificates (they travel with the
        /// members' signed records) and deterministic signatures, as cheap to verify as
        /// P-256's; p256 is ECDSA P-256, for tools that do not take Ed25519. Either works
        /// under a CA of either kind (`certs init` makes Ed25519 CAs; earlier versions made
        /// ECDSA P-256 ones).
        #[arg(long, value_enum, default_value_t = KeyType::Ed25519)]
        key_type: KeyType,
        /// The cluster to issue them in [default: the one `certs init --cluster` wrote to
        /// DIR/cluster; none if it wrote none].
        #[arg(long, value_name = "NAME")]
        cluster: Option<NodeName>,
    },
    /// Write a certificate revocation list signed by the CA in DIR naming the certificates
    /// given, and those FILE already names: nodes given it as `--crl FILE` (reloaded live)
    /// refuse them and close their connections with them.
    Revoke {
        /// A node name (its certificate in DIR/NAME/NAME.pem, as `certs issue` wrote it) or a
        /// certificate serial in hex (as `quicswim members` shows it).
        #[arg(value_name = "NAME|SERIAL", required = true)]
        targets: Vec<String>,
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The revocation list to write (PEM); the serials it already names are kept.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Days until the list's nextUpdate.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
}

/// `--key-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// Ed25519.
    Ed25519,
    /// ECDSA P-256.
    P256,
}

impl From<KeyType> for tls::NodeKeyType {
    fn from(k: KeyType) -> Self {
        match k {
            KeyType::Ed25519 => tls::NodeKeyType::Ed25519,
            KeyType::P256 => tls::NodeKeyType::P256,
        }
    }
}

/// Runs one `certs` subcommand, printing the files it wrote.
pub fn run(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Init {
            dir,
            if_missing,
            key_type,
            cluster,
        } => {
            let files = match tls::init_ca_dir_in_cluster(&dir, key_type.into(), cluster.as_ref()) {
                Err(tls::Error::CaExists { .. }) if if_missing => {
                    let kept = tls::CertAuthority::load(&dir).with_context(|| {
                        format!("{} holds part of a CA that cannot be used", dir.display())
                    })?;
                    if cluster.is_some() && kept.cluster() != cluster.as_ref() {
                        anyhow::bail!(
                            "--cluster {}: the CA kept in {} issues in {} ({}); change or remove that file first",
                            cluster.as_ref().map_or("", |c| c.as_str()),
                            dir.display(),
                            tls::cluster_label(kept.cluster()),
                            dir.join(tls::CLUSTER_FILE).display()
                        );
                    }
                    println!("kept the CA already in {}", dir.display());
                    return Ok(());
                }
                made => made.with_context(|| format!("cannot create a CA in {}", dir.display()))?,
            };
            println!("wrote CA certificate {}", files.cert.display());
            println!(
                "wrote CA private key {} (mode 0600; keep it off the nodes)",
                files.key.display()
            );
            if let Some(cluster) = &cluster {
                println!(
                    "wrote {} (certificates are issued in cluster {cluster} unless --cluster says otherwise)",
                    dir.join(tls::CLUSTER_FILE).display()
                );
            }
            println!(
                "next: quicswim certs issue NAME --dir {} [--ip IP]",
                dir.display()
            );
        }
        CertsCommand::Issue {
            names,
            dir,
            out,
            ips,
            days,
            key_type,
            cluster,
        } => {
            let out = out.unwrap_or_else(|| dir.clone());
            let key_type = tls::NodeKeyType::from(key_type);
            for name in names {
                let files = tls::issue_to_node_dir_in_cluster(
                    &dir,
                    &out,
                    &name,
                    &ips,
                    days,
                    key_type,
                    cluster.as_ref(),
                )
                .with_context(|| format!("cannot issue a certificate for {name}"))?;
                let in_cluster = files
                    .cluster
                    .as_ref()
                    .map(|c| format!(", cluster {c}"))
                    .unwrap_or_default();
                let ip_list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
                let sans = std::iter::once(name.to_string())
                    .chain(ip_list)
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "wrote certificate {} (SANs: {sans}{in_cluster}; valid {days} days)",
                    files.cert.display()
                );
                println!(
                    "wrote private key {} ({key_type}, mode 0600)",
                    files.key.display()
                );
                println!(
                    "wrote CA certificate copy {}; give the node --certs {}",
                    files.ca.display(),
                    files.dir.display()
                );
            }
        }
        CertsCommand::Revoke {
            targets,
            dir,
            out,
            days,
        } => revoke(&targets, &dir, &out, days)?,
    }
    Ok(())
}

/// `certs revoke`: the serials of `targets` (node names in `dir`, or hex serials) and of
/// the list already in `out`, in one list signed by the CA in `dir`, written to `out`.
fn revoke(targets: &[String], dir: &Path, out: &Path, days: u32) -> anyhow::Result<()> {
    let ca = tls::CertAuthority::load(dir)
        .with_context(|| format!("cannot load the CA in {}", dir.display()))?;
    let mut serials = if out.exists() {
        tls::revoked_serials(out).context("--out holds a list that cannot be kept")?
    } else {
        Vec::new()
    };
    for target in targets {
        let cert = dir.join(target).join(format!("{target}.pem"));
        let serial = if cert.is_file() {
            tls::serial_of_cert_file(&cert)?
        } else if !target.is_empty() && target.chars().all(|c| c.is_ascii_hexdigit()) {
            target.to_ascii_lowercase()
        } else {
            anyhow::bail!(
                "{target:?}: neither a node with a certificate in {} nor a hex serial",
                cert.display()
            );
        };
        println!("revoking {target}: serial {serial}");
        serials.push(serial);
    }
    serials.sort();
    serials.dedup();
    let refs: Vec<&str> = serials.iter().map(String::as_str).collect();
    let pem = ca
        .revocation_list(&refs, days)
        .context("cannot make the revocation list")?;
    std::fs::write(out, pem).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote revocation list {} ({} certificates); give it to every node as --crl {}",
        out.display(),
        serials.len(),
        out.display()
    );
    Ok(())
}
