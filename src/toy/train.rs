//! Training the 2-D denoiser (`crate::nets::mlp`) on a 2-D distribution in seconds: the
//! explainer's section 7 runs this code in a worker (WebGPU or the CPU), the native tests run the
//! same code. Every target is a [`Mixture2d`] (the presets, and a drawn distribution: one small
//! Gaussian per point placed), so the exact score is always there to compare with.
//!
//! A step is Algorithm 1 with the loss of the chosen [`Prediction`], or flow matching's
//! (`crate::toy::flow`); its randomness (data, t or s, noise) comes from a host stream seeded by
//! (seed, step), so a run is the same on every backend.

use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::diffusion::process::{q_sample, scale};
use crate::diffusion::metrics::sliced_wasserstein_2d;
use crate::diffusion::noise::NoiseSource;
use crate::diffusion::objective::{Prediction, descend, mse};
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::solver::Method;
use crate::toy::flow::{FlowSolver, TIME_SCALE, eps_from_velocity, flow_grid, straight_scale, straight_time};
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

/// What a 2-D model learns: one of diffusion's three targets, or flow matching's velocity.
/// Serialised flat, as the page's select values: "noise", "clean_data", "velocity" or "flow".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToyObjective {
    Diffusion(Prediction),
    FlowMatching(FlowMatching),
}

/// Flow matching on the straight path (`crate::toy::flow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowMatching {
    #[serde(rename = "flow")]
    StraightPath,
}

impl ToyObjective {
    pub const FLOW: ToyObjective = ToyObjective::FlowMatching(FlowMatching::StraightPath);

    /// Every objective, in the page's order.
    pub fn all() -> Vec<ToyObjective> {
        Prediction::ALL.iter().map(|&p| ToyObjective::Diffusion(p)).chain([Self::FLOW]).collect()
    }

    pub fn label(self) -> &'static str {
        match self {
            ToyObjective::Diffusion(p) => p.label(),
            ToyObjective::FlowMatching(_) => "flow matching: velocity ε − x₀ on the straight path",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            ToyObjective::Diffusion(p) => p.help(),
            ToyObjective::FlowMatching(_) => {
                "x_s = (1 − s) x₀ + s ε, s uniform in [0, 1]: the network learns the velocity along straight lines from data to noise, sampled with Euler or Heun steps."
            }
        }
    }
}

/// How a 2-D model is trained. `Default` is what the page starts with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToySettings {
    pub objective: ToyObjective,
    /// Planned optimisation steps (the learning rate decays over them).
    pub steps: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub seed: u64,
    /// Decay of the weights' exponential moving average, the model that is sampled.
    pub ema: Option<f64>,
}

