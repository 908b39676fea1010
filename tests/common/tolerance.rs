//! The one tolerance policy for comparing a computation with its recorded fixture, or one backend
//! with another. Every such comparison in the native and the browser suites goes through a
//! [`Tolerance`] named here, so each bound is written once with the measurement behind it.
//!
//! A value `got` matches `want` when |got - want| <= absolute + relative * |want|: the relative
//! part covers values of ordinary size, the absolute floor covers values near zero, where a
//! reordered f32 sum leaves an error set by the size of what was summed, not by the result.
//!
//! Why values move at all: the same code on another CPU takes other SIMD paths (macerator picks
//! AVX-512, AVX2 or SSE at run time for flex's element-wise ops and reductions; gemm picks its
//! microkernel by CPU) and rayon splits work by thread count, so f32 sums are added in another
//! order. WebGPU accumulates in yet another order. None of these changes a figure a reader sees;
//! a changed network or changed maths moves values by orders of magnitude more, and the fixtures
//! that depend on the shipped weights also record the weights' SHA-256 (checked exactly).
//! `scripts/check-portable.sh` reruns the fixture tests under other CPUs (QEMU) and thread counts.
#![allow(dead_code)] // each test file uses its own subset

#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub relative: f64,
    pub absolute: f64,
}

impl Tolerance {
    pub const fn new(relative: f64, absolute: f64) -> Self {
        Self { relative, absolute }
    }

    /// The largest allowed |got - want| for this `want`.
    pub fn bound(&self, want: f64) -> f64 {
        self.absolute + self.relative * want.abs()
    }

    /// NaN or infinity never matches.
    pub fn allows(&self, got: f64, want: f64) -> bool {
        got.is_finite() && want.is_finite() && (got - want).abs() <= self.bound(want)
    }

    /// Every element of `got` against `want`; on failure the message names `what`, the first
    /// element out of bounds and both values. On success, the worst |difference| / bound (< 1).
    pub fn check<T: Copy + Into<f64>>(&self, what: &str, got: &[T], want: &[T]) -> Result<f64, String> {
        if got.len() != want.len() {
            return Err(format!("{what}: {} values against {} in the fixture", got.len(), want.len()));
        }
        let mut worst = 0.0f64;
        for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
            let (a, b): (f64, f64) = (a.into(), b.into());
            if !self.allows(a, b) {
                return Err(format!("{what}[{k}]: {a:e} against {b:e}: |difference| {:e} exceeds {:e}", (a - b).abs(), self.bound(b)));
            }
            worst = worst.max((a - b).abs() / self.bound(b).max(f64::MIN_POSITIVE));
        }
        Ok(worst)
    }

    /// [`Tolerance::check`] for one value.
    pub fn check_one<T: Copy + Into<f64>>(&self, what: &str, got: T, want: T) -> Result<f64, String> {
        self.check(what, &[got], &[want])
    }
}

// Native, against fixtures written natively (same backend, any x86-64 CPU, any thread count).

/// ELBO terms in nats per image. Measured: 6e-9 nats on a 4.8e-4-nat term between an AVX-512 and
/// an AVX2-only EPYC (1.3e-5 relative); the large terms (up to ~400 nats) agree to ~1e-7 relative.
/// The floor, 1e-6 nats, is 2e-9 bits/dim: far below the 2-3 decimals the page prints.
pub const ELBO_TERM: Tolerance = Tolerance::new(1e-5, 1e-6);

/// L_simple terms (mean squared noise error per pixel, ~1e-3 to 1): the network's outputs reordered.
pub const SIMPLE_TERM: Tolerance = Tolerance::new(1e-5, 1e-7);

/// Sampler states in the model's space ([-1, 1]; a grey level is 2/255 = 7.8e-3): five guided DDIM
/// steps reorder the network's sums by ~1e-6 at most; 1e-5 is 1/800 of a grey level.
pub const SAMPLER_STATE: Tolerance = Tolerance::new(0.0, 1e-5);

/// Points of the 2-D paths (the plane's extent is 2.5): f32 tensors, small matmuls, host f64 maths.
pub const PATH_POINT: Tolerance = Tolerance::new(0.0, 1e-5);

