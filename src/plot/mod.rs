//! Log-log and log-linear figures, written as SVG and PNG with an embedded font.
//!
//! Everything is drawn in transformed coordinates: `X = log10 x` on a log x axis (`X = x` on a
//! linear one) and `Y = log10 y`. A power law `y = c x^p` is then the straight line
//! `Y = log10 c + p X` on a log-log figure. Ticks on log axes sit at decades `Y = k` and are
//! labelled `1e{k}`; the text is rendered with the bundled DejaVu Sans (no system fonts).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use thiserror::Error;

/// Figure width in pixels.
const WIDTH: u32 = 1000;
/// Figure height in pixels.
const HEIGHT: u32 = 700;
/// The font family name the embedded font is registered under.
const FAMILY: &str = "sans-serif";
/// DejaVu Sans, embedded so that no system font is ever needed.
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// The outcome of registering the embedded font (done once per process).
static FONT: OnceLock<Result<(), String>> = OnceLock::new();

/// Series colours: the Tableau-10 palette without its grey (grey is kept for reference slopes).
const PALETTE: [RGBColor; 9] = [
    RGBColor(31, 119, 180),  // blue
    RGBColor(255, 127, 14),  // orange
    RGBColor(44, 160, 44),   // green
    RGBColor(214, 39, 40),   // red
    RGBColor(148, 103, 189), // purple
    RGBColor(140, 86, 75),   // brown
    RGBColor(227, 119, 194), // pink
    RGBColor(188, 189, 34),  // olive
    RGBColor(23, 190, 207),  // cyan
];
/// Reference-slope colours: greys, darkest first.
const REF_GREYS: [RGBColor; 3] = [
    RGBColor(90, 90, 90),
    RGBColor(140, 140, 140),
    RGBColor(60, 60, 60),
];

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

/// Why a figure could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlotError {
    /// A parent directory could not be created (the OS error, shown once).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The figure file could not be checked or written (names the path).
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// The drawing backend failed (message of the plotters error, which is generic).
    #[error("drawing failed: {0}")]
    Draw(String),
    /// The figure has no series.
    #[error("no data: the figure has no series")]
    NoData,
    /// A series has no drawable point: none with finite `y > 0` (and finite `x`, `x > 0` on a
    /// log x axis).
    #[error(
        "series {index} (\"{series}\") has no point with finite y > 0 (and x > 0 on a log x axis)"
    )]
    NonPositive {
        /// The series label.
        series: String,
        /// The index of the series in `series`.
        index: usize,
    },
    /// A series' `y` (or `err`) length differs from its `x` length.
    #[error("series \"{series}\": {field} has {got} entries but x has {expected}")]
    LengthMismatch {
        /// The series label.
        series: String,
        /// The field with the wrong length: `"y"` or `"err"`.
        field: &'static str,
        /// The length of `x`.
        expected: usize,
        /// The length of the field.
        got: usize,
    },
    /// A reference slope has a non-finite `power`, or `x0`/`y0` that is not finite and `> 0`.
    #[error("reference slope \"{label}\": {field} = {value} is invalid (power must be finite, x0 and y0 finite and > 0)")]
    InvalidRef {
        /// The reference label.
        label: String,
        /// The offending field: `"power"`, `"x0"` or `"y0"`.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// The embedded font could not be registered with plotters.
    #[error("font: {0}")]
    Font(String),
}

/// A log-log figure: `log10 y` against `log10 x`, so `y = c x^p` is a line of slope `p`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogLogFigure {
    /// The title, drawn at the top.
    pub title: String,
    /// The x-axis description.
    pub x_label: String,
    /// The y-axis description.
    pub y_label: String,
    /// The curves, coloured from a fixed 9-colour palette in order.
    pub series: Vec<Series>,
    /// Dashed grey reference slopes `y = y0 (x/x0)^p`.
    pub refs: Vec<RefSlope>,
    /// One smaller line under the title, e.g. `"route A, vp-linear, err < 1e-9"`.
    pub caption: Option<String>,
}

