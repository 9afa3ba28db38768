//! The agent's live identity reload: on SIGHUP, and when the CA bundle, certificate, key or
//! revocation list file changes, the files are loaded again and handed to the running node
//! ([`Node::reload_identity`]). A set that does not load (unreadable, not chained to the CA,
//! another node's name, a key that does not match) is refused with the file and the reason,
//! and the identity in use stays.
//!
//! ```text
//!   SIGHUP ───────────────┐
//!   inotify on the files' ├─> wait for writes to settle ─> same bytes as in use? ─> nothing
//!   directories ──────────┘                               load and check ─> refused: WARN
//!                                                         node.reload_identity ─> INFO serial
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use quicswim::node::Node;
use quicswim::protocol::NodeName;
use tokio::sync::Notify;
use tracing::{info, warn};

/// How long the files must be left alone after a change before they are read: `certs
/// issue` and configuration tools write the certificate and the key one after the other.
const SETTLE: Duration = Duration::from_millis(500);

/// The longest a reload waits for the files to settle.
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// Where the agent's identity was loaded from.
#[derive(Clone, Debug)]
pub(crate) struct IdentityFiles {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// `--crl`, if given.
    pub(crate) crl: Option<PathBuf>,
}

impl IdentityFiles {
    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.ca.as_path(), &self.cert, &self.key];
        paths.extend(self.crl.as_deref());
        paths
    }

    /// The files' bytes, or `None` if one cannot be read now (the load that follows says
    /// which and why).
    fn contents(&self) -> Option<Vec<Vec<u8>>> {
        self.paths().iter().map(|p| std::fs::read(p).ok()).collect()
    }
}

/// What asks for a reload.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Hangup,
    FileChanged,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Hangup => "SIGHUP",
            Trigger::FileChanged => "file change",
        }
    }
}

/// Reloads `node`'s identity from `files` on every SIGHUP (`hangup`) and file change, until
/// the node stops. The files' directories are watched; a watch that cannot be set up is
/// logged and SIGHUP still works.
pub(crate) async fn run(
    node: Node,
    name: NodeName,
    files: IdentityFiles,
    #[cfg(unix)] mut hangup: tokio::signal::unix::Signal,
) {
    let changed = Arc::new(Notify::new());
    let _watcher = watch(&files, changed.clone());
    let mut in_use = files.contents();
    loop {
        #[cfg(unix)]
        let trigger = tokio::select! {
            _ = hangup.recv() => Trigger::Hangup,
            _ = changed.notified() => Trigger::FileChanged,
            _ = node.stopped() => return,
        };
        #[cfg(not(unix))]
        let trigger = tokio::select! {
            _ = changed.notified() => Trigger::FileChanged,
            _ = node.stopped() => return,
        };
        settle(&changed).await;
        let now = files.contents();
        if now.is_some() && now == in_use {
            if let Trigger::Hangup = trigger {
                info!("SIGHUP: the certificate files are unchanged; nothing to reload");
            }
            continue;
        }
        if reload(&node, &name, &files, trigger).await {
            in_use = now;
        }
    }
}

/// Waits until no change has been seen for [`SETTLE`], or [`SETTLE_MAX`] in all (a
/// directory that never stays still does not hold the reload back for ever).
async fn settle(changed: &Notify) {
    let _ = tokio::time::timeout(SETTLE_MAX, async {
        while tokio::time::timeout(SETTLE, changed.notified())
            .await
            .is_ok()
        {}
    })
    .await;
}

/// Loads `files` and hands them to `node`; whether it took them.
async fn reload(node: &Node, name: &NodeName, files: &IdentityFiles, trigger: Trigger) -> bool {
    let loaded = super::agent::load_identity(
        name,
        None,
        Some(files.ca.clone()),
        Some(files.cert.clone()),
        Some(files.key.clone()),
        files.crl.clone(),
    );
    let identity = match loaded {
        Ok((identity, _)) => identity,
        Err(e) => {
            warn!(trigger = trigger.label(), error = %e, "new certificates refused; the identity in use is kept");
            return false;
        }
    };
    match node.reload_identity(&identity).await {
        Ok(()) => {
            let (serial, expires) = node
                .certificate_info(name)
                .map(|c| {
                    let expires = humantime::format_rfc3339_seconds(c.not_after).to_string();
                    (c.serial, expires)
                })
                .unwrap_or_default();
            info!(trigger = trigger.label(), cert = %files.cert.display(), %serial, %expires, "certificates reloaded");
            true
        }
        Err(e) => {
            warn!(trigger = trigger.label(), cert = %files.cert.display(), error = %e, "new certificates refused; the identity in use is kept");
            false
        }
    }
}

/// Watches the directories of `files` (files are often replaced by a rename, which a watch
/// on the file itself would not follow) and wakes `changed` on any change in them.
fn watch(files: &IdentityFiles, changed: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let wake = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            changed.notify_one();
        }
    };
    let mut watcher = match notify::recommended_watcher(wake) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot watch the certificate files; reload them with SIGHUP");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> = files
        .paths()
        .iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            warn!(dir = %dir.display(), error = %e, "cannot watch a certificate directory; reload with SIGHUP");
        }
    }
    Some(watcher)
}
