//! Probing: one member per protocol period, a Ping and its Ack, the stream fallback, PingReqs
//! through other members and their Nacks, and the order members are probed in.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use tracing::{debug, trace};

use super::super::codec::{encode_stream, Message, StreamMessage};
use super::super::config::Config;
use super::super::member::{Incarnation, NodeName, State};
use super::super::timer::{Timer, TimerKey};
use super::{Destination, ForgedKind, Swim, Transmit, TransmitKind};

#[derive(Debug)]
pub(super) struct Probe {
    /// Drawn from the core's cryptographic generator (see [`Swim::next_seq`]).
    seq: u64,
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
    /// Every helper sent a PingReq for this probe: besides the target, the only members
    /// whose Ack for it counts (a relayed Ack), and only by datagram.
    asked: Vec<NodeName>,
    nacks: u32,
    expected_nacks: u32,
}

#[derive(Debug)]
pub(super) struct Relay {
    requester: Destination,
    their_seq: u64,
    /// The member pinged for the requester: the only one whose Ack is relayed.
    target: NodeName,
}

/// Most PingReqs served at once; beyond it new ones are ignored (bounded work per peer).
pub(super) const RELAYS_MAX: usize = 1024;

/// Finished probes remembered for their late answers: the Ack or Nack of the probe before
/// can still be on its way when the next one starts.
const ENDED_PROBES_KEPT: usize = 2;

/// Relays remembered once over, for the Acks still on their way: a relayed Ping can wait
/// behind a handshake to its target and be answered after our Nack went, and a datagram
/// can arrive twice.
const ENDED_RELAYS_KEPT: usize = 32;

/// Probes and relays that ended lately, so that an Ack or Nack still on its way for one,
/// from a member that had a part in it, is ignored as late rather than refused as forged.
#[derive(Debug, Default)]
pub(super) struct Ended {
    /// (seq, target, helpers asked), newest last.
    probes: VecDeque<(u64, NodeName, Vec<NodeName>)>,
    /// (our seq, target), newest last.
    relays: VecDeque<(u64, NodeName)>,
}

impl Ended {
    fn probe(&mut self, p: &Probe) {
        if self.probes.len() >= ENDED_PROBES_KEPT {
            self.probes.pop_front();
        }
        self.probes
            .push_back((p.seq, p.target.clone(), p.asked.clone()));
    }

    /// A last-call Ping to a suspect (see `ping_suspect`): its Ack is expected, and ignored.
    fn last_call(&mut self, seq: u64, target: NodeName) {
        if self.probes.len() >= ENDED_PROBES_KEPT {
            self.probes.pop_front();
        }
        self.probes.push_back((seq, target, Vec::new()));
    }

    fn relay(&mut self, seq: u64, target: NodeName) {
        if self.relays.len() >= ENDED_RELAYS_KEPT {
            self.relays.pop_front();
        }
        self.relays.push_back((seq, target));
    }

    /// Whether an Ack for `seq` from `from` answers a probe or relay that ended lately,
    /// from a member that had a part in it.
    fn late_ack(&self, seq: u64, from: &NodeName, by_stream: bool) -> bool {
        let probe = self.probes.iter().any(|(s, target, asked)| {
            *s == seq && (from == target || (!by_stream && asked.contains(from)))
        });
        let relay = !by_stream
            && self
                .relays
                .iter()
                .any(|(s, target)| *s == seq && from == target);
        probe || relay
    }

    /// Whether a Nack for `seq` from `from` answers a probe that ended lately, from a
    /// helper asked for it.
    fn late_nack(&self, seq: u64, from: &NodeName) -> bool {
        self.probes
            .iter()
            .any(|(s, _, asked)| *s == seq && asked.contains(from))
    }

    /// Entries held, for the bounds check.
    pub(super) fn len(&self) -> usize {
        self.probes.len() + self.relays.len()
    }
}

/// Most entries [`Ended`] holds.
pub(super) const ENDED_MAX: usize = ENDED_PROBES_KEPT + ENDED_RELAYS_KEPT;

