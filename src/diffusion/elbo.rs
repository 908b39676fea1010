//! The variational bound of DDPM (Eq. 5), term by term, in nats and bits/dim:
//!
//!   L = L_T + sum_{t=2..T} L_{t-1} + L_0
//!   L_T     = KL(q(x_T | x_0) || N(0, I))
//!   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))
//!   L_0     = -log p_theta(x_0 | x_1), a Gaussian discretised over 256 bins (DDPM section 3.3)
//!
//! All functions take a batch whose samples may sit at different t, so a whole bound for one
//! image is T/batch model calls. Results are per sample, summed over pixels, in nats.

use burn::tensor::Tensor;

use crate::diffusion::process::{gather, mean_from_eps, q_posterior_mean, q_sample, scale};
use crate::diffusion::schedule::{NoiseSchedule, VarianceKind};
use crate::diffusion::variance::learned_log_variance;

/// Pixels are 8-bit levels mapped to [-1, 1] as level / 127.5 - 1, so a bin is 2/255 wide.
pub const BIN_HALF_WIDTH: f64 = 1.0 / 255.0;

/// Convert nats summed over `dims` pixels to bits per dimension.
pub fn bits_per_dim(nats: f64, dims: usize) -> f64 {
    nats / (dims as f64 * std::f64::consts::LN_2)
}

/// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise.
pub fn normal_kl(mean1: Tensor<4>, logvar1: &[f64], mean2: Tensor<4>, logvar2: &[f64]) -> Tensor<4> {
    // 0.5 * (logvar2 - logvar1 + exp(logvar1 - logvar2) - 1 + (mean1 - mean2)^2 * exp(-logvar2))
    let constant: Vec<f64> = logvar1
        .iter()
        .zip(logvar2)
        .map(|(l1, l2)| 0.5 * (l2 - l1 + (l1 - l2).exp() - 1.0))
        .collect();
    let inv_var2: Vec<f64> = logvar2.iter().map(|l| 0.5 * (-l).exp()).collect();
    let sq = (mean1 - mean2).square();
    let n = sq.dims()[0];
    let ones = sq.ones_like();
    scale(sq, &inv_var2) + scale(ones, &constant[..n])
}

/// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, with `logvar1` one value per
/// sample and `logvar2` per pixel (a learned reverse variance):
///   0.5 * (e^d (1 + (mean1 - mean2)^2 / var1) - d - 1),  d = logvar1 - logvar2,
/// so that the device only takes exp of the small d (GPU exp loses accuracy with |x|; 1 / var1
/// comes from the host in f64).
pub fn normal_kl_per_pixel(mean1: Tensor<4>, logvar1: &[f64], mean2: Tensor<4>, logvar2: Tensor<4>) -> Tensor<4> {
    let sq = (mean1 - mean2).square();
    let d = scale(sq.ones_like(), logvar1) - logvar2;
    let inv_var1: Vec<f64> = logvar1.iter().map(|l| (-l).exp()).collect();
    (d.clone().exp() * (scale(sq, &inv_var1) + 1.0) - d - 1.0).mul_scalar(0.5)
}

/// Standard normal CDF.
fn std_normal_cdf(x: Tensor<4>) -> Tensor<4> {
    (x.mul_scalar(std::f32::consts::FRAC_1_SQRT_2).erf() + 1.0).mul_scalar(0.5)
}

/// log p(x) of data `x` (values on the 256-level grid in [-1, 1]) under a Gaussian with `mean`
/// and per-sample `log_scale` (log sigma), discretised into bins of width 2/255 whose outer bins
/// extend to -inf and +inf (DDPM section 3.3, Eq. 13). Elementwise, in nats.
pub fn discretized_gaussian_log_likelihood(x: Tensor<4>, mean: Tensor<4>, log_scale: &[f64]) -> Tensor<4> {
    let inv_std: Vec<f64> = log_scale.iter().map(|l| (-l).exp()).collect();
    discretized_log_likelihood(x, mean, |centered| scale(centered, &inv_std))
}

/// [`discretized_gaussian_log_likelihood`] with a log sigma per pixel (a learned variance).
/// `reference`: a log sigma per sample near the pixels' (the fixed choice's), so that the device
/// takes exp only of the small difference (GPU exp loses accuracy with |x|).
pub fn discretized_gaussian_log_likelihood_per_pixel(x: Tensor<4>, mean: Tensor<4>, log_scale: Tensor<4>, reference: &[f64]) -> Tensor<4> {
    let inv_reference: Vec<f64> = reference.iter().map(|r| (-r).exp()).collect();
    let inv_std = scale((scale(log_scale.ones_like(), reference) - log_scale).exp(), &inv_reference);
    discretized_log_likelihood(x, mean, |centered| centered * inv_std.clone())
}

