//! `quicswim bench` as a user runs it, small and quick: the JSON has every figure, each a sane
//! number, and `--out` leaves the raw samples and plots. Speed targets are not asserted here
//! (BENCHMARKS.md has the figures); this checks the harness measures something real.

use std::process::Command;

fn seconds(v: &serde_json::Value, field: &str, stdout: &str) -> f64 {
    let s = v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing or not a number in {stdout}"));
    assert!((0.0..60.0).contains(&s), "{field} = {s}");
    s
}

#[test]
fn bench_json_reports_every_phase_and_out_writes_samples_and_plots() {
    let out_dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_quicswim"))
        .args([
            "bench",
            "--nodes",
            "4",
            "--steady",
            "2s",
            "--kv-window",
            "2s",
        ])
        // No warm-up and a rate four nodes deliver, so the run takes seconds and every
        // figure exists (the defaults aim at 32 nodes and the lan preset's 15 s warm-up).
        .args(["--warmup", "0s", "--kv-rate", "200", "--json", "--out"])
        .arg(out_dir.path())
        .output()
        .expect("run quicswim bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["nodes"], 4);
    assert_eq!(v["profile"], "lan");

    let join = seconds(&v, "join_converged_s", &stdout);
    assert!(join > 0.0, "joining takes some time");
    let p50 = seconds(&v, "broadcast_all_p50_s", &stdout);
    let max = seconds(&v, "broadcast_all_max_s", &stdout);
    assert!(0.0 < p50 && p50 <= max, "p50 {p50} max {max}");
    let suspect = seconds(&v, "detect_first_suspect_s", &stdout);
    let detect = seconds(&v, "detect_all_s", &stdout);
    assert!(
        suspect < detect,
        "a crash is suspected before it is Dead everywhere"
    );

    for field in [
        "cpu_ms_per_node_s",
        "bytes_per_node_s",
        "packets_per_node_s",
        "payload_bytes_per_node_s",
        "datagrams_per_node_s",
    ] {
        let rate = v[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} in {stdout}"));
        assert!(rate.is_finite() && rate > 0.0, "{field} = {rate}");
    }
    // Every node probes about once per protocol period (lan: 1 s).
    let probes = v["steady"]["probes_per_node_s"].as_f64().expect("probes");
    assert!(
        (0.3..3.0).contains(&probes),
        "probes per node per s = {probes}"
    );

    let writes = v["kv"]["writes"].as_u64().expect("kv writes");
    assert!(writes > 0, "{stdout}");
    let kv_rate = v["kv_updates_per_s"].as_f64().expect("kv_updates_per_s");
    assert!(kv_rate > 0.0 && kv_rate <= 2.0 * 200.0, "kv rate {kv_rate}");
    let lag = seconds(&v, "kv_lag_p99_s", &stdout);
    assert!(lag <= 12.0, "within the window and drain: {lag}");
    assert_eq!(v["events_lost"], 0);

    for file in ["report.json", "join.csv", "broadcast.csv", "steady.csv"] {
        let path = out_dir.path().join(file);
        assert!(path.is_file(), "{} missing", path.display());
    }
    let rows = std::fs::read_to_string(out_dir.path().join("detect.csv")).expect("detect.csv");
    assert_eq!(
        rows.lines().count(),
        1 + 3,
        "a header and the three survivors: {rows}"
    );
    for plot in ["broadcast.svg", "detect.svg", "kv.svg"] {
        let svg = std::fs::read_to_string(out_dir.path().join(plot)).expect("plot written");
        assert!(
            svg.starts_with("<svg ") && svg.contains("<polyline"),
            "{plot}"
        );
    }
    scaling_charts_this_run_beside_a_larger_one(out_dir.path(), &v);
}

/// `quicswim scaling` over this run's directory and a second one (this report as if of 8
/// nodes, so no second cluster is started): the table, the CSV and the three charts.
fn scaling_charts_this_run_beside_a_larger_one(run: &std::path::Path, report: &serde_json::Value) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let larger = dir.path().join("n8");
    std::fs::create_dir_all(&larger).unwrap();
    let mut eight = report.clone();
    eight["nodes"] = 8.into();
    std::fs::write(larger.join("report.json"), eight.to_string()).unwrap();
    let charts = dir.path().join("charts");
    let out = Command::new(env!("CARGO_BIN_EXE_quicswim"))
        .args(["scaling", "--out"])
        .arg(&charts)
        .arg(&larger)
        .arg(run)
        .output()
        .expect("run quicswim scaling");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scaling failed: {stderr}");
    let table = String::from_utf8(out.stdout).expect("UTF-8 output");
    let sizes: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(sizes, ["4", "8"], "{table}");
    let csv = std::fs::read_to_string(charts.join("scaling.csv")).expect("scaling.csv");
    let first: Vec<f64> = csv
        .lines()
        .nth(1)
        .expect("a row")
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let cpu = report["cpu_ms_per_node_s"].as_f64().unwrap();
    assert_eq!(first[0], 4.0, "{csv}");
    assert!((first[1] - cpu).abs() < 1e-3, "{csv} against {cpu}");
    for plot in [
        "scaling-cpu.svg",
        "scaling-bytes.svg",
        "scaling-packets.svg",
    ] {
        let svg = std::fs::read_to_string(charts.join(plot)).expect("chart written");
        assert!(
            svg.starts_with("<svg ") && svg.contains("<polyline"),
            "{plot}"
        );
    }
}

#[test]
fn bench_refuses_bad_settings_with_one_line() {
    for args in [
        &["bench", "--nodes", "1"][..],
        &["bench", "--nodes", "4", "--seeds", "4"],
        &["bench", "--profile", "moon"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_quicswim"))
            .args(args)
            .output()
            .expect("run quicswim bench");
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}
