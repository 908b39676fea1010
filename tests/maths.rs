//! Every diffusion formula against its closed form or a Monte-Carlo estimate, on Burn's CPU
//! backend (the same tensor code the browser runs).
#![cfg(not(target_family = "wasm"))]

use burn::tensor::{DType, Device, Tensor, TensorData};
use ddpm_web::app::config::DdpmConfig;
use ddpm_web::diffusion::process::*;
use ddpm_web::diffusion::elbo::*;
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::diffusion::schedule::{NoiseSchedule, ScheduleKind, VarianceKind};

fn dev() -> Device {
    Device::flex()
}

fn linear() -> NoiseSchedule {
    NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 1000)
}

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), &dev())
}

fn read(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn read_f64(t: Tensor<4>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn read1(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max)
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), host-side reference.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

#[test]
fn q_sample_moments_match_closed_form_over_1e5_draws() {
    let s = linear();
    let draws = 100_000;
    let x0_values = [-1.0f32, -0.3, 0.5, 1.0];
    let mut rng = NoiseSource::new(7);
    for &i in &[0usize, 99, 499, 999] {
        let x0: Vec<f32> = (0..draws).flat_map(|_| x0_values).collect();
        let x0 = tensor(x0, [draws, 1, 1, 4]);
        let noise = rng.tensor([draws, 1, 1, 4], &dev());
        let x_t = read(q_sample(&s, x0, &vec![i; draws], noise));
        for (k, &v) in x0_values.iter().enumerate() {
            let samples: Vec<f64> = x_t.iter().skip(k).step_by(4).map(|&x| x as f64).collect();
            let mean = samples.iter().sum::<f64>() / draws as f64;
            let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (draws - 1) as f64;
            let want_mean = s.sqrt_alpha_bar[i] * v as f64;
            let want_var = 1.0 - s.alpha_bar[i];
            // 5 standard errors of the mean and of the variance.
            let se_mean = (want_var / draws as f64).sqrt();
            let se_var = want_var * (2.0 / draws as f64).sqrt();
            assert!((mean - want_mean).abs() < 5.0 * se_mean, "t={}: mean {mean} vs {want_mean}", i + 1);
            assert!((var - want_var).abs() < 5.0 * se_var + 1e-9, "t={}: var {var} vs {want_var}", i + 1);
        }
    }
}

#[test]
fn posterior_equals_bayes_rule_on_gaussians() {
    // q(x_{t-1} | x_0) = N(sqrt(ab_prev) x_0, 1 - ab_prev), q(x_t | x_{t-1}) = N(sqrt(alpha) x_{t-1}, beta).
    // Their product, normalised in x_{t-1}, is Gaussian with precision 1/(1 - ab_prev) + alpha/beta.
    for kind in [ScheduleKind::DDPM_LINEAR, ScheduleKind::COSINE] {
        let s = NoiseSchedule::new(kind, 1000);
        for &i in &[1usize, 2, 10, 250, 500, 998] {
            let (x0, x_t) = (0.37f64, -1.21f64);
            let ab_prev = s.alpha_bar[i - 1];
            let precision = 1.0 / (1.0 - ab_prev) + s.alpha[i] / s.beta[i];
            let var = 1.0 / precision;
            let mean = var * (ab_prev.sqrt() * x0 / (1.0 - ab_prev) + s.alpha[i].sqrt() * x_t / s.beta[i]);
            assert!((s.posterior_variance[i] - var).abs() <= 1e-10 * var, "t={}", i + 1);
            let got = read(q_posterior_mean(&s, tensor(vec![x0 as f32], [1, 1, 1, 1]), tensor(vec![x_t as f32], [1, 1, 1, 1]), &[i]))[0];
            assert!((got as f64 - mean).abs() < 1e-5, "t={}: {got} vs {mean}", i + 1);
        }
    }
}

#[test]
fn posterior_matches_monte_carlo_conditioning() {
    // Draw (x_{t-1}, x_t) from the forward chain for a fixed x_0 and regress x_{t-1} on x_t:
    // the linear fit's slope/intercept and residual variance are the posterior's.
    let s = linear();
    let i = 300;
    let n = 200_000;
    let x0 = 0.6f64;
    let mut rng = NoiseSource::new(11);
    let z1 = rng.normal(n);
    let z2 = rng.normal(n);
    let prev: Vec<f64> = z1.iter().map(|z| s.sqrt_alpha_bar[i - 1] * x0 + (1.0 - s.alpha_bar[i - 1]).sqrt() * *z as f64).collect();
    let cur: Vec<f64> = prev.iter().zip(&z2).map(|(p, z)| s.alpha[i].sqrt() * p + s.beta[i].sqrt() * *z as f64).collect();
    let (mp, mc) = (prev.iter().sum::<f64>() / n as f64, cur.iter().sum::<f64>() / n as f64);
    let cov: f64 = prev.iter().zip(&cur).map(|(p, c)| (p - mp) * (c - mc)).sum::<f64>() / n as f64;
    let var_c: f64 = cur.iter().map(|c| (c - mc).powi(2)).sum::<f64>() / n as f64;
    let slope = cov / var_c;
    let intercept = mp - slope * mc;
    let resid: f64 = prev.iter().zip(&cur).map(|(p, c)| (p - intercept - slope * c).powi(2)).sum::<f64>() / n as f64;
    assert!((slope - s.posterior_mean_coef2[i]).abs() < 0.01, "slope {slope} vs {}", s.posterior_mean_coef2[i]);
    assert!((intercept - s.posterior_mean_coef1[i] * x0).abs() < 0.01, "intercept {intercept}");
    assert!((resid / s.posterior_variance[i] - 1.0).abs() < 0.02, "variance {resid} vs {}", s.posterior_variance[i]);
}

#[test]
fn eps_x0_and_score_conversions_invert_each_other() {
    let s = linear();
    let mut rng = NoiseSource::new(3);
    let n = 8;
    let idx: Vec<usize> = (0..n).map(|k| k * 120 + 5).collect();
    let x_t = rng.tensor([n, 1, 4, 4], &dev());
    let eps = rng.tensor([n, 1, 4, 4], &dev());
    let x0 = x0_from_eps(&s, x_t.clone(), &idx, eps.clone());
    let back = eps_from_x0(&s, x_t.clone(), &idx, x0.clone());
    assert!(max_abs_diff(&read(back), &read(eps.clone())) < 1e-3);
    let score = score_from_eps(&s, &idx, eps.clone());
    assert!(max_abs_diff(&read(eps_from_score(&s, &idx, score.clone())), &read(eps.clone())) < 1e-6);
    // Tweedie's formula applied to the score recovers the same x_0 estimate.
    let tweedie = read(tweedie_x0(&s, x_t.clone(), &idx, score.clone()));
    let x0v = read(x0);
    let scale = x0v.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    assert!(max_abs_diff(&tweedie, &x0v) < 1e-5 * scale);
    // score = -eps / sqrt(1 - alpha_bar) exactly, per sample.
    let (sv, ev) = (read(score), read(eps));
    for (k, &i) in idx.iter().enumerate() {
        for j in 0..16 {
            let want = -ev[k * 16 + j] as f64 / s.sqrt_one_minus_alpha_bar[i];
            assert!((sv[k * 16 + j] as f64 - want).abs() < 1e-5 * want.abs().max(1.0));
        }
    }
}

#[test]
fn three_parameterisations_give_the_same_reverse_mean() {
    // The identity is exact: checked in f64 to 1e-6 at every t of both schedules. In f32 the x_0
    // route is ill-conditioned where alpha_bar_t -> 0 (x_0 = x_t / sqrt(alpha_bar_t) reaches ~2e4
    // at t = T on the cosine schedule), so there the agreement is relative to |x_0|.
    for kind in [ScheduleKind::DDPM_LINEAR, ScheduleKind::COSINE] {
        let s = NoiseSchedule::new(kind, 1000);
        let mut rng = NoiseSource::new(5);
        let n = 10;
        let idx: Vec<usize> = (0..n).map(|k| k * 111).chain([999]).collect();
        let n = idx.len();
        for dtype in [DType::F64, DType::F32] {
            let x_t = rng.tensor([n, 1, 8, 8], &dev()).cast(dtype);
            let eps = rng.tensor([n, 1, 8, 8], &dev()).cast(dtype);
            let via_eps = read_f64(mean_from_eps(&s, x_t.clone(), &idx, eps.clone()));
            let x0 = x0_from_eps(&s, x_t.clone(), &idx, eps.clone());
            let x0_scale = read_f64(x0.clone()).iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let via_x0 = read_f64(mean_from_x0(&s, x_t.clone(), &idx, x0));
            let via_score = read_f64(mean_from_score(&s, x_t.clone(), &idx, score_from_eps(&s, &idx, eps)));
            let diff = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            let (d1, d2) = (diff(&via_eps, &via_x0), diff(&via_eps, &via_score));
            let tol = if dtype == DType::F64 { 1e-6 } else { 1e-6 * x0_scale };
            assert!(d1 < tol && d2 < tol, "{} {dtype:?}: eps-vs-x0 {d1:e}, eps-vs-score {d2:e}, tolerance {tol:e}", kind.name());
        }
    }
}

#[test]
fn gaussian_kl_matches_closed_form_and_monte_carlo() {
    let cases = [(0.3f64, -1.0f64, -0.2f64, 0.5f64), (0.0, 0.0, 0.0, 0.0), (1.5, -4.0, 1.2, -3.0)];
    for (m1, lv1, m2, lv2) in cases {
        let kl = read(normal_kl(tensor(vec![m1 as f32], [1, 1, 1, 1]), &[lv1], tensor(vec![m2 as f32], [1, 1, 1, 1]), &[lv2]))[0] as f64;
        let closed = 0.5 * (lv2 - lv1 + (lv1 - lv2).exp() + (m1 - m2).powi(2) / lv2.exp() - 1.0);
        assert!((kl - closed).abs() < 1e-5, "{kl} vs {closed}");
        // Monte Carlo: E_{x ~ N1}[log N1(x) - log N2(x)].
        let mut rng = NoiseSource::new(9);
        let draws = 200_000;
        let (s1, s2) = ((0.5 * lv1).exp(), (0.5 * lv2).exp());
        let logn = |x: f64, m: f64, lv: f64| -0.5 * (lv + (x - m).powi(2) / lv.exp() + (2.0 * std::f64::consts::PI).ln());
        let vals: Vec<f64> = rng.normal(draws).iter().map(|z| {
            let x = m1 + s1 * *z as f64;
            logn(x, m1, lv1) - logn(x, m2, lv2)
        }).collect();
        let mc = vals.iter().sum::<f64>() / draws as f64;
        let sd = (vals.iter().map(|v| (v - mc).powi(2)).sum::<f64>() / draws as f64).sqrt();
        assert!((mc - closed).abs() < 5.0 * sd / (draws as f64).sqrt() + 1e-9, "MC {mc} vs {closed} (sd {sd}, s2 {s2})");
    }
}

#[test]
fn prior_term_l_t_is_negligible_for_the_linear_schedule() {
    let s = linear();
    let ab = s.alpha_bar[999];
    // Closed form per dimension: 0.5 * (ab * x0^2 + (1 - ab) - 1 - ln(1 - ab)).
    let per_dim = |x0: f64| 0.5 * (ab * x0 * x0 - ab - (1.0 - ab).ln());
    // Worst case, a pixel at +-1: about 2.9e-5 bits/dim (DDPM's "~1e-5" is for natural images).
    let ones = read1(prior_kl(&s, tensor(vec![-1.0; 784], [1, 1, 28, 28])))[0] as f64;
    assert!((ones - 784.0 * per_dim(1.0)).abs() < 1e-3 * ones, "{ones} vs {}", 784.0 * per_dim(1.0));
    assert!(bits_per_dim(ones, 784) < 3e-5);
    // Data with E[x0^2] = 1/3 (uniform on [-1, 1], like natural images): below 1e-5 bits/dim.
    let mut rng = NoiseSource::new(1);
    let x: Vec<f32> = (0..784).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect();
    let want: f64 = x.iter().map(|&v| per_dim(v as f64)).sum();
    let got = read1(prior_kl(&s, tensor(x, [1, 1, 28, 28])))[0] as f64;
    assert!((got - want).abs() < 1e-2 * want);
    assert!(bits_per_dim(got, 784) < 1e-5, "L_T = {} bits/dim", bits_per_dim(got, 784));
}

#[test]
fn discretized_decoder_sums_to_one_over_256_bins() {
    for (mean, log_scale) in [(0.0f32, -2.0f64), (0.8, -4.9), (-0.95, -1.0), (0.1, 0.5)] {
        let levels: Vec<f32> = (0..256).map(|k| k as f32 / 127.5 - 1.0).collect();
        let x = tensor(levels.clone(), [256, 1, 1, 1]);
        let m = tensor(vec![mean; 256], [256, 1, 1, 1]);
        let logp = read(discretized_gaussian_log_likelihood(x, m, &vec![log_scale; 256]));
        let total: f64 = logp.iter().map(|l| (*l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "mean {mean}, log sigma {log_scale}: sum {total}");
        // An interior bin equals the CDF difference over [x - 1/255, x + 1/255].
        let sigma = log_scale.exp();
        let k = 140usize;
        let cdf = |z: f64| 0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2));
        let x = levels[k] as f64;
        let want = cdf((x + BIN_HALF_WIDTH - mean as f64) / sigma) - cdf((x - BIN_HALF_WIDTH - mean as f64) / sigma);
        let got = (logp[k] as f64).exp();
        assert!((got - want).abs() < 1e-5 + 1e-3 * want, "bin {k}: {got} vs {want}");
    }
}

