//! The figure, [`Plot`]: `log10 y` against `log10 x` or linear `x` (its [`XScale`]), and
//! writing it as SVG and PNG.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::error::{draw_err, PlotError};
use super::prepared::prepare;
use super::render::{ensure_font, render};
use super::series::{RefSlope, Series};

/// Figure width in pixels.
const WIDTH: u32 = 1000;
/// Figure height in pixels.
const HEIGHT: u32 = 700;

/// How the x axis maps `x`: the y axis is always `log10 y`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XScale {
    /// `log10 x`: a log-log figure, where `y = c x^p` is a line of slope `p`; decade ticks
    /// `1e{k}`, and points with `x <= 0` are not drawable.
    #[default]
    Log,
    /// Linear `x` (e.g. a Lanczos error against `k`): a log-linear figure, where `y = c b^x` is
    /// a line of slope `log10 b`; nice 1-2-5 ticks, any finite `x` drawable, reference curves
    /// drawn where `x > 0`.
    Linear,
}

impl XScale {
    /// Whether the x axis is logarithmic.
    #[must_use]
    pub fn is_log(self) -> bool {
        matches!(self, XScale::Log)
    }
}

/// A figure: `log10 y` against `x` on the [`XScale`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plot {
    /// The x axis: log-log or log-linear.
    pub x_scale: XScale,
    /// The title, drawn at the top.
    pub title: String,
    /// The x-axis description.
    pub x_label: String,
    /// The y-axis description.
    pub y_label: String,
    /// The curves, coloured from a fixed 9-colour palette in order.
    pub series: Vec<Series>,
    /// Dashed grey reference curves `y = y0 (x/x0)^p` (straight lines on a log x axis, drawn
    /// where `x > 0` on a linear one).
    pub refs: Vec<RefSlope>,
    /// One smaller line under the title, e.g. `"route A, vp-linear, err < 1e-9"`.
    pub caption: Option<String>,
}

impl Plot {
    /// Writes `<stem>.svg` and `<stem>.png` (1000x700 px, white background).
    ///
    /// Axes are `x` on the [`XScale`] and `log10 y` with decade ticks labelled `1e{k}`, padded
    /// 4 % around the data, the error bars, and the reference lines over the data's x range.
    /// Series get distinct palette colours and markers (unless `color`/`marker` say otherwise;
    /// `dashed` series are drawn as dashed lines without markers, and a dashed series with
    /// an empty label has no legend entry); reference slopes are dashed grey; the legend box
    /// goes in the corner with the fewest points. Parent directories are created. Points with
    /// `y <= 0`, non-finite values or (on a log x axis) `x <= 0` are skipped (lines are broken
    /// there).
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
        let prepared = prepare(self)?;
        ensure_font()?;
        // Each file is drawn to a temporary path beside it and renamed over it (atomic: a
        // killed run leaves the previous figure intact).
        crate::output::replace_via_temp(&with_suffix(stem, "svg"), |svg| {
            let root = SVGBackend::new(svg, (WIDTH, HEIGHT)).into_drawing_area();
            render(&root, self, &prepared)?;
            root.present().map_err(draw_err)
        })?;
        crate::output::replace_via_temp(&with_suffix(stem, "png"), |png| {
            let root = BitMapBackend::new(png, (WIDTH, HEIGHT)).into_drawing_area();
            render(&root, self, &prepared)?;
            root.present().map_err(draw_err)
        })
    }
}

/// `path` with `.ext` appended (not replacing an existing extension: `a.b` -> `a.b.svg`).
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn example_loglog() -> Plot {
        let h: Vec<f64> = (0..8).map(|i| 0.5f64.powi(i)).collect();
        Plot {
            x_scale: XScale::Log,
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
        let fig = Plot {
            x_scale: XScale::Linear,
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
        let fig = Plot {
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
        let fig = Plot {
            series: vec![s],
            ..Default::default()
        };
        let p = prepare(&fig).unwrap();
        assert_eq!(p.series[0].points.len(), 3);
        assert_eq!(
            p.series[0].segments.len(),
            2,
            "line must break at the skipped point"
        );

        assert!(matches!(
            Plot::default().save(&temp_stem("empty")),
            Err(PlotError::NoData)
        ));
        let fig = Plot {
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
}
