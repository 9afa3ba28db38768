//! Network faults applied from outside the agents: nftables rules in each container's network
//! namespace, loaded from the host with `nsenter -t PID -n nft -f -` (the image has no nft and
//! the agents never know). One table per node, `quicswim_lab`, replaced whole by each fault
//! and deleted to heal; the rules name only other nodes' addresses, so the host's requests to
//! the control API and Docker's DNS are never touched.
//!
//! `tc netem` is not available on the kernels this runs on; `numgen random` drops a share of
//! packets instead (no delay, no reordering).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::cluster::Lab;

const TABLE: &str = "quicswim_lab";

/// Whether `nsenter` and `nft` are here and we may enter other namespaces (root); the reason
/// when not.
pub fn unavailable() -> Option<String> {
    for tool in ["nsenter", "nft"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("`{tool}` is not installed (nftables, util-linux)"));
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        return Some("entering the containers' network namespaces needs root".to_string());
    }
    None
}

fn set(ips: &[Ipv4Addr]) -> String {
    let list: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
    format!("{{ {} }}", list.join(", "))
}

/// Loads `script` into node `i`'s network namespace.
fn nft(lab: &Lab, i: usize, script: &str) {
    let pid = lab.pid(i).to_string();
    let mut child = Command::new("nsenter")
        .args(["-t", &pid, "-n", "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nsenter");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .expect("write the nft script");
    let out = child.wait_with_output().expect("wait for nft");
    assert!(
        out.status.success(),
        "nft in {}'s namespace failed: {}\nscript:\n{script}",
        lab.nodes[i].name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replaces node `i`'s table with one whose input and output chains hold `input` and
/// `output` rules.
fn load(lab: &Lab, i: usize, input: &str, output: &str) {
    // `add` then `delete` makes the delete succeed whether or not the table existed; the
    // whole file is one transaction.
    let script = format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
           chain input {{\n    type filter hook input priority 0; policy accept;\n    {input}\n  }}\n\
           chain output {{\n    type filter hook output priority 0; policy accept;\n    {output}\n  }}\n\
         }}\n"
    );
    nft(lab, i, &script);
}

/// Cuts the nodes in `side` off from every other node, both ways; each node's own rules
/// drop what comes from, and what goes to, the other side.
pub fn partition(lab: &Lab, side: &[usize]) {
    let n = lab.nodes.len();
    for i in 0..n {
        let mine = side.contains(&i);
        let others: Vec<Ipv4Addr> = (0..n)
            .filter(|j| side.contains(j) != mine)
            .map(|j| lab.nodes[j].ip)
            .collect();
        let set = set(&others);
        load(
            lab,
            i,
            &format!("ip saddr {set} drop"),
            &format!("ip daddr {set} drop"),
        );
    }
}

/// Drops `percent` % of the packets each node receives from the other nodes, at random: every
/// packet between two nodes crosses one such filter, so each link loses `percent` %.
pub fn loss(lab: &Lab, percent: u32) {
    assert!(percent <= 100, "loss of {percent} %");
    let n = lab.nodes.len();
    for i in 0..n {
        let others: Vec<Ipv4Addr> = (0..n)
            .filter(|&j| j != i)
            .map(|j| lab.nodes[j].ip)
            .collect();
        load(
            lab,
            i,
            &format!(
                "ip saddr {} numgen random mod 100 < {percent} drop",
                set(&others)
            ),
            "",
        );
    }
}

/// Removes every fault from node `i`.
pub fn heal_node(lab: &Lab, i: usize) {
    nft(
        lab,
        i,
        &format!("add table inet {TABLE}\ndelete table inet {TABLE}\n"),
    );
}

/// Removes every fault from every node.
pub fn heal(lab: &Lab) {
    for i in 0..lab.nodes.len() {
        heal_node(lab, i);
    }
}