impl Default for ToySettings {
    fn default() -> Self {
        Self { objective: ToyObjective::Diffusion(Prediction::Noise), steps: 3000, batch: 256, learning_rate: 3e-3, seed: 0, ema: Some(0.99) }
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

/// Where on the path a batch's points are: diffusion's t ~ Uniform{1..T} (as indices), or the
/// straight path's s ~ U(0, 1).
pub enum ToyTimes {
    Indices(Vec<usize>),
    Straight(Vec<f64>),
}

/// One batch: x_0 from the target, the times, and the noise.
pub struct ToyBatch {
    pub x0: Vec<[f64; 2]>,
    pub times: ToyTimes,
    pub noise: Vec<[f64; 2]>,
}

pub fn toy_batch(data: &Mixture2d, timesteps: usize, settings: &ToySettings, step: usize) -> ToyBatch {
    let mut rng = NoiseSource::for_step(settings.seed, step);
    let x0 = data.sample(settings.batch, &mut rng);
    let times = match settings.objective {
        ToyObjective::Diffusion(_) => ToyTimes::Indices((0..settings.batch).map(|_| rng.index(0..timesteps)).collect()),
        ToyObjective::FlowMatching(_) => ToyTimes::Straight((0..settings.batch).map(|_| rng.uniform()).collect()),
    };
    ToyBatch { x0, times, noise: normal_points(settings.batch, &mut rng) }
}

/// The loss of one batch: the squared error of the model's output against its target.
pub fn toy_loss(model: &ToyDenoiser, schedule: &NoiseSchedule, objective: ToyObjective, batch: &ToyBatch, device: &Device) -> Tensor<1> {
    let (x0, noise) = (upload_points(&batch.x0, device), upload_points(&batch.noise, device));
    match (objective, &batch.times) {
        (ToyObjective::Diffusion(prediction), ToyTimes::Indices(idx)) => {
            let x_t = q_sample(schedule, x0.clone(), idx, noise.clone());
            let output = model.forward(x_t, &paper_times(idx));
            mse(output, prediction.target(schedule, x0, noise, idx))
        }
        (ToyObjective::FlowMatching(_), ToyTimes::Straight(s)) => {
            // x_s = (1 - s) x_0 + s eps; the target is eps - x_0.
            let keep: Vec<f64> = s.iter().map(|s| 1.0 - s).collect();
            let x_s = scale(x0.clone(), &keep) + scale(noise.clone(), s);
            let output = model.forward(x_s, &straight_times(s));
            mse(output, noise - x0)
        }
        _ => unreachable!("toy_batch draws the times its objective needs"),
    }
}

/// The paper's t (index + 1) as floats.
fn paper_times(idx: &[usize]) -> Vec<f32> {
    idx.iter().map(|&i| (i + 1) as f32).collect()
}

/// The straight path's s as the network's time input (`TIME_SCALE` s).
fn straight_times(s: &[f64]) -> Vec<f32> {
    s.iter().map(|&s| (TIME_SCALE * s) as f32).collect()
}

/// A model being trained, its optimiser (Adam) and where it is.
pub struct ToyTrainer {
    pub settings: ToySettings,
    pub data: Mixture2d,
    pub schedule: NoiseSchedule,
    model: ToyDenoiser,
    average: Option<ToyDenoiser>,
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
        Self { settings, data, schedule, model, average: None, optimizer, step: 0, device }
    }

    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// One optimisation step (Algorithm 1). Returns the batch's loss, still on the device, so
    /// that a caller reads many steps' losses at once.
    pub fn train_step(&mut self) -> Tensor<1> {
        let batch = toy_batch(&self.data, self.schedule.timesteps(), &self.settings, self.step);
        let loss = toy_loss(&self.model, &self.schedule, self.settings.objective, &batch, &self.device);
        let lr = self.settings.learning_rate_at(self.step);
        let value = loss.clone().inner();
        self.model = descend(self.model.clone(), &mut self.optimizer, loss, lr);
        if let Some(decay) = self.settings.ema {
            let keep = decay.min((1 + self.step) as f64 / (10 + self.step) as f64);
            let current = self.model.valid();
            self.average = Some(match self.average.take() {
                Some(average) => average.blend(&current, keep),
                None => current,
            });
        }
        self.step += 1;
        value
    }

    /// The model for inference (no autodiff graph).
    pub fn model(&self) -> Denoiser2d {
        let model = self.average.clone().unwrap_or_else(|| self.model.valid());
        Denoiser2d { model, objective: self.settings.objective }
    }
}

/// A trained 2-D model with what it learned: the noise it implies, the score, samples.
pub struct Denoiser2d {
    pub model: ToyDenoiser,
    pub objective: ToyObjective,
}

impl Denoiser2d {
    /// eps_theta(x_t, t) at index `i`, from whatever the model predicts (a velocity model at
    /// the straight path's matching point, `crate::toy::flow`).
    pub fn eps(&self, schedule: &NoiseSchedule, x_t: Tensor<4>, i: usize) -> Tensor<4> {
        let n = x_t.dims()[0];
        match self.objective {
            ToyObjective::Diffusion(prediction) => {
                let idx = vec![i; n];
                let output = self.model.forward(x_t.clone(), &paper_times(&idx));
                prediction.to_eps(schedule, x_t, &idx, output)
            }
            ToyObjective::FlowMatching(_) => {
                let s = straight_time(schedule, i);
                let x_s = x_t.mul_scalar(straight_scale(schedule, i));
                let v = self.velocity(x_s.clone(), s);
                eps_from_velocity(x_s, s, v)
            }
        }
    }

