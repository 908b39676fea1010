//! The explainer's computations natively: the loss weight each parameterisation implies against
//! the KL it comes from, the draw-by-(seed, t) noise that lets any subset of t reproduce the full
//! sweep, Tweedie's estimate against the predicted x_0, the shipped example digits, and the ELBO
//! terms of the shipped weights recorded in `tests/fixtures/explainer-elbo.json` (the browser test
//! checks the page's WebGPU and CPU computations against that file).
//! `DDPM_UPDATE_FIXTURES=1 cargo test --test explain` rewrites the fixture.
#![cfg(not(target_family = "wasm"))]

use std::path::Path;

use burn::tensor::{DType, Tensor, TensorData};
use ddpm_web::app::config::DdpmConfig;
use ddpm_web::diffusion::process::{mean_from_eps, mean_from_score, mean_from_x0, q_posterior_mean, q_sample, score_from_eps};
use ddpm_web::diffusion::elbo::{normal_kl, sum_pixels};
use ddpm_web::explain::compute::*;
use ddpm_web::nets::unet::{NULL_CLASS, UNet};
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::diffusion::schedule::VarianceKind;
use ddpm_web::diffusion::variance::VarianceChoice;
use ddpm_web::app::weights::VARIANCE_FILE;
use serde::{Deserialize, Serialize};

mod common;
use common::{dev, max_abs_diff, read, read as read4};

fn image64(values: Vec<f32>) -> Tensor<4> {
    let values: Vec<f64> = values.into_iter().map(f64::from).collect();
    Tensor::from_data(TensorData::new(values, [1, 1, 28, 28]), (&dev(), DType::F64))
}


#[test]
fn each_parameterisation_weight_turns_its_squared_error_into_the_kl() {
    let cfg = DdpmConfig::default();
    let s = cfg.schedule();
    let mut rng = NoiseSource::new(11);
    for variance in [VarianceKind::Beta, VarianceKind::BetaTilde] {
        for i in [1usize, 10, 300, 999] {
            // In f64, so that even the tiny mean shifts at t = T are measured exactly.
            let x0 = image64(rng.normal(784).iter().map(|v| v.clamp(-1.0, 1.0)).collect());
            let noise = image64(rng.normal(784));
            let delta = rng.normal(784).iter().map(|v| v * 0.05).collect::<Vec<_>>();
            let x_t = q_sample(&s, x0.clone(), &[i], noise.clone());
            let true_mean = q_posterior_mean(&s, x0.clone(), x_t.clone(), &[i]);
            let logvar = [s.reverse_log_variance(variance, i)];
            // The KL's mean part: ||mu_tilde - mu_theta||^2 / (2 sigma^2), with the variance parts cancelling.
            let kl_mean_part = |mean: Tensor<4>| {
                sum_pixels(normal_kl(true_mean.clone(), &logvar, mean, &logvar)).into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
            };
            let d2: f64 = delta.iter().map(|d| (*d as f64).powi(2)).sum();
            let [w_eps, w_x0, w_score] = loss_weights(&s, variance, i);
            let eps_route = kl_mean_part(mean_from_eps(&s, x_t.clone(), &[i], noise.clone() + image64(delta.clone())));
            let x0_route = kl_mean_part(mean_from_x0(&s, x_t.clone(), &[i], x0.clone() + image64(delta.clone())));
            let true_score = score_from_eps(&s, &[i], noise.clone());
            let score_route = kl_mean_part(mean_from_score(&s, x_t.clone(), &[i], true_score + image64(delta.clone())));
            for (name, got, want) in [("eps", eps_route, w_eps * d2), ("x0", x0_route, w_x0 * d2), ("score", score_route, w_score * d2)] {
                assert!((got - want).abs() <= 1e-8 * want, "{variance:?} t={}: {name} route KL {got} vs weight x error {want}", i + 1);
            }
        }
    }
}

#[test]
fn loss_weights_match_the_papers_closed_forms() {
    let s = DdpmConfig::default().schedule();
    // With sigma^2 = beta_tilde, the eps weight is beta / (2 alpha (1 - alpha_bar_{t-1})) (Ho et al. Eq. 12).
    for i in [1usize, 50, 999] {
        let [w_eps, w_x0, w_score] = loss_weights(&s, VarianceKind::BetaTilde, i);
        let want = s.beta[i] / (2.0 * s.alpha[i] * (1.0 - s.alpha_bar_prev[i]));
        assert!((w_eps / want - 1.0).abs() < 1e-9, "t={}: {w_eps} vs {want}", i + 1);
        // x_0 weight = eps weight * SNR_t (x_0 error = eps error * sqrt(1-ab)/sqrt(ab)), score weight = eps weight * (1 - ab).
        assert!((w_x0 / (w_eps * s.snr[i]) - 1.0).abs() < 1e-9);
        assert!((w_score / (w_eps * (1.0 - s.alpha_bar[i])) - 1.0).abs() < 1e-9);
    }
}

