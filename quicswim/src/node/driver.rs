//! The driver task: it owns the protocol core and the transport, feeds the core every input
//! (datagrams, stream requests and replies, connection changes, timeouts, commands from the
//! handles), and hands its outputs on: transmits to the transport, events to subscribers and
//! the ring task.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tracing::{debug, info, warn, Instrument};

use crate::protocol::{
    Destination, Event, LeaveStatus, Member, NodeName, PeerError, State, Swim, Transmit,
    TransmitKind, UserEvent,
};
use crate::ring::weight_from_meta;
use crate::tls::CertKeyring;
use crate::transport::{self, Inbox, Incoming, Peer, Transport};

use super::join::{JoinNews, Joiner};
use super::ready::ReadyFacts;
use super::ring::RingFeed;
use super::{Command, KvItem, LeaveOutcome, NodeMetrics};

/// Stream requests in flight at once; beyond it, new ones are dropped (the core retries).
pub(super) const REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// User events kept for [`Node::recent_events`](super::Node::recent_events).
const RECENT_EVENTS_MAX: usize = 256;
/// How often the transport's datagram size is read again between connection changes. The
/// smallest size over the pool changes when a connection comes or goes (read again at once)
/// and when MTU discovery raises a path's size (read within this period). Reading it locks
/// every pooled connection: too much work for every wake-up.
const DATAGRAM_SIZE_REFRESH: Duration = Duration::from_secs(1);

/// Membership inputs (due timers, queued datagrams) the driver takes in a row, ahead of
/// everything else, before one other input gets its turn (see [`Priority`]). A probe
/// interval brings a node a handful of datagrams; 32 in a row drains any honest backlog,
/// while a member flooding datagrams still cannot starve stream work.
const MEMBERSHIP_IN_A_ROW_MAX: usize = 32;

/// What the driver takes next: membership before data. A due timer (a probe's deadline,
/// a suspicion's end) and then a queued datagram (probes, Acks, gossip) go before stream
/// work (key/value rounds, full-state exchanges), commands and connection news, so that
/// data load delays no Ack and no deadline: each such input is one bounded piece of work
/// (a stream message is at most `kv_sync_bytes_max`), and all membership inputs ready
/// are handled between any two of them. After [`MEMBERSHIP_IN_A_ROW_MAX`] membership
/// inputs in a row, one other input is taken, whatever is queued.
#[derive(Debug, Default)]
struct Priority {
    in_a_row: usize,
}

/// One of the driver's turns, as [`Priority::next`] chooses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Timer,
    Datagram,
    /// Wait for any input, in no set order.
    Any,
}

impl Priority {
    /// The next turn, given whether a timer is due and a datagram is queued.
    fn next(&mut self, timer_due: bool, datagram_queued: bool) -> Turn {
        let turn = if self.in_a_row >= MEMBERSHIP_IN_A_ROW_MAX {
            Turn::Any
        } else if timer_due {
            Turn::Timer
        } else if datagram_queued {
            Turn::Datagram
        } else {
            Turn::Any
        };
        self.in_a_row = match turn {
            Turn::Any => 0,
            Turn::Timer | Turn::Datagram => self.in_a_row + 1,
        };
        turn
    }
}

/// The task that owns the core and the transport (see the [module docs](self)).
pub(super) struct Driver {
    /// Where membership changes go to move the ring.
    ring: RingFeed,
    /// The core's count of dropped events when last looked at: when it grows, the ring
    /// missed changes and is rebuilt from the member table.
    events_dropped: u64,
    recent: VecDeque<UserEvent>,
    core: Swim,
    transport: Transport,
    events: broadcast::Sender<Event>,
    replies: mpsc::Sender<(NodeName, Vec<u8>)>,
    requests: Arc<Semaphore>,
    /// When to read the transport's datagram size again (see [`DATAGRAM_SIZE_REFRESH`]).
    datagram_size_due: Instant,
    /// The cluster size the transport's unused-connection time was last set for.
    kept_for_size: usize,
    /// Seeds resolved for each join attempt, and the reports on them.
    joiner: Joiner,
    /// Where revocation lists the core took go to reach the handshakes.
    revocations: RevocationFeed,
}

