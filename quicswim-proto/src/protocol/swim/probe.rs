//! Probing: one member per protocol period, a Ping and its Ack, the stream fallback, PingReqs
//! through other members and their Nacks, and the order members are probed in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use tracing::debug;

use super::super::codec::{encode_stream, Message, StreamMessage};
use super::super::config::Config;
use super::super::member::{Incarnation, NodeName, State};
use super::super::timer::{Timer, TimerKey};
use super::{Destination, Swim, Transmit, TransmitKind};

#[derive(Debug)]
pub(super) struct Probe {
    seq: u32,
    target: NodeName,
    acked: bool,
    /// When the direct Ping went out.
    sent: Instant,
    /// When the PingReqs and the stream Ping went out, once the direct Ping timed out.
    indirect_sent: Option<Instant>,
    /// The direct Ping's timeout, cancelled by the Ack so it does not wake the node for
    /// nothing.
    timeout: TimerKey,
    /// The helpers sent a PingReq for this probe and not heard from since: only their
    /// Nacks count, each once. A Nack from anyone else (a member we did not ask, or one
    /// sent twice) would otherwise let a peer cancel the health penalty of Nacks we miss.
    unnacked: Vec<NodeName>,
    nacks: u32,
    expected_nacks: u32,
}

#[derive(Debug)]
pub(super) struct Relay {
    requester: Destination,
    their_seq: u32,
}

/// Most PingReqs served at once; beyond it new ones are ignored (bounded work per peer).
pub(super) const RELAYS_MAX: usize = 1024;

impl Swim {
    pub(super) fn probe_next(&mut self, now: Instant) {
        if let Some(p) = self.probe.take() {
            self.finish_probe(now, p);
        }
        if self.awareness.try_return(now) {
            // Back from holding itself out, stable for the hold-down: override whatever
            // was said about this node meanwhile (it let suspicions and Dead stand).
            self.me.incarnation = self.me.incarnation.next();
            self.stats.refutations += 1;
            debug!(member = %self.me.name, incarnation = self.me.incarnation.0, "back after holding out");
            self.broadcast_self();
        }
        let period = self.awareness.scale(self.config.probe_interval);
        self.timers.insert(now + period, Timer::ProbeNextMember);
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let (addr, suspected) = {
            let m = &self.members[&target].member;
            (m.addr, (m.state == State::Suspect).then_some(m.incarnation))
        };
        let seq = self.next_seq();
        self.stats.probes_sent += 1;
        let to = Destination {
            addr,
            name: Some(target.clone()),
        };
        self.send_datagram(
            to,
            Message::Ping {
                seq,
                target: target.clone(),
                suspected,
            },
        );
        let timeout = self.awareness.scale(self.config.probe_timeout);
        let timeout = self
            .timers
            .insert(now + timeout, Timer::ProbeTimeout { seq });
        self.probe = Some(Probe {
            seq,
            target,
            acked: false,
            sent: now,
            indirect_sent: None,
            timeout,
            unnacked: Vec::new(),
            nacks: 0,
            expected_nacks: 0,
        });
        self.prepare_next_probe();
    }

    /// Opens the way to the member probed next, one period ahead, when no connection to it
    /// is up: a Gossip datagram (carrying whatever is queued) makes the runtime dial it now.
    ///
    /// A Ping to a member without a connection waits behind a TLS handshake. On a loaded
    /// machine (many nodes joining at once) a handshake can take most of a probe period, so
    /// such Pings, their stream retry and the helpers' Pings would all miss the period and
    /// live members would be suspected by the dozen. The probe itself is judged as any
    /// other; only its connection is made earlier, so a crashed member is suspected no
    /// later.
    pub(super) fn prepare_next_probe(&mut self) {
        /// Entries looked at past dead and left ones, to bound the work.
        const LOOK_AHEAD: usize = 4;
        if self.probe_index >= self.probe_list.len() {
            // The pass is over: draw the next one now, so its first member is known.
            self.reshuffle_probe_list();
        }
        let next = self.probe_list[self.probe_index..]
            .iter()
            .take(LOOK_AHEAD)
            .map(|m| &m.name)
            .find(|name| {
                self.members
                    .get(name)
                    .is_some_and(|e| e.member.state.is_active())
            })
            .cloned();
        let Some(name) = next else {
            return;
        };
        if self.members[&name].connected {
            return;
        }
        let to = self.destination_of(&name);
        self.send_datagram(to, Message::Gossip);
    }