#[test]
fn ddim_with_eta_one_and_every_step_is_the_ddpm_step() {
    let s = linear();
    let mut rng = NoiseSource::new(21);
    for &i in &[1usize, 10, 500, 999] {
        let sigma2 = ddim_sigma(&s, i, Some(i - 1), 1.0).powi(2);
        assert!((sigma2 - s.posterior_variance[i]).abs() < 1e-12 * s.posterior_variance[i].max(1e-12) + 1e-15, "t={}", i + 1);
        let x_t = rng.tensor([2, 1, 4, 4], &dev());
        let eps = rng.tensor([2, 1, 4, 4], &dev());
        let ddim = ddim_step(&s, x_t.clone(), i, Some(i - 1), eps.clone(), 1.0, false, None);
        let ddpm = ddpm_step(&s, x_t, i, eps, VarianceKind::BetaTilde, false, None);
        let d = max_abs_diff(&read(ddim.x_prev), &read(ddpm.x_prev));
        assert!(d < 1e-4, "t={}: means differ by {d}", i + 1);
    }
    // eta = 0 is deterministic and the final step lands on the predicted x_0.
    assert_eq!(ddim_sigma(&s, 500, Some(480), 0.0), 0.0);
    let x_t = rng.tensor([1, 1, 4, 4], &dev());
    let eps = rng.tensor([1, 1, 4, 4], &dev());
    let last = ddim_step(&s, x_t, 0, None, eps, 0.0, false, None);
    assert!(max_abs_diff(&read(last.x_prev), &read(last.x0_pred)) < 1e-6);
}

