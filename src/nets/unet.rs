//! The eps-prediction U-Net for 28x28x1 digits. Plain Burn: no web or training imports.
//!
//! Resolutions 28 -> 14 -> 7 with channels `channels[0..3]`; one residual block per level on the
//! way down and up, skip concatenation between them, self-attention at 7x7. Every residual block
//! receives a sinusoidal time embedding (through an MLP) plus a learned class embedding, whose
//! extra index `NULL_CLASS` means "no class" for unconditional sampling and guidance.
//!
//! Optionally a second output channel predicts the reverse variance (Improved DDPM, Nichol &
//! Dhariwal 2021, section 3.1): `variance_out` reads the same features as `conv_out` (so it is
//! the output convolution's second channel, kept as its own module) plus a bias per conditioning
//! from the embedding, and the eps weights (and every figure measured with them) stay as they are
//! with or without it.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand::rngs::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::nets::fused::{add_norm_silu, norm, norm_silu};

/// Image side and channels of MNIST.
pub const IMAGE_SIZE: usize = 28;
pub const IMAGE_CHANNELS: usize = 1;
pub const PIXELS: usize = IMAGE_SIZE * IMAGE_SIZE * IMAGE_CHANNELS;
/// Class labels 0..=9 are digits; 10 is the null class (no conditioning).
pub const NUM_DIGITS: usize = 10;
pub const NULL_CLASS: usize = NUM_DIGITS;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Channels at 28x28, 14x14 and 7x7.
    pub channels: [usize; 3],
    /// Width of the time and class embeddings.
    pub emb_dim: usize,
    /// GroupNorm groups; must divide every channel count.
    pub groups: usize,
    /// Heads of the 7x7 self-attention.
    pub attention_heads: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self { channels: [16, 32, 64], emb_dim: 128, groups: 8, attention_heads: 4 }
    }
}

impl UNetConfig {
    /// Floating-point operations of one forward pass for one image (2 per multiply-add), counting
    /// convolutions, linear layers and attention products; norms and activations are excluded.
    pub fn forward_flops(&self) -> usize {
        let [c0, c1, c2] = self.channels;
        let e = self.emb_dim;
        let (p0, p1, p2) = (IMAGE_SIZE * IMAGE_SIZE, (IMAGE_SIZE / 2).pow(2), (IMAGE_SIZE / 4).pow(2));
        let conv = |i: usize, o: usize, k: usize, pixels: usize| 2 * i * o * k * k * pixels;
        let res = |i: usize, o: usize, pixels: usize| {
            conv(i, o, 3, pixels) + conv(o, o, 3, pixels) + 2 * e * o + if i != o { conv(i, o, 1, pixels) } else { 0 }
        };
        let attention = 2 * p2 * c2 * 3 * c2 + 2 * p2 * c2 * c2 + 2 * 2 * p2 * p2 * c2;
        4 * e * e
            + conv(IMAGE_CHANNELS, c0, 3, p0)
            + res(c0, c0, p0)
            + conv(c0, c0, 3, p1)
            + res(c0, c1, p1)
            + conv(c1, c1, 3, p2)
            + res(c1, c2, p2)
            + attention
            + res(c2, c2, p2)
            + res(2 * c2, c2, p2)
            + res(c2 + c1, c1, p1)
            + res(c1 + c0, c0, p0)
            + conv(c0, IMAGE_CHANNELS, 3, p0)
    }
}

fn conv3x3(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

fn conv1x1(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [1, 1]).init(device)
}

fn group_norm(groups: usize, channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).init(device)
}

/// GroupNorm -> SiLU -> conv, + embedding, GroupNorm -> SiLU -> conv, + skip (DDPM's ResNet block).
#[derive(Module, Debug)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    emb_proj: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(c_in: usize, c_out: usize, cfg: &UNetConfig, device: &Device) -> Self {
        Self {
            norm1: group_norm(cfg.groups, c_in, device),
            conv1: conv3x3(c_in, c_out, 1, device),
            emb_proj: LinearConfig::new(cfg.emb_dim, c_out).init(device),
            norm2: group_norm(cfg.groups, c_out, device),
            conv2: conv3x3(c_out, c_out, 1, device),
            skip: (c_in != c_out).then(|| conv1x1(c_in, c_out, device)),
        }
    }

    /// `emb_act`: SiLU of the conditioning embedding, computed once per forward for every block.
    fn forward(&self, x: Tensor<4>, emb_act: Tensor<2>) -> Tensor<4> {
        let h = self.conv1.forward(norm_silu(&self.norm1, x.clone()));
        // h + the embedding's projection, normalised: one fused step.
        let h = self.conv2.forward(add_norm_silu(&self.norm2, h, self.emb_proj.forward(emb_act)));
        let skip = match &self.skip {
            Some(conv) => conv.forward(x),
            None => x,
        };
        h + skip
    }
}