#[test]
fn any_subset_of_timesteps_reproduces_the_full_sweep_terms() {
    let cfg = DdpmConfig::default();
    let s = cfg.schedule();
    let model = UNet::init_seeded(&cfg.model, 3, &dev());
    let x0: Vec<f32> = NoiseSource::new(1).normal(784).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    let all: Vec<usize> = (0..12).collect();
    let (full, full_simple) = elbo_terms(&model, &s, cfg.variance, &x0, &all, 5, NULL_CLASS, &dev());
    let (part, part_simple) = elbo_terms(&model, &s, cfg.variance, &x0, &[7, 0, 3], 5, NULL_CLASS, &dev());
    let (full, full_simple, part, part_simple) = (read(full), read(full_simple), read(part), read(part_simple));
    for (k, &i) in [7usize, 0, 3].iter().enumerate() {
        assert!((part[k] - full[i]).abs() <= 1e-4 * full[i].abs(), "t={}: {} vs {}", i + 1, part[k], full[i]);
        assert!((part_simple[k] - full_simple[i]).abs() <= 1e-5 * full_simple[i].abs());
    }
    // Another draw gives other noise.
    let (other, _) = elbo_terms(&model, &s, cfg.variance, &x0, &[7], 6, NULL_CLASS, &dev());
    assert_ne!(read(other)[0], part[0]);
}

#[test]
fn tweedie_estimate_equals_the_predicted_x0_and_routes_agree() {
    let cfg = DdpmConfig::default();
    let s = cfg.schedule();
    let model = UNet::init_seeded(&cfg.model, 3, &dev());
    let x0: Vec<f32> = NoiseSource::new(2).normal(784).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    for i in [0usize, 99, 499, 998] {
        let v = step_views(&model, &s, cfg.variance, &x0, i, 9, 4, &dev());
        let x0_pred = read4(v.x0_pred);
        let scale = x0_pred.iter().fold(1.0f32, |m, x| m.max(x.abs()));
        assert!(max_abs_diff(&read4(v.tweedie_x0), &x0_pred) <= 1e-5 * scale, "t={}", i + 1);
        let m = read4(v.mean_via_eps);
        assert!(max_abs_diff(&m, &read4(v.mean_via_x0)) < 1e-5, "t={}: x0 route", i + 1);
        assert!(max_abs_diff(&m, &read4(v.mean_via_score)) < 1e-5, "t={}: score route", i + 1);
    }
    // Tweedie's error curve is the RMSE of that estimate against the true x_0.
    let v = step_views(&model, &s, cfg.variance, &x0, 99, 9, 4, &dev());
    let rmse = (read4(v.tweedie_x0).iter().zip(&x0).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / 784.0).sqrt();
    let curve = read(tweedie_error(&model, &s, &x0, &[0, 99], 9, 4, &dev()));
    assert!((curve[1] as f64 - rmse).abs() < 1e-5 * rmse.max(1.0), "{} vs {rmse}", curve[1]);
}

