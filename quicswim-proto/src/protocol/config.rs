//! Protocol configuration, with presets taken from memberlist's `DefaultLANConfig`,
//! `DefaultWANConfig` and `DefaultLocalConfig`.

use std::time::Duration;

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use struct_patch::Patch;

use super::kv::KvLimits;

/// A configuration field that is out of range, checked once at start. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config field `{field}`: {reason}")]
pub struct ConfigError {
    /// The offending field, as named in the config file.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Everything that tunes the protocol core. Durations are given in config files as
/// humantime strings (`"500ms"`, `"30s"`).
///
/// Settings are layered once, at the edge: a [`Profile`]'s preset, then a [`ConfigPatch`]
/// from a file, then [`Config::validate`] into the [`ValidConfig`] that the core and the node
/// take without checking again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Patch)]
#[serde(default, deny_unknown_fields)]
#[patch(attribute(derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)))]
#[patch(attribute(serde(deny_unknown_fields)))]
#[patch(attribute(allow(missing_docs)))]
#[patch(attribute(
    doc = "Some of [`Config`]'s fields, each replacing the base's when set (a config file's `[protocol]` table). The fields mean what [`Config`]'s do."
))]
pub struct Config {
    /// Time between probes of one member each (lan 1 s). Range 10 ms..=60 s.
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub probe_interval: Duration,
    /// How long to wait for a direct Ack before asking others (lan 500 ms). Below `probe_interval`.
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub probe_timeout: Duration,
    /// Members asked to probe on our behalf when a direct probe fails (lan 3). 0..=16.
    pub indirect_checks: usize,
    /// Suspicion timeout multiplier: min timeout = mult · max(1, log10 n) · probe_interval
    /// (lan 2). 1..=64.
    pub suspicion_mult: u32,
    /// Max suspicion timeout as a multiple of the min (lan 12). 1..=64.
    pub suspicion_max_timeout_mult: u32,
    /// Independent confirmations that bring a suspicion from its max timeout down to its min
    /// (Lifeguard's K; lan 3): each is another member's own failed probe of the suspect,
    /// signed by that member. Fewer are wanted in a cluster too small to give them
    /// (`min(K, n - 2)`). 0..=16.
    pub suspicion_confirmations: u32,
    /// An update is sent at most `retransmit_mult · (ceil(log10(n+1)) + 1)` times by each
    /// node (lan 4). 1..=32.
    pub retransmit_mult: u32,
    /// Time between gossip rounds (lan 200 ms). Range 1 ms..=60 s.
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub gossip_interval: Duration,
    /// Members sent queued updates each gossip round (lan 3). 1..=64.
    pub gossip_nodes: usize,
    /// Most datagrams one gossip round sends each of its members (lan 3), each with updates
    /// the others did not carry; more than one only while the queue holds more than a
    /// datagram's worth (a join storm). 1..=16.
    pub gossip_datagrams_max: usize,
    /// Dead members still gossiped to, so they learn it and refute (lan 30 s).
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub gossip_to_the_dead_time: Duration,
    /// Full-state exchange with one random member, scaled up beyond 32 members (lan 30 s).
    /// Zero disables periodic exchanges (joins still use them).
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub push_pull_interval: Duration,
    /// Upper bound of the local health multiplier (Lifeguard; lan 8). 0..=32.
    pub awareness_max_multiplier: u32,
    /// How long Dead and Left members are kept as tombstones (lan 1 h).
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub dead_retention: Duration,
    /// How often one random Dead member is contacted for a full exchange, so that a healed
    /// partition merges back by itself (lan 10 s). Zero disables.
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub reconnect_interval: Duration,
    /// How often a node that has not reached any seed tries again (lan 2 s).
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub join_retry_interval: Duration,
    /// The longest wait between join attempts: the wait doubles from `join_retry_interval`
    /// up to this (default 30 s). At least `join_retry_interval`, at most 1 h.
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub join_retry_max: Duration,
    /// Datagram size the core fills up to; the runtime lowers or raises it to the
    /// connection's `max_datagram_size()` (default 1162, QUIC's size before MTU discovery).
    pub max_datagram_size: usize,
    /// Most members held, tombstones included (default 16384).
    pub members_max: usize,
    /// Most updates waiting in the piggyback queue (default 8192); the most-sent go first.
    pub broadcast_queue_max: usize,
    /// Key/value limits, enforced on write and on receipt (`[kv]` table).
    pub kv: KvLimits,
    /// How long key/value tombstones are kept before collection (default 1 h).
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub kv_tombstone_grace: Duration,
    /// Most key/value bytes one anti-entropy exchange carries each way (default 1 MiB).
    pub kv_sync_bytes_max: usize,
    /// Time between key/value rounds while key/value data is changing: digest exchanges on
    /// streams with `gossip_nodes` members (lan 200 ms, wan 500 ms, local 100 ms: the
    /// gossip interval). Range 1 ms..=60 s.
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub kv_sync_interval: Duration,
    /// How far this node's own key/value writes may fall behind on their way to the cluster
    /// before `set` and `delete` are refused with `Backlogged` (five key/value rounds: lan
    /// 1 s, wan 2.5 s, local 500 ms; zero never refuses). Behind is the age of the oldest
    /// write that the median of the peers this node last exchanged digests with does not
    /// hold yet, counted from when it could first leave (writes are signed a batch at a time,
    /// and the wait for the next signing is not counted).
    /// Range 0..=1 h.
    #[serde(with = "humantime_serde")]
    #[patch(attribute(serde(default, with = "humantime_serde::option")))]
    pub kv_backlog_max: Duration,
    /// Largest user event payload in bytes (default 512, as serf; at most 1024 so an event
    /// fits a datagram).
    pub event_payload_len_max: usize,
}

