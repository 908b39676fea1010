//! Reverse diffusion, one step at a time, so a caller can draw every step, stop between steps,
//! and read tensors back however its platform requires (synchronously natively, with
//! `into_data_async` in the browser). Nothing here reads a tensor.

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::diffusion::process::guided_eps;
use crate::nets::unet::{IMAGE_CHANNELS, IMAGE_SIZE, NULL_CLASS, NUM_DIGITS, PIXELS, UNet};
use crate::diffusion::noise::NoiseSource;
use crate::diffusion::schedule::NoiseSchedule;
pub use crate::diffusion::solver::Method;
use crate::diffusion::solver::ReverseSolver;

/// Which class the images are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "digit", rename_all = "snake_case")]
pub enum ClassChoice {
    /// Every cell draws its own digit from its stream and is guided towards it.
    AnyDigit,
    /// The same digit in every cell, guided towards it.
    Digit(usize),
    /// The null class: the unconditional model that guidance pushes away from (no guidance).
    Unconditional,
}

/// The steps at which classifier-free guidance applies, as the paper's t (inclusive). Guidance
/// at high noise narrows the spread of styles and at low noise barely changes the image
/// (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval"); outside the interval a
/// guided run takes the conditional prediction alone, one network pass instead of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuidanceInterval {
    pub first: usize,
    pub last: usize,
}