#[test]
fn ddpm_step_adds_sigma_times_noise_and_none_at_t1() {
    let s = linear();
    let mut rng = NoiseSource::new(4);
    let x_t = rng.tensor([1, 1, 4, 4], &dev());
    let eps = rng.tensor([1, 1, 4, 4], &dev());
    let z = rng.tensor([1, 1, 4, 4], &dev());
    for variance in [VarianceKind::Beta, VarianceKind::BetaTilde] {
        let i = 400;
        let mean = read(ddpm_step(&s, x_t.clone(), i, eps.clone(), variance, false, None).x_prev);
        let noisy = read(ddpm_step(&s, x_t.clone(), i, eps.clone(), variance, false, Some(z.clone())).x_prev);
        let zv = read(z.clone());
        let sigma = s.reverse_variance(variance, i).sqrt();
        for k in 0..16 {
            assert!(((noisy[k] - mean[k]) as f64 - sigma * zv[k] as f64).abs() < 1e-5);
        }
        // At t = 1 no noise is added (Algorithm 2, line 3).
        let last = read(ddpm_step(&s, x_t.clone(), 0, eps.clone(), variance, false, Some(z.clone())).x_prev);
        let last_mean = read(ddpm_step(&s, x_t.clone(), 0, eps.clone(), variance, false, None).x_prev);
        assert_eq!(last, last_mean);
    }
}

