//! Messages refused because their authenticated sender may not say what they say: each is
//! counted by [`ForgedKind`] and its sender named in a WARN, at most once per peer and
//! minute, so a member that sends a stream of them cannot flood the log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{trace, warn};

use super::super::member::NodeName;
use super::{ForgedKind, Swim};

/// How long a peer's refusals are only counted after a WARN named it.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Most peers remembered as warned about. Past it, peers whose minute has passed are
/// forgotten; if every one is still within its minute, a new peer's refusal is only counted.
pub(super) const WARNED_MAX: usize = 256;

/// When each peer was last named in a WARN.
#[derive(Debug, Default)]
pub(super) struct WarnGate {
    last: BTreeMap<NodeName, Instant>,
}

impl WarnGate {
    /// Whether a WARN naming `peer` may go out at `now`; if so, it is noted as gone out.
    fn admit(&mut self, peer: &NodeName, now: Instant) -> bool {
        let quiet = |at: &Instant| now.saturating_duration_since(*at) < WARN_INTERVAL;
        match self.last.get_mut(peer) {
            Some(at) if quiet(at) => return false,
            Some(at) => {
                *at = now;
                return true;
            }
            None => {}
        }
        if self.last.len() >= WARNED_MAX {
            self.last.retain(|_, at| quiet(at));
            if self.last.len() >= WARNED_MAX {
                return false;
            }
        }
        self.last.insert(peer.clone(), now);
        true
    }

    /// Peers remembered, for the bounds check.
    pub(super) fn len(&self) -> usize {
        self.last.len()
    }
}

impl Swim {
    /// `peer` sent a message of `kind` it may not send: counted, and logged at WARN unless
    /// `peer` was named in one within the last minute. The caller drops the message.
    pub(super) fn refuse_forged(&mut self, now: Instant, peer: &NodeName, kind: ForgedKind) {
        self.stats.forged.bump(kind);
        if self.warned.admit(peer, now) {
            warn!(
                peer = %peer,
                kind = kind.as_str(),
                "refused a message this peer may not send (its further refusals are only counted for a minute)"
            );
        } else {
            trace!(peer = %peer, kind = kind.as_str(), "refused a message this peer may not send");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        NodeName::new(s).expect("test names are DNS labels")
    }

    #[test]
    fn a_peer_is_named_once_a_minute() {
        let t0 = Instant::now();
        let mut gate = WarnGate::default();
        let a = name("a");
        assert!(gate.admit(&a, t0));
        assert!(!gate.admit(&a, t0 + Duration::from_secs(59)));
        assert!(gate.admit(&name("b"), t0 + Duration::from_secs(1)));
        assert!(gate.admit(&a, t0 + WARN_INTERVAL));
        assert!(!gate.admit(&a, t0 + WARN_INTERVAL + Duration::from_secs(1)));
    }

    #[test]
    fn peers_remembered_are_bounded() {
        let t0 = Instant::now();
        let mut gate = WarnGate::default();
        for i in 0..WARNED_MAX {
            assert!(gate.admit(&name(&format!("p{i}")), t0));
        }
        // Every one is within its minute: a new peer is only counted, and nothing grows.
        assert!(!gate.admit(&name("late"), t0 + Duration::from_secs(1)));
        assert_eq!(gate.len(), WARNED_MAX);
        // Once their minute has passed, room is made.
        assert!(gate.admit(&name("late"), t0 + WARN_INTERVAL));
        assert_eq!(gate.len(), 1);
    }
}
