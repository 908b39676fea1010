//! The kept trajectory of a sampling run as 8-bit grey frames, and the image layouts the pages
//! draw and download (a grid of samples; a strip of frames over time). Host-side and platform
//! free, so the layouts are tested natively; the browser only blits the RGBA these produce.

use crate::model::{IMAGE_SIZE, PIXELS};
use crate::sampling::to_pixels;

/// One drawn step: what was shown for every sample, and what the classifier read in x_0.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The paper's t of the step (x_t -> x_{t-1}).
    pub t: usize,
    /// Steps done when this frame was drawn.
    pub done: usize,
    /// `count` images of 28x28 grey levels, sample-major.
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub confidences: Vec<f32>,
}

/// Every drawn frame of one run, in order. 784 bytes per sample per frame: a 1000-step DDPM run
/// of 64 samples drawn every step keeps 50 MB, freed when the next run begins.
#[derive(Debug, Clone, Default)]
pub struct Trajectory {
    count: usize,
    frames: Vec<Frame>,
}

impl Trajectory {
    pub fn new(count: usize) -> Self {
        Self { count, frames: Vec::new() }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn frame(&self, index: usize) -> Option<&Frame> {
        self.frames.get(index)
    }

    /// Keep a frame from model-space values ([count, 784] in [-1, 1]).
    pub fn push(&mut self, t: usize, done: usize, values: &[f32], labels: Vec<u32>, confidences: Vec<f32>) {
        assert_eq!(values.len(), self.count * PIXELS, "a frame holds {} images", self.count);
        self.frames.push(Frame { t, done, pixels: to_pixels(values), labels, confidences });
    }

    /// Indices of up to `columns` frames spread evenly from the first to the last (both kept).
    pub fn strip_indices(&self, columns: usize) -> Vec<usize> {
        let n = self.frames.len();
        if n == 0 || columns == 0 {
            return Vec::new();
        }
        if columns >= n {
            return (0..n).collect();
        }
        if columns == 1 {
            return vec![n - 1];
        }
        (0..columns).map(|k| (k * (n - 1) + (columns - 1) / 2) / (columns - 1)).collect()
    }

    /// The trajectory as one image: a row per sample, a column per chosen frame (time runs left
    /// to right), `gap` black pixels between tiles. Returns (width, height, RGBA).
    pub fn strip_rgba(&self, columns: usize, gap: usize) -> (usize, usize, Vec<u8>) {
        let chosen = self.strip_indices(columns);
        let tiles: Vec<&[u8]> = chosen.iter().map(|&i| self.frames[i].pixels.as_slice()).collect();
        let (cols, rows) = (tiles.len(), self.count);
        let w = cols * IMAGE_SIZE + cols.saturating_sub(1) * gap;
        let h = rows * IMAGE_SIZE + rows.saturating_sub(1) * gap;
        let mut rgba = vec![0u8; w * h * 4];
        for (c, frame) in tiles.iter().enumerate() {
            for r in 0..rows {
                blit(&mut rgba, w, c * (IMAGE_SIZE + gap), r * (IMAGE_SIZE + gap), &frame[r * PIXELS..(r + 1) * PIXELS]);
            }
        }
        for px in rgba.chunks_mut(4) {
            px[3] = 255;
        }
        (w, h, rgba)
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
    for px in rgba.chunks_mut(4) {
        px[3] = 255;
    }
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

    /// Image k of a frame is filled with the grey level `base + k`.
    fn frame_values(count: usize, base: u8) -> Vec<f32> {
        (0..count).flat_map(|k| std::iter::repeat_n((base + k as u8) as f32 / 127.5 - 1.0, PIXELS)).collect()
    }

    #[test]
    fn strip_indices_spread_evenly_and_keep_both_ends() {
        let mut tr = Trajectory::new(1);
        for i in 0..50 {
            tr.push(1000 - i, i + 1, &frame_values(1, 0), vec![0], vec![1.0]);
        }
        assert_eq!(tr.strip_indices(5), vec![0, 12, 25, 37, 49]);
        assert_eq!(tr.strip_indices(2), vec![0, 49]);
        assert_eq!(tr.strip_indices(1), vec![49]);
        assert_eq!(tr.strip_indices(80), (0..50).collect::<Vec<_>>());
        assert!(Trajectory::new(3).strip_indices(4).is_empty());
    }

    #[test]
    fn strip_puts_samples_in_rows_and_time_in_columns() {
        let mut tr = Trajectory::new(3);
        for f in 0..4u8 {
            tr.push(4 - f as usize, f as usize + 1, &frame_values(3, 10 * f), vec![0; 3], vec![0.5; 3]);
        }
        let gap = 2;
        let (w, h, rgba) = tr.strip_rgba(4, gap);
        assert_eq!((w, h), (4 * 28 + 3 * gap, 3 * 28 + 2 * gap));
        let at = |x: usize, y: usize| &rgba[(y * w + x) * 4..(y * w + x) * 4 + 4];
        for f in 0..4 {
            for s in 0..3 {
                // The middle of tile (row s, column f) shows frame f of sample s.
                let v = to_pixels(&frame_values(3, 10 * f as u8))[s * PIXELS];
                assert_eq!(at(f * (28 + gap) + 14, s * (28 + gap) + 14), &[v, v, v, 255]);
            }
        }
        assert_eq!(at(28, 0), &[0, 0, 0, 255], "gaps are black");
    }

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
}
