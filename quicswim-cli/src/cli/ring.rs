//! `quicswim ring`: a running agent's consistent-hash ring, and which members own keys.
//!
//! ```text
//!   quicswim ring [--json] [--api ADDR]                          summary: members, vnodes, shares
//!   quicswim ring owner KEY... [--replicas N] [--json] [--api ADDR]   owner of each key
//! ```

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use quicswim::api::{Placement, RingJson, OWNER_KEYS_MAX};

use super::http::{runtime, ApiClient, DEFAULT_API};

/// Arguments of `quicswim ring`.
#[derive(clap::Args, Debug)]
pub struct RingArgs {
    #[command(subcommand)]
    command: Option<RingCommand>,
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API, global = true)]
    api: String,
    /// Print JSON instead of a table: the summary object, or for `owner` an object mapping
    /// each key to its owner (to a list of members with --replicas).
    #[arg(long, global = true)]
    json: bool,
}

/// What `quicswim ring` can do besides the summary.
#[derive(clap::Subcommand, Debug)]
enum RingCommand {
    /// Print the member that owns each key (with --replicas, the N members that hold it).
    Owner(OwnerArgs),
}

/// Arguments of `quicswim ring owner`.
#[derive(clap::Args, Debug)]
struct OwnerArgs {
    /// Keys to place; each is hashed as its UTF-8 bytes.
    #[arg(value_name = "KEY", required = true)]
    keys: Vec<String>,
    /// List this many distinct members per key, the owner first.
    #[arg(long, value_name = "N")]
    replicas: Option<usize>,
}

/// Asks the agent for its ring, or for the owners of keys, and prints the answer.
pub fn run(args: RingArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let client = ApiClient::for_agent(&args.api)?;
    match args.command {
        None => {
            let ring: RingJson = runtime.block_on(client.get_json("/v1/ring"))?;
            if args.json {
                println!("{}", serde_json::to_string(&ring)?);
            } else {
                print!("{}", summary_table(&ring));
            }
        }
        Some(RingCommand::Owner(owner)) => {
            if owner.replicas == Some(0) {
                bail!("--replicas must be at least 1");
            }
            if owner.keys.len() > OWNER_KEYS_MAX {
                bail!(
                    "{} keys given; at most {OWNER_KEYS_MAX} can be asked at once",
                    owner.keys.len()
                );
            }
            let path = owner_path(&owner.keys, owner.replicas);
            let placements: BTreeMap<String, Placement> =
                runtime.block_on(client.get_json(&path))?;
            if args.json {
                println!("{}", serde_json::to_string(&placements)?);
            } else {
                print!("{}", owner_table(&owner.keys, &placements)?);
            }
        }
    }
    Ok(())
}

/// `/v1/ring/owner?key=..&key=..[&replicas=N]`, every key percent-encoded.
fn owner_path(keys: &[String], replicas: Option<usize>) -> String {
    let mut pairs: Vec<(&str, String)> = keys.iter().map(|k| ("key", k.clone())).collect();
    if let Some(n) = replicas {
        pairs.push(("replicas", n.to_string()));
    }
    let query = serde_urlencoded::to_string(&pairs).expect("string pairs always encode");
    format!("/v1/ring/owner?{query}")
}

/// A header line, then one row per member: name, weight, virtual nodes, share in percent.
fn summary_table(ring: &RingJson) -> String {
    let mut out = format!(
        "ring {}: {} members, {} virtual nodes ({} per unit of weight)\n",
        ring.checksum,
        ring.members.len(),
        ring.vnodes,
        ring.vnodes_per_member
    );
    let mut rows = vec![["NAME", "WEIGHT", "VNODES", "SHARE"].map(String::from)];
    for m in &ring.members {
        rows.push([
            m.name.clone(),
            m.weight.to_string(),
            m.vnodes.to_string(),
            format!("{:.2}%", m.share * 100.0),
        ]);
    }
    out.push_str(&super::align(&rows));
    out
}

/// One row per key, in the order given (a repeated key once): the key and its owner, or its
/// members comma-separated with `--replicas`.
fn owner_table(
    keys: &[String],
    placements: &BTreeMap<String, Placement>,
) -> anyhow::Result<String> {
    let mut rows = vec![["KEY", "OWNER"].map(String::from)];
    let mut seen = std::collections::BTreeSet::new();
    for key in keys {
        if !seen.insert(key) {
            continue;
        }
        let placement = placements
            .get(key)
            .with_context(|| format!("the agent's answer has no owner for key {key:?}"))?;
        let owner = match placement {
            Placement::Owner(Some(name)) => name.clone(),
            Placement::Owner(None) => "(none: the ring is empty)".to_string(),
            Placement::Replicas(names) if names.is_empty() => {
                "(none: the ring is empty)".to_string()
            }
            Placement::Replicas(names) => names.join(","),
        };
        rows.push([key.escape_debug().to_string(), owner]);
    }
    if rows.len() > 1 && matches!(placements.values().next(), Some(Placement::Replicas(_))) {
        rows[0][1] = "REPLICAS".to_string();
    }
    Ok(super::align(&rows))
}

#[cfg(test)]
mod tests {
    use quicswim::api::RingMemberJson;

    use super::*;

    #[test]
    fn owner_path_encodes_every_key() {
        let keys = ["a b".to_string(), "user:1&x=2".to_string()];
        assert_eq!(
            owner_path(&keys, None),
            "/v1/ring/owner?key=a+b&key=user%3A1%26x%3D2"
        );
        assert_eq!(
            owner_path(&keys[..1], Some(3)),
            "/v1/ring/owner?key=a+b&replicas=3"
        );
    }

    #[test]
    fn summary_table_shows_shares_in_percent() {
        let ring = RingJson {
            checksum: "00000000deadbeef".into(),
            vnodes: 1536,
            vnodes_per_member: 512,
            members: vec![
                RingMemberJson {
                    name: "alice".into(),
                    weight: 2,
                    vnodes: 1024,
                    share: 0.6712,
                },
                RingMemberJson {
                    name: "bob".into(),
                    weight: 1,
                    vnodes: 512,
                    share: 0.3288,
                },
            ],
        };
        let text = summary_table(&ring);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ring 00000000deadbeef: 2 members, 1536 virtual nodes (512 per unit of weight)"
        );
        assert_eq!(lines[1], "NAME   WEIGHT  VNODES  SHARE");
        assert_eq!(lines[2], "alice  2       1024    67.12%");
        assert_eq!(lines[3], "bob    1       512     32.88%");
    }

    #[test]
    fn owner_table_keeps_the_order_given() {
        let keys = ["zeta".to_string(), "alpha".to_string(), "zeta".to_string()];
        let placements = BTreeMap::from([
            ("alpha".to_string(), Placement::Owner(Some("bob".into()))),
            ("zeta".to_string(), Placement::Owner(Some("alice".into()))),
        ]);
        let text = owner_table(&keys, &placements).unwrap();
        assert_eq!(text, "KEY    OWNER\nzeta   alice\nalpha  bob\n");

        let placements = BTreeMap::from([(
            "zeta".to_string(),
            Placement::Replicas(vec!["alice".into(), "bob".into()]),
        )]);
        let text = owner_table(&keys[..1], &placements).unwrap();
        assert_eq!(text, "KEY   REPLICAS\nzeta  alice,bob\n");
        assert!(owner_table(&keys[1..2], &placements).is_err());
    }
}
