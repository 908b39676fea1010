//! Flow matching on the straight path (rectified flow: Lipman et al. 2023, Liu et al. 2023), the
//! fourth objective of the 2-D trainer. Data and noise are joined by straight lines,
//!   x_s = (1 - s) x_0 + s eps,  s in [0, 1] (s = 1: pure noise),
//! and the network regresses the velocity along them, u = dx_s/ds = eps - x_0, at s ~ U(0, 1)
//! (Lipman et al., Eq. 23 with sigma_min = 0). Its minimiser is v(x, s) = E[eps - x_0 | x_s = x],
//! and integrating dx/ds = v from s = 1 to 0 carries N(0, I) to the data (Euler or Heun steps).
//!
//! The straight path is diffusion's Gaussian path at another scale: x_s = c x_t when
//! s / (1 - s) = sqrt((1 - abar_t) / abar_t), with c = 1 / (sqrt(abar_t) + sqrt(1 - abar_t)). So
//! a velocity model also predicts diffusion's noise, eps_hat = x_s + (1 - s) v(x_s, s), and every
//! view of a diffusion model (its score field, its SDE and ODE) applies to it unchanged.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::diffusion::schedule::NoiseSchedule;

/// The network's time input is s times this, the range of diffusion's t, so that both objectives
/// share one network and one time embedding.
pub const TIME_SCALE: f64 = 1000.0;

/// The straight path's s with the same signal-to-noise ratio as diffusion's index `i`.
pub fn straight_time(schedule: &NoiseSchedule, i: usize) -> f64 {
    let (a, b) = (schedule.sqrt_alpha_bar[i], schedule.sqrt_one_minus_alpha_bar[i]);
    b / (a + b)
}

/// The factor c that takes diffusion's x_t at index `i` onto the straight path: x_s = c x_t.
pub fn straight_scale(schedule: &NoiseSchedule, i: usize) -> f64 {
    1.0 / (schedule.sqrt_alpha_bar[i] + schedule.sqrt_one_minus_alpha_bar[i])
}

/// The training pair at s: the state x_s = (1 - s) x_0 + s eps and the target u = eps - x_0.
pub fn straight_pair(x0: [f64; 2], eps: [f64; 2], s: f64) -> ([f64; 2], [f64; 2]) {
    let state = [(1.0 - s) * x0[0] + s * eps[0], (1.0 - s) * x0[1] + s * eps[1]];
    (state, [eps[0] - x0[0], eps[1] - x0[1]])
}

/// Diffusion's noise from a velocity at x_s: eps = x_s + (1 - s) v (from x_s = (1 - s) x_0 + s eps
/// and v = eps - x_0).
pub fn eps_from_velocity(x_s: Tensor<4>, s: f64, velocity: Tensor<4>) -> Tensor<4> {
    x_s + velocity.mul_scalar(1.0 - s)
}

/// How the flow's ODE dx/ds = v(x, s) is integrated from s = 1 to 0 on `steps` equal steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowSolver {
    /// x <- x + h v(x, s): one network call per step, error O(h).
    Euler,
    /// Heun's method (the explicit trapezoidal rule): an Euler predictor, then the mean of the
    /// velocities at both ends of the step; two calls per step, error O(h^2).
    Heun,
}

impl FlowSolver {
    pub const ALL: [FlowSolver; 2] = [FlowSolver::Euler, FlowSolver::Heun];

    pub fn label(self) -> &'static str {
        match self {
            FlowSolver::Euler => "Euler",
            FlowSolver::Heun => "Heun",
        }
    }

    /// Network calls for `steps` steps.
    pub fn evaluations(self, steps: usize) -> usize {
        match self {
            FlowSolver::Euler => steps,
            FlowSolver::Heun => 2 * steps,
        }
    }

    /// One step from s to s_next (< s) of the state `x`, with the velocity `v(x, s)`.
    pub fn step(self, v: &dyn Fn(Tensor<4>, f64) -> Tensor<4>, x: Tensor<4>, s: f64, s_next: f64) -> Tensor<4> {
        let h = s_next - s;
        let slope = v(x.clone(), s);
        let euler = x.clone() + slope.clone().mul_scalar(h);
        match self {
            FlowSolver::Euler => euler,
            FlowSolver::Heun => x + (slope + v(euler, s_next)).mul_scalar(h / 2.0),
        }
    }
}

/// The s of each step's start, from 1 down, then 0: `steps + 1` values.
pub fn flow_grid(steps: usize) -> Vec<f64> {
    let steps = steps.max(1);
    (0..=steps).map(|k| 1.0 - k as f64 / steps as f64).collect()
}