    /// The straight path's velocity v(x_s, s) of a flow-matching model.
    pub fn velocity(&self, x_s: Tensor<4>, s: f64) -> Tensor<4> {
        let n = x_s.dims()[0];
        self.model.forward(x_s, &straight_times(&vec![s; n]))
    }

    /// Every point's path from `starts` (s = 1) to the samples (s = 0) of a flow-matching
    /// model under `solver` with `steps` equal steps.
    pub async fn flow_paths(&self, solver: FlowSolver, steps: usize, starts: &[[f64; 2]], device: &Device) -> Result<Vec<Vec<[f64; 2]>>, String> {
        let mut paths: Vec<Vec<[f64; 2]>> = starts.iter().map(|&p| vec![p]).collect();
        let mut x = upload_points(starts, device);
        let grid = flow_grid(steps);
        for w in grid.windows(2) {
            x = solver.step(&|x, s| self.velocity(x, s), x, w[0], w[1]);
            for (path, p) in paths.iter_mut().zip(read_points(x.clone()).await?) {
                path.push(p);
            }
        }
        Ok(paths)
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

/// Step counts of the fit-against-steps table.
pub const FIT_STEP_COUNTS: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// One row of the fit-against-steps table: a sampler of the trained model at a step count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepsFit {
    pub sampler: String,
    pub steps: usize,
    pub evaluations: usize,
    /// Sliced W1 from FIT_SAMPLES samples to as many exact draws (FitCheck's measure).
    pub distance: f64,
}

/// The trained model's fit at each of `FIT_STEP_COUNTS` with its two deterministic samplers: a
/// diffusion model's DDIM (eta 0) and DPM-Solver++(2M) on the probability-flow ODE, a
/// flow-matching model's Euler and Heun steps on the straight path. The same starts and the
/// same exact draws for every row.
pub async fn fit_by_steps(model: &Denoiser2d, data: &Mixture2d, schedule: &NoiseSchedule, seed: u64, device: &Device) -> Result<Vec<StepsFit>, String> {
    let mut rng = NoiseSource::new(seed);
    let starts = normal_points(FIT_SAMPLES, &mut rng);
    let exact = data.sample(FIT_SAMPLES, &mut rng);
    let mut rows = Vec::new();
    for steps in FIT_STEP_COUNTS {
        let runs: Vec<(String, usize, Vec<[f64; 2]>)> = match model.objective {
            ToyObjective::Diffusion(_) => {
                let mut out = Vec::new();
                for (name, method) in [("DDIM (η = 0)", Method::Ddim { steps, eta: 0.0 }), ("DPM-Solver++(2M)", Method::DpmSolver2M { steps })] {
                    let paths = model.paths(method, schedule, &starts, &mut NoiseSource::new(seed), device).await?;
                    out.push((name.to_string(), method.evaluations(schedule), points_at(&paths, usize::MAX)));
                }
                out
            }
            ToyObjective::FlowMatching(_) => {
                let mut out = Vec::new();
                for solver in FlowSolver::ALL {
                    let paths = model.flow_paths(solver, steps, &starts, device).await?;
                    out.push((solver.label().to_string(), solver.evaluations(steps), points_at(&paths, usize::MAX)));
                }
                out
            }
        };
        for (sampler, evaluations, samples) in runs {
            rows.push(StepsFit { sampler, steps, evaluations, distance: sliced_wasserstein_2d(&samples, &exact, 32) });
        }
    }
    Ok(rows)
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
