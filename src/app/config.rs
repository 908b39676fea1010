//! One configuration, with its seed, for training, evaluation and inference. It is stored in the
//! weights manifest, so the browser builds exactly the network and schedule that were trained.

use serde::{Deserialize, Serialize};

use crate::nets::unet::UNetConfig;
use crate::diffusion::sampling::GuidanceInterval;
use crate::diffusion::schedule::{NoiseSchedule, ScheduleKind, VarianceKind};
use crate::diffusion::objective::LossWeighting;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdpmConfig {
    pub model: UNetConfig,
    pub schedule: ScheduleKind,
    /// T, the number of diffusion steps.
    pub timesteps: usize,
    /// The reverse variance used by the DDPM sampler and the bound.
    pub variance: VarianceKind,
    /// Seeds weight initialisation, data order, noise and label dropout.
    pub seed: u64,
    pub train: TrainConfig,
    /// Default classifier-free guidance weight w (eps = (1 + w) eps_c - w eps_u).
    pub guidance: f64,
    /// The steps at which guidance applies; `None`: every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_interval: Option<GuidanceInterval>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub steps: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub ema_decay: f64,
    /// Probability of replacing a label with the null class (classifier-free guidance training).
    pub label_dropout: f64,
    pub checkpoint_every: usize,
    /// How the loss weights each timestep (L_simple unless set; absent from older records).
    #[serde(default, skip_serializing_if = "LossWeighting::is_uniform")]
    pub weighting: LossWeighting,
    /// Start from these weights instead of a seeded initialisation (fine-tuning); `None` trains
    /// from scratch. Part of the settings, so a fine-tune run refuses to resume from other weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitWeights>,
    /// Train the variance channel with the network, on L_hybrid = L_simple + lambda L_vlb
    /// (Improved DDPM, section 3.1); `None`: L_simple alone, for the fixed variances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<HybridTraining>,
}

/// The variance channel's part of a hybrid run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridTraining {
    /// The channel's starting weights; `None`: a fresh channel, which starts at beta_tilde.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance_init: Option<InitWeights>,
}

/// Weights a fine-tune starts from, named by file and pinned by checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitWeights {
    pub file: String,
    pub sha256: String,
}

impl Default for DdpmConfig {
    fn default() -> Self {
        Self {
            model: UNetConfig::default(),
            schedule: ScheduleKind::DDPM_LINEAR,
            timesteps: 1000,
            variance: VarianceKind::Beta,
            seed: 42,
            train: TrainConfig {
                batch_size: 64,
                steps: 12000,
                learning_rate: 1e-3,
                warmup_steps: 200,
                ema_decay: 0.999,
                label_dropout: 0.1,
                checkpoint_every: 250,
                weighting: LossWeighting::Uniform,
                init: None,
                hybrid: None,
            },
            // The evaluation's choice for the shipped weights (docs/evaluation.md, "The default guidance");
            // `export` writes both into the manifest, which the page reads. The interval's ends are
            // the t whose sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) is nearest each end of
            // (0.28, 5.42], the interval Kynkäänniemi et al. (2024) found best (tests/maths.rs).
            guidance: 1.0,
            guidance_interval: Some(GuidanceInterval { first: 83, last: 580 }),
        }
    }
}

impl DdpmConfig {
    pub fn schedule(&self) -> NoiseSchedule {
        NoiseSchedule::new(self.schedule, self.timesteps)
    }
}
