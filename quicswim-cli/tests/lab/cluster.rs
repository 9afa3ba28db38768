//! The lab's containers: a private Docker network made for one run, one agent container per
//! node at a fixed address on it, each with its own certificate, all found through one DNS
//! name (a network alias, which Docker's embedded DNS at 127.0.0.11 answers with every
//! container's address). Everything a run makes carries its labels and is removed when the
//! [`Lab`] drops, however the test ends; a run also removes what an earlier, killed run left.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::docker::{docker, docker_quiet};
use crate::common::process::quicswim_ok;

/// Label on every container and network of any lab run; its value is the run's id.
const LABEL: &str = "quicswim.lab";
/// Label holding the pid of the test process that made the object.
const PID_LABEL: &str = "quicswim.lab.pid";
/// The name every node's seed flag resolves: the network alias all nodes share.
pub const SERVICE: &str = "quicswim";
/// The user the image runs as (deploy/Dockerfile.static).
const IMAGE_UID: u32 = 65532;
pub const CLUSTER_PORT: u16 = 7946;
pub const API_PORT: u16 = 7947;

/// One node: its name, container and address.
pub struct LabNode {
    pub name: String,
    pub container: String,
    pub ip: Ipv4Addr,
    /// The directory mounted read-only at /certs: ca.pem, NAME.pem, NAME-key.pem, no CA key.
    certs: PathBuf,
}

impl LabNode {
    pub fn api(&self) -> String {
        format!("{}:{API_PORT}", self.ip)
    }
}

/// A run's network and containers.
pub struct Lab {
    pub run: String,
    pub network: String,
    pub nodes: Vec<LabNode>,
    image: String,
    /// Holds the CA (its key stays here, never mounted) and one certificate directory per node.
    dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let filter = format!("label={LABEL}={}", self.run);
        remove_containers(&filter);
        docker_quiet(&["network", "rm", &self.network]);
    }
}

fn remove_containers(filter: &str) {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", filter])
        .output();
    let Ok(out) = out else { return };
    let ids = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        docker_quiet(&[&["rm", "--force", "--volumes"][..], &ids].concat());
    }
}

/// Removes the containers and networks of lab runs whose test process is gone (killed before
/// its guard could clean up): their names never clash with a new run's, but they hold memory
/// and addresses.
pub fn sweep_stale_runs() {
    for kind in [&["ps", "-a"][..], &["network", "ls"][..]] {
        let format = format!("{{{{.ID}}}} {{{{.Label \"{PID_LABEL}\"}}}}");
        let filter = format!("label={LABEL}");
        let args = [kind, &["--filter", &filter, "--format", &format]].concat();
        let listing = docker(&args);
        for line in listing.lines() {
            let mut words = line.split_whitespace();
            let (Some(id), pid) = (words.next(), words.next()) else {
                continue;
            };
            let alive = pid.is_some_and(|p| Path::new("/proc").join(p).exists());
            if !alive {
                eprintln!("lab: removing {id}, left by an earlier run");
                if kind[0] == "ps" {
                    docker_quiet(&["rm", "--force", "--volumes", id]);
                } else {
                    docker_quiet(&["network", "rm", id]);
                }
            }
        }
    }
}

/// Issues `name`'s certificate from the CA in `ca_dir` (with `ip` as an IP SAN) and puts it,
/// its key and the CA certificate, and nothing else, into `dest`, readable by the image's
/// user. Returns the certificate's PEM. The one place that knows where `quicswim certs issue`
/// writes its files: it reads them from the lines the command prints.
fn issue_node_certs(ca_dir: &Path, name: &str, ip: Ipv4Addr, dest: &Path) -> String {
    let out = quicswim_ok(&[
        "certs",
        "issue",
        name,
        "--dir",
        ca_dir.to_str().expect("temp paths are UTF-8"),
        "--ip",
        &ip.to_string(),
    ]);
    let written = |prefix: &str| -> PathBuf {
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("`certs issue` printed no {prefix:?} line:\n{out}"));
        let path = line.split(" (").next().expect("split yields one part");
        PathBuf::from(path)
    };
    fs::create_dir_all(dest).expect("make the node's certificate directory");
    let files = [
        (ca_dir.join("ca.pem"), "ca.pem".to_string()),
        (written("wrote certificate "), format!("{name}.pem")),
        (written("wrote private key "), format!("{name}-key.pem")),
    ];
    for (from, to) in files {
        // A new file renamed over the old one: a running container sees either whole.
        let staged = dest.join(format!(".{to}.new"));
        fs::copy(&from, &staged)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), staged.display()));
        chown(&staged, Some(IMAGE_UID), Some(IMAGE_UID))
            .expect("hand the file to the image's user");
        fs::rename(&staged, dest.join(&to)).expect("put the file in place");
    }
    chown(dest, Some(IMAGE_UID), Some(IMAGE_UID)).expect("hand the directory to the image's user");
    fs::read_to_string(dest.join(format!("{name}.pem"))).expect("read the new certificate")
}

