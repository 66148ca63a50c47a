//! A figure in transformed coordinates, ready to draw ([`Prepared`]): the drawable points of
//! each series broken into segments at skipped points, its error bars, the reference curves
//! over the data's x range, the padded axis ranges with their ticks, the legend corner, and
//! the notes on what was not drawn.

use plotters::prelude::SeriesLabelPosition;

use super::axes::{linear_ticks, log_ticks, min_max, pad, tx, ty, Ticks};
use super::error::PlotError;
use super::figure::Plot;
use super::series::RefSlope;

/// A series in transformed coordinates `(X, Y)`.
pub(super) struct PreparedSeries {
    pub(super) label: String,
    /// Dashed, without markers.
    pub(super) dashed: bool,
    /// The palette index of the colour.
    pub(super) color: usize,
    /// The marker shape index.
    pub(super) marker: usize,
    /// Runs of consecutive drawable points (broken at skipped points).
    pub(super) segments: Vec<Vec<(f64, f64)>>,
    /// All drawable points.
    pub(super) points: Vec<(f64, f64)>,
    /// Error bars `(X, Y_lo, Y_hi)`; `Y_lo` is `-inf` when `y - err <= 0`.
    pub(super) bars: Vec<(f64, f64, f64)>,
}

/// A reference curve in transformed coordinates.
pub(super) struct PreparedRef {
    pub(super) label: String,
    pub(super) segments: Vec<Vec<(f64, f64)>>,
}

/// Everything needed to draw, in transformed coordinates.
pub(super) struct Prepared {
    pub(super) series: Vec<PreparedSeries>,
    pub(super) refs: Vec<PreparedRef>,
    pub(super) x_range: (f64, f64),
    pub(super) y_range: (f64, f64),
    pub(super) x_ticks: Ticks,
    pub(super) y_ticks: Ticks,
    pub(super) legend: SeriesLabelPosition,
    /// What was not drawn (skipped points, re-anchored or dropped references), appended to
    /// the caption.
    pub(super) notes: Vec<String>,
}