/// What a revocation list the core took needs, to reach the transport: the keyring that
/// holds the lists, and the lock [`Node::reload_identity`](super::Node::reload_identity)
/// holds while it changes the identity.
pub(super) struct RevocationFeed {
    pub(super) keyring: Arc<CertKeyring>,
    pub(super) lock: Arc<tokio::sync::Mutex<()>>,
}

impl Driver {
    /// A driver for `core` over `transport`; [`run`](Self::run) starts it.
    pub(super) fn new(
        core: Swim,
        transport: Transport,
        events: broadcast::Sender<Event>,
        replies: mpsc::Sender<(NodeName, Vec<u8>)>,
        ring: RingFeed,
        joiner: Joiner,
        revocations: RevocationFeed,
    ) -> Self {
        Driver {
            ring,
            events_dropped: 0,
            recent: VecDeque::new(),
            core,
            transport,
            events,
            replies,
            requests: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
            datagram_size_due: Instant::now(),
            kept_for_size: 0,
            joiner,
            revocations,
        }
    }

    /// Runs until a leave completes (its outcome) or every handle is dropped (`None`).
    pub(super) async fn run(
        mut self,
        mut incoming: Inbox,
        mut commands: mpsc::Receiver<Command>,
        mut reply_rx: mpsc::Receiver<(NodeName, Vec<u8>)>,
        mut join_news: mpsc::Receiver<JoinNews>,
    ) -> Option<LeaveOutcome> {
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut priority = Priority::default();
        loop {
            self.flush();
            let now = Instant::now();
            let timer_due = self.core.poll_timeout().is_some_and(|at| at <= now);
            match priority.next(timer_due, incoming.has_datagram()) {
                Turn::Timer => {
                    self.core.handle_timeout(now);
                    continue;
                }
                Turn::Datagram => {
                    if let Some(input) = incoming.try_datagram() {
                        self.on_incoming(input);
                    }
                    continue;
                }
                Turn::Any => {}
            }
            let deadline = self
                .core
                .poll_timeout()
                .map_or_else(far, tokio::time::Instant::from_std);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                _ = &mut sleep => self.core.handle_timeout(Instant::now()),
                Some(input) = incoming.recv() => self.on_incoming(input),
                Some((from, bytes)) = reply_rx.recv() => {
                    let was_seeking = self.core.is_seeking_join();
                    if let Err(e) = self.core.handle_stream_reply(Instant::now(), &from, &bytes) {
                        self.log_peer_error(&e);
                    }
                    if was_seeking && !self.core.is_seeking_join() {
                        self.joiner.joined_through(&self.core, &from, "seed");
                    }
                }
                Some(news) = join_news.recv() => self.joiner.on_news(&mut self.core, news),
                command = commands.recv() => match command {
                    Some(Command::Leave(wait, done)) => {
                        let outcome = self
                            .leave(wait, done, &mut incoming, &mut commands, &mut reply_rx)
                            .await;
                        info!(node = %self.core.name(), ?outcome, "left the cluster");
                        return Some(outcome);
                    }
                    Some(command) => self.on_command(command),
                    None => return None, // every handle dropped: stop like a crash
                },
            }
        }
    }

    /// Leaves, then goes on feeding the core (replies, requests, timeouts) until a member
    /// confirms the leave, there is nobody to tell, or `wait` passes. Commands are still
    /// answered meanwhile; every caller of leave, `first` included, gets the outcome.
    async fn leave(
        &mut self,
        wait: Duration,
        first: oneshot::Sender<LeaveOutcome>,
        incoming: &mut Inbox,
        commands: &mut mpsc::Receiver<Command>,
        reply_rx: &mut mpsc::Receiver<(NodeName, Vec<u8>)>,
    ) -> LeaveOutcome {
        self.core.leave(Instant::now());
        self.ring.push(self.core.name(), State::Left, 0);
        let mut waiting = vec![first];
        let give_up = super::deadline_after(tokio::time::Instant::now(), wait);
        let outcome = loop {
            self.flush();
            match self.core.leave_status() {
                LeaveStatus::Confirmed { by } => break LeaveOutcome::Confirmed { by },
                LeaveStatus::Alone => break LeaveOutcome::Alone,
                LeaveStatus::Member | LeaveStatus::Unconfirmed => {}
            }
            let timer = self.core.poll_timeout().map_or(give_up, |at| {
                tokio::time::Instant::from_std(at).min(give_up)
            });
            tokio::select! {
                _ = tokio::time::sleep_until(give_up) => break LeaveOutcome::TimedOut,
                _ = tokio::time::sleep_until(timer) => self.core.handle_timeout(Instant::now()),
                Some(input) = incoming.recv() => self.on_incoming(input),
                Some((from, bytes)) = reply_rx.recv() => {
                    if let Err(e) = self.core.handle_stream_reply(Instant::now(), &from, &bytes) {
                        self.log_peer_error(&e);
                    }
                }
                Some(command) = commands.recv() => match command {
                    Command::Leave(_, done) => waiting.push(done),
                    command => self.on_command(command),
                },
            }
        };
        for done in waiting {
            let _ = done.send(outcome.clone());
        }
        outcome
    }

    fn on_incoming(&mut self, input: Incoming) {
        let now = Instant::now();
        match input {
            Incoming::Datagram { from, addr, bytes } => {
                if let Err(e) = self.core.handle_datagram(now, &from, addr, &bytes) {
                    self.log_peer_error(&e);
                }
            }
            Incoming::Request {
                from, bytes, reply, ..
            } => {
                // Answered whether joined or not: two nodes that each found only themselves
                // become one cluster when one asks the other.
                let was_seeking = self.core.is_seeking_join();
                match self.core.handle_stream_request(now, &from, &bytes) {
                    Ok(Some(answer)) => {
                        let _ = reply.send(answer);
                    }
                    Ok(None) => {} // nothing to answer (a Ping for someone else)
                    Err(e) => self.log_peer_error(&e), // dropping `reply` resets the stream
                }
                if was_seeking && !self.core.is_seeking_join() {
                    self.joiner.joined_through(&self.core, &from, "request");
                }
            }
            Incoming::PeerUp {
                name,
                addr,
                certificate,
            } => {
                self.datagram_size_due = now;
                self.core.handle_peer_certificate(now, &name, certificate);
                self.core.handle_peer_up(now, &name);
                debug!(peer = %name, %addr, "connection up");
            }
            Incoming::PeerDown { name, reason } => {
                self.datagram_size_due = now;
                self.core.handle_peer_down(&name);
                debug!(peer = %name, %reason, "connection down");
            }
            // The transport has logged it already, under its rate limit.
            Incoming::Refused { addr, reason } => debug!(%addr, %reason, "refused peer"),
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Members(tx) => {
                let mut members: Vec<Member> = self.core.members().cloned().collect();
                members.sort_by(|a, b| a.name.cmp(&b.name));
                let _ = tx.send(members);
            }
            Command::Metrics(tx) => {
                let mut by_state = [0usize; 4];
                for (i, s) in [State::Alive, State::Suspect, State::Dead, State::Left]
                    .into_iter()
                    .enumerate()
                {
                    by_state[i] =
                        self.core.count(s) + usize::from(self.core.local_member().state == s);
                }
                let _ = tx.send(NodeMetrics {
                    name: self.core.name().clone(),
                    incarnation: self.core.local_member().incarnation.0,
                    members: by_state,
                    health_score: self.core.health_score(),
                    pending_broadcasts: self.core.pending_broadcasts(),
                    kv_entries: self.core.kv_totals().0,
                    kv_bytes: self.core.kv_totals().1,
                    core: self.core.stats(),
                    transport: self.transport.stats(),
                });
            }
            Command::Set(key, value, tx) => {
                let _ = tx.send(self.core.set(Instant::now(), &key, value));
            }
            Command::Delete(key, tx) => {
                let _ = tx.send(self.core.delete(Instant::now(), &key));
            }
            Command::Get(owner, key, tx) => {
                let _ = tx.send(self.core.kv_get(&owner, &key).map(<[u8]>::to_vec));
            }
            Command::KvEntries(tx) => {
                let _ = tx.send(kv_items(self.core.kv_entries()));
            }
            Command::KvPage(after, limit, tx) => {
                let after = after.as_ref().map(|(owner, key)| (owner, key.as_str()));
                let _ = tx.send(kv_items(self.core.kv_page(after, limit)));
            }
            Command::Publish(name, payload, tx) => {
                let _ = tx.send(self.core.publish(Instant::now(), &name, payload));
            }
            Command::RecentEvents(tx) => {
                let _ = tx.send(self.recent.iter().cloned().collect());
            }
            Command::Restate(tx) => {
                let _ = tx.send(self.core.restate(Instant::now()));
            }
            Command::SetMeta(meta, tx) => {
                let result = self.core.set_meta(Instant::now(), meta);
                if result.is_ok() {
                    // The core raises no event about itself; its weight may have changed.
                    let me = self.core.local_member();
                    self.ring
                        .push(&me.name, me.state, weight_from_meta(&me.meta));
                }
                let _ = tx.send(result);
            }
            Command::Ready(tx) => {
                let _ = tx.send(ReadyFacts {
                    left: self.core.local_member().state == State::Left,
                    joined: self.core.is_joined(),
                    only_self: self.core.seeds_found_only_self(),
                    synced: self.core.is_synced(),
                    live_peers: self.core.count(State::Alive) + self.core.count(State::Suspect),
                });
            }
            Command::ForceLeave(name, tx) => {
                // A dead or left member is off the ring already: nothing to move.
                let _ = tx.send(self.core.force_leave(Instant::now(), &name));
            }
            Command::Revoke(der, tx) => {
                let _ = tx.send(self.core.revoke(Instant::now(), der));
            }
            Command::RevocationsTaken(lists, banned) => {
                self.core.revocations_taken(Instant::now(), lists, &banned);
            }
            Command::Leave(..) => unreachable!("handled by the loop"),
        }
    }

    /// Hands every pending transmit to the transport and publishes every pending event.
    fn flush(&mut self) {
        while let Some(attempt) = self.core.poll_join_attempt() {
            self.joiner.attempt_begins(&mut self.core, attempt);
        }
        self.joiner.publish(&self.core);
        let now = Instant::now();
        if now >= self.datagram_size_due {
            self.core
                .set_max_datagram_size(self.transport.max_datagram_size());
            self.datagram_size_due = now + DATAGRAM_SIZE_REFRESH;
        }
        let size = self.core.cluster_size();
        if size != self.kept_for_size {
            self.kept_for_size = size;
            // Each member probes every other once per pass over the members, in random
            // order, so the same pair is probed again within two passes. A connection closed
            // sooner is dialled again at the next probe: at 128 members a pass takes 254
            // probe intervals, so the 30 s idle timeout alone would keep the cluster
            // re-handshaking.
            let keep = crate::protocol::probe_pass(size, self.core.config()).saturating_mul(2);
            self.transport.keep_unused_for(keep);
        }
        while let Some(t) = self.core.poll_transmit() {
            self.send(t, None);
        }
        if self.core.poll_revoked() {
            self.apply_revocations();
        }
        let mut membership = Vec::new();
        while let Some(event) = self.core.poll_event() {
            log_event(&event);
            if let Some(m) = event.member() {
                membership.push((m.name.clone(), m.state, weight_from_meta(&m.meta)));
            }
            if let Event::User(e) = &event {
                if self.recent.len() >= RECENT_EVENTS_MAX {
                    self.recent.pop_front();
                }
                self.recent.push_back(e.clone());
            }
            let _ = self.events.send(event);
        }
        let dropped = self.core.stats().events_dropped;
        if dropped != self.events_dropped {
            self.events_dropped = dropped;
            warn!(
                dropped,
                "membership events were dropped; resyncing the ring"
            );
            let table = self
                .core
                .members()
                .map(|m| (&m.name, m.state, weight_from_meta(&m.meta)));
            self.ring.resync(table);
        } else if !membership.is_empty() {
            self.ring
                .push_all(membership.iter().map(|(n, s, w)| (n, *s, *w)));
        }
    }

    /// The core took a revocation list: handshakes are checked against the keyring's lists
    /// from now on, and the connections made with certificates they name are closed. In a
    /// task of its own, after any identity reload under way.
    fn apply_revocations(&self) {
        let transport = self.transport.clone();
        let keyring = self.revocations.keyring.clone();
        let lock = self.revocations.lock.clone();
        tokio::spawn(
            async move {
                let _one = lock.lock().await;
                if let Err(e) = transport.set_revocation_lists(keyring.revocation_lists()) {
                    warn!(error = %e, "revocation lists not applied to handshakes");
                }
                transport
                    .close_revoked(|name, der| keyring.admits(name, der))
                    .await;
            }
            .in_current_span(),
        );
    }

    /// Sends one transmit; a request's reply comes back through `replies`, and `done` is told
    /// when it has finished either way.
    fn send(&self, t: Transmit, done: Option<mpsc::Sender<()>>) {
        let Transmit { to, kind, payload } = t;
        let peer = peer_of(to);
        match kind {
            TransmitKind::Datagram => self.transport.send_datagram(peer, Bytes::from(payload)),
            TransmitKind::Request => {
                let Ok(permit) = self.requests.clone().try_acquire_owned() else {
                    debug!(%peer, "too many requests in flight; dropped (will be retried)");
                    return;
                };
                let transport = self.transport.clone();
                let replies = self.replies.clone();
                // Only a join request goes to a bare address; the joiner reports its failure.
                let join = peer
                    .name
                    .is_none()
                    .then(|| (self.joiner.news(), self.core.join_attempt()));
                tokio::spawn(
                    async move {
                        match transport.request(peer.clone(), payload).await {
                            Ok((from, reply)) => {
                                let _ = replies.send((from, reply)).await;
                            }
                            Err(e) => {
                                debug!(%peer, error = %e, "request failed");
                                if let Some((news, attempt)) = join {
                                    let failed = JoinNews::Failed {
                                        attempt,
                                        addr: peer.addr,
                                        self_dial: matches!(e, transport::Error::SelfDial { .. }),
                                        error: e.to_string(),
                                    };
                                    let _ = news.send(failed).await;
                                }
                            }
                        }
                        drop(permit);
                        drop(done);
                    }
                    .in_current_span(),
                );
            }
        }
    }

    fn log_peer_error(&self, e: &PeerError) {
        match e {
            PeerError::NameMismatch { .. } => warn!(error = %e, "refused message"),
            PeerError::Decode { .. } | PeerError::Unasked { .. } => {
                debug!(error = %e, "dropped malformed message")
            }
        }
    }
}

