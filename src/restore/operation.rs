//! One restoration or edit of a 28x28 digit, as the restore page and the evaluation run it: the
//! typed settings of each operation, the input the reader sees (damaged, noisy, low-resolution,
//! sketched), the classic baselines beside it, and a run of moves over the reverse process
//! (`crate::diffusion::restore`) that a caller steps and draws. The network enters only through an
//! `eps` function, so the same run serves the U-Net in a worker and natively.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::diffusion::noise::NoiseSource;
use crate::diffusion::restore::{Constraint, Restoration, Start, ddim_invert_step, matched_index, noisy_as_state, repaint_moves, reverse_moves, slerp};
use crate::diffusion::schedule::NoiseSchedule;
use crate::nets::unet::{IMAGE_CHANNELS, IMAGE_SIZE, PIXELS};
use crate::restore::baselines::{BLUR_SIGMAS, downsample, gaussian_blur, harmonic_fill, psnr, upsample_bicubic, upsample_bilinear, upsample_nearest};
use crate::restore::damage::damaged;

/// The operations of the restore page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Inpaint,
    Denoise,
    Superres,
    Sketch,
    Invert,
}

impl Operation {
    pub const ALL: [Operation; 5] = [Operation::Inpaint, Operation::Denoise, Operation::Superres, Operation::Sketch, Operation::Invert];

    /// The URL value and the page's `data-operation`.
    pub fn key(self) -> &'static str {
        match self {
            Operation::Inpaint => "inpaint",
            Operation::Denoise => "denoise",
            Operation::Superres => "superres",
            Operation::Sketch => "sketch",
            Operation::Invert => "invert",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.key() == raw.trim())
    }
}

/// What an operation needs beyond the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum Task {
    /// RePaint with the known-pixel `mask` (1 known) and its resampling schedule.
    Inpaint { mask: Vec<f32>, jump: usize, resamplings: usize },
    /// An image with Gaussian noise of standard deviation `sigma` (model space): added to the
    /// digit, or already in it (an upload); then the Tweedie estimate at the matched t and
    /// `samples` posterior samples from it.
    Denoise {
        sigma: f64,
        samples: usize,
        #[serde(default)]
        noise: Noise,
    },
    /// ILVR from the image's block means at 1/`factor` of its side.
    Superres { factor: usize },
    /// SDEdit: the image noised to t_0 = `strength` T and denoised.
    Sketch { strength: f64 },
    /// DDIM inversion of the image and of `other`, then `frames` digits decoded along the
    /// spherical interpolation between the two noises.
    Invert { other: Vec<f32>, frames: usize },
}

/// Where a denoising run's noise comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Noise {
    /// Drawn from the run's seed and added to the image.
    #[default]
    Added,
    /// Already in the image (a noisy picture the reader uploaded), at about `sigma`.
    Given,
}

/// The blur of the denoising baseline when there is no clean image to tune its width against.
pub const UNTUNED_BLUR_WIDTH: f32 = 1.0;

