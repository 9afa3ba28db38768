//! Driving the real `quicswim` binary the way a user would: `certs` to make certificates,
//! `agent` processes on 127.0.0.1, and one-shot client commands. Every wait is for a condition
//! under a deadline; every child process is killed when its guard drops.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::DEADLINE;

pub const BIN: &str = env!("CARGO_BIN_EXE_quicswim");

/// Protocol timings fast enough that a crash is detected in seconds.
pub const FAST_CONFIG: &str = r#"
profile = "lan"
api = "127.0.0.1:0"

[protocol]
probe_interval = "300ms"
probe_timeout = "150ms"
gossip_interval = "50ms"
suspicion_mult = 3
suspicion_max_timeout_mult = 6
suspicion_confirmations = 1
indirect_checks = 2
join_retry_interval = "500ms"
reconnect_interval = "2s"
"#;

/// Writes [`FAST_CONFIG`] to `dir/fast.toml` and returns its path.
pub fn write_fast_config(dir: &Path) -> PathBuf {
    let config = dir.join("fast.toml");
    fs::write(&config, FAST_CONFIG).expect("write fast.toml");
    config
}

/// The flags of a test agent on 127.0.0.1 (any free port) with `config` and the
/// certificates in `certs`.
pub fn local_args<'a>(config: &'a Path, certs: &'a Path) -> [&'a str; 6] {
    [
        "--bind",
        "127.0.0.1:0",
        "--config",
        config.to_str().expect("test paths are UTF-8"),
        "--certs",
        certs.to_str().expect("test paths are UTF-8"),
    ]
}

/// Starts alice, then bob and carol joining through her, all bound to 127.0.0.1 port 0 with
/// [`FAST_CONFIG`] and the certificates in `certs`; `alice_args` go to alice alone. Returns
/// once each has printed its addresses: waiting for the cluster to form is the caller's.
pub fn start_three(dir: &Path, certs: &Path, alice_args: &[&str]) -> [Agent; 3] {
    let config = write_fast_config(dir);
    let common = local_args(&config, certs);
    let alice = Agent::start(dir, "alice", &[&common[..], alice_args].concat());
    let seed = alice.addr.to_string();
    let joining = [&common[..], &["--join", &seed]].concat();
    let bob = Agent::start(dir, "bob", &joining);
    let carol = Agent::start(dir, "carol", &joining);
    [alice, bob, carol]
}

/// An address on 127.0.0.1 that nothing listens on: a port bound, then released.
pub fn unused_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("bound address")
}

/// Runs `quicswim ARGS` to completion; it must finish within DEADLINE.
pub fn quicswim(args: &[&str]) -> Output {
    quicswim_with_input(args, None)
}

/// Runs `quicswim ARGS` to completion with `input` (if any) on its standard input, which is
/// then closed; it must finish within DEADLINE.
pub fn quicswim_with_input(args: &[&str], input: Option<Vec<u8>>) -> Output {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn quicswim");
    let pid = child.id().to_string();
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        // A thread, so a child that stops reading early cannot block the test; dropping the
        // pipe closes it.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let (done, output) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("collect output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("quicswim {args:?} did not finish within {DEADLINE:?}");
        }
    }
}

