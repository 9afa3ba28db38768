//! `quicswim certs`: make a cluster CA and node certificates.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use quicswim::protocol::NodeName;
use quicswim::tls;

/// Subcommands of `quicswim certs`.
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create a new cluster CA: DIR/ca.pem and DIR/ca-key.pem (refuses to overwrite one).
    Init {
        /// Directory to write the CA into (created if missing).
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Issue a node certificate signed by the CA in DIR: DIR/NAME.pem and DIR/NAME-key.pem.
    Issue {
        /// Node name: a DNS label (a-z, 0-9, '-'), written as the certificate's DNS SAN.
        name: NodeName,
        /// Directory holding ca.pem and ca-key.pem; the node files are written there too.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// IP address to add as an IP SAN (repeatable).
        #[arg(long = "ip", value_name = "IP")]
        ips: Vec<IpAddr>,
        /// Validity in days (1..=36500).
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

/// Runs one `certs` subcommand, printing the files it wrote.
pub fn run(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Init { dir } => {
            let files = tls::init_ca_dir(&dir)
                .with_context(|| format!("cannot create a CA in {}", dir.display()))?;
            println!("wrote CA certificate {}", files.cert.display());
            println!(
                "wrote CA private key {} (mode 0600; keep it off the nodes)",
                files.key.display()
            );
            println!(
                "next: quicswim certs issue NAME --dir {} [--ip IP]",
                dir.display()
            );
        }
        CertsCommand::Issue {
            name,
            dir,
            ips,
            days,
        } => {
            let files = tls::issue_to_dir(&dir, &name, &ips, days)
                .with_context(|| format!("cannot issue a certificate for {name}"))?;
            let ip_list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
            let sans = std::iter::once(name.to_string())
                .chain(ip_list)
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "wrote certificate {} (SANs: {sans}; valid {days} days)",
                files.cert.display()
            );
            println!("wrote private key {} (mode 0600)", files.key.display());
        }
    }
    Ok(())
}