/// A log-linear figure: `log10 y` against linear `x` (e.g. a Lanczos error against `k`),
/// so `y = c b^x` is a straight line of slope `log10 b`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogLinFigure {
    /// The title, drawn at the top.
    pub title: String,
    /// The x-axis description.
    pub x_label: String,
    /// The y-axis description.
    pub y_label: String,
    /// The curves, coloured from a fixed 9-colour palette in order.
    pub series: Vec<Series>,
    /// Dashed grey reference curves `y = y0 (x/x0)^p`, drawn where `x > 0`.
    pub refs: Vec<RefSlope>,
    /// One smaller line under the title.
    pub caption: Option<String>,
}

impl LogLogFigure {
    /// Writes `<stem>.svg` and `<stem>.png` (1000x700 px, white background).
    ///
    /// Axes are `log10 x` and `log10 y` with decade ticks labelled `1e{k}`, padded 4 % around
    /// the data, the error bars, and the reference lines over the data's x range. Series get
    /// distinct palette colours and markers (unless `color`/`marker` say otherwise; `dashed`
    /// series are drawn as dashed lines without markers, and a dashed series with
    /// an empty label has no legend entry); reference slopes are dashed grey; the legend box
    /// goes in the corner with the fewest points. Parent directories are created. Points with
    /// `x <= 0`, `y <= 0` or non-finite values are skipped (lines are broken there).
    ///
    /// A series without any drawable point is left out, and the caption gains a note
    /// (`"3 points <= 0 or infinite not drawn"`); a reference slope whose anchor is not
    /// drawable (`y0 <= 0` by round-off, infinite) is anchored at the first drawable point, one
    /// with a non-finite power is dropped, each with a note.
    ///
    /// Errors: [`PlotError::NoData`] with no series; [`PlotError::NonPositive`] when no series
    /// has a drawable point; [`PlotError::LengthMismatch`] on bad input
    /// (all checked before any file is touched); [`PlotError::Io`], [`PlotError::Draw`],
    /// [`PlotError::Font`] from writing.
    pub fn save(&self, stem: &Path) -> Result<(), PlotError> {
        save_figure(
            &FigureView {
                title: &self.title,
                x_label: &self.x_label,
                y_label: &self.y_label,
                series: &self.series,
                refs: &self.refs,
                caption: self.caption.as_deref(),
            },
            true,
            stem,
        )
    }
}

impl LogLinFigure {
    /// Writes `<stem>.svg` and `<stem>.png` (1000x700 px) with a linear x axis (nice 1-2-5 ticks)
    /// and a `log10 y` axis (decade ticks `1e{k}`); otherwise as [`LogLogFigure::save`], except
    /// that any finite `x` is drawable and reference curves are drawn where `x > 0`.
    ///
    /// Errors: as [`LogLogFigure::save`].
    pub fn save(&self, stem: &Path) -> Result<(), PlotError> {
        save_figure(
            &FigureView {
                title: &self.title,
                x_label: &self.x_label,
                y_label: &self.y_label,
                series: &self.series,
                refs: &self.refs,
                caption: self.caption.as_deref(),
            },
            false,
            stem,
        )
    }
}

/// The fields both figure kinds share, borrowed.
struct FigureView<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [Series],
    refs: &'a [RefSlope],
    caption: Option<&'a str>,
}

/// A series in transformed coordinates `(X, Y)`.
struct PreparedSeries {
    label: String,
    /// Dashed, without markers.
    dashed: bool,
    /// The palette index of the colour.
    color: usize,
    /// The marker shape index.
    marker: usize,
    /// Runs of consecutive drawable points (broken at skipped points).
    segments: Vec<Vec<(f64, f64)>>,
    /// All drawable points.
    points: Vec<(f64, f64)>,
    /// Error bars `(X, Y_lo, Y_hi)`; `Y_lo` is `-inf` when `y - err <= 0`.
    bars: Vec<(f64, f64, f64)>,
}

/// A reference curve in transformed coordinates.
struct PreparedRef {
    label: String,
    segments: Vec<Vec<(f64, f64)>>,
}

/// Tick positions in transformed coordinates.
struct Ticks {
    bold: Vec<f64>,
    light: Vec<f64>,
}

