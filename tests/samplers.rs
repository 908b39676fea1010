//! The samplers against a target known exactly: a 2-D Gaussian mixture whose score is closed form
//! (`toy::Mixture2d`), run through the same `ReverseSolver` as the digits.

mod common;

use burn::tensor::Tensor;
use futures_lite::future::block_on;
use common::{dev, max_abs_diff, read};
use ddpm_web::diffusion::process::{ddim_step, dpm_solver_2m_step, x0_from_eps};
use ddpm_web::diffusion::metrics::sliced_wasserstein_2d;
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::diffusion::schedule::{NoiseSchedule, ScheduleKind};
use ddpm_web::diffusion::solver::{Method, ReverseSolver};
use ddpm_web::toy::mixture::{Mixture2d, mean_distance, normal_points};
use ddpm_web::diffusion::variance::VarianceChoice;

fn linear() -> NoiseSchedule {
    NoiseSchedule::new(ScheduleKind::Linear { beta_start: 1e-4, beta_end: 0.02 }, 1000)
}

fn starts(n: usize, seed: u64) -> Vec<[f64; 2]> {
    normal_points(n, &mut NoiseSource::new(seed))
}

fn ends(m: &Mixture2d, method: Method, x_t: &[[f64; 2]], noise_seed: u64) -> Vec<[f64; 2]> {
    let paths = block_on(m.reverse_paths(method, &linear(), x_t, &mut NoiseSource::new(noise_seed), &dev())).unwrap();
    paths.into_iter().map(|p| *p.last().unwrap()).collect()
}


#[test]
fn dpm_solver_first_step_is_ddim_and_later_steps_follow_the_closed_form() {
    let s = linear();
    let mut rng = NoiseSource::new(3);
    let x_t = rng.tensor([2, 1, 4, 4], &dev());
    let eps = rng.tensor([2, 1, 4, 4], &dev());
    // Without a previous x_0 the update is DDIM's with eta = 0 (Lu et al. 2022, Eq. 8 vs DDIM Eq. 12).
    let dpm = dpm_solver_2m_step(&s, x_t.clone(), 700, Some(600), eps.clone(), None, false);
    let ddim = ddim_step(&s, x_t.clone(), 700, Some(600), eps.clone(), 0.0, false, None);
    assert!(max_abs_diff(&read(dpm.x_prev), &read(ddim.x_prev)) < 1e-5);
    // With one: x_prev = (sigma_p / sigma_t) x_t - alpha_p (e^{-h} - 1) D, D = (1 + 1/2r) x0 - 1/2r x0_before,
    // computed here per element in f64 from the schedule.
    let before = rng.tensor([2, 1, 4, 4], &dev());
    let got = read(dpm_solver_2m_step(&s, x_t.clone(), 600, Some(500), eps.clone(), Some((700, before.clone())), false).x_prev);
    let lambda = |i: usize| (s.alpha_bar[i].sqrt() / (1.0 - s.alpha_bar[i]).sqrt()).ln();
    let (h, h_before) = (lambda(500) - lambda(600), lambda(600) - lambda(700));
    let r = h_before / h;
    let x0 = read(x0_from_eps(&s, x_t.clone(), &[600, 600], eps));
    let (xt, xb) = (read(x_t.clone()), read(before));
    for k in 0..xt.len() {
        let d = (1.0 + 0.5 / r) * x0[k] as f64 - 0.5 / r * xb[k] as f64;
        let want = (1.0 - s.alpha_bar[500]).sqrt() / (1.0 - s.alpha_bar[600]).sqrt() * xt[k] as f64 - s.alpha_bar[500].sqrt() * ((-h).exp() - 1.0) * d;
        assert!((got[k] as f64 - want).abs() < 1e-4 * want.abs().max(1.0), "element {k}: {} vs {want}", got[k]);
    }
    // The last step, to x_0, lands on the predicted x_0.
    let last = dpm_solver_2m_step(&s, x_t, 0, None, rng.tensor([2, 1, 4, 4], &dev()), None, false);
    assert!(max_abs_diff(&read(last.x_prev), &read(last.x0_pred)) < 1e-7);
}

#[test]
fn stochastic_samplers_draw_noise_exactly_where_the_maths_adds_it() {
    let s = linear();
    let count = |method: Method| {
        let mut solver = ReverseSolver::new(method, &s);
        let mut noisy = 0;
        while solver.current_index().is_some() {
            noisy += solver.needs_noise() as usize;
            let x = Tensor::<4>::zeros([1, 1, 1, 1], &dev());
            let z = solver.needs_noise().then(|| x.clone());
            solver.advance(x.clone(), x, false, z);
        }
        (solver.steps_done(), noisy)
    };
    assert_eq!(count(Method::Ddpm { variance: VarianceChoice::Beta }), (1000, 999), "no noise at t = 1");
    assert_eq!(count(Method::Ddim { steps: 20, eta: 0.5 }), (20, 19), "no noise on the step to x_0");
    assert_eq!(count(Method::Ddim { steps: 20, eta: 0.0 }), (20, 0));
    assert_eq!(count(Method::DpmSolver2M { steps: 20 }), (20, 0));
}

