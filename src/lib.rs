//! quicswim: encrypted cluster membership.
//!
//! SWIM failure detection with the Lifeguard refinements and piggybacked gossip travel as QUIC
//! datagrams; full-state anti-entropy travels on QUIC streams; every connection is mutual TLS 1.3.
//!
//! ```text
//!   cli (src/main.rs, src/cli/)   api/ (HTTP control API: members, kv, events, ring, health, metrics)
//!          |                         |       bench/ (whole-cluster figures from real nodes)
//!          |                         |          |
//!   node (runtime: owns the core and the transport)
//!      |                         |
//!   protocol/ (sans-IO core)   transport/ (quinn) -- tls/ (rustls, rcgen)
//!   ring/, sim/ (no I/O)
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod bench;
pub mod node;
pub mod protocol;
pub mod ring;
pub mod sim;
pub mod tls;
pub mod transport;

pub use node::{KvItem, Node, NodeConfig, RingChanged};
