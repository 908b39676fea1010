//! The restore evaluation behind `evaluate --only restore`: every operation of the restore page
//! that has a ground truth, run at the page's defaults on held-out digits with the unconditional
//! model (no label given, so the classifier's reading of a result is a fair test), beside the
//! classic baselines. Native only; each finished chunk is cached so that a run resumes.

use burn::tensor::{Device, Tensor};

use crate::app::config::DdpmConfig;
use crate::diffusion::restore::{Constraint, Restoration, Start, ddim_invert, reverse_moves};
use crate::diffusion::sampling::GuidedDenoiser;
use crate::native::data::Digit;
use crate::native::evaluate::{ChunkCache, classify, images};
use crate::nets::classifier::Classifier;
use crate::nets::unet::{IMAGE_CHANNELS, IMAGE_SIZE, NULL_CLASS, PIXELS, UNet};
use crate::restore::baselines::{BLUR_SIGMAS, downsample, gaussian_blur, harmonic_fill, psnr, upsample_bicubic, upsample_bilinear};
use crate::restore::damage::{Damage, damaged};
use crate::restore::evaluation::{DenoiseRow, InpaintRow, InversionRow, RestoreTable, Scores, SuperresRow, TableSettings, accuracy};
use crate::restore::operation::{Batch, Noise, Task};

/// What to measure beyond the page's defaults.
pub struct RestorePlan {
    pub settings: TableSettings,
    /// Noise levels (model-space standard deviations) of the denoising rows.
    pub sigmas: Vec<f64>,
    pub factors: Vec<usize>,
    /// DDIM steps in each direction of the inversion rows.
    pub inversion_steps: Vec<usize>,
    /// Images per model call.
    pub batch: usize,
}

/// The final states of a chunk and the x_0 estimate of its first move (Tweedie's, for a denoiser).
#[derive(serde::Serialize, serde::Deserialize)]
struct Chunk {
    result: Vec<f32>,
    first_x0: Vec<f32>,
}

fn read(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

struct Evaluator<'a> {
    model: &'a UNet,
    classifier: &'a Classifier,
    cfg: &'a DdpmConfig,
    plan: &'a RestorePlan,
    cache: &'a ChunkCache,
    device: &'a Device,
    /// How many digits the table covers: part of every cache key, since the digits are a
    /// stride through the held-out set that depends on it.
    digits: usize,
}

