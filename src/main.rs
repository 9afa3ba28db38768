//! The `quicswim` command line.
#![forbid(unsafe_code)]

mod cli;

use clap::{Parser, Subcommand};

/// Encrypted cluster membership: SWIM + Lifeguard over QUIC with mutual TLS.
#[derive(Parser, Debug)]
#[command(name = "quicswim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate a whole cluster in virtual time (deterministic from --seed).
    Simulate(cli::simulate::SimulateArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => cli::simulate::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
