//! The README's first command, as a user runs it: `quicswim demo`.

use std::process::Command;

#[test]
fn demo_json_reports_every_step() {
    let out = Command::new(env!("CARGO_BIN_EXE_quicswim"))
        .args(["demo", "--nodes", "4", "--json"])
        .output()
        .expect("run quicswim demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["nodes"], 4);
    for field in [
        "formed_s",
        "kv_all_s",
        "suspect_s",
        "detect_s",
        "rejoin_s",
        "total_s",
    ] {
        let secs = v[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing in {stdout}"));
        assert!(secs > 0.0 && secs < 60.0, "{field} = {secs}");
    }
    // A crash is suspected before it is declared dead everywhere.
    assert!(v["suspect_s"].as_f64() <= v["detect_s"].as_f64());
    assert!(v["incarnation_after"].as_u64() > v["incarnation_before"].as_u64());
}

#[test]
fn demo_refuses_a_bad_node_count_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_quicswim"))
        .args(["demo", "--nodes", "1"])
        .output()
        .expect("run quicswim demo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--nodes"), "{stderr}");
}