impl Evaluator<'_> {
    /// The unconditional model's noise prediction.
    fn eps(&self, x: Tensor<4>, i: usize) -> Tensor<4> {
        let n = x.dims()[0];
        GuidedDenoiser::new(self.model, &vec![NULL_CLASS; n], 0.0, None, self.device).eps(x, i)
    }

    /// `task` on every digit of `values` in chunks of `per_chunk` digits, cached under `key`.
    fn run(&self, key: &str, values: &[f32], per_chunk: usize, task: impl Fn(usize, usize) -> Task, progress: &mut dyn FnMut(&str)) -> Chunk {
        let s = self.cfg.schedule();
        let count = values.len() / PIXELS;
        let mut all = Chunk { result: Vec::new(), first_x0: Vec::new() };
        for first in (0..count).step_by(per_chunk) {
            let n = per_chunk.min(count - first);
            let chunk: Chunk = self.cache.get_or(&format!("{key}-o{first}-n{n}"), || {
                let batch = Batch::new(&task(first, n), &values[first * PIXELS..(first + n) * PIXELS], self.plan.settings.steps, (self.plan.settings.seed, first), &s, self.device)
                    .expect("the evaluation's tasks are well formed");
                let mut run = batch.run;
                let mut first_x0 = None;
                while let Some(step) = run.step(&mut |x, i| self.eps(x, i)) {
                    first_x0.get_or_insert_with(|| read(step.x0_pred));
                }
                Chunk { result: read(run.current().clamp(-1.0, 1.0)), first_x0: first_x0.unwrap_or_default() }
            });
            all.result.extend(chunk.result);
            all.first_x0.extend(chunk.first_x0);
            progress(&format!("{key}: {}/{count}", first + n));
        }
        all
    }

    fn scores(&self, estimates: &[f32], truths: &[f32], labels: &[usize], regions: Option<&[f32]>) -> Scores {
        let read = classify(self.classifier, estimates, self.device).0;
        Scores { accuracy: accuracy(&read, labels), psnr: psnr(estimates, truths, regions) }
    }

    fn tag(&self) -> String {
        let p = &self.plan.settings;
        format!("restore-d{}-s{}-j{}-r{}-seed{}", self.digits, p.steps, p.jump, p.resamplings, p.seed)
    }

    fn inpainting(&self, truths: &[f32], labels: &[usize], progress: &mut dyn FnMut(&str)) -> Vec<InpaintRow> {
        let p = &self.plan.settings;
        let count = labels.len();
        Damage::ALL
            .into_iter()
            .map(|preset| {
                // Digit k's mask from seed + k (only the random preset depends on it).
                let masks: Vec<f32> = (0..count).flat_map(|k| preset.mask(p.seed + k as u64)).collect();
                let regions: Vec<f32> = masks.iter().map(|m| 1.0 - m).collect();
                let task = |first: usize, n: usize| Task::Inpaint { mask: masks[first * PIXELS..(first + n) * PIXELS].to_vec(), jump: p.jump, resamplings: p.resamplings };
                let restored = self.run(&format!("{}-inpaint-{}", self.tag(), preset.key()), truths, self.plan.batch, task, progress).result;
                let per_digit = |f: &dyn Fn(&[f32], &[f32]) -> Vec<f32>| -> Vec<f32> { truths.chunks(PIXELS).zip(masks.chunks(PIXELS)).flat_map(|(x, m)| f(x, m)).collect() };
                let harmonic = per_digit(&|x, m| harmonic_fill(x, m));
                let input = per_digit(&|x, m| damaged(x, m));
                InpaintRow {
                    preset,
                    repaint: self.scores(&restored, truths, labels, Some(&regions)),
                    harmonic: self.scores(&harmonic, truths, labels, Some(&regions)),
                    damaged: self.scores(&input, truths, labels, Some(&regions)),
                }
            })
            .collect()
    }

    fn denoising(&self, truths: &[f32], progress: &mut dyn FnMut(&str)) -> Vec<DenoiseRow> {
        let p = &self.plan.settings;
        let samples = p.samples.max(1);
        let s = self.cfg.schedule();
        self.plan
            .sigmas
            .iter()
            .map(|&sigma| {
                let task = |_: usize, _: usize| Task::Denoise { sigma, samples, noise: Noise::Added };
                let per_chunk = (self.plan.batch / samples).max(1);
                let chunk = self.run(&format!("{}-denoise-{sigma}-k{samples}", self.tag()), truths, per_chunk, task, progress);
                // Rows of a chunk: the samples of digit 0, then of digit 1, ...
                let pick = |values: &[f32], k: usize| values[k * samples * PIXELS..(k * samples + 1) * PIXELS].to_vec();
                let count = truths.len() / PIXELS;
                let tweedie: Vec<f32> = (0..count).flat_map(|k| pick(&chunk.first_x0, k)).collect();
                let one: Vec<f32> = (0..count).flat_map(|k| pick(&chunk.result, k)).collect();
                let mean: Vec<f32> = chunk
                    .result
                    .chunks(samples * PIXELS)
                    .flat_map(|copies| (0..PIXELS).map(move |q| (0..samples).map(|j| copies[j * PIXELS + q]).sum::<f32>() / samples as f32))
                    .collect();
                // The same noisy inputs as the runs (the batch draws them host-side).
                let noisy: Vec<f32> = (0..count)
                    .step_by(per_chunk)
                    .flat_map(|first| {
                        let n = per_chunk.min(count - first);
                        Batch::new(&task(first, n), &truths[first * PIXELS..(first + n) * PIXELS], 1, (p.seed, first), &s, self.device).expect("well formed").input
                    })
                    .collect();
                let (blur_width, blur) = BLUR_SIGMAS
                    .iter()
                    .map(|&w| (w, psnr(&noisy.chunks(PIXELS).flat_map(|x| gaussian_blur(x, w)).collect::<Vec<_>>(), truths, None)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .expect("blur widths");
                DenoiseRow {
                    sigma,
                    t: crate::diffusion::restore::matched_index(&s, sigma) + 1,
                    tweedie: psnr(&tweedie, truths, None),
                    one_sample: psnr(&one, truths, None),
                    mean_of_samples: psnr(&mean, truths, None),
                    blur,
                    blur_width,
                    noisy: psnr(&noisy, truths, None),
                }
            })
            .collect()
    }

    fn superres(&self, truths: &[f32], labels: &[usize], progress: &mut dyn FnMut(&str)) -> Vec<SuperresRow> {
        self.plan
            .factors
            .iter()
            .map(|&factor| {
                let task = |_: usize, _: usize| Task::Superres { factor };
                let ilvr = self.run(&format!("{}-superres-x{factor}", self.tag()), truths, self.plan.batch, task, progress).result;
                let up = |f: fn(&[f32], usize) -> Vec<f32>| -> Vec<f32> { truths.chunks(PIXELS).flat_map(|x| f(&downsample(x, factor), factor)).collect() };
                SuperresRow {
                    factor,
                    ilvr: self.scores(&ilvr, truths, labels, None),
                    bilinear: self.scores(&up(upsample_bilinear), truths, labels, None),
                    bicubic: self.scores(&up(upsample_bicubic), truths, labels, None),
                }
            })
            .collect()
    }

    /// DDIM inversion (eta 0) over k steps and decoding over the same k, as the page's inversion.
    fn inversion(&self, truths: &[f32], progress: &mut dyn FnMut(&str)) -> Vec<InversionRow> {
        let s = self.cfg.schedule();
        let count = truths.len() / PIXELS;
        self.plan
            .inversion_steps
            .iter()
            .map(|&k| {
                let tau = s.ddim_timesteps(k);
                let mut decoded = Vec::with_capacity(truths.len());
                for first in (0..count).step_by(self.plan.batch) {
                    let n = self.plan.batch.min(count - first);
                    let key = format!("{}-invert-{k}-o{first}-n{n}", self.tag());
                    let values: Vec<f32> = self.cache.get_or(&key, || {
                        let x0 = images(&truths[first * PIXELS..(first + n) * PIXELS], self.device);
                        let top = ddim_invert(&s, x0, &tau, &mut |x, i| self.eps(x, i));
                        let shape = [n, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE];
                        let mut run = Restoration::new(&s, tau.clone(), reverse_moves(tau.len()), Start::State(top), Constraint::None, 0.0, false, (self.plan.settings.seed, first), shape, self.device);
                        while run.step(&mut |x, i| self.eps(x, i)).is_some() {}
                        read(run.current())
                    });
                    decoded.extend(values);
                    progress(&format!("inversion, {k} steps: {}/{count}", first + n));
                }
                InversionRow { steps: k, psnr: psnr(&decoded, truths, None) }
            })
            .collect()
    }
}

/// The restore table on `digits` (held out, never trained on).
#[allow(clippy::too_many_arguments)]
pub fn restore_table(
    model: &UNet,
    classifier: &Classifier,
    cfg: &DdpmConfig,
    digits: &[Digit],
    plan: &RestorePlan,
    command: String,
    cache: &ChunkCache,
    device: &Device,
    progress: &mut dyn FnMut(&str),
) -> RestoreTable {
    let e = Evaluator { model, classifier, cfg, plan, cache, device, digits: digits.len() };
    let truths: Vec<f32> = digits.iter().flat_map(Digit::to_model_space).collect();
    let labels: Vec<usize> = digits.iter().map(|d| d.label).collect();
    RestoreTable {
        command,
        digits: digits.len(),
        settings: plan.settings.clone(),
        inpainting: e.inpainting(&truths, &labels, progress),
        denoising: e.denoising(&truths, progress),
        superres: e.superres(&truths, &labels, progress),
        inversion: e.inversion(&truths, progress),
    }
}
