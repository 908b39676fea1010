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

    /// The stream of cell `cell` of a run seeded with `seed`. Each image of a grid has its own
    /// stream, so image i depends only on (seed, i): not on the grid size, on how the grid is
    /// split across workers, or on the backend.
    pub fn for_cell(seed: u64, cell: usize) -> Self {
        Self::new(splitmix64(seed ^ splitmix64(cell as u64 ^ 0x6365_6C6C)))
    }

    /// A second stream of cell `cell`, unrelated to [`NoiseSource::for_cell`]'s: what a
    /// restoration uses to noise the given image, so that with nothing given its states draw
    /// exactly the sampler's numbers.
    pub fn for_constraint(seed: u64, cell: usize) -> Self {
        Self::new(splitmix64(seed ^ splitmix64(cell as u64 ^ 0x6B6E_6F77)))
    }

    /// The stream of training step `step` of a run seeded with `seed`: a run resumed from a
    /// checkpoint, or split into chunks, draws exactly what an unbroken one draws.
    pub fn for_step(seed: u64, step: usize) -> Self {
        Self::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).wrapping_add(1))
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

/// SplitMix64's finaliser (Steele et al. 2014): a bijective mix, so distinct (seed, cell) pairs
/// give unrelated ChaCha8 seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
