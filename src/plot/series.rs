//! The data of a figure: a curve with optional error bars ([`Series`]) and a reference power
//! law `y = y0 (x / x0)^p` ([`RefSlope`]).

use super::axes::{tx, ty};

/// One curve: a label and points `(x_i, y_i)`, with optional absolute y error bars
/// `[y_i - err_i, y_i + err_i]`; drawn with markers at the points joined by lines, or as a
/// dashed line without markers when `dashed` is set (e.g. a bound drawn under its data).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// The legend label (an empty label gives no legend entry).
    pub label: String,
    /// The abscissae `x_i`.
    pub x: Vec<f64>,
    /// The ordinates `y_i` (points with `y_i <= 0` or non-finite are skipped).
    pub y: Vec<f64>,
    /// Optional absolute errors `err_i >= 0`: a bar from `y_i - err_i` to `y_i + err_i`
    /// (clipped at the bottom of the axis where `y_i - err_i <= 0`).
    pub err: Option<Vec<f64>>,
    /// Draw a dashed line without markers (default `false`: solid line with markers).
    pub dashed: bool,
    /// The palette index of the colour (default `None`: the series' own index), so that two
    /// series (data and its bound) can share a colour.
    pub color: Option<usize>,
    /// The marker shape index (circle, triangle, square, diamond, modulo 4; default `None`: the
    /// colour index).
    pub marker: Option<usize>,
}

impl Series {
    /// Whether some point can be drawn: finite `y > 0` with finite `x` (`x > 0` on a log x
    /// axis). A figure rejects a series without one ([`PlotError::NonPositive`]).
    ///
    /// [`PlotError::NonPositive`]: super::PlotError::NonPositive
    #[must_use]
    pub fn has_drawable_point(&self, x_log: bool) -> bool {
        self.x
            .iter()
            .zip(&self.y)
            .any(|(&x, &y)| tx(x, x_log).is_some() && ty(y).is_some())
    }

    /// A series `(x_i, y_i)` without error bars, solid, coloured by its index.
    pub fn new(label: impl Into<String>, x: Vec<f64>, y: Vec<f64>) -> Self {
        Self {
            label: label.into(),
            x,
            y,
            err: None,
            dashed: false,
            color: None,
            marker: None,
        }
    }

    /// The same series drawn as a dashed line without markers.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }

    /// The same series with the colour of palette index `index` (modulo the palette size).
    pub fn with_color(mut self, index: usize) -> Self {
        self.color = Some(index);
        self
    }

    /// The same series with marker shape `index` (circle, triangle, square, diamond, modulo 4).
    pub fn with_marker(mut self, index: usize) -> Self {
        self.marker = Some(index);
        self
    }

    /// The same series with absolute y errors `err_i` (bars `y_i ± err_i`).
    pub fn with_err(mut self, err: Vec<f64>) -> Self {
        self.err = Some(err);
        self
    }
}

/// A reference slope `y = c x^p` with `c = y0 / x0^p`, i.e. the line through `(x0, y0)` with
/// log-log slope `p`; drawn dashed in grey over the x range of the data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RefSlope {
    /// The exponent `p`.
    pub power: f64,
    /// The anchor abscissa `x0 > 0`.
    pub x0: f64,
    /// The anchor ordinate `y0 > 0`.
    pub y0: f64,
    /// The legend label, e.g. `"slope -1"` (empty: no legend entry).
    pub label: String,
}

impl RefSlope {
    /// The reference line `y = y0 (x / x0)^p`.
    pub fn new(power: f64, x0: f64, y0: f64, label: impl Into<String>) -> Self {
        Self {
            power,
            x0,
            y0,
            label: label.into(),
        }
    }

    /// Its value `y0 (x / x0)^p` at `x`.
    pub fn eval(&self, x: f64) -> f64 {
        self.y0 * (x / self.x0).powf(self.power)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawable_point_needs_finite_positive_y_and_log_x_above_zero() {
        let inf = f64::INFINITY;
        assert!(!Series::new("a", vec![1.0, 2.0], vec![inf, f64::NAN]).has_drawable_point(true));
        assert!(!Series::new("b", vec![1.0, 2.0], vec![-1.0, 0.0]).has_drawable_point(false));
        assert!(Series::new("c", vec![1.0, 2.0], vec![inf, 3.0]).has_drawable_point(true));
        // x = 0 is drawable on a linear axis only.
        let s = Series::new("d", vec![0.0], vec![1.0]);
        assert!(!s.has_drawable_point(true) && s.has_drawable_point(false));
    }
}
