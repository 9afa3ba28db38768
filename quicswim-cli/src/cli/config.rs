//! `quicswim config example`: an agent config file with every key and its default, written
//! from the same definitions the agent parses (the clap flags of [`AgentArgs`] and the
//! protocol presets), so the example cannot drift from the code.
//!
//! Every key is commented out: a file that repeats a default would pin it, and a full
//! `[protocol]` table would silently undo a later `profile = "wan"`.

use std::fmt::Write;

use clap::Args;
use quicswim::protocol::Profile;

use super::agent::AgentArgs;

/// Subcommands of `quicswim config`.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print a config file for `quicswim agent --config` with every key, its meaning and its
    /// default, all commented out.
    Example,
}

/// Runs one `config` subcommand.
pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Example => print!("{}", example()),
    }
    Ok(())
}

/// Flags that are not keys of the file.
const NOT_IN_FILE: &[&str] = &["config", "help"];

/// Shown for keys whose default is not a value, so the example still reads as a config file.
/// A key with neither gets a `<VALUE>` placeholder, which the tests do not try to parse.
const EXAMPLES: &[(&str, &str)] = &[
    ("name", "\"node1\""),
    ("bind", "\"0.0.0.0:7946\""),
    ("advertise", "\"10.0.0.5:7946\""),
    ("certs", "\"certs/node1\""),
    ("ca", "\"certs/node1/ca.pem\""),
    ("cert", "\"certs/node1/node1.pem\""),
    ("key", "\"certs/node1/node1-key.pem\""),
    ("crl", "\"/etc/quicswim/crl.pem\""),
    ("api_token_file", "\"/etc/quicswim/api-token\""),
    ("api_host", "[\"quicswim-api.example\"]"),
    ("meta", "\"zone=a\""),
    ("data_dir", "\"/var/lib/quicswim\""),
];

/// Longest comment line, `# ` included.
const WIDTH: usize = 96;

/// The example config file.
pub fn example() -> String {
    let mut out = String::new();
    out.push_str(
        "# quicswim agent config file (`quicswim agent --config FILE`).\n\
         #\n\
         # Written by `quicswim config example`; every key is commented out and shows its\n\
         # default, or an example where the default is not a plain value. Flags win over this\n\
         # file, and this file over the defaults. Relative paths are relative to this file's directory.\n",
    );
    let agent = AgentArgs::augment_args(clap::Command::new("agent"));
    for arg in agent.get_arguments() {
        let Some(flag) = arg.get_long() else { continue };
        if NOT_IN_FILE.contains(&flag) {
            continue;
        }
        let key = flag.replace('-', "_");
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        comment(&mut out, &help);
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        if !possible.is_empty() && !help.contains(&possible.join("|")) {
            comment(&mut out, &format!("One of: {}.", possible.join(", ")));
        }
        // An example wins over a default that is a placeholder ("DIR/ca.pem"); the help
        // text above already states that default.
        let example = EXAMPLES.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let default = default_value(arg, &help).filter(|v| parses(&key, v));
        match (example, default) {
            (Some(value), _) => {
                let _ = writeln!(out, "# For example:\n#{key} = {value}");
            }
            (None, Some(value)) => {
                let _ = writeln!(out, "#{key} = {value}");
            }
            (None, None) => {
                let value_name = arg
                    .get_value_names()
                    .and_then(|names| names.first())
                    .map_or_else(|| "VALUE".to_string(), ToString::to_string);
                let _ = writeln!(out, "# No default.\n#{key} = <{value_name}>");
            }
        }
    }
    out.push_str(&protocol_table());
    out
}

/// A flag's default as a TOML value: clap's own default if it has one, else the
/// `[default: X]` its help text states, else the empty list for a repeatable flag.
fn default_value(arg: &clap::Arg, help: &str) -> Option<String> {
    if let Some(v) = arg.get_default_values().first() {
        return Some(toml_value(&v.to_string_lossy()));
    }
    if let Some(start) = help.find("[default: ") {
        let rest = &help[start + "[default: ".len()..];
        let text = &rest[..rest.find(']')?];
        return Some(toml_value(text));
    }
    match arg.get_action() {
        clap::ArgAction::Append => Some("[]".to_string()),
        clap::ArgAction::SetTrue => Some("false".to_string()),
        _ => None,
    }
}