/// Runs `quicswim ARGS` and expects success.
pub fn quicswim_ok(args: &[&str]) -> String {
    let out = quicswim(args);
    assert!(
        out.status.success(),
        "quicswim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Kills and reaps a child process when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `quicswim agent`.
pub struct Agent {
    pub name: String,
    pub process: ChildGuard,
    /// The cluster (QUIC/UDP) address it printed.
    pub addr: SocketAddr,
    /// The API address it printed.
    pub api: SocketAddr,
    pub log: PathBuf,
    /// Where it runs, and its arguments after `--name NAME`, to start it again.
    dir: PathBuf,
    args: Vec<String>,
}

impl Agent {
    /// Starts `quicswim agent --name NAME ARGS...` and reads the address line it prints.
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Agent {
        let log = dir.join(format!("{name}.log"));
        let stderr = fs::File::create(&log).expect("create log file");
        let child = Command::new(BIN)
            .arg("agent")
            .args(["--name", name])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn agent");
        let mut process = ChildGuard(child);
        let stdout = process.0.stdout.take().expect("piped stdout");
        let (lines, first) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = lines.send(line);
            }
        });
        let line = first.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            panic!(
                "agent {name} printed no address line; log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            )
        });
        // "node NAME bound to ADDR (advertised as ADDR); API at http://ADDR"
        let addr = word_after(&line, "advertised as ").trim_end_matches(");");
        let api = word_after(&line, "API at http://");
        Agent {
            name: name.to_string(),
            addr: addr
                .parse()
                .unwrap_or_else(|_| panic!("address in {line:?}")),
            api: api
                .parse()
                .unwrap_or_else(|_| panic!("API address in {line:?}")),
            process,
            log,
            dir: dir.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Starts this agent again, in the same directory with the same arguments: a restart
    /// with no state, as after a crash.
    pub fn start_again(&self) -> Agent {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Agent::start(&self.dir, &self.name, &args)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `quicswim members --api THIS --json`.
    pub fn members(&self) -> Vec<Value> {
        let out = quicswim_ok(&["members", "--api", &self.api.to_string(), "--json"]);
        serde_json::from_str::<Value>(&out)
            .expect("members --json prints JSON")
            .as_array()
            .expect("an array")
            .clone()
    }

    pub fn state_of(&self, who: &str) -> Option<String> {
        self.members()
            .iter()
            .find(|m| m["name"] == who)
            .map(|m| m["state"].as_str().expect("state is a string").to_string())
    }

    pub fn metrics(&self) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (status, text) = runtime.block_on(super::get(self.api, "/metrics"));
        assert_eq!(status, 200, "{text}");
        text
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.process.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.process.0.try_wait().expect("poll child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent {} did not exit",
                self.name
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn word_after<'a>(line: &'a str, marker: &str) -> &'a str {
    let start = line
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {line:?}"))
        + marker.len();
    line[start..].split_whitespace().next().unwrap_or_default()
}

/// Polls `check` until it holds; at the deadline panics with `what` and the agents' logs.
pub fn wait_for(what: &str, within: Duration, agents: &[&Agent], mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() > deadline {
            let mut views = String::new();
            for a in agents {
                let view = a
                    .members()
                    .iter()
                    .map(|m| format!("{}={}", m["name"], m["state"]))
                    .collect::<Vec<_>>()
                    .join(" ");
                views.push_str(&format!("\n  {}: {view}\n{}", a.name, a.log()));
            }
            panic!("timed out after {within:?} waiting for {what}; views and logs:{views}");
        }
        thread::sleep(Duration::from_millis(100)); // poll interval, not a settle wait
    }
}

pub fn names(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// Makes a CA in `dir/sub` and certificates for `nodes` signed by it.
pub fn make_certs(dir: &Path, sub: &str, nodes: &[&str]) -> PathBuf {
    let certs = dir.join(sub);
    let certs_arg = certs.to_str().unwrap();
    quicswim_ok(&["certs", "init", "--dir", certs_arg]);
    for node in nodes {
        issue_cert(&certs, node, &[]);
    }
    certs
}

/// `quicswim certs issue NAME --dir CERTS --ip 127.0.0.1 EXTRA...`: what it printed.
pub fn issue_cert(certs: &Path, name: &str, extra: &[&str]) -> String {
    let certs_arg = certs.to_str().expect("test paths are UTF-8");
    let args = [
        "certs",
        "issue",
        name,
        "--dir",
        certs_arg,
        "--ip",
        "127.0.0.1",
    ];
    quicswim_ok(&[&args[..], extra].concat())
}

/// The one line a failed command printed on stderr.
pub fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "exit status {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    lines[0].to_string()
}

/// Runs `quicswim agent --name NAME ARGS... --join-timeout 3s` to the end and asserts that
/// it stops with exit 1, saying its certificate was revoked.
pub fn assert_join_refused_as_revoked(name: &str, args: &[&str]) {
    let out = quicswim(
        &[
            &["agent", "--name", name][..],
            args,
            &["--join-timeout", "3s"],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.to_lowercase().contains("revoked"), "{stderr}");
}

/// `quicswim certs revoke WHO --dir CERTS --out OUT`: its output.
pub fn certs_revoke(certs: &Path, who: &str, out: &Path) -> String {
    quicswim_ok(&[
        "certs",
        "revoke",
        who,
        "--dir",
        certs.to_str().expect("test paths are UTF-8"),
        "--out",
        out.to_str().expect("test paths are UTF-8"),
    ])
}