/// The discretised likelihood given how to standardise a distance from the mean.
fn discretized_log_likelihood(x: Tensor<4>, mean: Tensor<4>, standardise: impl Fn(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
    let centered = x.clone() - mean;
    let cdf_plus = std_normal_cdf(standardise(centered.clone().add_scalar(BIN_HALF_WIDTH as f32)));
    let cdf_min = std_normal_cdf(standardise(centered.sub_scalar(BIN_HALF_WIDTH as f32)));
    let floor = 1e-12f32;
    let log_cdf_plus = cdf_plus.clone().clamp_min(floor).log();
    let log_one_minus_cdf_min = (cdf_min.clone().neg() + 1.0).clamp_min(floor).log();
    let log_delta = (cdf_plus - cdf_min).clamp_min(floor).log();
    let edge = 1.0 - BIN_HALF_WIDTH as f32;
    log_delta
        .mask_where(x.clone().lower_elem(-edge), log_cdf_plus)
        .mask_where(x.greater_elem(edge), log_one_minus_cdf_min)
}

/// L_T = KL(q(x_T | x_0) || N(0, I)) per sample, in nats. Needs no model.
pub fn prior_kl(s: &NoiseSchedule, x0: Tensor<4>) -> Tensor<1> {
    let last = s.timesteps() - 1;
    let n = x0.dims()[0];
    let mean = scale(x0, &vec![s.sqrt_alpha_bar[last]; n]);
    let logvar = vec![(1.0 - s.alpha_bar[last]).ln(); n];
    let zeros = mean.zeros_like();
    sum_pixels(normal_kl(mean, &logvar, zeros, &vec![0.0; n]))
}

/// The inputs of one batched evaluation of the bound's middle and decoder terms.
pub struct TermBatch {
    pub x0: Tensor<4>,
    pub idx: Vec<usize>,
    pub x_t: Tensor<4>,
}

impl TermBatch {
    /// Noise `x0` to `x_t ~ q(x_t | x_0)` at the given indices with standard normal `noise`.
    pub fn new(s: &NoiseSchedule, x0: Tensor<4>, idx: Vec<usize>, noise: Tensor<4>) -> Self {
        let x_t = q_sample(s, x0.clone(), &idx, noise);
        Self { x0, idx, x_t }
    }

    /// Given the model's eps prediction at (x_t, t), the bound's term for each sample, in nats:
    /// L_{t-1} for t >= 2 (index >= 1) and L_0 for t = 1 (index 0).
    pub fn terms(&self, s: &NoiseSchedule, eps: Tensor<4>, variance: VarianceKind) -> Tensor<1> {
        self.terms_with(s, eps, ReverseVariance::Fixed(variance))
    }

    /// [`Self::terms`] with the reverse variance fixed or learned.
    pub fn terms_with(&self, s: &NoiseSchedule, eps: Tensor<4>, variance: ReverseVariance) -> Tensor<1> {
        let idx = &self.idx;
        let model_mean = mean_from_eps(s, self.x_t.clone(), idx, eps);
        let true_mean = q_posterior_mean(s, self.x0.clone(), self.x_t.clone(), idx);
        let true_logvar = gather(&s.posterior_log_variance_clipped, idx);
        let (kl, decoder) = match variance {
            ReverseVariance::Fixed(kind) => {
                let model_logvar: Vec<f64> = idx.iter().map(|&i| s.reverse_log_variance(kind, i)).collect();
                let kl = sum_pixels(normal_kl(true_mean, &true_logvar, model_mean.clone(), &model_logvar));
                let log_scale: Vec<f64> = model_logvar.iter().map(|l| 0.5 * l).collect();
                (kl, Box::new(move |x0| discretized_gaussian_log_likelihood(x0, model_mean, &log_scale)) as Decoder)
            }
            ReverseVariance::Learned(raw) => {
                let model_logvar = learned_log_variance(s, idx, raw);
                let kl = sum_pixels(normal_kl_per_pixel(true_mean, &true_logvar, model_mean.clone(), model_logvar.clone()));
                let log_scale = model_logvar.mul_scalar(0.5);
                let reference: Vec<f64> = true_logvar.iter().map(|l| 0.5 * l).collect();
                (kl, Box::new(move |x0| discretized_gaussian_log_likelihood_per_pixel(x0, model_mean, log_scale, &reference)) as Decoder)
            }
        };
        if idx.iter().all(|&i| i > 0) {
            return kl;
        }
        let decoder_nll = sum_pixels(decoder(self.x0.clone()).neg());
        let is_decoder: Vec<f32> = idx.iter().map(|&i| if i == 0 { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::<1>::from_data(
            burn::tensor::TensorData::new(is_decoder, [idx.len()]),
            &kl.device(),
        );
        kl.clone() + (decoder_nll - kl) * mask
    }
}

/// The decoder's log-likelihood of x_0, elementwise, built only where a batch holds t = 1.
type Decoder = Box<dyn FnOnce(Tensor<4>) -> Tensor<4>>;

/// The reverse process's variance in the bound: one of DDPM's fixed choices, or the network's
/// own per pixel (the raw output of its variance channel, see `crate::diffusion::variance`).
pub enum ReverseVariance {
    Fixed(VarianceKind),
    Learned(Tensor<4>),
}

/// Sum over channel and pixel dimensions: [n, c, h, w] -> [n].
pub fn sum_pixels(x: Tensor<4>) -> Tensor<1> {
    let n = x.dims()[0];
    x.reshape([n as i64, -1]).sum_dim(1).reshape([n])
}
