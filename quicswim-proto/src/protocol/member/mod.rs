//! Members: their incarnations and states, and SWIM's precedence rules. Names and the
//! name-keyed table are in `name`; the simulator's shared copies of members in `pool`.
//!
//! ```text
//!   higher incarnation wins
//!   same incarnation:  Alive  <  Suspect  <  Dead == Left
//! ```

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

mod name;
mod pool;

pub use name::{
    InvalidName, NameHasher, NameMap, NameTable, Named, NodeName, NAME_INLINE_MAX, NAME_LEN_MAX,
};
pub use pool::MemberPool;

/// Most metadata bytes a member may carry.
pub const META_LEN_MAX: usize = 128;

/// A member's incarnation number. Only the member itself raises it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Incarnation(pub u64);

impl Incarnation {
    /// The next incarnation.
    pub fn next(self) -> Self {
        Incarnation(self.0.saturating_add(1))
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A member's state as one node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Answering probes.
    Alive,
    /// Failed a probe; becomes Dead unless it refutes in time.
    Suspect,
    /// Declared failed.
    Dead,
    /// Left gracefully.
    Left,
}

impl State {
    /// Rank at equal incarnation: Alive < Suspect < Dead == Left.
    fn rank(self) -> u8 {
        match self {
            State::Alive => 0,
            State::Suspect => 1,
            State::Dead | State::Left => 2,
        }
    }

    /// Alive or Suspect: still a member to probe and gossip to.
    pub fn is_active(self) -> bool {
        matches!(self, State::Alive | State::Suspect)
    }

    /// Lowercase name, as the CLI and API print it.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "dead",
            State::Left => "left",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one node knows of a member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The member's name (its certificate's DNS SAN).
    pub name: NodeName,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its incarnation as last heard.
    pub incarnation: Incarnation,
    /// Its state as this node sees it.
    pub state: State,
    /// Small application metadata (at most [`META_LEN_MAX`] bytes).
    pub meta: Vec<u8>,
}

/// Whether a claim `(incarnation, state)` overrides what is held, under SWIM precedence.
///
/// A higher incarnation always wins; at equal incarnation only a strictly stronger state does
/// (so re-hearing the same claim changes nothing and is not re-gossiped).
pub fn overrides(new: (Incarnation, State), held: (Incarnation, State)) -> bool {
    match new.0.cmp(&held.0) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => new.1.rank() > held.1.rank(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_incarnation_wins_whatever_the_state() {
        let (i1, i2) = (Incarnation(1), Incarnation(2));
        assert!(overrides((i2, State::Alive), (i1, State::Dead)));
        assert!(!overrides((i1, State::Dead), (i2, State::Alive)));
    }

    #[test]
    fn at_equal_incarnation_suspect_beats_alive_and_dead_beats_both() {
        let i = Incarnation(3);
        assert!(overrides((i, State::Suspect), (i, State::Alive)));
        assert!(overrides((i, State::Dead), (i, State::Suspect)));
        assert!(overrides((i, State::Left), (i, State::Alive)));
        assert!(!overrides((i, State::Alive), (i, State::Suspect)));
        assert!(!overrides((i, State::Suspect), (i, State::Suspect)));
        assert!(!overrides((i, State::Dead), (i, State::Left)));
    }
}