#[test]
fn x0_clipping_bounds_the_estimate_and_is_inert_when_nothing_clips() {
    let s = linear();
    let mut rng = NoiseSource::new(8);
    let x_t = rng.tensor([2, 1, 4, 4], &dev()).mul_scalar(3.0);
    let eps = rng.tensor([2, 1, 4, 4], &dev());
    let clipped = ddpm_step(&s, x_t.clone(), 900, eps.clone(), VarianceKind::Beta, true, None);
    assert!(read(clipped.x0_pred).iter().all(|v| (-1.0..=1.0).contains(v)));
    // At small t x_0 = x_t - tiny * eps; with |x_t| < 0.5 nothing clips.
    let small = rng.tensor([2, 1, 4, 4], &dev()).mul_scalar(0.1);
    let a = read(ddpm_step(&s, small.clone(), 3, eps.clone(), VarianceKind::Beta, true, None).x_prev);
    let b = read(ddpm_step(&s, small, 3, eps, VarianceKind::Beta, false, None).x_prev);
    assert!(max_abs_diff(&a, &b) < 1e-5);
}

#[test]
fn classifier_free_guidance_formula() {
    let mut rng = NoiseSource::new(2);
    let c = rng.tensor([1, 1, 2, 2], &dev());
    let u = rng.tensor([1, 1, 2, 2], &dev());
    let (cv, uv) = (read(c.clone()), read(u.clone()));
    for w in [0.0f64, 1.0, 3.5] {
        let g = read(guided_eps(c.clone(), u.clone(), w));
        for k in 0..4 {
            let want = (1.0 + w) * cv[k] as f64 - w * uv[k] as f64;
            assert!((g[k] as f64 - want).abs() < 1e-5);
        }
    }
}

