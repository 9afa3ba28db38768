//! The `quicswim` binary: clap parsing and output; everything else lives in the library.
#![forbid(unsafe_code)]

mod bench;
mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::certs::CertsCommand;
use crate::cli::config::ConfigCommand;

/// Encrypted cluster membership: SWIM + Lifeguard over QUIC with mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "quicswim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Start a local encrypted cluster and show it working: forming, a key reaching every
    /// node, a crash detected, the node coming back.
    Demo(cli::demo::DemoArgs),
    /// Make a cluster CA and node certificates.
    Certs {
        #[command(subcommand)]
        cmd: CertsCommand,
    },
    /// Run a cluster member and its HTTP control API until SIGINT, SIGTERM or `quicswim
    /// leave`, then leave.
    Agent(Box<cli::agent::AgentArgs>),
    /// List the members a running agent knows, optionally by state and name.
    Members(cli::members::MembersArgs),
    /// Stream a running agent's membership, key/value and user events as they happen.
    Monitor(cli::monitor::MonitorArgs),
    /// Make a running agent leave the cluster gracefully; the agent then exits.
    Leave(cli::leave::LeaveArgs),
    /// Drop a dead or left member's tombstone from a running agent's member list now.
    ForceLeave(cli::leave::ForceLeaveArgs),
    /// Hand a running agent certificate revocation lists (`certs revoke` writes them): it
    /// checks the CA's signature and passes them to every member, which bans the nodes named.
    Revoke(cli::revoke::RevokeArgs),
    /// Show a running agent's consistent-hash ring, or which members own keys (`ring owner`).
    Ring(cli::ring::RingArgs),
    /// Set, read, delete and list key/value data through a running agent.
    Kv(cli::kv::KvArgs),
    /// Publish a user event to every member through a running agent.
    Event(cli::event::EventArgs),
    /// List the user events a running agent has received, oldest first.
    Events(cli::event::EventsArgs),
    /// Simulate a whole cluster in virtual time (deterministic from --seed).
    Simulate(Box<cli::simulate::SimulateArgs>),
    /// Measure a real cluster in this process: join, dissemination, detection, steady-state
    /// cost and key/value throughput.
    Bench(cli::bench::BenchArgs),
    /// Chart how steady cost (CPU, bytes, packets per node per second) grows with the
    /// cluster, from `bench --out` runs of several sizes.
    Scaling(cli::scaling::ScalingArgs),
    /// Print an agent config file with every key and its default (`config example`).
    Config {
        #[command(subcommand)]
        cmd: ConfigCommand,
    },
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions(cli::generate::CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand with --dir.
    Man(cli::generate::ManArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let result = match cli.command {
        Command::Demo(args) => cli::demo::run(args),
        Command::Certs { cmd } => cli::certs::run(cmd),
        Command::Agent(args) => cli::agent::run(*args),
        Command::Members(args) => cli::members::run(args),
        Command::Monitor(args) => cli::monitor::run(args),
        Command::Leave(args) => cli::leave::run_leave(args),
        Command::ForceLeave(args) => cli::leave::run_force_leave(args),
        Command::Revoke(args) => cli::revoke::run(args),
        Command::Ring(args) => cli::ring::run(args),
        Command::Kv(args) => cli::kv::run(args),
        Command::Event(args) => cli::event::run_event(args),
        Command::Events(args) => cli::event::run_events(args),
        Command::Simulate(args) => cli::simulate::run(*args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Scaling(args) => cli::scaling::run(args),
        Command::Config { cmd } => cli::config::run(cmd),
        Command::Completions(args) => cli::generate::completions(args, Cli::command()),
        Command::Man(args) => cli::generate::man(args, Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go out as clap writes them; a usage mistake is folded into one line
/// (`error: ... --name <NAME>`) so every error a user can cause reads the same way.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = err.render().to_string();
    let line: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect();
    eprintln!("{} (see --help)", line.join(" "));
    ExitCode::from(2)
}

/// The error and its causes on one line, "cannot ...: cause: cause", each cause once. Library
/// errors quote their source in their own message and also return it as `source()` (so logs,
/// which print only the top message, keep the cause); `{:#}` would print such a cause twice
/// or three times ("address in use" came out three times), so a cause whose text the line
/// already ends with is skipped.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot bind udp 127.0.0.1:1: {source}")]
    struct Bind {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("transport: {0}")]
    struct Transport(#[from] Bind);

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let err = anyhow::Error::new(Transport(Bind { source: io })).context("cannot start node a");
        assert_eq!(
            one_line(&err),
            "cannot start node a: transport: cannot bind udp 127.0.0.1:1: Address already in use"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
