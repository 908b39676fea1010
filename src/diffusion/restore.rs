//! Restoring and editing images with a trained reverse process, one move at a time so a caller
//! can draw every step: RePaint inpainting (Lugmayr et al. 2022), ILVR super-resolution (Choi et
//! al. 2021), SDEdit from a sketch (Meng et al. 2022), denoising a noisy image from its matched t
//! (Tweedie's estimate and posterior samples), and DDIM inversion with spherical interpolation.
//!
//! Every operation walks *levels* of a respaced schedule: level `K` is the first timestep index
//! `tau[0]` of the run (the noisiest), level 1 is `tau[K - 1]`, level 0 is the clean x_0. A reverse
//! move (level l -> l - 1) is a DDIM step with stochasticity `eta` (eta = 1: ancestral, the DDPM
//! posterior of the respaced chain); a forward move (l -> l + 1) re-noises by
//! q(x_b | x_a) = N(sqrt(abar_b / abar_a) x_a, (1 - abar_b / abar_a) I), RePaint's "jump back".
//! After each reverse move a [`Constraint`] pulls the state towards the given image, noised to the
//! new level with its own stream. The network enters only through an `eps` function of (x, index),
//! so the same code runs the U-Net and, in the tests, the exact noise of a 2-D Gaussian mixture.
//! Nothing here reads a tensor.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::diffusion::noise::NoiseSource;
use crate::diffusion::process::{StepOutput, ddim_step, x0_from_eps};
use crate::diffusion::schedule::NoiseSchedule;
use crate::nets::unet::NUM_DIGITS;

/// What pulls each new state towards the given image `y` (in model space, the state's shape).
#[derive(Clone)]
pub enum Constraint {
    /// Plain reverse steps (SDEdit, denoising, decoding an inverted noise).
    None,
    /// RePaint: where `mask` is 1 the pixel is known; after every reverse move those pixels are
    /// replaced by a forward sample q(x_level | y) of the given image (y itself at level 0).
    Known { mask: Tensor<4>, image: Tensor<4> },
    /// ILVR: after every reverse move the low-pass part phi(x) of the state is replaced by that of
    /// q(x_level | y): x <- x - phi(x) + phi(y_level), with phi the mean over `factor` x `factor`
    /// blocks spread back over each block (an orthogonal projection, so phi(phi(x)) = phi(x)).
    LowPass { factor: usize, reference: Tensor<4> },
}

/// One move of a run over levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Move {
    /// Denoise from `from` to `from - 1`.
    Reverse { from: usize },
    /// Re-noise from `from` to `from + 1`.
    Forward { from: usize },
}

/// RePaint's resampling schedule (Lugmayr et al. 2022, section 4.2; the reference code's
/// `get_schedule_jump`) over `levels` levels: reverse moves down from `levels` to 0, and at every
/// level `jump`, `2 jump`, ... below `levels - jump` (and at 0) go back up `jump` levels and down
/// again, `resamplings - 1` times. `resamplings = 1` is the plain chain of `levels` reverse moves.
pub fn repaint_moves(levels: usize, jump: usize, resamplings: usize) -> Vec<Move> {
    assert!(jump >= 1 && resamplings >= 1, "jump and resamplings are at least 1");
    let mut left: Vec<usize> = vec![0; levels + 1];
    let mut at = 0;
    while at + jump < levels {
        left[at] = resamplings - 1;
        at += jump;
    }
    let mut moves = Vec::new();
    let mut level = levels;
    while level >= 1 {
        moves.push(Move::Reverse { from: level });
        level -= 1;
        if left[level] > 0 {
            left[level] -= 1;
            for _ in 0..jump {
                moves.push(Move::Forward { from: level });
                level += 1;
            }
        }
    }
    moves
}

/// sqrt(abar) at a level (1 at level 0).
fn alpha_bar_at(s: &NoiseSchedule, tau: &[usize], level: usize) -> f64 {
    if level == 0 { 1.0 } else { s.alpha_bar[tau[tau.len() - level]] }
}

