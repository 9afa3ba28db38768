//! `quicswim members`: the member list of a running agent.

use std::net::SocketAddr;

use quicswim::api::MemberJson;
use serde::Serialize;

use super::http::{runtime, ApiClient, DEFAULT_API};

/// Arguments of `quicswim members`.
#[derive(clap::Args, Debug)]
pub struct MembersArgs {
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    api: String,
    /// Print a JSON array of {name, addr, state, incarnation} instead of a table.
    #[arg(long)]
    json: bool,
}

/// One row of `--json` output.
#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    addr: SocketAddr,
    state: &'a str,
    incarnation: u64,
}

/// Asks the agent for its members and prints them.
pub fn run(args: MembersArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let client = ApiClient::new(&args.api);
    let members: Vec<MemberJson> = runtime.block_on(client.get_json("/v1/members"))?;
    if args.json {
        let rows: Vec<Row<'_>> = members
            .iter()
            .map(|m| Row {
                name: &m.name,
                addr: m.addr,
                state: &m.state,
                incarnation: m.incarnation,
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        print!("{}", table(&members));
    }
    Ok(())
}

/// Aligned columns; a META column only when some member has metadata.
fn table(members: &[MemberJson]) -> String {
    let with_meta = members.iter().any(|m| !m.meta.is_empty());
    let mut rows = vec![["NAME", "ADDRESS", "STATE", "INCARNATION", "META"].map(String::from)];
    for m in members {
        rows.push([
            m.name.clone(),
            m.addr.to_string(),
            m.state.clone(),
            m.incarnation.to_string(),
            m.meta.escape_debug().to_string(),
        ]);
    }
    let columns = if with_meta { 5 } else { 4 };
    let rows: Vec<&[String]> = rows.iter().map(|row| &row[..columns]).collect();
    super::align(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, state: &str, meta: &str) -> MemberJson {
        MemberJson {
            name: name.into(),
            addr: "127.0.0.1:7946".parse().unwrap(),
            state: state.into(),
            incarnation: 2,
            meta: meta.into(),
        }
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&[member("alice", "alive", ""), member("bo", "dead", "")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME   ADDRESS         STATE  INCARNATION");
        assert_eq!(lines[1], "alice  127.0.0.1:7946  alive  2");
        assert_eq!(lines[2], "bo     127.0.0.1:7946  dead   2");
    }

    #[test]
    fn meta_column_appears_only_when_used() {
        let text = table(&[member("alice", "alive", "zone=a\n")]);
        assert!(text.lines().next().unwrap().ends_with("META"), "{text}");
        assert!(text.contains("zone=a\\n"), "{text}");
    }
}
