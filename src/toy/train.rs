//! Training the 2-D denoiser (`crate::nets::mlp`) on a 2-D distribution in seconds: the
//! explainer's section 7 runs this code in a worker (WebGPU or the CPU), the native tests run the
//! same code. Every target is a [`Mixture2d`] (the presets, and a drawn distribution: one small
//! Gaussian per point placed), so the exact score is always there to compare with.
//!
//! A step is Algorithm 1 with the loss of the chosen [`Prediction`]; its randomness (data, t,
//! noise) comes from a host stream seeded by (seed, step), so a run is the same on every backend.

use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::diffusion::process::q_sample;
use crate::diffusion::metrics::sliced_wasserstein_2d;
use crate::diffusion::noise::NoiseSource;
use crate::diffusion::objective::{Prediction, descend, mse};
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::solver::Method;
use crate::toy::mixture::{EXTENT, Mixture2d, field_points, normal_points, points_at, read_points, reverse_paths, upload_points};
use crate::nets::mlp::ToyDenoiser;

/// The ready-made targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToyPreset {
    /// The explainer's three-component mixture (sections 4 and 6).
    Blobs,
    Ring,
    Moons,
}

impl ToyPreset {
    pub const ALL: [ToyPreset; 3] = [ToyPreset::Blobs, ToyPreset::Ring, ToyPreset::Moons];

    pub fn label(self) -> &'static str {
        match self {
            ToyPreset::Blobs => "three blobs (sections 4 and 6)",
            ToyPreset::Ring => "a ring",
            ToyPreset::Moons => "two moons",
        }
    }

    pub fn mixture(self) -> Mixture2d {
        let arc = |centre: [f64; 2], from: f64, to: f64, count: usize, radius: f64| {
            (0..count).map(move |k| {
                let angle = from + (to - from) * k as f64 / (count - 1).max(1) as f64;
                [centre[0] + radius * angle.cos(), centre[1] + radius * angle.sin()]
            })
        };
        let pi = std::f64::consts::PI;
        match self {
            ToyPreset::Blobs => Mixture2d::example(),
            ToyPreset::Ring => evenly(arc([0.0, 0.0], 0.0, 2.0 * pi * 23.0 / 24.0, 24, 1.4).collect(), 0.1),
            ToyPreset::Moons => evenly(arc([-0.5, -0.2], 0.0, pi, 16, 1.0).chain(arc([0.5, 0.2], pi, 2.0 * pi, 16, 1.0)).collect(), 0.1),
        }
    }
}

/// Equal-weight components of one width at `means`.
fn evenly(means: Vec<[f64; 2]>, std: f64) -> Mixture2d {
    let k = means.len();
    Mixture2d { weights: vec![1.0 / k as f64; k], stds: vec![std; k], means }
}

/// What the reader trains on: a preset, or a drawing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToyTarget {
    Preset { preset: ToyPreset },
    Drawn { points: Vec<[f64; 2]> },
}

impl ToyTarget {
    pub fn mixture(&self) -> Result<Mixture2d, String> {
        match self {
            ToyTarget::Preset { preset } => Ok(preset.mixture()),
            ToyTarget::Drawn { points } => drawn_mixture(points),
        }
    }
}

/// A drawn distribution: one Gaussian of this width per point placed (the pen's width).
pub const DRAWN_STD: f64 = 0.12;
/// Points a drawing may have: enough for any shape, few enough for the exact score's cost.
pub const DRAWN_POINTS: std::ops::RangeInclusive<usize> = 3..=300;

/// The distribution a reader drew: equal weights, width [`DRAWN_STD`] at each point.
pub fn drawn_mixture(points: &[[f64; 2]]) -> Result<Mixture2d, String> {
    if !DRAWN_POINTS.contains(&points.len()) {
        return Err(format!("a drawing needs {} to {} points, not {}", DRAWN_POINTS.start(), DRAWN_POINTS.end(), points.len()));
    }
    if points.iter().any(|p| !(p[0].is_finite() && p[1].is_finite() && p[0].abs() <= EXTENT && p[1].abs() <= EXTENT)) {
        return Err(format!("a drawn point lies outside the plane [-{EXTENT}, {EXTENT}]²"));
    }
    Ok(evenly(points.to_vec(), DRAWN_STD))
}

/// How a 2-D model is trained. `Default` is what the page starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToySettings {
    pub prediction: Prediction,
    /// Planned optimisation steps (the learning rate decays over them).
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for ToySettings {
    fn default() -> Self {
        Self { prediction: Prediction::Noise, steps: 3000, batch: 256, learning_rate: 3e-3, seed: 0 }
    }
}

