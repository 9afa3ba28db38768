//! Raw samples as CSV, plots as SVG, and the report as JSON, for `--out DIR`.
//!
//! ```text
//!   report.json     the figures, as printed by --json
//!   join.csv        node, converged_s
//!   broadcast.csv   update, origin, node, latency_s        broadcast.svg
//!   steady.csv      node, wire_bytes_out, wire_bytes_in, packets_out, packets_in (QUIC's
//!                   counts), payload_bytes_out, payload_bytes_in, datagrams_out,
//!                   datagrams_in, requests_out, dials, idle_closed
//!   kv.csv          write, owner, set_s, nodes_delivered, all_lag_s    kv.svg
//!   detect.csv      node, suspect_s, dead_s                 detect.svg
//! ```
//! An empty CSV cell means "did not happen within the bound".

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::style::RGBColor;

use super::broadcast::UpdateSample;
use super::detect::DetectSample;
use super::join::JoinSamples;
use super::kv::WriteSample;
use super::stats::{mean_curve, share_curve};
use super::steady::SteadyNodeSample;
use super::svg::{Chart, Series};
use super::{BenchReport, Error};

/// Everything a run recorded sample by sample.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Join phase, per node.
    pub join: JoinSamples,
    /// Broadcast phase, per update.
    pub broadcast: Vec<UpdateSample>,
    /// Steady phase, per node.
    pub steady: Vec<SteadyNodeSample>,
    /// Key/value phase, per write (absent when skipped).
    pub kv: Option<Vec<WriteSample>>,
    /// Detection phase, per other node.
    pub detect: Vec<DetectSample>,
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.6}"))
}

fn join_csv(samples: &JoinSamples) -> String {
    let mut s = String::from("node,converged_s\n");
    for (i, t) in samples.iter().enumerate() {
        let _ = writeln!(s, "{i},{}", cell(*t));
    }
    s
}

fn broadcast_csv(samples: &[UpdateSample]) -> String {
    let mut s = String::from("update,origin,node,latency_s\n");
    for (u, sample) in samples.iter().enumerate() {
        for (i, l) in sample.latencies.iter().enumerate() {
            if i != sample.origin {
                let _ = writeln!(s, "{u},{},{i},{}", sample.origin, cell(*l));
            }
        }
    }
    s
}

fn steady_csv(samples: &[SteadyNodeSample]) -> String {
    let mut s = String::from(
        "node,wire_bytes_out,wire_bytes_in,packets_out,packets_in,payload_bytes_out,payload_bytes_in,\
         datagrams_out,datagrams_in,requests_out,dials,idle_closed\n",
    );
    for n in samples {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            n.node,
            n.wire_bytes_out,
            n.wire_bytes_in,
            n.packets_out,
            n.packets_in,
            n.payload_bytes_out,
            n.payload_bytes_in,
            n.datagrams_out,
            n.datagrams_in,
            n.requests_out,
            n.dials,
            n.idle_closed
        );
    }
    s
}

fn kv_csv(samples: &[WriteSample]) -> String {
    let mut s = String::from("write,owner,set_s,nodes_delivered,all_lag_s\n");
    for (w, k) in samples.iter().enumerate() {
        let _ = writeln!(
            s,
            "{w},{},{:.6},{},{}",
            k.owner,
            k.set_s,
            k.nodes_delivered,
            cell(k.all_lag_s)
        );
    }
    s
}

fn detect_csv(samples: &[DetectSample]) -> String {
    let mut s = String::from("node,suspect_s,dead_s\n");
    for d in samples {
        let _ = writeln!(s, "{},{},{}", d.node, cell(d.suspect_s), cell(d.dead_s));
    }
    s
}

/// Share of the other nodes that had each update, over time since it was made: one thin
/// line per update, and their mean.
fn broadcast_chart(report: &BenchReport, samples: &[UpdateSample]) -> Chart {
    let curves: Vec<Vec<(f64, f64)>> = samples
        .iter()
        .map(|s| share_curve(&s.latencies, s.latencies.len().saturating_sub(1)))
        .collect();
    let x_max = curves
        .iter()
        .flat_map(|c| c.iter().map(|(x, _)| *x))
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.05;
    let mut series: Vec<Series> = curves
        .iter()
        .map(|c| {
            let mut points = c.clone();
            points.push((x_max, points.last().map_or(0.0, |p| p.1)));
            Series {
                label: String::new(),
                colour: RGBColor(0x9d, 0xb4, 0xd6),
                width: 1,
                dots: false,
                points,
            }
        })
        .collect();
    series.push(Series {
        label: format!("mean of {} updates", samples.len()),
        colour: RGBColor(0x1f, 0x4e, 0x9a),
        width: 3,
        dots: false,
        points: mean_curve(&curves, x_max, 400),
    });
    Chart {
        title: format!(
            "Dissemination: {} nodes, {} profile",
            report.nodes, report.profile
        ),
        x_label: "seconds since the update was made".into(),
        y_label: "share of other nodes that have it".into(),
        x_max,
        y_max: 1.0,
        series,
    }
}