#[test]
fn elbo_terms_with_an_oracle_denoiser_reduce_to_closed_forms() {
    // With the true noise as the prediction, mu_theta equals the posterior mean, so
    // L_{t-1} is only the variance mismatch: 0 for sigma^2 = beta_tilde, and
    // 0.5 * (ln(beta / beta_tilde) + beta_tilde / beta - 1) per pixel for sigma^2 = beta.
    let s = linear();
    let mut rng = NoiseSource::new(12);
    let n = 6;
    let idx = vec![0usize, 1, 5, 100, 600, 999];
    let x0: Vec<f32> = (0..n * 16).map(|k| ((k * 37 % 256) as f32) / 127.5 - 1.0).collect();
    let x0 = tensor(x0, [n, 1, 4, 4]);
    let noise = rng.tensor([n, 1, 4, 4], &dev());
    let batch = TermBatch::new(&s, x0, idx.clone(), noise.clone());
    let small = read1(batch.terms(&s, noise.clone(), VarianceKind::BetaTilde));
    let large = read1(batch.terms(&s, noise, VarianceKind::Beta));
    for (k, &i) in idx.iter().enumerate().skip(1) {
        assert!(small[k].abs() < 1e-3, "t={}: {}", i + 1, small[k]);
        let r = s.posterior_variance[i] / s.beta[i];
        let want = 16.0 * 0.5 * (-r.ln() + r - 1.0);
        assert!((large[k] as f64 - want).abs() < 1e-3 * want.max(1e-2), "t={}: {} vs {want}", i + 1, large[k]);
    }
    // t = 1: the decoder is centred on x_0 (coef1 = 1, coef2 = 0 at t = 1), so each pixel's
    // probability is the mass of N(0, sigma_1^2) within half a bin: erf(h / (sigma sqrt 2)),
    // except at the edges (x = -1 or 1), where it is Phi(h / sigma).
    let sigma = (0.5 * s.posterior_log_variance_clipped[0]).exp();
    let x0v = read(batch.x0.clone());
    let want: f64 = x0v[..16]
        .iter()
        .map(|&x| {
            let h = BIN_HALF_WIDTH / sigma;
            let p = if x.abs() > 0.999 { 0.5 * (1.0 + erf(h / std::f64::consts::SQRT_2)) } else { erf(h / std::f64::consts::SQRT_2) };
            -p.ln()
        })
        .sum();
    assert!((small[0] as f64 - want).abs() < 1e-3 * want, "L_0 {} vs {want}", small[0]);
}