impl ToySettings {
    /// Learning rate at `step`: 100 warm-up steps, then cosine decay to 5%.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        let warmup = 100.min(self.steps / 10).max(1);
        if step < warmup {
            return self.learning_rate * (step + 1) as f64 / warmup as f64;
        }
        let progress = ((step - warmup) as f64 / (self.steps - warmup).max(1) as f64).min(1.0);
        self.learning_rate * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
    }
}

/// One batch: x_0 from the target, t ~ Uniform{1..T} (as indices), and the noise.
pub struct ToyBatch {
    pub x0: Vec<[f64; 2]>,
    pub idx: Vec<usize>,
    pub noise: Vec<[f64; 2]>,
}

pub fn toy_batch(data: &Mixture2d, timesteps: usize, settings: &ToySettings, step: usize) -> ToyBatch {
    let mut rng = NoiseSource::for_step(settings.seed, step);
    let x0 = data.sample(settings.batch, &mut rng);
    let idx = (0..settings.batch).map(|_| rng.index(0..timesteps)).collect();
    ToyBatch { x0, idx, noise: normal_points(settings.batch, &mut rng) }
}

/// The loss of one batch: the squared error of the model's prediction against its target.
pub fn toy_loss(model: &ToyDenoiser, schedule: &NoiseSchedule, prediction: Prediction, batch: &ToyBatch, device: &Device) -> Tensor<1> {
    let (x0, noise) = (upload_points(&batch.x0, device), upload_points(&batch.noise, device));
    let x_t = q_sample(schedule, x0.clone(), &batch.idx, noise.clone());
    let output = model.forward(x_t, time_tensor(&batch.idx, device));
    mse(output, prediction.target(schedule, x0, noise, &batch.idx))
}

/// The paper's t (index + 1) as floats.
fn time_tensor(idx: &[usize], device: &Device) -> Tensor<1> {
    let t: Vec<f32> = idx.iter().map(|&i| (i + 1) as f32).collect();
    Tensor::from_data(TensorData::new(t, [idx.len()]), device)
}

/// A model being trained, its optimiser (Adam) and where it is.
pub struct ToyTrainer {
    pub settings: ToySettings,
    pub data: Mixture2d,
    pub schedule: NoiseSchedule,
    model: ToyDenoiser,
    optimizer: ModuleOptimizer,
    step: usize,
    device: Device,
}

impl ToyTrainer {
    /// A fresh model (seeded by the settings) on `device`, trained through its autodiff form.
    pub fn new(data: Mixture2d, settings: ToySettings, schedule: NoiseSchedule, device: &Device) -> Self {
        let device = device.clone().autodiff();
        let model = ToyDenoiser::init_seeded(settings.seed, &device);
        let optimizer = AdamConfig::new().with_epsilon(1e-8).init();
        Self { settings, data, schedule, model, optimizer, step: 0, device }
    }

    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// One optimisation step (Algorithm 1). Returns the batch's loss, still on the device, so
    /// that a caller reads many steps' losses at once.
    pub fn train_step(&mut self) -> Tensor<1> {
        let batch = toy_batch(&self.data, self.schedule.timesteps(), &self.settings, self.step);
        let loss = toy_loss(&self.model, &self.schedule, self.settings.prediction, &batch, &self.device);
        let lr = self.settings.learning_rate_at(self.step);
        let value = loss.clone().inner();
        self.model = descend(self.model.clone(), &mut self.optimizer, loss, lr);
        self.step += 1;
        value
    }

    /// The model for inference (no autodiff graph).
    pub fn model(&self) -> Denoiser2d {
        Denoiser2d { model: self.model.valid(), prediction: self.settings.prediction }
    }
}

/// A trained 2-D model with what it predicts: the noise it implies, the score, samples.
pub struct Denoiser2d {
    pub model: ToyDenoiser,
    pub prediction: Prediction,
}

impl Denoiser2d {
    /// eps_theta(x_t, t) at index `i`, from whatever the model predicts.
    pub fn eps(&self, schedule: &NoiseSchedule, x_t: Tensor<4>, i: usize) -> Tensor<4> {
        let idx = vec![i; x_t.dims()[0]];
        let output = self.model.forward(x_t.clone(), time_tensor(&idx, &x_t.device()));
        self.prediction.to_eps(schedule, x_t, &idx, output)
    }

