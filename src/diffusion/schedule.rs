//! Noise schedules and every coefficient derived from them, computed on the host in f64.
//!
//! Index convention: arrays are indexed by `i = t - 1` for the paper's t = 1..=T, so `beta[0]`
//! is beta_1 and `alpha_bar[T - 1]` is alpha_bar_T. `alpha_bar_prev[i]` is alpha_bar_{t-1}, with
//! alpha_bar_0 = 1.
//!
//! Equation numbers refer to Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM),
//! and Nichol & Dhariwal 2021, "Improved DDPM" (cosine schedule).

use serde::{Deserialize, Serialize};

/// Which beta schedule to use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleKind {
    /// beta_t linear from `beta_start` to `beta_end` (DDPM section 4: 1e-4 to 0.02, T = 1000).
    Linear { beta_start: f64, beta_end: f64 },
    /// alpha_bar_t = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2) (Improved DDPM Eq. 17),
    /// betas clipped at 0.999.
    Cosine { s: f64 },
}

impl ScheduleKind {
    pub const DDPM_LINEAR: ScheduleKind = ScheduleKind::Linear { beta_start: 1e-4, beta_end: 0.02 };
    pub const COSINE: ScheduleKind = ScheduleKind::Cosine { s: 0.008 };

    pub fn name(&self) -> &'static str {
        match self {
            ScheduleKind::Linear { .. } => "linear",
            ScheduleKind::Cosine { .. } => "cosine",
        }
    }
}

/// A noise schedule with all quantities the forward process, the posterior and the sampler need.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub kind: ScheduleKind,
    /// beta_t, the forward process variances (Eq. 2).
    pub beta: Vec<f64>,
    /// alpha_t = 1 - beta_t.
    pub alpha: Vec<f64>,
    /// alpha_bar_t = prod_{s <= t} alpha_s (Eq. 4).
    pub alpha_bar: Vec<f64>,
    /// alpha_bar_{t-1}, with alpha_bar_0 = 1.
    pub alpha_bar_prev: Vec<f64>,
    pub sqrt_alpha_bar: Vec<f64>,
    pub sqrt_one_minus_alpha_bar: Vec<f64>,
    /// 1 / sqrt(alpha_bar_t), used to recover x_0 from eps (Eq. 15 rearranged).
    pub sqrt_recip_alpha_bar: Vec<f64>,
    /// sqrt(1 / alpha_bar_t - 1).
    pub sqrt_recipm1_alpha_bar: Vec<f64>,
    /// 1 / sqrt(alpha_t), the prefactor of the reverse mean (Eq. 11).
    pub sqrt_recip_alpha: Vec<f64>,
    /// beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t (Eq. 7).
    pub posterior_variance: Vec<f64>,
    /// log beta_tilde_t, with the t = 1 value (which is log 0) replaced by t = 2's.
    pub posterior_log_variance_clipped: Vec<f64>,
    /// Coefficient of x_0 in the posterior mean mu_tilde_t (Eq. 7).
    pub posterior_mean_coef1: Vec<f64>,
    /// Coefficient of x_t in the posterior mean mu_tilde_t (Eq. 7).
    pub posterior_mean_coef2: Vec<f64>,
    /// Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021, VDM).
    pub snr: Vec<f64>,
}

/// The reverse-process variance sigma_t^2 (DDPM section 3.2: both choices give similar samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceKind {
    /// sigma_t^2 = beta_t ("fixed large"; optimal for x_0 ~ N(0, I)).
    Beta,
    /// sigma_t^2 = beta_tilde_t ("fixed small"; optimal for a deterministic x_0).
    BetaTilde,
}

