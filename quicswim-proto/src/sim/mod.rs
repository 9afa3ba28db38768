//! A deterministic, discrete-event simulator of whole clusters of protocol cores.
//!
//! Virtual time, one global event queue, a network with latency, loss, duplication and
//! partitions, crashes and restarts, and gray failures (lossy, flapping and stalling nodes,
//! cut links). No I/O: the caller passes an `Instant` as time zero and
//! a seed; the same seed gives the same run, so a failure is replayed from its seed.
pub mod cluster;
pub mod config;
pub mod faults;
pub mod health;
pub mod keys;
pub mod network;
pub mod report;
pub mod rogue;

pub use cluster::{node_addr, Simulation};
pub use config::{KvWorkload, PartitionPlan, SimConfig};
pub use faults::{Direction, FaultPlan, FlapPlan, GrayPlan, StallPlan};
pub use keys::SimAuthority;
pub use network::NetworkConfig;
pub use report::Report;