    /// The learned score -eps_theta / sqrt(1 - alpha_bar) on the explainer's arrow grid at `i`.
    pub async fn score_field(&self, schedule: &NoiseSchedule, i: usize, device: &Device) -> Result<Vec<[f64; 2]>, String> {
        let eps = read_points(self.eps(schedule, upload_points(&field_points(), device), i)).await?;
        let c = -1.0 / schedule.sqrt_one_minus_alpha_bar[i];
        Ok(eps.iter().map(|e| [c * e[0], c * e[1]]).collect())
    }

    /// Every point's path from `starts` to the model's samples under `method`.
    pub async fn paths(&self, method: Method, schedule: &NoiseSchedule, starts: &[[f64; 2]], rng: &mut NoiseSource, device: &Device) -> Result<Vec<Vec<[f64; 2]>>, String> {
        let denoise = |_: &[[f64; 2]], x_t: Tensor<4>, i: usize| self.eps(schedule, x_t, i);
        reverse_paths(&denoise, method, schedule, starts, rng, device).await
    }
}

/// How a model's samples are drawn for the fit check: DPM-Solver++(2M), 20 network evaluations
/// (its error on the exact mixture at 20 steps is far below the threshold; `tests/toy_train.rs`).
pub const FIT_SAMPLER: Method = Method::DpmSolver2M { steps: 20 };
/// Samples compared with the target.
pub const FIT_SAMPLES: usize = 1000;
/// A fit is good when the sliced W1 from the samples to exact draws is at most this: the
/// distance of a copy of the target moved bodily by 0.16 (W1 averages |cos| over directions:
/// 0.16 × 2/π ≈ 0.1), under the narrowest preset component's width (0.1 to 0.3) plus the floor.
pub const FIT_THRESHOLD: f64 = 0.1;

/// A model's samples against the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitCheck {
    /// Sliced W1 from FIT_SAMPLES model samples to as many exact draws.
    pub distance: f64,
    /// Sliced W1 between two exact draws of that size: sampling noise alone.
    pub floor: f64,
    pub threshold: f64,
}

impl FitCheck {
    pub fn good(&self) -> bool {
        self.distance <= self.threshold
    }
}

/// The model's samples from FIT_SAMPLES starts (seeded by `seed`), and how close they are.
pub async fn check_fit(model: &Denoiser2d, data: &Mixture2d, schedule: &NoiseSchedule, seed: u64, device: &Device) -> Result<(Vec<[f64; 2]>, FitCheck), String> {
    let mut rng = NoiseSource::new(seed);
    let starts = normal_points(FIT_SAMPLES, &mut rng);
    let samples = points_at(&model.paths(FIT_SAMPLER, schedule, &starts, &mut rng, device).await?, usize::MAX);
    let exact = data.sample(FIT_SAMPLES, &mut rng);
    let other = data.sample(FIT_SAMPLES, &mut rng);
    let check = FitCheck {
        distance: sliced_wasserstein_2d(&samples, &exact, 32),
        floor: sliced_wasserstein_2d(&exact, &other, 32),
        threshold: FIT_THRESHOLD,
    };
    Ok((samples, check))
}

/// The first steps of a training run, recorded natively and recomputed by the browser suite on
/// WebGPU and on the CPU in wasm: the training step is one function on every backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingFixture {
    /// The loss of each of the first `STEPS` steps (default settings, the three blobs).
    pub losses: Vec<f64>,
    /// The learned score on the arrow grid at t = 100 after them.
    pub field: Vec<[f64; 2]>,
}

impl TrainingFixture {
    const STEPS: usize = 40;

    pub async fn compute(device: &Device) -> Result<Self, String> {
        let schedule = NoiseSchedule::new(crate::diffusion::schedule::ScheduleKind::DDPM_LINEAR, 1000);
        let mut trainer = ToyTrainer::new(ToyPreset::Blobs.mixture(), ToySettings::default(), schedule.clone(), device);
        let losses: Vec<Tensor<1>> = (0..Self::STEPS).map(|_| trainer.train_step()).collect();
        let losses = Tensor::cat(losses, 0).into_data_async().await.map_err(|e| format!("reading a tensor failed: {e:?}"))?;
        let losses = losses.convert::<f64>().try_to_vec::<f64>().map_err(|e| format!("unexpected tensor data: {e:?}"))?;
        let field = trainer.model().score_field(&schedule, 99, device).await?;
        Ok(Self { losses, field })
    }

    /// Both coordinates of every arrow of the learned field, in order.
    pub fn field_coordinates(&self) -> Vec<f64> {
        self.field.iter().flat_map(|a| *a).collect()
    }
}
