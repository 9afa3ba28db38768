//! The sans-IO protocol core: SWIM with the Lifeguard refinements, piggybacked gossip and
//! full-state anti-entropy.
//!
//! Nothing here does I/O. Time comes in as `now: Instant`, randomness from a seed the caller
//! gives. Inputs are `handle_*` calls, outputs `poll_*` calls, as in quinn-proto.
pub mod awareness;
pub(crate) mod bounded;
pub mod broadcast;
pub mod codec;
pub mod config;
pub(crate) mod cycle;
pub mod events;
pub mod kv;
pub mod member;
pub mod signing;
pub mod suspicion;
pub mod swim;
pub mod timer;

pub use bounded::{COUNTER_MAX, SELF_CLAIM_MAX};
pub use codec::DecodeError;
pub use config::{Config, ConfigError, ConfigPatch, Profile, ValidConfig};
pub use events::UserEvent;
pub use kv::{KvEntry, KvError, KvLimits};
pub use member::{Incarnation, InvalidName, Member, MemberPool, NodeName, State};
pub use signing::{
    Certificate, CertificateRefused, Keyring, Revocation, RevocationList, Signature, Verdict,
    REVOCATION_LEN_MAX,
};
pub use swim::{
    probe_pass, push_pull_scale, CommandError, Destination, Event, ForgedCounts, ForgedKind,
    LeaveStatus, PeerError, RttHistogram, Stats, Swim, Transmit, TransmitKind, RTT_BOUNDS_MICROS,
};
