//! The diffusion maths on tensors: forward process, posterior, the three parameterisations
//! (noise eps, clean image x_0, score), and the reverse steps of DDPM and DDIM.
//!
//! Every function takes timestep indices `idx` (t = idx + 1, see `crate::diffusion::schedule`), one per sample in
//! the batch, so the same code serves a sampler (all samples at one t) and the ELBO (a batch
//! spread over many t). Coefficients come from the f64 schedule on the host; when every sample
//! shares one t they are applied as scalars, so sampling uploads nothing but noise.

use burn::tensor::{Tensor, TensorData};

use crate::diffusion::schedule::{NoiseSchedule, VarianceKind};

/// Multiply each sample of `x` ([n, c, h, w]) by its own coefficient.
pub fn scale(x: Tensor<4>, coef: &[f64]) -> Tensor<4> {
    let n = x.dims()[0];
    assert_eq!(coef.len(), n, "one coefficient per sample");
    if coef.iter().all(|&c| c == coef[0]) {
        return x.mul_scalar(coef[0]);
    }
    // Created in x's precision: f64 tensors (used by tests) keep f64 coefficients.
    let c = Tensor::<4>::from_data(TensorData::new(coef.to_vec(), [n, 1, 1, 1]), (&x.device(), x.dtype()));
    x * c
}

/// Gather a schedule array at the given indices.
pub fn gather(values: &[f64], idx: &[usize]) -> Vec<f64> {
    idx.iter().map(|&i| values[i]).collect()
}

/// q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Eq. 4), sampled with the given
/// standard normal `noise`: the reparameterisation of Algorithm 1, line 5.
pub fn q_sample(s: &NoiseSchedule, x0: Tensor<4>, idx: &[usize], noise: Tensor<4>) -> Tensor<4> {
    scale(x0, &gather(&s.sqrt_alpha_bar, idx)) + scale(noise, &gather(&s.sqrt_one_minus_alpha_bar, idx))
}

/// Mean of the posterior q(x_{t-1} | x_t, x_0) (Eq. 6-7): coef1 * x_0 + coef2 * x_t.
/// Its variance is `s.posterior_variance[idx]`.
pub fn q_posterior_mean(s: &NoiseSchedule, x0: Tensor<4>, x_t: Tensor<4>, idx: &[usize]) -> Tensor<4> {
    scale(x0, &gather(&s.posterior_mean_coef1, idx)) + scale(x_t, &gather(&s.posterior_mean_coef2, idx))
}

/// x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (Eq. 4 solved for x_0, Eq. 15).
pub fn x0_from_eps(s: &NoiseSchedule, x_t: Tensor<4>, idx: &[usize], eps: Tensor<4>) -> Tensor<4> {
    scale(x_t, &gather(&s.sqrt_recip_alpha_bar, idx)) - scale(eps, &gather(&s.sqrt_recipm1_alpha_bar, idx))
}

/// eps = (x_t / sqrt(alpha_bar_t) - x_0) / sqrt(1 / alpha_bar_t - 1), the inverse of `x0_from_eps`.
pub fn eps_from_x0(s: &NoiseSchedule, x_t: Tensor<4>, idx: &[usize], x0: Tensor<4>) -> Tensor<4> {
    let inv: Vec<f64> = gather(&s.sqrt_recipm1_alpha_bar, idx).iter().map(|c| 1.0 / c).collect();
    scale(scale(x_t, &gather(&s.sqrt_recip_alpha_bar, idx)) - x0, &inv)
}

/// The score of q(x_t | x_0) marginals: grad log q(x_t) = -eps / sqrt(1 - alpha_bar_t)
/// (Tweedie; Luo 2022, Eq. 151).
pub fn score_from_eps(s: &NoiseSchedule, idx: &[usize], eps: Tensor<4>) -> Tensor<4> {
    let c: Vec<f64> = gather(&s.sqrt_one_minus_alpha_bar, idx).iter().map(|c| -1.0 / c).collect();
    scale(eps, &c)
}

/// eps = -sqrt(1 - alpha_bar_t) * score, the inverse of `score_from_eps`.
pub fn eps_from_score(s: &NoiseSchedule, idx: &[usize], score: Tensor<4>) -> Tensor<4> {
    let c: Vec<f64> = gather(&s.sqrt_one_minus_alpha_bar, idx).iter().map(|c| -c).collect();
    scale(score, &c)
}

/// Tweedie's formula: E[x_0 | x_t] = (x_t + (1 - alpha_bar_t) * score) / sqrt(alpha_bar_t).
pub fn tweedie_x0(s: &NoiseSchedule, x_t: Tensor<4>, idx: &[usize], score: Tensor<4>) -> Tensor<4> {
    let one_minus: Vec<f64> = gather(&s.alpha_bar, idx).iter().map(|a| 1.0 - a).collect();
    scale(x_t + scale(score, &one_minus), &gather(&s.sqrt_recip_alpha_bar, idx))
}