impl GuidanceInterval {
    pub fn contains(&self, t: usize) -> bool {
        (self.first..=self.last).contains(&t)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSettings {
    pub class: ClassChoice,
    /// Classifier-free guidance weight w; not used for [`ClassChoice::Unconditional`].
    pub guidance: f64,
    /// Where guidance applies; `None`: at every step.
    #[serde(default)]
    pub guidance_interval: Option<GuidanceInterval>,
    pub method: Method,
    pub seed: u64,
    /// Number of images drawn at once.
    pub count: usize,
    /// The grid index of the first image drawn here: a grid split across workers gives each part
    /// its own `first_cell`, and every image still comes from its own stream (seed, cell).
    #[serde(default)]
    pub first_cell: usize,
    /// Clip the predicted x_0 to [-1, 1] inside each step.
    pub clip_x0: bool,
}

impl SampleSettings {
    /// Whether any step runs the guided (conditional + unconditional) pair of passes.
    pub fn guided(&self) -> bool {
        self.class != ClassChoice::Unconditional && self.guidance != 0.0
    }

    /// Whether the step at the paper's t is guided.
    pub fn guides_at(&self, t: usize) -> bool {
        self.guided() && self.guidance_interval.is_none_or(|interval| interval.contains(t))
    }
}

/// What one reverse step produced.
pub struct Step {
    /// The paper's t of the step just taken (x_t -> x_{t-1}).
    pub t: usize,
    /// Steps done so far and in all.
    pub done: usize,
    pub total: usize,
    /// The new state x_{t-1}.
    pub x: Tensor<4>,
    /// The predicted x_0 and the (guided) predicted noise at t.
    pub x0_pred: Tensor<4>,
    pub eps: Tensor<4>,
}

/// The state of one sampling run.
pub struct Sampler {
    settings: SampleSettings,
    solver: ReverseSolver,
    x: Tensor<4>,
    /// One stream per image: its label (for any digit), x_T, then each step's z.
    streams: Vec<NoiseSource>,
    /// The label each image is conditioned on (the null class for unconditional sampling).
    labels: Vec<usize>,
    classes: Tensor<1, Int>,
    /// The network's conditioning for the whole run, computed at the first step (fewer
    /// operations per step): the time embedding of every t the run visits, and each batch
    /// row's class embedding.
    conditioning: Option<(Tensor<2>, Tensor<2>)>,
}

impl Sampler {
    /// Starts a run: draws each image's label and x_T ~ N(0, I) from its own stream
    /// (Algorithm 2, line 1).
    pub fn new(settings: SampleSettings, schedule: &NoiseSchedule, device: &Device) -> Self {
        let n = settings.count;
        let solver = ReverseSolver::new(settings.method, schedule);
        let mut streams: Vec<NoiseSource> =
            (0..n).map(|i| NoiseSource::for_cell(settings.seed, settings.first_cell + i)).collect();
        // The label is always drawn first, so x_T is the same whichever class is chosen.
        let drawn: Vec<usize> = streams.iter_mut().map(|s| s.index(0..NUM_DIGITS)).collect();
        let labels = match settings.class {
            ClassChoice::AnyDigit => drawn,
            ClassChoice::Digit(d) => vec![d; n],
            ClassChoice::Unconditional => vec![NULL_CLASS; n],
        };
        let x = cell_noise(&mut streams, device);
        let mut classes: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        if settings.guided() {
            classes.extend(std::iter::repeat_n(NULL_CLASS as i64, n));
        }
        let classes = Tensor::from_data(TensorData::new(classes.clone(), [classes.len()]), device);
        Self { settings, solver, x, streams, labels, classes, conditioning: None }
    }

    pub fn settings(&self) -> &SampleSettings {
        &self.settings
    }

    /// The label each image is conditioned on (`NULL_CLASS` for unconditional sampling).
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    pub fn total_steps(&self) -> usize {
        self.solver.total_steps()
    }

    pub fn steps_done(&self) -> usize {
        self.solver.steps_done()
    }

    pub fn is_done(&self) -> bool {
        self.solver.current_index().is_none()
    }

    /// The current x_t (x_T before the first step).
    pub fn current(&self) -> Tensor<4> {
        self.x.clone()
    }

    /// The noise prediction for the current state: at a guided step one model call with the
    /// conditional and unconditional halves in one batch, else the conditional half alone; and,
    /// when the method steps with the learned variance, the variance channel's raw output of the
    /// conditional half (guidance changes the mean, not the variance, as in GLIDE).
    fn predict_eps(&mut self, model: &UNet) -> (Tensor<4>, Option<Tensor<4>>) {
        let n = self.settings.count;
        let batch = if self.settings.guided() { 2 * n } else { n };
        let (times, classes) = self.conditioning.get_or_insert_with(|| {
            let visited: Vec<f32> = self.solver.timesteps().iter().map(|&i| (i + 1) as f32).collect();
            (model.time_embedding(&visited, &self.x.device()), model.class_embedding(self.classes.clone(), batch))
        });
        let k = self.solver.steps_done();
        // One row of the run's time embeddings, broadcast over the batch.
        let time = times.clone().narrow(0, k, 1);
        let learned = self.settings.method.needs_learned_variance();
        let forward = |x: Tensor<4>, emb: Tensor<2>| {
            if learned { model.forward_with_variance(x, emb) } else { (model.forward_conditioned(x, emb), None) }
        };
        if !self.settings.guides_at(self.solver.timesteps()[k] + 1) {
            return forward(self.x.clone(), time + classes.clone().narrow(0, 0, n));
        }
        let (eps, raw) = forward(Tensor::cat(vec![self.x.clone(), self.x.clone()], 0), time + classes.clone());
        let cond = eps.clone().narrow(0, 0, n);
        let uncond = eps.narrow(0, n, n);
        (guided_eps(cond, uncond, self.settings.guidance), raw.map(|r| r.narrow(0, 0, n)))
    }

    /// Takes one reverse step; `None` once finished.
    pub fn step(&mut self, model: &UNet) -> Option<Step> {
        let i = self.solver.current_index()?;
        let (eps, raw_variance) = self.predict_eps(model);
        let z = self.solver.needs_noise().then(|| cell_noise(&mut self.streams, &self.x.device()));
        let out = self.solver.advance_with_variance(self.x.clone(), eps.clone(), raw_variance, self.settings.clip_x0, z);
        self.x = out.x_prev.clone();
        Some(Step {
            t: i + 1,
            done: self.solver.steps_done(),
            total: self.solver.total_steps(),
            x: out.x_prev,
            x0_pred: out.x0_pred,
            eps,
        })
    }
}

/// The U-Net's noise prediction at any state and timestep, guided like the sampler's (one batch
/// of conditional and unconditional halves where guidance applies): what restorations step with.
pub struct GuidedDenoiser<'a> {
    model: &'a UNet,
    classes: Tensor<1, Int>,
    guidance: f64,
    interval: Option<GuidanceInterval>,
    guided: bool,
}

impl<'a> GuidedDenoiser<'a> {
    /// `labels`: the class of each image (`NULL_CLASS` for none, which is never guided).
    pub fn new(model: &'a UNet, labels: &[usize], guidance: f64, interval: Option<GuidanceInterval>, device: &Device) -> Self {
        let guided = guidance != 0.0 && labels.iter().all(|&l| l != NULL_CLASS);
        let mut classes: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        if guided {
            classes.extend(std::iter::repeat_n(NULL_CLASS as i64, labels.len()));
        }
        let classes = Tensor::from_data(TensorData::new(classes.clone(), [classes.len()]), device);
        Self { model, classes, guidance, interval, guided }
    }

    /// eps at state `x` ([n, 1, 28, 28]) and timestep index `i`.
    pub fn eps(&self, x: Tensor<4>, i: usize) -> Tensor<4> {
        let n = x.dims()[0];
        let time = self.model.time_embedding(&[(i + 1) as f32], &x.device());
        let guide_here = self.guided && self.interval.is_none_or(|interval| interval.contains(i + 1));
        if !guide_here {
            let classes = self.model.class_embedding(self.classes.clone().narrow(0, 0, n), n);
            return self.model.forward_conditioned(x, time + classes);
        }
        let classes = self.model.class_embedding(self.classes.clone(), 2 * n);
        let eps = self.model.forward_conditioned(Tensor::cat(vec![x.clone(), x], 0), time + classes);
        guided_eps(eps.clone().narrow(0, 0, n), eps.narrow(0, n, n), self.guidance)
    }
}

/// One image of N(0, I) noise from each stream, stacked as [n, 1, 28, 28].
fn cell_noise(streams: &mut [NoiseSource], device: &Device) -> Tensor<4> {
    let values: Vec<f32> = streams.iter_mut().flat_map(|s| s.normal(PIXELS)).collect();
    Tensor::from_data(TensorData::new(values, [streams.len(), IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE]), device)
}