/// `text` as TOML: numbers and booleans bare, anything else a quoted string.
fn toml_value(text: &str) -> String {
    let bare = text.parse::<i64>().is_ok() || text == "true" || text == "false";
    if bare {
        text.to_string()
    } else {
        toml::Value::String(text.to_string()).to_string()
    }
}

/// Whether `key = value` is a valid agent config file. A help text's `[default: ...]` may be
/// prose ("the bound address"), which is not shown as a value.
fn parses(key: &str, value: &str) -> bool {
    toml::from_str::<AgentArgs>(&format!("{key} = {value}\n")).is_ok()
}

/// The `[protocol]` table: every field with the lan preset's value, and the other presets'
/// where they differ.
fn protocol_table() -> String {
    let table = |p: Profile| match toml::Table::try_from(p.preset()) {
        Ok(t) => t,
        Err(e) => unreachable!("a protocol preset serializes to a TOML table: {e}"),
    };
    let lan = table(Profile::Lan);
    let others: Vec<(Profile, toml::Table)> = [Profile::Wan, Profile::Local]
        .into_iter()
        .map(|p| (p, table(p)))
        .collect();
    let mut out = String::from(
        "\n# Protocol settings, laid over the profile's preset (each one is documented in\n\
         # quicswim-proto/src/protocol/config.rs). Shown: the lan preset, with the wan and local\n\
         # values where they differ. Set only what you mean to change.\n\
         [protocol]\n",
    );
    let mut tables = String::new();
    for (key, value) in &lan {
        if let toml::Value::Table(inner) = value {
            let _ = writeln!(tables, "\n#[protocol.{key}]");
            for (k, v) in inner {
                let _ = writeln!(tables, "#{k} = {v}");
            }
            continue;
        }
        let differs: Vec<String> = others
            .iter()
            .filter_map(|(p, t)| {
                t.get(key)
                    .filter(|v| *v != value)
                    .map(|v| format!("{p} {v}"))
            })
            .collect();
        if differs.is_empty() {
            let _ = writeln!(out, "#{key} = {value}");
        } else {
            let _ = writeln!(out, "#{key} = {value}  # {}", differs.join(", "));
        }
    }
    out + &tables
}

/// Appends `text` as `# ` comment lines of at most [`WIDTH`] characters.
fn comment(out: &mut String, text: &str) {
    for paragraph in text.lines() {
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.example.toml");

    #[test]
    fn committed_example_matches_the_code() {
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == example(),
            "{COMMITTED} differs from `quicswim config example`; regenerate it with\n  \
             cargo run -p quicswim-cli -- config example > deploy/agent.example.toml"
        );
    }

    /// Every key shown is a real key of the right type: the example with every key line
    /// uncommented (placeholders aside) is a valid config file.
    #[test]
    fn example_uncommented_is_a_valid_config_file() {
        let file: String = example()
            .lines()
            .filter_map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
                    (!rest.contains("= <")).then_some(rest)
                }
                Some(_) => None,
                None => Some(line),
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(file.contains("\nname = "), "{file}");
        assert!(file.contains("\n[protocol.kv]\n"), "{file}");
        let parsed: Result<AgentArgs, _> = toml::from_str(&file);
        assert!(parsed.is_ok(), "{file}\n{:?}", parsed.err());
    }

    #[test]
    fn every_flag_has_a_key() {
        let text = example();
        let agent = AgentArgs::augment_args(clap::Command::new("agent"));
        for arg in agent.get_arguments() {
            let Some(flag) = arg.get_long() else { continue };
            if NOT_IN_FILE.contains(&flag) {
                continue;
            }
            let key = format!("\n#{} = ", flag.replace('-', "_"));
            assert!(text.contains(&key), "--{flag} missing from the example");
        }
    }
}
