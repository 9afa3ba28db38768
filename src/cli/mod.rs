//! Subcommands of the `quicswim` binary: argument parsing and output only.
pub mod simulate;

use std::time::Duration;

/// Parses durations like `120s`, `500ms`, `2m` for clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 30s or 500ms: {e}"))
}
