//! A whole cluster of protocol cores in virtual time.
//!
//! One global queue of actions ordered by `(time, sequence)`; each node is woken exactly at
//! its core's `poll_timeout()`. Every choice comes from one seeded RNG, so a run is a pure
//! function of its [`SimConfig`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, RngCore, SeedableRng};

use super::config::SimConfig;
use super::faults::Faults;
use super::health::HealthTracker;
use super::keys::SimAuthority;
use super::network::Network;
use super::report::{Report, Tracker};
use super::rogue::{self, Carrier, Rogues, FORGERIES_PER_TICK};
use crate::protocol::codec::{decode_datagram, decode_stream, encode_datagram, encode_stream};
use crate::protocol::codec::{Message, StreamMessage};
use crate::protocol::{
    CommandError, Event, Incarnation, Member, MemberPool, NodeName, Swim, TransmitKind,
};

#[derive(Debug)]
enum Action {
    Start(usize),
    Wake(usize),
    Datagram {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Request {
        to: usize,
        from: usize,
        from_gen: u32,
        bytes: Vec<u8>,
    },
    Reply {
        to: usize,
        to_gen: u32,
        from: usize,
        bytes: Vec<u8>,
    },
    Crash,
    Restart(usize),
    Partition,
    Heal,
    InjectUpdate(usize),
    KvWrite,
    /// The rogues send their next forgeries.
    RogueTick,
    /// A forgery on its way from rogue `from` to `to`.
    Forged {
        to: usize,
        from: usize,
        carrier: Carrier,
        bytes: Vec<u8>,
    },
}

struct Scheduled {
    at: Instant,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct SimNode {
    name: NodeName,
    addr: SocketAddr,
    core: Option<Swim>,
    /// Bumped on restart so replies to a previous life are dropped.
    generation: u32,
    wake: Option<Instant>,
}

/// A simulated cluster.
pub struct Simulation {
    config: SimConfig,
    epoch: Instant,
    now: Instant,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    nodes: Vec<SimNode>,
    network: Network,
    rng: SmallRng,
    tracker: Tracker,
    /// Gray failures in force, and what healthy nodes saw of them.
    faults: Faults,
    health: HealthTracker,
    crashed: Vec<usize>,
    /// Each node's own incarnation when the partition healed (`None` if it was down); empty
    /// before the heal.
    heal_incarnations: Vec<Option<Incarnation>>,
    steps: u64,
    /// The last write to each (owner, key): what every node must hold at the end.
    expected: BTreeMap<(usize, String), Option<Vec<u8>>>,
    kv_writes: u64,
    kv_writes_backlogged: u64,
    /// One copy of each distinct member for all the nodes' tables: without it a run of `n`
    /// nodes holds `n²` copies.
    members: MemberPool,
    /// Every node's key, issued from the run's seed.
    authority: Arc<SimAuthority>,
    /// The rogue members and what they did; `None` in a run without them.
    rogues: Option<Rogues>,
}

/// The simulated address of node `i`: a loopback address that no packet is ever sent to.
pub fn node_addr(i: usize) -> SocketAddr {
    let ip = u32::from(Ipv4Addr::new(127, 0, 0, 1)) + i as u32;
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), 7946))
}

fn node_index(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(a) => {
            let ip = u32::from(*a.ip());
            ip.checked_sub(u32::from(Ipv4Addr::new(127, 0, 0, 1)))
                .map(|i| i as usize)
        }
        SocketAddr::V6(_) => None,
    }
}