/// Multi-head self-attention over the pixels of a feature map, with a residual connection.
#[derive(Module, Debug)]
pub struct SelfAttention {
    norm: GroupNorm,
    qkv: Linear,
    out: Linear,
    heads: usize,
}

impl SelfAttention {
    fn new(channels: usize, cfg: &UNetConfig, device: &Device) -> Self {
        assert_eq!(channels % cfg.attention_heads, 0, "heads must divide the channels");
        Self {
            norm: group_norm(cfg.groups, channels, device),
            qkv: LinearConfig::new(channels, 3 * channels).init(device),
            out: LinearConfig::new(channels, channels).init(device),
            heads: cfg.attention_heads,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let (heads, d) = (self.heads, c / self.heads);
        // [n, c, h, w] -> [n, hw, c]
        let tokens = norm(&self.norm, x.clone()).reshape([n, c, h * w]).swap_dims(1, 2);
        let qkv = self.qkv.forward(tokens); // [n, hw, 3c]
        let split = |k: usize| {
            qkv.clone()
                .narrow(2, k * c, c)
                .reshape([n, h * w, heads, d])
                .swap_dims(1, 2) // [n, heads, hw, d]
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let attn = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (d as f32).sqrt()), 3);
        let y = attn.matmul(v).swap_dims(1, 2).reshape([n, h * w, c]);
        let y = self.out.forward(y).swap_dims(1, 2).reshape([n, c, h, w]);
        x + y
    }
}

#[derive(Module, Debug)]
pub struct UNet {
    time_mlp1: Linear,
    time_mlp2: Linear,
    class_emb: Embedding,
    conv_in: Conv2d,
    down0: ResBlock,
    downsample0: Conv2d,
    down1: ResBlock,
    downsample1: Conv2d,
    down2: ResBlock,
    mid_attn: SelfAttention,
    mid: ResBlock,
    up2: ResBlock,
    up1: ResBlock,
    up0: ResBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    /// The variance channel v (see `crate::diffusion::variance`); `None`: fixed variances only.
    variance_out: Option<VarianceHead>,
    emb_dim: usize,
}

impl UNet {
    /// Build the network on `device` with Burn's initialisers. Use [`UNet::init_seeded`] for
    /// weights that are the same on every backend and platform.
    pub fn new(cfg: &UNetConfig, device: &Device) -> Self {
        let [c0, c1, c2] = cfg.channels;
        for c in cfg.channels {
            assert_eq!(c % cfg.groups, 0, "GroupNorm groups ({}) must divide channels ({c})", cfg.groups);
        }
        let e = cfg.emb_dim;
        Self {
            time_mlp1: LinearConfig::new(e, e).init(device),
            time_mlp2: LinearConfig::new(e, e).init(device),
            class_emb: EmbeddingConfig::new(NUM_DIGITS + 1, e).init(device),
            conv_in: conv3x3(IMAGE_CHANNELS, c0, 1, device),
            down0: ResBlock::new(c0, c0, cfg, device),
            downsample0: conv3x3(c0, c0, 2, device),
            down1: ResBlock::new(c0, c1, cfg, device),
            downsample1: conv3x3(c1, c1, 2, device),
            down2: ResBlock::new(c1, c2, cfg, device),
            mid_attn: SelfAttention::new(c2, cfg, device),
            mid: ResBlock::new(c2, c2, cfg, device),
            up2: ResBlock::new(c2 + c2, c2, cfg, device),
            up1: ResBlock::new(c2 + c1, c1, cfg, device),
            up0: ResBlock::new(c1 + c0, c0, cfg, device),
            norm_out: group_norm(cfg.groups, c0, device),
            conv_out: conv3x3(c0, IMAGE_CHANNELS, 1, device),
            variance_out: None,
            emb_dim: e,
        }
    }

