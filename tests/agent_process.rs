//! The real `quicswim` binary, driven the way a user would: `certs init`, `certs issue`,
//! `agent` processes on 127.0.0.1 and `members --json`. Every wait is for a condition under a
//! deadline; every child process is killed when its guard drops.
#![cfg(unix)]

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest any one condition may take; generous so a loaded machine does not flake.
const DEADLINE: Duration = Duration::from_secs(40);
/// How soon a SIGTERMed agent must show as left.
const LEAVE_DEADLINE: Duration = Duration::from_secs(5);

const BIN: &str = env!("CARGO_BIN_EXE_quicswim");

/// Protocol timings fast enough that a crash is detected in seconds.
const FAST_CONFIG: &str = r#"
profile = "lan"
api = "127.0.0.1:0"

[protocol]
probe_interval = "300ms"
probe_timeout = "150ms"
gossip_interval = "50ms"
suspicion_mult = 3
indirect_checks = 2
join_retry_interval = "500ms"
reconnect_interval = "2s"
"#;

/// Runs `quicswim ARGS` to completion; it must finish within DEADLINE.
fn quicswim(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn quicswim");
    let pid = child.id().to_string();
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
fn quicswim_ok(args: &[&str]) -> String {
    let out = quicswim(args);
    assert!(
        out.status.success(),
        "quicswim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Kills and reaps a child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `quicswim agent`.
struct Agent {
    name: String,
    process: ChildGuard,
    /// The cluster (QUIC/UDP) address it printed.
    addr: SocketAddr,
    /// The API address it printed.
    api: SocketAddr,
    log: PathBuf,
}

impl Agent {
    /// Starts `quicswim agent --name NAME ARGS...` and reads the address line it prints.
    fn start(dir: &Path, name: &str, args: &[&str]) -> Agent {
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
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `quicswim members --api THIS --json`.
    fn members(&self) -> Vec<Value> {
        let out = quicswim_ok(&["members", "--api", &self.api.to_string(), "--json"]);
        serde_json::from_str::<Value>(&out)
            .expect("members --json prints JSON")
            .as_array()
            .expect("an array")
            .clone()
    }

    fn state_of(&self, who: &str) -> Option<String> {
        self.members()
            .iter()
            .find(|m| m["name"] == who)
            .map(|m| m["state"].as_str().expect("state is a string").to_string())
    }

    fn metrics(&self) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (status, text) = runtime.block_on(common::get(self.api, "/metrics"));
        assert_eq!(status, 200, "{text}");
        text
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.process.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
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

fn word_after<'a>(line: &'a str, marker: &str) -> &'a str {
    let start = line
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {line:?}"))
        + marker.len();
    line[start..].split_whitespace().next().unwrap_or_default()
}

/// Polls `check` until it holds; at the deadline panics with `what` and the agents' logs.
fn wait_for(what: &str, within: Duration, agents: &[&Agent], mut check: impl FnMut() -> bool) {
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

fn names(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// Makes a CA in `dir/sub` and certificates for `nodes` signed by it.
fn make_certs(dir: &Path, sub: &str, nodes: &[&str]) -> PathBuf {
    let certs = dir.join(sub);
    let certs_arg = certs.to_str().unwrap();
    quicswim_ok(&["certs", "init", "--dir", certs_arg]);
    for node in nodes {
        quicswim_ok(&[
            "certs",
            "issue",
            node,
            "--dir",
            certs_arg,
            "--ip",
            "127.0.0.1",
        ]);
    }
    certs
}

/// The one line a failed command printed on stderr.
fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "exit status {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    lines[0].to_string()
}

#[test]
fn agents_form_a_cluster_refuse_strangers_and_report_dead_and_left() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let foreign = make_certs(dir, "foreign", &["mallory"]);
    let config = dir.join("fast.toml");
    fs::write(&config, FAST_CONFIG).unwrap();
    let certs = certs.to_str().unwrap();
    let common = [
        "--bind",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ];

    let alice = Agent::start(dir, "alice", &[&common[..], &["--certs", certs]].concat());
    let seed = alice.addr.to_string();
    let joining = [&common[..], &["--certs", certs, "--join", &seed]].concat();
    let mut bob = Agent::start(dir, "bob", &joining);
    let mut carol = Agent::start(dir, "carol", &joining);
    let all = [&alice, &bob, &carol];
    for agent in all {
        wait_for("three alive members", DEADLINE, &all, || {
            let members = agent.members();
            names(&members) == ["alice", "bob", "carol"]
                && members.iter().all(|m| m["state"] == "alive")
        });
    }
    let alice_view = alice.members();
    assert_eq!(alice_view[0]["addr"], alice.addr.to_string());
    for m in &alice_view {
        let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["addr", "incarnation", "name", "state"]);
    }

    // An impostor: --name alice with bob's certificate. It must stop before joining.
    let started = Instant::now();
    let out = quicswim(
        &[
            &["agent", "--name", "alice"],
            &common[..],
            &[
                "--ca",
                &format!("{certs}/ca.pem"),
                "--cert",
                &format!("{certs}/bob.pem"),
                "--key",
                &format!("{certs}/bob-key.pem"),
                "--join",
                &seed,
            ],
        ]
        .concat(),
    );
    let line = one_error_line(&out);
    assert!(
        line.contains("bob.pem") && line.contains("\"bob\"") && line.contains("\"alice\""),
        "{line}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "impostor was slow to fail"
    );

    // A stranger from another CA: refused at the handshake, never a member anywhere.
    let foreign = foreign.to_str().unwrap();
    let mallory = Agent::start(
        dir,
        "mallory",
        &[&common[..], &["--certs", foreign, "--join", &seed]].concat(),
    );
    wait_for(
        "alice to refuse mallory's handshake",
        DEADLINE,
        &all,
        || {
            let text = alice.metrics();
            ["unknown_ca", "bad_name", "other"].iter().any(|reason| {
                let label = format!("reason=\"{reason}\"");
                common::metric(&text, "quicswim_handshakes_refused_total", Some(&label))
                    .is_some_and(|n| n >= 1.0)
            })
        },
    );
    let unknown_ca = |a: &Agent| {
        common::metric(
            &a.metrics(),
            "quicswim_handshakes_refused_total",
            Some("reason=\"unknown_ca\""),
        )
        .unwrap()
    };
    assert!(
        unknown_ca(&alice) + unknown_ca(&mallory) >= 1.0,
        "the refusal was not classed unknown_ca:\n{}\n{}\n{}",
        alice.metrics(),
        mallory.metrics(),
        mallory.log()
    );
    for agent in all {
        assert_eq!(names(&agent.members()), ["alice", "bob", "carol"]);
    }
    assert_eq!(names(&mallory.members()), ["mallory"]);

    // kill -9: carol is declared dead by the others.
    carol.process.0.kill().expect("SIGKILL carol");
    carol.wait_exit();
    for agent in [&alice, &bob] {
        wait_for("carol dead", DEADLINE, &[&alice, &bob], || {
            agent.state_of("carol").as_deref() == Some("dead")
        });
    }

    // SIGTERM: bob leaves gracefully, shows as left (not dead) within seconds, exits 0.
    bob.signal("-TERM");
    wait_for("bob left", LEAVE_DEADLINE, &[&alice], || {
        alice.state_of("bob").as_deref() == Some("left")
    });
    let status = bob.wait_exit();
    assert!(
        status.success(),
        "bob exited with {status}; log:\n{}",
        bob.log()
    );
    assert!(bob.log().contains("SIGTERM"), "{}", bob.log());

    // Neither the stranger nor the impostor ever became a member.
    let final_view = alice.members();
    assert_eq!(names(&final_view), ["alice", "bob", "carol"]);
    assert_eq!(final_view[0]["addr"], alice.addr.to_string());
    assert_eq!(names(&mallory.members()), ["mallory"]);
}

#[test]
fn user_errors_print_one_line_naming_the_culprit() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice"]);
    let certs = certs.to_str().unwrap();

    // An unknown key in the config file: the file and the key are named.
    let bad = dir.join("bad.toml");
    fs::write(&bad, "name = \"alice\"\nprobe_interval = \"1s\"\n").unwrap();
    let line = one_error_line(&quicswim(&["agent", "--config", bad.to_str().unwrap()]));
    assert!(
        line.contains("bad.toml") && line.contains("probe_interval"),
        "{line}"
    );

    // An unknown protocol key.
    fs::write(&bad, "[protocol]\nprobe_intervall = \"1s\"\n").unwrap();
    let bad_arg = bad.to_str().unwrap();
    let args = ["agent", "--name", "alice", "--bind", "127.0.0.1:0"];
    let line = one_error_line(&quicswim(
        &[&args[..], &["--certs", certs, "--config", bad_arg]].concat(),
    ));
    assert!(
        line.contains("bad.toml") && line.contains("probe_intervall"),
        "{line}"
    );

    // No certificate for the name in --certs.
    let line = one_error_line(&quicswim(&[
        "agent",
        "--name",
        "dave",
        "--bind",
        "127.0.0.1:0",
        "--certs",
        certs,
    ]));
    assert!(line.contains("dave.pem"), "{line}");

    // An API nobody listens on.
    let unused = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap()
    };
    let line = one_error_line(&quicswim(&["members", "--api", &unused.to_string()]));
    assert!(line.contains(&unused.to_string()), "{line}");
}
