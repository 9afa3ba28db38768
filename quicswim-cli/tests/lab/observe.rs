//! What the agents themselves report: every node's `/v1/monitor` stream, read from the host
//! for the whole run and stamped on arrival, so that detection times, false suspicions and
//! deliveries are counted from the nodes' own events rather than from polls that could miss
//! a short suspicion. A stream that ends is opened again until the watcher stops; one whose
//! node was killed never ends by itself (the container's namespace vanishes without a reset,
//! and a quiet node sends nothing), so the lab reopens a node's stream whenever it starts the
//! node again ([`Watcher::reopen`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::api::{client, Api};
use crate::cluster::Lab;

/// One line of one node's monitor stream.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When the host read it.
    pub at: Instant,
    /// The node that reported it.
    pub observer: String,
    pub what: What,
}

#[derive(Clone, Debug)]
pub enum What {
    /// A member's state changed (`event`: joined, recovered, updated, suspect, dead, left).
    Member {
        event: String,
        name: String,
        state: String,
        incarnation: u64,
    },
    Kv {
        owner: String,
        key: String,
    },
    User {
        origin: String,
        seq: u64,
    },
    /// The stream fell behind and lost this many events: counts below may be short.
    Dropped(u64),
}

/// Every node's monitor stream, recorded.
pub struct Watcher {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// One per node, in the lab's order.
    tasks: Vec<JoinHandle<()>>,
    rt: tokio::runtime::Handle,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn parse(line: &str) -> Option<What> {
    let v: Value = serde_json::from_str(line).ok()?;
    let text = |f: &str| v[f].as_str().unwrap_or_default().to_string();
    Some(match v["type"].as_str()? {
        "member" => What::Member {
            event: text("event"),
            name: text("name"),
            state: text("state"),
            incarnation: v["incarnation"].as_u64()?,
        },
        "kv" => What::Kv {
            owner: text("owner"),
            key: text("key"),
        },
        "user" => What::User {
            origin: text("origin"),
            seq: v["seq"].as_u64()?,
        },
        "dropped" => What::Dropped(v["count"].as_u64()?),
        _ => return None,
    })
}

/// Reads `observer`'s stream at `api` into `seen`, reopening it whenever it ends.
async fn follow(observer: String, api: String, seen: Arc<Mutex<Vec<Seen>>>) {
    let client = client();
    loop {
        if let Ok(mut answer) = client.get(format!("http://{api}/v1/monitor")).send().await {
            let mut pending = Vec::new();
            while let Ok(Some(chunk)) = answer.chunk().await {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let Some(what) = parse(&String::from_utf8_lossy(&line)) else {
                        continue;
                    };
                    seen.lock().expect("seen lock").push(Seen {
                        at: Instant::now(),
                        observer: observer.clone(),
                        what,
                    });
                }
            }
        }
        // The node is down or restarting: try again soon (a poll, not a settle wait).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Watcher {
    pub fn start(api: &Api, lab: &Lab) -> Watcher {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks = lab
            .nodes
            .iter()
            .map(|n| api.rt.spawn(follow(n.name.clone(), n.api(), seen.clone())))
            .collect();
        Watcher {
            seen,
            tasks,
            rt: api.rt.handle().clone(),
        }
    }

    /// Drops node `i`'s stream, whatever state it is in, and follows the node afresh.
    pub fn reopen(&mut self, lab: &Lab, i: usize) {
        let node = &lab.nodes[i];
        self.tasks[i].abort();
        self.tasks[i] = self
            .rt
            .spawn(follow(node.name.clone(), node.api(), self.seen.clone()));
    }

    /// Everything seen at or after `since`.
    pub fn since(&self, since: Instant) -> Vec<Seen> {
        let seen = self.seen.lock().expect("seen lock");
        seen.iter().filter(|s| s.at >= since).cloned().collect()
    }
}

/// Events lost by streams that fell behind, among `seen`.
pub fn dropped(seen: &[Seen]) -> u64 {
    seen.iter()
        .map(|s| match s.what {
            What::Dropped(n) => n,
            _ => 0,
        })
        .sum()
}

/// For each observer, when it first reported `subject` in `state`, among `seen`.
pub fn first_state(seen: &[Seen], subject: &str, state: &str) -> BTreeMap<String, Instant> {
    let mut first = BTreeMap::new();
    for s in seen {
        if let What::Member {
            name, state: st, ..
        } = &s.what
        {
            if name == subject && st == state {
                first.entry(s.observer.clone()).or_insert(s.at);
            }
        }
    }
    first
}

/// Times at which nodes were down on purpose: a Dead or Suspect about them then is right.
#[derive(Default)]
pub struct Downtime(BTreeMap<String, Vec<(Instant, Option<Instant>)>>);

impl Downtime {
    pub fn begin(&mut self, node: &str, at: Instant) {
        self.0.entry(node.to_string()).or_default().push((at, None));
    }

