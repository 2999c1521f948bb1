//! SVG plots. Every chart of the crate is drawn here on one shared setup
//! (`draw_chart`: size, background, caption, margins, axes, legend):
//! accuracy against the number of examples seen for an evaluation, and the
//! sweep report's charts (labelled lines, accuracy against a swept key).

use crate::error::{EvalError, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Line colours, in series order.
pub(crate) const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A short line in `colour`: a series' mark in the legend.
pub(crate) fn legend_mark(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2))
}

/// The legend mark of the dashed chance line.
fn chance_mark((x, y): (i32, i32)) -> PathElement<(i32, i32)> {
    PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5))
}

/// The style of the dashed chance line.
fn chance_style() -> ShapeStyle {
    BLACK.mix(0.5).stroke_width(1)
}

/// Accuracy of guessing among the ten classes: the chance line.
const CHANCE: f64 = 0.1;

/// What a chart says: its caption and the descriptions of its axes.
pub struct Frame<'s> {
    /// The title above the chart.
    pub caption: &'s str,
    /// The x axis' description.
    pub x_desc: &'s str,
    /// The y axis' description.
    pub y_desc: &'s str,
}

/// Formats an axis' tick labels.
type TickLabels<'f, T> = &'f dyn Fn(&T) -> String;

/// The result of drawing into an SVG chart.
type Drawn = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// A tick label without a float's noise: whole numbers as integers
/// (`4`, not `4.0`; steps, positions, log2 task counts are whole), others
/// with at most three decimals and no trailing zeros.
pub(crate) fn tick_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) {
        format!("{:.0}", v.round())
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A chart drawn into an SVG file.
type Chart<'c, 'b, X, Y> = ChartContext<'c, SVGBackend<'b>, Cartesian2d<X, Y>>;

/// Draws one chart into the SVG `path` with the setup every chart shares
/// (760 × 480 on white, an 18-pixel sans-serif caption, 12-pixel margins,
/// axis label areas, the mesh with `frame`'s axis descriptions and, if
/// given, `x_labels` for the x tick labels), lets `series` draw the data,
/// then the legend at `legend`, and writes the file.
pub(crate) fn draw_chart<X, Y>(
    path: &Path,
    frame: &Frame<'_>,
    (x, y): (X, Y),
    x_labels: Option<TickLabels<'_, X::Value>>,
    legend: SeriesLabelPosition,
    series: impl for<'c, 'b> FnOnce(&mut Chart<'c, 'b, X::CoordDescType, Y::CoordDescType>) -> Drawn,
) -> Result<()>
where
    X: AsRangedCoord,
    Y: AsRangedCoord,
    X::CoordDescType: ValueFormatter<X::Value>,
    Y::CoordDescType: ValueFormatter<Y::Value>,
{
    let fail = |e: &dyn std::fmt::Display| EvalError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let root: DrawingArea<SVGBackend, Shift> =
        SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(frame.caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(x, y)
        .map_err(|e| fail(&e))?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(frame.x_desc);
    if let Some(format) = x_labels {
        mesh.x_label_formatter(format);
    }
    mesh.y_desc(frame.y_desc).draw().map_err(|e| fail(&e))?;
    series(&mut chart).map_err(|e| fail(&e))?;
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// One line per curve (a name and the accuracy at each position, in
/// legend order), with chance (10%) dashed.
pub fn accuracy_curves(path: &Path, title: &str, curves: &[(&str, &[f32])]) -> Result<()> {
    let t = curves
        .iter()
        .map(|(_, accuracy)| accuracy.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let frame = Frame {
        caption: title,
        x_desc: "examples seen (position in sequence)",
        y_desc: "accuracy",
    };
    draw_chart(
        path,
        &frame,
        (1f32..t as f32, 0f32..1f32),
        Some(&|x| format!("{x:.0}")),
        SeriesLabelPosition::UpperLeft,
        |chart| {
            chart
                .draw_series(DashedLineSeries::new(
                    [(1f32, CHANCE as f32), (t as f32, CHANCE as f32)],
                    4,
                    4,
                    chance_style(),
                ))?
                .label("chance")
                .legend(chance_mark);
            for (i, &(name, accuracy)) in curves.iter().enumerate() {
                let colour = PALETTE[i % PALETTE.len()];
                let points = accuracy
                    .iter()
                    .enumerate()
                    .map(|(p, &a)| ((p + 1) as f32, a));
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                    .label(name)
                    .legend(legend_mark(colour));
            }
            Ok(())
        },
    )
}

/// Labelled lines, each `(label, points)`, one palette colour per series.
pub type Series = [(String, Vec<(f64, f64)>)];

/// Draws `series` as labelled lines, the legend at the upper right; `y`
/// defaults to the data's range with 5 % padding.
pub fn line_chart(
    path: &Path,
    frame: &Frame<'_>,
    y: Option<Range<f64>>,
    series: &Series,
) -> Result<()> {
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let range = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = points()
            .map(f)
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if hi > lo {
            lo..hi
        } else if lo.is_finite() {
            lo - 1.0..lo + 1.0
        } else {
            0.0..1.0
        }
    };
    let x = range(|p| p.0);
    let y = y.unwrap_or_else(|| {
        let r = range(|p| p.1);
        let pad = 0.05 * (r.end - r.start);
        r.start - pad..r.end + pad
    });
    draw_chart(
        path,
        frame,
        (x, y),
        Some(&tick_label),
        SeriesLabelPosition::UpperRight,
        |chart| draw_lines(chart, series, false),
    )
}

/// Draws `series` as labelled lines in palette order, with a dot at each
/// point if `markers`.
fn draw_lines(
    chart: &mut Chart<'_, '_, RangedCoordf64, RangedCoordf64>,
    series: &Series,
    markers: bool,
) -> Drawn {
    for (i, (label, line)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                line.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(label.clone())
            .legend(legend_mark(colour));
        if markers {
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
    }
    Ok(())
}

/// Draws accuracies against a swept key over `x`: chance dashed, then
/// `series` as labelled lines with a dot at each point, on a 0–1 y axis
/// with the legend at the upper left.
pub fn key_chart(path: &Path, frame: &Frame<'_>, x: Range<f64>, series: &Series) -> Result<()> {
    let (lo, hi) = (x.start, x.end);
    draw_chart(
        path,
        frame,
        (x, 0f64..1f64),
        Some(&tick_label),
        SeriesLabelPosition::UpperLeft,
        |chart| {
            chart
                .draw_series(DashedLineSeries::new(
                    [(lo, CHANCE), (hi, CHANCE)],
                    4,
                    4,
                    chance_style(),
                ))?
                .label("chance")
                .legend(chance_mark);
            draw_lines(chart, series, true)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_labelled_as_integers_and_fractions_without_noise() {
        assert_eq!(tick_label(&4.0), "4");
        assert_eq!(tick_label(&12000.0), "12000");
        assert_eq!(tick_label(&-3.0), "-3");
        assert_eq!(tick_label(&0.30000000000000004), "0.3");
        assert_eq!(tick_label(&0.125), "0.125");
        assert_eq!(tick_label(&2.5), "2.5");
    }

    #[test]
    fn a_chart_of_steps_labels_its_x_axis_with_whole_numbers() {
        let dir = gpicl_testing::scratch_dir("plot-ticks");
        let path = dir.join("loss.svg");
        let frame = Frame {
            caption: "loss",
            x_desc: "step",
            y_desc: "loss",
        };
        let series: Vec<(String, Vec<(f64, f64)>)> =
            vec![("run".into(), vec![(0.0, 2.3), (1000.0, 1.5), (2000.0, 1.0)])];
        line_chart(&path, &frame, None, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.contains(">1000<") || svg.contains(">\n1000\n<"),
            "{svg}"
        );
        assert!(!svg.contains("1000.0"), "no float noise on a step axis");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