/// `serde(with)` adapter so config files say `"500ms"` rather than `{ secs, nanos }`.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration like \"500ms\" or \"30s\": {e}"
            ))
        })
    }

    /// The same for the optional fields of a [`ConfigPatch`](super::ConfigPatch).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::lan()
    }
}

impl Config {
    /// memberlist's LAN defaults: a data centre or one region.
    pub fn lan() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            // Memberlist has 4 and 6, with K = 4 - 2 = 2: a 6 s minimum at 32 members,
            // which every crash waits out once its confirmations are in. Here a suspicion
            // needs three members' own signed failed probes (about nine members probe a
            // suspect at once, see `on_suspect`) before it may end at a 3 s minimum, and one
            // accuser alone still waits the same 36 s maximum (BENCHMARKS.md, "Detection").
            suspicion_mult: 2,
            suspicion_max_timeout_mult: 12,
            suspicion_confirmations: 3,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_datagrams_max: 3,
            gossip_to_the_dead_time: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            awareness_max_multiplier: 8,
            dead_retention: Duration::from_secs(3600),
            reconnect_interval: Duration::from_secs(10),
            join_retry_interval: Duration::from_secs(2),
            join_retry_max: Duration::from_secs(30),
            max_datagram_size: 1162,
            members_max: 16384,
            broadcast_queue_max: 8192,
            kv: KvLimits::default(),
            kv_tombstone_grace: Duration::from_secs(3600),
            kv_sync_bytes_max: 1024 * 1024,
            kv_sync_interval: Duration::from_millis(200),
            kv_backlog_max: Duration::from_secs(1),
            event_payload_len_max: 512,
        }
    }

    /// memberlist's WAN defaults: members across regions, higher latency and loss.
    pub fn wan() -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            suspicion_max_timeout_mult: 6,
            suspicion_confirmations: 4,
            gossip_interval: Duration::from_millis(500),
            kv_sync_interval: Duration::from_millis(500),
            kv_backlog_max: Duration::from_millis(2500),
            gossip_nodes: 4,
            gossip_to_the_dead_time: Duration::from_secs(60),
            push_pull_interval: Duration::from_secs(60),
            reconnect_interval: Duration::from_secs(30),
            join_retry_interval: Duration::from_secs(5),
            join_retry_max: Duration::from_secs(30),
            ..Self::lan()
        }
    }

    /// memberlist's local defaults: one machine or a fast local network.
    pub fn local() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(200),
            indirect_checks: 1,
            suspicion_mult: 3,
            suspicion_max_timeout_mult: 6,
            suspicion_confirmations: 1,
            retransmit_mult: 2,
            gossip_interval: Duration::from_millis(100),
            kv_sync_interval: Duration::from_millis(100),
            kv_backlog_max: Duration::from_millis(500),
            gossip_to_the_dead_time: Duration::from_secs(15),
            push_pull_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(5),
            join_retry_interval: Duration::from_secs(1),
            join_retry_max: Duration::from_secs(30),
            ..Self::lan()
        }
    }

    /// Cross-field checks, run once at the edge (the agent's settings, a simulation's or a
    /// bench's arguments): the [`ValidConfig`] it returns is what the core accepts.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let ms = Duration::from_millis;
        in_range("probe_interval", self.probe_interval, ms(10), ms(60_000))?;
        if self.probe_timeout.is_zero() || self.probe_timeout >= self.probe_interval {
            return Err(ConfigError::new(
                "probe_timeout",
                format!(
                    "{:?} must be above zero and below probe_interval ({:?})",
                    self.probe_timeout, self.probe_interval
                ),
            ));
        }
        count_in_range("indirect_checks", self.indirect_checks as u64, 0, 16)?;
        count_in_range("suspicion_mult", self.suspicion_mult.into(), 1, 64)?;
        count_in_range(
            "suspicion_max_timeout_mult",
            self.suspicion_max_timeout_mult.into(),
            1,
            64,
        )?;
        count_in_range(
            "suspicion_confirmations",
            self.suspicion_confirmations.into(),
            0,
            16,
        )?;
        count_in_range("retransmit_mult", self.retransmit_mult.into(), 1, 32)?;
        in_range("gossip_interval", self.gossip_interval, ms(1), ms(60_000))?;
        in_range("kv_sync_interval", self.kv_sync_interval, ms(1), ms(60_000))?;
        in_range("kv_backlog_max", self.kv_backlog_max, ms(0), ms(3_600_000))?;
        count_in_range("gossip_nodes", self.gossip_nodes as u64, 1, 64)?;
        count_in_range(
            "gossip_datagrams_max",
            self.gossip_datagrams_max as u64,
            1,
            16,
        )?;
        count_in_range(
            "awareness_max_multiplier",
            self.awareness_max_multiplier.into(),
            0,
            32,
        )?;
        if self.dead_retention < self.gossip_to_the_dead_time {
            return Err(ConfigError::new(
                "dead_retention",
                "must be at least gossip_to_the_dead_time",
            ));
        }
        if self.join_retry_interval.is_zero() {
            return Err(ConfigError::new(
                "join_retry_interval",
                "must be above zero",
            ));
        }
        in_range(
            "join_retry_max",
            self.join_retry_max,
            self.join_retry_interval,
            Duration::from_secs(3600),
        )?;
        count_in_range(
            "max_datagram_size",
            self.max_datagram_size as u64,
            256,
            65_527,
        )?;
        count_in_range(
            "members_max",
            self.members_max as u64,
            2,
            super::codec::MEMBERS_PER_MESSAGE_MAX as u64,
        )?;
        count_in_range(
            "broadcast_queue_max",
            self.broadcast_queue_max as u64,
            16,
            1_000_000,
        )?;
        count_in_range(
            "kv.key_len_max",
            self.kv.key_len_max as u64,
            1,
            super::kv::KEY_LEN_MAX_CAP as u64,
        )?;
        count_in_range(
            "kv.value_len_max",
            self.kv.value_len_max as u64,
            1,
            super::kv::VALUE_LEN_MAX_CAP as u64,
        )?;
        count_in_range(
            "kv.keys_per_node_max",
            self.kv.keys_per_node_max as u64,
            1,
            10_000_000,
        )?;
        if self.kv.bytes_per_node_max < self.kv.value_len_max {
            return Err(ConfigError::new(
                "kv.bytes_per_node_max",
                "must be at least kv.value_len_max",
            ));
        }
        count_in_range(
            "kv.owners_max",
            self.kv.owners_max as u64,
            1,
            super::codec::OWNERS_PER_MESSAGE_MAX as u64,
        )?;
        if self.kv_tombstone_grace.is_zero() {
            return Err(ConfigError::new("kv_tombstone_grace", "must be above zero"));
        }
        if self.kv_sync_bytes_max < self.kv.value_len_max + self.kv.key_len_max {
            return Err(ConfigError::new(
                "kv_sync_bytes_max",
                "must hold at least one largest key and value",
            ));
        }
        count_in_range(
            "event_payload_len_max",
            self.event_payload_len_max as u64,
            1,
            super::events::EVENT_PAYLOAD_LEN_MAX_CAP as u64,
        )?;
        Ok(ValidConfig(self))
    }
}

