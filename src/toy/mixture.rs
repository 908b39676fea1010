//! A 2-D Gaussian mixture whose diffused marginals, score and posterior mean are known in closed
//! form: the explainer draws the exact score field beside the one Tweedie's formula implies.
//!
//! The same exact noise prediction drives the samplers of `crate::diffusion::solver` on the plane, where
//! their output can be compared with the true distribution.
//!
//! Under q(x_t | x_0) = N(sqrt(a) x_0, (1 - a) I) (a = alpha_bar_t), a component N(mu, s^2 I) of
//! the data becomes N(sqrt(a) mu, (a s^2 + 1 - a) I), so q_t is again a mixture.

use burn::tensor::{Device, Tensor, TensorData};

use crate::diffusion::noise::NoiseSource;
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::solver::{Method, ReverseSolver};
use crate::diffusion::variance::VarianceChoice;

/// An isotropic 2-D Gaussian mixture: weights, means, standard deviations.
#[derive(Debug, Clone)]
pub struct Mixture2d {
    pub weights: Vec<f64>,
    pub means: Vec<[f64; 2]>,
    pub stds: Vec<f64>,
}

impl Mixture2d {
    /// Three well separated components, the explainer's default.
    pub fn example() -> Self {
        Self {
            weights: vec![0.5, 0.3, 0.2],
            means: vec![[-1.2, -0.6], [1.0, -0.8], [0.2, 1.2]],
            stds: vec![0.25, 0.2, 0.3],
        }
    }

