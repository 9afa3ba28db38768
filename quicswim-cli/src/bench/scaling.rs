//! How steady cost grows with the cluster: the figures of several `quicswim bench --out`
//! runs, one per size, side by side.
//!
//! ```text
//!   RUN/report.json (nodes 8) ──┐
//!   RUN/report.json (nodes 32) ─┼─> scaling.csv   nodes, cpu_ms, bytes, packets per node per s
//!   RUN/report.json (nodes …) ──┘   scaling-cpu.svg, scaling-bytes.svg, scaling-packets.svg
//! ```
//!
//! SWIM promises a steady cost per node that does not grow with the cluster; these three
//! charts show whether it holds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::style::RGBColor;

use super::svg::{Chart, Series};

/// One run's steady figures.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePoint {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Process CPU per node per second of the steady window, in ms.
    pub cpu_ms_per_node_s: f64,
    /// Bytes on the wire sent per node per second.
    pub bytes_per_node_s: f64,
    /// Packets sent per node per second.
    pub packets_per_node_s: f64,
}

/// Why the runs could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A report that is not a bench report.
    #[error("{path}: {reason}")]
    Report {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two runs of the same size: which one to plot is not ours to guess.
    #[error("{first} and {second} are both runs of {nodes} nodes")]
    SameSize {
        /// Nodes of both.
        nodes: usize,
        /// The one read first.
        first: String,
        /// The other.
        second: String,
    },
    /// A chart could not be drawn.
    #[error("drawing {path}: {message}")]
    Plot {
        /// The file it was for.
        path: String,
        /// Why, as the plotting library put it.
        message: String,
    },
}

/// Reads `DIR/report.json` of each run directory (as `quicswim bench --out DIR` writes it),
/// in order of size.
pub fn read_runs(dirs: &[PathBuf]) -> Result<Vec<ScalePoint>, ScalingError> {
    let mut points: Vec<(ScalePoint, String)> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let path = dir.join("report.json");
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ScalingError::Io {
            path: shown.clone(),
            source,
        })?;
        let point = parse_report(&text).map_err(|reason| ScalingError::Report {
            path: shown.clone(),
            reason,
        })?;
        if let Some((_, first)) = points.iter().find(|(p, _)| p.nodes == point.nodes) {
            return Err(ScalingError::SameSize {
                nodes: point.nodes,
                first: first.clone(),
                second: shown,
            });
        }
        points.push((point, shown));
    }
    points.sort_by_key(|(p, _)| p.nodes);
    Ok(points.into_iter().map(|(p, _)| p).collect())
}

/// The steady figures of one report, or which field is missing or wrong.
fn parse_report(text: &str) -> Result<ScalePoint, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let number = |field: &str| -> Result<f64, String> {
        value
            .get(field)
            .and_then(serde_json::Value::as_f64)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("field `{field}` is missing or not a number of at least 0"))
    };
    let nodes = value
        .get("nodes")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n >= 2)
        .ok_or_else(|| "field `nodes` is missing or below 2".to_string())?;
    Ok(ScalePoint {
        nodes,
        cpu_ms_per_node_s: number("cpu_ms_per_node_s")?,
        bytes_per_node_s: number("bytes_per_node_s")?,
        packets_per_node_s: number("packets_per_node_s")?,
    })
}

