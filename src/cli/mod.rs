//! Command-line front ends: argument parsing and output formatting only; the work happens in
//! the library.

pub mod agent;
pub mod certs;
pub mod demo;
pub mod http;
pub mod members;
pub mod ring;
pub mod simulate;

use std::time::Duration;

/// Parses durations like `120s`, `500ms`, `2m` for clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 30s or 500ms: {e}"))
}
