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