impl Simulation {
    /// Sets up a run; `epoch` is virtual time zero (any `Instant` will do).
    pub fn new(config: SimConfig, epoch: Instant) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let nodes = (0..config.nodes)
            .map(|i| SimNode {
                name: NodeName::new(format!("n{i:05}")).expect("generated names are DNS labels"),
                addr: node_addr(i),
                core: None,
                generation: 0,
                wake: None,
            })
            .collect();
        // Neither draws from `rng`: a run without faults or per-link latency makes the same
        // draws, and gives the same figures, as before they existed.
        let network = Network::with_seed(config.network.clone(), config.seed ^ 0x6c69_6e6b);
        let faults = match &config.faults {
            Some(plan) => Faults::new(plan, config.nodes, config.seed, epoch),
            None => Faults::none(config.nodes, epoch),
        };
        let faults_at = epoch + config.faults.as_ref().map_or(config.duration, |p| p.at);
        let faulty = (0..config.nodes).map(|i| faults.is_faulty(i)).collect();
        let mut sim = Self {
            network,
            health: HealthTracker::new(faulty, epoch, faults_at),
            faults,
            tracker: Tracker::new(config.nodes),
            epoch,
            now: epoch,
            queue: BinaryHeap::new(),
            seq: 0,
            nodes,
            crashed: Vec::new(),
            heal_incarnations: Vec::new(),
            steps: 0,
            expected: BTreeMap::new(),
            kv_writes: 0,
            kv_writes_backlogged: 0,
            members: MemberPool::new(),
            authority: SimAuthority::new(config.seed),
            rogues: None,
            rng: SmallRng::seed_from_u64(rng.next_u64()),
            config,
        };
        if sim.config.rogue > 0 {
            let names: Vec<NodeName> = sim.nodes.iter().map(|n| n.name.clone()).collect();
            sim.rogues = Some(Rogues::new(
                &names,
                sim.config.rogue,
                &sim.authority,
                sim.config.seed,
            ));
            let first = sim.config.join_spread + sim.config.protocol.probe_interval;
            sim.schedule(first, Action::RogueTick);
        }
        for i in 0..sim.config.nodes {
            let at = sim
                .config
                .join_spread
                .mul_f64(i as f64 / sim.config.nodes.max(1) as f64);
            sim.schedule(at, Action::Start(i));
        }
        if sim.config.crashes > 0 {
            sim.schedule(sim.config.crash_at, Action::Crash);
        }
        if let Some(p) = sim.config.partition.clone() {
            sim.schedule(p.at, Action::Partition);
            sim.schedule(p.heal_at, Action::Heal);
        }
        if let Some(kv) = sim.config.kv.clone() {
            sim.schedule(kv.from, Action::KvWrite);
        }
        for k in 0..sim.config.updates {
            let at = sim.config.updates_at + Duration::from_secs(k as u64);
            sim.schedule(at, Action::InjectUpdate(k));
        }
        sim
    }

    /// Runs to the end, calling `progress` with the virtual time about once a virtual second.
    pub fn run(mut self, mut progress: impl FnMut(Duration)) -> Report {
        let end = self.epoch + self.config.duration;
        self.advance(end, &mut progress);
        progress(self.config.duration);
        self.finish()
    }

    /// Runs until `elapsed` of virtual time since the start (at most the run's duration), so
    /// a test can look at the nodes mid-run with [`Simulation::live_views`]; [`run`] then
    /// carries on from there. Asking for a time already passed does nothing.
    ///
    /// [`run`]: Simulation::run
    pub fn run_until(&mut self, elapsed: Duration) {
        let end = self.epoch + elapsed.min(self.config.duration);
        if end > self.now {
            self.advance(end, &mut |_| {});
        }
    }

    /// Each live node's name and every member it holds (itself and tombstones included), in
    /// node order. Crashed nodes that have not restarted are absent.
    pub fn live_views(&self) -> Vec<(NodeName, Vec<Member>)> {
        self.nodes
            .iter()
            .filter_map(|node| {
                let core = node.core.as_ref()?;
                Some((node.name.clone(), core.members().cloned().collect()))
            })
            .collect()
    }

    /// Handles every action due up to `end`, then stands at `end`.
    fn advance(&mut self, end: Instant, progress: &mut dyn FnMut(Duration)) {
        let mut next_progress = self.now;
        while let Some(item) = self.queue.peek() {
            if item.at > end {
                break;
            }
            let item = self.queue.pop().expect("peeked");
            self.now = item.at;
            if self.now >= next_progress {
                progress(self.now - self.epoch);
                next_progress = self.now + Duration::from_secs(1);
            }
            self.steps += 1;
            self.step(item.action);
        }
        self.now = end;
    }

    fn schedule(&mut self, after: Duration, action: Action) {
        self.schedule_at(self.now + after, action);
    }

    fn schedule_at(&mut self, at: Instant, action: Action) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            action,
        });
    }

    fn live(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    /// The node an action is handled by, when a stall can hold it back.
    fn handled_by(action: &Action) -> Option<usize> {
        match action {
            Action::Wake(i) => Some(*i),
            Action::Datagram { to, .. } | Action::Request { to, .. } | Action::Reply { to, .. } => {
                Some(*to)
            }
            _ => None,
        }
    }

    fn step(&mut self, action: Action) {
        let now = self.now;
        // A stalled node handles nothing until the stall ends; what arrived meanwhile waits
        // in its socket buffer and is handled then, in order (a GC pause).
        if let Some(i) = Self::handled_by(&action) {
            if let Some(end) = self.faults.stalled_until(i, now) {
                if let Action::Wake(_) = action {
                    if self.nodes[i].wake != Some(now) {
                        return;
                    }
                    self.nodes[i].wake = Some(end);
                }
                self.schedule_at(end, action);
                return;
            }
        }
        match action {
            Action::Start(i) => self.start(i, false),
            Action::Wake(i) => {
                if self.nodes[i].wake != Some(now) {
                    return; // superseded by an earlier wake
                }
                self.nodes[i].wake = None;
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.handle_timeout(now);
                }
                self.after_input(i);
            }
            Action::Datagram { to, from, bytes } => {
                if !self.network.connected(from, to) || self.faults.is_cut(from, to, now) {
                    return;
                }
                let from_name = self.nodes[from].name.clone();
                let from_addr = self.nodes[from].addr;
                if self.nodes[to].core.is_none() {
                    self.answer_for_crashed(to, from, Some(&bytes), None, 0);
                    return;
                }
                if let Some(r) = self.rogues.as_mut() {
                    r.harvest(to, Some(&bytes), None);
                }
                let Some(core) = self.nodes[to].core.as_mut() else {
                    return;
                };
                // Our own encoder produced these bytes; a decode failure is a bug in it.
                core.handle_datagram(now, &from_name, from_addr, &bytes)
                    .expect("simulated datagrams decode");
                self.after_input(to);
            }
            Action::Request {
                to,
                from,
                from_gen,
                bytes,
            } => {
                if !self.network.connected(from, to) || self.faults.is_cut(from, to, now) {
                    return;
                }
                let from_name = self.nodes[from].name.clone();
                if self.nodes[to].core.is_none() {
                    self.answer_for_crashed(to, from, None, Some(&bytes), from_gen);
                    return;
                }
                if let Some(r) = self.rogues.as_mut() {
                    r.harvest(to, None, Some(&bytes));
                }
                let Some(core) = self.nodes[to].core.as_mut() else {
                    return;
                };
                let reply = core
                    .handle_stream_request(now, &from_name, &bytes)
                    .expect("simulated stream messages decode");
                self.after_input(to);
                let loss = self.faults.loss(self.network.loss(), to, from, now);
                if let Some(reply) = reply {
                    let Some(delay) = self.network.stream_delay(&mut self.rng, 1, loss, to, from)
                    else {
                        return;
                    };
                    self.schedule(
                        delay,
                        Action::Reply {
                            to: from,
                            to_gen: from_gen,
                            from: to,
                            bytes: reply,
                        },
                    );
                }
            }
            Action::Reply {
                to,
                to_gen,
                from,
                bytes,
            } => {
                if !self.network.connected(from, to)
                    || self.faults.is_cut(from, to, now)
                    || self.nodes[to].generation != to_gen
                {
                    return;
                }
                let from_name = self.nodes[from].name.clone();
                if let Some(r) = self.rogues.as_mut() {
                    r.harvest(to, None, Some(&bytes));
                }
                let Some(core) = self.nodes[to].core.as_mut() else {
                    return;
                };
                core.handle_stream_reply(now, &from_name, &bytes)
                    .expect("simulated stream messages decode");
                self.after_input(to);
            }
            Action::Crash => self.crash(),
            Action::Restart(i) => self.start(i, true),
            Action::Partition => {
                let p = self
                    .config
                    .partition
                    .clone()
                    .expect("scheduled only with a plan");
                let mut order: Vec<usize> = (0..self.nodes.len()).collect();
                order.shuffle(&mut self.rng);
                let first = ((self.nodes.len() as f64) * p.fraction).round() as usize;
                let mut sides = vec![false; self.nodes.len()];
                for &i in &order[..first] {
                    sides[i] = true;
                }
                self.network.partition(sides);
            }
            Action::Heal => {
                self.network.heal();
                self.heal_incarnations = self
                    .nodes
                    .iter()
                    .map(|n| n.core.as_ref().map(|c| c.local_member().incarnation))
                    .collect();
            }
            Action::KvWrite => self.kv_write(),
            Action::RogueTick => self.rogue_tick(),
            Action::Forged {
                to,
                from,
                carrier,
                bytes,
            } => self.deliver_forged(to, from, carrier, &bytes),
            Action::InjectUpdate(k) => {
                let candidates: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.live(i) && !self.crashed.contains(&i))
                    .collect();
                let Some(&i) = candidates.choose(&mut self.rng) else {
                    return;
                };
                let core = self.nodes[i].core.as_mut().expect("candidate is live");
                core.set_meta(now, format!("update={k}").into_bytes())
                    .expect("short metadata is accepted");
                let inc = core.local_member().incarnation;
                self.tracker
                    .update_injected(now, i, self.nodes[i].name.clone(), inc);
                self.after_input(i);
            }
        }
    }

    /// Each live rogue sends [`FORGERIES_PER_TICK`] forgeries to random honest members;
    /// every 5 s the honest nodes' state is searched for anything fabricated.
    fn rogue_tick(&mut self) {
        let interval = self.config.protocol.probe_interval;
        self.schedule(interval, Action::RogueTick);
        let Some(mut rogues) = self.rogues.take() else {
            return;
        };
        let honest: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.live(i) && !rogues.is_rogue(i))
            .collect();
        if honest.len() >= 2 {
            for r in 0..rogues.nodes.len() {
                let from = rogues.nodes[r].index;
                if !self.live(from) {
                    continue;
                }
                for _ in 0..FORGERIES_PER_TICK {
                    let to = honest[rogues.rng.random_range(0..honest.len())];
                    let mut other = honest[rogues.rng.random_range(0..honest.len())];
                    if other == to {
                        other = honest[(honest.iter().position(|&h| h == to).unwrap_or(0) + 1)
                            % honest.len()];
                    }
                    let (victim, other_name) =
                        (self.nodes[to].name.clone(), self.nodes[other].name.clone());
                    let other_addr = self.nodes[other].addr;
                    let Rogues { nodes, rng, .. } = &mut rogues;
                    let (carrier, bytes) = nodes[r].craft(rng, &victim, &other_name, other_addr);
                    self.send_forged(&mut rogues, from, to, carrier, bytes);
                }
            }
        }
        let every = (Duration::from_secs(5).as_nanos() / interval.as_nanos().max(1)).max(1);
        let tick = ((self.now - self.epoch).as_nanos() / interval.as_nanos().max(1)) % every;
        if tick == 0 {
            for i in honest {
                if let Some(core) = self.nodes[i].core.as_ref() {
                    rogues.inspect(i, core);
                }
            }
        }
        self.rogues = Some(rogues);
    }

    /// Puts a forgery on the network: datagrams may be lost like any other, streams arrive
    /// after their round trips.
    fn send_forged(
        &mut self,
        rogues: &mut Rogues,
        from: usize,
        to: usize,
        carrier: Carrier,
        bytes: Vec<u8>,
    ) {
        rogues.sent += 1;
        let loss = self.faults.loss(self.network.loss(), from, to, self.now);
        let delay = match carrier {
            Carrier::Datagram => {
                if self.network.datagram_copies(&mut rogues.rng, loss) == 0 {
                    return;
                }
                Some(self.network.delay(&mut rogues.rng, from, to))
            }
            Carrier::Request => self
                .network
                .stream_delay(&mut rogues.rng, 2, loss, from, to),
            Carrier::Reply => self
                .network
                .stream_delay(&mut rogues.rng, 1, loss, from, to),
        };
        if let Some(delay) = delay {
            self.schedule(
                delay,
                Action::Forged {
                    to,
                    from,
                    carrier,
                    bytes,
                },
            );
        }
    }

    /// Hands a forgery to its victim and counts what the victim refused.
    fn deliver_forged(&mut self, to: usize, from: usize, carrier: Carrier, bytes: &[u8]) {
        let now = self.now;
        if !self.network.connected(from, to) || self.faults.is_cut(from, to, now) {
            return;
        }
        let from_name = self.nodes[from].name.clone();
        let from_addr = self.nodes[from].addr;
        let Some(core) = self.nodes[to].core.as_mut() else {
            return;
        };
        let before = rogue::refusals(&core.stats());
        let failed = match carrier {
            Carrier::Datagram => core
                .handle_datagram(now, &from_name, from_addr, bytes)
                .is_err(),
            // The victim's answer goes nowhere: the rogue's core never sent the request.
            Carrier::Request => core.handle_stream_request(now, &from_name, bytes).is_err(),
            Carrier::Reply => core.handle_stream_reply(now, &from_name, bytes).is_err(),
        };
        let counted = rogue::refusals(&core.stats()).saturating_sub(before);
        if let Some(r) = self.rogues.as_mut() {
            r.refused += if counted == 0 && failed { 1 } else { counted };
        }
        self.after_input(to);
    }

    /// A rogue that sees a probe of a crashed member answers it in the member's stead, with
    /// the probe's real sequence number: the prober must not take it.
    fn answer_for_crashed(
        &mut self,
        to: usize,
        from: usize,
        datagram: Option<&[u8]>,
        stream: Option<&[u8]>,
        from_gen: u32,
    ) {
        let Some(mut rogues) = self.rogues.take() else {
            return;
        };
        let _ = from_gen;
        let rogue = rogues
            .nodes
            .iter()
            .map(|r| r.index)
            .find(|&r| self.live(r) && r != from);
        if let (Some(rogue), true) = (rogue, self.crashed.contains(&to)) {
            if let Some(Ok(p)) = datagram.map(decode_datagram) {
                if let Message::Ping { seq, .. } = p.message {
                    let ack = encode_datagram(&Message::Ack { seq }, 0, &[]);
                    self.send_forged(&mut rogues, rogue, from, Carrier::Datagram, ack);
                }
            }
            if let Some(Ok(StreamMessage::Ping { seq, .. })) = stream.map(decode_stream) {
                let ack = encode_stream(&StreamMessage::Ack { seq });
                self.send_forged(&mut rogues, rogue, from, Carrier::Reply, ack);
            }
        }
        self.rogues = Some(rogues);
    }

    fn kv_write(&mut self) {
        let kv = self
            .config
            .kv
            .clone()
            .expect("scheduled only with a workload");
        let gap = Duration::from_secs_f64(1.0 / kv.writes_per_s.max(1e-3));
        if self.now + gap <= self.epoch + kv.until {
            self.schedule(gap, Action::KvWrite);
        }
        let writer = self.rng.random_range(0..kv.writers.min(self.nodes.len()));
        let now = self.now;
        let key = format!(
            "key-{}",
            self.rng.random_range(0..kv.keys_per_writer.max(1))
        );
        let delete = self.rng.random::<f64>() < kv.delete_fraction;
        let value: Vec<u8> = (0..kv.value_len).map(|_| self.rng.random()).collect();
        let Some(core) = self.nodes[writer].core.as_mut() else {
            return;
        };
        let written = if delete {
            core.delete(now, &key).map(|_| None)
        } else {
            core.set(now, &key, value.clone()).map(|_| Some(value))
        };
        match written {
            Ok(None) => {
                if self.expected.contains_key(&(writer, key.clone())) {
                    self.expected.insert((writer, key), None);
                }
            }
            Ok(Some(value)) => {
                self.expected.insert((writer, key), Some(value));
            }
            Err(CommandError::Backlogged { .. }) => {
                // Pushback: the writer is told, nothing was written.
                self.kv_writes_backlogged += 1;
                return;
            }
            Err(e) => panic!("the workload writes within limits: {e}"),
        }
        self.kv_writes += 1;
        self.after_input(writer);
    }

    fn start(&mut self, i: usize, restart: bool) {
        let seed = self.rng.next_u64();
        let node = &mut self.nodes[i];
        let core = Swim::new(
            node.name.clone(),
            node.addr,
            Vec::new(),
            self.config.protocol.clone(),
            seed,
            self.now,
            self.authority.keyring(&node.name),
        )
        .expect("empty metadata is within the limit");
        node.core = Some(core);
        node.core
            .as_mut()
            .expect("just set")
            .share_members(self.members.clone());
        // As the runtime does with wall-clock microseconds: versions after a restart start
        // above every version written before it.
        let floor = (self.now - self.epoch).as_micros() as u64 + 1;
        node.core
            .as_mut()
            .expect("just set")
            .set_version_floor(floor);
        node.wake = None;
        if restart {
            node.generation += 1;
        }
        let started: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != i && self.live(j))
            .collect();
        let seeds: Vec<SocketAddr> = started
            .choose_multiple(&mut self.rng, 3)
            .map(|&j| self.nodes[j].addr)
            .collect();
        let now = self.now;
        self.nodes[i]
            .core
            .as_mut()
            .expect("just set")
            .join(now, &seeds);
        self.tracker.node_started(i);
        self.health.node_started(now, i);
        self.after_input(i);
    }

    fn crash(&mut self) {
        // Crashes come from the healthy nodes, so each node has one fault at most.
        let mut candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.live(i)
                    && !self.faults.is_faulty(i)
                    && !self.rogues.as_ref().is_some_and(|r| r.is_rogue(i))
            })
            .collect();
        candidates.shuffle(&mut self.rng);
        let victims: Vec<usize> = candidates.into_iter().take(self.config.crashes).collect();
        for &i in &victims {
            // Writes not signed yet never left the node: they die with it, and a restarted
            // writer is held to what it writes after.
            if let Some(core) = self.nodes[i].core.as_ref() {
                for key in core.kv_unsealed() {
                    self.expected.remove(&(i, key));
                }
            }
            self.nodes[i].core = None;
            self.nodes[i].wake = None;
            self.crashed.push(i);
            self.tracker
                .node_crashed(self.now, i, self.nodes[i].name.clone());
            self.health.node_crashed(self.now, i);
            if let Some(after) = self.config.restart_after {
                self.schedule(after, Action::Restart(i));
            }
        }
    }

    /// Sends what the node wants sent, records its events and re-arms its wake-up.
    fn after_input(&mut self, i: usize) {
        let now = self.now;
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let mut outgoing = Vec::new();
        while let Some(t) = core.poll_transmit() {
            outgoing.push(t);
        }
        let mut events: Vec<Event> = Vec::new();
        while let Some(e) = core.poll_event() {
            events.push(e);
        }
        let alive = core.alive_count();
        let next_wake = core.poll_timeout();
        let generation = self.nodes[i].generation;
        for t in outgoing {
            let Some(to) = node_index(t.to.addr).filter(|&j| j < self.nodes.len()) else {
                continue;
            };
            match t.kind {
                TransmitKind::Datagram => {
                    let loss = self.faults.loss(self.network.loss(), i, to, now);
                    for _ in 0..self.network.datagram_copies(&mut self.rng, loss) {
                        let delay = self.network.delay(&mut self.rng, i, to);
                        self.schedule(
                            delay,
                            Action::Datagram {
                                to,
                                from: i,
                                bytes: t.payload.clone(),
                            },
                        );
                    }
                }
                TransmitKind::Request => {
                    // A stream costs a handshake round trip on a new connection; count one.
                    let loss = self.faults.loss(self.network.loss(), i, to, now);
                    let Some(delay) = self.network.stream_delay(&mut self.rng, 2, loss, i, to)
                    else {
                        continue;
                    };
                    self.schedule(
                        delay,
                        Action::Request {
                            to,
                            from: i,
                            from_gen: generation,
                            bytes: t.payload,
                        },
                    );
                }
            }
        }
        // Claims made while a partition was in force keep arriving for a while after it heals.
        // A member declared Dead across the partition is not a false positive, and neither is
        // a member the other side declared Dead reaching observers on its own side: at equal
        // incarnation Dead beats Alive, so that claim is adopted by everyone until the member
        // refutes. Both are claims at an incarnation the member had reached by the heal; a
        // claim at a newer one comes from a probe that failed after the heal, and counts.
        let grace = self.config.protocol.probe_interval * 80;
        let settling = self
            .config
            .partition
            .as_ref()
            .is_some_and(|p| now < self.epoch + p.heal_at + grace);
        let network = &self.network;
        let heal_incarnations = &self.heal_incarnations;
        let from_partition = |s: usize, incarnation: Incarnation| {
            settling
                && heal_incarnations
                    .get(s)
                    .is_some_and(|healed| healed.is_some_and(|h| incarnation <= h))
        };
        if let Some(r) = self.rogues.as_mut() {
            if !r.is_rogue(i) {
                r.note_events(i, &events);
            }
        }
        let crashed = &self.crashed;
        // A faulty member declared Dead is the failure detector doing its job, not a false
        // positive (the health figures count those separately).
        let faults = &self.faults;
        for e in events {
            let Some(m) = e.member() else {
                continue;
            };
            let subject = node_index(m.addr).filter(|&s| s < self.nodes.len());
            if let Some(s) = subject {
                self.health.event(now, i, s, &e);
            }
            let reachable = subject.is_some_and(|s| {
                network.connected(i, s)
                    && !crashed.contains(&s)
                    && !faults.is_faulty(s)
                    && !from_partition(s, m.incarnation)
            });
            self.tracker.event(now, i, &e, reachable);
        }
        self.tracker.alive_seen(now, i, alive);
        if let Some(at) = next_wake {
            // A deadline already past (allowed by `poll_timeout`) means at once, never earlier.
            let at = at.max(self.now);
            let node = &mut self.nodes[i];
            if node.wake.is_none_or(|w| at < w) {
                node.wake = Some(at);
                self.schedule_at(at, Action::Wake(i));
            }
        }
    }

    fn finish(mut self) -> Report {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.live(i)).collect();
        let expected: BTreeSet<&NodeName> = live.iter().map(|&i| &self.nodes[i].name).collect();
        let mut views_agree = true;
        let mut views_correct = true;
        let mut first: Option<BTreeSet<&NodeName>> = None;
        // Faulty nodes' views are not compared: a node that hears a fifth of what is sent
        // cannot be expected to know what the others know.
        // Neither are the rogues': the figures are about the honest members.
        let rogue = |i: usize| self.rogues.as_ref().is_some_and(|r| r.is_rogue(i));
        for &i in live
            .iter()
            .filter(|&&i| !self.faults.is_faulty(i) && !rogue(i))
        {
            let core = self.nodes[i].core.as_ref().expect("live");
            // A view is who the node counts as a member: Alive or Suspect, not Dead or Left
            // (memberlist's `Members()`). Under loss some suspicion is always in flight; a
            // suspect that refutes in time was never out of the view.
            let view: BTreeSet<&NodeName> = core
                .members()
                .filter(|m| m.state.is_active())
                .map(|m| &m.name)
                .collect();
            views_correct &= view == expected;
            match &first {
                None => first = Some(view),
                Some(f) => views_agree &= *f == view,
            }
        }
        // Key/value: every live node holds the same entries, and they are the last writes.
        let mut kv_agree = true;
        let mut kv_matches = true;
        let reference = live
            .first()
            .map(|&i| kv_snapshot(self.nodes[i].core.as_ref().expect("live")));
        for &i in &live {
            let core = self.nodes[i].core.as_ref().expect("live");
            let snap = kv_snapshot(core);
            kv_agree &= Some(&snap) == reference.as_ref();
            for ((owner, key), value) in &self.expected {
                if self.crashed.contains(owner) && !self.live(*owner) {
                    continue; // its last writes may have died with it
                }
                kv_matches &= core.kv_get(&self.nodes[*owner].name, key) == value.as_deref();
            }
        }
        let mut totals = crate::protocol::Stats::default();
        for &i in &live {
            let s = self.nodes[i].core.as_ref().expect("live").stats();
            totals.datagram_bytes_out += s.datagram_bytes_out;
            totals.suspicions_raised += s.suspicions_raised;
            totals.refutations += s.refutations;
            totals.push_pulls_started += s.push_pulls_started;
            totals.anti_entropy_bytes_out += s.anti_entropy_bytes_out;
            totals.fetch_bytes_out += s.fetch_bytes_out;
            totals.kv_entries_synced += s.kv_entries_synced;
            totals.unverified_records += s.unverified_records;
            totals.certificates_learned += s.certificates_learned;
            totals.parked_dropped += s.parked_dropped;
            totals.broadcasts_dropped += s.broadcasts_dropped;
        }
        let mut report = self.tracker.report(
            &self.config,
            self.epoch,
            views_agree,
            views_correct,
            self.steps,
            &totals,
        );
        report.health(&self.health.figures(), self.faults.faulty().count());
        if let Some(mut rogues) = self.rogues.take() {
            for &i in &live {
                if !rogues.is_rogue(i) {
                    let core = self.nodes[i].core.as_ref().expect("live");
                    rogues.inspect(i, core);
                }
            }
            report.rogues = rogues.nodes.len();
            report.forged_sent = rogues.sent;
            report.forged_refused = rogues.refused;
            report.forged_accepted = rogues.accepted.len() as u64;
            report.forged_accepted_examples = rogues
                .accepted
                .iter()
                .take(5)
                .map(|(i, what)| format!("n{i:05}: {what}"))
                .collect();
        }
        report.kv_writes = self.kv_writes;
        report.kv_writes_backlogged = self.kv_writes_backlogged;
        report.kv_states_agree = kv_agree;
        report.kv_matches_writes = kv_matches;
        report.kv_live_keys = live.first().map_or(0, |&i| {
            self.nodes[i].core.as_ref().expect("live").kv_totals().0
        });
        report
    }
}

/// Every live entry a node holds, for comparison.
fn kv_snapshot(core: &Swim) -> Vec<(NodeName, String, Vec<u8>, u64)> {
    core.kv_entries()
        .into_iter()
        .map(|(o, k, v, version)| (o.clone(), k.to_string(), v.to_vec(), version))
        .collect()
}
