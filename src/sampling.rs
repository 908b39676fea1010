//! Reverse diffusion, one step at a time, so a caller can draw every step, stop between steps,
//! and read tensors back however its platform requires (synchronously natively, with
//! `into_data_async` in the browser). Nothing here reads a tensor.

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::diffusion::{ddim_step, ddpm_step, guided_eps};
use crate::model::{IMAGE_CHANNELS, IMAGE_SIZE, NULL_CLASS, UNet};
use crate::noise::NoiseSource;
use crate::schedule::{NoiseSchedule, VarianceKind};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// Ancestral sampling through all T steps (DDPM Algorithm 2).
    Ddpm { variance: VarianceKind },
    /// DDIM over `steps` evenly spaced timesteps with stochasticity `eta` (0 = deterministic).
    Ddim { steps: usize, eta: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSettings {
    /// The digit to draw, or `None` for unconditional samples.
    pub digit: Option<usize>,
    /// Classifier-free guidance weight w; ignored when `digit` is `None`.
    pub guidance: f64,
    pub method: Method,
    pub seed: u64,
    /// Number of images drawn at once.
    pub count: usize,
    /// Clip the predicted x_0 to [-1, 1] inside each step.
    pub clip_x0: bool,
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
    schedule: NoiseSchedule,
    timesteps: Vec<usize>,
    position: usize,
    x: Tensor<4>,
    noise: NoiseSource,
    classes: Tensor<1, Int>,
    guided: bool,
}

impl Sampler {
    /// Starts a run: draws x_T ~ N(0, I) from the seed (Algorithm 2, line 1).
    pub fn new(settings: SampleSettings, schedule: &NoiseSchedule, device: &Device) -> Self {
        let n = settings.count;
        let timesteps = match settings.method {
            Method::Ddpm { .. } => (0..schedule.timesteps()).rev().collect(),
            Method::Ddim { steps, .. } => schedule.ddim_timesteps(steps),
        };
        let mut noise = NoiseSource::new(settings.seed);
        let x = noise.tensor([n, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE], device);
        let guided = settings.digit.is_some() && settings.guidance != 0.0;
        let class = settings.digit.unwrap_or(NULL_CLASS) as i64;
        let mut labels = vec![class; n];
        if guided {
            labels.extend(std::iter::repeat_n(NULL_CLASS as i64, n));
        }
        let classes = Tensor::from_data(TensorData::new(labels.clone(), [labels.len()]), device);
        Self { settings, schedule: schedule.clone(), timesteps, position: 0, x, noise, classes, guided }
    }

    pub fn settings(&self) -> &SampleSettings {
        &self.settings
    }

    pub fn total_steps(&self) -> usize {
        self.timesteps.len()
    }

    pub fn steps_done(&self) -> usize {
        self.position
    }

    pub fn is_done(&self) -> bool {
        self.position >= self.timesteps.len()
    }

    /// The current x_t (x_T before the first step).
    pub fn current(&self) -> Tensor<4> {
        self.x.clone()
    }

    /// The guided noise prediction at index `i` for the current state: one model call with the
    /// conditional and unconditional halves in one batch.
    fn predict_eps(&self, model: &UNet, i: usize) -> Tensor<4> {
        let n = self.settings.count;
        let batch = if self.guided { 2 * n } else { n };
        let device = self.x.device();
        let t = Tensor::<1>::full([batch], (i + 1) as f32, &device);
        let input = if self.guided { Tensor::cat(vec![self.x.clone(), self.x.clone()], 0) } else { self.x.clone() };
        let eps = model.forward(input, t, self.classes.clone());
        if self.guided {
            let cond = eps.clone().narrow(0, 0, n);
            let uncond = eps.narrow(0, n, n);
            guided_eps(cond, uncond, self.settings.guidance)
        } else {
            eps
        }
    }

    /// Takes one reverse step; `None` once finished.
    pub fn step(&mut self, model: &UNet) -> Option<Step> {
        let &i = self.timesteps.get(self.position)?;
        let eps = self.predict_eps(model, i);
        let shape = self.x.dims();
        let device = self.x.device();
        let out = match self.settings.method {
            Method::Ddpm { variance } => {
                let z = (i > 0).then(|| self.noise.tensor(shape, &device));
                ddpm_step(&self.schedule, self.x.clone(), i, eps.clone(), variance, self.settings.clip_x0, z)
            }
            Method::Ddim { eta, .. } => {
                let i_prev = self.timesteps.get(self.position + 1).copied();
                let z = (eta > 0.0 && i_prev.is_some()).then(|| self.noise.tensor(shape, &device));
                ddim_step(&self.schedule, self.x.clone(), i, i_prev, eps.clone(), eta, self.settings.clip_x0, z)
            }
        };
        self.x = out.x_prev.clone();
        self.position += 1;
        Some(Step {
            t: i + 1,
            done: self.position,
            total: self.timesteps.len(),
            x: out.x_prev,
            x0_pred: out.x0_pred,
            eps,
        })
    }
}

/// Map model-space values in [-1, 1] to 8-bit grey levels (clamped).
pub fn to_pixels(values: &[f32]) -> Vec<u8> {
    values.iter().map(|v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8).collect()
}
