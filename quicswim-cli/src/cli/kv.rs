//! `quicswim kv`: set, read, delete and list key/value data through a running agent.
//!
//! A node writes only its own keys (`set`, `del` act on the agent's node); every member's keys
//! can be read (`get OWNER KEY`, `list`).

use std::io::{self, Read, Write};

use anyhow::{bail, Context};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quicswim::api::{KvItemJson, KvWritten};
use quicswim::protocol::kv::VALUE_LEN_MAX_CAP;

use super::http::{runtime, user_error, ApiClient, DEFAULT_API};

/// Arguments of `quicswim kv`.
#[derive(clap::Args, Debug)]
pub struct KvArgs {
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API, global = true)]
    api: String,
    #[command(subcommand)]
    cmd: KvCommand,
}

#[derive(clap::Subcommand, Debug)]
enum KvCommand {
    /// Set one of the agent's own keys; every member soon holds it.
    Set {
        /// The key (at most 256 bytes by default).
        key: String,
        /// The value (at most 64 KiB by default); `-` reads it from standard input. A value
        /// that starts with `-` goes after `--`.
        value: String,
    },
    /// Print the value OWNER holds under KEY, as the agent knows it, byte for byte.
    Get {
        /// The node that owns the key.
        owner: String,
        /// The key.
        key: String,
    },
    /// Delete one of the agent's own keys.
    Del {
        /// The key.
        key: String,
    },
    /// List every key the agent knows, of every owner.
    List {
        /// Print a JSON array of {owner, key, value, value_base64, version} instead of a
        /// table (`value` is null when the value is not UTF-8).
        #[arg(long)]
        json: bool,
    },
}

/// Everything but letters, digits, `-` and `_` is percent-encoded in a key's path segment,
/// so `/`, `.` and `%` in keys reach the agent as they are.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Most bytes `kv set KEY -` reads from standard input: the highest value limit any agent can
/// have, so that anything longer is refused here without sending it.
const STDIN_LEN_MAX: u64 = VALUE_LEN_MAX_CAP as u64;

/// Longest value preview in the table, in characters.
const PREVIEW_CHARS_MAX: usize = 40;

/// Runs one `quicswim kv` subcommand against the agent.
pub fn run(args: KvArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let client = ApiClient::for_agent(&args.api)?;
    match args.cmd {
        KvCommand::Set { key, value } => {
            let value = if value == "-" {
                read_stdin()?
            } else {
                value.into_bytes()
            };
            let path = format!("/v1/kv/{}", segment(&key)?);
            let written: KvWritten = runtime
                .block_on(client.put_bytes(&path, value))
                .map_err(user_error)?;
            println!(
                "set {}/{} version {}",
                written.owner, written.key, written.version
            );
        }
        KvCommand::Get { owner, key } => {
            let path = format!("/v1/kv/{}/{}", segment(&owner)?, segment(&key)?);
            let value = runtime
                .block_on(client.get_bytes(&path))
                .map_err(user_error)?;
            let mut stdout = io::stdout().lock();
            stdout.write_all(&value).context("cannot write the value")?;
            stdout.flush().context("cannot write the value")?;
        }
        KvCommand::Del { key } => {
            let path = format!("/v1/kv/{}", segment(&key)?);
            let deleted: KvWritten = runtime
                .block_on(client.delete_json(&path))
                .map_err(user_error)?;
            println!(
                "deleted {}/{} version {}",
                deleted.owner, deleted.key, deleted.version
            );
        }
        KvCommand::List { json } => {
            let items: Vec<KvItemJson> = runtime
                .block_on(client.get_json_pages("/v1/kv"))
                .map_err(user_error)?;
            if json {
                println!("{}", serde_json::to_string(&items)?);
            } else {
                print!("{}", table(&items));
            }
        }
    }
    Ok(())
}

/// `text` as one percent-encoded path segment.
fn segment(text: &str) -> anyhow::Result<String> {
    if text.is_empty() {
        bail!("a key or owner must not be empty");
    }
    // URL parsers (the WHATWG rules the HTTP client follows) take `.` and `..` as path steps
    // even when percent-encoded, and drop them: the request would go to another route.
    if text == "." || text == ".." {
        bail!("`{text}` cannot be named in a URL path, so `quicswim kv` cannot address it");
    }
    Ok(utf8_percent_encode(text, SEGMENT).to_string())
}

/// All of standard input, up to [`STDIN_LEN_MAX`].
fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut value = Vec::new();
    io::stdin()
        .lock()
        .take(STDIN_LEN_MAX + 1)
        .read_to_end(&mut value)
        .context("cannot read the value from standard input")?;
    if value.len() as u64 > STDIN_LEN_MAX {
        bail!(
            "value is over {STDIN_LEN_MAX} bytes; no agent takes values over \
             {VALUE_LEN_MAX_CAP} bytes"
        );
    }
    Ok(value)
}

/// A short, one-line view of a value: escaped text cut at [`PREVIEW_CHARS_MAX`], or its size
/// when it is not UTF-8.
fn preview(item: &KvItemJson) -> String {
    let Some(text) = &item.value else {
        let len = item.bytes().map_or(0, |b| b.len());
        return format!("<{len} bytes, not UTF-8>");
    };
    let escaped = text.escape_debug().to_string();
    match escaped.char_indices().nth(PREVIEW_CHARS_MAX) {
        Some((cut, _)) => format!("{}... ({} bytes)", &escaped[..cut], text.len()),
        None => escaped,
    }
}

/// Aligned OWNER, KEY, VERSION, VALUE columns.
fn table(items: &[KvItemJson]) -> String {
    let mut rows = vec![["OWNER", "KEY", "VERSION", "VALUE"].map(String::from)];
    for item in items {
        rows.push([
            item.owner.clone(),
            item.key.escape_debug().to_string(),
            item.version.to_string(),
            preview(item),
        ]);
    }
    super::align(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(owner: &str, key: &str, value: Option<&str>, value_base64: &str) -> KvItemJson {
        KvItemJson {
            owner: owner.into(),
            key: key.into(),
            value: value.map(str::to_string),
            value_base64: value_base64.into(),
            version: 12,
        }
    }

    #[test]
    fn table_aligns_columns_and_previews_values() {
        let long = "x".repeat(50);
        let text = table(&[
            item("alice", "colour", Some("blue\n"), "Ymx1ZQo="),
            item("bob", "k", Some(&long), ""),
            item("bob", "raw", None, "/wCA"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "OWNER  KEY     VERSION  VALUE");
        assert_eq!(lines[1], "alice  colour  12       blue\\n");
        assert_eq!(
            lines[2],
            format!("bob    k       12       {}... (50 bytes)", "x".repeat(40))
        );
        assert_eq!(lines[3], "bob    raw     12       <3 bytes, not UTF-8>");
    }

    #[test]
    fn keys_become_one_path_segment() {
        assert_eq!(segment("a/b c.%").unwrap(), "a%2Fb%20c%2E%25");
        assert_eq!(segment("node-1_x").unwrap(), "node-1_x");
        assert!(segment("").is_err());
        assert_eq!(segment("..x").unwrap(), "%2E%2Ex");
        assert!(segment(".").is_err());
        assert!(segment("..").is_err());
    }
}
