//! `quicswim monitor`: a running agent's membership, key/value and user events as they
//! happen, like `serf monitor`; from the agent's `GET /v1/monitor` stream.
//!
//! Runs until interrupted or until the agent goes away: when it stops or leaves (the stream
//! ends) or dies (the connection drops), a note goes to standard error and the command exits
//! 0, as serf's does; the note says which.

use std::io::{self, Write};

use anyhow::Context;
use quicswim::api::{MonitorEvent, MonitorLine};

use super::http::{runtime, user_error, ApiClient, DEFAULT_API};

/// Longest line accepted from the agent; its lines are far shorter.
const LINE_LEN_MAX: usize = 1 << 20;

/// Arguments of `quicswim monitor`.
#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    /// Address of the agent's control API.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    api: String,
    /// Print each event as the agent's JSON line (`type` member, kv, user or dropped)
    /// instead of a human line.
    #[arg(long)]
    json: bool,
}

/// Streams the agent's events to standard output until the agent goes away.
pub fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let client = ApiClient::for_agent(&args.api)?;
    runtime.block_on(async {
        let mut answer = client.get_stream("/v1/monitor").await.map_err(user_error)?;
        eprintln!("monitoring the agent at {} (Ctrl-C to stop)", args.api);
        let mut out = io::stdout().lock();
        let mut pending = Vec::new();
        loop {
            let chunk = match answer.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    eprintln!("the agent ended the stream: it stopped or left");
                    return Ok(());
                }
                Err(e) => {
                    eprintln!("the connection to the agent was lost (it may have crashed): {e}");
                    return Ok(());
                }
            };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]);
                let text = if args.json {
                    line.into_owned()
                } else {
                    human(&line)
                };
                // Each line flushed at once: a reader of a pipe sees events as they happen.
                writeln!(out, "{text}")
                    .and_then(|()| out.flush())
                    .context("cannot write to standard output")?;
            }
            if pending.len() > LINE_LEN_MAX {
                anyhow::bail!(
                    "the agent at {} sent a line over {LINE_LEN_MAX} bytes",
                    args.api
                );
            }
        }
    })
}

/// One JSON line as a human line; a line that does not parse is shown as it came.
fn human(line: &str) -> String {
    let Ok(MonitorLine { time, event }) = serde_json::from_str::<MonitorLine>(line) else {
        return line.to_string();
    };
    let what = match event {
        MonitorEvent::Member {
            event,
            name,
            addr,
            incarnation,
            meta,
            ..
        } => {
            let meta = if meta.is_empty() {
                String::new()
            } else {
                format!(" meta={:?}", meta)
            };
            format!(
                "member {} {} (addr {addr}, incarnation {incarnation}){meta}",
                shown(&name),
                shown(&event)
            )
        }
        MonitorEvent::Kv { owner, key } => format!("kv {}/{} changed", shown(&owner), shown(&key)),
        MonitorEvent::User(e) => {
            let payload = match e.payload {
                Some(text) => format!("{text:?}"),
                None => format!("base64:{}", e.payload_base64),
            };
            format!(
                "event {} from {} (seq {}) payload {payload}",
                shown(&e.name),
                shown(&e.origin),
                e.seq
            )
        }
        MonitorEvent::Dropped { count } => {
            format!("dropped {count} events: this monitor fell behind the agent")
        }
    };
    format!("{}  {what}", shown(&time))
}

/// Text from the cluster as one terminal line: control characters (escape sequences, line
/// breaks) are shown escaped, so a member cannot repaint the screen or forge a line.
fn shown(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.escape_debug().to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_members_are_escaped() {
        let line =
            r#"{"time":"t","type":"kv","owner":"bob","key":"k\u001b[2J\nt  member eve left"}"#;
        let shown = human(line);
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(shown.contains(r"\u{1b}[2J\n"), "{shown}");
        let line = r#"{"time":"t","type":"user","origin":"alice","seq":1,"name":"a\rb","payload":"x\n","payload_base64":""}"#;
        let shown = human(line);
        assert!(shown.contains(r"a\rb") && !shown.contains('\r'), "{shown}");
    }

    #[test]
    fn member_lines_read_as_sentences() {
        let line = r#"{"time":"2025-01-01T00:00:00.000Z","type":"member","event":"suspect","name":"bob","addr":"127.0.0.1:7946","state":"suspect","incarnation":3,"meta":""}"#;
        assert_eq!(
            human(line),
            "2025-01-01T00:00:00.000Z  member bob suspect (addr 127.0.0.1:7946, incarnation 3)"
        );
    }

    #[test]
    fn user_events_show_text_or_base64_and_strangers_pass_through() {
        let line = r#"{"time":"t","type":"user","origin":"alice","seq":7,"name":"deploy","payload":null,"payload_base64":"/wE="}"#;
        assert_eq!(
            human(line),
            "t  event deploy from alice (seq 7) payload base64:/wE="
        );
        assert_eq!(human("not json"), "not json");
        let dropped = r#"{"time":"t","type":"dropped","count":4}"#;
        assert!(human(dropped).contains("dropped 4 events"));
    }
}
