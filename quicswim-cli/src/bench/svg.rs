//! Line charts as SVG, drawn with plotters: axes with round ticks, lines, a legend.
//!
//! ```text
//!   title
//!   1.0 ┤        ┌──────
//!       │     ┌──┘
//!   0.5 ┤  ┌──┘        ┌────────────┐
//!       │──┘           │── series a │
//!   0.0 ┼──┬──┬──┬──┬──└── series b─┘
//!       0  1  2  3  4
//!          x label
//! ```
//!
//! plotters is built without its font features: the SVG backend writes text as `<text>`
//! elements for the viewer to set, and lays labels out from an estimate of their width, so no
//! system font library is needed to build or run.

use plotters::prelude::*;

/// One line of the chart.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    /// Shown in the legend; empty: not listed.
    pub label: String,
    pub colour: RGBColor,
    /// Stroke width in pixels.
    pub width: u32,
    /// Whether each point is also marked with a dot (for a few measured points, where
    /// the line between them is only a guide).
    pub dots: bool,
    /// Data points, drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Clone, Debug)]
pub(crate) struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Upper end of the x axis (the lower end is 0).
    pub x_max: f64,
    /// Upper end of the y axis (the lower end is 0).
    pub y_max: f64,
    pub series: Vec<Series>,
}

/// Why a chart could not be drawn (plotters' own error, as text, so that its types stay out
/// of this crate's errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct PlotError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for PlotError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Self(e.to_string())
    }
}

const SIZE: (u32, u32) = (760, 440);
const FONT: &str = "sans-serif";
const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);

/// A tick value as short as it can be written: plotters places ticks at round values, but
/// its own format always shows a decimal ("1000.0") and sums of steps can carry float noise.
fn tick_label(v: &f64) -> String {
    let rounded = (v * 1e6).round() / 1e6;
    // `{}` prints the shortest form that reads back the same: 0.2, 0.25, 1000.
    format!("{}", rounded + 0.0)
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn render(&self) -> Result<String, PlotError> {
        // A zero or non-finite extent would leave no axis to map onto.
        let extent = |max: f64| {
            if max.is_finite() && max > 0.0 {
                max
            } else {
                1.0
            }
        };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, (FONT, 20))
                .margin(12)
                .margin_right(24)
                .x_label_area_size(48)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..extent(self.x_max), 0.0..extent(self.y_max))?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_labels(9)
                .y_labels(6)
                .x_label_formatter(&tick_label)
                .y_label_formatter(&tick_label)
                .label_style((FONT, 15))
                .axis_desc_style((FONT, 15))
                .bold_line_style(GRID)
                .light_line_style(TRANSPARENT)
                .draw()?;
            for series in self.series.iter().filter(|s| !s.points.is_empty()) {
                let style = series.colour.stroke_width(series.width);
                if series.dots {
                    let dot = series.colour.filled();
                    chart.draw_series(
                        series
                            .points
                            .iter()
                            .map(|p| Circle::new(*p, series.width + 2, dot)),
                    )?;
                }
                let drawn =
                    chart.draw_series(LineSeries::new(series.points.iter().copied(), style))?;
                if !series.label.is_empty() {
                    let legend_width = series.width.max(2);
                    drawn.label(&series.label).legend(move |(x, y)| {
                        PathElement::new(
                            [(x, y), (x + 24, y)],
                            series.colour.stroke_width(legend_width),
                        )
                    });
                }
            }
            // Every curve here rises from (0, 0) towards the top right, so the lower right is
            // the corner they leave clear.
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font((FONT, 15))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
            root.present()?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_as_short_numbers() {
        assert_eq!(tick_label(&0.4), "0.4");
        assert_eq!(tick_label(&0.25), "0.25");
        assert_eq!(tick_label(&(0.1 + 0.2)), "0.3");
        assert_eq!(tick_label(&12.0), "12");
        assert_eq!(tick_label(&0.0), "0");
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
                    colour: RGBColor(0, 0, 0xff),
                    width: 2,
                    dots: false,
                    points: vec![(0.0, 0.0), (1.3, 1.0)],
                },
                Series {
                    label: String::new(),
                    colour: RGBColor(0x80, 0x80, 0x80),
                    width: 1,
                    dots: false,
                    points: vec![(0.0, 0.0), (0.5, 1.0)],
                },
            ],
        };
        let svg = chart.render().expect("drawing into a string cannot fail");
        assert!(svg.trim_start().starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        // The labelled line and its legend sample; the unlabelled line alone.
        assert_eq!(svg.matches(r##"stroke="#0000FF""##).count(), 2);
        assert_eq!(svg.matches(r##"stroke="#808080""##).count(), 1);
        // plotters writes each text on a line of its own.
        assert!(svg.contains("\na &lt;b&gt; &amp; c\n</text>"));
        assert!(svg.contains("\nmean\n</text>"));
        assert!(svg.contains("\nshare\n</text>"));
    }
}