impl Swim {
    pub(super) fn probe_next(&mut self, now: Instant) {
        if let Some(p) = self.probe.take() {
            self.ended.probe(&p);
            self.finish_probe(now, p);
        }
        self.settle_unanswered(now);
        if self.awareness.try_return(now) {
            // Back from holding itself out, stable for the hold-down: override whatever
            // was said about this node meanwhile (it let suspicions and Dead stand). Never
            // beyond what peers accept (a refutation may have taken it there already).
            if self.me.incarnation.0 <= super::super::bounded::SELF_CLAIM_MAX {
                self.me.incarnation = self.me.incarnation.next();
            }
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
            asked: Vec::new(),
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

    pub(super) fn probe_indirectly(&mut self, now: Instant, seq: u64) {
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
            p.asked.clone_from(&helpers);
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
        self.suspect_by_me(now, &p.target, incarnation);
    }

    /// An Ack for `seq` from `from` (the name of the connection it came on), by datagram or on
    /// a stream this node opened (`by_stream`).
    ///
    /// It counts only when it answers the probe it belongs to: from the probed member itself
    /// (either way), or by datagram from a helper sent a PingReq for this very probe (a
    /// relayed Ack). An Ack for a relay of ours counts only by datagram from the member we
    /// pinged. Anything else (a third member answering for a crashed one, a guessed
    /// sequence number) is refused and counted, and changes nothing; an Ack that is merely
    /// late for a probe or relay that ended lately is ignored.
    pub(super) fn on_ack(&mut self, now: Instant, seq: u64, from: &NodeName, by_stream: bool) {
        if self.me.state == State::Left {
            return; // the probe went with the leave; what is still on its way is late
        }
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            let direct = *from == p.target;
            if !direct && (by_stream || !p.asked.contains(from)) {
                self.refuse_forged(now, from, ForgedKind::Ack);
                return;
            }
            if !p.acked {
                p.acked = true;
                // Only a datagram Ack (direct or relayed) speaks for this node's health. The
                // stream fallback keeps a target from being accused under loss, but a probe
                // that needed it says our datagrams are being lost: a node losing 80 % of
                // what it receives still got every other probe through on a stream, and
                // with each counted as healthy its score never stayed at the maximum.
                if !by_stream {
                    self.awareness.apply(now, -1);
                }
                self.timers.cancel(p.timeout);
                // The target's own datagram Ack times the direct path even when it comes
                // late; any other first Ack times the indirect phase from its start.
                if direct && !by_stream {
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
        if let Some(relay) = self.relays.get(&seq) {
            if by_stream || relay.target != *from {
                self.refuse_forged(now, from, ForgedKind::Ack);
                return;
            }
            if let Some(relay) = self.relays.remove(&seq) {
                self.ended.relay(seq, relay.target);
                self.send_datagram(
                    relay.requester,
                    Message::Ack {
                        seq: relay.their_seq,
                    },
                );
            }
            return;
        }
        if self.ended.late_ack(seq, from, by_stream) {
            trace!(peer = %from, seq, "late ack");
            return;
        }
        self.refuse_forged(now, from, ForgedKind::Ack);
    }

    /// A PingReq from `from`: probe `target` for it, relaying its Ack, or a Nack when none
    /// comes within the probe timeout (Lifeguard: the requester learns that we, at least,
    /// are alive).
    ///
    /// Only a member held here as Alive or Suspect, at the address held for it: a PingReq
    /// is otherwise a way to make this node dial wherever the requester likes. One that
    /// names a member not held here, or another address than the one held, is refused and
    /// counted as forged; one for a member held Dead or Left is refused and counted apart
    /// (honest members send those while views differ). No Ping goes out; the requester gets
    /// a Nack at once. A Nack says only what is true (we are alive, and
    /// no Ack of that target reached us), and an honest requester whose view differs from
    /// ours (a member we have not heard of yet or hold Dead already, an address that just
    /// changed) would otherwise count the missing Nack against its own health. It is one
    /// small datagram on the requester's own connection: nothing is amplified or redirected.
    pub(super) fn on_ping_req(
        &mut self,
        now: Instant,
        from: &NodeName,
        requester: Destination,
        seq: u64,
        target: NodeName,
        target_addr: SocketAddr,
    ) {
        if target == self.me.name || self.relays.len() >= RELAYS_MAX {
            return;
        }
        let held = self
            .members
            .get(&target)
            .map(|e| (e.member.addr == target_addr, e.member.state.is_active()));
        match held {
            None | Some((false, _)) => {
                self.refuse_forged(now, from, ForgedKind::PingReq);
                self.send_datagram(requester, Message::Nack { seq });
                return;
            }
            Some((true, false)) => {
                // Views differ for a while after a crash or across a partition: honest
                // requesters send these, so they are refused without being called forged.
                self.stats.ping_reqs_for_inactive += 1;
                trace!(peer = %from, target = %target, "ping-req for a member not active here");
                self.send_datagram(requester, Message::Nack { seq });
                return;
            }
            Some((true, true)) => {}
        }
        let our_seq = self.next_seq();
        self.relays.insert(
            our_seq,
            Relay {
                requester,
                their_seq: seq,
                target: target.clone(),
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
    pub(super) fn relay_timed_out(&mut self, seq: u64) {
        if let Some(relay) = self.relays.remove(&seq) {
            self.ended.relay(seq, relay.target);
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
    /// this probe, once each (a second copy is ignored); one from anyone else, or for no
    /// probe of ours, is refused and counted (a late one for the probe before is ignored).
    pub(super) fn on_nack(&mut self, now: Instant, from: &NodeName, seq: u64) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            if let Some(i) = p.unnacked.iter().position(|h| h == from) {
                p.unnacked.swap_remove(i);
                p.nacks = p.nacks.saturating_add(1);
                return;
            }
            if p.asked.contains(from) {
                trace!(peer = %from, seq, "nack again");
                return;
            }
        } else if self.ended.late_nack(seq, from) {
            trace!(peer = %from, seq, "late nack");
            return;
        }
        self.refuse_forged(now, from, ForgedKind::Nack);
    }

    /// The last call before `name` is declared Dead (see `suspect_timed_out`): a Ping
    /// naming the suspicion, answered by an Ack that carries the suspect's refutation. No
    /// probe waits for that Ack; the Alive it carries is what counts, and the Ack itself is
    /// taken as a late one (ignored, not refused as forged).
    pub(super) fn ping_suspect(&mut self, name: &NodeName, incarnation: Incarnation) {
        let seq = self.next_seq();
        self.ended.last_call(seq, name.clone());
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

    /// A sequence number for a probe or a relayed Ping, from the core's cryptographic
    /// generator: a member that sees some of them (the ones we send it) learns nothing of
    /// the others, so it cannot answer a probe it was not part of by guessing.
    fn next_seq(&mut self) -> u64 {
        self.seq_rng.random()
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
