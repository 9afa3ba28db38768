//! `quicswim event send` and `quicswim events`: publish a user event through a running agent,
//! and list the events it has received.

use std::io::{self, Read};

use anyhow::{bail, Context};
use quicswim::api::{EventJson, PublishRequest, Published};

use super::http::{runtime, user_error, ApiClient, DEFAULT_API};

/// Arguments of `quicswim event`.
#[derive(clap::Args, Debug)]
pub struct EventArgs {
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API, global = true)]
    api: String,
    #[command(subcommand)]
    cmd: EventCommand,
}

#[derive(clap::Subcommand, Debug)]
enum EventCommand {
    /// Publish a user event; every member delivers it once.
    Send {
        /// The event's name (1 to 128 bytes).
        name: String,
        /// The payload (at most 512 bytes by default); `-` reads it from standard input; none:
        /// empty. A payload that starts with `-` goes after `--`.
        payload: Option<String>,
    },
}

/// Arguments of `quicswim events`.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    api: String,
    /// Print a JSON array of {origin, seq, name, payload, payload_base64} instead of a table
    /// (`payload` is null when the payload is not UTF-8).
    #[arg(long)]
    json: bool,
}

/// Most bytes `event send NAME -` reads from standard input; far above any payload limit (at
/// most 1 KiB, so that an event fits a datagram) yet small enough that the agent reads the
/// whole request and answers with its limit.
const STDIN_LEN_MAX: u64 = 16 << 10;

/// Runs `quicswim event send`.
pub fn run_event(args: EventArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let client = ApiClient::for_agent(&args.api)?;
    match args.cmd {
        EventCommand::Send { name, payload } => {
            let payload = match payload.as_deref() {
                Some("-") => read_stdin()?,
                Some(text) => text.as_bytes().to_vec(),
                None => Vec::new(),
            };
            let request = PublishRequest::new(&name, payload);
            let published: Published = runtime
                .block_on(client.post_json("/v1/events", &request))
                .map_err(user_error)?;
            println!(
                "sent {name} from {} seq {}",
                published.origin, published.seq
            );
        }
    }
    Ok(())
}

/// Runs `quicswim events`.
pub fn run_events(args: EventsArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let client = ApiClient::for_agent(&args.api)?;
    let events: Vec<EventJson> = runtime
        .block_on(client.get_json("/v1/events"))
        .map_err(user_error)?;
    if args.json {
        println!("{}", serde_json::to_string(&events)?);
    } else {
        print!("{}", table(&events));
    }
    Ok(())
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut payload = Vec::new();
    io::stdin()
        .lock()
        .take(STDIN_LEN_MAX + 1)
        .read_to_end(&mut payload)
        .context("cannot read the payload from standard input")?;
    if payload.len() as u64 > STDIN_LEN_MAX {
        bail!("event payload is over {STDIN_LEN_MAX} bytes, far over any payload limit");
    }
    Ok(payload)
}

/// Aligned ORIGIN, SEQ, NAME, PAYLOAD columns, oldest first.
fn table(events: &[EventJson]) -> String {
    let mut rows = vec![["ORIGIN", "SEQ", "NAME", "PAYLOAD"].map(String::from)];
    for e in events {
        let payload = match &e.payload {
            Some(text) => text.escape_debug().to_string(),
            None => format!("base64:{}", e.payload_base64),
        };
        rows.push([
            e.origin.clone(),
            e.seq.to_string(),
            e.name.escape_debug().to_string(),
            payload,
        ]);
    }
    super::align(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_text_payloads_escaped_and_others_as_base64() {
        let event = |name: &str, payload: Option<&str>, b64: &str| EventJson {
            origin: "alice".into(),
            seq: 9,
            name: name.into(),
            payload: payload.map(str::to_string),
            payload_base64: b64.into(),
        };
        let text = table(&[
            event("deploy", Some("v1\tok"), "djEJb2s="),
            event("raw", None, "/wE="),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ORIGIN  SEQ  NAME    PAYLOAD");
        assert_eq!(lines[1], "alice   9    deploy  v1\\tok");
        assert_eq!(lines[2], "alice   9    raw     base64:/wE=");
    }
}