impl Lab {
    /// Makes the network and the CA; no node yet.
    pub fn new(image: &str) -> Lab {
        sweep_stale_runs();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let run = format!("{}-{nanos:x}", std::process::id());
        let network = format!("quicswim-lab-{run}");
        let pid_label = format!("{PID_LABEL}={}", std::process::id());
        // `--ip` needs a network whose subnet was given, not chosen: let Docker choose a free
        // one (it avoids the host's routes and other networks), then make the network again
        // with that subnet named.
        let labels = [
            "--label".to_string(),
            format!("{LABEL}={run}"),
            "--label".to_string(),
            pid_label,
        ];
        let create = |extra: &[String]| {
            let args: Vec<&str> = ["network", "create", "--driver", "bridge"]
                .into_iter()
                .chain(labels.iter().map(String::as_str))
                .chain(extra.iter().map(String::as_str))
                .chain([network.as_str()])
                .collect();
            docker(&args);
        };
        create(&[]);
        let subnet = docker(&[
            "network",
            "inspect",
            "--format",
            "{{(index .IPAM.Config 0).Subnet}}",
            &network,
        ]);
        docker(&["network", "rm", &network]);
        create(&["--subnet".to_string(), subnet]);
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("ca");
        quicswim_ok(&["certs", "init", "--dir", ca.to_str().expect("UTF-8")]);
        Lab {
            run,
            network,
            nodes: Vec::new(),
            image: image.to_string(),
            dir,
        }
    }

    /// The network's subnet base and prefix length, as Docker chose them.
    fn subnet(&self) -> (Ipv4Addr, u32) {
        let cidr = docker(&[
            "network",
            "inspect",
            "--format",
            "{{(index .IPAM.Config 0).Subnet}}",
            &self.network,
        ]);
        let (base, len) = cidr
            .split_once('/')
            .unwrap_or_else(|| panic!("subnet {cidr:?} of {}", self.network));
        (
            base.parse().expect("an IPv4 subnet"),
            len.parse().expect("a prefix length"),
        )
    }

    /// Adds `n` nodes (`node1`, `node2`...) at addresses .11, .12... of the network, each
    /// joining through [`SERVICE`], and starts them one after the other.
    pub fn add_nodes(&mut self, n: usize) {
        let (base, len) = self.subnet();
        // .0 is the network, .1 the gateway, the last the broadcast; nodes from .11.
        let room = 1u64 << (32 - len.min(32));
        assert!(
            room > (self.nodes.len() + n) as u64 + 12,
            "subnet /{len} too small for {n} more nodes"
        );
        for _ in 0..n {
            let name = format!("node{}", self.nodes.len() + 1);
            let ip = Ipv4Addr::from(u32::from(base) + 11 + self.nodes.len() as u32);
            let certs = self.dir.path().join(&name);
            issue_node_certs(&self.dir.path().join("ca"), &name, ip, &certs);
            self.nodes.push(LabNode {
                container: format!("quicswim-lab-{}-{name}", self.run),
                name,
                ip,
                certs,
            });
            self.create(self.nodes.len() - 1);
        }
    }

    fn create(&self, i: usize) {
        let node = &self.nodes[i];
        let mount = format!("{}:/certs:ro", node.certs.display());
        let advertise = format!("--advertise={}:{CLUSTER_PORT}", node.ip);
        let ip = node.ip.to_string();
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            &node.container,
            "--label",
            &format!("{LABEL}={}", self.run),
            "--label",
            &format!("{PID_LABEL}={}", std::process::id()),
            "--network",
            &self.network,
            "--ip",
            &ip,
            "--network-alias",
            SERVICE,
            "--hostname",
            &node.name,
            "--volume",
            &mount,
            "--stop-timeout",
            "15",
            "--env",
            "RUST_LOG=info",
            &self.image,
            "agent",
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        args.extend([
            format!("--name={}", node.name),
            format!("--bind=0.0.0.0:{CLUSTER_PORT}"),
            advertise,
            format!("--api=0.0.0.0:{API_PORT}"),
            "--certs=/certs".to_string(),
            format!("--join={SERVICE}:{CLUSTER_PORT}"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args);
    }

    /// A crash: SIGKILL, no leave.
    pub fn kill(&self, i: usize) {
        docker(&["kill", &self.nodes[i].container]);
    }

    /// Starts a stopped or killed node again (same address, same certificate files; no state
    /// kept, the image has no data directory).
    pub fn start(&self, i: usize) {
        docker(&["start", &self.nodes[i].container]);
    }

    /// `docker stop` (SIGTERM: a graceful leave) in the background: the caller watches the
    /// cluster while the agent leaves.
    pub fn stop_in_background(&self, i: usize) -> Child {
        Command::new("docker")
            .args(["stop", &self.nodes[i].container])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn docker stop")
    }

    /// `docker restart`: SIGTERM (a graceful leave), then a fresh start.
    pub fn restart(&self, i: usize) {
        docker(&["restart", &self.nodes[i].container]);
    }

    /// Issues node `i` a new certificate (new key) in place; it takes effect at its next
    /// start. Returns the new certificate's PEM.
    pub fn reissue_certificate(&self, i: usize) -> String {
        let node = &self.nodes[i];
        issue_node_certs(
            &self.dir.path().join("ca"),
            &node.name,
            node.ip,
            &node.certs,
        )
    }

    /// Node `i`'s certificate as mounted now (PEM).
    pub fn certificate(&self, i: usize) -> String {
        let node = &self.nodes[i];
        fs::read_to_string(node.certs.join(format!("{}.pem", node.name)))
            .expect("read the node's certificate")
    }

    /// The pid of node `i`'s agent on the host, for entering its network namespace.
    pub fn pid(&self, i: usize) -> u32 {
        let pid = docker(&[
            "inspect",
            "--format",
            "{{.State.Pid}}",
            &self.nodes[i].container,
        ]);
        match pid.parse() {
            Ok(p) if p > 0 => p,
            _ => panic!("{} is not running (pid {pid:?})", self.nodes[i].container),
        }
    }

    /// The last lines of node `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let out = Command::new("docker")
            .args([
                "logs",
                "--tail",
                &lines.to_string(),
                &self.nodes[i].container,
            ])
            .output();
        match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("(no log: {e})"),
        }
    }
}
