//! The U-Net's hottest chain, SiLU(GroupNorm(x)), as one operation of our own through Burn's
//! backend extension (`#[backend_extension]`, Burn's `extension` feature), and GroupNorm alone
//! (the attention block's) as the same operation without the SiLU. On the CPU backend
//! (flex, natively and in wasm) it is two passes over the tensor, the group statistics and then
//! normalise, scale, shift and SiLU together, with a branch-free exp that the compiler vectorises
//! (simd128 in the browser), where Burn composes about nine operations plus a scalar `expf` per
//! element. On WebGPU it is one CubeCL kernel (`nets::fused_cube`) in place of about ten. Under
//! autodiff (training) the model keeps plain Burn's `GroupNorm` and `silu`, which are also the
//! reference the tests compare both with.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Dispatch, DispatchDevice, Flex, backend_extension, tensor::FloatTensor};
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::GroupNorm;
use burn::tensor::activation::silu;
use burn::tensor::{Bytes, DType, Device, Tensor};

#[backend_extension(Flex, Cube: cfg(feature = "webgpu"))]
pub trait FusedOps: burn::backend::Backend {
    /// SiLU(GroupNorm(x) gamma + beta): x [n, c, h, w], gamma and beta [c], `groups` dividing c.
    fn group_norm_silu(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64) -> FloatTensor<Self>;
    /// The same of x + bias, bias [n, c] added to every pixel of its image's channel (the U-Net's
    /// time and class embedding before the block's second norm).
    fn add_group_norm_silu(x: FloatTensor<Self>, bias: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64) -> FloatTensor<Self>;
    /// GroupNorm(x) gamma + beta alone.
    fn group_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64) -> FloatTensor<Self>;
    /// A convolution weight in the memory order the backend's convolution reads (the same values).
    fn conv_weight_layout(weight: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl FusedOps for Flex {
    fn group_norm_silu(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, groups: usize, epsilon: f64) -> FlexTensor {
        flex_group_norm(x, None, gamma, beta, groups, epsilon, true)
    }

    fn add_group_norm_silu(x: FlexTensor, bias: FlexTensor, gamma: FlexTensor, beta: FlexTensor, groups: usize, epsilon: f64) -> FlexTensor {
        flex_group_norm(x, Some(bias), gamma, beta, groups, epsilon, true)
    }

    fn group_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, groups: usize, epsilon: f64) -> FlexTensor {
        flex_group_norm(x, None, gamma, beta, groups, epsilon, false)
    }

    fn conv_weight_layout(weight: FlexTensor) -> FlexTensor {
        weight
    }
}

fn flex_group_norm(x: FlexTensor, bias: Option<FlexTensor>, gamma: FlexTensor, beta: FlexTensor, groups: usize, epsilon: f64, silu: bool) -> FlexTensor {
    let x = x.to_contiguous();
    let shape = x.layout().shape().clone();
    let dims: Vec<usize> = shape.iter().copied().collect();
    let (n, c) = (dims[0], dims[1]);
    let spatial: usize = dims[2..].iter().product();
    let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
    let bias = bias.map(|b| b.to_contiguous());
    let out = group_norm_f32(contiguous(&x), bias.as_ref().map(contiguous), contiguous(&gamma), contiguous(&beta), n, c, spatial, groups, epsilon, silu);
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), DType::F32)
}

#[cfg(feature = "webgpu")]
impl FusedOps for burn::backend::Cube {
    fn group_norm_silu(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64) -> FloatTensor<Self> {
        crate::nets::fused_cube::group_norm_silu(x, None, gamma, beta, groups, epsilon)
    }

    fn add_group_norm_silu(x: FloatTensor<Self>, bias: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64) -> FloatTensor<Self> {
        crate::nets::fused_cube::group_norm_silu(x, Some(bias), gamma, beta, groups, epsilon)
    }

    fn group_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64) -> FloatTensor<Self> {
        crate::nets::fused_cube::group_norm(x, gamma, beta, groups, epsilon)
    }

    fn conv_weight_layout(weight: FloatTensor<Self>) -> FloatTensor<Self> {
        crate::nets::fused_cube::channels_last(weight)
    }
}

/// A contiguous f32 tensor's elements.
fn contiguous(t: &FlexTensor) -> &[f32] {
    let (start, end) = t.layout().contiguous_offsets().expect("made contiguous");
    &t.storage::<f32>()[start..end]
}

/// The fused chain on host values, laid out [n, c, spatial], with an optional bias [n, c] added
/// first, and SiLU after it when `silu`. The statistics are those of Burn's GroupNorm (mean, then
/// the mean of squared deviations, biased), accumulated in f64.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_f32(x: &[f32], bias: Option<&[f32]>, gamma: &[f32], beta: &[f32], n: usize, c: usize, spatial: usize, groups: usize, epsilon: f64, silu: bool) -> Vec<f32> {
    assert!(c % groups == 0 && x.len() == n * c * spatial && gamma.len() == c && beta.len() == c, "GroupNorm shapes");
    assert!(bias.is_none_or(|b| b.len() == n * c), "a bias per image and channel");
    let per_group = c / groups * spatial;
    let mut out = vec![0.0f32; x.len()];
    let one_group = |(k, (group, dst)): (usize, (&[f32], &mut [f32]))| {
        let first_channel = (k % groups) * (c / groups);
        // The bias of each of the group's channels (k / groups is the image).
        let shift = |j: usize| bias.map_or(0.0, |b| b[(k / groups) * c + first_channel + j] as f64);
        let channels = || group.chunks(spatial).enumerate().map(|(j, values)| (shift(j), values));
        let mean = channels().map(|(b, values)| values.iter().map(|&v| v as f64 + b).sum::<f64>()).sum::<f64>() / per_group as f64;
        let var = channels().map(|(b, values)| values.iter().map(|&v| (v as f64 + b - mean).powi(2)).sum::<f64>()).sum::<f64>() / per_group as f64;
        let inv = 1.0 / (var + epsilon).sqrt();
        for (j, (src, dst)) in group.chunks(spatial).zip(dst.chunks_mut(spatial)).enumerate() {
            // y = (x - mean) inv gamma + beta = x a + b, per channel.
            let ch = first_channel + j;
            let a = (inv * gamma[ch] as f64) as f32;
            let b = (beta[ch] as f64 + (shift(j) - mean) * inv * gamma[ch] as f64) as f32;
            if silu {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = silu_f32(v * a + b);
                }
            } else {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v * a + b;
                }
            }
        }
    };
    // Natively the groups spread over rayon's threads (flex's own pool); a browser worker has one.
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        x.par_chunks(per_group).zip(out.par_chunks_mut(per_group)).enumerate().for_each(one_group);
    }
    #[cfg(target_family = "wasm")]
    x.chunks(per_group).zip(out.chunks_mut(per_group)).enumerate().for_each(one_group);
    out
}

