//! quicswim-proto: the sans-IO core of quicswim.
//!
//! SWIM failure detection with the Lifeguard refinements, piggybacked gossip, full-state
//! anti-entropy, key/value data and user events ([`protocol`]); the consistent-hash ring that
//! follows membership ([`ring`]); and a deterministic simulator of whole clusters of cores
//! ([`sim`]).
//!
//! ```text
//!   quicswim (binary)   CLI, agent, demo, simulate, bench
//!         |
//!   quicswim (library)  node (handle + driver task), api, transport (quinn), tls (rustls, rcgen)
//!         |  now, handle_* inputs / poll_* outputs
//!   quicswim-proto      protocol/, ring/, sim/, hash   <- this crate
//! ```
//!
//! Nothing here does I/O: no sockets, no runtime, no clock, no OS randomness. Time comes in as
//! `now: Instant`, randomness from a seed the caller gives, so one core runs in a real node, in
//! a 10,000-node simulation and in tests with exact, repeatable outcomes. The crate's dependency
//! list is what keeps it so: it has no tokio, quinn, rustls or HTTP stack to reach for.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Unit tests take `Instant::now()` as an arbitrary epoch; std has no other way to make one.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

// Public only because the fuzz targets (`fuzz/`, a separate crate) and the corpus replay
// test (`tests/fuzz_corpus.rs`) must reach it; hidden from the docs and not part of the API,
// with no stability promise. A cargo feature would hide it from the compiler too, but the
// replay test runs in every plain `cargo test` and would then need the crate to depend on
// itself with that feature.
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod protocol;
pub mod ring;
pub mod sim;

/// A node name for unit tests, which use only valid DNS labels.
#[cfg(test)]
pub(crate) fn test_name(s: &str) -> crate::protocol::NodeName {
    crate::protocol::NodeName::new(s).expect("test names are DNS labels")
}