    /// Component means and variances of q_t at alpha_bar = `a`.
    fn diffused(&self, a: f64) -> impl Iterator<Item = (f64, [f64; 2], f64)> + '_ {
        self.weights.iter().zip(&self.means).zip(&self.stds).map(move |((&w, m), &s)| {
            (w, [a.sqrt() * m[0], a.sqrt() * m[1]], a * s * s + 1.0 - a)
        })
    }

    /// Responsibilities of each component for x under q_t, and the component log densities.
    fn responsibilities(&self, x: [f64; 2], a: f64) -> Vec<f64> {
        let logs: Vec<f64> = self
            .diffused(a)
            .map(|(w, m, v)| w.ln() - ((x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2)) / (2.0 * v) - (2.0 * std::f64::consts::PI * v).ln())
            .collect();
        let max = logs.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = logs.iter().map(|l| (l - max).exp()).sum();
        logs.iter().map(|l| (l - max).exp() / sum).collect()
    }

    /// log q_t(x).
    pub fn log_density(&self, x: [f64; 2], a: f64) -> f64 {
        self.diffused(a)
            .map(|(w, m, v)| w * (-((x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2)) / (2.0 * v)).exp() / (2.0 * std::f64::consts::PI * v))
            .sum::<f64>()
            .ln()
    }

    /// The exact score grad_x log q_t(x) = sum_k r_k(x) (m_k - x) / v_k.
    pub fn score(&self, x: [f64; 2], a: f64) -> [f64; 2] {
        let r = self.responsibilities(x, a);
        let mut g = [0.0; 2];
        for (rk, (_, m, v)) in r.iter().zip(self.diffused(a)) {
            g[0] += rk * (m[0] - x[0]) / v;
            g[1] += rk * (m[1] - x[1]) / v;
        }
        g
    }

    /// E[x_0 | x_t = x] computed directly from the Gaussian posterior of each component:
    /// sum_k r_k (mu_k + sqrt(a) s_k^2 / v_k (x - sqrt(a) mu_k)).
    pub fn posterior_mean(&self, x: [f64; 2], a: f64) -> [f64; 2] {
        let r = self.responsibilities(x, a);
        let mut e = [0.0; 2];
        for (k, rk) in r.iter().enumerate() {
            let (m, s2) = (self.means[k], self.stds[k].powi(2));
            let v = a * s2 + 1.0 - a;
            for d in 0..2 {
                e[d] += rk * (m[d] + a.sqrt() * s2 / v * (x[d] - a.sqrt() * m[d]));
            }
        }
        e
    }

    /// Tweedie's formula: E[x_0 | x_t] = (x_t + (1 - a) score(x_t)) / sqrt(a).
    pub fn tweedie(&self, x: [f64; 2], a: f64) -> [f64; 2] {
        let g = self.score(x, a);
        [(x[0] + (1.0 - a) * g[0]) / a.sqrt(), (x[1] + (1.0 - a) * g[1]) / a.sqrt()]
    }

    /// The score Tweedie's formula implies from the directly computed posterior mean:
    /// (sqrt(a) E[x_0 | x_t] - x_t) / (1 - a). Equals `score` exactly; the explainer draws both.
    pub fn score_via_tweedie(&self, x: [f64; 2], a: f64) -> [f64; 2] {
        let e = self.posterior_mean(x, a);
        [(a.sqrt() * e[0] - x[0]) / (1.0 - a), (a.sqrt() * e[1] - x[1]) / (1.0 - a)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_the_gradient_of_the_log_density() {
        let m = Mixture2d::example();
        for a in [0.99, 0.5, 0.05] {
            for x in [[0.1, 0.2], [-1.0, -0.5], [1.5, 1.5]] {
                let h = 1e-5;
                let fd = [
                    (m.log_density([x[0] + h, x[1]], a) - m.log_density([x[0] - h, x[1]], a)) / (2.0 * h),
                    (m.log_density([x[0], x[1] + h], a) - m.log_density([x[0], x[1] - h], a)) / (2.0 * h),
                ];
                let s = m.score(x, a);
                assert!((s[0] - fd[0]).abs() < 1e-5 && (s[1] - fd[1]).abs() < 1e-5, "a={a} x={x:?}: {s:?} vs {fd:?}");
            }
        }
    }

    #[test]
    fn tweedie_equals_the_exact_posterior_mean() {
        let m = Mixture2d::example();
        for a in [0.9, 0.3, 0.01] {
            for x in [[0.0, 0.0], [-0.7, 0.4], [2.0, -1.0]] {
                let (t, e) = (m.tweedie(x, a), m.posterior_mean(x, a));
                assert!((t[0] - e[0]).abs() < 1e-9 && (t[1] - e[1]).abs() < 1e-9, "a={a} x={x:?}: {t:?} vs {e:?}");
            }
        }
    }

    #[test]
    fn score_from_the_posterior_mean_by_tweedie_is_the_exact_score() {
        let m = Mixture2d::example();
        for a in [0.95, 0.4, 0.02] {
            for x in [[0.5, -0.5], [-2.0, 1.0]] {
                let (t, e) = (m.score_via_tweedie(x, a), m.score(x, a));
                assert!((t[0] - e[0]).abs() < 1e-8 * e[0].abs().max(1.0) && (t[1] - e[1]).abs() < 1e-8 * e[1].abs().max(1.0), "{t:?} vs {e:?}");
            }
        }
    }

    #[test]
    fn posterior_mean_matches_monte_carlo() {
        // Draw (x_0, x_t) pairs, keep those with x_t near a point, average x_0.
        let m = Mixture2d::example();
        let a: f64 = 0.4;
        let target = [0.3, 0.1];
        let mut rng = NoiseSource::new(17);
        let (mut sum, mut n) = ([0.0, 0.0], 0usize);
        for _ in 0..1_500_000 {
            let u = rng.uniform();
            let k = if u < 0.5 { 0 } else if u < 0.8 { 1 } else { 2 };
            let z = rng.normal(4);
            let x0 = [m.means[k][0] + m.stds[k] * z[0] as f64, m.means[k][1] + m.stds[k] * z[1] as f64];
            let xt = [a.sqrt() * x0[0] + (1.0 - a).sqrt() * z[2] as f64, a.sqrt() * x0[1] + (1.0 - a).sqrt() * z[3] as f64];
            if (xt[0] - target[0]).abs() < 0.05 && (xt[1] - target[1]).abs() < 0.05 {
                sum[0] += x0[0];
                sum[1] += x0[1];
                n += 1;
            }
        }
        let mc = [sum[0] / n as f64, sum[1] / n as f64];
        let exact = m.posterior_mean(target, a);
        assert!(n > 1000, "{n} samples near the point");
        assert!((mc[0] - exact[0]).abs() < 0.05 && (mc[1] - exact[1]).abs() < 0.05, "MC {mc:?} vs {exact:?} ({n} samples)");
    }
}

/// The explainer's view of the plane: a square [-EXTENT, EXTENT]^2.
pub const EXTENT: f64 = 2.5;
/// Arrows per side of the score-field grid.
pub const FIELD_GRID: usize = 15;

/// Centre of cell (gx, gy) of the `FIELD_GRID` x `FIELD_GRID` arrow grid.
pub fn field_point(gx: usize, gy: usize) -> [f64; 2] {
    let step = 2.0 * EXTENT / FIELD_GRID as f64;
    [-EXTENT + (gx as f64 + 0.5) * step, -EXTENT + (gy as f64 + 0.5) * step]
}

/// The arrow grid's points, row by row from the bottom.
pub fn field_points() -> Vec<[f64; 2]> {
    (0..FIELD_GRID * FIELD_GRID).map(|k| field_point(k % FIELD_GRID, k / FIELD_GRID)).collect()
}

impl Mixture2d {
    /// q_t's density on a `size` x `size` raster (row 0 at the top, y up), as RGBA shading:
    /// white where q_t vanishes, blue where it peaks.
    pub fn density_rgba(&self, a: f64, size: usize) -> Vec<u8> {
        let density: Vec<f64> = (0..size * size)
            .map(|k| {
                let (px, py) = (k % size, k / size);
                let x = [-EXTENT + (px as f64 + 0.5) / size as f64 * 2.0 * EXTENT, EXTENT - (py as f64 + 0.5) / size as f64 * 2.0 * EXTENT];
                self.log_density(x, a).exp()
            })
            .collect();
        let peak = density.iter().cloned().fold(1e-300, f64::max);
        density.iter().flat_map(|d| {
            let v = (255.0 - 120.0 * (d / peak).sqrt()) as u8;
            [v, v, 255, 255]
        }).collect()
    }

    /// Largest component-wise difference between the score from Tweedie's formula and the
    /// closed-form score over the arrow grid.
    pub fn tweedie_field_error(&self, a: f64) -> f64 {
        field_points()
            .into_iter()
            .map(|x| {
                let (f, e) = (self.score_via_tweedie(x, a), self.score(x, a));
                (f[0] - e[0]).abs().max((f[1] - e[1]).abs())
            })
            .fold(0.0, f64::max)
    }
}

impl Mixture2d {
    /// The noise an ideal denoiser predicts at x_t: eps*(x_t) = -sqrt(1 - a) grad log q_t(x_t)
    /// (the score-noise identity, Eq. 11 of DDPM read backwards).
    pub fn eps(&self, x: [f64; 2], a: f64) -> [f64; 2] {
        let g = self.score(x, a);
        let s = (1.0 - a).sqrt();
        [-s * g[0], -s * g[1]]
    }

    /// `n` exact draws of x_0 from the mixture.
    pub fn sample(&self, n: usize, rng: &mut NoiseSource) -> Vec<[f64; 2]> {
        (0..n)
            .map(|_| {
                let u = rng.uniform();
                let mut k = 0;
                let mut acc = self.weights[0];
                while u >= acc && k + 1 < self.weights.len() {
                    k += 1;
                    acc += self.weights[k];
                }
                let z = rng.normal(2);
                [self.means[k][0] + self.stds[k] * z[0] as f64, self.means[k][1] + self.stds[k] * z[1] as f64]
            })
            .collect()
    }

    /// `n` exact draws of x_t ~ q_t at alpha_bar = `a`: x_0 from the mixture, then Eq. 4.
    pub fn sample_diffused(&self, n: usize, a: f64, rng: &mut NoiseSource) -> Vec<[f64; 2]> {
        let x0 = self.sample(n, rng);
        let z = normal_points(n, rng);
        x0.iter().zip(&z).map(|(p, z)| [0, 1].map(|d| a.sqrt() * p[d] + (1.0 - a).sqrt() * z[d])).collect()
    }

    /// Each start x_T carried through the reverse process by `method` with the exact noise
    /// prediction; see [`reverse_paths`].
    pub async fn reverse_paths(
        &self,
        method: Method,
        schedule: &NoiseSchedule,
        starts: &[[f64; 2]],
        rng: &mut NoiseSource,
        device: &Device,
    ) -> Result<Vec<Vec<[f64; 2]>>, String> {
        let exact = |points: &[[f64; 2]], _: Tensor<4>, i: usize| {
            let a = schedule.alpha_bar[i];
            let eps: Vec<[f64; 2]> = points.iter().map(|&p| self.eps(p, a)).collect();
            upload_points(&eps, device)
        };
        reverse_paths(&exact, method, schedule, starts, rng, device).await
    }
}

/// Points as a [n, 2, 1, 1] tensor (the layout of `crate::diffusion::process`).
pub fn upload_points(points: &[[f64; 2]], device: &Device) -> Tensor<4> {
    let flat: Vec<f32> = points.iter().flat_map(|p| [p[0] as f32, p[1] as f32]).collect();
    Tensor::<4>::from_data(TensorData::new(flat, [points.len(), 2, 1, 1]), device)
}

/// A [n, 2, 1, 1] tensor read back as points (asynchronously: it runs in the browser too).
pub async fn read_points(x: Tensor<4>) -> Result<Vec<[f64; 2]>, String> {
    let data = x.into_data_async().await.map_err(|e| format!("reading a tensor failed: {e:?}"))?;
    let values: Vec<f32> = data.convert::<f32>().try_to_vec().map_err(|e| format!("unexpected tensor data: {e:?}"))?;
    Ok(values.chunks(2).map(|c| [c[0] as f64, c[1] as f64]).collect())
}

/// Each start x_T carried through the reverse process by `method`, with the noise prediction
/// `denoise(points, x_t, index)` (the exact one of a mixture, or a trained network's), using the
/// same [`ReverseSolver`] as the digit sampler; fresh noise from `rng` where the method adds it,
/// on `device`. Returns every point's path: x_T, then the state after each step.
pub async fn reverse_paths(
    denoise: &dyn Fn(&[[f64; 2]], Tensor<4>, usize) -> Tensor<4>,
    method: Method,
    schedule: &NoiseSchedule,
    starts: &[[f64; 2]],
    rng: &mut NoiseSource,
    device: &Device,
) -> Result<Vec<Vec<[f64; 2]>>, String> {
    let n = starts.len();
    let mut paths: Vec<Vec<[f64; 2]>> = starts.iter().map(|&p| vec![p]).collect();
    let mut solver = ReverseSolver::new(method, schedule);
    let mut points = starts.to_vec();
    while let Some(i) = solver.current_index() {
        let x_t = upload_points(&points, device);
        let eps = denoise(&points, x_t.clone(), i);
        let z = solver.needs_noise().then(|| Tensor::<4>::from_data(TensorData::new(rng.normal(2 * n), [n, 2, 1, 1]), device));
        let out = solver.advance(x_t, eps, false, z);
        points = read_points(out.x_prev).await?;
        for (path, &p) in paths.iter_mut().zip(&points) {
            path.push(p);
        }
    }
    Ok(paths)
}

/// `n` points of N(0, I) in the plane (the starts x_T of the 2-D samplers), from one stream.
pub fn normal_points(n: usize, rng: &mut NoiseSource) -> Vec<[f64; 2]> {
    rng.normal(2 * n).chunks(2).map(|c| [c[0] as f64, c[1] as f64]).collect()
}

/// The mean distance between paired points of two equal-size sets.
pub fn mean_distance(a: &[[f64; 2]], b: &[[f64; 2]]) -> f64 {
    a.iter().zip(b).map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1])).sum::<f64>() / a.len().max(1) as f64
}

