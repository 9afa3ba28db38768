//! A small SVG line chart: axes with round ticks, polylines, a legend. Enough for share-over-
//! time curves; no dependency.
//!
//! ```text
//!   title
//!   1.0 ┤        ┌──────        ── series a
//!       │     ┌──┘              ── series b
//!   0.5 ┤  ┌──┘
//!       │──┘
//!   0.0 ┼──┬──┬──┬──┬──
//!       0  1  2  3  4   x label
//! ```

use std::fmt::Write as _;

/// One line of the chart.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    /// Shown in the legend; empty: not listed.
    pub label: String,
    /// Any SVG colour.
    pub colour: &'static str,
    /// Stroke width in pixels.
    pub width: f64,
    /// Data points, drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Clone, Debug)]
pub(crate) struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Upper end of the x axis (the lower end is 0); grown to a round tick.
    pub x_max: f64,
    /// Upper end of the y axis (the lower end is 0); grown to a round tick.
    pub y_max: f64,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// Round tick spacing giving about `target` intervals over `0..max`.
fn tick_step(max: f64, target: usize) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn format_tick(v: f64, step: f64) -> String {
    // As many decimals as the step needs to be written exactly (0.25 -> 2, 0.2 -> 1, 2 -> 0).
    let decimals = (0..6)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(6) as usize;
    format!("{v:.decimals$}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn render(&self) -> String {
        let x_step = tick_step(self.x_max, 8);
        let y_step = tick_step(self.y_max, 5);
        let x_max = (self.x_max / x_step).ceil().max(1.0) * x_step;
        let y_max = (self.y_max / y_step).ceil().max(1.0) * y_step;
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let px = |x: f64| LEFT + (x.clamp(0.0, x_max) / x_max) * plot_w;
        let py = |y: f64| TOP + plot_h - (y.clamp(0.0, y_max) / y_max) * plot_h;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        let mut k = 0.0;
        while k * x_step <= x_max + x_step * 1e-9 {
            let v = k * x_step;
            let x = px(v);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4"/>"##,
                TOP + plot_h
            );
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + plot_h + 18.0,
                format_tick(v, x_step)
            );
            k += 1.0;
        }
        let mut k = 0.0;
        while k * y_step <= y_max + y_step * 1e-9 {
            let v = k * y_step;
            let y = py(v);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/>"##,
                LEFT + plot_w
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 8.0,
                y + 4.0,
                format_tick(v, y_step)
            );
            k += 1.0;
        }
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 18.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        // Lines, then the legend.
        for series in &self.series {
            if series.points.is_empty() {
                continue;
            }
            let mut points = String::new();
            for (x, y) in &series.points {
                let _ = write!(points, "{:.1},{:.1} ", px(*x), py(*y));
            }
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"/>"#,
                points.trim_end(),
                series.colour,
                series.width
            );
        }
        let mut row = 0.0;
        for series in self.series.iter().filter(|s| !s.label.is_empty()) {
            let y = TOP + 10.0 + row * 20.0;
            let x = LEFT + plot_w + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="{}"/>"#,
                x + 24.0,
                series.colour,
                series.width.max(2.0)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 30.0,
                y + 4.0,
                escape(&series.label)
            );
            row += 1.0;
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(tick_step(1.0, 5), 0.2));
        assert!(close(tick_step(0.73, 8), 0.1));
        assert!(close(tick_step(12.0, 8), 2.0));
        assert!(close(tick_step(0.0, 8), 1.0));
        assert_eq!(format_tick(0.4, 0.2), "0.4");
        assert_eq!(format_tick(0.25, 0.05), "0.25");
        assert_eq!(format_tick(12.0, 2.0), "12");
    }

    #[test]
    fn chart_is_one_svg_document_with_every_labelled_series() {
        let chart = Chart {
            title: "a <b> & c".into(),
            x_label: "s".into(),
            y_label: "share".into(),
            x_max: 1.3,
            y_max: 1.0,
            series: vec![
                Series {
                    label: "mean".into(),
                    colour: "blue",
                    width: 2.0,
                    points: vec![(0.0, 0.0), (1.3, 1.0)],
                },
                Series {
                    label: String::new(),
                    colour: "grey",
                    width: 1.0,
                    points: vec![(0.0, 0.0), (0.5, 1.0)],
                },
            ],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains(">mean</text>"));
    }
}
