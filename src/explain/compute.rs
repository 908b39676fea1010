//! What the explainer page computes, on any backend: the ELBO terms of one digit for any set of
//! timesteps, and at one t the three parameterisations of the model's output, Tweedie's estimate,
//! and the posterior against the model's reverse step. Returns tensors and reads nothing, so the
//! browser reads them with `into_data_async` and native tests read them synchronously.
//!
//! Noise for timestep index i of draw `seed` depends on (seed, i) only, so any subset of
//! timesteps gives the same terms as the full sweep over all T.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::diffusion::process::{
    gather, mean_from_eps, mean_from_score, mean_from_x0, q_posterior_mean, q_sample, score_from_eps, tweedie_x0, x0_from_eps,
};
use crate::diffusion::elbo::{ReverseVariance, TermBatch, prior_kl, sum_pixels};
use crate::diffusion::variance::{VarianceChoice, interpolation};
use crate::nets::unet::{IMAGE_SIZE, PIXELS, UNet};
use crate::diffusion::noise::NoiseSource;
use crate::diffusion::schedule::{NoiseSchedule, VarianceKind};

/// The standard normal noise of timestep index `i` in draw `seed`: [1, 1, 28, 28] values.
pub fn term_noise(seed: u64, i: usize) -> Vec<f32> {
    NoiseSource::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64)).normal(PIXELS)
}

fn images(values: Vec<f32>, n: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, [n, 1, IMAGE_SIZE, IMAGE_SIZE]), device)
}

/// `x0` ([784] in [-1, 1]) repeated once per index, noised to x_t with each index's noise.
fn noised_batch(s: &NoiseSchedule, x0: &[f32], idx: &[usize], seed: u64, device: &Device) -> (Tensor<4>, Tensor<4>, TermBatch) {
    let n = idx.len();
    let x0s = images(idx.iter().flat_map(|_| x0.iter().copied()).collect(), n, device);
    let noise = images(idx.iter().flat_map(|&i| term_noise(seed, i)).collect(), n, device);
    let batch = TermBatch::new(s, x0s.clone(), idx.to_vec(), noise.clone());
    (x0s, noise, batch)
}

fn model_eps(model: &UNet, x_t: Tensor<4>, idx: &[usize], class: usize, device: &Device) -> Tensor<4> {
    let n = idx.len();
    let t: Vec<f32> = idx.iter().map(|&i| (i + 1) as f32).collect();
    let c = Tensor::<1, Int>::from_data(TensorData::new(vec![class as i64; n], [n]), device);
    model.forward(x_t, &t, c)
}

/// The bound's terms at timestep indices `idx` for one image, with the model conditioned on
/// `class` (NULL_CLASS for log p(x)): L_{t-1} (or L_0 at index 0) in nats per image, and the
/// L_simple term ||eps - eps_theta||^2 averaged over pixels, both [n].
pub fn elbo_terms(
    model: &UNet,
    s: &NoiseSchedule,
    variance: VarianceKind,
    x0: &[f32],
    idx: &[usize],
    seed: u64,
    class: usize,
    device: &Device,
) -> (Tensor<1>, Tensor<1>) {
    let mut sweep = elbo_terms_by_variance(model, s, &[variance.into()], x0, idx, seed, class, device);
    (sweep.terms.remove(0).1, sweep.simple)
}

/// One chunk of the bound's sweep under several reverse variances, from one model call.
pub struct TermTensors {
    /// Each asked variance with its terms [n], in nats per image.
    pub terms: Vec<(VarianceChoice, Tensor<1>)>,
    /// L_simple's ||eps - eps_theta||^2 per pixel, [n].
    pub simple: Tensor<1>,
    /// With a variance channel: where Sigma_theta lies between beta_tilde (0) and beta (1) per
    /// pixel, [n, 1, 28, 28].
    pub interpolation: Option<Tensor<4>>,
}

