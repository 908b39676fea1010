//! The objective (noise, x_0 and v prediction and the weights they imply) against closed forms,
//! and the 2-D training the explainer runs in the tab, natively: it fits every preset, it is
//! reproducible, and its first steps are recorded for the browser suite.

mod common;

use common::{dev, read};
use futures_lite::future::block_on;
use ddpm_web::diffusion::process::{mean_from_x0, q_posterior_mean, q_sample, x0_from_eps};
use ddpm_web::diffusion::elbo::normal_kl;
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::diffusion::objective::{Prediction, elbo_x0_weight};
use ddpm_web::diffusion::schedule::{NoiseSchedule, ScheduleKind};
use ddpm_web::diffusion::solver::Method;
use ddpm_web::toy::mixture::{normal_points, points_at};
use ddpm_web::toy::train::*;

fn linear() -> NoiseSchedule {
    NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 1000)
}

/// Per-sample sums of squares of a [n, c, h, w] batch.
fn per_sample_sq(values: &[f32], n: usize) -> Vec<f64> {
    values.chunks(values.len() / n).map(|c| c.iter().map(|v| (*v as f64).powi(2)).sum()).collect()
}

#[test]
fn every_prediction_converts_back_to_the_noise_it_came_from() {
    let s = linear();
    let mut rng = NoiseSource::new(1);
    let idx = [0, 3, 50, 400, 999];
    let (x0, eps) = (rng.tensor([5, 1, 4, 4], &dev()), rng.tensor([5, 1, 4, 4], &dev()));
    let x_t = q_sample(&s, x0.clone(), &idx, eps.clone());
    for p in Prediction::ALL {
        let target = p.target(&s, x0.clone(), eps.clone(), &idx);
        let back = read(p.to_eps(&s, x_t.clone(), &idx, target));
        let gap = back.iter().zip(read(eps.clone())).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        // x_0 -> eps divides by sqrt(1/a - 1), small at t = 1: f32 rounding of x_t is amplified there.
        assert!(gap < if p == Prediction::CleanData { 2e-3 } else { 1e-5 }, "{p:?}: {gap}");
    }
}

#[test]
fn each_prediction_weights_the_x0_error_as_the_module_states() {
    // An error d in the prediction is an error in x0_hat; their squares differ by x0_weight.
    let s = linear();
    let mut rng = NoiseSource::new(2);
    let idx = [1, 10, 100, 500, 900];
    let (x0, eps, d) = (rng.tensor([5, 1, 3, 3], &dev()), rng.tensor([5, 1, 3, 3], &dev()), rng.tensor([5, 1, 3, 3], &dev()).mul_scalar(0.01));
    let x_t = q_sample(&s, x0.clone(), &idx, eps.clone());
    for p in Prediction::ALL {
        let target = p.target(&s, x0.clone(), eps.clone(), &idx);
        let eps_hat = p.to_eps(&s, x_t.clone(), &idx, target + d.clone());
        let x0_hat = x0_from_eps(&s, x_t.clone(), &idx, eps_hat);
        let err_pred = per_sample_sq(&read(d.clone()), 5);
        let err_x0 = per_sample_sq(&read(x0_hat - x0.clone()), 5);
        for k in 0..5 {
            let ratio = err_pred[k] / err_x0[k];
            let w = p.x0_weight(&s, idx[k]);
            assert!((ratio / w - 1.0).abs() < 2e-2, "{p:?} t={}: {ratio} vs {w}", idx[k] + 1);
        }
    }
}

#[test]
fn elbo_weight_is_the_kl_between_the_posterior_and_the_models_step() {
    // L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || N(mu_tilde(x_t, x0_hat), beta_tilde)), summed over
    // pixels, equals (SNR(t-1) - SNR(t)) / 2 ||x_0 - x0_hat||^2 (Kingma et al. 2021, Eq. 13).
    let s = linear();
    let mut rng = NoiseSource::new(3);
    for i in [1usize, 5, 60, 300, 800, 999] {
        let (x0, eps) = (rng.tensor([1, 1, 6, 6], &dev()), rng.tensor([1, 1, 6, 6], &dev()));
        let x0_hat = x0.clone() + rng.tensor([1, 1, 6, 6], &dev()).mul_scalar(0.05);
        let x_t = q_sample(&s, x0.clone(), &[i], eps);
        let logvar = [s.posterior_variance[i].ln()];
        let kl = normal_kl(q_posterior_mean(&s, x0.clone(), x_t.clone(), &[i]), &logvar, mean_from_x0(&s, x_t, &[i], x0_hat.clone()), &logvar);
        let kl: f64 = read(kl).iter().map(|v| *v as f64).sum();
        let err: f64 = per_sample_sq(&read(x0 - x0_hat), 1)[0];
        let closed = elbo_x0_weight(&s, i) * err;
        // f32 arithmetic: at t = T the KL is 4e-8 nats and its last digits are rounding.
        assert!((kl / closed - 1.0).abs() < 2e-3, "t={}: KL {kl} vs {closed}", i + 1);
    }
}