/// The points of `paths` after `frame` steps.
pub fn points_at(paths: &[Vec<[f64; 2]>], frame: usize) -> Vec<[f64; 2]> {
    paths.iter().map(|p| p[frame.min(p.len() - 1)]).collect()
}

/// The reverse SDE and the probability-flow ODE at one t, against q_t itself.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarginalCheck {
    /// Sliced W1 from the SDE's points to exact draws of q_t, and from the ODE's.
    pub sde_to_exact: f64,
    pub ode_to_exact: f64,
    /// Sliced W1 between two independent exact draws of the same size: the floor at this n.
    pub exact_floor: f64,
    /// Mean distance between where the SDE and the ODE carried the same start.
    pub mean_separation: f64,
}

/// Compares the SDE's and the ODE's points at alpha_bar = `a` with exact draws of q_t.
pub fn check_marginals(m: &Mixture2d, a: f64, sde: &[[f64; 2]], ode: &[[f64; 2]], rng: &mut NoiseSource) -> MarginalCheck {
    use crate::diffusion::metrics::sliced_wasserstein_2d;
    let n = sde.len();
    let exact = m.sample_diffused(n, a, rng);
    let other = m.sample_diffused(n, a, rng);
    MarginalCheck {
        sde_to_exact: sliced_wasserstein_2d(sde, &exact, 32),
        ode_to_exact: sliced_wasserstein_2d(ode, &exact, 32),
        exact_floor: sliced_wasserstein_2d(&exact, &other, 32),
        mean_separation: mean_distance(sde, ode),
    }
}