/// The timestep index of a level (`None` at level 0).
fn index_at(tau: &[usize], level: usize) -> Option<usize> {
    (level > 0).then(|| tau[tau.len() - level])
}

/// The block-mean low-pass phi of ILVR: each `factor` x `factor` block replaced by its mean.
pub fn low_pass(x: Tensor<4>, factor: usize) -> Tensor<4> {
    if factor <= 1 {
        return x;
    }
    let [n, c, h, w] = x.dims();
    assert!(h % factor == 0 && w % factor == 0, "the image side {h}x{w} is not a multiple of {factor}");
    // Each block as its own two axes, averaged, then repeated back over the block.
    let blocks: Tensor<6> = x.reshape([n, c, h / factor, factor, w / factor, factor]);
    blocks.mean_dim(3).mean_dim(5).repeat_dim(3, factor).repeat_dim(5, factor).reshape([n, c, h, w])
}

/// y noised to a level with standard normal `noise`: sqrt(abar) y + sqrt(1 - abar) noise.
fn noised(y: Tensor<4>, abar: f64, noise: Tensor<4>) -> Tensor<4> {
    if abar >= 1.0 { y } else { y.mul_scalar(abar.sqrt()) + noise.mul_scalar((1.0 - abar).sqrt()) }
}

/// Per-image noise streams of a run: `reverse` for the states (x at the start, each reverse step's
/// z), `constraint` for noising the given image and for re-noising jumps. Image i depends only on
/// (seed, first_cell + i), as in the sampler.
struct Streams {
    reverse: Vec<NoiseSource>,
    constraint: Vec<NoiseSource>,
}

impl Streams {
    fn new(seed: u64, first_cell: usize, count: usize) -> Self {
        let mut reverse: Vec<NoiseSource> = (0..count).map(|i| NoiseSource::for_cell(seed, first_cell + i)).collect();
        // The sampler draws each image's label first; so does a restoration, so that with nothing
        // given it is the sampler's run, number for number.
        for stream in &mut reverse {
            stream.index(0..NUM_DIGITS);
        }
        Self { reverse, constraint: (0..count).map(|i| NoiseSource::for_constraint(seed, first_cell + i)).collect() }
    }

