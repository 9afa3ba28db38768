//! `quicswim revoke FILE`: hands a running agent certificate revocation lists (those
//! `quicswim certs revoke` writes, or any the cluster CA signed); the agent checks the CA's
//! signature, honours them and passes them to every member.

use std::path::PathBuf;

use anyhow::Context;
use quicswim::api::{RevokeRequest, Revoked};

use super::http::{runtime, user_error, ApiClient, DEFAULT_API};

/// Arguments of `quicswim revoke`.
#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// The revocation lists, PEM (`quicswim certs revoke --out FILE` writes one).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    api: String,
}

/// Hands the lists in the file to the agent, and says what it made of each.
pub fn run(args: RevokeArgs) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(&args.file)
        .with_context(|| format!("{}: cannot read it", args.file.display()))?;
    let client = ApiClient::for_agent(&args.api)?;
    let revoked: Revoked = runtime()?
        .block_on(client.post_json("/v1/revocations", &RevokeRequest { pem }))
        .map_err(|e| user_error(e).context(args.file.display().to_string()))?;
    for list in revoked.lists {
        match list.outcome.as_str() {
            "taken" if list.banned.is_empty() => println!(
                "revocation list {} taken; it names no member this agent holds (passed to the cluster)",
                list.id
            ),
            "taken" => println!(
                "revocation list {} taken: banned {} (passed to the cluster)",
                list.id,
                list.banned.join(", ")
            ),
            _ => println!(
                "revocation list {} already held (or older than the one held): nothing changed",
                list.id
            ),
        }
    }
    Ok(())
}