/// mu_theta from predicted noise (Eq. 11): (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t).
pub fn mean_from_eps(s: &NoiseSchedule, x_t: Tensor<4>, idx: &[usize], eps: Tensor<4>) -> Tensor<4> {
    let c: Vec<f64> = idx.iter().map(|&i| s.beta[i] / s.sqrt_one_minus_alpha_bar[i]).collect();
    scale(x_t - scale(eps, &c), &gather(&s.sqrt_recip_alpha, idx))
}

/// mu_theta from a predicted x_0: the posterior mean mu_tilde_t(x_t, x_0_hat) (Eq. 7).
pub fn mean_from_x0(s: &NoiseSchedule, x_t: Tensor<4>, idx: &[usize], x0: Tensor<4>) -> Tensor<4> {
    q_posterior_mean(s, x0, x_t, idx)
}

/// mu_theta from a predicted score: (x_t + beta_t * score) / sqrt(alpha_t).
pub fn mean_from_score(s: &NoiseSchedule, x_t: Tensor<4>, idx: &[usize], score: Tensor<4>) -> Tensor<4> {
    scale(x_t + scale(score, &gather(&s.beta, idx)), &gather(&s.sqrt_recip_alpha, idx))
}

/// Classifier-free guidance (Ho & Salimans 2022, Eq. 6): eps = (1 + w) eps_cond - w eps_uncond.
pub fn guided_eps(eps_cond: Tensor<4>, eps_uncond: Tensor<4>, w: f64) -> Tensor<4> {
    eps_cond.mul_scalar(1.0 + w) - eps_uncond.mul_scalar(w)
}

/// One reverse step's outputs.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// x_{t-1} (or the final x_0 after the last step).
    pub x_prev: Tensor<4>,
    /// The model's x_0 estimate at this step (clipped if clipping is on).
    pub x0_pred: Tensor<4>,
}

/// DDPM ancestral sampling step, Algorithm 2 line 4:
/// x_{t-1} = mu_theta(x_t, t) + sigma_t z, with z = 0 at t = 1.
/// With `clip_x0`, x_0 is recovered from eps, clipped to [-1, 1] and mu taken from Eq. 7, as the
/// DDPM reference code does; without it mu comes straight from Eq. 11 (identical when nothing clips).
pub fn ddpm_step(
    s: &NoiseSchedule,
    x_t: Tensor<4>,
    i: usize,
    eps: Tensor<4>,
    variance: VarianceKind,
    clip_x0: bool,
    noise: Option<Tensor<4>>,
) -> StepOutput {
    let (mean, x0_pred) = ddpm_mean(s, x_t, i, eps, clip_x0);
    let x_prev = match noise {
        Some(z) if i > 0 => mean + z.mul_scalar(s.reverse_variance(variance, i).sqrt()),
        _ => mean,
    };
    StepOutput { x_prev, x0_pred }
}

/// [`ddpm_step`] with a variance per pixel: sigma_t = exp(log_variance / 2), e.g. the network's
/// own Sigma_theta (Improved DDPM, Eq. 15; `crate::diffusion::variance::learned_log_variance`).
pub fn ddpm_step_learned(
    s: &NoiseSchedule,
    x_t: Tensor<4>,
    i: usize,
    eps: Tensor<4>,
    log_variance: Tensor<4>,
    clip_x0: bool,
    noise: Option<Tensor<4>>,
) -> StepOutput {
    let (mean, x0_pred) = ddpm_mean(s, x_t, i, eps, clip_x0);
    let x_prev = match noise {
        Some(z) if i > 0 => mean + z * log_variance.mul_scalar(0.5).exp(),
        _ => mean,
    };
    StepOutput { x_prev, x0_pred }
}

/// mu_theta(x_t, t) of a DDPM step and the x_0 estimate it implies (clipped with `clip_x0`).
fn ddpm_mean(s: &NoiseSchedule, x_t: Tensor<4>, i: usize, eps: Tensor<4>, clip_x0: bool) -> (Tensor<4>, Tensor<4>) {
    let n = x_t.dims()[0];
    let idx = vec![i; n];
    let x0_pred = x0_from_eps(s, x_t.clone(), &idx, eps.clone());
    if clip_x0 {
        let x0_pred = x0_pred.clamp(-1.0, 1.0);
        (mean_from_x0(s, x_t, &idx, x0_pred.clone()), x0_pred)
    } else {
        (mean_from_eps(s, x_t, &idx, eps), x0_pred)
    }
}

