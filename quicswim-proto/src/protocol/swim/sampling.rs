//! Random member picks for gossip, indirect probes, anti-entropy and leaving: members with a
//! connection up first, with bounded work per pick.

use rand::seq::SliceRandom;
use rand::Rng;

use super::super::member::NodeName;
use super::{Entry, Swim};

impl Swim {
    /// Up to `k` distinct members matching `pred`, `except` excluded, chosen at random among
    /// those with a connection up first, then among the rest to make up the number.
    ///
    /// A node holds a connection to the members it probed or was probed by, gossiped with,
    /// or heard from lately; they are a random sample of the cluster, so gossip that stays
    /// on them still mixes well, while a target without one costs a TLS handshake. Without
    /// the preference, nodes that start together each dial nearly every member within
    /// seconds (about 7,000 handshakes for 128 nodes), the mesh then being torn down by the
    /// idle timeout. Members with no connection are still picked when too few have one, so
    /// a new node reaches beyond its seed; the probe round-robin keeps adding connections.
    /// Connected members are found by sampling (bounded work per call, even in a cluster
    /// of thousands where few are connected).
    pub(super) fn random_members_connected_first(
        &mut self,
        k: usize,
        pred: impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) -> Vec<NodeName> {
        let mut out: Vec<NodeName> = Vec::with_capacity(k);
        self.sample_connected(&mut out, k, &pred, except);
        self.fill_random(&mut out, k, &pred, except);
        out
    }

    /// Adds members with a connection up, matching `pred`, to `out` (up to `k` in all), found
    /// by bounded sampling: in a large cluster where few are connected some may be missed.
    pub(super) fn sample_connected(
        &mut self,
        out: &mut Vec<NodeName>,
        k: usize,
        pred: &impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) {
        self.sample_members(out, k, walk_max(k), &|e| e.connected && pred(e), except);
    }

    /// Adds members drawn at random to `out`, up to `k` in all, in at most `draws` draws: those
    /// matching `pred`, not `except` and not already in `out`.
    fn sample_members(
        &mut self,
        out: &mut Vec<NodeName>,
        k: usize,
        draws: usize,
        pred: &impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) {
        if self.members.is_empty() {
            return;
        }
        for _ in 0..draws {
            if out.len() >= k {
                return;
            }
            let e = self
                .members
                .at(self.rng.random_range(0..self.members.len()));
            let name = &e.member.name;
            if Some(name) != except && !out.contains(name) && pred(e) {
                out.push(name.clone());
            }
        }
    }

    /// Up to `k` distinct members matching `pred`, `except` excluded, chosen at random.
    pub(super) fn random_members(
        &mut self,
        k: usize,
        pred: impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) -> Vec<NodeName> {
        let mut out: Vec<NodeName> = Vec::with_capacity(k);
        self.fill_random(&mut out, k, &pred, except);
        out
    }

    /// Tops `out` up to `k` distinct members matching `pred`, chosen at random among those
    /// not `except` and not already in it.
    pub(super) fn fill_random(
        &mut self,
        out: &mut Vec<NodeName>,
        k: usize,
        pred: &impl Fn(&Entry) -> bool,
        except: Option<&NodeName>,
    ) {
        if out.len() >= k || self.members.is_empty() {
            return;
        }
        // Sampling with rejection is O(k) when most members qualify; fall back to a scan.
        let draws = 3 * (k - out.len()) + 8;
        self.sample_members(out, k, draws, pred, except);
        if out.len() == k {
            return;
        }
        let ok = |name: &NodeName| Some(name) != except && !out.contains(name);
        let mut rest: Vec<&NodeName> = self
            .members
            .by_position()
            .filter(|e| ok(&e.member.name) && pred(e))
            .map(|e| &e.member.name)
            .collect();
        rest.shuffle(&mut self.rng);
        let missing = k - out.len();
        let rest: Vec<NodeName> = rest.into_iter().take(missing).cloned().collect();
        out.extend(rest);
    }
}

/// Members looked at to find `k` with a connection: bounded work per round, even in a
/// cluster of thousands where few are connected.
pub(super) fn walk_max(k: usize) -> usize {
    8 * k + 32
}