    /// Every other probe goes to the [`watched`](Self::watched) member, the rest go round
    /// this pass's random order.
    ///
    /// With random orders alone, the time until some member first probes a crashed one is
    /// exponential with a mean of one probe interval whatever the cluster's size: past 2.4
    /// intervals in 9% of crashes. Each member watched by the one before it in a shared
    /// order is probed at least every two intervals, so detection is bounded by two
    /// intervals plus the suspicion timeout; random probing goes on at half the rate,
    /// keeping the pass's every-member guarantee and indirect paths to any member.
    fn next_probe_target(&mut self) -> Option<NodeName> {
        if let Some(name) = self.probe_soon.take() {
            let suspect = self.members.get(&name).map(|e| e.member.state) == Some(State::Suspect);
            if suspect {
                return Some(name);
            }
        }
        self.watch_turn = !self.watch_turn;
        if self.watch_turn {
            if let Some(name) = self.watched() {
                return Some(name);
            }
        }
        for _ in 0..2 {
            while self.probe_index < self.probe_list.len() {
                let name = &self.probe_list[self.probe_index].name;
                self.probe_index += 1;
                if self
                    .members
                    .get(name)
                    .is_some_and(|e| e.member.state.is_active())
                {
                    return Some(name.clone());
                }
            }
            self.reshuffle_probe_list();
        }
        None
    }

    /// The active member after this node in the order of [`watch_key`]: every node computes
    /// the same order, so each member has one watcher (two for a moment while views differ).
    fn watched(&mut self) -> Option<NodeName> {
        if let Some(cached) = &self.watched_cache {
            return cached.clone();
        }
        let mine = watch_key(&self.me.name);
        let found = self
            .members
            .values()
            .filter(|e| e.member.state.is_active())
            .map(|e| {
                let distance = watch_key(&e.member.name).wrapping_sub(mine).wrapping_sub(1);
                (distance, &e.member.name)
            })
            .min()
            .map(|(_, name)| name.clone());
        self.watched_cache = Some(found.clone());
        found
    }

    /// One pass done: a new pass in a new random order (time-bounded completeness).
    fn reshuffle_probe_list(&mut self) {
        self.probe_list = self
            .members
            .values()
            .filter(|e| e.member.state.is_active())
            .map(|e| Arc::clone(&e.member))
            .collect();
        self.probe_list.shuffle(&mut self.rng);
        self.probe_index = 0;
    }

    /// New and returning members enter the current pass at a random place (memberlist), but
    /// not ahead of the member probed next, whose connection is being prepared (see
    /// [`prepare_next_probe`](Self::prepare_next_probe)): while a hundred members join, one
    /// would nearly always take its place.
    pub(super) fn add_to_probe_list(&mut self, name: NodeName) {
        let Some(member) = self.members.get(&name).map(|e| Arc::clone(&e.member)) else {
            return;
        };
        let lo = (self.probe_index + 1).min(self.probe_list.len());
        let at = self.rng.random_range(lo..=self.probe_list.len());
        self.probe_list.insert(at, member);
    }