/// The probability-flow ODE from fixed starts: how far each solver lands from the ODE's solution
/// (DPM-Solver++ through all 1000 indices) at equal network evaluations.
#[test]
fn second_order_solver_beats_ddim_at_equal_evaluations_and_both_converge() {
    let m = Mixture2d::example();
    let x_t = starts(2000, 11);
    let reference = ends(&m, Method::DpmSolver2M { steps: 1000 }, &x_t, 0);
    let ddim_1000 = ends(&m, Method::Ddim { steps: 1000, eta: 0.0 }, &x_t, 0);
    let ode_gap = mean_distance(&ddim_1000, &reference);
    println!("DDIM and DPM-Solver++(2M) at 1000 steps: mean distance {ode_gap:.5}");
    assert!(ode_gap < 0.01, "both solve the same ODE: {ode_gap}");
    let mut last = (f64::MAX, f64::MAX);
    println!("steps | DDIM error | DPM-Solver++(2M) error (mean distance to the 1000-step solution)");
    for steps in [5, 10, 20, 50] {
        let ddim = mean_distance(&ends(&m, Method::Ddim { steps, eta: 0.0 }, &x_t, 0), &reference);
        let dpm = mean_distance(&ends(&m, Method::DpmSolver2M { steps }, &x_t, 0), &reference);
        println!("{steps:5} | {ddim:.4} | {dpm:.4}");
        assert!(dpm < ddim, "{steps} steps: second order {dpm} vs DDIM {ddim}");
        assert!(ddim < last.0 && dpm < last.1, "{steps} steps: errors fall with steps ({ddim}, {dpm} after {last:?})");
        last = (ddim, dpm);
    }
}

/// The samples against exact draws from the mixture: DDPM, DDIM and DPM-Solver++ reach the
/// target, and the distance falls as the steps grow.
#[test]
fn every_sampler_reaches_the_target_and_improves_with_steps() {
    let m = Mixture2d::example();
    let n = 4000;
    let target = m.sample(n, &mut NoiseSource::new(5));
    let x_t = starts(n, 6);
    // Two independent exact sample sets: the distance's floor at this n.
    let floor = sliced_wasserstein_2d(&target, &m.sample(n, &mut NoiseSource::new(7)), 32);
    let distance = |method: Method| sliced_wasserstein_2d(&ends(&m, method, &x_t, 8), &target, 32);
    let ddpm = distance(Method::Ddpm { variance: VarianceChoice::Beta });
    println!("sliced W1: exact vs exact {floor:.4}, DDPM 1000 {ddpm:.4}");
    assert!(ddpm < 3.0 * floor, "DDPM-1000 {ddpm} vs floor {floor}");
    for (name, method) in [
        ("DDIM eta 0", (|s| Method::Ddim { steps: s, eta: 0.0 }) as fn(usize) -> Method),
        ("DDIM eta 1", |s| Method::Ddim { steps: s, eta: 1.0 }),
        ("DPM-Solver++(2M)", |s| Method::DpmSolver2M { steps: s }),
    ] {
        let few = distance(method(5));
        let many = distance(method(200));
        println!("sliced W1, {name}: 5 steps {few:.4}, 200 steps {many:.4}");
        assert!(many < 3.0 * floor, "{name} at 200 steps: {many} vs floor {floor}");
        assert!(few > many, "{name}: 5 steps {few} should be further than 200 steps {many}");
    }
}

/// On Gaussian data the probability-flow ODE is solved in closed form: the standardised
/// coordinate (x_t - sqrt(a) mu) / sqrt(a s^2 + 1 - a) stays fixed. DDIM's error halves as the
/// steps double (first order); DPM-Solver++(2M)'s falls about four times (second order).
#[test]
fn orders_of_convergence_on_gaussian_data() {
    let (mu, sd) = ([0.5, -0.3], 0.3);
    let m = Mixture2d { weights: vec![1.0], means: vec![mu], stds: vec![sd] };
    let x_t = starts(500, 11);
    let a = linear().alpha_bar[999];
    let v = (a * sd * sd + 1.0 - a).sqrt();
    let exact: Vec<[f64; 2]> = x_t.iter().map(|p| [0, 1].map(|d| mu[d] + sd * (p[d] - a.sqrt() * mu[d]) / v)).collect();
    let error = |method: Method| mean_distance(&ends(&m, method, &x_t, 0), &exact);
    let ddim: Vec<f64> = [20, 40, 80].iter().map(|&s| error(Method::Ddim { steps: s, eta: 0.0 })).collect();
    let dpm: Vec<f64> = [20, 40].iter().map(|&s| error(Method::DpmSolver2M { steps: s })).collect();
    println!("Gaussian data, error at 20/40/80 steps: DDIM {ddim:.5?}, DPM-Solver++(2M) at 20/40 {dpm:.5?}");
    for k in 0..2 {
        let ratio = ddim[k] / ddim[k + 1];
        assert!((1.7..2.3).contains(&ratio), "DDIM is first order: error ratio {ratio}");
    }
    assert!(dpm[0] / dpm[1] > 3.0, "DPM-Solver++(2M) is second order: {dpm:?}");
    assert!(dpm[0] < ddim[0] / 5.0, "{dpm:?} vs {ddim:?}");
}

