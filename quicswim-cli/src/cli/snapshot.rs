//! `--data-dir DIR`: the members this agent last knew, kept in `DIR/members.json`, so that a
//! node restarted after its seeds are gone rejoins through them (serf's `-snapshot`).
//!
//! The file is small JSON, `{"node": NAME, "members": [{"name": .., "addr": .., "state": ..},
//! ..]}`: every member but this node and those that left. Only the best [`LOAD_MAX`] of them
//! become seeds (alive first), and a file over [`FILE_LEN_MAX`] is ignored. It is written whole into a temporary file in the
//! same directory, synced, then renamed over the old one, so a crash mid-write leaves the old
//! file or the new, never half of one. Writes follow membership changes at most once per
//! [`WRITE_INTERVAL`], and once more when the agent stops. A file that cannot be read or
//! parsed is reported and ignored: it only ever adds seeds.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use quicswim::protocol::{Event, Member, NodeName, State};
use quicswim::Node;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// The file's name inside `--data-dir`.
const FILE_NAME: &str = "members.json";

/// At most this many addresses are taken from the file: enough to find one member still up,
/// few enough that a join does not walk a whole large cluster's tombstones.
pub const LOAD_MAX: usize = 32;

/// A larger file is not read (16384 members take about 1.5 MiB).
const FILE_LEN_MAX: u64 = 4 << 20;

/// Membership changes are written at most this often (a join of many members is one write).
const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// The file's content.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    /// The node that wrote it, to notice a data directory moved to another node.
    node: NodeName,
    members: Vec<Known>,
}

/// One member as last known.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Known {
    name: NodeName,
    addr: SocketAddr,
    /// Absent in files written before states were kept: taken as alive.
    #[serde(default)]
    state: KnownState,
}

/// A kept member's state, in the order its address is worth trying.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
enum KnownState {
    #[default]
    Alive,
    Suspect,
    Dead,
}

/// The snapshot file of a data directory.
#[derive(Clone, Debug)]
pub struct Snapshot {
    path: PathBuf,
}

impl Snapshot {
    /// The snapshot in `dir`, which is created if missing (an error here is a configuration
    /// mistake, reported at start).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --data-dir {}", dir.display()))?;
        Ok(Snapshot {
            path: dir.join(FILE_NAME),
        })
    }

    /// The addresses of the members last known, for `name`: at most [`LOAD_MAX`], alive
    /// ones first, then suspect, then dead, each once. None, with a warning naming the file,
    /// when it cannot be read or parsed or is too large; none, silently, when there is no
    /// file yet.
    pub fn load(&self, name: &NodeName) -> Vec<SocketAddr> {
        let text = match read_capped(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                warn!(file = %self.path.display(), error = %e,
                    "cannot read the member snapshot; ignoring it");
                return Vec::new();
            }
        };
        let file: SnapshotFile = match serde_json::from_str(&text) {
            Ok(file) => file,
            Err(e) => {
                warn!(file = %self.path.display(), error = %e,
                    "the member snapshot is corrupt; ignoring it (it is rewritten soon)");
                return Vec::new();
            }
        };
        if file.node != *name {
            warn!(file = %self.path.display(), written_by = %file.node, node = %name,
                "the member snapshot was written by another node; using its members anyway");
        }
        let mut members = file.members;
        // Stable: within a state, the file's order stays.
        members.sort_by_key(|m| m.state);
        let mut seen = HashSet::new();
        members
            .into_iter()
            .map(|m| m.addr)
            .filter(|a| seen.insert(*a))
            .take(LOAD_MAX)
            .collect()
    }

    /// Writes `members` (this node's view) atomically: temporary file, sync, rename.
    fn write(&self, node: &NodeName, members: &[Known]) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let file = SnapshotFile {
            node: node.clone(),
            members: members.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".members.json.")
            .tempfile_in(dir)?;
        tmp.write_all(&json)?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Starts keeping the snapshot of `node`'s view; [`Keeper::finish`] writes it one last
    /// time and stops.
    pub fn keep(self, node: Node) -> Keeper {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(keep(self, node, stopped));
        Keeper { stop, task }
    }
}

/// The task that writes the snapshot (see [`Snapshot::keep`]).
pub struct Keeper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Keeper {
    /// Writes the snapshot once more, while the node still runs, and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Members worth rejoining through: every one but this node and those that left.
fn worth_keeping(me: &NodeName, members: Vec<Member>) -> Vec<Known> {
    members
        .into_iter()
        .filter(|m| m.name != *me && m.state != State::Left)
        .map(|m| Known {
            state: match m.state {
                State::Alive | State::Left => KnownState::Alive,
                State::Suspect => KnownState::Suspect,
                State::Dead => KnownState::Dead,
            },
            name: m.name,
            addr: m.addr,
        })
        .collect()
}

/// The file's text, refused when larger than [`FILE_LEN_MAX`].
fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(FILE_LEN_MAX + 1).read_to_string(&mut text)?;
    if text.len() as u64 > FILE_LEN_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            FILE_LEN_MAX >> 20
        )));
    }
    Ok(text)
}

