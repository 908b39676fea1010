//! Host-side seeded noise. All randomness in sampling and evaluation comes from here and is
//! uploaded, so one seed gives the same trajectory on WebGPU, on the CPU fallback and natively.

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

/// A stream of standard normal numbers from ChaCha8 (portable: same numbers on every platform).
pub struct NoiseSource {
    rng: ChaCha8Rng,
}

impl NoiseSource {
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// `count` draws from N(0, 1).
    pub fn normal(&mut self, count: usize) -> Vec<f32> {
        (0..count).map(|_| self.rng.sample(StandardNormal)).collect()
    }

    /// A tensor of N(0, 1) draws with the given shape on `device`.
    pub fn tensor(&mut self, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let values = self.normal(shape.iter().product());
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// A uniform integer in `range`, from the same stream.
    pub fn index(&mut self, range: std::ops::Range<usize>) -> usize {
        self.rng.random_range(range)
    }

    /// A uniform float in [0, 1), from the same stream.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random()
    }
}
