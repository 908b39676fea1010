//! The restore evaluation's table as the manifest ships it and the page shows it, and how its
//! figures aggregate over a set of digits. The runs themselves are native
//! (`crate::native::evaluate_restore`).

use serde::{Deserialize, Serialize};

use crate::restore::damage::Damage;

/// The settings every run of the table used: the restore page's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSettings {
    /// Reverse steps of the respaced chain (inpainting's levels, the denoiser's from its matched t).
    pub steps: usize,
    pub jump: usize,
    pub resamplings: usize,
    /// Posterior samples per noisy digit.
    pub samples: usize,
    pub seed: u64,
}

/// The classifier's accuracy on a set of results against the digits' true labels, and their PSNR
/// in dB against the originals (inside the damaged region, for inpainting).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub psnr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InpaintRow {
    pub preset: Damage,
    pub repaint: Scores,
    pub harmonic: Scores,
    /// The damaged input as it is (background where pixels are missing).
    pub damaged: Scores,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenoiseRow {
    /// The added noise's standard deviation in model space (pixels span [-1, 1]).
    pub sigma: f64,
    /// The paper's t whose noise level matches.
    pub t: usize,
    /// PSNR in dB of Tweedie's E[x0 | xt], of one posterior sample, of the mean of `samples`.
    pub tweedie: f64,
    pub one_sample: f64,
    pub mean_of_samples: f64,
    /// A Gaussian blur of the width that is best over the whole set at this level.
    pub blur: f64,
    pub blur_width: f32,
    pub noisy: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuperresRow {
    pub factor: usize,
    pub ilvr: Scores,
    pub bilinear: Scores,
    pub bicubic: Scores,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InversionRow {
    /// DDIM steps in each direction.
    pub steps: usize,
    /// PSNR in dB of the decoded digit against the original.
    pub psnr: f64,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTable {
    pub command: String,
    /// Held-out digits (never trained on), an equal share of each label.
    pub digits: usize,
    pub settings: TableSettings,
    pub inpainting: Vec<InpaintRow>,
    pub denoising: Vec<DenoiseRow>,
    pub superres: Vec<SuperresRow>,
    pub inversion: Vec<InversionRow>,
}

/// The share of `read` equal to `labels`.
pub fn accuracy(read: &[usize], labels: &[usize]) -> f64 {
    read.iter().zip(labels).filter(|(a, b)| a == b).count() as f64 / labels.len().max(1) as f64
}
