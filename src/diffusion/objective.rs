//! What a denoiser is trained to predict, what that choice weights, and one gradient step: the
//! training objective shared by the digit U-Net (`crate::native::train`, natively) and the 2-D denoiser
//! trained in the explainer's tab (`crate::toy::train`, natively and in wasm).
//!
//! Given x_t = sqrt(a) x_0 + sqrt(1 - a) eps (Eq. 4, a = alpha_bar_t), a network may predict the
//! noise eps (DDPM's choice, Eq. 14), the clean image x_0, or the velocity
//! v = sqrt(a) eps - sqrt(1 - a) x_0 (Salimans & Ho 2022, section 4). Given x_t, each determines
//! the other two, so an unweighted squared error on any of them is a weighted squared error on x_0:
//!   ||eps - eps_hat||^2 = SNR(t) ||x_0 - x0_hat||^2,
//!   ||v - v_hat||^2     = (SNR(t) + 1) ||x_0 - x0_hat||^2,
//! while the ELBO's term L_{t-1} (sigma_t^2 = beta_tilde_t) is (SNR(t-1) - SNR(t)) / 2 times it
//! (Kingma et al. 2021, Eq. 13; Luo 2022, Eq. 108).

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::diffusion::elbo::{ReverseVariance, TermBatch};
use crate::diffusion::process::{eps_from_x0, gather, q_sample, scale};
use crate::diffusion::schedule::NoiseSchedule;

/// The network's output, and the regression target of its loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// eps (DDPM, Eq. 14): L_simple.
    Noise,
    /// x_0 itself.
    CleanData,
    /// v = sqrt(a) eps - sqrt(1 - a) x_0.
    Velocity,
}

impl Prediction {
    pub const ALL: [Prediction; 3] = [Prediction::Noise, Prediction::CleanData, Prediction::Velocity];

    /// The name used in URLs and requests.
    pub fn name(self) -> &'static str {
        match self {
            Prediction::Noise => "noise",
            Prediction::CleanData => "x0",
            Prediction::Velocity => "v",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Prediction::Noise => "noise ε (DDPM)",
            Prediction::CleanData => "clean data x₀",
            Prediction::Velocity => "velocity v",
        }
    }

    /// One sentence on the weighting this choice implies (see the module's comment).
    pub fn help(self) -> &'static str {
        match self {
            Prediction::Noise => "Its squared error weights the x₀ error by SNR(t): small t (little noise) dominates.",
            Prediction::CleanData => "Its squared error weights the x₀ error equally at every t: large t (much noise) dominates the loss.",
            Prediction::Velocity => "Its squared error weights the x₀ error by SNR(t) + 1: like ε at small t, like x₀ at large t.",
        }
    }

    /// What this prediction regresses on for a batch noised with `noise` at indices `idx`.
    pub fn target(self, s: &NoiseSchedule, x0: Tensor<4>, noise: Tensor<4>, idx: &[usize]) -> Tensor<4> {
        match self {
            Prediction::Noise => noise,
            Prediction::CleanData => x0,
            Prediction::Velocity => scale(noise, &gather(&s.sqrt_alpha_bar, idx)) - scale(x0, &gather(&s.sqrt_one_minus_alpha_bar, idx)),
        }
    }

    /// The noise a prediction implies at x_t: what the samplers of `crate::diffusion::solver` step with.
    pub fn to_eps(self, s: &NoiseSchedule, x_t: Tensor<4>, idx: &[usize], prediction: Tensor<4>) -> Tensor<4> {
        match self {
            Prediction::Noise => prediction,
            Prediction::CleanData => eps_from_x0(s, x_t, idx, prediction),
            // eps = sqrt(1 - a) x_t + sqrt(a) v.
            Prediction::Velocity => scale(x_t, &gather(&s.sqrt_one_minus_alpha_bar, idx)) + scale(prediction, &gather(&s.sqrt_alpha_bar, idx)),
        }
    }

    /// The weight this prediction's unweighted squared error puts on ||x_0 - x0_hat||^2 at
    /// index `i` (t = i + 1).
    pub fn x0_weight(self, s: &NoiseSchedule, i: usize) -> f64 {
        match self {
            Prediction::Noise => s.snr[i],
            Prediction::CleanData => 1.0,
            Prediction::Velocity => s.snr[i] + 1.0,
        }
    }
}

