//! Learned reverse variances (Improved DDPM): the bound's terms against a Monte-Carlo estimate and
//! against the fixed choices they interpolate, L_hybrid's stop-gradient, and a tiny training run.
#![cfg(not(target_family = "wasm"))]

mod common;

use burn::module::Module;
use burn::optim::AdamConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{dev, read};
use ddpm_web::diffusion::elbo::{ReverseVariance, TermBatch, discretized_gaussian_log_likelihood, sum_pixels};
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::diffusion::objective::{HYBRID_LAMBDA, descend, hybrid_loss, mse, vlb_estimate};
use ddpm_web::diffusion::process::{mean_from_eps, q_posterior_mean, q_sample};
use ddpm_web::diffusion::schedule::{NoiseSchedule, ScheduleKind, VarianceKind};
use ddpm_web::diffusion::variance::{fraction_of_the_way, learned_log_variance};
use ddpm_web::nets::unet::{UNet, UNetConfig, VarianceHead};

fn linear() -> NoiseSchedule {
    NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 1000)
}

fn tensor(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// x_0 on the 8-bit grid (with both edge levels), noise, a wrong eps and raw variances.
fn batch(idx: &[usize], raw_range: f32) -> (NoiseSchedule, TermBatch, Tensor<4>, Tensor<4>) {
    let s = linear();
    let n = idx.len();
    let mut rng = NoiseSource::new(5);
    let levels: Vec<f32> = (0..n * 16).map(|k| [0.0f32, 255.0, (k * 37 % 256) as f32][k % 3] / 127.5 - 1.0).collect();
    let x0 = tensor(levels, [n, 1, 4, 4], &dev());
    let noise = rng.tensor([n, 1, 4, 4], &dev());
    let wrong_eps = noise.clone() + rng.tensor([n, 1, 4, 4], &dev()).mul_scalar(0.3);
    let raw: Vec<f32> = (0..n * 16).map(|_| raw_range * (2.0 * rng.uniform() as f32 - 1.0)).collect();
    let batch = TermBatch::new(&s, x0, idx.to_vec(), noise);
    (s, batch, wrong_eps, tensor(raw, [n, 1, 4, 4], &dev()))
}

#[test]
fn the_learned_variance_kl_term_matches_a_monte_carlo_estimate() {
    // L_{t-1} = E_q[log q(x_{t-1} | x_t, x_0) - log p_theta(x_{t-1} | x_t)], estimated from draws of q.
    let idx = [1usize, 10, 200, 900];
    let (s, batch, eps, raw) = batch(&idx, 1.5);
    let exact = read(batch.terms_with(&s, eps.clone(), ReverseVariance::Learned(raw.clone())));
    let true_mean = read(q_posterior_mean(&s, batch.x0.clone(), batch.x_t.clone(), &idx));
    let model_mean = read(mean_from_eps(&s, batch.x_t.clone(), &idx, eps));
    let model_logvar = read(learned_log_variance(&s, &idx, raw));
    let mut rng = NoiseSource::new(77);
    let draws = 20_000;
    for (k, &i) in idx.iter().enumerate() {
        let q_std = s.posterior_variance[i].sqrt();
        let log_normal = |x: f64, mean: f64, logvar: f64| -0.5 * ((x - mean).powi(2) / logvar.exp() + logvar + (2.0 * std::f64::consts::PI).ln());
        let mut sum = 0.0;
        let mut sum_sq = 0.0;
        for _ in 0..draws {
            let z = rng.normal(16);
            let mut log_ratio = 0.0;
            for p in 0..16 {
                let (mq, mp, lp) = (true_mean[k * 16 + p] as f64, model_mean[k * 16 + p] as f64, model_logvar[k * 16 + p] as f64);
                let x = mq + q_std * z[p] as f64;
                log_ratio += log_normal(x, mq, s.posterior_variance[i].ln()) - log_normal(x, mp, lp);
            }
            sum += log_ratio;
            sum_sq += log_ratio * log_ratio;
        }
        let mean = sum / draws as f64;
        let standard_error = ((sum_sq / draws as f64 - mean * mean) / draws as f64).sqrt();
        let got = exact[k] as f64;
        assert!(
            (got - mean).abs() < 4.0 * standard_error + 1e-4 * mean.abs(),
            "t = {}: closed form {got} vs Monte Carlo {mean} ± {standard_error}",
            i + 1
        );
    }
}

#[test]
fn v_one_and_v_zero_are_the_fixed_variances() {
    let idx = [0usize, 1, 5, 100, 600, 999];
    let (s, batch, eps, raw) = batch(&idx, 1.0);
    let learned = |r: f32| read(batch.terms_with(&s, eps.clone(), ReverseVariance::Learned(raw.ones_like().mul_scalar(r))));
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
    // v = 0 (raw -1) is sigma^2 = beta_tilde at every t, the decoder included.
    let (v0, small) = (learned(-1.0), read(batch.terms(&s, eps.clone(), VarianceKind::BetaTilde)));
    for k in 0..idx.len() {
        assert!(close(v0[k], small[k]), "t = {}: v = 0 gives {} , beta_tilde {}", idx[k] + 1, v0[k], small[k]);
    }
    // v = 1 (raw +1) is sigma^2 = beta for t >= 2; at t = 1 it is a decoder of variance beta_1
    // (the fixed choices both use the clipped beta_tilde there).
    let (v1, large) = (learned(1.0), read(batch.terms(&s, eps.clone(), VarianceKind::Beta)));
    for k in 1..idx.len() {
        assert!(close(v1[k], large[k]), "t = {}: v = 1 gives {}, beta {}", idx[k] + 1, v1[k], large[k]);
    }
    let mean = mean_from_eps(&s, batch.x_t.clone(), &idx, eps);
    let log_scale = vec![0.5 * s.beta[0].ln(); idx.len()];
    let decoder = read(sum_pixels(discretized_gaussian_log_likelihood(batch.x0.clone(), mean, &log_scale).neg()));
    assert!(close(v1[0], decoder[0]), "t = 1: v = 1 gives {}, a beta_1 decoder {}", v1[0], decoder[0]);
    // The interpolation and its inverse, to the f32 rounding of a log-variance over the span
    // between the two choices (which narrows to 1e-3 at large t, where beta_tilde ~ beta).
    let logvar = read(learned_log_variance(&s, &idx, raw.clone()));
    let raw = read(raw);
    for (k, &i) in idx.iter().enumerate() {
        let p = k * 16 + 3;
        let back = fraction_of_the_way(&s, i, logvar[p] as f64);
        let span = s.beta[i].ln() - s.posterior_log_variance_clipped[i];
        let tolerance = 4.0 * f32::EPSILON as f64 * (logvar[p] as f64).abs() / span;
        assert!((back - (raw[p] as f64 + 1.0) / 2.0).abs() < tolerance, "t = {}: v {back} from raw {}", i + 1, raw[p]);
    }
}

#[test]
fn the_hybrid_loss_reaches_the_mean_only_through_l_simple() {
    let s = linear();
    let idx = [0usize, 3, 40, 500];
    let ad = dev().autodiff();
    let mut rng = NoiseSource::new(9);
    let shape = [4, 1, 4, 4];
    let x0 = tensor((0..64).map(|k| ((k * 53 % 256) as f32) / 127.5 - 1.0).collect(), shape, &ad);
    let noise = rng.tensor(shape, &dev());
    let noise = Tensor::<4>::from_data(noise.into_data(), &ad);
    let eps_values = read(rng.tensor(shape, &dev()));
    let raw_values: Vec<f32> = (0..64).map(|_| rng.uniform() as f32 - 0.5).collect();
    let leaf = |v: &[f32]| tensor(v.to_vec(), shape, &ad).require_grad();

    let (eps, raw) = (leaf(&eps_values), leaf(&raw_values));
    let (hybrid, _) = hybrid_loss(&s, x0.clone(), noise.clone(), &idx, eps.clone(), raw.clone());
    let grads = hybrid.backward();
    let (g_eps, g_raw) = (read(eps.grad(&grads).unwrap()), read(raw.grad(&grads).unwrap()));

    let eps_alone = leaf(&eps_values);
    let simple_grads = mse(eps_alone.clone(), noise.clone()).backward();
    let g_simple = read(eps_alone.grad(&simple_grads).unwrap());
    for (a, b) in g_eps.iter().zip(&g_simple) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "the mean's gradient {a} is not L_simple's {b}");
    }

    let raw_alone = leaf(&raw_values);
    let x_t = q_sample(&s, x0.clone(), &idx, noise.clone());
    let vlb_grads = vlb_estimate(&s, x0, x_t, &idx, leaf(&eps_values), raw_alone.clone()).mean().backward();
    let g_vlb = read(raw_alone.grad(&vlb_grads).unwrap());
    assert!(g_vlb.iter().any(|g| g.abs() > 1e-3), "L_vlb moves the variance");
    // Equal to f32 rounding on the scale of the largest gradient.
    let largest = g_vlb.iter().fold(0.0f32, |m, g| m.max(g.abs())) * HYBRID_LAMBDA as f32;
    for (a, b) in g_raw.iter().zip(&g_vlb) {
        let want = HYBRID_LAMBDA as f32 * b;
        assert!((a - want).abs() <= 1e-5 * largest, "the variance's gradient {a} is not lambda L_vlb's {want}");
    }
}

