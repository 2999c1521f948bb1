//! SVG plots of accuracy against the number of examples seen.

use crate::error::{EvalError, Result};
use crate::report::GroupResult;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

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

/// Draws the legend of `chart` at `position` and writes the plot to
/// `path` (the file `root` draws into).
pub(crate) fn finish_chart<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    root: &DrawingArea<DB, plotters::coord::Shift>,
    position: SeriesLabelPosition,
    path: &Path,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    let fail = |e: &dyn std::fmt::Display| EvalError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// One line per group: accuracy at each position, with chance (10%) dashed.
pub fn accuracy_curves(
    path: &Path,
    title: &str,
    groups: &BTreeMap<String, GroupResult>,
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| EvalError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let t = groups
        .values()
        .map(|g| g.acc_curve.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(1f32..t as f32, 0f32..1f32)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("examples seen (position in sequence)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("accuracy")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(DashedLineSeries::new(
            [(1f32, 0.1f32), (t as f32, 0.1)],
            4,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(|e| fail(&e))?
        .label("chance")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5)));
    let ordered = crate::protocol::Group::ALL
        .map(crate::protocol::Group::as_str)
        .into_iter()
        .filter_map(|g| groups.get(g).map(|r| (g, r)));
    for (i, (group, result)) in ordered.enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let points = result
            .acc_curve
            .iter()
            .enumerate()
            .map(|(p, &a)| ((p + 1) as f32, a));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(group)
            .legend(legend_mark(colour));
    }
    finish_chart(&mut chart, &root, SeriesLabelPosition::UpperLeft, path)
}