#[test]
fn log_snr_timesteps_run_from_t_to_1_evenly_in_lambda() {
    let s = linear();
    let lambda = |i: usize| 0.5 * s.snr[i].ln();
    for steps in [2, 5, 20, 30] {
        let seq = s.log_snr_timesteps(steps);
        assert_eq!((seq.len(), seq[0], *seq.last().unwrap()), (steps, 999, 0), "{steps}: {seq:?}");
        assert!(seq.windows(2).all(|w| w[0] > w[1]), "descending: {seq:?}");
        let even = (lambda(0) - lambda(999)) / (steps - 1) as f64;
        for w in seq.windows(2) {
            // Nearest indices: each gap within the index grid's own lambda spacing of the even one
            // (up to 30 steps no index repeats, so none is moved).
            let gap = lambda(w[1]) - lambda(w[0]);
            assert!((gap - even).abs() < 0.4 * even + 0.4, "{steps} steps, {w:?}: gap {gap} vs {even}");
        }
    }
    assert_eq!(s.log_snr_timesteps(1000), (0..1000).rev().collect::<Vec<_>>(), "all T steps visit every index");
    assert_eq!(Method::DpmSolver2M { steps: 20 }.evaluations(&s), 20);
}

/// The reverse SDE (DDPM) and the probability-flow ODE (DDIM, eta 0) from the same starts: each
/// point goes its own way, but at every t both clouds are draws of the same q_t.
#[test]
fn sde_and_ode_share_every_marginal_but_not_their_paths() {
    use ddpm_web::toy::mixture::{check_marginals, points_at};
    let m = Mixture2d::example();
    let s = linear();
    let x_t = starts(2000, 21);
    let sde = block_on(m.reverse_paths(Method::Ddpm { variance: VarianceChoice::Beta }, &s, &x_t, &mut NoiseSource::new(22), &dev())).unwrap();
    let ode = block_on(m.reverse_paths(Method::Ddim { steps: 1000, eta: 0.0 }, &s, &x_t, &mut NoiseSource::new(22), &dev())).unwrap();
    assert_eq!((sde[0].len(), ode[0].len()), (1001, 1001), "x_T and one state per step");
    for t in [800, 400, 100, 0] {
        // After 1000 - t steps the state is x_t; at t = 0 it is the sample.
        let frame = 1000 - t;
        let a = if t == 0 { 1.0 } else { s.alpha_bar[t - 1] };
        let check = check_marginals(&m, a, &points_at(&sde, frame), &points_at(&ode, frame), &mut NoiseSource::new(23));
        // The distance between two exact draws of this size varies by a factor of two from draw to
        // draw (the components' counts vary): average eight for the floor.
        let mut rng = NoiseSource::new(24);
        let floor = (0..8).map(|_| sliced_wasserstein_2d(&m.sample_diffused(2000, a, &mut rng), &m.sample_diffused(2000, a, &mut rng), 32)).sum::<f64>() / 8.0;
        println!("t = {t}: {check:?}, mean floor {floor:.4}");
        assert!(check.sde_to_exact < 3.0 * floor && check.ode_to_exact < 3.0 * floor, "t = {t}: {check:?} vs floor {floor}");
        assert!(check.mean_separation > 10.0 * floor, "t = {t}: the paths differ point by point: {check:?}");
    }
}

/// The 2-D paths the explainer draws, recorded natively for the browser suite (tests/web.rs),
/// which recomputes them on WebGPU and on the CPU in wasm.
/// `DDPM_UPDATE_FIXTURES=1 cargo test --test samplers` rewrites tests/fixtures/paths-2d.json.
#[test]
fn two_d_paths_fixture_is_current() {
    use ddpm_web::toy::mixture::PathsFixture;
    const FIXTURE: &str = "tests/fixtures/paths-2d.json";
    let now = block_on(PathsFixture::compute(&dev())).unwrap();
    if std::env::var("DDPM_UPDATE_FIXTURES").is_ok() {
        std::fs::write(FIXTURE, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
    }
    let fixture: PathsFixture = serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("DDPM_UPDATE_FIXTURES=1 writes it")).unwrap();
    assert_eq!(fixture.layout(), now.layout(), "the fixture's methods or frames differ (rewrite it if the solver changed on purpose)");
    let worst = common::tolerance::PATH_POINT.check("2-D path coordinate", &now.coordinates(), &fixture.coordinates()).unwrap_or_else(|e| panic!("{e} (rewrite the fixture if the solver changed on purpose)"));
    println!("2-D paths: worst difference {worst:.3} of the tolerance");
}