    pub fn end(&mut self, node: &str, at: Instant) {
        if let Some(last) = self.0.get_mut(node).and_then(|v| v.last_mut()) {
            last.1.get_or_insert(at);
        }
    }

    fn down_at(&self, node: &str, at: Instant) -> bool {
        self.0.get(node).is_some_and(|spans| {
            spans
                .iter()
                .any(|(from, to)| at >= *from && to.is_none_or(|to| at <= to))
        })
    }
}

/// Suspicions and Dead verdicts about nodes that were up.
#[derive(Debug, Default)]
pub struct FalsePositives {
    /// (observer, subject, when) of each Dead about a node that was up.
    pub dead: Vec<(String, String, Duration)>,
    /// Suspicions about nodes that were up.
    pub suspicions: usize,
    /// Those that lasted longer than the limit (or never ended), with how long.
    pub long_suspicions: Vec<(String, String, Duration)>,
    /// The longest suspicion of a node that was up.
    pub longest: Duration,
    /// The first few suspicions, as `observer>subject@incarnation +seconds`, to say who.
    pub examples: Vec<String>,
}

/// Counts, among `seen` (from `start` until `end`), the Dead verdicts and the suspicions held
/// about nodes that `down` does not list as down at the time; a suspicion lasts from the
/// observer's suspect event to its next event about that member.
pub fn false_positives(
    seen: &[Seen],
    start: Instant,
    end: Instant,
    down: &Downtime,
    limit: Duration,
) -> FalsePositives {
    let mut fp = FalsePositives::default();
    // (observer, subject) -> when the open suspicion began
    let mut open: BTreeMap<(String, String), Instant> = BTreeMap::new();
    let close = |fp: &mut FalsePositives, key: (String, String), from: Instant, to: Instant| {
        let lasted = to.saturating_duration_since(from);
        fp.longest = fp.longest.max(lasted);
        if lasted > limit {
            fp.long_suspicions.push((key.0, key.1, lasted));
        }
    };
    for s in seen.iter().filter(|s| s.at >= start && s.at <= end) {
        let What::Member {
            name,
            state,
            incarnation,
            ..
        } = &s.what
        else {
            continue;
        };
        let key = (s.observer.clone(), name.clone());
        if let Some(from) = open.remove(&key) {
            close(&mut fp, key.clone(), from, s.at);
        }
        if down.down_at(name, s.at) {
            continue;
        }
        match state.as_str() {
            "suspect" => {
                fp.suspicions += 1;
                if fp.examples.len() < 4 {
                    let after = s.at.saturating_duration_since(start).as_secs_f64();
                    fp.examples
                        .push(format!("{}>{name}@{incarnation} +{after:.1}s", s.observer));
                }
                open.insert(key, s.at);
            }
            "dead" => fp.dead.push((key.0, key.1, s.at.duration_since(start))),
            _ => {}
        }
    }
    for (key, from) in open {
        close(&mut fp, key, from, end);
    }
    fp
}

/// How many of the `(origin, seq)` user events reached each of the other `observers`, and
/// how many deliveries were due.
pub fn user_deliveries(
    seen: &[Seen],
    events: &[(String, u64)],
    observers: &[String],
) -> (usize, usize) {
    let mut got = std::collections::BTreeSet::new();
    for s in seen {
        if let What::User { origin, seq } = &s.what {
            got.insert((s.observer.as_str(), origin.as_str(), *seq));
        }
    }
    let mut due = 0;
    let mut delivered = 0;
    for (origin, seq) in events {
        for o in observers.iter().filter(|o| *o != origin) {
            due += 1;
            if got.contains(&(o.as_str(), origin.as_str(), *seq)) {
                delivered += 1;
            }
        }
    }
    (delivered, due)
}