/// SiLU, y / (1 + e^-y), with [`exp_f32`].
#[inline(always)]
pub fn silu_f32(y: f32) -> f32 {
    y / (1.0 + exp_f32(-y))
}

/// e^x without branches or table lookups, so that a loop of it vectorises: x = n ln 2 + r with
/// |r| <= ln 2 / 2 (ln 2 split in two parts, Cody-Waite), e^r by its degree-6 Taylor-like
/// polynomial (Cephes' `expf` coefficients), times 2^n built in the exponent bits. Relative error
/// at most 1e-7 on [-87, 88] (`tests/fused.rs` measures 8.3e-8 against f64; SiLU with it 1.4e-7);
/// below -87 it returns e^-87 = 1.6e-38 and above 88 it saturates at e^88, where SiLU no longer
/// needs it.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by adding and subtracting 1.5 * 2^23 (no libm call, so it vectorises).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5.000_000_1e-1;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Whether the fused path is on (it is unless a benchmark or a test asks for plain Burn).
static FUSED: AtomicBool = AtomicBool::new(true);

/// Turn the fused path on or off for the whole process (benchmarks and tests compare the two).
pub fn set_fused(on: bool) {
    FUSED.store(on, Ordering::Relaxed);
}

/// Whether tensors on `device` take the fused path: flex or (in the WebGPU build) CubeCL, not
/// under autodiff, and not switched off.
pub fn takes_fused_path(device: &Device) -> bool {
    FUSED.load(Ordering::Relaxed) && match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "webgpu")]
        DispatchDevice::Cube(_) => true,
        _ => false,
    }
}

fn fused_here(x: &Tensor<4>) -> bool {
    takes_fused_path(&x.device())
}

/// SiLU(norm(x)) for the U-Net: the fused operation where the backend has it, Burn's modules
/// elsewhere.
pub fn norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) if fused_here(&x) => {
            let out = <Dispatch as FusedOps>::group_norm_silu(x.into_dispatch(), gamma.val().into_dispatch(), beta.val().into_dispatch(), norm.num_groups, norm.epsilon);
            Tensor::from_dispatch(out)
        }
        _ => reference_norm_silu(norm, x),
    }
}

/// Plain Burn: the reference the fused path is tested against.
pub fn reference_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    silu(norm.forward(x))
}

/// SiLU(norm(x + bias)), bias [n, c] broadcast over each channel's pixels: fused where the
/// backend has it.
pub fn add_norm_silu(norm: &GroupNorm, x: Tensor<4>, bias: Tensor<2>) -> Tensor<4> {
    match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) if fused_here(&x) => {
            let out = <Dispatch as FusedOps>::add_group_norm_silu(x.into_dispatch(), bias.into_dispatch(), gamma.val().into_dispatch(), beta.val().into_dispatch(), norm.num_groups, norm.epsilon);
            Tensor::from_dispatch(out)
        }
        _ => reference_add_norm_silu(norm, x, bias),
    }
}

/// norm(x): the fused operation where the backend has it, Burn's module elsewhere.
pub fn norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    match (&norm.gamma, &norm.beta) {
        (Some(gamma), Some(beta)) if fused_here(&x) => {
            let out = <Dispatch as FusedOps>::group_norm(x.into_dispatch(), gamma.val().into_dispatch(), beta.val().into_dispatch(), norm.num_groups, norm.epsilon);
            Tensor::from_dispatch(out)
        }
        _ => norm.forward(x),
    }
}

/// `module` with every convolution weight (its 4-D parameters) stored in the memory order its
/// backend's convolution reads, once, for inference: on WebGPU channels-last, which Burn's
/// convolution would otherwise copy each weight into at every call; elsewhere unchanged.
pub fn conv_weights_laid_out<M: Module>(module: M) -> M {
    struct Relayout;
    impl ModuleMapper for Relayout {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D != 4 || !takes_fused_path(&param.val().device()) {
                return param;
            }
            param.map(|w| Tensor::from_dispatch(<Dispatch as FusedOps>::conv_weight_layout(w.into_dispatch())))
        }
    }
    module.map(&mut Relayout)
}

/// Plain Burn's add, GroupNorm and SiLU.
pub fn reference_add_norm_silu(norm: &GroupNorm, x: Tensor<4>, bias: Tensor<2>) -> Tensor<4> {
    let [n, c] = bias.dims();
    reference_norm_silu(norm, x + bias.reshape([n, c, 1, 1]))
}