/// A few 2-D paths of each sampler from fixed starts and noise: recorded natively, recomputed by
/// the browser suite on WebGPU and on the CPU in wasm (the explainer's section 6 runs this code).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PathsFixture {
    /// Per method (DDPM 1000, DDIM eta 0 over 1000, DPM-Solver++(2M) over 10): every point's
    /// state after 250, 500, 750 steps (where the run has them) and at the end.
    pub methods: Vec<(Method, Vec<Vec<[f64; 2]>>)>,
}

impl PathsFixture {
    const POINTS: usize = 16;

    pub async fn compute(device: &Device) -> Result<Self, String> {
        let m = Mixture2d::example();
        let schedule = NoiseSchedule::new(crate::diffusion::schedule::ScheduleKind::DDPM_LINEAR, 1000);
        let starts = normal_points(Self::POINTS, &mut NoiseSource::new(99));
        let mut methods = Vec::new();
        for method in [
            Method::Ddpm { variance: VarianceChoice::Beta },
            Method::Ddim { steps: 1000, eta: 0.0 },
            Method::DpmSolver2M { steps: 10 },
        ] {
            let paths = m.reverse_paths(method, &schedule, &starts, &mut NoiseSource::new(100), device).await?;
            let frames: Vec<Vec<[f64; 2]>> = [250, 500, 750, usize::MAX].iter().filter(|&&f| f == usize::MAX || f < paths[0].len()).map(|&f| points_at(&paths, f)).collect();
            methods.push((method, frames));
        }
        Ok(Self { methods })
    }

    /// The methods and frame counts, which two fixtures must share to be compared.
    pub fn layout(&self) -> Vec<(Method, Vec<usize>)> {
        self.methods.iter().map(|(m, frames)| (*m, frames.iter().map(Vec::len).collect())).collect()
    }

    /// Every coordinate of every kept point, in order.
    pub fn coordinates(&self) -> Vec<f64> {
        self.methods.iter().flat_map(|(_, frames)| frames.iter().flatten().flat_map(|p| *p)).collect()
    }
}
