//! Health and operations through the real binary: `/ready`, `monitor`, `leave` through the
//! API, `force-leave` and the `members` filters. Every wait is for a condition under a
//! deadline; every child process is killed when its guard drops.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::process::*;
use common::DEADLINE;
use serde_json::Value;

/// `GET /ready` on `agent`'s API: the status and the JSON body.
fn ready(agent: &Agent) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (status, body) = runtime.block_on(common::get(agent.api, "/ready"));
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

/// A UDP address on 127.0.0.1 that nothing listens on: a port bound, then released.
fn unused_udp_addr() -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    socket.local_addr().expect("bound address")
}

#[test]
fn ready_is_503_until_a_seed_answers_then_200() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let config = write_fast_config(dir);
    let common = [
        "--config",
        config.to_str().unwrap(),
        "--certs",
        certs.to_str().unwrap(),
    ];
    // bob's seed is where alice will be, before she is.
    let seed = unused_udp_addr().to_string();
    let bob = Agent::start(
        dir,
        "bob",
        &[&common[..], &["--bind", "127.0.0.1:0", "--join", &seed]].concat(),
    );
    let (status, body) = ready(&bob);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["reason"], "not joined: no seed has answered yet");
    // Liveness is another matter: the driver answers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert_eq!(runtime.block_on(common::get(bob.api, "/health")).0, 200);

    // A seedless node that is not --bootstrap waits to be joined.
    let carol = Agent::start(
        dir,
        "carol",
        &[&common[..], &["--bind", "127.0.0.1:0"]].concat(),
    );
    let (status, body) = ready(&carol);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("no seeds"),
        "{body}"
    );

    // alice, a deliberate first node, is ready alone; bob's retries then reach her.
    let alice = Agent::start(
        dir,
        "alice",
        &[&common[..], &["--bind", &seed, "--bootstrap"]].concat(),
    );
    let (status, body) = ready(&alice);
    assert_eq!(
        (status, &body["ready"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    wait_for("bob ready", DEADLINE, &[&alice, &bob], || {
        ready(&bob).0 == 200
    });
    let (_, body) = ready(&bob);
    assert_eq!(body["ready"], true);
    assert_eq!(body["name"], "bob");
    assert_eq!(ready(&carol).0, 503, "nobody joined carol");
}

/// A running `quicswim monitor --json`: its stdout lines and its stderr lines as they come.
struct Monitor {
    process: ChildGuard,
    lines: mpsc::Receiver<String>,
    notes: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Monitor {
    fn start(agent: &Agent) -> Monitor {
        let mut child = Command::new(BIN)
            .args(["monitor", "--json", "--api", &agent.api.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn monitor");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let pipe = |reader: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { return };
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let monitor = Monitor {
            lines: pipe(Box::new(stdout)),
            notes: pipe(Box::new(stderr)),
            process: ChildGuard(child),
            seen: Vec::new(),
        };
        // Subscribed once it says so: the agent subscribes before it answers.
        let note = monitor
            .notes
            .recv_timeout(DEADLINE)
            .expect("monitor says it is monitoring");
        assert!(note.starts_with("monitoring"), "{note}");
        monitor
    }

    /// Waits for a line for which `wanted` holds, keeping every line seen.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no monitor line for {what}; saw {:?}", self.seen));
            let json: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            self.seen.push(json.clone());
            if wanted(&json) {
                return json;
            }
        }
    }
}

fn member_event(name: &'static str, event: &'static str) -> impl Fn(&Value) -> bool {
    move |line: &Value| line["type"] == "member" && line["name"] == name && line["event"] == event
}

#[test]
fn monitor_leave_force_leave_and_member_filters_work_on_a_live_cluster() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let certs = make_certs(dir, "certs", &["alice", "bob", "carol"]);
    let [mut alice, mut bob, mut carol] = start_three(dir, &certs, &[]);
    let all = [&alice, &bob, &carol];
    for agent in all {
        wait_for("three alive members", DEADLINE, &all, || {
            agent
                .members()
                .iter()
                .filter(|m| m["state"] == "alive")
                .count()
                == 3
        });
        wait_for("ready", DEADLINE, &all, || ready(agent).0 == 200);
    }
    let api = |a: &Agent| a.api.to_string();

    // monitor: a key written on bob, then carol killed with -9: suspect, then dead.
    let mut monitor = Monitor::start(&alice);
    quicswim_ok(&["kv", "set", "color", "blue", "--api", &api(&bob)]);
    let kv = monitor.wait_for("bob's key", |l| l["type"] == "kv");
    assert_eq!(
        (&kv["owner"], &kv["key"]),
        (&Value::from("bob"), &Value::from("color"))
    );
    carol.process.0.kill().expect("SIGKILL carol");
    carol.wait_exit();
    let suspect = monitor.wait_for("carol suspect", member_event("carol", "suspect"));
    assert_eq!(suspect["state"], "suspect");
    assert!(
        suspect["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{suspect}"
    );
    monitor.wait_for("carol dead", member_event("carol", "dead"));

    // members filters, on alice's view: alice and bob alive, carol dead.
    let names_of = |args: &[&str]| {
        let out = quicswim_ok(&[&["members", "--json", "--api", &api(&alice)], args].concat());
        names(
            serde_json::from_str::<Value>(&out)
                .unwrap()
                .as_array()
                .unwrap(),
        )
    };
    assert_eq!(names_of(&["--state", "dead"]), ["carol"]);
    assert_eq!(names_of(&["--state", "alive"]), ["alice", "bob"]);
    assert_eq!(names_of(&["--state", "suspect,dead"]), ["carol"]);
    assert_eq!(names_of(&["--name", "?ob"]), ["bob"]);
    assert_eq!(names_of(&["--name", "*l*"]), ["alice", "carol"]);
    assert_eq!(names_of(&["--name", "*l*", "--state", "alive"]), ["alice"]);
    assert!(names_of(&["--name", "x*"]).is_empty());
    let table = quicswim_ok(&["members", "--api", &api(&alice), "--state", "dead"]);
    assert!(table.contains("carol") && !table.contains("bob"), "{table}");

    // force-leave: refused for a live member, done for the dead one.
    let line = one_error_line(&quicswim(&["force-leave", "bob", "--api", &api(&alice)]));
    assert!(line.contains("bob is alive"), "{line}");
    let line = one_error_line(&quicswim(&["force-leave", "nobody", "--api", &api(&alice)]));
    assert!(line.contains("nobody"), "{line}");
    quicswim_ok(&["force-leave", "carol", "--api", &api(&alice)]);
    assert_eq!(names(&alice.members()), ["alice", "bob"]);

    // leave through the API: the others see bob Left, and bob's agent exits 0.
    let out = quicswim_ok(&["leave", "--api", &api(&bob)]);
    assert!(out.contains("bob left"), "{out}");
    assert!(out.contains("confirmed by alice"), "{out}");
    monitor.wait_for("bob left", member_event("bob", "left"));
    assert_eq!(alice.state_of("bob").as_deref(), Some("left"));
    let status = bob.wait_exit();
    assert!(
        status.success(),
        "bob exited with {status}; log:\n{}",
        bob.log()
    );
    assert!(bob.log().contains("through the API"), "{}", bob.log());

    // alice, alone and not --bootstrap, is no longer ready.
    let (status, body) = ready(&alice);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap().starts_with("no live peer"),
        "{body}"
    );

    // The monitor ends, cleanly, when its agent goes away.
    alice.signal("-TERM");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = monitor.process.0.try_wait().expect("poll monitor") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "monitor did not end with its agent"
        );
        thread::sleep(Duration::from_millis(20)); // poll interval, not a settle wait
    };
    assert!(status.success(), "monitor exited with {status}");
    let note = monitor
        .notes
        .recv_timeout(DEADLINE)
        .expect("a closing note");
    assert!(note.contains("ended the stream"), "{note}");
    assert!(alice.wait_exit().success());
}
