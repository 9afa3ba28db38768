//! Messages refused because their authenticated sender may not say what they say: each is
//! counted by [`ForgedKind`] and its sender named in a WARN, at most once per peer and
//! minute (the gate forged records share, [`warn_due`](Swim::warn_due)), so a member that
//! sends a stream of them cannot flood the log.

use std::time::Instant;

use tracing::{trace, warn};

use super::super::member::NodeName;
use super::{ForgedKind, Swim};

impl Swim {
    /// `peer` sent a message of `kind` it may not send: counted, and logged at WARN unless
    /// `peer` was named in one within the last minute. The caller drops the message.
    pub(super) fn refuse_forged(&mut self, now: Instant, peer: &NodeName, kind: ForgedKind) {
        self.stats.forged.bump(kind);
        if self.warn_due(now, peer) {
            warn!(
                peer = %peer,
                kind = kind.as_str(),
                "refused a message this peer may not send (logged once a minute per peer)"
            );
        } else {
            trace!(peer = %peer, kind = kind.as_str(), "refused a message this peer may not send");
        }
    }
}