/// Everything needed to draw, in transformed coordinates.
struct Prepared {
    series: Vec<PreparedSeries>,
    refs: Vec<PreparedRef>,
    x_range: (f64, f64),
    y_range: (f64, f64),
    x_ticks: Ticks,
    y_ticks: Ticks,
    legend: SeriesLabelPosition,
    /// What was not drawn (skipped points, re-anchored or dropped references), appended to
    /// the caption.
    notes: Vec<String>,
}

/// Registers the embedded DejaVu Sans as `"sans-serif"` once per process.
fn ensure_font() -> Result<(), PlotError> {
    FONT.get_or_init(|| {
        register_font(FAMILY, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| "the embedded DejaVuSans.ttf could not be parsed".to_string())
    })
    .clone()
    .map_err(PlotError::Font)
}

/// `path` with `.ext` appended (not replacing an existing extension: `a.b` -> `a.b.svg`).
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Converts any plotters error to [`PlotError::Draw`].
fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// The shared implementation of both `save`s: validate, prepare, then draw SVG and PNG.
fn save_figure(fig: &FigureView<'_>, x_log: bool, stem: &Path) -> Result<(), PlotError> {
    let prepared = prepare(fig, x_log)?;
    ensure_font()?;
    // Each file is drawn to a temporary path beside it and renamed over it (atomic: a killed
    // run leaves the previous figure intact).
    crate::output::replace_via_temp(&with_suffix(stem, "svg"), |svg| {
        let root = SVGBackend::new(svg, (WIDTH, HEIGHT)).into_drawing_area();
        render(&root, fig, &prepared, x_log)?;
        root.present().map_err(draw_err)
    })?;
    crate::output::replace_via_temp(&with_suffix(stem, "png"), |png| {
        let root = BitMapBackend::new(png, (WIDTH, HEIGHT)).into_drawing_area();
        render(&root, fig, &prepared, x_log)?;
        root.present().map_err(draw_err)
    })
}

/// The transformed abscissa `X = log10 x` (log axis) or `X = x`; `None` when not drawable.
fn tx(x: f64, x_log: bool) -> Option<f64> {
    if !x.is_finite() {
        None
    } else if x_log {
        (x > 0.0).then(|| x.log10())
    } else {
        Some(x)
    }
}

/// The transformed ordinate `Y = log10 y`; `None` unless `y` is finite and `> 0`.
fn ty(y: f64) -> Option<f64> {
    (y.is_finite() && y > 0.0).then(|| y.log10())
}