#[test]
fn the_fit_sampler_on_the_exact_score_lands_far_below_the_threshold() {
    // What the fit check measures is the model, not the sampler: with the exact score the same
    // 20-step DPM-Solver++ run is within a third of the threshold of each preset.
    let s = linear();
    for preset in ToyPreset::ALL {
        let m = preset.mixture();
        let mut rng = NoiseSource::new(7);
        let starts = normal_points(FIT_SAMPLES, &mut rng);
        let samples = points_at(&block_on(m.reverse_paths(FIT_SAMPLER, &s, &starts, &mut rng, &dev())).unwrap(), usize::MAX);
        let d = ddpm_web::diffusion::metrics::sliced_wasserstein_2d(&samples, &m.sample(FIT_SAMPLES, &mut rng), 32);
        println!("{preset:?}: exact score through {FIT_SAMPLER:?}: {d:.4}");
        assert!(d < FIT_THRESHOLD / 2.0, "{preset:?}: {d}");
    }
    assert!(matches!(FIT_SAMPLER, Method::DpmSolver2M { .. }));
}

#[test]
fn the_default_training_fits_every_preset() {
    const EARLY: usize = 1000;
    let s = linear();
    for preset in ToyPreset::ALL {
        let mut trainer = ToyTrainer::new(preset.mixture(), ToySettings::default(), s.clone(), &dev());
        let start = std::time::Instant::now();
        let mut last = Vec::new();
        while trainer.steps_done() < trainer.settings.steps {
            last.push(trainer.train_step());
            if last.len() > 50 {
                last.remove(0);
            }
            if trainer.steps_done() == EARLY {
                // The weights' moving average fits long before the learning rate has decayed
                // (measured: blobs / ring / moons first under the threshold at steps 500 / 700 / 200
                // averaged, 1,600 / 1,500 / 1,000 raw).
                let (_, early) = block_on(check_fit(&trainer.model(), &preset.mixture(), &s, 11, &dev())).unwrap();
                println!("{preset:?}: after {EARLY} steps {early:?}");
                assert!(early.good(), "{preset:?} after {EARLY} steps: {early:?}");
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        let (_, fit) = block_on(check_fit(&trainer.model(), &preset.mixture(), &s, 11, &dev())).unwrap();
        let loss: f64 = last.into_iter().map(|l| l.into_scalar::<f32>() as f64).sum::<f64>() / 50.0;
        println!("{preset:?}: {} steps in {seconds:.1} s, final loss {loss:.4}, {fit:?}", trainer.steps_done());
        assert!(fit.good(), "{preset:?}: {fit:?}");
        // The untrained network is far from it: the check can fail.
        let untrained = ToyTrainer::new(preset.mixture(), ToySettings::default(), s.clone(), &dev());
        let (_, before) = block_on(check_fit(&untrained.model(), &preset.mixture(), &s, 11, &dev())).unwrap();
        assert!(!before.good(), "{preset:?} untrained: {before:?}");
    }
}

#[test]
fn a_drawn_target_is_checked_and_becomes_a_mixture() {
    assert!(drawn_mixture(&[[0.0, 0.0], [1.0, 1.0]]).unwrap_err().contains("3 to 300 points"));
    assert!(drawn_mixture(&[[0.0, 0.0], [1.0, 1.0], [9.0, 0.0]]).unwrap_err().contains("outside"));
    assert!(drawn_mixture(&[[0.0, 0.0], [1.0, 1.0], [f64::NAN, 0.0]]).is_err());
    assert!(drawn_mixture(&vec![[0.0, 0.0]; 301]).is_err());
    let m = ToyTarget::Drawn { points: vec![[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5]] }.mixture().unwrap();
    assert_eq!(m.means.len(), 3);
    assert!(m.weights.iter().all(|w| (w - 1.0 / 3.0).abs() < 1e-12) && m.stds.iter().all(|&s| s == DRAWN_STD));
}

#[test]
fn the_raw_weights_have_not_fitted_blobs_when_their_average_has() {
    // The other half of the test above: without the average, the same run at the same step is
    // still outside the threshold, so the average is what fits early.
    let s = linear();
    let mut trainer = ToyTrainer::new(ToyPreset::Blobs.mixture(), ToySettings { ema: None, ..Default::default() }, s.clone(), &dev());
    while trainer.steps_done() < 1000 {
        trainer.train_step();
    }
    let (_, fit) = block_on(check_fit(&trainer.model(), &ToyPreset::Blobs.mixture(), &s, 11, &dev())).unwrap();
    assert!(!fit.good(), "raw weights after 1,000 steps: {fit:?}");
}

#[test]
fn blending_two_models_is_their_weighted_mean_parameter_by_parameter() {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tensor;
    use ddpm_web::nets::mlp::ToyDenoiser;
    /// Every parameter's values, in the module's order.
    struct Values(Vec<f32>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let params = |m: &ToyDenoiser| {
        let mut values = Values(Vec::new());
        m.visit(&mut values);
        values.0
    };
    let (a, b) = (ToyDenoiser::init_seeded(1, &dev()), ToyDenoiser::init_seeded(2, &dev()));
    let (pa, pb) = (params(&a), params(&b));
    let mixed = params(&a.clone().blend(&b, 0.9));
    for ((m, x), y) in mixed.iter().zip(&pa).zip(&pb) {
        assert!((m - (0.9 * x + 0.1 * y)).abs() < 1e-6, "{m} against {x} and {y}");
    }
    assert_eq!(mixed.len(), a.num_params());
    assert!(pa.iter().zip(&pb).any(|(x, y)| (x - y).abs() > 1e-3), "two seeds start apart");
}

#[test]
fn training_is_seeded_so_a_run_repeats_exactly() {
    let s = linear();
    let run = |seed| {
        let mut t = ToyTrainer::new(ToyPreset::Ring.mixture(), ToySettings { seed, ..Default::default() }, s.clone(), &dev());
        (0..5).map(|_| t.train_step().into_scalar::<f32>()).collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

/// The first training steps, recorded for the browser suite (tests/web.rs), which runs them on
/// WebGPU and on the CPU in wasm. `DDPM_UPDATE_FIXTURES=1` rewrites tests/fixtures/train-2d.json.
#[test]
fn training_fixture_is_current() {
    const FIXTURE: &str = "tests/fixtures/train-2d.json";
    let now = block_on(TrainingFixture::compute(&dev())).unwrap();
    if std::env::var("DDPM_UPDATE_FIXTURES").is_ok() {
        std::fs::write(FIXTURE, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
    }
    let fixture: TrainingFixture = serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("DDPM_UPDATE_FIXTURES=1 writes it")).unwrap();
    use common::tolerance::{TRAINING_2D_FIELD, TRAINING_2D_LOSS, of_longest};
    let stale = |e: String| panic!("native training moved from the fixture: {e}");
    let loss = TRAINING_2D_LOSS.check("loss", &now.losses, &fixture.losses).unwrap_or_else(stale);
    let field = of_longest(TRAINING_2D_FIELD, &fixture.field_coordinates()).check("field", &now.field_coordinates(), &fixture.field_coordinates()).unwrap_or_else(stale);
    println!("2-D training: worst difference {loss:.3} (losses), {field:.3} (field) of the tolerance");
}

mod flow {
    use super::*;
    use burn::tensor::{Tensor, TensorData};
    use ddpm_web::toy::flow::*;

    /// The exact velocity of the straight path when the data are N(mu, sigma^2 I): x_s is Gaussian
    /// with mean (1 - s) mu and variance V = (1 - s)^2 sigma^2 + s^2, so by Gaussian conditioning
    /// E[x_0 | x] = mu + (1 - s) sigma^2 / V (x - (1 - s) mu), E[eps | x] = s / V (x - (1 - s) mu),
    /// and v = E[eps | x] - E[x_0 | x].
    fn gaussian_velocity(mu: f64, sigma: f64) -> impl Fn(Tensor<4>, f64) -> Tensor<4> {
        move |x: Tensor<4>, s: f64| {
            let v = (1.0 - s).powi(2) * sigma * sigma + s * s;
            let centred = x.sub_scalar((1.0 - s) * mu);
            centred.mul_scalar((s - (1.0 - s) * sigma * sigma) / v).sub_scalar(mu)
        }
    }

    #[test]
    fn euler_and_heun_on_a_gaussians_exact_velocity_approach_the_straight_paths_closed_form() {
        // The ODE's exact solution from x_1: x_s = (1 - s) mu + sqrt(V(s)) x_1, so x_0 = mu + sigma x_1.
        let (mu, sigma) = (0.7, 0.3);
        let v = gaussian_velocity(mu, sigma);
        let starts: Vec<f32> = NoiseSource::new(4).normal(200);
        let exact: Vec<f64> = starts.iter().map(|&z| mu + sigma * z as f64).collect();
        let error = |solver: FlowSolver, steps: usize| {
            let mut x = Tensor::<4>::from_data(TensorData::new(starts.clone(), [100, 2, 1, 1]), &dev());
            for w in flow_grid(steps).windows(2) {
                x = solver.step(&v, x, w[0], w[1]);
            }
            read(x).iter().zip(&exact).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max)
        };
        let euler: Vec<f64> = [2, 8, 32, 128].iter().map(|&k| error(FlowSolver::Euler, k)).collect();
        let heun: Vec<f64> = [2, 8, 32, 128].iter().map(|&k| error(FlowSolver::Heun, k)).collect();
        println!("max error by steps 2/8/32/128: Euler {euler:?}, Heun {heun:?}");
        // First order: each 4x more steps cut the error about 4x; second order about 16x (8x from 2
        // to 8 steps, where h is still large).
        assert!(euler.windows(2).all(|w| w[1] < w[0] / 3.0), "Euler {euler:?}");
        assert!(heun.windows(2).all(|w| w[1] < w[0] / 6.0), "Heun {heun:?}");
        assert!(euler[3] < 0.02 && heun[2] < 2e-3 && heun[2] < euler[3] / 10.0, "Euler {euler:?}, Heun {heun:?}");
        assert_eq!(FlowSolver::Heun.evaluations(8), 16);
        assert_eq!(flow_grid(4), vec![1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn the_straight_path_is_diffusions_path_rescaled_and_its_velocity_gives_the_noise() {
        let s = linear();
        let (x0, eps) = ([0.4, -1.1], [-0.3, 0.8]);
        for i in [0, 99, 499, 999] {
            let (abar_sqrt, rest) = (s.sqrt_alpha_bar[i], s.sqrt_one_minus_alpha_bar[i]);
            let x_t = [abar_sqrt * x0[0] + rest * eps[0], abar_sqrt * x0[1] + rest * eps[1]];
            let time = straight_time(&s, i);
            let (state, target) = straight_pair(x0, eps, time);
            let c = straight_scale(&s, i);
            for k in 0..2 {
                assert!((c * x_t[k] - state[k]).abs() < 1e-12, "index {i}: c x_t is x_s");
            }
            // The true velocity gives back the true noise.
            let to_tensor = |p: [f64; 2]| Tensor::<4>::from_data(TensorData::new(vec![p[0] as f32, p[1] as f32], [1, 2, 1, 1]), &dev());
            let back = read(eps_from_velocity(to_tensor(state), time, to_tensor(target)));
            assert!((back[0] as f64 - eps[0]).abs() < 1e-6 && (back[1] as f64 - eps[1]).abs() < 1e-6, "index {i}: {back:?}");
        }
        assert!(straight_time(&s, 0) < 0.1 && straight_time(&s, 999) > 0.99, "t = 1 is almost data, t = T almost noise");
    }

    #[test]
    fn a_short_flow_matching_run_fits_every_preset_and_its_samplers_improve_with_steps() {
        let s = linear();
        let settings = ToySettings { objective: ToyObjective::FLOW, ..ToySettings::default() };
        for preset in ToyPreset::ALL {
            let mut trainer = ToyTrainer::new(preset.mixture(), settings.clone(), s.clone(), &dev());
            while trainer.steps_done() < trainer.settings.steps {
                trainer.train_step();
            }
            let model = trainer.model();
            // Through diffusion's eps (the change of variables), the fit check's sampler works as is.
            let (_, fit) = block_on(check_fit(&model, &preset.mixture(), &s, 11, &dev())).unwrap();
            let rows = block_on(fit_by_steps(&model, &preset.mixture(), &s, 11, &dev())).unwrap();
            let at = |name: &str, k: usize| rows.iter().find(|r| r.sampler == name && r.steps == k).unwrap().distance;
            println!("{preset:?}: {fit:?}; Euler 1/8/32 {:.3}/{:.3}/{:.3}, Heun 1/8/32 {:.3}/{:.3}/{:.3}",
                     at("Euler", 1), at("Euler", 8), at("Euler", 32), at("Heun", 1), at("Heun", 8), at("Heun", 32));
            assert!(fit.good(), "{preset:?}: {fit:?}");
            assert!(at("Heun", 32) <= FIT_THRESHOLD && at("Euler", 32) <= FIT_THRESHOLD, "{preset:?}: {rows:?}");
            assert!(at("Euler", 1) > at("Euler", 32), "{preset:?}: one Euler step is the worst");
            assert_eq!(rows.len(), 2 * FIT_STEP_COUNTS.len());
        }
        // The objectives serialise as the page's select values.
        let values: Vec<String> = ToyObjective::all().iter().map(|o| serde_json::to_string(o).unwrap()).collect();
        assert_eq!(values, ["\"noise\"", "\"clean_data\"", "\"velocity\"", "\"flow\""]);
        assert_eq!(serde_json::from_str::<ToyObjective>("\"flow\"").unwrap(), ToyObjective::FLOW);
    }
}

#[test]
fn min_snr_weights_match_their_closed_form_and_weight_each_samples_error() {
    use burn::tensor::{Tensor, TensorData};
    use ddpm_web::diffusion::objective::{LossWeighting, mse, weighted_mse};
    let s = linear();
    let w = LossWeighting::MinSnr { gamma: 5.0 };
    for i in [0, 10, 100, 300, 999] {
        let snr = s.snr[i];
        // Hang et al., Eq. 8-9: eps-prediction min(SNR, 5) / SNR, x_0 min(SNR, 5), v min(SNR, 5) / (SNR + 1).
        assert!((w.factor(&s, Prediction::Noise, i) - snr.min(5.0) / snr).abs() < 1e-12);
        assert!((w.factor(&s, Prediction::CleanData, i) - snr.min(5.0)).abs() < 1e-12);
        assert!((w.factor(&s, Prediction::Velocity, i) - snr.min(5.0) / (snr + 1.0)).abs() < 1e-12);
        assert_eq!(LossWeighting::Uniform.factor(&s, Prediction::Noise, i), 1.0);
    }
    // Past the SNR where it crosses gamma eps-prediction's weight is 1: min-SNR leaves the noisy
    // timesteps alone and caps the clean ones.
    let crossing = (0..1000).find(|&i| s.snr[i] <= 5.0).unwrap();
    assert!(w.factor(&s, Prediction::Noise, crossing) == 1.0 && w.factor(&s, Prediction::Noise, 0) < 0.01, "crossing at index {crossing}");
    // The weighted loss is the mean of each sample's mean squared error times its factor.
    let a: Vec<f32> = NoiseSource::new(1).normal(3 * 8);
    let b: Vec<f32> = NoiseSource::new(2).normal(3 * 8);
    let t = |v: &Vec<f32>| Tensor::<4>::from_data(TensorData::new(v.clone(), [3, 2, 2, 2]), &dev());
    let factors = [0.5, 2.0, 1.0];
    let by_hand: f64 = (0..3).map(|k| factors[k] * (0..8).map(|j| ((a[k * 8 + j] - b[k * 8 + j]) as f64).powi(2)).sum::<f64>() / 8.0).sum::<f64>() / 3.0;
    let got = read(weighted_mse(t(&a), t(&b), &factors).reshape([1, 1, 1, 1]))[0] as f64;
    assert!((got - by_hand).abs() < 1e-5 * by_hand, "{got} vs {by_hand}");
    let plain = read(mse(t(&a), t(&b)).reshape([1, 1, 1, 1]))[0] as f64;
    let ones = read(weighted_mse(t(&a), t(&b), &[1.0; 3]).reshape([1, 1, 1, 1]))[0] as f64;
    assert!((plain - ones).abs() < 1e-6, "factors of 1 are L_simple");
}