impl Task {
    pub fn operation(&self) -> Operation {
        match self {
            Task::Inpaint { .. } => Operation::Inpaint,
            Task::Denoise { .. } => Operation::Denoise,
            Task::Superres { .. } => Operation::Superres,
            Task::Sketch { .. } => Operation::Sketch,
            Task::Invert { .. } => Operation::Invert,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreSettings {
    pub task: Task,
    /// The digit the reverse process is conditioned (and guided) on; `None`: the unconditional
    /// model. Inversion always uses the unconditional model, so that two digits share one space.
    pub class: Option<usize>,
    pub guidance: f64,
    /// Reverse steps of the respaced chain (RePaint's levels, ILVR's steps, SDEdit's steps from
    /// T, the denoiser's from T; inversion's in each direction).
    pub steps: usize,
    pub seed: u64,
}

/// A classic answer shown beside the model's, with its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    pub image: Vec<f32>,
}

/// A figure of a finished run: what it measures and its value (PSNR in dB against the original).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub name: String,
    pub value: f64,
}

/// `steps` descending timestep indices from `top` to 0, evenly spaced (at most top + 1 of them).
pub fn respaced(top: usize, steps: usize) -> Vec<usize> {
    let steps = steps.clamp(1, top + 1);
    let mut tau: Vec<usize> = (0..steps).map(|k| if steps == 1 { top } else { (k * top + (steps - 1) / 2) / (steps - 1) }).collect();
    tau.dedup();
    tau.reverse();
    tau
}

/// The reverse-process part of an operation on a batch of images: what the page runs on one image
/// and the evaluation on many. Image k draws its noise from the streams of cell `first_cell + k`.
pub struct Batch {
    /// The respaced timestep indices, descending.
    pub tau: Vec<usize>,
    pub run: Restoration,
    /// What each image's run starts from (damaged, noisy, low-resolution, the sketch), n * PIXELS.
    pub input: Vec<f32>,
}

impl Batch {
    /// `images`: n * PIXELS values in model space. An inpainting mask has PIXELS values (one for
    /// every image) or n * PIXELS; a denoising run carries `samples` copies of each noisy image,
    /// image after image. Inversion runs as [`RestoreRun`] (two images, two phases).
    pub fn new(task: &Task, images: &[f32], steps: usize, (seed, first_cell): (u64, usize), schedule: &NoiseSchedule, device: &Device) -> Result<Self, String> {
        if images.is_empty() || images.len() % PIXELS != 0 {
            return Err(format!("images come in {PIXELS} values each, not {}", images.len()));
        }
        let n = images.len() / PIXELS;
        let t_max = schedule.timesteps();
        let steps = steps.clamp(1, t_max);
        let shape = |count: usize| [count, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE];
        let cells = (seed, first_cell);
        Ok(match task {
            Task::Inpaint { mask, jump, resamplings } => {
                let masks = match mask.len() {
                    len if len == PIXELS => repeat(mask, n),
                    len if len == images.len() => mask.clone(),
                    len => return Err(format!("a mask has {PIXELS} values (or one set per image), not {len}")),
                };
                let tau = schedule.ddim_timesteps(steps);
                let moves = repaint_moves(tau.len(), (*jump).clamp(1, tau.len()), (*resamplings).max(1));
                let constraint = Constraint::Known { mask: upload(&masks, n, device), image: upload(images, n, device) };
                let run = Restoration::new(schedule, tau.clone(), moves, Start::Noise, constraint, 1.0, true, cells, shape(n), device);
                let input = images.chunks(PIXELS).zip(masks.chunks(PIXELS)).flat_map(|(x, m)| damaged(x, m)).collect();
                Self { tau, run, input }
            }
            Task::Denoise { sigma, samples, noise } => {
                let samples = (*samples).max(1);
                let noisy: Vec<f32> = if *noise == Noise::Given { images.to_vec() } else { images
                    .chunks(PIXELS)
                    .enumerate()
                    .flat_map(|(k, x)| {
                        let noise = NoiseSource::for_cell(seed ^ 0x6E6F_6973, first_cell + k).normal(PIXELS);
                        x.iter().zip(noise).map(|(x, z)| x + (*sigma as f32) * z).collect::<Vec<_>>()
                    })
                    .collect() };
                let i = matched_index(schedule, *sigma);
                let tau = respaced(i, steps);
                let copies: Vec<f32> = noisy.chunks(PIXELS).flat_map(|x| repeat(x, samples)).collect();
                let start = noisy_as_state(schedule, upload(&copies, n * samples, device), i);
                let run = Restoration::new(schedule, tau.clone(), reverse_moves(tau.len()), Start::State(start), Constraint::None, 1.0, true, (seed, first_cell * samples), shape(n * samples), device);
                Self { tau, run, input: noisy }
            }
            Task::Superres { factor } => {
                if !matches!(factor, 2 | 4) {
                    return Err(format!("super-resolution is x2 or x4, not x{factor}"));
                }
                let reference: Vec<f32> = images.chunks(PIXELS).flat_map(|x| upsample_nearest(&downsample(x, *factor), *factor)).collect();
                let tau = schedule.ddim_timesteps(steps);
                let constraint = Constraint::LowPass { factor: *factor, reference: upload(&reference, n, device) };
                let run = Restoration::new(schedule, tau.clone(), reverse_moves(tau.len()), Start::Noise, constraint, 1.0, true, cells, shape(n), device);
                Self { tau, run, input: reference }
            }
            Task::Sketch { strength } => {
                let top = ((strength.clamp(0.0, 1.0) * t_max as f64).round() as usize).clamp(1, t_max) - 1;
                let tau = respaced(top, ((steps as f64 * strength).round() as usize).max(1));
                let run = Restoration::new(schedule, tau.clone(), reverse_moves(tau.len()), Start::Noised(upload(images, n, device)), Constraint::None, 1.0, true, cells, shape(n), device);
                Self { tau, run, input: images.to_vec() }
            }
            Task::Invert { .. } => return Err("inversion runs as a RestoreRun: two images, inverted then decoded".into()),
        })
    }
}

/// The classic answers beside the model's for one `image` and its `input`.
fn baselines(task: &Task, image: &[f32], input: &[f32]) -> Vec<Baseline> {
    match task {
        Task::Inpaint { mask, .. } => vec![Baseline { name: "harmonic fill".into(), image: harmonic_fill(image, mask) }],
        Task::Denoise { noise: Noise::Given, .. } => {
            vec![Baseline { name: format!("Gaussian blur ({UNTUNED_BLUR_WIDTH} px)"), image: gaussian_blur(input, UNTUNED_BLUR_WIDTH) }]
        }
        // The blur width that best matches the truth: an oracle-tuned classic denoiser.
        Task::Denoise { .. } => {
            let blurred = BLUR_SIGMAS
                .iter()
                .map(|&s| gaussian_blur(input, s))
                .max_by(|a, b| psnr(a, image, None).total_cmp(&psnr(b, image, None)))
                .expect("blur widths");
            vec![Baseline { name: "Gaussian blur (width tuned)".into(), image: blurred }]
        }
        Task::Superres { factor } => {
            let small = downsample(image, *factor);
            vec![
                Baseline { name: "bilinear".into(), image: upsample_bilinear(&small, *factor) },
                Baseline { name: "bicubic".into(), image: upsample_bicubic(&small, *factor) },
            ]
        }
        Task::Sketch { .. } | Task::Invert { .. } => Vec::new(),
    }
}

enum Phase {
    /// DDIM inversion of the two digits climbing `tau` reversed; `position` moves done.
    Inverting { x: Tensor<4>, position: usize },
    Running(Restoration),
}

/// What one move of a run produced.
pub struct RunStep {
    pub done: usize,
    pub total: usize,
    /// The paper's t after the move (0 at x_0).
    pub t: usize,
    pub x: Tensor<4>,
    pub x0_pred: Tensor<4>,
}

/// One operation on one image, step by step.
pub struct RestoreRun {
    settings: RestoreSettings,
    schedule: NoiseSchedule,
    tau: Vec<usize>,
    phase: Phase,
    /// What the reader sees as the operation's input, [PIXELS] (for inversion: the two digits).
    pub input: Vec<f32>,
    /// The classic answers beside the model's.
    pub baselines: Vec<Baseline>,
    /// Moves done before the current phase, and in all.
    before: usize,
    total: usize,
    /// The Tweedie estimate of a denoising run (its first move's x_0 prediction).
    pub tweedie: Option<Tensor<4>>,
    device: Device,
}

fn upload(values: &[f32], count: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), [count, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE]), device)
}