/// A short 2-D training run (40 Adam steps): each loss relative to itself. Adam carries reordered
/// gradient sums forward from step to step, which grows the first steps' ~1e-7 to ~1e-6.
pub const TRAINING_2D_LOSS: Tolerance = Tolerance::new(1e-4, 0.0);

/// The learned 2-D score field after those steps: every arrow within this share of the longest.
pub const TRAINING_2D_FIELD: f64 = 1e-4;

/// An arrow-field tolerance: `share` of the field's longest arrow, absolute.
pub fn of_longest(share: f64, field: &[f64]) -> Tolerance {
    Tolerance::new(0.0, share * field.iter().fold(0.0f64, |a, b| a.max(b.abs())))
}

/// The U-Net with the fused SiLU(GroupNorm(x)) against plain Burn's modules: the fused exp is
/// within 1e-7 relative and the statistics are summed in another order, seven times in a row, so
/// eps differs by ~1e-6; 1e-4 relative and 1e-5 absolute leave a margin of ten.
pub const FUSED_KERNEL: Tolerance = Tolerance::new(1e-4, 1e-5);

// The browser suite, against the native fixtures.

/// The CPU fallback in wasm (flex with simd128 instead of AVX): relative 1e-4 as before the policy,
/// with the same nats floor as natively.
pub const WASM_ELBO_TERM: Tolerance = Tolerance::new(1e-4, 1e-6);

/// WebGPU: the network's outputs differ from the CPU's by up to ~2e-5 (f32 accumulation order). A
/// KL term is a squared mean difference, so the smallest late terms (< 0.05 nats, < 1e-4 bits/dim)
/// carry that as up to ~1e-3 relative: 2e-5 nats absolute (4e-8 bits/dim) covers them.
pub const WEBGPU_ELBO_TERM: Tolerance = Tolerance::new(1e-4, 2e-5);

/// L_simple in wasm on the CPU.
pub const WASM_SIMPLE_TERM: Tolerance = Tolerance::new(1e-4, 1e-7);

/// L_simple on WebGPU: the raw network error (no KL), so the backend difference shows at ~1e-4.
pub const WEBGPU_SIMPLE_TERM: Tolerance = Tolerance::new(1e-3, 2e-6);

/// A sum over all terms (the bound, the prior term L_T) on either browser backend.
pub const BROWSER_SUM: Tolerance = Tolerance::new(1e-4, 0.0);

/// One U-Net forward or one reverse step on WebGPU against the CPU: ~2e-5 measured.
pub const WEBGPU_FORWARD: Tolerance = Tolerance::new(0.0, 1e-4);

/// The 2-D paths on WebGPU: f32 kernels of another device over 1000 steps; 1e-3 is 1/5000 of the
/// plane's width.
pub const WEBGPU_PATH_POINT: Tolerance = Tolerance::new(0.0, 1e-3);

/// The first 2-D training steps on WebGPU (losses relative, the field as a share of its longest).
pub const WEBGPU_TRAINING_2D_LOSS: Tolerance = Tolerance::new(1e-3, 0.0);
pub const WEBGPU_TRAINING_2D_FIELD: f64 = 1e-3;

/// Guided sampler states in the browser against native: guidance w = 2 scales the network's backend
/// differences (~2e-5) by up to 1 + 2w = 5, and a 10-step DDIM jump by up to ~3 more: 1e-3 is 1/8
/// of a grey level.
pub const BROWSER_SAMPLER_STATE: Tolerance = Tolerance::new(0.0, 1e-3);

/// The sampler page's tiles (8-bit grey levels) against native states rounded the same way: a
/// state within [`BROWSER_SAMPLER_STATE`] can still round across a level boundary, so one level.
pub const BROWSER_TILE_LEVELS: Tolerance = Tolerance::new(0.0, 1.0);

/// The restore page's operations on WebGPU against native: up to ten moves (inversion then
/// decoding, or RePaint's resampled chain) carry the network's backend difference (~2e-5) through
/// twice the sampler fixture's steps, and the ODE inversion magnifies it on the way up. Measured on
/// SwiftShader: inversion 1.8e-3, RePaint 9.7e-4, the rest under 6e-4. 4e-3 is half a grey level.
pub const WEBGPU_RESTORE_STATE: Tolerance = Tolerance::new(0.0, 4e-3);
