//! The sans-IO protocol core.
pub mod member;

pub use member::{Incarnation, InvalidName, Member, NodeName, State};