fn repeat(values: &[f32], count: usize) -> Vec<f32> {
    values.iter().copied().cycle().take(count * values.len()).collect()
}

impl RestoreRun {
    /// The run of `settings` on `image` (model space, [PIXELS]; the original digit, or the
    /// reader's sketch). Checks the settings' sizes; ranges are the controls' business.
    pub fn new(settings: RestoreSettings, image: &[f32], schedule: &NoiseSchedule, device: &Device) -> Result<Self, String> {
        if image.len() != PIXELS {
            return Err(format!("an image has {PIXELS} values, not {}", image.len()));
        }
        let steps = settings.steps.clamp(1, schedule.timesteps());
        let seed = settings.seed;
        let (tau, phase, input, baselines, total) = match &settings.task {
            Task::Invert { other, .. } => {
                if other.len() != PIXELS {
                    return Err(format!("the second image has {PIXELS} values, not {}", other.len()));
                }
                let tau = schedule.ddim_timesteps(steps);
                let both = [image, other.as_slice()].concat();
                let total = 2 * tau.len();
                (tau, Phase::Inverting { x: upload(&both, 2, device), position: 0 }, both, Vec::new(), total)
            }
            task => {
                let Batch { tau, run, input } = Batch::new(task, image, steps, (seed, 0), schedule, device)?;
                let baselines = baselines(task, image, &input);
                let total = run.total_moves();
                (tau, Phase::Running(run), input, baselines, total)
            }
        };
        Ok(Self { settings, schedule: schedule.clone(), tau, phase, input, baselines, before: 0, total, tweedie: None, device: device.clone() })
    }