/// Validates the figure and maps it to transformed coordinates, ranges, ticks and legend place.
fn prepare(fig: &FigureView<'_>, x_log: bool) -> Result<Prepared, PlotError> {
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
    for r0 in fig.refs {
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

/// `(min, max)` of a non-empty iterator of finite values.
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Widens `[lo, hi]` by 4 % of its span on each side; a zero span becomes `±0.5` (half a decade
/// on a log axis) or `±max(0.1 |lo|, 0.5)` on a linear one.
fn pad(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    let span = hi - lo;
    if span > 0.0 {
        (lo - 0.04 * span, hi + 0.04 * span)
    } else {
        let h = if log { 0.5 } else { (0.1 * lo.abs()).max(0.5) };
        (lo - h, hi + h)
    }
}

/// A linear axis over transformed units with explicit bold (labelled) and light ticks.
struct TickedAxis {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl TickedAxis {
    /// The axis `[lo, hi]` with the given ticks.
    fn new((lo, hi): (f64, f64), ticks: &Ticks) -> Self {
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
fn log_ticks(lo: f64, hi: f64) -> Ticks {
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
fn nice_step(span: f64) -> f64 {
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
fn linear_ticks(lo: f64, hi: f64) -> Ticks {
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
fn log_label(v: f64) -> String {
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
fn linear_label(v: f64, step: f64) -> String {
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

/// The longest caption line, in characters, before it wraps.
const CAPTION_CHARS: usize = 92;

/// Greedy word wrap of `text` into lines of at most `width` characters (a longer word stays
/// whole on its own line); empty text gives no line.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws the prepared figure on one backend (shared by SVG and PNG, log or linear x).
fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &FigureView<'_>,
    p: &Prepared,
    x_log: bool,
) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let mut area = root.clone();
    if !fig.title.is_empty() {
        area = area
            .titled(fig.title, (FAMILY, 30).into_font())
            .map_err(draw_err)?;
    }
    let caption = fig
        .caption
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .into_iter()
        .chain(p.notes.iter().cloned())
        .collect::<Vec<_>>()
        .join("; ");
    // One line per CAPTION_CHARS (20 px DejaVu Sans is ~10 px per character on a 1000 px
    // figure): a long caption used to run off both edges.
    for line in wrap(&caption, CAPTION_CHARS) {
        area = area
            .titled(&line, (FAMILY, 20).into_font().color(&RGBColor(70, 70, 70)))
            .map_err(draw_err)?;
    }

    let (x_lo, x_hi) = p.x_range;
    let mut chart = ChartBuilder::on(&area)
        .margin(16)
        .margin_right(36)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(
            TickedAxis::new(p.x_range, &p.x_ticks),
            TickedAxis::new(p.y_range, &p.y_ticks),
        )
        .map_err(draw_err)?;

    let x_step = if x_log { 1.0 } else { nice_step(x_hi - x_lo) };
    let x_fmt = move |v: &f64| {
        if x_log {
            log_label(*v)
        } else {
            linear_label(*v, x_step)
        }
    };
    let y_fmt = |v: &f64| log_label(*v);
    chart
        .configure_mesh()
        .x_desc(fig.x_label)
        .y_desc(fig.y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FAMILY, 19))
        .axis_desc_style((FAMILY, 22))
        .bold_line_style(RGBColor(205, 205, 205))
        .light_line_style(RGBColor(242, 242, 242))
        .axis_style(BLACK)
        .draw()
        .map_err(draw_err)?;

    // Reference lines first (underneath), without legend entries; those come after the series.
    let ref_style = |i: usize| REF_GREYS[i % REF_GREYS.len()].stroke_width(2);
    for (i, r) in p.refs.iter().enumerate() {
        for seg in &r.segments {
            chart
                .draw_series(DashedLineSeries::new(
                    seg.iter().copied(),
                    10,
                    6,
                    ref_style(i),
                ))
                .map_err(draw_err)?;
        }
    }

    for s in &p.series {
        let i = s.marker;
        let color = PALETTE[s.color % PALETTE.len()];
        if s.dashed {
            for seg in s.segments.iter().filter(|seg| seg.len() >= 2) {
                chart
                    .draw_series(DashedLineSeries::new(
                        seg.iter().copied(),
                        8,
                        5,
                        color.stroke_width(2),
                    ))
                    .map_err(draw_err)?;
            }
            if !s.label.is_empty() {
                let style = color.stroke_width(2);
                chart
                    .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                    .map_err(draw_err)?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (9, 0)], style)
                            + PathElement::new(vec![(15, 0), (24, 0)], style)
                    });
            }
            continue;
        }
        for seg in s.segments.iter().filter(|seg| seg.len() >= 2) {
            chart
                .draw_series(LineSeries::new(seg.iter().copied(), color.stroke_width(2)))
                .map_err(draw_err)?;
        }
        if !s.bars.is_empty() {
            let bar_style = color.stroke_width(1);
            chart
                .draw_series(
                    s.bars
                        .iter()
                        .map(|&(x, lo, hi)| PathElement::new(vec![(x, lo), (x, hi)], bar_style)),
                )
                .map_err(draw_err)?;
            chart
                .draw_series(s.bars.iter().flat_map(|&(x, lo, hi)| {
                    [lo, hi].map(|y| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(-4, 0), (4, 0)], bar_style)
                    })
                }))
                .map_err(draw_err)?;
        }
        // Marker shape i % 4: circle, triangle, square, diamond.
        let pts = s.points.iter().copied();
        let fill = color.filled();
        let anno = match i % 4 {
            0 => chart.draw_series(pts.map(|c| EmptyElement::at(c) + Circle::new((0, 0), 4, fill))),
            1 => chart.draw_series(
                pts.map(|c| EmptyElement::at(c) + TriangleMarker::new((0, 0), 6, fill)),
            ),
            2 => chart.draw_series(
                pts.map(|c| EmptyElement::at(c) + Rectangle::new([(-4, -4), (4, 4)], fill)),
            ),
            _ => chart.draw_series(pts.map(|c| {
                EmptyElement::at(c) + Polygon::new(vec![(0, -5), (5, 0), (0, 5), (-5, 0)], fill)
            })),
        }
        .map_err(draw_err)?;
        if !s.label.is_empty() {
            anno.label(s.label.as_str()).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (24, 0)], color.stroke_width(2))
                    + marker_pixel(i, color)
            });
        }
    }

    for (i, r) in p.refs.iter().enumerate() {
        if r.label.is_empty() {
            continue;
        }
        let style = ref_style(i);
        chart
            .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
            .map_err(draw_err)?
            .label(r.label.as_str())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (9, 0)], style)
                    + PathElement::new(vec![(15, 0), (24, 0)], style)
            });
    }

    if p.series.iter().any(|s| !s.label.is_empty()) || p.refs.iter().any(|r| !r.label.is_empty()) {
        chart
            .configure_series_labels()
            .position(p.legend.clone())
            .margin(12)
            .legend_area_size(32)
            .label_font((FAMILY, 19))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(120, 120, 120))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The legend marker of series `i`, in pixel offsets from the legend glyph's origin