#[test]
fn shipped_example_digits_are_held_out_digits() {
    let digits = parse_example_digits(&std::fs::read_to_string(Path::new("www").join(EXAMPLE_DIGITS_FILE)).unwrap()).unwrap();
    assert_eq!(digits.iter().map(|d| d.label).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    let all = ddpm_web::native::data::load_mnist(Path::new(ddpm_web::native::data::DEFAULT_CACHE)).expect("run scripts/fetch-data.sh");
    let (train, held_out) = ddpm_web::native::data::split(&all);
    for d in &digits {
        assert_eq!(held_out[d.held_out_index].pixels, d.levels, "digit {} is not held-out digit {}", d.label, d.held_out_index);
        assert!(train.iter().all(|t| t.pixels != d.levels), "digit {} is also a training digit", d.label);
    }
    // The restore page's: ten of each label, label by label, each held out and never trained on.
    let restore = parse_example_digits(&std::fs::read_to_string(Path::new("www").join(RESTORE_DIGITS_FILE)).unwrap()).unwrap();
    assert_eq!(restore.len(), 10 * RESTORE_DIGITS_PER_LABEL);
    for (k, d) in restore.iter().enumerate() {
        assert_eq!(d.label, k / RESTORE_DIGITS_PER_LABEL, "restore digit {k}");
        assert_eq!(held_out[d.held_out_index].pixels, d.levels, "restore digit {k} is not held-out digit {}", d.held_out_index);
        assert!(train.iter().all(|t| t.pixels != d.levels), "restore digit {k} is also a training digit");
    }
    let distinct: std::collections::HashSet<usize> = restore.iter().map(|d| d.held_out_index).collect();
    assert_eq!(distinct.len(), restore.len(), "a restore digit is repeated");
    assert!(parse_example_digits("[]").is_err());
    assert!(parse_example_digits(r#"[{"held_out_index":0,"label":3,"levels":[1,2]}]"#).unwrap_err().contains("28x28"));
}

/// The ELBO terms of a shipped example digit under the shipped weights: what the browser must reproduce.
#[derive(Debug, Serialize, Deserialize)]
pub struct ElboFixture {
    /// The U-Net the terms were computed with: new weights need a new fixture.
    pub weights_sha256: String,
    pub digit: usize,
    pub seed: u64,
    pub indices: Vec<usize>,
    pub terms_nats: Vec<f32>,
    pub simple: Vec<f32>,
    pub prior_nats: f32,
    /// The same terms with the shipped variance channel's Sigma_theta, and that channel's SHA-256.
    pub learned_terms_nats: Vec<f32>,
    pub variance_sha256: String,
}

const FIXTURE: &str = "tests/fixtures/explainer-elbo.json";

#[test]
fn shipped_weights_elbo_terms_match_the_browser_fixture() {
    let (manifest, model, _) = common::shipped_models();
    let digits = parse_example_digits(&std::fs::read_to_string(Path::new("www").join(EXAMPLE_DIGITS_FILE)).unwrap()).unwrap();
    let (digit, seed) = (7usize, 2024u64);
    let indices: Vec<usize> = vec![0, 1, 2, 5, 10, 50, 100, 250, 500, 750, 900, 999];
    let s = manifest.config.schedule();
    let x0 = digits[digit].to_model_space();
    let (terms, simple) = elbo_terms(&model, &s, manifest.config.variance, &x0, &indices, seed, NULL_CLASS, &dev());
    let learned = elbo_terms_by_variance(&model, &s, &[VarianceChoice::Learned], &x0, &indices, seed, NULL_CLASS, &dev());
    assert_eq!(learned.terms.len(), 1, "the shipped weights have a variance channel");
    let now = ElboFixture {
        weights_sha256: common::shipped_unet_sha256(),
        digit,
        seed,
        indices,
        terms_nats: read(terms),
        simple: read(simple),
        prior_nats: read(prior_term(&s, &x0, &dev()))[0],
        learned_terms_nats: read(learned.terms.into_iter().next().unwrap().1),
        variance_sha256: manifest.file(VARIANCE_FILE).unwrap().sha256.clone(),
    };
    if std::env::var("DDPM_UPDATE_FIXTURES").is_ok() {
        std::fs::create_dir_all("tests/fixtures").unwrap();
        std::fs::write(FIXTURE, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
    }
    let fixture: ElboFixture = serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("DDPM_UPDATE_FIXTURES=1 writes it")).unwrap();
    assert_eq!(fixture.weights_sha256, now.weights_sha256, "the fixture was written with other weights: rewrite it");
    assert_eq!(fixture.variance_sha256, now.variance_sha256, "the fixture was written with another variance channel: rewrite it");
    assert_eq!((fixture.digit, fixture.seed, &fixture.indices), (now.digit, now.seed, &now.indices));
    use common::tolerance::{ELBO_TERM, SIMPLE_TERM};
    let stale = |e: String| panic!("{e} (the ELBO's maths changed? rewrite the fixture)");
    for (k, (a, b)) in now.terms_nats.iter().zip(&fixture.terms_nats).enumerate() {
        ELBO_TERM.check_one(&format!("term at t={}", now.indices[k] + 1), *a, *b).unwrap_or_else(stale);
    }
    for (k, (a, b)) in now.learned_terms_nats.iter().zip(&fixture.learned_terms_nats).enumerate() {
        ELBO_TERM.check_one(&format!("learned-variance term at t={}", now.indices[k] + 1), *a, *b).unwrap_or_else(stale);
    }
    SIMPLE_TERM.check("L_simple", &now.simple, &fixture.simple).unwrap_or_else(stale);
    ELBO_TERM.check_one("L_T", now.prior_nats, fixture.prior_nats).unwrap_or_else(stale);
    // Sanity: the decoder term is a -log likelihood over 784 pixels, the rest are KLs (>= 0).
    assert!(now.terms_nats.iter().chain(&now.learned_terms_nats).all(|v| *v >= 0.0 && v.is_finite()));
}

/// The explainer's summaries against hand computations: the bound is the sum of its terms in
/// bits/dim (nats / (784 ln 2)), the running sum ends at that sum, lambda_t times the error is
/// what the KL's mean part pays, and the Tweedie timesteps are log-spaced and unique.
#[test]
fn elbo_summary_running_sum_and_weighting_are_the_sums_they_claim() {
    let nats = vec![500.0, 20.0, 10.0, 1.0];
    let simple = vec![0.5, 0.25, 0.1, 0.05];
    let s = ddpm_web::explain::compute::elbo_summary(&nats, 3.0, &simple);
    let bits = |n: f64| n / (784.0 * std::f64::consts::LN_2);
    assert!((s.total_bits - bits(534.0)).abs() < 1e-12);
    assert!((s.decoder_bits - bits(500.0)).abs() < 1e-12 && (s.diffusion_bits - bits(31.0)).abs() < 1e-12);
    assert!((s.prior_bits - bits(3.0)).abs() < 1e-12 && (s.simple - 0.225).abs() < 1e-12);
    assert_eq!(ddpm_web::explain::compute::running_sum(&[1.0, 2.0, 3.5]), vec![1.0, 3.0, 6.5]);
    let schedule = DdpmConfig::default().schedule();
    let (lambda, weighted) = ddpm_web::explain::compute::elbo_weighting(&schedule, VarianceKind::Beta, &simple);
    assert!(lambda[0].is_nan());
    for i in 1..4 {
        assert_eq!(lambda[i], loss_weights(&schedule, VarianceKind::Beta, i)[0]);
        assert!((weighted[i] - lambda[i] * simple[i] / std::f64::consts::LN_2).abs() < 1e-15);
    }
    let idx = ddpm_web::explain::compute::log_spaced_indices(1000, 25);
    assert_eq!((idx[0], *idx.last().unwrap()), (0, 999));
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
    // Log spacing: about as many points below t = 32 as above it.
    let below = idx.iter().filter(|&&i| i < 31).count();
    assert!((10..=15).contains(&below), "{below} of {} below t = 32", idx.len());
    assert!((ddpm_web::explain::compute::rmse(&[0.0, 0.0], &[3.0, 4.0]) - 12.5f64.sqrt()).abs() < 1e-12);
    assert_eq!(ddpm_web::explain::compute::l2_distance(&[0.0, 0.0], &[3.0, 4.0]), 5.0);
    assert_eq!(ddpm_web::explain::compute::max_abs_diff(&[1.0, -2.0], &[1.5, 2.0]), 4.0);
    let (shown, peak) = ddpm_web::explain::compute::signed_for_display(&[-2.0, 1.0]);
    assert_eq!((shown, peak), (vec![-1.0, 0.5], 2.0));
}

/// The 2-D mixture's raster is its density (darkest where q_t peaks), and Tweedie's field equals
/// the closed-form score over the arrow grid.
#[test]
fn toy_density_raster_and_field_error() {
    let m = ddpm_web::toy::mixture::Mixture2d::example();
    let size = 48;
    let rgba = m.density_rgba(0.5, size);
    assert_eq!(rgba.len(), size * size * 4);
    let darkest = (0..size * size).min_by_key(|&k| rgba[4 * k]).unwrap();
    let x = |k: usize| {
        let e = ddpm_web::toy::mixture::EXTENT;
        [-e + ((k % size) as f64 + 0.5) / size as f64 * 2.0 * e, e - ((k / size) as f64 + 0.5) / size as f64 * 2.0 * e]
    };
    let best = (0..size * size).max_by(|&a, &b| m.log_density(x(a), 0.5).total_cmp(&m.log_density(x(b), 0.5))).unwrap();
    assert_eq!(rgba[4 * darkest], rgba[4 * best], "the darkest pixel is where the density peaks");
    assert!(rgba.chunks(4).all(|p| p[2] == 255 && p[3] == 255));
    for a in [0.999, 0.5, 0.01] {
        assert!(m.tweedie_field_error(a) < 1e-8, "alpha_bar {a}: {}", m.tweedie_field_error(a));
    }
}