async fn keep(snapshot: Snapshot, node: Node, mut stopped: oneshot::Receiver<()>) {
    let me = node.name().clone();
    let mut events = node.events();
    let mut written: Option<Vec<Known>> = None;
    let mut dirty = true; // the first view is written once the interval has passed
    let mut next_write = tokio::time::Instant::now() + WRITE_INTERVAL;
    loop {
        let wait = async {
            if dirty {
                tokio::time::sleep_until(next_write).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = &mut stopped => {
                write_if_changed(&snapshot, &node, &me, &mut written).await;
                return;
            }
            // However the leave was asked for (a signal, the API), the view just before it
            // is the one to keep: the node still answers while it leaves.
            () = node.leaving() => {
                write_if_changed(&snapshot, &node, &me, &mut written).await;
                return;
            }
            event = events.recv() => match event {
                Ok(e) if e.member().is_some() && !matches!(e, Event::Updated(_)) => dirty = true,
                Ok(Event::Updated(m)) if written.as_ref().is_some_and(|w| {
                    w.iter().any(|k| k.name == m.name && k.addr != m.addr)
                }) => dirty = true,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => dirty = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = wait => {
                dirty = false;
                next_write = tokio::time::Instant::now() + WRITE_INTERVAL;
                write_if_changed(&snapshot, &node, &me, &mut written).await;
            }
        }
    }
}

async fn write_if_changed(
    snapshot: &Snapshot,
    node: &Node,
    me: &NodeName,
    written: &mut Option<Vec<Known>>,
) {
    let Ok(members) = node.members().await else {
        return; // the node stopped; the last file written stays
    };
    let known = worth_keeping(me, members);
    if written.as_ref() == Some(&known) {
        return;
    }
    match snapshot.write(me, &known) {
        Ok(()) => {
            debug!(file = %snapshot.path.display(), members = known.len(), "member snapshot written");
            *written = Some(known);
        }
        Err(e) => warn!(file = %snapshot.path.display(), error = %e,
            "cannot write the member snapshot"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str, port: u16) -> Known {
        Known {
            name: NodeName::new(name).unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state: KnownState::Alive,
        }
    }

    #[test]
    fn load_takes_few_addresses_alive_first_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = Snapshot::open(dir.path()).unwrap();
        let me = NodeName::new("a").unwrap();
        let mut members = Vec::new();
        for i in 0..100u16 {
            let state =
                [KnownState::Dead, KnownState::Suspect, KnownState::Alive][usize::from(i % 3)];
            members.push(Known {
                state,
                ..known(&format!("m{i}"), 7000 + i)
            });
        }
        members.push(known("dup", 7002)); // an alive member's address again
        snapshot.write(&me, &members).unwrap();
        let addrs = snapshot.load(&me);
        assert_eq!(addrs.len(), LOAD_MAX);
        let alive = members
            .iter()
            .filter(|m| m.state == KnownState::Alive)
            .count();
        assert_eq!(alive, 34, "33 alive addresses, one of them twice");
        // The first 32 distinct alive addresses, in the file's order.
        assert_eq!(addrs[0], known("m2", 7002).addr);
        assert_eq!(addrs[1], known("m5", 7005).addr);
        assert!(
            addrs.iter().all(|a| (a.port() - 7000) % 3 == 2),
            "{addrs:?}"
        );
        // An old file without states still loads.
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"node":"a","members":[{"name":"b","addr":"127.0.0.1:9"}]}"#,
        )
        .unwrap();
        assert_eq!(snapshot.load(&me), [known("b", 9).addr]);
    }

    #[test]
    fn oversized_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = Snapshot::open(dir.path()).unwrap();
        let me = NodeName::new("a").unwrap();
        let mut text =
            String::from(r#"{"node":"a","members":[{"name":"b","addr":"127.0.0.1:9"}]}"#);
        text.push_str(&" ".repeat(FILE_LEN_MAX as usize));
        std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        assert!(snapshot.load(&me).is_empty());
    }

    #[test]
    fn written_members_load_back_as_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = Snapshot::open(&dir.path().join("data")).unwrap();
        let me = NodeName::new("a").unwrap();
        assert!(snapshot.load(&me).is_empty(), "no file yet");
        snapshot
            .write(&me, &[known("b", 7001), known("c", 7002)])
            .unwrap();
        let addrs = snapshot.load(&me);
        assert_eq!(addrs, [known("b", 7001).addr, known("c", 7002).addr]);
        // Nothing is left behind but the file itself.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[test]
    fn corrupt_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = Snapshot::open(dir.path()).unwrap();
        let me = NodeName::new("a").unwrap();
        for text in ["{\"node\":\"a\",\"memb", "", "[1,2]", "\u{0}\u{1}"] {
            std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
            assert!(snapshot.load(&me).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn this_node_and_left_members_are_not_kept() {
        let me = NodeName::new("a").unwrap();
        let member = |name: &str, state| Member {
            name: NodeName::new(name).unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            incarnation: quicswim::protocol::Incarnation(0),
            state,
            meta: Vec::new(),
        };
        let kept = worth_keeping(
            &me,
            vec![
                member("a", State::Alive),
                member("b", State::Alive),
                member("c", State::Left),
                member("d", State::Dead),
                member("e", State::Suspect),
            ],
        );
        let names: Vec<&str> = kept.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["b", "d", "e"]);
    }
}