impl NoiseSchedule {
    pub fn new(kind: ScheduleKind, timesteps: usize) -> Self {
        assert!(timesteps >= 2, "a schedule needs at least 2 steps, got {timesteps}");
        let beta: Vec<f64> = match kind {
            ScheduleKind::Linear { beta_start, beta_end } => (0..timesteps)
                .map(|i| beta_start + (beta_end - beta_start) * i as f64 / (timesteps - 1) as f64)
                .collect(),
            ScheduleKind::Cosine { s } => {
                let f = |t: f64| {
                    let x = (t / timesteps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2;
                    x.cos().powi(2)
                };
                (0..timesteps)
                    .map(|i| (1.0 - f((i + 1) as f64) / f(i as f64)).min(0.999))
                    .collect()
            }
        };
        Self::from_betas(kind, beta)
    }

    fn from_betas(kind: ScheduleKind, beta: Vec<f64>) -> Self {
        let alpha: Vec<f64> = beta.iter().map(|b| 1.0 - b).collect();
        let mut alpha_bar = Vec::with_capacity(beta.len());
        let mut prod = 1.0;
        for a in &alpha {
            prod *= a;
            alpha_bar.push(prod);
        }
        let alpha_bar_prev: Vec<f64> =
            std::iter::once(1.0).chain(alpha_bar[..alpha_bar.len() - 1].iter().copied()).collect();
        let map = |f: &dyn Fn(usize) -> f64| (0..beta.len()).map(f).collect::<Vec<f64>>();
        let posterior_variance =
            map(&|i| beta[i] * (1.0 - alpha_bar_prev[i]) / (1.0 - alpha_bar[i]));
        let posterior_log_variance_clipped =
            map(&|i| posterior_variance[if i == 0 { 1 } else { i }].ln());
        Self {
            kind,
            sqrt_alpha_bar: map(&|i| alpha_bar[i].sqrt()),
            sqrt_one_minus_alpha_bar: map(&|i| (1.0 - alpha_bar[i]).sqrt()),
            sqrt_recip_alpha_bar: map(&|i| 1.0 / alpha_bar[i].sqrt()),
            sqrt_recipm1_alpha_bar: map(&|i| (1.0 / alpha_bar[i] - 1.0).sqrt()),
            sqrt_recip_alpha: map(&|i| 1.0 / alpha[i].sqrt()),
            posterior_mean_coef1: map(&|i| {
                beta[i] * alpha_bar_prev[i].sqrt() / (1.0 - alpha_bar[i])
            }),
            posterior_mean_coef2: map(&|i| {
                (1.0 - alpha_bar_prev[i]) * alpha[i].sqrt() / (1.0 - alpha_bar[i])
            }),
            snr: map(&|i| alpha_bar[i] / (1.0 - alpha_bar[i])),
            posterior_variance,
            posterior_log_variance_clipped,
            alpha_bar_prev,
            alpha_bar,
            alpha,
            beta,
        }
    }

    /// T, the number of diffusion steps.
    pub fn timesteps(&self) -> usize {
        self.beta.len()
    }

    /// sigma_t^2 of the reverse process at index `i` (t = i + 1).
    pub fn reverse_variance(&self, variance: VarianceKind, i: usize) -> f64 {
        match variance {
            VarianceKind::Beta => self.beta[i],
            VarianceKind::BetaTilde => self.posterior_variance[i],
        }
    }

    /// log sigma_t^2 as used by the likelihood terms: for beta_tilde the t = 1 value is the
    /// clipped one (beta_tilde_1 = 0); for beta the t = 1 value is beta_tilde_2 as in the DDPM code,
    /// so the decoder L_0 is the same for both.
    pub fn reverse_log_variance(&self, variance: VarianceKind, i: usize) -> f64 {
        match (variance, i) {
            (_, 0) | (VarianceKind::BetaTilde, _) => self.posterior_log_variance_clipped[i],
            (VarianceKind::Beta, _) => self.beta[i].ln(),
        }
    }

    /// lambda_t = log(alpha_t / sigma_t) = log(SNR_t) / 2 with alpha_t = sqrt(alpha_bar_t) and
    /// sigma_t = sqrt(1 - alpha_bar_t): the time variable DPM-Solver steps in (Lu et al. 2022, Eq. 4).
    pub fn half_log_snr(&self, i: usize) -> f64 {
        0.5 * self.snr[i].ln()
    }

    /// `steps` distinct timestep indices, descending from T-1 to 0, evenly spaced in
    /// lambda = log(SNR) / 2 (each the index nearest its lambda, moved up where the low-noise end
    /// would repeat one, so that a run makes exactly `steps` network evaluations): the spacing
    /// DPM-Solver recommends for low resolutions (Lu et al. 2022, section 3.3), where equal steps in
    /// t would cross most of lambda's range in the last one.
    pub fn log_snr_timesteps(&self, steps: usize) -> Vec<usize> {
        let t = self.timesteps();
        assert!((1..=t).contains(&steps), "steps must be in 1..={t}, got {steps}");
        if steps == 1 {
            return vec![t - 1];
        }
        let lambda: Vec<f64> = (0..t).map(|i| self.half_log_snr(i)).collect();
        let (lo, hi) = (lambda[t - 1], lambda[0]);
        // lambda falls as the index grows: find the nearest index by bisection.
        let nearest = |target: f64| {
            let above = lambda.partition_point(|&l| l > target).min(t - 1);
            if above > 0 && (lambda[above - 1] - target).abs() < (lambda[above] - target).abs() { above - 1 } else { above }
        };
        // Position k keeps room for the steps on either side of it: its index lies in
        // [steps - 1 - k, T - 1 - k], and then lifting repeats keeps it there.
        let mut seq: Vec<usize> = (0..steps)
            .map(|k| nearest(lo + (hi - lo) * k as f64 / (steps - 1) as f64).clamp(steps - 1 - k, t - 1 - k))
            .collect();
        for k in (0..steps - 1).rev() {
            seq[k] = seq[k].max(seq[k + 1] + 1);
        }
        seq
    }

    /// An evenly spaced subsequence of `steps` timestep indices, descending, ending at index 0
    /// (DDIM section 4.2, "uniform" skip). `steps == T` gives every index.
    pub fn ddim_timesteps(&self, steps: usize) -> Vec<usize> {
        let t = self.timesteps();
        assert!((1..=t).contains(&steps), "DDIM steps must be in 1..={t}, got {steps}");
        // Spread `steps` indices over [0, T-1] with the first at 0 and the last at T-1 (when steps > 1).
        let mut seq: Vec<usize> = (0..steps)
            .map(|k| if steps == 1 { t - 1 } else { (k * (t - 1) + (steps - 1) / 2) / (steps - 1) })
            .collect();
        seq.dedup();
        seq.reverse();
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_endpoints_and_monotone() {
        let s = NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 1000);
        assert!((s.beta[0] - 1e-4).abs() < 1e-15);
        assert!((s.beta[999] - 0.02).abs() < 1e-15);
        // alpha_bar_T = prod(1 - beta) in closed form via logs: ln = sum ln(1 - beta_t).
        let ln: f64 = s.beta.iter().map(|b| (1.0 - b).ln()).sum();
        assert!((s.alpha_bar[999] - ln.exp()).abs() < 1e-12);
        assert!((s.alpha_bar[999] - 4.036e-5).abs() < 1e-7, "alpha_bar_T = {}", s.alpha_bar[999]);
        assert!(s.alpha_bar.windows(2).all(|w| w[1] < w[0]));
        assert!(s.snr.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn cosine_schedule_matches_its_closed_form_alpha_bar() {
        let t_max = 1000;
        let s = NoiseSchedule::new(ScheduleKind::COSINE, t_max);
        let f = |t: f64| ((t / t_max as f64 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
        for i in [0usize, 1, 10, 500, 900, 990] {
            let want = f((i + 1) as f64) / f(0.0);
            assert!((s.alpha_bar[i] - want).abs() < 1e-12, "i={i}: {} vs {want}", s.alpha_bar[i]);
        }
        assert!(s.beta.iter().all(|&b| b > 0.0 && b <= 0.999));
        assert!((s.beta[999] - 0.999).abs() < 1e-12, "the last beta is clipped");
    }

    #[test]
    fn derived_coefficients_are_consistent() {
        for kind in [ScheduleKind::DDPM_LINEAR, ScheduleKind::COSINE] {
            let s = NoiseSchedule::new(kind, 1000);
            for i in 0..1000 {
                let ab = s.alpha_bar[i];
                assert!((s.sqrt_alpha_bar[i].powi(2) - ab).abs() < 1e-12);
                assert!((s.sqrt_one_minus_alpha_bar[i].powi(2) + ab - 1.0).abs() < 1e-12);
                assert!((s.sqrt_recip_alpha_bar[i] * s.sqrt_alpha_bar[i] - 1.0).abs() < 1e-12);
                assert!((s.sqrt_recipm1_alpha_bar[i].powi(2) - (1.0 - ab) / ab).abs() < 1e-6 * (1.0 - ab) / ab);
                assert!((s.snr[i] - ab / (1.0 - ab)).abs() <= 1e-12 * s.snr[i].max(1.0));
                let prev = if i == 0 { 1.0 } else { s.alpha_bar[i - 1] };
                assert_eq!(s.alpha_bar_prev[i], prev);
                // Eq. 7: beta_tilde <= beta, equality only in the limit.
                assert!(s.posterior_variance[i] <= s.beta[i]);
                // Posterior mean coefficients: mu_tilde(x_0 = x_t = x) for the stationary point.
                let c1 = s.beta[i] * prev.sqrt() / (1.0 - ab);
                let c2 = (1.0 - prev) * s.alpha[i].sqrt() / (1.0 - ab);
                assert!((s.posterior_mean_coef1[i] - c1).abs() < 1e-15);
                assert!((s.posterior_mean_coef2[i] - c2).abs() < 1e-15);
            }
            assert_eq!(s.posterior_variance[0], 0.0);
            assert_eq!(s.posterior_log_variance_clipped[0], s.posterior_variance[1].ln());
        }
    }

    #[test]
    fn ddim_subsequence_is_descending_and_covers_both_ends() {
        let s = NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 1000);
        for steps in [1usize, 2, 10, 50, 999, 1000] {
            let seq = s.ddim_timesteps(steps);
            assert_eq!(seq.len(), steps);
            assert!(seq.windows(2).all(|w| w[0] > w[1]));
            assert_eq!(seq[0], 999);
            if steps > 1 {
                assert_eq!(*seq.last().unwrap(), 0);
            }
        }
        assert_eq!(s.ddim_timesteps(1000), (0..1000).rev().collect::<Vec<_>>());
    }
}