#[test]
fn a_tiny_hybrid_training_run_lowers_the_bound_and_beats_the_fixed_variance() {
    let s = linear();
    let ad = dev().autodiff();
    let cfg = UNetConfig { channels: [8, 8, 8], emb_dim: 16, groups: 4, attention_heads: 2 };
    let mut model = UNet::init_seeded(&cfg, 3, &ad).with_variance_head(VarianceHead::new(&cfg, &ad));
    let mut optimizer = AdamConfig::new().init();
    // Eight fixed digits-like images: a bright bar at a different place in each.
    let image = |k: usize| -> Vec<f32> { (0..784).map(|p| if (p % 28) / 3 == k || (p / 28) / 3 == k { 1.0 } else { -1.0 }).collect() };
    let run = |model: &UNet, idx: &[usize], seed: u64, device: &Device| {
        let n = idx.len();
        let x0 = tensor(idx.iter().enumerate().flat_map(|(k, _)| image(k % 8)).collect(), [n, 1, 28, 28], device);
        let noise = tensor(NoiseSource::new(seed).normal(n * 784), [n, 1, 28, 28], device);
        let x_t = q_sample(&s, x0.clone(), idx, noise.clone());
        let t: Vec<f32> = idx.iter().map(|&i| (i + 1) as f32).collect();
        let class = Tensor::<1, Int>::from_data(TensorData::new(vec![10i64; n], [n]), device);
        let emb = model.time_embedding(&t, device) + model.class_embedding(class, n);
        let (eps, raw) = model.forward_with_variance(x_t.clone(), emb);
        (x0, noise, x_t, eps, raw.expect("the model has a variance channel"))
    };
    // The bound's estimate on a fixed evaluation batch, with the learned and the fixed-small variance.
    let evaluation: Vec<usize> = (0..16).map(|k| k * 62).collect();
    let bound = |model: &UNet| {
        let valid = model.valid();
        let (x0, _, x_t, eps, raw) = run(&valid, &evaluation, 1, &dev());
        let learned = read(vlb_estimate(&s, x0.clone(), x_t.clone(), &evaluation, eps.clone(), raw).mean())[0];
        let batch = TermBatch { x0, idx: evaluation.clone(), x_t };
        let fixed = read(batch.terms_with(&s, eps, ReverseVariance::Fixed(VarianceKind::BetaTilde)).mean())[0]
            * 1000.0 / (784.0 * std::f32::consts::LN_2);
        (learned, fixed)
    };
    let (before, fixed_before) = bound(&model);
    assert!((before - fixed_before).abs() <= 1e-4 * fixed_before, "a fresh channel is beta_tilde: {before} vs {fixed_before}");
    let mut rng = NoiseSource::new(2);
    for step in 0..60 {
        let idx: Vec<usize> = (0..16).map(|_| rng.index(0..1000)).collect();
        let (x0, noise, _, eps, raw) = run(&model, &idx, 100 + step, &ad);
        let (loss, _) = hybrid_loss(&s, x0, noise, &idx, eps, raw);
        model = descend(model, &mut optimizer, loss, 3e-3);
    }
    let (after, fixed_after) = bound(&model);
    assert!(after < 0.9 * before, "L_vlb {before} -> {after} bits/dim");
    assert!(after < fixed_after, "the learned variance's bound {after} is below beta_tilde's {fixed_after}");
}

