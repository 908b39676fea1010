//! The classic, non-learned answers each restoration is compared with, and the distortion
//! measure: harmonic (Laplace) inpainting, box downsampling with bilinear and bicubic upscaling
//! (the `image` crate's resize), a Gaussian blur for denoising, and PSNR. All on 28x28 images in
//! the model's space [-1, 1], host-side, so they are tested natively and run unchanged in wasm.

use image::{ImageBuffer, Luma, imageops};

use crate::nets::unet::{IMAGE_SIZE, PIXELS};

type Grey = ImageBuffer<Luma<f32>, Vec<f32>>;

fn to_image(values: &[f32], side: usize) -> Grey {
    ImageBuffer::from_raw(side as u32, side as u32, values.to_vec()).expect("side x side values")
}

/// Harmonic inpainting: the missing pixels solve Laplace's equation with the known ones as
/// boundary values (each missing pixel the mean of its 4 neighbours; edges mirror), by Gauss-Seidel
/// with over-relaxation until no pixel moves by more than 1e-5. The smoothest fill, and the usual
/// non-learned baseline for inpainting.
pub fn harmonic_fill(image: &[f32], known: &[f32]) -> Vec<f32> {
    let n = IMAGE_SIZE;
    assert!(image.len() == PIXELS && known.len() == PIXELS);
    let known_mean = {
        let (sum, count) = image.iter().zip(known).filter(|(_, m)| **m > 0.5).fold((0.0f64, 0usize), |(s, c), (v, _)| (s + *v as f64, c + 1));
        if count == 0 { -1.0 } else { sum / count as f64 }
    };
    let mut x: Vec<f64> = image.iter().zip(known).map(|(v, m)| if *m > 0.5 { *v as f64 } else { known_mean }).collect();
    if known.iter().all(|m| *m <= 0.5) {
        return x.iter().map(|v| *v as f32).collect();
    }
    let omega = 1.8;
    for _ in 0..10_000 {
        let mut largest = 0.0f64;
        for y in 0..n {
            for c in 0..n {
                let k = y * n + c;
                if known[k] > 0.5 {
                    continue;
                }
                let at = |yy: usize, cc: usize| x[yy * n + cc];
                let (up, down) = (at(y.saturating_sub(1), c), at((y + 1).min(n - 1), c));
                let (left, right) = (at(y, c.saturating_sub(1)), at(y, (c + 1).min(n - 1)));
                let target = 0.25 * (up + down + left + right);
                let change = omega * (target - x[k]);
                x[k] += change;
                largest = largest.max(change.abs());
            }
        }
        if largest < 1e-5 {
            break;
        }
    }
    x.iter().map(|v| *v as f32).collect()
}

/// The image at 1/`factor` of its side, each block's mean: the low-resolution input of
/// super-resolution (and ILVR's low-pass filter before it spreads the means back).
pub fn downsample(image: &[f32], factor: usize) -> Vec<f32> {
    let (n, m) = (IMAGE_SIZE, IMAGE_SIZE / factor);
    assert!(IMAGE_SIZE % factor == 0 && image.len() == PIXELS);
    (0..m * m)
        .map(|k| {
            let (by, bx) = (k / m, k % m);
            let mut sum = 0.0f32;
            for dy in 0..factor {
                for dx in 0..factor {
                    sum += image[(by * factor + dy) * n + bx * factor + dx];
                }
            }
            sum / (factor * factor) as f32
        })
        .collect()
}

/// A low-resolution image (side 28 / `factor`) back at 28x28, each value spread over its block:
/// the reference ILVR's low-pass filter compares with.
pub fn upsample_nearest(small: &[f32], factor: usize) -> Vec<f32> {
    let m = IMAGE_SIZE / factor;
    (0..PIXELS).map(|k| small[(k / IMAGE_SIZE / factor) * m + (k % IMAGE_SIZE) / factor]).collect()
}

/// Bilinear upscaling to 28x28 (triangle filter).
pub fn upsample_bilinear(small: &[f32], factor: usize) -> Vec<f32> {
    resize(small, factor, imageops::FilterType::Triangle)
}

/// Bicubic upscaling to 28x28 (Catmull-Rom, Keys' a = -0.5), clamped to the model's range.
pub fn upsample_bicubic(small: &[f32], factor: usize) -> Vec<f32> {
    resize(small, factor, imageops::FilterType::CatmullRom)
}

/// The image crate's float pipelines work in [0, 1] (and clamp to it): the model's [-1, 1] goes
/// through as (v + 1) / 2 and back.
fn to_unit(values: &[f32]) -> Vec<f32> {
    values.iter().map(|v| (v + 1.0) * 0.5).collect()
}

fn from_unit(values: Vec<f32>) -> Vec<f32> {
    values.into_iter().map(|v| (2.0 * v - 1.0).clamp(-1.0, 1.0)).collect()
}

fn resize(small: &[f32], factor: usize, filter: imageops::FilterType) -> Vec<f32> {
    let m = IMAGE_SIZE / factor;
    from_unit(imageops::resize(&to_image(&to_unit(small), m), IMAGE_SIZE as u32, IMAGE_SIZE as u32, filter).into_raw())
}

/// A Gaussian blur of standard deviation `sigma` pixels (0: the image itself).
pub fn gaussian_blur(image: &[f32], sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return image.to_vec();
    }
    from_unit(imageops::blur(&to_image(&to_unit(image), IMAGE_SIZE), sigma).into_raw())
}

/// The blur widths tried when tuning the denoising baseline per noise level.
pub const BLUR_SIGMAS: [f32; 8] = [0.0, 0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2];

/// Peak signal-to-noise ratio in dB over the pixels where `region` is 1 (all when `None`), with
/// the model space's peak-to-peak range 2: 10 log10(4 / MSE). Infinite for an exact match.
/// Given a set of images end to end, it pools their squared error: the set's PSNR, which an image
/// whose region happens to match exactly (infinite PSNR alone) cannot swamp.
pub fn psnr(estimate: &[f32], truth: &[f32], region: Option<&[f32]>) -> f64 {
    let (mut sum, mut count) = (0.0f64, 0usize);
    for k in 0..truth.len() {
        if region.is_none_or(|r| r[k] > 0.5) {
            sum += ((estimate[k] - truth[k]) as f64).powi(2);
            count += 1;
        }
    }
    if count == 0 {
        return f64::NAN;
    }
    10.0 * (4.0 / (sum / count as f64)).log10()
}

/// The standard deviation of white Gaussian noise in an image, estimated from the image alone
/// (Immerkaer 1996, "Fast noise variance estimation"): the mean absolute response to the 3x3
/// mask [1 -2 1; -2 4 -2; 1 -2 1], which cancels locally linear structure, times
/// sqrt(pi / 2) / 6. Strokes' edges add to it, so on a clean digit it reads a little above 0.
pub fn estimate_noise_sigma(image: &[f32]) -> f64 {
    let n = IMAGE_SIZE;
    assert_eq!(image.len(), PIXELS);
    const MASK: [[f64; 3]; 3] = [[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]];
    let mut sum = 0.0;
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            let response: f64 = (0..3).flat_map(|dy| (0..3).map(move |dx| (dy, dx))).map(|(dy, dx)| MASK[dy][dx] * image[(y + dy - 1) * n + x + dx - 1] as f64).sum();
            sum += response.abs();
        }
    }
    (std::f64::consts::PI / 2.0).sqrt() / 6.0 * sum / ((n - 2) * (n - 2)) as f64
}
