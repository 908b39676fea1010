//! The reverse-time update rules, apart from the network that predicts the noise: the digit
//! sampler feeds them the U-Net's (guided) eps, the 2-D tests and the explainer the exact eps of
//! a Gaussian mixture, so every sampler is tested against a known target with the same code.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::diffusion::process::{StepOutput, ddim_step, ddpm_step, ddpm_step_learned, dpm_solver_2m_step};
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::variance::{VarianceChoice, learned_log_variance};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// Ancestral sampling through all T steps (DDPM Algorithm 2): the reverse SDE, with a fixed
    /// or (from the network's variance channel) the learned variance.
    Ddpm { variance: VarianceChoice },
    /// DDIM over `steps` evenly spaced timesteps with stochasticity `eta` (0 = deterministic: a
    /// first-order solver of the probability-flow ODE).
    Ddim { steps: usize, eta: f64 },
    /// DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) over the same timesteps as DDIM: a
    /// second-order multistep solver of the probability-flow ODE in data prediction.
    DpmSolver2M { steps: usize },
}

impl Method {
    /// Network evaluations of a run (per image and guidance pass).
    pub fn evaluations(&self, schedule: &NoiseSchedule) -> usize {
        self.timesteps(schedule).len()
    }

    /// Whether a step needs the network's variance channel.
    pub fn needs_learned_variance(&self) -> bool {
        matches!(self, Method::Ddpm { variance: VarianceChoice::Learned })
    }

    /// The timestep indices a run visits, descending.
    pub fn timesteps(&self, schedule: &NoiseSchedule) -> Vec<usize> {
        match *self {
            Method::Ddpm { .. } => (0..schedule.timesteps()).rev().collect(),
            Method::Ddim { steps, .. } => schedule.ddim_timesteps(steps),
            Method::DpmSolver2M { steps } => schedule.log_snr_timesteps(steps),
        }
    }
}

/// Walks one run's timesteps, turning each step's noise prediction into the next state.
pub struct ReverseSolver {
    method: Method,
    schedule: NoiseSchedule,
    timesteps: Vec<usize>,
    position: usize,
    /// DPM-Solver++(2M) only: the previous step's index and its x_0 prediction.
    previous: Option<(usize, Tensor<4>)>,
}

impl ReverseSolver {
    pub fn new(method: Method, schedule: &NoiseSchedule) -> Self {
        Self { method, schedule: schedule.clone(), timesteps: method.timesteps(schedule), position: 0, previous: None }
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn total_steps(&self) -> usize {
        self.timesteps.len()
    }

    pub fn steps_done(&self) -> usize {
        self.position
    }

    /// Every timestep index of the run, in the order they are visited.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The index of the step about to be taken (t = index + 1); `None` once finished.
    pub fn current_index(&self) -> Option<usize> {
        self.timesteps.get(self.position).copied()
    }

    /// Whether the step about to be taken adds fresh noise z (the caller draws it, so that every
    /// image's stream is consumed the same way on every platform).
    pub fn needs_noise(&self) -> bool {
        let Some(i) = self.current_index() else { return false };
        match self.method {
            Method::Ddpm { .. } => i > 0,
            Method::Ddim { eta, .. } => eta > 0.0 && self.position + 1 < self.timesteps.len(),
            Method::DpmSolver2M { .. } => false,
        }
    }

    /// Takes the step from the current index given the noise prediction `eps` at x_t; `z` is the
    /// fresh noise when [`Self::needs_noise`] says so. Panics when the run is finished, or when
    /// the method needs the learned variance (see [`Self::advance_with_variance`]).
    pub fn advance(&mut self, x_t: Tensor<4>, eps: Tensor<4>, clip_x0: bool, z: Option<Tensor<4>>) -> StepOutput {
        self.advance_with_variance(x_t, eps, None, clip_x0, z)
    }

    /// [`Self::advance`] given also the variance channel's raw output at x_t, which a method that
    /// [`Method::needs_learned_variance`] steps with.
    pub fn advance_with_variance(&mut self, x_t: Tensor<4>, eps: Tensor<4>, raw_variance: Option<Tensor<4>>, clip_x0: bool, z: Option<Tensor<4>>) -> StepOutput {
        let i = self.current_index().expect("the run has steps left");
        let i_prev = self.timesteps.get(self.position + 1).copied();
        let s = &self.schedule;
        let out = match self.method {
            Method::Ddpm { variance } => match (variance.fixed(), raw_variance) {
                (Some(kind), _) => ddpm_step(s, x_t, i, eps, kind, clip_x0, z),
                (None, Some(raw)) => {
                    let n = x_t.dims()[0];
                    ddpm_step_learned(s, x_t, i, eps, learned_log_variance(s, &vec![i; n], raw), clip_x0, z)
                }
                (None, None) => panic!("DDPM with the learned variance needs the network's variance channel"),
            },
            Method::Ddim { eta, .. } => ddim_step(s, x_t, i, i_prev, eps, eta, clip_x0, z),
            Method::DpmSolver2M { .. } => {
                let out = dpm_solver_2m_step(s, x_t, i, i_prev, eps, self.previous.take(), clip_x0);
                self.previous = Some((i, out.x0_pred.clone()));
                out
            }
        };
        self.position += 1;
        out
    }
}