#[test]
fn ddpm_with_the_learned_variance_steps_with_sigma_theta() {
    use ddpm_web::diffusion::process::{ddpm_step, ddpm_step_learned};
    use ddpm_web::diffusion::sampling::{ClassChoice, Method, SampleSettings, Sampler};
    use ddpm_web::diffusion::variance::VarianceChoice;
    let s = linear();
    let mut rng = NoiseSource::new(4);
    let (x_t, eps, z) = (rng.tensor([2, 1, 4, 4], &dev()), rng.tensor([2, 1, 4, 4], &dev()), rng.tensor([2, 1, 4, 4], &dev()));
    let close = |a: Tensor<4>, b: Tensor<4>| common::max_abs_diff(&read(a), &read(b));
    for i in [1usize, 30, 700] {
        // v = 1 and v = 0 are the fixed choices' steps.
        for (raw, kind) in [(1.0f32, VarianceKind::Beta), (-1.0, VarianceKind::BetaTilde)] {
            let learned = ddpm_step_learned(&s, x_t.clone(), i, eps.clone(), learned_log_variance(&s, &[i, i], x_t.ones_like().mul_scalar(raw)), true, Some(z.clone()));
            let fixed = ddpm_step(&s, x_t.clone(), i, eps.clone(), kind, true, Some(z.clone()));
            assert!(close(learned.x_prev, fixed.x_prev) < 1e-6, "t = {}, v = {}", i + 1, (raw + 1.0) / 2.0);
        }
        // In between, each pixel's noise is scaled by its own sigma.
        let raw = tensor((0..32).map(|k| k as f32 / 16.0 - 1.0).collect(), [2, 1, 4, 4], &dev());
        let mean = ddpm_step(&s, x_t.clone(), i, eps.clone(), VarianceKind::Beta, true, None).x_prev;
        let stepped = ddpm_step_learned(&s, x_t.clone(), i, eps.clone(), learned_log_variance(&s, &[i, i], raw.clone()), true, Some(z.clone())).x_prev;
        let (mean, stepped, z, raw) = (read(mean), read(stepped), read(z.clone()), read(raw));
        for p in 0..32 {
            let v = (raw[p] as f64 + 1.0) / 2.0;
            let sigma = (0.5 * (v * s.beta[i].ln() + (1.0 - v) * s.posterior_log_variance_clipped[i])).exp();
            let want = mean[p] as f64 + sigma * z[p] as f64;
            assert!((stepped[p] as f64 - want).abs() < 1e-5, "t = {}, pixel {p}: {} vs {want}", i + 1, stepped[p]);
        }
    }
    // The sampler hands the variance channel's output to the step: a fresh channel (v = 0) draws
    // exactly the sigma^2 = beta_tilde trajectory, guided as the page's runs are.
    let cfg = UNetConfig { channels: [8, 8, 8], emb_dim: 16, groups: 4, attention_heads: 2 };
    let model = UNet::init_seeded(&cfg, 6, &dev()).with_variance_head(VarianceHead::new(&cfg, &dev()));
    let schedule = NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 40);
    let run = |variance: VarianceChoice| {
        let settings = SampleSettings { class: ClassChoice::Digit(4), guidance: 2.0, guidance_interval: None, method: Method::Ddpm { variance }, seed: 8, count: 2, first_cell: 0, clip_x0: true };
        let mut sampler = Sampler::new(settings, &schedule, &dev());
        while sampler.step(&model).is_some() {}
        read(sampler.current())
    };
    let (learned, small, large) = (run(VarianceChoice::Learned), run(VarianceChoice::BetaTilde), run(VarianceChoice::Beta));
    assert!(common::max_abs_diff(&learned, &small) < 1e-5, "a fresh channel is beta_tilde");
    assert!(common::max_abs_diff(&learned, &large) > 1e-3, "and not beta");
}
