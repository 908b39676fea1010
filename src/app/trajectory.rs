//! The kept trajectory of a sampling run as 8-bit grey frames, for replay and the strip download
//! (laid out by `crate::app::image`).

use crate::app::image::{strip_rgba, to_pixels};
use crate::nets::unet::PIXELS;

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
        let chosen: Vec<&[u8]> = self.strip_indices(columns).iter().map(|&i| self.frames[i].pixels.as_slice()).collect();
        strip_rgba(&chosen, self.count, gap)
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
}