/// How a training loss weights the squared error of each timestep.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossWeighting {
    /// Every timestep alike: L_simple (Ho et al. 2020, Eq. 14) for eps-prediction.
    #[default]
    Uniform,
    /// Min-SNR-gamma (Hang et al. 2023, Eq. 7-9): the x_0 error weighted by min(SNR(t), gamma),
    /// which caps the weight eps-prediction puts on the nearly clean timesteps.
    MinSnr { gamma: f64 },
}

impl LossWeighting {
    /// The factor on `prediction`'s plain squared error at index `i`: min(SNR, gamma) divided by
    /// the x_0 weight the prediction already carries (`Prediction::x0_weight`), so that the
    /// weighted loss puts min(SNR, gamma) on ||x_0 - x0_hat||^2. For eps: min(SNR, gamma) / SNR.
    pub fn factor(self, s: &NoiseSchedule, prediction: Prediction, i: usize) -> f64 {
        match self {
            LossWeighting::Uniform => 1.0,
            LossWeighting::MinSnr { gamma } => s.snr[i].min(gamma) / prediction.x0_weight(s, i),
        }
    }

    pub fn is_uniform(&self) -> bool {
        *self == LossWeighting::Uniform
    }
}

/// The weight the ELBO's term L_{t-1} puts on ||x_0 - x0_hat||^2 (nats per squared unit, with
/// sigma_t^2 = beta_tilde_t): (SNR(t-1) - SNR(t)) / 2, for t >= 2 (index `i` >= 1).
pub fn elbo_x0_weight(s: &NoiseSchedule, i: usize) -> f64 {
    assert!(i >= 1, "L_0 is the decoder's term, not a weighted squared error");
    0.5 * (s.snr[i - 1] - s.snr[i])
}

/// The mean over a batch of each sample's mean squared error times its factor.
pub fn weighted_mse(prediction: Tensor<4>, target: Tensor<4>, factors: &[f64]) -> Tensor<1> {
    let [n, c, h, w] = prediction.dims();
    let per_sample: Tensor<4> = (prediction - target).square().reshape([n, 1, 1, c * h * w]).mean_dim(3);
    scale(per_sample, factors).mean()
}

/// Mean squared error between a prediction and its target.
pub fn mse<const D: usize>(prediction: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    (prediction - target).square().mean()
}

/// One gradient step: back-propagate `loss` through `model` and let `optimizer` move it with
/// learning rate `lr`. The same for every network this project trains, on every backend.
pub fn descend<M: Module>(model: M, optimizer: &mut ModuleOptimizer, loss: Tensor<1>, lr: f64) -> M {
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optimizer.step(lr, model, grads)
}

/// lambda of L_hybrid = L_simple + lambda L_vlb (Improved DDPM, Eq. 16).
pub const HYBRID_LAMBDA: f64 = 0.001;

/// L_vlb's single-timestep estimate for each sample, in bits/dim: T times the bound's term at the
/// sample's t (uniform t makes T * L_t an unbiased estimate of the sum over t). The mean enters
/// through `eps` detached (the paper's stop-gradient), so this term trains only the variance.
pub fn vlb_estimate(s: &NoiseSchedule, x0: Tensor<4>, x_t: Tensor<4>, idx: &[usize], eps: Tensor<4>, raw_variance: Tensor<4>) -> Tensor<1> {
    let [_, c, h, w] = x0.dims();
    let batch = TermBatch { x0, idx: idx.to_vec(), x_t };
    let nats = batch.terms_with(s, eps.detach(), ReverseVariance::Learned(raw_variance));
    nats.mul_scalar(s.timesteps() as f64 / ((c * h * w) as f64 * std::f64::consts::LN_2))
}

/// L_hybrid = L_simple + lambda L_vlb (Improved DDPM, section 3.1): the mean learns from the
/// squared error alone, the variance from the bound alone. Returns (L_hybrid, L_vlb), batch means.
pub fn hybrid_loss(s: &NoiseSchedule, x0: Tensor<4>, noise: Tensor<4>, idx: &[usize], eps: Tensor<4>, raw_variance: Tensor<4>) -> (Tensor<1>, Tensor<1>) {
    let x_t = q_sample(s, x0.clone(), idx, noise.clone());
    let vlb = vlb_estimate(s, x0, x_t, idx, eps.clone(), raw_variance).mean();
    (hybrid(mse(eps, noise), vlb.clone()), vlb)
}

/// L_simple (or a weighted squared error in its place) + lambda L_vlb.
pub fn hybrid(simple: Tensor<1>, vlb: Tensor<1>) -> Tensor<1> {
    simple + vlb.mul_scalar(HYBRID_LAMBDA)
}