    /// Build the network with weights drawn from a ChaCha8 stream seeded by `seed`, so that a seed
    /// gives identical weights natively and in the browser. Weights are uniform in +-1/sqrt(fan_in)
    /// (PyTorch's default scale), embeddings unit variance, biases zero, norms identity.
    pub fn init_seeded(cfg: &UNetConfig, seed: u64, device: &Device) -> Self {
        seeded(Self::new(cfg, device), seed)
    }

    /// eps_theta(x_t, t, class): `x` [n, 1, 28, 28] in [-1, 1]-scale, `t` the paper's t (1..=T)
    /// of each sample, `class` [n] in 0..=10 (10 = null). Returns the predicted noise.
    pub fn forward(&self, x: Tensor<4>, t: &[f32], class: Tensor<1, Int>) -> Tensor<4> {
        let n = x.dims()[0];
        let emb = self.time_embedding(t, &x.device()) + self.class_embedding(class, n);
        self.forward_conditioned(x, emb)
    }

    /// The time MLP's output for each t (1..=T): [n, emb_dim]. A sampler computes it once per run
    /// for every t it will visit. The sinusoids are computed on the host, in f64: a GPU's sin and
    /// cos are accurate only to about 5e-4 (Vulkan's bound) and not at all for t f_k beyond pi,
    /// and every layer after them would carry that.
    pub fn time_embedding(&self, t: &[f32], device: &Device) -> Tensor<2> {
        let values = sinusoidal_embedding_values(t, self.emb_dim);
        let temb = Tensor::<2>::from_data(TensorData::new(values, [t.len(), self.emb_dim]), device);
        self.time_mlp2.forward(silu(self.time_mlp1.forward(temb)))
    }

    /// The class embedding of each of `n` labels: [n, emb_dim].
    pub fn class_embedding(&self, class: Tensor<1, Int>, n: usize) -> Tensor<2> {
        self.class_emb.forward(class.reshape([n, 1])).reshape([n, self.emb_dim])
    }

    /// The network given its conditioning `emb` = time embedding + class embedding, [n, emb_dim].
    pub fn forward_conditioned(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        self.eps_from_features(self.features(x, emb))
    }

    /// eps and, when the network has a variance channel, its raw v ([n, 1, 28, 28] each), from one
    /// pass through the body.
    pub fn forward_with_variance(&self, x: Tensor<4>, emb: Tensor<2>) -> (Tensor<4>, Option<Tensor<4>>) {
        let features = self.features(x, emb.clone());
        let v = self.variance_out.as_ref().map(|head| head.forward(features.clone(), emb.clone()));
        (self.eps_from_features(features), v)
    }

    /// eps from the last feature map (see [`Self::features`]).
    pub fn eps_from_features(&self, features: Tensor<4>) -> Tensor<4> {
        self.conv_out.forward(features)
    }

    /// The last feature map, [n, channels[0], 28, 28], which both output convolutions read.
    /// Training only the variance channel computes it without gradients.
    pub fn features(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        // Every block projects SiLU(emb): computed once here, not once per block.
        let emb = silu(emb);
        let h = self.conv_in.forward(x);
        let h0 = self.down0.forward(h, emb.clone()); // 28x28, c0
        let h1 = self.down1.forward(self.downsample0.forward(h0.clone()), emb.clone()); // 14x14, c1
        let h2 = self.down2.forward(self.downsample1.forward(h1.clone()), emb.clone()); // 7x7, c2
        let m = self.mid.forward(self.mid_attn.forward(h2.clone()), emb.clone());
        let u = self.up2.forward(Tensor::cat(vec![m, h2], 1), emb.clone()); // 7x7
        let u = self.up1.forward(Tensor::cat(vec![upsample2x(u), h1], 1), emb.clone()); // 14x14
        let u = self.up0.forward(Tensor::cat(vec![upsample2x(u), h0], 1), emb); // 28x28
        norm_silu(&self.norm_out, u)
    }

    /// The network with `head` as its variance channel.
    pub fn with_variance_head(mut self, head: VarianceHead) -> Self {
        self.variance_out = Some(head);
        self
    }

    /// The eps network without its variance channel, and the channel: stored as two files.
    pub fn split_variance_head(mut self) -> (Self, Option<VarianceHead>) {
        let head = self.variance_out.take();
        (self, head)
    }

    pub fn variance_head(&self) -> Option<&VarianceHead> {
        self.variance_out.as_ref()
    }