/// Writes `scaling.csv` and the three charts into `dir` (created if missing); returns the
/// files written.
pub fn write_scaling(dir: &Path, points: &[ScalePoint]) -> Result<Vec<PathBuf>, ScalingError> {
    let io = |path: &Path, source| ScalingError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    type Figure = fn(&ScalePoint) -> f64;
    let charts: [(&str, &str, &str, RGBColor, Figure); 3] = [
        (
            "scaling-cpu.svg",
            "CPU per node per second (steady)",
            "ms",
            RGBColor(0x1f, 0x4e, 0x9a),
            |p| p.cpu_ms_per_node_s,
        ),
        (
            "scaling-bytes.svg",
            "Bytes on the wire per node per second (steady)",
            "bytes",
            RGBColor(0xe0, 0x8a, 0x1e),
            |p| p.bytes_per_node_s,
        ),
        (
            "scaling-packets.svg",
            "Packets per node per second (steady)",
            "packets",
            RGBColor(0xc0, 0x26, 0x2d),
            |p| p.packets_per_node_s,
        ),
    ];
    let mut files = vec![("scaling.csv", scaling_csv(points))];
    for (name, title, unit, colour, figure) in charts {
        let line = points.iter().map(|p| (p.nodes as f64, figure(p))).collect();
        let chart = scale_chart(title, unit, colour, line);
        let svg = chart.render().map_err(|e| ScalingError::Plot {
            path: dir.join(name).display().to_string(),
            message: e.to_string(),
        })?;
        files.push((name, svg));
    }
    let mut written = Vec::with_capacity(files.len());
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

fn scaling_csv(points: &[ScalePoint]) -> String {
    let mut text = String::from("nodes,cpu_ms_per_node_s,bytes_per_node_s,packets_per_node_s\n");
    for p in points {
        let _ = writeln!(
            text,
            "{},{:.4},{:.1},{:.3}",
            p.nodes, p.cpu_ms_per_node_s, p.bytes_per_node_s, p.packets_per_node_s
        );
    }
    text
}

fn scale_chart(title: &str, unit: &str, colour: RGBColor, line: Vec<(f64, f64)>) -> Chart {
    let most = |f: fn(&(f64, f64)) -> f64| line.iter().map(f).fold(0.0, f64::max);
    Chart {
        title: title.to_string(),
        x_label: "nodes in the cluster".into(),
        y_label: format!("{unit} per node per second"),
        x_max: most(|p| p.0) * 1.05,
        // From zero, with room above: a flat line should look flat.
        y_max: most(|p| p.1) * 1.25,
        series: vec![Series {
            label: "quicswim".into(),
            colour,
            width: 3,
            dots: true,
            points: line,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(nodes: usize, cpu: f64) -> String {
        format!(
            r#"{{"nodes":{nodes},"cpu_ms_per_node_s":{cpu},"bytes_per_node_s":180.5,"packets_per_node_s":3.2,"join_converged_s":null}}"#
        )
    }

    #[test]
    fn runs_are_read_in_order_of_size_and_written_as_csv_and_charts() {
        let base = std::env::temp_dir().join(format!("quicswim-scaling-{}", std::process::id()));
        let runs: Vec<PathBuf> = [(128, 0.7), (8, 0.5), (32, 0.6)]
            .iter()
            .map(|(n, cpu)| {
                let dir = base.join(format!("n{n}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("report.json"), report(*n, *cpu)).unwrap();
                dir
            })
            .collect();
        let points = read_runs(&runs).unwrap();
        let sizes: Vec<usize> = points.iter().map(|p| p.nodes).collect();
        assert_eq!(sizes, [8, 32, 128]);
        let files = write_scaling(&base.join("out"), &points).unwrap();
        assert_eq!(files.len(), 4);
        let csv = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(csv.lines().nth(1), Some("8,0.5000,180.5,3.200"), "{csv}");
        for svg in &files[1..] {
            assert!(std::fs::read_to_string(svg).unwrap().contains("<svg"));
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_report_without_a_figure_or_a_size_twice_is_refused_by_name() {
        let missing = parse_report(r#"{"nodes":8,"cpu_ms_per_node_s":0.5}"#).unwrap_err();
        assert!(missing.contains("bytes_per_node_s"), "{missing}");
        let negative = parse_report(&report(8, -1.0)).unwrap_err();
        assert!(negative.contains("cpu_ms_per_node_s"), "{negative}");
        assert!(parse_report("not json").is_err());

        let base = std::env::temp_dir().join(format!("quicswim-twice-{}", std::process::id()));
        let runs: Vec<PathBuf> = ["a", "b"]
            .iter()
            .map(|name| {
                let dir = base.join(name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("report.json"), report(16, 0.5)).unwrap();
                dir
            })
            .collect();
        let err = read_runs(&runs).unwrap_err();
        assert!(
            matches!(err, ScalingError::SameSize { nodes: 16, .. }),
            "{err}"
        );
        let absent = read_runs(&[base.join("none")]).unwrap_err();
        assert!(absent.to_string().contains("report.json"), "{absent}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
