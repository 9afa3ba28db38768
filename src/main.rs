//! The `quicswim` binary: clap parsing and output; everything else lives in the library.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::certs::CertsCommand;

/// Encrypted cluster membership: SWIM + Lifeguard over QUIC with mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "quicswim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Make a cluster CA and node certificates.
    Certs {
        #[command(subcommand)]
        cmd: CertsCommand,
    },
    /// Run a cluster member and its HTTP control API until SIGINT or SIGTERM, then leave.
    Agent(cli::agent::AgentArgs),
    /// List the members a running agent knows.
    Members(cli::members::MembersArgs),
    /// Set, read, delete and list key/value data through a running agent.
    Kv(cli::kv::KvArgs),
    /// Publish a user event to every member through a running agent.
    Event(cli::event::EventArgs),
    /// List the user events a running agent has received, oldest first.
    Events(cli::event::EventsArgs),
    /// Simulate a whole cluster in virtual time (deterministic from --seed).
    Simulate(cli::simulate::SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs { cmd } => cli::certs::run(cmd),
        Command::Agent(args) => cli::agent::run(args),
        Command::Members(args) => cli::members::run(args),
        Command::Kv(args) => cli::kv::run(args),
        Command::Event(args) => cli::event::run_event(args),
        Command::Events(args) => cli::event::run_events(args),
        Command::Simulate(args) => cli::simulate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the context chain into one line: "cannot ...: cause: cause".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
