//! The fused SiLU(GroupNorm(x)) (and SiLU(GroupNorm(x + bias))) as one WebGPU kernel (CubeCL): one
//! cube of threads per (image, group) sums the group, then its squared deviations, in shared
//! memory, and writes normalised, scaled, shifted and SiLU'd values, where Burn's modules launch
//! about ten kernels. Without the SiLU the same kernel is the attention block's GroupNorm.

use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::ops::{permute_nchw_to_nhwc, permute_nhwc_to_nchw};
use burn_cubecl::tensor::CubeTensor;
use burn::backend::cubecl::dtype_to_storage_type;
use cubecl::prelude::*;

/// Threads per cube: a power of two for the tree reduction.
const THREADS: u32 = 256;

#[cube(launch)]
fn group_norm_silu_kernel<F: Float>(
    input: &Tensor<F>,
    bias: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    output: &mut Tensor<F>,
    groups: u32,
    channels_per_group: u32,
    spatial: u32,
    row: u32,
    epsilon: f32,
    #[comptime] threads: u32,
    #[comptime] has_bias: bool,
    #[comptime] silu: bool,
    #[define(F)] _dtype: ElemType,
) {
    let group = CUBE_POS_X as usize;
    let unit = UNIT_POS_X as usize;
    let width = CUBE_DIM_X as usize;
    let per = (channels_per_group * spatial) as usize;
    // Input and output are addressed through their strides ([n, c, h, w] in any memory order: a
    // convolution's output is channels-last, and so is the output a convolution reads next).
    let image = group / groups as usize;
    let first_channel = (group % groups as usize) * channels_per_group as usize;
    let plane = spatial as usize;
    let w_len = row as usize;
    let origin = image * input.stride(0) + first_channel * input.stride(1);
    let bias_row = image * (groups * channels_per_group) as usize + first_channel;
    let mut partial = Shared::<[F]>::new_slice(threads as usize);

    let mut sum = F::new(0.0_f32);
    let mut k = unit;
    while k < per {
        sum += group_value(input, bias, k, origin, bias_row, plane, w_len, has_bias);
        k += width;
    }
    let mean = cube_sum(&mut partial, sum) / F::cast_from(per as u32);

    // The variance: the mean squared deviation (biased, as Burn's GroupNorm).
    let mut sq = F::new(0.0_f32);
    let mut m = unit;
    while m < per {
        let d = group_value(input, bias, m, origin, bias_row, plane, w_len, has_bias) - mean;
        sq += d * d;
        m += width;
    }
    let inv = F::new(1.0_f32) / (cube_sum(&mut partial, sq) / F::cast_from(per as u32) + F::cast_from(epsilon)).sqrt();

    let mut j = unit;
    while j < per {
        let channel = first_channel + j / plane;
        let v = group_value(input, bias, j, origin, bias_row, plane, w_len, has_bias);
        let y = (v - mean) * inv * gamma[channel] + beta[channel];
        let pixel = j % plane;
        let at = image * output.stride(0) + channel * output.stride(1) + (pixel / w_len) * output.stride(2) + (pixel % w_len) * output.stride(3);
        if silu {
            output[at] = y / (F::new(1.0_f32) + (F::new(0.0_f32) - y).exp());
        } else {
            output[at] = y;
        }
        j += width;
    }
}

/// Element k of a group (`plane` pixels per channel, rows of `w_len`) read through the input's
/// strides from `origin`, with its channel's bias added when there is one.
#[cube]
#[allow(clippy::too_many_arguments)]
fn group_value<F: Float>(input: &Tensor<F>, bias: &Tensor<F>, k: usize, origin: usize, bias_row: usize, plane: usize, w_len: usize, #[comptime] has_bias: bool) -> F {
    let at = origin + (k / plane) * input.stride(1) + ((k % plane) / w_len) * input.stride(2) + (k % w_len) * input.stride(3);
    let mut v = input[at];
    if has_bias {
        v += bias[bias_row + k / plane];
    }
    v
}

/// The sum over the cube of every unit's `value`, by a tree in shared memory; every unit gets it.
#[cube]
fn cube_sum<F: Float>(partial: &mut Shared<[F]>, value: F) -> F {
    let unit = UNIT_POS_X as usize;
    partial[unit] = value;
    sync_cube();
    let mut half = (CUBE_DIM_X / 2) as usize;
    while half > 0 {
        if unit < half {
            partial[unit] = partial[unit] + partial[unit + half];
        }
        sync_cube();
        half = half / 2;
    }
    let total = partial[0];
    // Before the next sum overwrites the slots.
    sync_cube();
    total
}

/// SiLU(GroupNorm(x + bias) gamma + beta) for x [n, c, h, w] (bias [n, c], or none) on a CubeCL
/// device: one launch, reading x in whatever layout it has. The output is channels-last in
/// memory, the layout Burn's convolution works in, so the convolution that reads it next does
/// not copy it first.
pub fn group_norm_silu(x: CubeTensor, bias: Option<CubeTensor>, gamma: CubeTensor, beta: CubeTensor, groups: usize, epsilon: f64) -> CubeTensor {
    launch_group_norm(x, bias, gamma, beta, groups, epsilon, true, true)
}

/// GroupNorm(x) gamma + beta alone, the same way, row-major: the attention block reshapes it.
pub fn group_norm(x: CubeTensor, gamma: CubeTensor, beta: CubeTensor, groups: usize, epsilon: f64) -> CubeTensor {
    launch_group_norm(x, None, gamma, beta, groups, epsilon, false, false)
}

/// A convolution weight [out, in, kh, kw] stored channels-last ([out, kh, kw, in] in memory), as
/// Burn's convolution reads it: stored so once, it is not copied at every call.
pub fn channels_last(x: CubeTensor) -> CubeTensor {
    permute_nhwc_to_nchw(into_contiguous(permute_nchw_to_nhwc(x)))
}

#[allow(clippy::too_many_arguments)]
fn launch_group_norm(x: CubeTensor, bias: Option<CubeTensor>, gamma: CubeTensor, beta: CubeTensor, groups: usize, epsilon: f64, silu: bool, channels_last: bool) -> CubeTensor {
    let (gamma, beta) = (into_contiguous(gamma), into_contiguous(beta));
    let has_bias = bias.is_some();
    // Without a bias the kernel never reads its bias argument; beta stands in for it.
    let bias = bias.map(into_contiguous).unwrap_or_else(|| beta.clone());
    let dims: Vec<usize> = x.meta.shape().iter().copied().collect();
    assert_eq!(dims.len(), 4, "the fused GroupNorm takes [n, c, h, w]");
    let (n, c) = (dims[0], dims[1]);
    let spatial: usize = dims[2..].iter().product();
    let output = if channels_last {
        let nhwc = Shape::from(vec![n, dims[2], dims[3], c]);
        permute_nhwc_to_nchw(empty_device_dtype(x.client.clone(), x.device.clone(), nhwc, x.dtype))
    } else {
        empty_device_dtype(x.client.clone(), x.device.clone(), Shape::from(dims.clone()), x.dtype)
    };
    let client = x.client.clone();
    let dtype = x.dtype;
    group_norm_silu_kernel::launch(
        &client,
        CubeCount::Static((n * groups) as u32, 1, 1),
        CubeDim::new_1d(THREADS),
        x.into_tensor_arg(),
        bias.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        groups as u32,
        (c / groups) as u32,
        spatial as u32,
        dims[3] as u32,
        epsilon as f32,
        THREADS,
        has_bias,
        silu,
        dtype_to_storage_type(dtype),
    );
    output
}
