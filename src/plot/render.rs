//! Drawing a prepared figure on a plotters backend (SVG or PNG): title, wrapped caption, mesh
//! and tick labels, reference lines, series with markers or dashes and error bars, and the
//! legend; with the series palette, the reference greys and the embedded DejaVu Sans.

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::axes::{linear_label, log_label, nice_step, TickedAxis};
use super::error::{draw_err, PlotError};
use super::figure::Plot;
use super::prepared::Prepared;

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

/// Registers the embedded DejaVu Sans as `"sans-serif"` once per process.
pub(super) fn ensure_font() -> Result<(), PlotError> {
    FONT.get_or_init(|| {
        register_font(FAMILY, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| "the embedded DejaVuSans.ttf could not be parsed".to_string())
    })
    .clone()
    .map_err(PlotError::Font)
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
pub(super) fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Plot,
    p: &Prepared,
) -> Result<(), PlotError> {
    let x_log = fig.x_scale.is_log();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut area = root.clone();
    if !fig.title.is_empty() {
        area = area
            .titled(&fig.title, (FAMILY, 30).into_font())
            .map_err(draw_err)?;
    }
    let caption = fig
        .caption
        .as_deref()
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
        .x_desc(&fig.x_label)
        .y_desc(&fig.y_label)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
