//! `quicswim members`: the member list of a running agent, optionally filtered by state and
//! by a name glob (the agent filters: `GET /v1/members?state=..&name=..`).

use std::net::SocketAddr;

use quicswim::api::MemberJson;
use serde::Serialize;

use super::http::{runtime, user_error, ApiClient, DEFAULT_API};

/// Arguments of `quicswim members`.
#[derive(clap::Args, Debug)]
pub struct MembersArgs {
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    api: String,
    /// Print a JSON array of {name, addr, state, incarnation} instead of a table.
    #[arg(long)]
    json: bool,
    /// Only members in this state (repeatable, or comma-separated: --state alive,suspect).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "STATE")]
    state: Vec<StateFilter>,
    /// Only members whose name matches this glob: `*` any run of characters, `?` one
    /// (quote it from the shell: --name 'web-*').
    #[arg(long, value_name = "GLOB")]
    name: Option<String>,
}

/// A member state to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StateFilter {
    Alive,
    Suspect,
    Dead,
    Left,
    /// A member whose certificate a revocation list names.
    Banned,
}

impl StateFilter {
    fn as_str(self) -> &'static str {
        match self {
            StateFilter::Alive => "alive",
            StateFilter::Suspect => "suspect",
            StateFilter::Dead => "dead",
            StateFilter::Left => "left",
            StateFilter::Banned => "banned",
        }
    }
}

/// `/v1/members` with the filters as its query.
fn path(states: &[StateFilter], name: Option<&str>) -> String {
    let mut query: Vec<(&str, String)> = Vec::new();
    if !states.is_empty() {
        let list: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        query.push(("state", list.join(",")));
    }
    if let Some(glob) = name {
        query.push(("name", glob.to_string()));
    }
    if query.is_empty() {
        return "/v1/members".to_string();
    }
    let query = serde_urlencoded::to_string(&query).expect("pairs of strings always encode");
    format!("/v1/members?{query}")
}

/// One row of `--json` output.
#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    addr: SocketAddr,
    state: &'a str,
    incarnation: u64,
    /// The member's certificate serial (hex) as the agent holds it; `null` if none.
    cert_serial: Option<&'a str>,
    /// Its expiry, RFC 3339; `null` if none.
    cert_not_after: Option<&'a str>,
}

/// Asks the agent for its members and prints them.
pub fn run(args: MembersArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let client = ApiClient::for_agent(&args.api)?;
    let path = path(&args.state, args.name.as_deref());
    let members: Vec<MemberJson> = runtime
        .block_on(client.get_json(&path))
        .map_err(user_error)?;
    if args.json {
        let rows: Vec<Row<'_>> = members
            .iter()
            .map(|m| Row {
                name: &m.name,
                addr: m.addr,
                state: &m.state,
                incarnation: m.incarnation,
                cert_serial: m.cert_serial.as_deref(),
                cert_not_after: m.cert_not_after.as_deref(),
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        print!("{}", table(&members));
    }
    Ok(())
}

/// Aligned columns; the certificate's serial (its first 16 hex digits) and expiry where this
/// node holds it, `-` where not; a META column only when some member has metadata.
fn table(members: &[MemberJson]) -> String {
    let with_meta = members.iter().any(|m| !m.meta.is_empty());
    let mut rows = vec![[
        "NAME",
        "ADDRESS",
        "STATE",
        "INCARNATION",
        "CERT SERIAL",
        "CERT EXPIRES",
        "META",
    ]
    .map(String::from)];
    let or_dash = |v: &Option<String>, len: usize| {
        v.as_deref()
            .map_or_else(|| "-".to_string(), |s| s.chars().take(len).collect())
    };
    for m in members {
        rows.push([
            m.name.clone(),
            m.addr.to_string(),
            m.state.clone(),
            m.incarnation.to_string(),
            or_dash(&m.cert_serial, 16),
            or_dash(&m.cert_not_after, usize::MAX),
            m.meta.escape_debug().to_string(),
        ]);
    }
    let columns = if with_meta { 7 } else { 6 };
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
            cert_serial: Some("0a1b2c3d4e5f60718293a4b5c6d7e8f9".into()),
            cert_not_after: Some("2027-03-04T05:06:07Z".into()),
        }
    }

    #[test]
    fn filters_become_the_query() {
        assert_eq!(path(&[], None), "/v1/members");
        assert_eq!(
            path(&[StateFilter::Alive, StateFilter::Suspect], Some("web-?*")),
            "/v1/members?state=alive%2Csuspect&name=web-%3F*"
        );
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(&[member("alice", "alive", ""), member("bo", "dead", "")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME   ADDRESS         STATE  INCARNATION  CERT SERIAL       CERT EXPIRES"
        );
        assert_eq!(
            lines[1],
            "alice  127.0.0.1:7946  alive  2            0a1b2c3d4e5f6071  2027-03-04T05:06:07Z"
        );
        assert_eq!(
            lines[2],
            "bo     127.0.0.1:7946  dead   2            0a1b2c3d4e5f6071  2027-03-04T05:06:07Z"
        );
    }

    #[test]
    fn meta_column_appears_only_when_used() {
        let text = table(&[member("alice", "alive", "zone=a\n")]);
        assert!(text.lines().next().unwrap().ends_with("META"), "{text}");
        assert!(text.contains("zone=a\\n"), "{text}");
    }
}
