//! A PNG grid of images ([`save_image_grid`]), one pixel drawn as a `scale x scale` block.

use std::path::Path;

use plotters::prelude::*;

use super::error::{draw_err, PlotError};

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