/// A [`Config`] that passed [`Config::validate`]: what [`Swim::new`](super::Swim::new), the
/// simulator and the node take, so the checks run once, where the settings come in.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidConfig(Config);

impl ValidConfig {
    /// The settings.
    pub fn get(&self) -> &Config {
        &self.0
    }

    /// The settings, to change and validate again.
    pub fn into_inner(self) -> Config {
        self.0
    }
}

impl Deref for ValidConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.0
    }
}

impl Default for ValidConfig {
    /// The lan preset.
    fn default() -> Self {
        Profile::Lan.config()
    }
}

impl TryFrom<Config> for ValidConfig {
    type Error = ConfigError;

    fn try_from(config: Config) -> Result<Self, ConfigError> {
        config.validate()
    }
}

/// The protocol presets, from memberlist: the first layer of every subcommand's settings
/// (agent, demo, simulate, bench), under a config file's `[protocol]` table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// One data centre or region ([`Config::lan`]).
    #[default]
    Lan,
    /// Across regions: slower probes, more patience ([`Config::wan`]).
    Wan,
    /// One machine or a fast local network ([`Config::local`]).
    Local,
}

impl Profile {
    /// Every profile, in the order they are listed to users.
    pub const ALL: [Profile; 3] = [Profile::Lan, Profile::Wan, Profile::Local];