/// [`elbo_terms`] under each of `variances` (the learned one only if the model has a variance
/// channel: asked without one, it is left out).
#[allow(clippy::too_many_arguments)]
pub fn elbo_terms_by_variance(
    model: &UNet,
    s: &NoiseSchedule,
    variances: &[VarianceChoice],
    x0: &[f32],
    idx: &[usize],
    seed: u64,
    class: usize,
    device: &Device,
) -> TermTensors {
    let (_, noise, batch) = noised_batch(s, x0, idx, seed, device);
    let n = idx.len();
    let t: Vec<f32> = idx.iter().map(|&i| (i + 1) as f32).collect();
    let c = Tensor::<1, Int>::from_data(TensorData::new(vec![class as i64; n], [n]), device);
    let (eps, raw) = model.forward_with_variance(batch.x_t.clone(), model.time_embedding(&t, device) + model.class_embedding(c, n));
    let simple = sum_pixels((eps.clone() - noise).powi_scalar(2)).div_scalar(PIXELS as f64);
    let terms = variances
        .iter()
        .filter_map(|&choice| {
            let variance = match (choice.fixed(), &raw) {
                (Some(kind), _) => ReverseVariance::Fixed(kind),
                (None, Some(raw)) => ReverseVariance::Learned(raw.clone()),
                (None, None) => return None,
            };
            Some((choice, batch.terms_with(s, eps.clone(), variance)))
        })
        .collect();
    TermTensors { terms, simple, interpolation: raw.map(interpolation) }
}

/// Where the learned variance lies between beta_tilde_t (0) and beta_t (1) at each t of a chunk:
/// the mean over the image's pixels and the 10th and 90th percentiles.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InterpolationProfile {
    pub mean: Vec<f64>,
    pub low: Vec<f64>,
    pub high: Vec<f64>,
}

impl InterpolationProfile {
    /// From the per-pixel fractions of `n` images ([n * 784] values, image by image).
    pub fn of(values: &[f32], n: usize) -> Self {
        let mut profile = Self { mean: Vec::with_capacity(n), low: Vec::with_capacity(n), high: Vec::with_capacity(n) };
        for image in values.chunks(values.len() / n.max(1)).take(n) {
            let mut sorted: Vec<f64> = image.iter().map(|v| *v as f64).collect();
            sorted.sort_by(f64::total_cmp);
            let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
            profile.mean.push(sorted.iter().sum::<f64>() / sorted.len() as f64);
            profile.low.push(at(0.1));
            profile.high.push(at(0.9));
        }
        profile
    }
}

/// L_T for one image in nats ([1]); needs no model.
pub fn prior_term(s: &NoiseSchedule, x0: &[f32], device: &Device) -> Tensor<1> {
    prior_kl(s, images(x0.to_vec(), 1, device))
}

/// x_t ~ q(x_t | x_0) at index `i` with the draw's noise (Algorithm 1's reparameterisation).
pub fn forward_sample(s: &NoiseSchedule, x0: &[f32], i: usize, seed: u64, device: &Device) -> Tensor<4> {
    q_sample(s, images(x0.to_vec(), 1, device), &[i], images(term_noise(seed, i), 1, device))
}

/// Everything the page shows at one timestep, each [1, 1, 28, 28].
pub struct StepViews {
    pub x0: Tensor<4>,
    pub x_t: Tensor<4>,
    /// The three parameterisations of one network output.
    pub eps: Tensor<4>,
    pub x0_pred: Tensor<4>,
    pub score: Tensor<4>,
    /// mu_theta(x_t, t) computed through each route.
    pub mean_via_eps: Tensor<4>,
    pub mean_via_x0: Tensor<4>,
    pub mean_via_score: Tensor<4>,
    /// E[x_0 | x_t] by Tweedie's formula from the score.
    pub tweedie_x0: Tensor<4>,
    /// The true posterior mean mu_tilde(x_t, x_0) (Eq. 7).
    pub posterior_mean: Tensor<4>,
    /// KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) in nats for t >= 2, -log p(x_0 | x_1) at t = 1; [1].
    pub term: Tensor<1>,
}

