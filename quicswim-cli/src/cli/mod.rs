//! Command-line front ends: argument parsing and output formatting only; the work happens in
//! the library.

pub mod agent;
pub mod bench;
pub mod certs;
pub mod config;
pub mod demo;
pub mod event;
pub mod generate;
pub mod http;
pub mod kv;
pub mod leave;
pub mod members;
pub mod monitor;
pub mod reload;
pub mod revoke;
pub mod ring;
pub mod scaling;
pub mod simulate;
pub mod snapshot;
pub mod token;

use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use quicswim::protocol::Profile;

/// `--profile lan|wan|local` for every subcommand that runs protocol cores.
pub fn profile_parser() -> impl TypedValueParser<Value = Profile> {
    PossibleValuesParser::new(Profile::ALL.map(Profile::as_str))
        .map(|name| name.parse().expect("clap offers only the listed profiles"))
}

/// Parses durations like `120s`, `500ms`, `2m` for clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 30s or 500ms: {e}"))
}

/// Rows as left-aligned columns two spaces apart, each line without trailing spaces. Every
/// table the subcommands print goes through here.
pub fn align<R: AsRef<[String]>>(rows: &[R]) -> String {
    let mut widths = Vec::new();
    for row in rows {
        let row = row.as_ref();
        if widths.len() < row.len() {
            widths.resize(row.len(), 0);
        }
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.as_ref().iter().zip(&widths) {
            line.push_str(cell);
            let pad = width - cell.chars().count() + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
