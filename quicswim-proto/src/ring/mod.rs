//! Consistent hashing over the live members, for routing keys to nodes. No I/O: everything
//! here is a pure function of the member set, so every node with the same view routes alike.
//!
//! ```text
//!   membership updates --> RingTracker --(one rebuild per change)--> Arc<Ring>
//!   (name, State, weight)     |                                         |
//!                             `--> RingChange {added, removed, ..}       |
//!                                                                       v
//!   key bytes --xxh64--> point on 0..2^64 --binary search--> owner / replicas(n)
//! ```
//!
//! - [`crate::hash`]: XXH64, the stable hash behind every point and key (shared with the
//!   protocol, which orders its watch list by it).
//! - [`hashring`]: [`Ring`], the immutable sorted array of virtual-node points.
//! - [`tracker`]: [`RingTracker`], which applies SWIM states (Suspect keeps its place).
//! - [`weight`]: [`weight_from_meta`], a member's weight from its metadata.

pub mod hashring;
pub mod tracker;
pub mod weight;

pub use crate::hash::xxh64;
pub use hashring::{Ring, VNODES_PER_MEMBER_DEFAULT, VNODES_PER_MEMBER_MAX};
pub use tracker::{RingChange, RingTracker};
pub use weight::{weight_from_meta, WEIGHT_DEFAULT, WEIGHT_MAX};
