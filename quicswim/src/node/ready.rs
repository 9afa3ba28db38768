//! Readiness: whether a node is in a cluster and has its state, as a load balancer or a
//! Kubernetes readiness probe wants to know (liveness is [`Node::members`] answering).
//!
//! ```text
//!   left the cluster                        -> not ready (Left)
//!   bootstrap node                          -> ready, alone or not, seeds answered or not
//!   seeds lead only to this node            -> not ready (OnlySelf)
//!   seeds given, none has answered yet      -> not ready (NotJoined)
//!   no seeds, no full-state exchange yet    -> not ready (AwaitingMember)
//!   no other member alive or suspect        -> not ready (NoLivePeer)
//!   otherwise                               -> ready
//! ```
//!
//! A node with no seeds that is not a bootstrap node is a node waiting to be joined: ready
//! only once a member has joined it (and so exchanged full state with it). One started with
//! seeds is ready once a seed has answered, which is its first full-state exchange, or a
//! member has joined it; seeds that resolve only to this node are no cluster (see
//! `quicswim_proto`'s join module), and `/ready` says so rather than "no seed answered". A
//! bootstrap node (consul's `-bootstrap`) is ready from the start and stays ready alone, even
//! while seeds it was given do not answer: a StatefulSet's pod 0 must pass its readiness probe
//! before the pods it lists as seeds are created.
//!
//! [`Node::members`]: super::Node::members

/// What the driver knows that readiness depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ReadyFacts {
    /// This node has left the cluster.
    pub left: bool,
    /// A seed answered, a member joined this node, or none was needed.
    pub joined: bool,
    /// The seeds' addresses last found were this node's own and nothing else.
    pub only_self: bool,
    /// A full-state exchange with another member has completed.
    pub synced: bool,
    /// Other members held Alive or Suspect.
    pub live_peers: usize,
}

/// Why a node is not ready. The text is what `/ready` answers as its reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The node has left the cluster (or is leaving).
    #[error("left the cluster")]
    Left,
    /// Seeds were given and none has answered yet.
    #[error("not joined: no seed has answered yet")]
    NotJoined,
    /// Seeds were given, but the addresses they resolved to last were all this node's own
    /// (a StatefulSet's pod that sees only its own record): it waits for another member.
    #[error(
        "not joined: the seeds resolve only to this node; waiting for another member \
         (a deliberate first node is started with --bootstrap)"
    )]
    OnlySelf,
    /// No seeds were given, the node is not a bootstrap node, and no member has joined it.
    #[error("not joined: no seeds, not a bootstrap node, and no member has joined this node yet")]
    AwaitingMember,
    /// Every other member this node knows is dead or left.
    #[error("no live peer: every other member known here is dead or left")]
    NoLivePeer,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// Whether a node is ready, and why not.
pub type Readiness = Result<(), NotReady>;

/// Readiness from the driver's facts, for a node started with `bootstrap` or not.
pub(super) fn readiness(facts: ReadyFacts, bootstrap: bool) -> Readiness {
    if facts.left {
        return Err(NotReady::Left);
    }
    if bootstrap {
        return Ok(());
    }
    if !facts.joined && facts.only_self {
        return Err(NotReady::OnlySelf);
    }
    if !facts.joined {
        return Err(NotReady::NotJoined);
    }
    if !facts.synced {
        return Err(NotReady::AwaitingMember);
    }
    if facts.live_peers == 0 {
        return Err(NotReady::NoLivePeer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN_A_CLUSTER: ReadyFacts = ReadyFacts {
        left: false,
        joined: true,
        only_self: false,
        synced: true,
        live_peers: 2,
    };

    #[test]
    fn a_joined_synced_node_with_a_live_peer_is_ready() {
        assert_eq!(readiness(IN_A_CLUSTER, false), Ok(()));
    }

    #[test]
    fn a_node_whose_seeds_have_not_answered_is_not_ready_unless_bootstrap() {
        let stranded = ReadyFacts {
            joined: false,
            synced: false,
            live_peers: 0,
            ..IN_A_CLUSTER
        };
        assert_eq!(readiness(stranded, false), Err(NotReady::NotJoined));
        assert_eq!(readiness(stranded, true), Ok(()));
        assert!(NotReady::NotJoined
            .to_string()
            .starts_with("not joined: no seed has answered"));
    }

    #[test]
    fn a_node_whose_seeds_lead_only_to_itself_says_so() {
        let only_self = ReadyFacts {
            joined: false,
            only_self: true,
            synced: false,
            live_peers: 0,
            ..IN_A_CLUSTER
        };
        assert_eq!(readiness(only_self, false), Err(NotReady::OnlySelf));
        assert_eq!(readiness(only_self, true), Ok(()));
        assert!(NotReady::OnlySelf
            .to_string()
            .contains("the seeds resolve only to this node"));
    }

    #[test]
    fn a_seedless_node_waits_for_a_member_unless_it_is_bootstrap() {
        let alone = ReadyFacts {
            synced: false,
            live_peers: 0,
            ..IN_A_CLUSTER
        };
        assert_eq!(readiness(alone, false), Err(NotReady::AwaitingMember));
        assert_eq!(readiness(alone, true), Ok(()));
    }

    #[test]
    fn losing_every_peer_makes_a_node_unready_unless_it_is_bootstrap() {
        let lonely = ReadyFacts {
            live_peers: 0,
            ..IN_A_CLUSTER
        };
        assert_eq!(readiness(lonely, false), Err(NotReady::NoLivePeer));
        assert_eq!(readiness(lonely, true), Ok(()));
    }

    #[test]
    fn a_node_that_left_is_never_ready() {
        let left = ReadyFacts {
            left: true,
            ..IN_A_CLUSTER
        };
        assert_eq!(readiness(left, false), Err(NotReady::Left));
        assert_eq!(readiness(left, true), Err(NotReady::Left));
    }
}
