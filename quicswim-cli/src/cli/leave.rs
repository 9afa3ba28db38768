//! `quicswim leave` and `quicswim force-leave`: a graceful leave of a running agent (for a
//! Kubernetes preStop hook or a script), and dropping a dead member's tombstone.

use quicswim::api::{ForceLeft, Left};
use quicswim::protocol::NodeName;

use super::http::{runtime, user_error, ApiClient, DEFAULT_API};

/// Arguments of `quicswim leave`.
#[derive(clap::Args, Debug)]
pub struct LeaveArgs {
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    api: String,
}

/// Arguments of `quicswim force-leave`.
#[derive(clap::Args, Debug)]
pub struct ForceLeaveArgs {
    /// The dead (or left) member to drop.
    name: NodeName,
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    api: String,
}

/// Asks the agent to leave; returns once the others have been told and the node stopped.
/// The agent then exits 0.
pub fn run_leave(args: LeaveArgs) -> anyhow::Result<()> {
    let client = ApiClient::for_agent(&args.api)?;
    let left: Left = runtime()?
        .block_on(client.post_json("/v1/leave", &serde_json::json!({})))
        .map_err(user_error)?;
    match (left.outcome.as_str(), &left.by) {
        ("confirmed", Some(by)) => println!("{} left the cluster (confirmed by {by})", left.name),
        ("alone", _) => println!("{} left the cluster (no other member to tell)", left.name),
        ("timed_out", _) => println!(
            "{} left the cluster (no member confirmed in time; others may see it dead)",
            left.name
        ),
        _ => println!("{} left the cluster", left.name),
    }
    Ok(())
}

/// Asks the agent to drop a dead or left member's tombstone.
pub fn run_force_leave(args: ForceLeaveArgs) -> anyhow::Result<()> {
    let client = ApiClient::for_agent(&args.api)?;
    // A node name is a DNS name: nothing in it needs escaping in a path.
    let path = format!("/v1/force-leave/{}", args.name);
    let removed: ForceLeft = runtime()?
        .block_on(client.post_json(&path, &serde_json::json!({})))
        .map_err(user_error)?;
    println!(
        "{} removed from this agent's member list (other agents keep it until their \
         dead_retention, or their own force-leave)",
        removed.name
    );
    Ok(())
}
