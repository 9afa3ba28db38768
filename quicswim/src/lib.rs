//! quicswim: encrypted cluster membership.
//!
//! SWIM failure detection with the Lifeguard refinements and piggybacked gossip travel as QUIC
//! datagrams; full-state anti-entropy travels on QUIC streams; every connection is mutual TLS 1.3.
//! This crate is the runtime around the sans-IO core in [`quicswim_proto`]: it owns the socket,
//! the clock and the certificates, and drives the core.
//!
//! ```text
//!   quicswim (binary)   CLI, agent, demo, simulate, bench
//!         |
//!   quicswim (library)  node/ (the Node handle + its driver task), api/ (HTTP control API, metrics),
//!         |             transport/ (quinn: endpoint, connections, datagrams, streams), tls/ (rustls, rcgen)
//!         |  now, handle_* inputs / poll_* outputs
//!   quicswim-proto      protocol/ (SWIM + Lifeguard, gossip, kv, events, codec), ring/, sim/
//! ```
//!
//! [`protocol`] and [`ring`] are the core's modules, re-exported so an application needs only
//! this crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod node;
pub mod tls;
pub mod transport;

pub use quicswim_proto::{protocol, ring};

pub use node::{
    KvItem, LeaveOutcome, Node, NodeConfig, NotReady, Readiness, RingChanged, Seed, SeedParseError,
    StopReason, LEAVE_TIMEOUT_DEFAULT,
};

/// A node name for unit tests, which use only valid DNS labels.
#[cfg(test)]
pub(crate) fn test_name(s: &str) -> crate::protocol::NodeName {
    crate::protocol::NodeName::new(s).expect("test names are DNS labels")
}