    pub fn settings(&self) -> &RestoreSettings {
        &self.settings
    }

    /// How many images each move carries: 1, the denoiser's samples, inversion's two digits and
    /// then its frames.
    pub fn count(&self) -> usize {
        match &self.phase {
            Phase::Inverting { .. } => 2,
            Phase::Running(r) => r.current().dims()[0],
        }
    }

    pub fn total_moves(&self) -> usize {
        self.total
    }

    pub fn moves_done(&self) -> usize {
        match &self.phase {
            Phase::Inverting { position, .. } => *position,
            Phase::Running(r) => self.before + r.moves_done(),
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(&self.phase, Phase::Running(r) if r.is_done())
    }

    pub fn current(&self) -> Tensor<4> {
        match &self.phase {
            Phase::Inverting { x, .. } => x.clone(),
            Phase::Running(r) => r.current(),
        }
    }

    /// Whether the images carry the class (or the null class): inversion never does.
    pub fn class(&self) -> Option<usize> {
        match self.settings.task {
            Task::Invert { .. } => None,
            _ => self.settings.class,
        }
    }

    /// The next move; `None` once done. `eps(x, i)` is the noise prediction. Between inversion and
    /// decoding ([`Self::needs_inverted`]) the caller reads the two inverted noises back to the
    /// host (asynchronously in the browser) and passes them as `inverted` for the interpolation.
    pub fn step(&mut self, eps: &mut dyn FnMut(Tensor<4>, usize) -> Tensor<4>, inverted: Option<&[f32]>) -> Option<RunStep> {
        if let Phase::Inverting { x, position } = &mut self.phase {
            let up: Vec<usize> = self.tau.iter().rev().copied().collect();
            if *position < up.len() {
                let from = position.checked_sub(1).map(|p| up[p]);
                let e = eps(x.clone(), from.unwrap_or(up[0]));
                let x0_pred = match from {
                    Some(i) => crate::diffusion::process::x0_from_eps(&self.schedule, x.clone(), &[i, i], e.clone()),
                    None => x.clone(),
                };
                *x = ddim_invert_step(&self.schedule, x.clone(), from, up[*position], e);
                *position += 1;
                return Some(RunStep { done: *position, total: self.total, t: up[*position - 1] + 1, x: x.clone(), x0_pred });
            }
            // Inverted: decode the frames along the interpolation from the host's copy.
            let values = inverted?;
            let Task::Invert { frames, .. } = self.settings.task else { unreachable!("inverting runs invert") };
            let frames = frames.max(2);
            let (a, b) = values.split_at(PIXELS);
            let path: Vec<f32> = (0..frames).flat_map(|k| slerp(a, b, k as f64 / (frames - 1) as f64)).collect();
            let start = upload(&path, frames, &self.device);
            let run = Restoration::new(&self.schedule, self.tau.clone(), reverse_moves(self.tau.len()), Start::State(start), Constraint::None, 0.0, false, (self.settings.seed, 0), [frames, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE], &self.device);
            self.before = self.tau.len();
            self.phase = Phase::Running(run);
        }
        let Phase::Running(run) = &mut self.phase else { unreachable!() };
        let first = run.moves_done() == 0;
        let step = run.step(eps)?;
        if first && matches!(self.settings.task, Task::Denoise { .. }) {
            // E[x_0 | x_t] at the matched t: the first move's x_0 prediction (unclipped is the
            // estimate itself; clipping only keeps it in the image range).
            self.tweedie = Some(step.x0_pred.clone().narrow(0, 0, 1));
        }
        Some(RunStep { done: self.before + step.done, total: self.total, t: step.t, x: step.x, x0_pred: step.x0_pred })
    }

    /// Whether the next step needs the inverted noises on the host (inversion's turn to decode).
    pub fn needs_inverted(&self) -> bool {
        matches!(&self.phase, Phase::Inverting { position, .. } if *position == self.tau.len())
    }
}

impl RestoreRun {
    /// The run's figures once it is done: PSNR against `truth` (the original digit, when the run
    /// has one) of the result and of each baseline, over the damaged region for inpainting.
    /// `result` is the final state, [count * PIXELS]; `tweedie` the denoiser's estimate.
    pub fn measures(&self, truth: Option<&[f32]>, result: &[f32], tweedie: Option<&[f32]>) -> Vec<Measure> {
        let m = |name: &str, value: f64| Measure { name: name.into(), value };
        let Some(truth) = truth else { return Vec::new() };
        let first = &result[..PIXELS.min(result.len())];
        match &self.settings.task {
            Task::Inpaint { mask, .. } => {
                let region: Vec<f32> = mask.iter().map(|k| 1.0 - k).collect();
                let mut out = vec![m("PSNR in the damaged region, RePaint (dB)", psnr(first, truth, Some(&region)))];
                out.extend(self.baselines.iter().map(|b| m(&format!("PSNR in the damaged region, {} (dB)", b.name), psnr(&b.image, truth, Some(&region)))));
                out.push(m("PSNR in the damaged region, the damaged input (dB)", psnr(&self.input, truth, Some(&region))));
                out
            }
            Task::Denoise { .. } => {
                let count = result.len() / PIXELS;
                let mean: Vec<f32> = (0..PIXELS).map(|p| (0..count).map(|k| result[k * PIXELS + p]).sum::<f32>() / count as f32).collect();
                let mut out = Vec::new();
                if let Some(t) = tweedie {
                    out.push(m("PSNR, Tweedie's E[x0 | xt] (dB)", psnr(t, truth, None)));
                }
                out.push(m("PSNR, one posterior sample (dB)", psnr(first, truth, None)));
                out.push(m(&format!("PSNR, mean of {count} posterior samples (dB)"), psnr(&mean, truth, None)));
                out.extend(self.baselines.iter().map(|b| m(&format!("PSNR, {} (dB)", b.name), psnr(&b.image, truth, None))));
                out.push(m("PSNR, the noisy input (dB)", psnr(&self.input, truth, None)));
                out
            }
            Task::Superres { .. } => {
                let mut out = vec![m("PSNR, ILVR (dB)", psnr(first, truth, None))];
                out.extend(self.baselines.iter().map(|b| m(&format!("PSNR, {} (dB)", b.name), psnr(&b.image, truth, None))));
                out
            }
            Task::Sketch { .. } => vec![m("PSNR against the sketch (dB): faithfulness", psnr(first, truth, None))],
            Task::Invert { .. } => {
                let count = result.len() / PIXELS;
                let last = &result[(count - 1) * PIXELS..];
                vec![
                    m("PSNR of the first digit after inversion and decoding (dB)", psnr(first, &self.input[..PIXELS], None)),
                    m("PSNR of the second digit after inversion and decoding (dB)", psnr(last, &self.input[PIXELS..], None)),
                ]
            }
        }
    }
}
