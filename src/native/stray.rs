//! Where stray marks come from: the evaluation's diagnostic (`evaluate --only stray`). For each
//! sample that ends with a stray mark (a second bright region beside the digit,
//! `diffusion::metrics`), the t from which the model's x̂_0 has carried a second region at every
//! later step: the step where the mark was decided. Marks decided early are the network's
//! composition; marks that appear in the last steps would be the sampler's doing.

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::app::config::DdpmConfig;
use crate::diffusion::metrics::{STRAY_MARK_PIXELS, bright_regions};
use crate::diffusion::sampling::{SampleSettings, Sampler};
use crate::nets::unet::{IMAGE_SIZE, PIXELS, UNet};

/// Whether an image carries a second bright region of at least [`STRAY_MARK_PIXELS`].
pub fn has_stray_mark(image: &[f32]) -> bool {
    bright_regions(image, IMAGE_SIZE).iter().filter(|&&s| s >= STRAY_MARK_PIXELS).count() > 1
}

/// One sampler run traced step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrayTrace {
    pub samples: usize,
    /// For each sample that ends marked: the paper's t of the first step of the unbroken run of
    /// marked x̂_0 that lasts to the end.
    pub onsets: Vec<usize>,
    /// The paper's t of every step, first to last.
    pub steps: Vec<usize>,
}

/// For each run of marked flags ending at the last step, where it began: `marked[k][s]` says
/// whether image k's x̂_0 after step s is marked; the result has the index of the run's first step
/// for each image marked at the end.
pub fn onset_steps(marked: &[Vec<bool>]) -> Vec<usize> {
    marked
        .iter()
        .filter(|flags| flags.last() == Some(&true))
        .map(|flags| flags.iter().rposition(|m| !m).map_or(0, |last_clean| last_clean + 1))
        .collect()
}

fn read(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// Run `settings` and trace every image's x̂_0 (clamped to the image range) at every step.
pub fn trace(model: &UNet, cfg: &DdpmConfig, settings: SampleSettings, device: &Device) -> StrayTrace {
    let schedule = cfg.schedule();
    let count = settings.count;
    let mut sampler = Sampler::new(settings, &schedule, device);
    let mut marked: Vec<Vec<bool>> = vec![Vec::new(); count];
    let mut steps = Vec::new();
    while let Some(step) = sampler.step(model) {
        steps.push(step.t);
        let x0 = read(step.x0_pred.clamp(-1.0, 1.0));
        for (flags, image) in marked.iter_mut().zip(x0.chunks(PIXELS)) {
            flags.push(has_stray_mark(image));
        }
    }
    let onsets = onset_steps(&marked).into_iter().map(|s| steps[s]).collect();
    StrayTrace { samples: count, onsets, steps }
}
