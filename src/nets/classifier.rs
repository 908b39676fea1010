//! A small MNIST classifier, trained by this project on the same 9,000 training digits. The
//! evaluation uses its labels (conditional accuracy) and its penultimate features (Fréchet
//! distance); the pages use it for a live readout of what the predicted x_0 looks like.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::nets::unet::NUM_DIGITS;

/// Width of the penultimate (feature) layer.
pub const FEATURES: usize = 128;

#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
}

fn conv(c_in: usize, c_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device)
}

impl Classifier {
    pub fn new(device: &Device) -> Self {
        Self {
            conv1: conv(1, 32, device),
            conv2: conv(32, 32, device),
            conv3: conv(32, 64, device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(64 * 7 * 7, FEATURES).init(device),
            fc2: LinearConfig::new(FEATURES, NUM_DIGITS).init(device),
        }
    }

    /// Weights from a seeded host stream (uniform +-1/sqrt(fan_in), zero biases).
    pub fn init_seeded(seed: u64, device: &Device) -> Self {
        struct Seeded(ChaCha8Rng);
        impl burn::module::ModuleMapper for Seeded {
            fn map_float<const D: usize>(&mut self, p: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
                let rng = &mut self.0;
                p.map(|t| {
                    let dims = t.dims();
                    let count: usize = dims.iter().product();
                    let fan_in: usize = if D == 4 { dims[1..].iter().product() } else { dims[0] };
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    let values: Vec<f32> =
                        if D == 1 { vec![0.0; count] } else { (0..count).map(|_| rng.random_range(-bound..bound)).collect() };
                    let grad = t.is_require_grad();
                    Tensor::<D>::from_data(burn::tensor::TensorData::new(values, dims), &t.device()).set_require_grad(grad)
                })
            }
        }
        Self::new(device).map(&mut Seeded(ChaCha8Rng::seed_from_u64(seed)))
    }

    /// Penultimate features for images [n, 1, 28, 28] in model space [-1, 1].
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let h = self.pool.forward(relu(self.conv1.forward(x))); // 14x14
        let h = self.pool.forward(relu(self.conv3.forward(relu(self.conv2.forward(h))))); // 7x7
        let n = h.dims()[0];
        relu(self.fc1.forward(h.reshape([n, 64 * 7 * 7])))
    }

    pub fn logits_from_features(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(features)
    }

    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.logits_from_features(self.features(x))
    }

    /// Class probabilities [n, 10].
    pub fn probabilities(&self, x: Tensor<4>) -> Tensor<2> {
        softmax(self.logits(x), 1)
    }
}