pub fn step_views(model: &UNet, s: &NoiseSchedule, variance: VarianceKind, x0: &[f32], i: usize, seed: u64, class: usize, device: &Device) -> StepViews {
    let idx = [i];
    let (x0s, _, batch) = noised_batch(s, x0, &idx, seed, device);
    let x_t = batch.x_t.clone();
    let eps = model_eps(model, x_t.clone(), &idx, class, device);
    let x0_pred = x0_from_eps(s, x_t.clone(), &idx, eps.clone());
    let score = score_from_eps(s, &idx, eps.clone());
    StepViews {
        mean_via_eps: mean_from_eps(s, x_t.clone(), &idx, eps.clone()),
        mean_via_x0: mean_from_x0(s, x_t.clone(), &idx, x0_pred.clone()),
        mean_via_score: mean_from_score(s, x_t.clone(), &idx, score.clone()),
        tweedie_x0: tweedie_x0(s, x_t.clone(), &idx, score.clone()),
        posterior_mean: q_posterior_mean(s, x0s.clone(), x_t.clone(), &idx),
        term: batch.terms(s, eps.clone(), variance),
        x0: x0s,
        x_t,
        eps,
        x0_pred,
        score,
    }
}

/// Root-mean-square error of Tweedie's estimate of x_0 (from the model's score) against the true
/// x_0, at each index of `idx`; [n].
pub fn tweedie_error(model: &UNet, s: &NoiseSchedule, x0: &[f32], idx: &[usize], seed: u64, class: usize, device: &Device) -> Tensor<1> {
    let (x0s, _, batch) = noised_batch(s, x0, idx, seed, device);
    let eps = model_eps(model, batch.x_t.clone(), idx, class, device);
    let estimate = tweedie_x0(s, batch.x_t, idx, score_from_eps(s, idx, eps));
    sum_pixels((estimate - x0s).powi_scalar(2)).div_scalar(PIXELS as f64).sqrt()
}

/// The weight each parameterisation's squared error gets in the bound's L_{t-1} (t >= 2):
/// L_{t-1} = lambda ||target - prediction||^2 + const, for eps, x_0 and the score (Ho et al.
/// Eq. 8 and 12; Luo 2022, Eq. 99, 108, 133). L_simple sets the eps weight to 1 instead.
pub fn loss_weights(s: &NoiseSchedule, variance: VarianceKind, i: usize) -> [f64; 3] {
    let (beta, alpha, ab, ab_prev) = (s.beta[i], s.alpha[i], s.alpha_bar[i], s.alpha_bar_prev[i]);
    let two_sigma2 = 2.0 * s.reverse_variance(variance, i);
    [
        beta * beta / (two_sigma2 * alpha * (1.0 - ab)),
        ab_prev * beta * beta / (two_sigma2 * (1.0 - ab).powi(2)),
        beta * beta / (two_sigma2 * alpha),
    ]
}

/// The schedule quantities the forward-process plot draws, per t: alpha_bar, sqrt(alpha_bar), SNR.
pub fn schedule_curves(s: &NoiseSchedule) -> [Vec<f64>; 3] {
    let all: Vec<usize> = (0..s.timesteps()).collect();
    [gather(&s.alpha_bar, &all), gather(&s.sqrt_alpha_bar, &all), gather(&s.snr, &all)]
}

/// The file, under `www/`, that ships the explainer's example digits.
pub const EXAMPLE_DIGITS_FILE: &str = "digits.json";
/// The restore page's held-out digits (`www/restore-digits.json`, the same format): the first
/// [`RESTORE_DIGITS_PER_LABEL`] held-out digits of each label, label by label.
pub const RESTORE_DIGITS_FILE: &str = "restore-digits.json";
pub const RESTORE_DIGITS_PER_LABEL: usize = 10;

/// A held-out digit shipped with the page (`www/digits.json`), so the explainer needs no dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExampleDigit {
    /// Position in the fixed held-out split (never trained on).
    pub held_out_index: usize,
    pub label: usize,
    /// 28x28 grey levels, 0 = background.
    pub levels: Vec<u8>,
}

impl ExampleDigit {
    /// Model space: level / 127.5 - 1, in [-1, 1] (as the training data).
    pub fn to_model_space(&self) -> Vec<f32> {
        crate::app::image::from_pixels(&self.levels)
    }
}

