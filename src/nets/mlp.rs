//! The 2-D denoiser the explainer trains in the tab: an MLP on (x_t, sinusoidal embedding of t),
//! the usual network of 2-D diffusion demos. Plain Burn, like `crate::nets::unet`.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};

use crate::nets::unet::{seeded, sinusoidal_embedding_values};

/// Width of the time embedding and of the hidden layers.
pub const TIME_EMBEDDING: usize = 32;
pub const HIDDEN: usize = 128;

#[derive(Module, Debug)]
pub struct ToyDenoiser {
    input: Linear,
    hidden1: Linear,
    hidden2: Linear,
    output: Linear,
}

impl ToyDenoiser {
    /// Weights from a ChaCha8 stream seeded by `seed`: a seed starts the same model natively,
    /// on the CPU in wasm and on WebGPU.
    pub fn init_seeded(seed: u64, device: &Device) -> Self {
        let model = Self {
            input: LinearConfig::new(2 + TIME_EMBEDDING, HIDDEN).init(device),
            hidden1: LinearConfig::new(HIDDEN, HIDDEN).init(device),
            hidden2: LinearConfig::new(HIDDEN, HIDDEN).init(device),
            output: LinearConfig::new(HIDDEN, 2).init(device),
        };
        seeded(model, seed)
    }

    /// The prediction at points `x` ([n, 2, 1, 1], the layout of `crate::diffusion::process`) and the
    /// paper's t of each point (1..=T); what it predicts is the trainer's `Prediction`. The
    /// sinusoids are computed on the host, in f64, as the U-Net's are: the same on every backend,
    /// and five operations fewer per step on the device.
    pub fn forward(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        let n = x.dims()[0];
        let emb = Tensor::<2>::from_data(TensorData::new(sinusoidal_embedding_values(t, TIME_EMBEDDING), [n, TIME_EMBEDDING]), &x.device());
        let h = Tensor::cat(vec![x.reshape([n, 2]), emb], 1);
        let h = silu(self.input.forward(h));
        let h = silu(self.hidden1.forward(h));
        let h = silu(self.hidden2.forward(h));
        self.output.forward(h).reshape([n, 2, 1, 1])
    }

    pub fn parameters(&self) -> usize {
        self.num_params()
    }

    /// `keep` self + (1 - keep) `towards`, parameter by parameter: one step of an exponential
    /// moving average of the weights (both models on the same device, without autodiff).
    pub fn blend(self, towards: &ToyDenoiser, keep: f64) -> Self {
        let mix = |a: Linear, b: &Linear| Linear {
            weight: a.weight.map(|w| w.mul_scalar(keep) + b.weight.val().mul_scalar(1.0 - keep)),
            bias: a.bias.map(|p| {
                let bias = b.bias.as_ref().expect("both layers have a bias").val();
                p.map(|v| v.mul_scalar(keep) + bias.mul_scalar(1.0 - keep))
            }),
        };
        Self {
            input: mix(self.input, &towards.input),
            hidden1: mix(self.hidden1, &towards.hidden1),
            hidden2: mix(self.hidden2, &towards.hidden2),
            output: mix(self.output, &towards.output),
        }
    }
}