/// The default guidance interval is Kynkäänniemi et al.'s (2024) sigma in (0.28, 5.42] on this
/// schedule: each end is the t whose sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) is nearest.
#[test]
fn the_default_guidance_interval_is_the_sigma_interval_of_kynkaanniemi_et_al() {
    let cfg = DdpmConfig::default();
    let schedule = cfg.schedule();
    // sigma_t = 1 / sqrt(SNR_t) = exp(-lambda_t).
    let sigma = |t: usize| (-schedule.half_log_snr(t - 1)).exp();
    let nearest = |target: f64| (1..=cfg.timesteps).min_by(|&a, &b| (sigma(a) - target).abs().total_cmp(&(sigma(b) - target).abs())).unwrap();
    let interval = cfg.guidance_interval.expect("the default guides in an interval");
    assert_eq!((interval.first, interval.last), (nearest(0.28), nearest(5.42)));
    // sigma_t from alpha_bar_t directly, at both ends.
    let alpha_bar = |t: usize| (0..t).map(|i| 1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / 999.0)).product::<f64>();
    for t in [interval.first, interval.last] {
        assert!((sigma(t) - ((1.0 - alpha_bar(t)) / alpha_bar(t)).sqrt()).abs() < 1e-9 * sigma(t), "t = {t}");
    }
}

#[test]
fn the_classifier_score_runs_from_one_to_the_number_of_classes() {
    use ddpm_web::diffusion::metrics::classifier_score;
    // Every image read with certainty, each class equally often: KL = ln 10 for each, score 10.
    let confident: Vec<Vec<f32>> = (0..50).map(|k| (0..10).map(|c| if c == k % 10 { 1.0 } else { 0.0 }).collect()).collect();
    assert!((classifier_score(&confident) - 10.0).abs() < 1e-9);
    // Every image read the same way (however unsure): p(y | x) = p(y), KL = 0, score 1.
    let same: Vec<Vec<f32>> = vec![vec![0.5, 0.2, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.005, 0.005]; 20];
    assert!((classifier_score(&same) - 1.0).abs() < 1e-6);
    // Certain, but only two classes used equally: the score is 2.
    let two: Vec<Vec<f32>> = (0..40).map(|k| (0..10).map(|c| if c == k % 2 { 1.0 } else { 0.0 }).collect()).collect();
    assert!((classifier_score(&two) - 2.0).abs() < 1e-9);
    // A closed form in between: half the images certain of class 0, half uniform. p(y) = (0.55,
    // 0.05, ...): KL of the certain rows ln(1 / 0.55), of the uniform rows
    // 0.1 ln(0.1 / 0.55) + 0.9 ln(0.1 / 0.05).
    let mut mixed: Vec<Vec<f32>> = vec![(0..10).map(|c| if c == 0 { 1.0 } else { 0.0 }).collect(); 10];
    mixed.extend(vec![vec![0.1; 10]; 10]);
    let expected = (0.5 * (1.0f64 / 0.55).ln() + 0.5 * (0.1 * (0.1f64 / 0.55).ln() + 0.9 * 2.0f64.ln())).exp();
    assert!((classifier_score(&mixed) - expected).abs() < 1e-6, "{} vs {expected}", classifier_score(&mixed));
}

#[test]
fn a_stray_marks_onset_is_the_start_of_its_last_unbroken_run() {
    use ddpm_web::native::stray::{has_stray_mark, onset_steps};
    // Image 0 ends marked after a clean step 2: onset step 3. Image 1 ends clean: no onset.
    // Image 2 is marked throughout: onset step 0.
    let marked = vec![vec![true, false, false, true, true], vec![true, true, false, false, false], vec![true; 5]];
    assert_eq!(onset_steps(&marked), vec![3, 0]);
    // One stroke is no mark; a second blob of two pixels is; a single speck is not.
    let mut image = vec![-1.0f32; 784];
    for y in 5..20 {
        image[y * 28 + 10] = 1.0;
    }
    assert!(!has_stray_mark(&image));
    image[3 * 28 + 24] = 1.0;
    assert!(!has_stray_mark(&image), "a single speck");
    image[3 * 28 + 25] = 1.0;
    assert!(has_stray_mark(&image), "a two-pixel blob beside the stroke");
}