/// Parse `digits.json`, checking each digit's shape.
pub fn parse_example_digits(json: &str) -> Result<Vec<ExampleDigit>, String> {
    let digits: Vec<ExampleDigit> = serde_json::from_str(json).map_err(|e| format!("digits.json is malformed: {e}"))?;
    if digits.is_empty() {
        return Err("digits.json holds no digits".into());
    }
    for d in &digits {
        if d.levels.len() != PIXELS || d.label > 9 {
            return Err(format!("digits.json: held-out digit {} is not a 28x28 digit 0-9", d.held_out_index));
        }
    }
    Ok(digits)
}

/// A finished ELBO sweep for one image and one noise draw, in bits/dim: what section 2 prints.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ElboSummary {
    /// L_T + every L_{t-1} + L_0.
    pub total_bits: f64,
    pub prior_bits: f64,
    pub decoder_bits: f64,
    /// Sum of L_{t-1} for t > 1.
    pub diffusion_bits: f64,
    /// L_simple: the mean of ||eps - eps_theta||^2 per pixel over t.
    pub simple: f64,
}

/// The sweep's terms (index 0 is L_0, index t-1 is L_{t-1}) and prior in nats per image, summed
/// into bits/dim.
pub fn elbo_summary(term_nats: &[f64], prior_nats: f64, simple: &[f64]) -> ElboSummary {
    let bits: Vec<f64> = term_nats.iter().map(|n| crate::diffusion::elbo::bits_per_dim(*n, PIXELS)).collect();
    let prior_bits = crate::diffusion::elbo::bits_per_dim(prior_nats, PIXELS);
    let sum: f64 = bits.iter().sum();
    ElboSummary {
        total_bits: sum + prior_bits,
        prior_bits,
        decoder_bits: bits.first().copied().unwrap_or(f64::NAN),
        diffusion_bits: sum - bits.first().copied().unwrap_or(0.0),
        simple: simple.iter().sum::<f64>() / simple.len().max(1) as f64,
    }
}

/// A sweep's (or a chunk's) terms under one reverse variance, in nats per image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VarianceTerms {
    pub variance: VarianceChoice,
    pub nats: Vec<f64>,
}

/// An image's bound under one reverse variance, in bits/dim.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VarianceBound {
    pub variance: VarianceChoice,
    pub total_bits: f64,
}

impl VarianceBound {
    /// L_T + every term of the sweep, as [`elbo_summary`] sums them.
    pub fn of(terms: &VarianceTerms, prior_nats: f64) -> Self {
        Self { variance: terms.variance, total_bits: elbo_summary(&terms.nats, prior_nats, &[]).total_bits }
    }
}

/// Partial sums s_k = v_0 + ... + v_k.
pub fn running_sum(values: &[f64]) -> Vec<f64> {
    values.iter().scan(0.0, |sum, v| {
        *sum += v;
        Some(*sum)
    }).collect()
}

/// The ELBO's weight lambda_t on the noise error at each t (NaN at t = 1, where the term is the
/// decoder), and that weight times the error per pixel in bits: lambda_t ||eps - eps_theta||^2
/// is nats per image, so per pixel and in bits it is lambda_t * simple_t / ln 2.
pub fn elbo_weighting(s: &NoiseSchedule, variance: VarianceKind, simple: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let lambda: Vec<f64> = (0..simple.len()).map(|i| if i == 0 { f64::NAN } else { loss_weights(s, variance, i)[0] }).collect();
    let weighted = lambda.iter().zip(simple).map(|(l, e)| l * e / std::f64::consts::LN_2).collect();
    (lambda, weighted)
}

/// Up to `points` timestep indices spread evenly in log t over 1..=T: the small-t end, where
/// Tweedie's estimate is sharp, is resolved.
pub fn log_spaced_indices(total: usize, points: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points)
        .map(|k| ((total as f64).powf(k as f64 / (points.max(2) - 1) as f64).round() as usize).clamp(1, total) - 1)
        .collect();
    idx.dedup();
    idx
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max)
}

pub fn rmse(a: &[f32], b: &[f32]) -> f64 {
    (a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len().max(1) as f64).sqrt()
}

pub fn l2_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt()
}

/// Signed values scaled into [-1, 1] for display, and the scale (their largest magnitude).
pub fn signed_for_display(values: &[f32]) -> (Vec<f32>, f32) {
    let peak = values.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    (values.iter().map(|v| v / peak).collect(), peak)
}