/// Share of the other nodes that suspect, and that hold Dead, the crashed node over time.
fn detect_chart(report: &BenchReport, samples: &[DetectSample]) -> Chart {
    let suspect: Vec<Option<f64>> = samples.iter().map(|s| s.suspect_s).collect();
    let dead: Vec<Option<f64>> = samples.iter().map(|s| s.dead_s).collect();
    let x_max = suspect
        .iter()
        .chain(&dead)
        .flatten()
        .fold(0.0, |a: f64, b| a.max(*b))
        .max(0.1)
        * 1.05;
    let finish = |mut c: Vec<(f64, f64)>| {
        let last = c.last().map_or(0.0, |p| p.1);
        c.push((x_max, last));
        c
    };
    Chart {
        title: format!(
            "Failure detection: {} nodes, {} profile",
            report.nodes, report.profile
        ),
        x_label: "seconds since the crash".into(),
        y_label: "share of other nodes".into(),
        x_max,
        y_max: 1.0,
        series: vec![
            Series {
                label: "suspect".into(),
                colour: RGBColor(0xe0, 0x8a, 0x1e),
                width: 2,
                dots: false,
                points: finish(share_curve(&suspect, samples.len())),
            },
            Series {
                label: "dead".into(),
                colour: RGBColor(0xc0, 0x26, 0x2d),
                width: 3,
                dots: false,
                points: finish(share_curve(&dead, samples.len())),
            },
        ],
    }
}

/// Writes made and writes delivered to every node, cumulative over time.
fn kv_chart(report: &BenchReport, samples: &[WriteSample]) -> Chart {
    let made: Vec<Option<f64>> = samples.iter().map(|w| Some(w.set_s)).collect();
    let delivered: Vec<Option<f64>> = samples
        .iter()
        .map(|w| w.all_lag_s.map(|l| w.set_s + l))
        .collect();
    let x_max = made
        .iter()
        .chain(&delivered)
        .flatten()
        .fold(0.0, |a: f64, b| a.max(*b))
        .max(0.1)
        * 1.02;
    let total = samples.len() as f64;
    // Counts rather than shares: thin the step curves to at most ~2000 points each.
    let counts = |times: &[Option<f64>]| -> Vec<(f64, f64)> {
        let curve = share_curve(times, samples.len());
        let keep = (curve.len() / 2000).max(1);
        let mut points: Vec<(f64, f64)> = curve
            .iter()
            .step_by(keep)
            .map(|(x, y)| (*x, y * total))
            .collect();
        if let Some((x, y)) = curve.last() {
            points.push((*x, y * total));
            points.push((x_max, y * total));
        }
        points
    };
    let kv = report.kv.as_ref();
    Chart {
        title: format!(
            "Key/value: {} nodes, target {:.0} writes/s",
            report.nodes,
            kv.map_or(0.0, |k| k.target_rate)
        ),
        x_label: "seconds since the first write was due".into(),
        y_label: "writes (cumulative)".into(),
        x_max,
        y_max: total.max(1.0),
        series: vec![
            Series {
                label: "made".into(),
                colour: RGBColor(0x7a, 0x7a, 0x7a),
                width: 2,
                dots: false,
                points: counts(&made),
            },
            Series {
                label: "on every node".into(),
                colour: RGBColor(0x2a, 0x8c, 0x3c),
                width: 3,
                dots: false,
                points: counts(&delivered),
            },
        ],
    }
}

pub(crate) fn write_dir(
    dir: &Path,
    report: &BenchReport,
    samples: &Samples,
) -> Result<Vec<PathBuf>, Error> {
    let fail = |path: &Path, source| Error::Output {
        path: path.display().to_string(),
        source,
    };
    let plot = |name: &str, chart: Chart| {
        chart.render().map_err(|e| Error::Plot {
            path: dir.join(name).display().to_string(),
            message: e.to_string(),
        })
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let json = serde_json::to_string_pretty(report).expect("the report serialises");
    let mut files: Vec<(&str, String)> = vec![
        ("report.json", json + "\n"),
        ("join.csv", join_csv(&samples.join)),
        ("broadcast.csv", broadcast_csv(&samples.broadcast)),
        (
            "broadcast.svg",
            plot("broadcast.svg", broadcast_chart(report, &samples.broadcast))?,
        ),
        ("steady.csv", steady_csv(&samples.steady)),
        ("detect.csv", detect_csv(&samples.detect)),
        (
            "detect.svg",
            plot("detect.svg", detect_chart(report, &samples.detect))?,
        ),
    ];
    if let Some(kv) = &samples.kv {
        files.push(("kv.csv", kv_csv(kv)));
        files.push(("kv.svg", plot("kv.svg", kv_chart(report, kv))?));
    }
    let mut written = Vec::with_capacity(files.len());
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| fail(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_leave_missing_times_empty() {
        let text = detect_csv(&[DetectSample {
            node: 3,
            suspect_s: Some(1.5),
            dead_s: None,
        }]);
        assert_eq!(text, "node,suspect_s,dead_s\n3,1.500000,\n");
        let text = broadcast_csv(&[UpdateSample {
            origin: 1,
            latencies: vec![Some(0.25), None],
        }]);
        assert_eq!(text, "update,origin,node,latency_s\n0,1,0,0.250000\n");
    }
}
