//! Training the variance channel of a trained eps network (Improved DDPM, section 3.1) with the
//! network's body frozen. In L_hybrid = L_simple + lambda L_vlb the squared error has no gradient
//! in the variance channel and L_vlb sees the mean through a stop-gradient, so with the body frozen
//! L_hybrid trains exactly what L_vlb trains here, and lambda (a scale, which Adam ignores) drops
//! out. The eps network, and every figure measured with it, stays as it was.
//!
//! Batches come from `crate::native::train::make_batch` (seeded by step), the body runs without
//! gradients, only the channel's 274 parameters are optimised; resumable like `train`.

use std::path::PathBuf;

use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::app::config::DdpmConfig;
use crate::diffusion::objective::{descend, vlb_estimate};
use crate::diffusion::process::q_sample;
use crate::diffusion::schedule::NoiseSchedule;
use crate::native::train::{Batch, RunDir, load_record_file, make_batch, record_bytes, write_atomic};
use crate::nets::unet::{IMAGE_SIZE, UNet, VarianceHead};

/// The settings of a variance-channel run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarianceTrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Share of batches' labels replaced by the null class: the bound is shown unconditionally.
    pub label_dropout: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// SHA-256 of the eps weights the channel is trained on.
    pub base_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VarianceTrainState {
    pub step: usize,
    pub seconds: f64,
    pub config: VarianceTrainConfig,
}

pub struct VarianceTrainer {
    pub cfg: VarianceTrainConfig,
    /// The eps network's settings, with the batch settings of `cfg`.
    batches: DdpmConfig,
    schedule: NoiseSchedule,
    unet: UNet,
    device: Device,
    autodiff: Device,
    pub head: VarianceHead,
    optimizer: ModuleOptimizer,
    pub state: VarianceTrainState,
    pub run: RunDir,
}

impl VarianceTrainer {
    /// Start a run in `run_dir` on `unet` (built on `device`), or resume the one there.
    pub fn open(ddpm: &DdpmConfig, unet: UNet, cfg: VarianceTrainConfig, run_dir: PathBuf, device: Device) -> Result<Self, String> {
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let run = RunDir(run_dir);
        let autodiff = device.clone().autodiff();
        let mut head = VarianceHead::new(&ddpm.model, &autodiff);
        let mut optimizer = AdamConfig::new().with_epsilon(1e-8).init();
        let mut state = VarianceTrainState { step: 0, seconds: 0.0, config: cfg.clone() };
        if run.state().exists() {
            let text = std::fs::read_to_string(run.state()).map_err(|e| e.to_string())?;
            let saved: VarianceTrainState = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", run.state().display()))?;
            if saved.config != cfg {
                return Err(format!("{} holds a run with other settings; use another --run directory or its settings", run.0.display()));
            }
            head = load_record_file(head, &run.online())?;
            optimizer = optimizer.load(run.optimizer()).map_err(|e| format!("{}: {e}", run.optimizer().display()))?;
            state = saved;
        }
        let mut batches = ddpm.clone();
        batches.seed = cfg.seed;
        batches.train.batch_size = cfg.batch_size;
        batches.train.label_dropout = cfg.label_dropout;
        Ok(Self { schedule: ddpm.schedule(), batches, cfg, unet, device, autodiff, head, optimizer, state, run })
    }

    /// Learning rate at `step`: cosine decay to 10%.
    pub fn learning_rate(&self, step: usize) -> f64 {
        let progress = step as f64 / self.cfg.steps.max(1) as f64;
        self.cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()))
    }

    /// One optimisation step; returns the batch's L_vlb estimate (bits/dim).
    pub fn step(&mut self, train: &[Vec<f32>], labels: &[usize]) -> f64 {
        let step = self.state.step;
        let batch = make_batch(&self.batches, train, labels, step);
        let loss = self.loss(&batch);
        let value = loss.clone().into_scalar::<f32>() as f64;
        let lr = self.learning_rate(step);
        self.head = descend(self.head.clone(), &mut self.optimizer, loss, lr);
        self.state.step += 1;
        value
    }

    /// The batch's mean L_vlb estimate, differentiable in the channel only.
    pub fn loss(&self, batch: &Batch) -> Tensor<1> {
        let n = batch.idx.len();
        let shape = [n, 1, IMAGE_SIZE, IMAGE_SIZE];
        let (dev, ad) = (&self.device, &self.autodiff);
        let x0 = Tensor::<4>::from_data(TensorData::new(batch.x0.clone(), shape), dev);
        let noise = Tensor::<4>::from_data(TensorData::new(batch.noise.clone(), shape), dev);
        let x_t = q_sample(&self.schedule, x0.clone(), &batch.idx, noise);
        let t: Vec<f32> = batch.idx.iter().map(|&i| (i + 1) as f32).collect();
        let class = Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), dev);
        let emb = self.unet.time_embedding(&t, dev) + self.unet.class_embedding(class, n);
        let features = self.unet.features(x_t.clone(), emb.clone());
        let eps = self.unet.eps_from_features(features.clone());
        // The body's outputs enter the autodiff graph as constants.
        let lift = |x: Tensor<4>| Tensor::<4>::from_data(x.into_data(), ad);
        let raw = self.head.forward(lift(features), Tensor::<2>::from_data(emb.into_data(), ad));
        vlb_estimate(&self.schedule, lift(x0), lift(x_t), &batch.idx, lift(eps), raw).mean()
    }

    pub fn checkpoint(&self) -> Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        write_atomic(&self.run.online(), &record_bytes(self.head.clone())).map_err(io)?;
        write_atomic(&self.run.optimizer(), &self.optimizer.into_bytes().map_err(|e| e.to_string())?).map_err(io)?;
        write_atomic(&self.run.state(), serde_json::to_string_pretty(&self.state).unwrap().as_bytes()).map_err(io)
    }

    /// The trained channel, without gradients, on `device`.
    pub fn trained_head(&self) -> VarianceHead {
        self.head.valid()
    }
}