/// (centred on the middle of its 24-px line).
fn marker_pixel(i: usize, color: RGBColor) -> Polygon<(i32, i32)> {
    let (cx, cy) = (12, 0);
    let pts: Vec<(i32, i32)> = match i % 4 {
        0 => (0..12)
            .map(|k| {
                let a = k as f64 * std::f64::consts::TAU / 12.0;
                (
                    cx + (4.0 * a.cos()).round() as i32,
                    cy + (4.0 * a.sin()).round() as i32,
                )
            })
            .collect(),
        1 => vec![(cx, cy - 5), (cx + 5, cy + 4), (cx - 5, cy + 4)],
        2 => vec![
            (cx - 4, cy - 4),
            (cx + 4, cy - 4),
            (cx + 4, cy + 4),
            (cx - 4, cy + 4),
        ],
        _ => vec![(cx, cy - 5), (cx + 5, cy), (cx, cy + 5), (cx - 5, cy)],
    };
    Polygon::new(pts, color.filled())
}

/// Writes a PNG grid of images (`cols` per row, each `channels x height x width`, values
/// mapped linearly from `[lo, hi]` to 0..255 and clipped; one channel is drawn grey, three
/// as RGB), each pixel drawn as a `scale x scale` block with a 2-pixel white gutter.
///
/// # Errors
/// A wrong image length, or a drawing error.
pub fn save_image_grid(
    images: &[Vec<f64>],
    (channels, height, width): (usize, usize, usize),
    cols: usize,
    range: (f64, f64),
    scale: u32,
    path: &Path,
) -> Result<(), PlotError> {
    let n = channels * height * width;
    if let Some(index) = images.iter().position(|im| im.len() != n) {
        return Err(PlotError::Draw(format!(
            "image {index} has length {}, expected {n}",
            images[index].len()
        )));
    }
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols);
    let gut = 2u32;
    let cell_w = width as u32 * scale + gut;
    let cell_h = height as u32 * scale + gut;
    // Drawn to a temporary path beside `path` and renamed over it (atomic).
    crate::output::replace_via_temp(path, |tmp| {
        let root = BitMapBackend::new(
            tmp,
            (cols as u32 * cell_w + gut, rows as u32 * cell_h + gut),
        )
        .into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let level =
            |v: f64| (((v - range.0) / (range.1 - range.0)).clamp(0.0, 1.0) * 255.0).round() as u8;
        for (idx, im) in images.iter().enumerate() {
            let (r0, c0) = ((idx / cols) as u32, (idx % cols) as u32);
            for y in 0..height {
                for x in 0..width {
                    let px = |ch: usize| level(im[ch * height * width + y * width + x]);
                    let color = if channels == 3 {
                        RGBColor(px(0), px(1), px(2))
                    } else {
                        let g = px(0);
                        RGBColor(g, g, g)
                    };
                    let x0 = (gut + c0 * cell_w + x as u32 * scale) as i32;
                    let y0 = (gut + r0 * cell_h + y as u32 * scale) as i32;
                    root.draw(&Rectangle::new(
                        [(x0, y0), (x0 + scale as i32, y0 + scale as i32)],
                        color.filled(),
                    ))
                    .map_err(draw_err)?;
                }
            }
        }
        root.present().map_err(draw_err)
    })
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

    fn temp_stem(name: &str) -> PathBuf {
        let unique = format!(
            "covlab-plot-{}-{}-{}",
            name,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        std::env::temp_dir().join(unique).join("sub").join(name)
    }

    /// The trimmed contents of every `<text ...>...</text>` element of an SVG.
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|chunk| {
                let body = &chunk[chunk.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }

    fn example_loglog() -> LogLogFigure {
        let h: Vec<f64> = (0..8).map(|i| 0.5f64.powi(i)).collect();
        LogLogFigure {
            title: "Path KL vs step".into(),
            x_label: "step size h".into(),
            y_label: "KL".into(),
            series: vec![
                Series::new(
                    "alpha-series",
                    h.clone(),
                    h.iter().map(|t| 2.0 * t).collect(),
                ),
                Series::new(
                    "beta-series",
                    h.clone(),
                    h.iter().map(|t| 0.3 * t * t).collect(),
                )
                .with_err(h.iter().map(|t| 0.1 * t * t).collect()),
            ],
            refs: vec![RefSlope::new(1.0, 1.0, 4.0, "slope 1")],
            caption: Some("route A, vp-linear, err < 1e-9".into()),
        }
    }

    #[test]
    fn writes_svg_and_png() {
        let stem = temp_stem("loglog");
        example_loglog().save(&stem).unwrap();
        let svg_path = with_suffix(&stem, "svg");
        let png_path = with_suffix(&stem, "png");
        assert!(svg_path.is_file() && png_path.is_file());
        let png = std::fs::read(&png_path).unwrap();
        assert!(png.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]));
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        for text in [
            "alpha-series",
            "beta-series",
            "slope 1",
            "Path KL vs step",
            "step size h",
        ] {
            assert!(svg.contains(text), "SVG lacks {text:?}");
        }
        // The caption's '<' must be escaped in the SVG.
        assert!(svg.contains("err &lt; 1e-9"));
        // Decade tick labels (h runs over 1 .. 2^-7 and y over ~1e-5 .. 4).
        let texts = svg_texts(&svg);
        for tick in ["1e-2", "1e-1", "1e0"] {
            assert!(
                texts.iter().any(|t| t == tick),
                "no tick label {tick}: {texts:?}"
            );
        }
        let _ = std::fs::remove_dir_all(stem.parent().and_then(Path::parent).unwrap());
    }

    #[test]
    fn loglin_figure_writes_files() {
        let stem = temp_stem("loglin");
        let k: Vec<f64> = (1..=30).map(f64::from).collect();
        let fig = LogLinFigure {
            title: "Lanczos error".into(),
            x_label: "k".into(),
            y_label: "error".into(),
            series: vec![
                Series::new(
                    "lanczos",
                    k.clone(),
                    k.iter().map(|&t| 0.6f64.powf(t)).collect(),
                )
                .with_marker(2),
                Series::new(
                    "bound-dashed",
                    k.clone(),
                    k.iter().map(|&t| 0.7f64.powf(t)).collect(),
                )
                .dashed()
                .with_color(0),
            ],
            refs: vec![],
            caption: None,
        };
        fig.save(&stem).unwrap();
        let svg = std::fs::read_to_string(with_suffix(&stem, "svg")).unwrap();
        assert!(svg.contains("lanczos") && svg.contains("bound-dashed"));
        let png = std::fs::read(with_suffix(&stem, "png")).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let _ = std::fs::remove_dir_all(stem.parent().and_then(Path::parent).unwrap());
    }

    #[test]
    fn long_captions_wrap_and_keep_every_word() {
        let text = "10000 samples; last step mean; exact-vs-exact s.e. 4.4e-4 (values below are \
                    noise; non-positive values not drawn); 2 points <= 0 or infinite not drawn";
        let lines = wrap(text, CAPTION_CHARS);
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= CAPTION_CHARS),
            "{lines:?}"
        );
        assert_eq!(
            lines.join(" "),
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn undrawable_series_and_refs_are_skipped_and_said_in_the_caption() {
        // A single Gaussian: S = -8.9e-16 by round-off, a reference slope anchored there, an
        // infinite point; the figure is drawn and its caption says what was left out.
        let stem = temp_stem("skip");
        let mut fig = example_loglog();
        fig.series.push(Series::new(
            "all-negative",
            vec![1.0, 2.0, 3.0],
            vec![-8.9e-16, 0.0, f64::INFINITY],
        ));
        fig.refs
            .push(RefSlope::new(-1.0, 8.0, -8.9e-16, "slope -1 at round-off"));
        fig.refs.push(RefSlope::new(f64::NAN, 8.0, 1.0, "no power"));
        fig.save(&stem).unwrap();
        let texts = svg_texts(&std::fs::read_to_string(with_suffix(&stem, "svg")).unwrap());
        // The caption wraps over several text lines (drawn one after the other).
        let caption = &texts.join(" ");
        assert!(caption.contains("not drawn"), "no note in {texts:?}");
        // The three points of the undrawable series, nothing of the others.
        assert!(
            caption.contains("3 points &lt;= 0 or infinite not drawn"),
            "{caption}"
        );
        assert!(
            caption.contains("slope -1 at round-off")
                && caption.contains("anchored at the first drawable point"),
            "{caption}"
        );
        assert!(
            caption.contains("\"no power\" not drawn")
                || caption.contains("&quot;no power&quot; not drawn"),
            "{caption}"
        );
        assert!(with_suffix(&stem, "png").exists());
        // With nothing drawable at all, the figure is an error and writes nothing.
        let stem = temp_stem("bad");
        let fig = LogLogFigure {
            series: vec![Series::new("all-negative", vec![1.0, 2.0], vec![0.0, -1.0])],
            ..Default::default()
        };
        match fig.save(&stem) {
            Err(PlotError::NonPositive { series, index }) => {
                assert_eq!(series, "all-negative");
                assert_eq!(index, 0);
            }
            other => panic!("expected NonPositive, got {other:?}"),
        }
        assert!(!with_suffix(&stem, "svg").exists());
        assert!(!with_suffix(&stem, "png").exists());
    }

    #[test]
    fn skips_non_positive_points_and_checks_input() {
        // Some non-positive points are skipped: fine.
        let s = Series::new("mixed", vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 0.0, 0.5, 0.25]);
        let fig = LogLogFigure {
            series: vec![s],
            ..Default::default()
        };
        let view = FigureView {
            title: "",
            x_label: "",
            y_label: "",
            series: &fig.series,
            refs: &[],
            caption: None,
        };
        let p = prepare(&view, true).unwrap();
        assert_eq!(p.series[0].points.len(), 3);
        assert_eq!(
            p.series[0].segments.len(),
            2,
            "line must break at the skipped point"
        );

        assert!(matches!(
            LogLogFigure::default().save(&temp_stem("empty")),
            Err(PlotError::NoData)
        ));
        let fig = LogLogFigure {
            series: vec![Series::new("short", vec![1.0, 2.0], vec![1.0])],
            ..Default::default()
        };
        assert!(matches!(
            fig.save(&temp_stem("short")),
            Err(PlotError::LengthMismatch {
                field: "y",
                expected: 2,
                got: 1,
                ..
            })
        ));
        // A reference with an undrawable anchor is re-anchored, not an error.
        let mut fig = example_loglog();
        fig.refs.push(RefSlope::new(-1.0, 0.0, 1.0, "bad anchor"));
        fig.save(&temp_stem("badref")).unwrap();
    }

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
