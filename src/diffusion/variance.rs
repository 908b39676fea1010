//! Learned reverse variances (Improved DDPM, Nichol & Dhariwal 2021, section 3.1, Eq. 15):
//!
//!   Sigma_theta(x_t, t) = exp(v log beta_t + (1 - v) log beta_tilde_t),
//!
//! v read from the network's variance channel per pixel. Both fixed choices of DDPM are the two
//! ends: v = 1 is sigma^2 = beta_t and v = 0 is sigma^2 = beta_tilde_t (with beta_tilde_1 clipped
//! to beta_tilde_2, as every log-variance here). As in the paper's code the channel's raw output
//! r is mapped to v = (r + 1) / 2 and not clamped: the interpolation may leave [beta_tilde, beta].

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::diffusion::process::{gather, scale};
use crate::diffusion::schedule::{NoiseSchedule, VarianceKind};

/// The fraction v of the way from log beta_tilde_t to log beta_t for the channel's raw output.
pub fn interpolation(raw: Tensor<4>) -> Tensor<4> {
    raw.add_scalar(1.0).mul_scalar(0.5)
}

/// log Sigma_theta per pixel at the indices `idx` (one per sample) for the channel's raw output.
pub fn learned_log_variance(s: &NoiseSchedule, idx: &[usize], raw: Tensor<4>) -> Tensor<4> {
    let max_log: Vec<f64> = idx.iter().map(|&i| s.beta[i].ln()).collect();
    let min_log = gather(&s.posterior_log_variance_clipped, idx);
    let span: Vec<f64> = max_log.iter().zip(&min_log).map(|(max, min)| max - min).collect();
    let v = interpolation(raw);
    let floor = scale(v.ones_like(), &min_log);
    scale(v, &span) + floor
}

/// Where a log-variance lies between the fixed choices at index `i`: 0 at log beta_tilde_i, 1 at
/// log beta_i (the inverse of [`learned_log_variance`]: v back from log Sigma_theta).
pub fn fraction_of_the_way(s: &NoiseSchedule, i: usize, log_variance: f64) -> f64 {
    let (max, min) = (s.beta[i].ln(), s.posterior_log_variance_clipped[i]);
    (log_variance - min) / (max - min)
}

/// The reverse variance a bound or a sampler uses: one of DDPM's fixed choices or the network's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceChoice {
    /// sigma_t^2 = beta_t.
    Beta,
    /// sigma_t^2 = beta_tilde_t.
    BetaTilde,
    /// sigma_t^2 = Sigma_theta(x_t, t), from the variance channel.
    Learned,
}

impl VarianceChoice {
    pub const ALL: [VarianceChoice; 3] = [VarianceChoice::Beta, VarianceChoice::BetaTilde, VarianceChoice::Learned];

    /// The fixed choice, or `None` for the learned one.
    pub fn fixed(self) -> Option<VarianceKind> {
        match self {
            VarianceChoice::Beta => Some(VarianceKind::Beta),
            VarianceChoice::BetaTilde => Some(VarianceKind::BetaTilde),
            VarianceChoice::Learned => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            VarianceChoice::Beta => "σ² = β",
            VarianceChoice::BetaTilde => "σ² = β̃",
            VarianceChoice::Learned => "learned Σ_θ",
        }
    }
}

impl From<VarianceKind> for VarianceChoice {
    fn from(kind: VarianceKind) -> Self {
        match kind {
            VarianceKind::Beta => VarianceChoice::Beta,
            VarianceKind::BetaTilde => VarianceChoice::BetaTilde,
        }
    }
}