    pub(super) fn probe_indirectly(&mut self, now: Instant, seq: u32) {
        let Some(p) = self.probe.as_ref().filter(|p| p.seq == seq && !p.acked) else {
            return;
        };
        let target = p.target.clone();
        let Some(target_addr) = self.members.get(&target).map(|e| e.member.addr) else {
            return;
        };
        let suspected = self
            .members
            .get(&target)
            .filter(|e| e.member.state == State::Suspect)
            .map(|e| e.member.incarnation);
        // memberlist's TCP fallback ping: the same probe on a stream, which QUIC retransmits.
        // Under random datagram loss the Ping or its Ack is lost about 2p of the time and all
        // the indirect paths (four datagrams each) far less often but not never; at 10% loss
        // a large cluster still raises suspicions every second, and now and then a member
        // misses every copy of the refutation and declares a live node Dead. With the stream
        // a live, reachable member is only suspected when streams fail too.
        self.stats.stream_probes_sent += 1;
        let ping = StreamMessage::Ping {
            seq,
            target: target.clone(),
            suspected,
        };
        self.transmits.push_back(Transmit {
            to: Destination {
                addr: target_addr,
                name: Some(target.clone()),
            },
            kind: TransmitKind::Request,
            payload: encode_stream(&ping),
        });
        let helpers = self.random_members_connected_first(
            self.config.indirect_checks,
            |e| e.member.state == State::Alive,
            Some(&target),
        );
        for name in &helpers {
            let to = self.destination_of(name);
            self.stats.indirect_probes_sent += 1;
            let msg = Message::PingReq {
                seq,
                target: target.clone(),
                target_addr,
            };
            self.send_datagram(to, msg);
        }
        if let Some(p) = self.probe.as_mut() {
            // At most `indirect_checks` (16): a list is as quick as a set.
            p.expected_nacks = u32::try_from(helpers.len()).unwrap_or(u32::MAX);
            p.unnacked = helpers;
            p.indirect_sent = Some(now);
        }
    }