/// Validates the figure and maps it to transformed coordinates, ranges, ticks and legend place.
pub(super) fn prepare(fig: &Plot) -> Result<Prepared, PlotError> {
    let x_log = fig.x_scale.is_log();
    if fig.series.is_empty() {
        return Err(PlotError::NoData);
    }
    // What the figure could not draw, said in its caption.
    let mut notes: Vec<String> = Vec::new();
    let mut series = Vec::with_capacity(fig.series.len());
    // Points not drawn (y <= 0, non-finite, x <= 0 on a log axis), and the first series
    // without any drawable point.
    let mut skipped = 0usize;
    let mut first_empty: Option<(String, usize)> = None;
    for (index, s) in fig.series.iter().enumerate() {
        let mismatch = |field, got| PlotError::LengthMismatch {
            series: s.label.clone(),
            field,
            expected: s.x.len(),
            got,
        };
        if s.y.len() != s.x.len() {
            return Err(mismatch("y", s.y.len()));
        }
        if let Some(err) = &s.err {
            if err.len() != s.x.len() {
                return Err(mismatch("err", err.len()));
            }
        }
        let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut current = Vec::new();
        let mut points = Vec::new();
        let mut bars = Vec::new();
        for (i, (&x, &y)) in s.x.iter().zip(&s.y).enumerate() {
            match (tx(x, x_log), ty(y)) {
                (Some(px), Some(py)) => {
                    current.push((px, py));
                    points.push((px, py));
                    let e = s.err.as_ref().map_or(f64::NAN, |e| e[i]);
                    if e.is_finite() && e > 0.0 {
                        if let Some(hi) = ty(y + e) {
                            let lo = ty(y - e).unwrap_or(f64::NEG_INFINITY);
                            bars.push((px, lo, hi));
                        }
                    }
                }
                _ => {
                    if !current.is_empty() {
                        segments.push(std::mem::take(&mut current));
                    }
                }
            }
        }
        if !current.is_empty() {
            segments.push(current);
        }
        skipped += s.x.len() - points.len();
        if points.is_empty() {
            first_empty.get_or_insert((s.label.clone(), index));
            continue;
        }
        series.push(PreparedSeries {
            label: s.label.clone(),
            dashed: s.dashed,
            color: s.color.unwrap_or(index),
            marker: s.marker.or(s.color).unwrap_or(index),
            segments,
            points,
            bars,
        });
    }

    if series.is_empty() {
        // Nothing at all to draw: the first series names the problem.
        let (label, index) = first_empty.unwrap_or_default();
        return Err(PlotError::NonPositive {
            series: label,
            index,
        });
    }
    if skipped > 0 {
        notes.push(format!(
            "{skipped} point{} <= 0 or infinite not drawn",
            if skipped == 1 { "" } else { "s" }
        ));
    }

    let all_points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let (mut x_lo, mut x_hi) = min_max(all_points.iter().map(|p| p.0));
    let (mut y_lo, mut y_hi) = min_max(all_points.iter().map(|p| p.1));
    for s in &series {
        for &(_, lo, hi) in &s.bars {
            y_hi = y_hi.max(hi);
            if lo.is_finite() {
                y_lo = y_lo.min(lo);
            }
        }
    }

    // Reference curves over the data's x range: straight on log-log (its two ends suffice, and
    // a single segment keeps the dash pattern even), a 96-piece polyline in transformed X on
    // log-lin.
    let samples: usize = if x_log { 1 } else { 96 };
    let mut refs = Vec::with_capacity(fig.refs.len());
    // The first drawable point (original coordinates), where a reference slope whose anchor
    // is not drawable (y0 <= 0 by round-off, infinite) is anchored instead.
    let first_point = series
        .first()
        .and_then(|s| s.points.first())
        .map(|&(px, py)| (if x_log { 10f64.powf(px) } else { px }, 10f64.powf(py)));
    for r0 in &fig.refs {
        let anchored = r0.x0.is_finite() && r0.x0 > 0.0 && r0.y0.is_finite() && r0.y0 > 0.0;
        let r = match (r0.power.is_finite(), anchored, first_point) {
            (true, true, _) => r0.clone(),
            (true, false, Some((x0, y0))) => {
                notes.push(format!(
                    "reference \"{}\" anchored at the first drawable point (its y0 = {:e}, x0 = {:e})",
                    r0.label, r0.y0, r0.x0
                ));
                RefSlope {
                    x0,
                    y0,
                    ..r0.clone()
                }
            }
            _ => {
                notes.push(format!(
                    "reference \"{}\" not drawn (power = {}, x0 = {:e}, y0 = {:e})",
                    r0.label, r0.power, r0.x0, r0.y0
                ));
                continue;
            }
        };
        let r = &r;
        let mut segments = Vec::new();
        let mut current = Vec::new();
        for k in 0..=samples {
            let xt = x_lo + (x_hi - x_lo) * k as f64 / samples as f64;
            let x = if x_log { 10f64.powf(xt) } else { xt };
            let yt = if x > 0.0 { ty(r.eval(x)) } else { None };
            match yt {
                Some(yt) => current.push((xt, yt)),
                None => {
                    if !current.is_empty() {
                        segments.push(std::mem::take(&mut current));
                    }
                }
            }
        }
        if !current.is_empty() {
            segments.push(current);
        }
        for &(_, yt) in segments.iter().flatten() {
            y_lo = y_lo.min(yt);
            y_hi = y_hi.max(yt);
        }
        refs.push(PreparedRef {
            label: r.label.clone(),
            segments,
        });
    }

    (x_lo, x_hi) = pad(x_lo, x_hi, x_log);
    (y_lo, y_hi) = pad(y_lo, y_hi, true);
    // Error bars reaching y <= 0 end at the bottom of the axis.
    for s in &mut series {
        for bar in &mut s.bars {
            bar.1 = bar.1.max(y_lo);
        }
    }

    let x_ticks = if x_log {
        log_ticks(x_lo, x_hi)
    } else {
        linear_ticks(x_lo, x_hi)
    };
    let y_ticks = log_ticks(y_lo, y_hi);
    // Reference segments count by 16 points per piece, so long straight lines are seen.
    let ref_points = refs.iter().flat_map(|r| {
        r.segments.iter().flat_map(|seg| {
            seg.windows(2).flat_map(|w| {
                let ((x0, y0), (x1, y1)) = (w[0], w[1]);
                (0..16).map(move |k| {
                    let t = f64::from(k) / 16.0;
                    (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
                })
            })
        })
    });
    let legend = emptiest_corner(
        all_points.iter().copied().chain(ref_points),
        (x_lo, x_hi),
        (y_lo, y_hi),
    );

    Ok(Prepared {
        series,
        refs,
        x_range: (x_lo, x_hi),
        y_range: (y_lo, y_hi),
        x_ticks,
        y_ticks,
        legend,
        notes,
    })
}

/// The legend corner whose quarter-box (40 % of each axis) holds the fewest points.
fn emptiest_corner(
    points: impl Iterator<Item = (f64, f64)>,
    (x_lo, x_hi): (f64, f64),
    (y_lo, y_hi): (f64, f64),
) -> SeriesLabelPosition {
    let fx = |x: f64| (x - x_lo) / (x_hi - x_lo);
    let fy = |y: f64| (y - y_lo) / (y_hi - y_lo);
    // Order is the preference when counts tie: upper right first.
    let mut counts = [0usize; 4];
    for (x, y) in points {
        let (u, v) = (fx(x), fy(y));
        counts[0] += usize::from(u > 0.6 && v > 0.6);
        counts[1] += usize::from(u < 0.4 && v < 0.4);
        counts[2] += usize::from(u < 0.4 && v > 0.6);
        counts[3] += usize::from(u > 0.6 && v < 0.4);
    }
    let best = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
    match best {
        0 => SeriesLabelPosition::UpperRight,
        1 => SeriesLabelPosition::LowerLeft,
        2 => SeriesLabelPosition::UpperLeft,
        _ => SeriesLabelPosition::LowerRight,
    }
}