/// sigma of a DDIM step from index `i` to `i_prev` (Song et al. 2021, Eq. 16):
/// eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_prev).
pub fn ddim_sigma(s: &NoiseSchedule, i: usize, i_prev: Option<usize>, eta: f64) -> f64 {
    let ab = s.alpha_bar[i];
    let ab_prev = i_prev.map_or(1.0, |p| s.alpha_bar[p]);
    eta * ((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)).max(0.0).sqrt()
}

/// DDIM step from index `i` to `i_prev` (`None` = to x_0) (Song et al. 2021, Eq. 12):
/// x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z.
pub fn ddim_step(
    s: &NoiseSchedule,
    x_t: Tensor<4>,
    i: usize,
    i_prev: Option<usize>,
    eps: Tensor<4>,
    eta: f64,
    clip_x0: bool,
    noise: Option<Tensor<4>>,
) -> StepOutput {
    let n = x_t.dims()[0];
    let x0_pred = x0_from_eps(s, x_t.clone(), &vec![i; n], eps.clone());
    let ab_prev = i_prev.map_or(1.0, |p| s.alpha_bar[p]);
    let sigma = ddim_sigma(s, i, i_prev, eta);
    let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
    let (x0_pred, mut x_prev) = if clip_x0 {
        // With x_0 clipped, eps is the noise consistent with it and x_t, as in the DDIM reference
        // code: eps = (x_t - sqrt(alpha_bar_t) x0_hat) / sqrt(1 - alpha_bar_t). Substituted,
        // x_prev is one combination of x0_hat and x_t (three operations fewer per step).
        let x0_pred = x0_pred.clamp(-1.0, 1.0);
        let (sa, s1) = (s.sqrt_alpha_bar[i], s.sqrt_one_minus_alpha_bar[i]);
        let x_prev = x0_pred.clone().mul_scalar(ab_prev.sqrt() - dir * sa / s1) + x_t.mul_scalar(dir / s1);
        (x0_pred, x_prev)
    } else {
        let x_prev = x0_pred.clone().mul_scalar(ab_prev.sqrt()) + eps.mul_scalar(dir);
        (x0_pred, x_prev)
    };
    if let (Some(z), true) = (noise, sigma > 0.0) {
        x_prev = x_prev + z.mul_scalar(sigma);
    }
    StepOutput { x_prev, x0_pred }
}

/// One DPM-Solver++(2M) step from index `i` to `i_prev` (`None` = to x_0) (Lu et al. 2022,
/// "DPM-Solver++", Algorithm 2). With h = lambda_prev - lambda_t and the x_0 prediction D,
///   x_prev = (sigma_prev / sigma_t) x_t - alpha_prev (e^{-h} - 1) D,
/// where D is this step's x_0 prediction on the first step (then the step is DDIM's, eta = 0) and
/// the second-order combination (1 + 1/(2r)) x0_t - 1/(2r) x0_before, r = h_before / h, after it.
/// The last step, to x_0 (sigma = 0), lands on x0_t (first order, the reference code's
/// `lower_order_final`). The solver's timesteps are evenly spaced in lambda
/// (`NoiseSchedule::log_snr_timesteps`): with equal steps in t the step into t = 1 would span most
/// of lambda's range, where x_0's prediction has stopped changing, and extrapolating it overshoots.
pub fn dpm_solver_2m_step(
    s: &NoiseSchedule,
    x_t: Tensor<4>,
    i: usize,
    i_prev: Option<usize>,
    eps: Tensor<4>,
    previous: Option<(usize, Tensor<4>)>,
    clip_x0: bool,
) -> StepOutput {
    let n = x_t.dims()[0];
    let mut x0_pred = x0_from_eps(s, x_t.clone(), &vec![i; n], eps);
    if clip_x0 {
        x0_pred = x0_pred.clamp(-1.0, 1.0);
    }
    let Some(p) = i_prev else {
        return StepOutput { x_prev: x0_pred.clone(), x0_pred };
    };
    let h = s.half_log_snr(p) - s.half_log_snr(i);
    let d = match previous {
        Some((before, x0_before)) => {
            let r = (s.half_log_snr(i) - s.half_log_snr(before)) / h;
            x0_pred.clone().mul_scalar(1.0 + 0.5 / r) - x0_before.mul_scalar(0.5 / r)
        }
        None => x0_pred.clone(),
    };
    let ratio = s.sqrt_one_minus_alpha_bar[p] / s.sqrt_one_minus_alpha_bar[i];
    let x_prev = x_t.mul_scalar(ratio) + d.mul_scalar(-s.sqrt_alpha_bar[p] * (-h).exp_m1());
    StepOutput { x_prev, x0_pred }
}
