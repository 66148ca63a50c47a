//! The axes in transformed coordinates: the maps `X = log10 x` (or `x`) and `Y = log10 y`, the
//! padded data ranges, decade and 1-2-5 ticks with their labels, and the plotters axis
//! ([`TickedAxis`]) that draws exactly those ticks.

use plotters::prelude::Ranged;

/// The transformed abscissa `X = log10 x` (log axis) or `X = x`; `None` when not drawable.
pub(super) fn tx(x: f64, x_log: bool) -> Option<f64> {
    if !x.is_finite() {
        None
    } else if x_log {
        (x > 0.0).then(|| x.log10())
    } else {
        Some(x)
    }
}

/// The transformed ordinate `Y = log10 y`; `None` unless `y` is finite and `> 0`.
pub(super) fn ty(y: f64) -> Option<f64> {
    (y.is_finite() && y > 0.0).then(|| y.log10())
}

/// `(min, max)` of a non-empty iterator of finite values.
pub(super) fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Widens `[lo, hi]` by 4 % of its span on each side; a zero span becomes `±0.5` (half a decade
/// on a log axis) or `±max(0.1 |lo|, 0.5)` on a linear one.
pub(super) fn pad(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    let span = hi - lo;
    if span > 0.0 {
        (lo - 0.04 * span, hi + 0.04 * span)
    } else {
        let h = if log { 0.5 } else { (0.1 * lo.abs()).max(0.5) };
        (lo - h, hi + h)
    }
}

/// Tick positions in transformed coordinates.
pub(super) struct Ticks {
    bold: Vec<f64>,
    light: Vec<f64>,
}

/// A linear axis over transformed units with explicit bold (labelled) and light ticks.
pub(super) struct TickedAxis {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl TickedAxis {
    /// The axis `[lo, hi]` with the given ticks.
    pub(super) fn new((lo, hi): (f64, f64), ticks: &Ticks) -> Self {
        Self {
            lo,
            hi,
            bold: ticks.bold.clone(),
            light: ticks.light.clone(),
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    /// Pixel `limit.0 + (v - lo) / (hi - lo) · (limit.1 - limit.0)` (clamped far outside, so
    /// infinities cannot overflow).
    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = ((value - self.lo) / (self.hi - self.lo)).clamp(-10.0, 10.0);
        let t = if t.is_nan() { 0.0 } else { t };
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Ticks on a log axis in transformed units `[lo, hi]` (decades are integers).
///
/// With at least two decades inside, bold ticks at every `s`-th decade, `s = ceil(count / 12)`,
/// and light ticks at `k + log10 m`, `m = 2..9` (or at the unlabelled decades when `s > 1` or
/// the range spans more than 8 decades). With fewer, bold ticks also at `2·10^k` and `5·10^k`.
pub(super) fn log_ticks(lo: f64, hi: f64) -> Ticks {
    let inside = |v: &f64| *v >= lo && *v <= hi;
    let k_lo = lo.ceil() as i64;
    let k_hi = hi.floor() as i64;
    let decades = (k_hi - k_lo + 1).max(0);
    let mantissa = |k: i64, m: f64| k as f64 + m.log10();
    let (bold, light) = if decades >= 2 {
        let step = ((decades + 11) / 12).max(1);
        let bold: Vec<f64> = (k_lo..=k_hi)
            .filter(|k| k.rem_euclid(step) == 0)
            .map(|k| k as f64)
            .collect();
        let light: Vec<f64> = if step == 1 && decades <= 9 {
            (k_lo - 1..=k_hi)
                .flat_map(|k| (2..=9).map(move |m| mantissa(k, f64::from(m))))
                .filter(inside)
                .collect()
        } else {
            (k_lo..=k_hi)
                .filter(|k| k.rem_euclid(step) != 0)
                .map(|k| k as f64)
                .collect()
        };
        (bold, light)
    } else {
        let bold: Vec<f64> = (k_lo - 1..=k_hi + 1)
            .flat_map(|k| [1.0, 2.0, 5.0].map(|m| mantissa(k, m)))
            .filter(inside)
            .collect();
        let light: Vec<f64> = (k_lo - 1..=k_hi + 1)
            .flat_map(|k| [3.0, 4.0, 6.0, 7.0, 8.0, 9.0].map(|m| mantissa(k, m)))
            .filter(inside)
            .collect();
        (bold, light)
    };
    Ticks { bold, light }
}

/// The 1-2-5 step giving about 8 intervals over `span > 0`.
pub(super) fn nice_step(span: f64) -> f64 {
    let raw = span / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    let m = if r < 1.5 {
        1.0
    } else if r < 3.0 {
        2.0
    } else if r < 7.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Ticks on a linear axis `[lo, hi]`: bold at multiples of a 1-2-5 step, light at half steps.
pub(super) fn linear_ticks(lo: f64, hi: f64) -> Ticks {
    let step = nice_step(hi - lo);
    let i_lo = (lo / step).ceil() as i64;
    let i_hi = (hi / step).floor() as i64;
    let bold = (i_lo..=i_hi).map(|i| i as f64 * step).collect();
    let light = (i_lo - 1..=i_hi)
        .map(|i| (i as f64 + 0.5) * step)
        .filter(|v| *v >= lo && *v <= hi)
        .collect();
    Ticks { bold, light }
}

/// The label of a log-axis tick at transformed `v`: `1e{k}` at decades, `{m}e{k}` at `m·10^k`.
pub(super) fn log_label(v: f64) -> String {
    let k = (v + 1e-9).floor();
    let m = 10f64.powf(v - k);
    let mr = m.round();
    if (m - mr).abs() < 1e-6 {
        format!("{}e{}", mr as i64, k as i64)
    } else {
        format!("{:.2e}", 10f64.powf(v))
    }
}

/// The label of a linear-axis tick with as many decimals as the step needs.
pub(super) fn linear_label(v: f64, step: f64) -> String {
    let decimals = (-(step.log10().floor())).clamp(0.0, 12.0) as usize;
    let s = format!("{v:.decimals$}");
    // Avoid "-0" / "-0.00" for values that round to zero.
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::RefSlope;

    #[test]
    fn ticks_and_labels() {
        // 1e-3 .. 1e1 padded: decades -3..=1 are labelled.
        let t = log_ticks(-3.2, 1.1);
        let labels: Vec<String> = t.bold.iter().map(|&v| log_label(v)).collect();
        assert_eq!(labels, ["1e-3", "1e-2", "1e-1", "1e0", "1e1"]);
        assert!(!t.light.is_empty());
        // Less than two decades inside: 1-2-5 ticks.
        let t = log_ticks(-2.1, -1.2);
        let labels: Vec<String> = t.bold.iter().map(|&v| log_label(v)).collect();
        assert_eq!(labels, ["1e-2", "2e-2", "5e-2"]);
        // Many decades are thinned to at most 12 labels.
        assert!(log_ticks(-30.0, 0.0).bold.len() <= 12);
        assert_eq!(linear_label(-0.0001, 1.0), "0");
        assert_eq!(linear_label(12.0, 2.0), "12");
        assert_eq!(linear_label(0.25, 0.05), "0.25");
        // The reference line passes through its anchor.
        let r = RefSlope::new(-2.0, 4.0, 0.5, "");
        assert!((r.eval(4.0) - 0.5).abs() < 1e-15);
        // y0 (2x0/x0)^-2 = y0/4 exactly in binary floating point.
        assert!((r.eval(8.0) - 0.125).abs() < 1e-15);
    }
}