    fn draw(streams: &mut [NoiseSource], shape: [usize; 4], device: &Device) -> Tensor<4> {
        let per = shape[1] * shape[2] * shape[3];
        let values: Vec<f32> = streams.iter_mut().flat_map(|s| s.normal(per)).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// How a run starts.
#[derive(Clone)]
pub enum Start {
    /// x at the top level drawn from N(0, I) (inpainting, super-resolution).
    Noise,
    /// The given image noised to the top level (SDEdit; denoising starts from its own x_t).
    Noised(Tensor<4>),
    /// This exact state at the top level (a noisy image scaled to its matched t, an inverted noise).
    State(Tensor<4>),
}

/// What one move produced.
pub struct RestoreStep {
    pub done: usize,
    pub total: usize,
    /// The level after the move and its paper's t (0 at x_0).
    pub level: usize,
    pub t: usize,
    pub x: Tensor<4>,
    /// The x_0 estimate of a reverse move (the state itself after a forward move).
    pub x0_pred: Tensor<4>,
}

/// A restoration run over `tau` (descending timestep indices, `tau[0]` the top level).
pub struct Restoration {
    schedule: NoiseSchedule,
    tau: Vec<usize>,
    moves: Vec<Move>,
    position: usize,
    eta: f64,
    clip_x0: bool,
    constraint: Constraint,
    streams: Streams,
    x: Tensor<4>,
}

impl Restoration {
    /// `shape` is the state's [n, c, h, w]; images are drawn from streams (seed, first_cell + i).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        schedule: &NoiseSchedule,
        tau: Vec<usize>,
        moves: Vec<Move>,
        start: Start,
        constraint: Constraint,
        eta: f64,
        clip_x0: bool,
        (seed, first_cell): (u64, usize),
        shape: [usize; 4],
        device: &Device,
    ) -> Self {
        assert!(!tau.is_empty() && tau.windows(2).all(|w| w[0] > w[1]), "timesteps must descend");
        let mut streams = Streams::new(seed, first_cell, shape[0]);
        let top = tau.len();
        let x = match start {
            Start::Noise => Streams::draw(&mut streams.reverse, shape, device),
            Start::Noised(y) => {
                let noise = Streams::draw(&mut streams.reverse, shape, device);
                noised(y, alpha_bar_at(schedule, &tau, top), noise)
            }
            Start::State(x) => x,
        };
        Self { schedule: schedule.clone(), tau, moves, position: 0, eta, clip_x0, constraint, streams, x }
    }

    pub fn total_moves(&self) -> usize {
        self.moves.len()
    }

    pub fn moves_done(&self) -> usize {
        self.position
    }

    pub fn is_done(&self) -> bool {
        self.position == self.moves.len()
    }

    pub fn current(&self) -> Tensor<4> {
        self.x.clone()
    }

    /// The timestep index the next move needs a noise prediction at (`None` when the next move
    /// is a forward one, or the run is done).
    pub fn next_index(&self) -> Option<usize> {
        match self.moves.get(self.position)? {
            Move::Reverse { from } => index_at(&self.tau, *from),
            Move::Forward { .. } => None,
        }
    }

    /// Takes the next move; `eps` is the noise prediction at (x, timestep index). `None` once done.
    pub fn step(&mut self, eps: &mut dyn FnMut(Tensor<4>, usize) -> Tensor<4>) -> Option<RestoreStep> {
        let m = *self.moves.get(self.position)?;
        let device = self.x.device();
        let shape = self.x.dims();
        let (level, x0_pred) = match m {
            Move::Forward { from } => {
                let ratio = alpha_bar_at(&self.schedule, &self.tau, from + 1) / alpha_bar_at(&self.schedule, &self.tau, from);
                let z = Streams::draw(&mut self.streams.constraint, shape, &device);
                self.x = self.x.clone().mul_scalar(ratio.sqrt()) + z.mul_scalar((1.0 - ratio).max(0.0).sqrt());
                (from + 1, self.x.clone())
            }
            Move::Reverse { from } => {
                let i = index_at(&self.tau, from).expect("a reverse move starts above level 0");
                let prev = index_at(&self.tau, from - 1);
                let e = eps(self.x.clone(), i);
                let z = (self.eta > 0.0 && prev.is_some()).then(|| Streams::draw(&mut self.streams.reverse, shape, &device));
                let StepOutput { x_prev, x0_pred } = ddim_step(&self.schedule, self.x.clone(), i, prev, e, self.eta, self.clip_x0, z);
                self.x = self.apply_constraint(x_prev, from - 1, shape, &device);
                (from - 1, x0_pred)
            }
        };
        self.position += 1;
        Some(RestoreStep {
            done: self.position,
            total: self.moves.len(),
            level,
            t: index_at(&self.tau, level).map_or(0, |i| i + 1),
            x: self.x.clone(),
            x0_pred,
        })
    }

    fn apply_constraint(&mut self, x: Tensor<4>, level: usize, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let abar = alpha_bar_at(&self.schedule, &self.tau, level);
        match &self.constraint {
            Constraint::None => x,
            Constraint::Known { mask, image } => {
                let noise = Streams::draw(&mut self.streams.constraint, shape, device);
                let known = noised(image.clone(), abar, noise);
                known.mul(mask.clone()) + x.mul(mask.clone().neg().add_scalar(1.0))
            }
            Constraint::LowPass { factor, reference } => {
                let noise = Streams::draw(&mut self.streams.constraint, shape, device);
                let y = noised(reference.clone(), abar, noise);
                x.clone() - low_pass(x, *factor) + low_pass(y, *factor)
            }
        }
    }
}

/// The level-0-to-top moves of a plain reverse run over `levels` levels.
pub fn reverse_moves(levels: usize) -> Vec<Move> {
    (1..=levels).rev().map(|from| Move::Reverse { from }).collect()
}

/// The t whose noise level matches Gaussian noise of standard deviation `sigma` added to a clean
/// image (in model space): x_t / sqrt(abar_t) = x_0 + sqrt((1 - abar_t) / abar_t) eps, so the
/// index whose sqrt((1 - abar) / abar) is nearest `sigma` (by log ratio). Returns the index.
pub fn matched_index(s: &NoiseSchedule, sigma: f64) -> usize {
    let ratio = |i: usize| ((1.0 - s.alpha_bar[i]) / s.alpha_bar[i]).sqrt();
    (0..s.timesteps())
        .min_by(|&a, &b| (ratio(a) / sigma).ln().abs().total_cmp(&(ratio(b) / sigma).ln().abs()))
        .expect("a schedule has timesteps")
}

/// A noisy image y = x_0 + sigma n as the state x_t of its matched index i: sqrt(abar_i) y.
pub fn noisy_as_state(s: &NoiseSchedule, noisy: Tensor<4>, i: usize) -> Tensor<4> {
    noisy.mul_scalar(s.sqrt_alpha_bar[i])
}

/// Tweedie's estimate E[x_0 | x_t] from the predicted noise at index i: the minimum mean
/// square error answer, (x_t - sqrt(1 - abar) eps) / sqrt(abar).
pub fn tweedie_estimate(s: &NoiseSchedule, x_t: Tensor<4>, i: usize, eps: Tensor<4>) -> Tensor<4> {
    let n = x_t.dims()[0];
    x0_from_eps(s, x_t, &vec![i; n], eps)
}

/// One deterministic DDIM inversion move from index `from` (`None`: from x_0) up to `to` (Song et
/// al. 2021, Eq. 13 run forwards; Dhariwal & Nichol 2021, Eq. 55): the probability-flow ODE
/// integrated towards noise with the model's eps at the start of the move,
/// x_to = sqrt(abar_to) x0_hat + sqrt(1 - abar_to) eps.
pub fn ddim_invert_step(s: &NoiseSchedule, x: Tensor<4>, from: Option<usize>, to: usize, eps: Tensor<4>) -> Tensor<4> {
    let n = x.dims()[0];
    let x0 = match from {
        Some(i) => x0_from_eps(s, x, &vec![i; n], eps.clone()),
        None => x,
    };
    x0.mul_scalar(s.sqrt_alpha_bar[to]) + eps.mul_scalar(s.sqrt_one_minus_alpha_bar[to])
}

/// DDIM inversion of x_0 over `tau` (descending; the run climbs from x_0 through tau reversed to
/// tau[0]): the state at the top, which DDIM with eta = 0 over the same `tau` maps back to about
/// x_0. At the first move (from x_0) the noise is predicted at the lowest index, tau's last.
pub fn ddim_invert(s: &NoiseSchedule, x0: Tensor<4>, tau: &[usize], eps: &mut dyn FnMut(Tensor<4>, usize) -> Tensor<4>) -> Tensor<4> {
    let up: Vec<usize> = tau.iter().rev().copied().collect();
    let mut x = x0;
    let mut from: Option<usize> = None;
    for &to in &up {
        let e = eps(x.clone(), from.unwrap_or(up[0]));
        x = ddim_invert_step(s, x, from, to, e);
        from = Some(to);
    }
    x
}

/// Spherical interpolation between two noises (Shoemake 1985), the path between inverted noises
/// that keeps a Gaussian draw's norm: sin((1 - w) theta) / sin(theta) a + sin(w theta) / sin(theta) b.
/// `a` and `b` are flat vectors of the same length; nearly parallel ones fall back to a straight line.
pub fn slerp(a: &[f32], b: &[f32], w: f64) -> Vec<f32> {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let (na, nb) = (a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt(), b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt());
    let cos = (dot / (na * nb)).clamp(-1.0, 1.0);
    let theta = cos.acos();
    if theta.sin().abs() < 1e-6 {
        return a.iter().zip(b).map(|(x, y)| ((1.0 - w) * *x as f64 + w * *y as f64) as f32).collect();
    }
    let (ka, kb) = (((1.0 - w) * theta).sin() / theta.sin(), (w * theta).sin() / theta.sin());
    a.iter().zip(b).map(|(x, y)| (ka * *x as f64 + kb * *y as f64) as f32).collect()
}