    pub fn has_learned_variance(&self) -> bool {
        self.variance_out.is_some()
    }
}

/// The variance channel: a 3x3 convolution of the U-Net's last features (the output
/// convolution's second channel) plus a linear function of SiLU(emb), so that the channel can
/// follow t even where the frozen features carry little of it.
#[derive(Module, Debug)]
pub struct VarianceHead {
    conv: Conv2d,
    time: Linear,
}

impl VarianceHead {
    /// A fresh channel: zero weights and conv bias -1, so that v = -1 everywhere and the learned
    /// variance starts at beta_tilde (`crate::diffusion::variance`), the fixed-small bound of
    /// the same eps network.
    pub fn new(cfg: &UNetConfig, device: &Device) -> Self {
        let conv = conv3x3(cfg.channels[0], IMAGE_CHANNELS, 1, device).map(&mut ConstantInit { weight: 0.0, bias: -1.0 });
        let time = LinearConfig::new(cfg.emb_dim, 1).init(device).map(&mut ConstantInit { weight: 0.0, bias: 0.0 });
        Self { conv, time }
    }

    /// The raw v ([n, 1, 28, 28]) from the last features and the conditioning embedding [n, emb_dim].
    pub fn forward(&self, features: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let n = emb.dims()[0];
        self.conv.forward(features) + self.time.forward(silu(emb)).reshape([n, 1, 1, 1])
    }
}

/// Sets every conv weight to `weight` and every bias to `bias`.
struct ConstantInit {
    weight: f32,
    bias: f32,
}

impl ModuleMapper for ConstantInit {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = if D == 1 { self.bias } else { self.weight };
        param.map(|tensor| {
            let grad = tensor.is_require_grad();
            tensor.zeros_like().add_scalar(value).set_require_grad(grad)
        })
    }
}

fn upsample2x(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    interpolate(x, InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([2 * h, 2 * w]))
}

/// Transformer-style sinusoidal embedding of t (DDPM section 3.3 / Vaswani et al. 2017),
/// [sin(t f_k), cos(t f_k)] with f_k = 10000^(-k / (dim/2)), of host values, computed in f64:
/// [n * dim] values, row by row.
pub fn sinusoidal_embedding_values(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let freqs: Vec<f64> = (0..half).map(|k| (-(10000f64.ln()) * k as f64 / half as f64).exp()).collect();
    t.iter()
        .flat_map(|&t| {
            let args: Vec<f64> = freqs.iter().map(|f| t as f64 * f).collect();
            args.iter().map(|a| a.sin() as f32).chain(args.iter().map(|a| a.cos() as f32)).collect::<Vec<_>>()
        })
        .collect()
}


/// `module` with every parameter drawn from a ChaCha8 stream seeded by `seed` (see
/// [`UNet::init_seeded`]): the same weights natively and in the browser, on every backend.
pub fn seeded<M: Module>(module: M, seed: u64) -> M {
    module.map(&mut SeededInit { rng: ChaCha8Rng::seed_from_u64(seed), container: Vec::new() })
}

/// Replaces every parameter with values from a seeded host RNG (see [`UNet::init_seeded`]).
struct SeededInit {
    rng: ChaCha8Rng,
    container: Vec<String>,
}

impl ModuleMapper for SeededInit {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.container.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.container.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // Burn names containers "Struct:GroupNorm" etc.; match on the type name.
        let container = self.container.last().map(|c| c.rsplit(':').next().unwrap_or(c)).unwrap_or("");
        let rng = &mut self.rng;
        param.map(|tensor| {
            let dims = tensor.dims();
            let count: usize = dims.iter().product();
            let values: Vec<f32> = match (container, D) {
                ("GroupNorm", _) => return tensor,
                ("Embedding", _) => (0..count).map(|_| rng.random_range(-1.732f32..1.732)).collect(),
                (_, 1) => vec![0.0; count],
                // Linear weights are [in, out]; conv weights [out, in, kh, kw].
                (_, 2) => uniform(rng, count, dims[0]),
                (_, _) => uniform(rng, count, dims[1..].iter().product()),
            };
            let grad = tensor.is_require_grad();
            Tensor::<D>::from_data(TensorData::new(values, dims), &tensor.device()).set_require_grad(grad)
        })
    }
}

fn uniform(rng: &mut ChaCha8Rng, count: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    (0..count).map(|_| rng.random_range(-bound..bound)).collect()
}