    fn finish_probe(&mut self, now: Instant, p: Probe) {
        if p.acked {
            return;
        }
        self.stats.probes_failed += 1;
        // Lifeguard: Nacks we were owed and did not get say the fault may be ours.
        let delta = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks)
        } else {
            1
        };
        self.awareness.apply(now, delta as i32);
        if self.awareness.is_out() {
            return; // see `awareness.rs`: a node holding itself out accuses nobody
        }
        if p.expected_nacks > 0 && p.nacks == 0 {
            // Helpers were asked and not one Nack came back: they are alive (we pick Alive
            // ones) and owe one whatever the target's state, so this node is more likely
            // the one cut off than the target. A node whose ingress has just gone deaf
            // would otherwise accuse every member it probes, and every accusation is a
            // state change at every healthy member. A real crash is still accused by this
            // node's next probe with one Nack home, and by every other prober.
            return;
        }
        let Some(e) = self.members.get(&p.target) else {
            return;
        };
        // A member already suspect is accused again: our failed probe is an independent
        // confirmation (Lifeguard), which shortens the suspicion towards its minimum.
        if !e.member.state.is_active() {
            return;
        }
        let incarnation = e.member.incarnation;
        self.stats.suspicions_raised += 1;
        let me = self.me.name.clone();
        self.on_suspect(now, p.target, incarnation, me);
    }

    /// An Ack for `seq`: by datagram from `from`, or on a stream (`None`) from the target.
    pub(super) fn on_ack(&mut self, now: Instant, seq: u32, from: Option<&NodeName>) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            if !p.acked {
                p.acked = true;
                // Only a datagram Ack (direct or relayed) speaks for this node's health. The
                // stream fallback keeps a target from being accused under loss, but a probe
                // that needed it says our datagrams are being lost: a node losing 80 % of
                // what it receives still got every other probe through on a stream, and
                // with each counted as healthy its score never stayed at the maximum.
                if from.is_some() {
                    self.awareness.apply(now, -1);
                }
                self.timers.cancel(p.timeout);
                // The target's own datagram Ack times the direct path even when it comes
                // late; any other first Ack times the indirect phase from its start.
                if from == Some(&p.target) {
                    self.stats
                        .probe_rtt
                        .observe(now.saturating_duration_since(p.sent));
                } else if let Some(at) = p.indirect_sent {
                    self.stats
                        .indirect_probe_rtt
                        .observe(now.saturating_duration_since(at));
                }
            }
            return;
        }
        if let Some(relay) = self.relays.remove(&seq) {
            self.send_datagram(
                relay.requester,
                Message::Ack {
                    seq: relay.their_seq,
                },
            );
        }
    }

    /// A PingReq: probe `target` for `requester`, relaying its Ack, or a Nack when none
    /// comes within the probe timeout (Lifeguard: the requester learns that we, at least,
    /// are alive).
    pub(super) fn on_ping_req(
        &mut self,
        now: Instant,
        requester: Destination,
        seq: u32,
        target: NodeName,
        target_addr: SocketAddr,
    ) {
        if target == self.me.name || self.relays.len() >= RELAYS_MAX {
            return;
        }
        let our_seq = self.next_seq();
        self.relays.insert(
            our_seq,
            Relay {
                requester,
                their_seq: seq,
            },
        );
        let to = Destination {
            addr: target_addr,
            name: Some(target.clone()),
        };
        self.send_datagram(
            to,
            Message::Ping {
                seq: our_seq,
                target,
                suspected: None,
            },
        );
        // The Nack goes at 80 % of the probe timeout (Lifeguard), not at all of it: the
        // requester sent its PingReqs a probe timeout into its period and closes the probe
        // at the period's end, half a period later on the lan preset, so a Nack sent a full
        // timeout after the PingReq arrives just after the probe is closed, is counted as
        // missing, and blames the requester's own health for a target that is simply down.
        self.timers.insert(
            now + self.config.probe_timeout * 4 / 5,
            Timer::IndirectProbeTimeout { seq: our_seq },
        );
    }

    /// A relayed Ping got no Ack in time: the requester gets a Nack.
    pub(super) fn relay_timed_out(&mut self, seq: u32) {
        if let Some(relay) = self.relays.remove(&seq) {
            self.send_datagram(
                relay.requester,
                Message::Nack {
                    seq: relay.their_seq,
                },
            );
        }
    }

    /// A helper's Nack for our probe: counted, since Nacks owed and missing say the fault
    /// may be ours (see [`finish_probe`](Self::finish_probe)). Only from a helper asked for
    /// this probe, once each.
    pub(super) fn on_nack(&mut self, from: &NodeName, seq: u32) {
        let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) else {
            return;
        };
        if let Some(i) = p.unnacked.iter().position(|h| h == from) {
            p.unnacked.swap_remove(i);
            p.nacks = p.nacks.saturating_add(1);
        }
    }

    /// The last call before `name` is declared Dead (see `suspect_timed_out`): a Ping
    /// naming the suspicion, answered by an Ack that carries the suspect's refutation. No
    /// probe waits for that Ack; the Alive it carries is what counts.
    pub(super) fn ping_suspect(&mut self, name: &NodeName, incarnation: Incarnation) {
        let seq = self.next_seq();
        let to = self.destination_of(name);
        let target = name.clone();
        let suspected = Some(incarnation);
        self.send_datagram(
            to,
            Message::Ping {
                seq,
                target,
                suspected,
            },
        );
    }

    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }
}

/// How long one node takes to probe every member of an `n`-node cluster once: every other
/// probe goes round the random pass, so `2 · (n - 1)` probe intervals (at the healthy rate).
pub fn probe_pass(n: usize, config: &Config) -> Duration {
    let probes = u32::try_from(n.saturating_sub(1).saturating_mul(2)).unwrap_or(u32::MAX);
    config.probe_interval.saturating_mul(probes)
}

/// A member's place in the order members watch each other in: a stable hash of its name, the
/// same on every node and every build.
fn watch_key(name: &NodeName) -> u64 {
    crate::hash::xxh64(name.as_str().as_bytes(), 0)
}