    /// The profile's preset, unchanged.
    pub fn preset(self) -> Config {
        match self {
            Profile::Lan => Config::lan(),
            Profile::Wan => Config::wan(),
            Profile::Local => Config::local(),
        }
    }

    /// The profile's preset, validated (every preset is valid; a unit test holds it so).
    pub fn config(self) -> ValidConfig {
        ValidConfig(self.preset())
    }

    /// The preset with `patch` laid over it, validated.
    pub fn with_patch(self, patch: ConfigPatch) -> Result<ValidConfig, ConfigError> {
        let mut config = self.preset();
        config.apply(patch);
        config.validate()
    }

    /// The name users give: `lan`, `wan` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
            Profile::Local => "local",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = ConfigError;

    fn from_str(name: &str) -> Result<Self, ConfigError> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| {
                ConfigError::new(
                    "profile",
                    format!("unknown profile {name:?} (expected lan, wan or local)"),
                )
            })
    }
}

fn in_range(
    field: &'static str,
    v: Duration,
    lo: Duration,
    hi: Duration,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            field,
            format!("{v:?} is outside {lo:?}..={hi:?}"),
        ));
    }
    Ok(())
}

fn count_in_range(field: &'static str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            field,
            format!("{v} is outside {lo}..={hi}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for p in Profile::ALL {
            assert_eq!(p.preset().validate().unwrap(), p.config(), "{p}");
            assert_eq!(p.to_string().parse::<Profile>().unwrap(), p);
        }
    }

    #[test]
    fn patch_replaces_only_what_it_sets() {
        let patch: ConfigPatch =
            toml::from_str("probe_interval = \"8s\"\ngossip_nodes = 5").unwrap();
        let c = Profile::Wan.with_patch(patch).unwrap();
        assert_eq!(c.probe_interval, Duration::from_secs(8));
        assert_eq!(c.gossip_nodes, 5);
        // Everything else is still the wan preset, not the lan default.
        assert_eq!(c.probe_timeout, Config::wan().probe_timeout);
        assert_eq!(c.push_pull_interval, Config::wan().push_pull_interval);
        assert!(toml::from_str::<ConfigPatch>("probe_intervall = \"1s\"").is_err());
        assert!(toml::from_str::<ConfigPatch>("probe_interval = \"soon\"").is_err());
        let patch: ConfigPatch = toml::from_str("probe_timeout = \"20s\"").unwrap();
        assert_eq!(
            Profile::Lan.with_patch(patch).unwrap_err().field,
            "probe_timeout"
        );
    }

    #[test]
    fn lan_uses_memberlist_numbers_but_a_shorter_confirmed_suspicion() {
        let c = Config::lan();
        assert_eq!(c.probe_interval, Duration::from_secs(1));
        assert_eq!(c.probe_timeout, Duration::from_millis(500));
        // Half memberlist's minimum, its maximum (4 · 6), one more confirmation than its 2.
        assert_eq!(
            (
                c.suspicion_mult,
                c.suspicion_max_timeout_mult,
                c.suspicion_confirmations
            ),
            (2, 12, 3)
        );
        assert_eq!(c.suspicion_mult * c.suspicion_max_timeout_mult, 4 * 6);
        assert_eq!(
            (c.retransmit_mult, c.gossip_nodes, c.indirect_checks),
            (4, 3, 3)
        );
        assert_eq!(c.gossip_interval, Duration::from_millis(200));
        assert_eq!(c.push_pull_interval, Duration::from_secs(30));
    }

    #[test]
    fn probe_timeout_must_be_below_interval() {
        let c = Config {
            probe_timeout: Duration::from_secs(2),
            ..Config::lan()
        };
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "probe_timeout");
        assert!(err.to_string().contains("probe_timeout"));
    }

    #[test]
    fn out_of_range_counts_name_the_field() {
        let c = Config {
            gossip_nodes: 0,
            ..Config::lan()
        };
        assert_eq!(c.validate().unwrap_err().field, "gossip_nodes");
        let c = Config {
            max_datagram_size: 100,
            ..Config::lan()
        };
        assert_eq!(c.validate().unwrap_err().field, "max_datagram_size");
    }

    #[test]
    fn unknown_profile_is_refused() {
        assert_eq!("moon".parse::<Profile>().unwrap_err().field, "profile");
    }

    #[test]
    fn toml_round_trip_uses_human_durations() {
        let text = toml::to_string(&Config::local()).unwrap();
        assert!(text.contains("probe_timeout = \"200ms\""), "{text}");
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::local());
        let partial: Config = toml::from_str("gossip_nodes = 5").unwrap();
        assert_eq!(partial.gossip_nodes, 5);
        assert_eq!(partial.probe_interval, Duration::from_secs(1));
        assert!(toml::from_str::<Config>("gossip_nodez = 5").is_err());
    }
}
