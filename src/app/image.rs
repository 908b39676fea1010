//! The one mapping between 8-bit grey levels and the model's space (level / 127.5 - 1, in
//! [-1, 1]), and the image layouts the pages draw and download: a grid of samples, a strip of
//! frames over time, single tiles. Platform-free, so every layout is tested natively; the
//! browser only blits the RGBA these produce.

use crate::nets::unet::{IMAGE_SIZE, PIXELS};

/// 8-bit grey levels to model space.
pub fn from_pixels(levels: &[u8]) -> Vec<f32> {
    levels.iter().map(|&p| p as f32 / 127.5 - 1.0).collect()
}

/// Model-space values (clamped to [-1, 1]) to 8-bit grey levels.
pub fn to_pixels(values: &[f32]) -> Vec<u8> {
    values.iter().map(|v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8).collect()
}

/// Frames of `count` grey images each as one image: a row per image, a column per frame, `gap`
/// black pixels between tiles. Returns (width, height, RGBA).
pub fn strip_rgba(frames: &[impl AsRef<[u8]>], count: usize, gap: usize) -> (usize, usize, Vec<u8>) {
    let (cols, rows) = (frames.len(), count);
    let w = cols * IMAGE_SIZE + cols.saturating_sub(1) * gap;
    let h = rows * IMAGE_SIZE + rows.saturating_sub(1) * gap;
    let mut rgba = vec![0u8; w * h * 4];
    for (c, frame) in frames.iter().enumerate() {
        let frame = frame.as_ref();
        for r in 0..rows {
            blit(&mut rgba, w, c * (IMAGE_SIZE + gap), r * (IMAGE_SIZE + gap), &frame[r * PIXELS..(r + 1) * PIXELS]);
        }
    }
    opaque(&mut rgba);
    (w, h, rgba)
}

/// One 28x28 grey image as RGBA.
pub fn tile_rgba(grey: &[u8]) -> Vec<u8> {
    grey.iter().flat_map(|&v| [v, v, v, 255]).collect()
}

fn opaque(rgba: &mut [u8]) {
    for px in rgba.chunks_mut(4) {
        px[3] = 255;
    }
}

/// Columns and rows of the square-ish grid that shows `count` samples.
pub fn grid_shape(count: usize) -> (usize, usize) {
    let cols = (count as f64).sqrt().ceil() as usize;
    (cols, count.div_ceil(cols.max(1)))
}

/// `count` grey 28x28 images (0-255, sample-major) tiled into the grid, as RGBA.
pub fn grid_rgba_from_pixels(grey: &[u8], count: usize) -> (usize, usize, Vec<u8>) {
    let (cols, rows) = grid_shape(count);
    let (w, h) = (cols * IMAGE_SIZE, rows * IMAGE_SIZE);
    let mut rgba = vec![0u8; w * h * 4];
    for k in 0..count {
        blit(&mut rgba, w, (k % cols) * IMAGE_SIZE, (k / cols) * IMAGE_SIZE, &grey[k * PIXELS..(k + 1) * PIXELS]);
    }
    opaque(&mut rgba);
    (w, h, rgba)
}

/// Model-space images ([count, 784] in [-1, 1]) tiled into the grid, as RGBA.
pub fn grid_rgba(values: &[f32], count: usize) -> (usize, usize, Vec<u8>) {
    grid_rgba_from_pixels(&to_pixels(values), count)
}

/// The inverse of the grid layout: the red channel of a grid image back to model space
/// ([count, 784] in [-1, 1]). Errors when the image is not a grid of `count`.
pub fn values_from_grid_rgba(rgba: &[u8], w: usize, h: usize, count: usize) -> Result<Vec<f32>, String> {
    let (cols, rows) = grid_shape(count);
    if w != cols * IMAGE_SIZE || h != rows * IMAGE_SIZE || rgba.len() != w * h * 4 {
        return Err(format!("canvas is {w}x{h}, not a grid of {count} digits"));
    }
    let mut values = Vec::with_capacity(count * PIXELS);
    for k in 0..count {
        let (x0, y0) = ((k % cols) * IMAGE_SIZE, (k / cols) * IMAGE_SIZE);
        for y in 0..IMAGE_SIZE {
            for x in 0..IMAGE_SIZE {
                values.push(rgba[((y0 + y) * w + x0 + x) * 4] as f32 / 127.5 - 1.0);
            }
        }
    }
    Ok(values)
}

/// Copy one 28x28 grey tile into an RGBA image of width `w` at (x0, y0).
fn blit(rgba: &mut [u8], w: usize, x0: usize, y0: usize, grey: &[u8]) {
    for y in 0..IMAGE_SIZE {
        for x in 0..IMAGE_SIZE {
            let v = grey[y * IMAGE_SIZE + x];
            let o = ((y0 + y) * w + x0 + x) * 4;
            rgba[o..o + 3].copy_from_slice(&[v, v, v]);
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_round_trips_through_rgba() {
        for count in [1, 4, 16, 64] {
            let values: Vec<f32> = (0..count * PIXELS).map(|i| ((i * 37) % 256) as f32 / 127.5 - 1.0).collect();
            let (w, h, rgba) = grid_rgba(&values, count);
            let back = values_from_grid_rgba(&rgba, w, h, count).unwrap();
            let worst = values.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1.0 / 127.5, "grid of {count}: round trip off by {worst}");
        }
        assert!(values_from_grid_rgba(&[0; 56 * 28 * 4], 56, 28, 4).is_err());
    }

    #[test]
    fn levels_and_model_space_round_trip() {
        let levels: Vec<u8> = (0..=255).collect();
        assert_eq!(to_pixels(&from_pixels(&levels)), levels);
        assert_eq!(from_pixels(&[0, 255]), vec![-1.0, 1.0]);
        assert_eq!(to_pixels(&[-3.0, 3.0, 0.0]), vec![0, 255, 128]);
    }

    #[test]
    fn a_tile_is_its_grey_levels_as_opaque_rgba() {
        let grey: Vec<u8> = (0..PIXELS).map(|k| (k % 256) as u8).collect();
        let rgba = tile_rgba(&grey);
        assert_eq!(rgba.len(), 4 * PIXELS);
        assert_eq!(&rgba[4 * 300..4 * 301], &[44, 44, 44, 255]);
    }
}

/// A picture's grey levels as the model's digits are, light strokes on a dark ground: inverted
/// when its border (the outermost ring of pixels) is mostly light, as a digit written on paper is.
pub fn light_on_dark(levels: &[u8]) -> Vec<u8> {
    let n = (levels.len() as f64).sqrt() as usize;
    let border: Vec<u8> = (0..levels.len()).filter(|&k| k / n == 0 || k / n == n - 1 || k % n == 0 || k % n == n - 1).map(|k| levels[k]).collect();
    let mean = border.iter().map(|&v| v as f64).sum::<f64>() / border.len().max(1) as f64;
    if mean > 127.5 { levels.iter().map(|v| 255 - v).collect() } else { levels.to_vec() }
}