fn kv_items(entries: Vec<(&NodeName, &str, &[u8], u64)>) -> Vec<KvItem> {
    entries
        .into_iter()
        .map(|(owner, key, value, version)| KvItem {
            owner: owner.clone(),
            key: key.to_string(),
            value: value.to_vec(),
            version,
        })
        .collect()
}

fn peer_of(to: Destination) -> Peer {
    Peer {
        addr: to.addr,
        name: to.name,
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Joined(m) => {
            info!(member = %m.name, addr = %m.addr, incarnation = m.incarnation.0, "member joined")
        }
        Event::Recovered(m) => {
            info!(member = %m.name, incarnation = m.incarnation.0, "member recovered")
        }
        Event::Updated(m) => {
            debug!(member = %m.name, incarnation = m.incarnation.0, "member updated")
        }
        Event::Suspect(m) => {
            info!(member = %m.name, incarnation = m.incarnation.0, "member suspect")
        }
        Event::Dead(m) => info!(member = %m.name, incarnation = m.incarnation.0, "member dead"),
        Event::Left(m) => info!(member = %m.name, incarnation = m.incarnation.0, "member left"),
        Event::KvChanged { owner, key } => debug!(%owner, %key, "key changed"),
        Event::User(e) => debug!(origin = %e.origin, name = %e.name, seq = e.seq, "user event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_timers_then_datagrams_go_before_any_other_input() {
        let mut priority = Priority::default();
        assert_eq!(priority.next(true, true), Turn::Timer);
        assert_eq!(priority.next(false, true), Turn::Datagram);
        assert_eq!(priority.next(true, false), Turn::Timer);
        assert_eq!(priority.next(false, false), Turn::Any);
    }

    #[test]
    fn a_flood_of_membership_inputs_still_lets_one_other_input_through() {
        let mut priority = Priority::default();
        let turns: Vec<Turn> = (0..2 * (MEMBERSHIP_IN_A_ROW_MAX + 1))
            .map(|i| priority.next(i % 2 == 0, true))
            .collect();
        for run in turns.split(|t| *t == Turn::Any) {
            assert!(
                run.len() <= MEMBERSHIP_IN_A_ROW_MAX,
                "{} in a row",
                run.len()
            );
        }
        let others = turns.iter().filter(|t| **t == Turn::Any).count();
        assert_eq!(others, 2, "{turns:?}");
        assert_eq!(turns[MEMBERSHIP_IN_A_ROW_MAX], Turn::Any);
    }
}
