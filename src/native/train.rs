//! Native training of the eps-prediction DDPM (Algorithm 1 with the L_simple loss, Eq. 14, or a
//! min-SNR-weighted one), class-conditional with label dropout for classifier-free guidance, an EMA
//! copy of the weights, Adam with warm-up and cosine decay, and resumable checkpoints. A hybrid
//! run trains the variance channel with the network on L_hybrid (Improved DDPM, section 3.1).
//!
//! Every step's randomness (batch, t, noise, label dropout) comes from a stream seeded by
//! (seed, step), so a run resumed from a checkpoint continues exactly as if never stopped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::app::config::{DdpmConfig, InitWeights};
use crate::native::data::Digit;
use crate::diffusion::process::q_sample;
use crate::nets::unet::{IMAGE_SIZE, NULL_CLASS, NUM_DIGITS, PIXELS, UNet, VarianceHead};
use crate::diffusion::noise::NoiseSource;
use crate::diffusion::objective::{LossWeighting, Prediction, descend, hybrid, mse, vlb_estimate, weighted_mse};
use crate::app::image::to_pixels;
use crate::diffusion::sampling::{ClassChoice, Method, SampleSettings, Sampler};
use crate::diffusion::schedule::NoiseSchedule;

/// Learning rate at `step`: linear warm-up, then cosine decay to 10% at the last step.
pub fn learning_rate(cfg: &DdpmConfig, step: usize) -> f64 {
    let t = &cfg.train;
    if step < t.warmup_steps {
        return t.learning_rate * (step + 1) as f64 / t.warmup_steps as f64;
    }
    let progress = (step - t.warmup_steps) as f64 / (t.steps - t.warmup_steps).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
    t.learning_rate * (0.1 + 0.9 * cosine)
}

/// One training batch: x_0, t indices, noise and (possibly dropped) labels.
pub struct Batch {
    pub x0: Vec<f32>,
    pub idx: Vec<usize>,
    pub noise: Vec<f32>,
    pub labels: Vec<i64>,
}

pub fn make_batch(cfg: &DdpmConfig, train: &[Vec<f32>], labels: &[usize], step: usize) -> Batch {
    let mut rng = NoiseSource::for_step(cfg.seed, step);
    let n = cfg.train.batch_size;
    let mut batch = Batch { x0: Vec::with_capacity(n * PIXELS), idx: Vec::new(), noise: Vec::new(), labels: Vec::new() };
    for _ in 0..n {
        let k = rng.index(0..train.len());
        batch.x0.extend_from_slice(&train[k]);
        // t ~ Uniform({1, ..., T}) (Algorithm 1, line 3).
        batch.idx.push(rng.index(0..cfg.timesteps));
        let dropped = rng.uniform() < cfg.train.label_dropout;
        batch.labels.push(if dropped { NULL_CLASS } else { labels[k] } as i64);
    }
    batch.noise = rng.normal(n * PIXELS);
    batch
}

/// L_simple = || eps - eps_theta(sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps, t) ||^2, mean;
/// with another `weighting`, each sample's error times its timestep's factor. A network with a
/// variance channel adds lambda L_vlb (L_hybrid); the second value is then L_vlb's estimate
/// (bits/dim), whose gradient reaches only the channel.
pub fn loss(model: &UNet, schedule: &NoiseSchedule, batch: &Batch, weighting: LossWeighting, device: &Device) -> (Tensor<1>, Option<Tensor<1>>) {
    let n = batch.idx.len();
    let shape = [n, 1, IMAGE_SIZE, IMAGE_SIZE];
    let x0 = Tensor::<4>::from_data(TensorData::new(batch.x0.clone(), shape), device);
    let noise = Tensor::<4>::from_data(TensorData::new(batch.noise.clone(), shape), device);
    let x_t = q_sample(schedule, x0.clone(), &batch.idx, noise.clone());
    let t: Vec<f32> = batch.idx.iter().map(|&i| (i + 1) as f32).collect();
    let labels = Tensor::<1, Int>::from_data(TensorData::new(batch.labels.clone(), [n]), device);
    let emb = model.time_embedding(&t, device) + model.class_embedding(labels, n);
    let (eps, raw_variance) = model.forward_with_variance(x_t.clone(), emb);
    let target = Prediction::Noise.target(schedule, x0.clone(), noise, &batch.idx);
    let simple = match weighting {
        LossWeighting::Uniform => mse(eps.clone(), target),
        w => weighted_mse(eps.clone(), target, &batch.idx.iter().map(|&i| w.factor(schedule, Prediction::Noise, i)).collect::<Vec<_>>()),
    };
    match raw_variance {
        None => (simple, None),
        Some(raw) => {
            let vlb = vlb_estimate(schedule, x0, x_t, &batch.idx, eps, raw).mean();
            (hybrid(simple, vlb.clone()), Some(vlb))
        }
    }
}

/// One step's losses: the optimised one and, in a hybrid run, L_vlb's estimate (bits/dim).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoss {
    pub loss: f64,
    pub vlb: Option<f64>,
}

/// Exponential moving average of the weights: ema <- d * ema + (1 - d) * online.
pub fn ema_update(ema: UNet, online: &UNet, decay: f64) -> UNet {
    struct Collect(HashMap<ParamId, Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let count = t.shape().num_elements();
            self.0.insert(param.id, t.reshape([count]));
        }
    }
    struct Blend(HashMap<ParamId, Tensor<1>>, f32);
    impl ModuleMapper for Blend {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let online = self.0.remove(&param.id).expect("EMA and online model share parameter ids");
            let d = self.1;
            param.map(|e| {
                let dims = e.dims();
                e.mul_scalar(d) + online.reshape(dims).mul_scalar(1.0 - d)
            })
        }
    }
    let mut collect = Collect(HashMap::new());
    online.visit(&mut collect);
    ema.map(&mut Blend(collect.0, decay as f32))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub seconds: f64,
    pub config: DdpmConfig,
}

/// Files of a run directory.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn ema(&self) -> PathBuf {
        self.path("ema.bpk")
    }
    pub(crate) fn online(&self) -> PathBuf {
        self.path("online.bpk")
    }
    pub(crate) fn optimizer(&self) -> PathBuf {
        self.path("optimizer.bpk")
    }
    pub(crate) fn state(&self) -> PathBuf {
        self.path("state.json")
    }
    pub fn loss_log(&self) -> PathBuf {
        self.path("loss.csv")
    }
    pub fn grid(&self) -> PathBuf {
        self.path("samples.png")
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

pub(crate) fn record_bytes<M: Module>(module: M) -> Vec<u8> {
    module.into_record().into_bytes().expect("encode checkpoint").to_vec()
}

/// The pin of starting weights `file` for a run in `run_dir`: the file's SHA-256, or, when the file
/// has gone and the run there was planned with it, the pin the run was planned with, since a
/// resumed run needs only its checkpoint (a candidate's files move to `weights/` when it ships).
pub fn pin_weights(file: &str, run_dir: &Path) -> Result<InitWeights, String> {
    match std::fs::read(file) {
        Ok(bytes) => Ok(InitWeights { file: file.to_string(), sha256: crate::app::weights::sha256_hex(&bytes) }),
        Err(e) => std::fs::read_to_string(RunDir(run_dir.to_path_buf()).state())
            .ok()
            .and_then(|json| serde_json::from_str::<TrainState>(&json).ok())
            .and_then(|saved| {
                let train = saved.config.train;
                train.init.into_iter().chain(train.hybrid.and_then(|h| h.variance_init)).find(|pin| pin.file == file)
            })
            .ok_or_else(|| format!("{file}: {e}")),
    }
}

/// `module` with the weights of `init`, refused when the file no longer has the planned SHA-256.
fn load_checked<M: Module>(module: M, init: &InitWeights) -> Result<M, String> {
    let bytes = std::fs::read(&init.file).map_err(|e| format!("{}: {e}", init.file))?;
    if crate::app::weights::sha256_hex(&bytes) != init.sha256 {
        return Err(format!("{} changed since the run was planned (SHA-256 differs)", init.file));
    }
    crate::app::weights::load_module(module, bytes).map_err(|e| format!("{}: {e}", init.file))
}

pub(crate) fn load_record_file<M: Module>(module: M, path: &Path) -> Result<M, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| format!("{}: {e}", path.display()))?;
    module.try_load_record(record).map_err(|e| format!("{}: {e}", path.display()))
}

/// The training loop state.
pub struct Trainer {
    pub cfg: DdpmConfig,
    pub schedule: NoiseSchedule,
    pub device: Device,
    pub model: UNet,
    pub ema: UNet,
    pub optimizer: ModuleOptimizer,
    pub state: TrainState,
    pub run: RunDir,
}

impl Trainer {
    /// Start a run in `run_dir`, or resume it from its checkpoint if one is there.
    pub fn open(cfg: DdpmConfig, run_dir: PathBuf, device: Device) -> Result<Self, String> {
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let run = RunDir(run_dir);
        let ad = device.clone().autodiff();
        let mut model = UNet::init_seeded(&cfg.model, cfg.seed, &ad);
        let mut ema = model.valid();
        let mut optimizer = AdamConfig::new()
            .with_epsilon(1e-8)
            .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
            .init();
        let mut state = TrainState { step: 0, seconds: 0.0, config: cfg.clone() };
        // The starting weights matter only for a fresh run; a resumed one has its checkpoint.
        let fresh = !run.state().exists();
        if let Some(init) = cfg.train.init.as_ref().filter(|_| fresh) {
            model = load_checked(model, init)?;
            ema = model.valid();
        }
        if let Some(hybrid) = &cfg.train.hybrid {
            let mut head = VarianceHead::new(&cfg.model, &ad);
            if let Some(init) = hybrid.variance_init.as_ref().filter(|_| fresh) {
                head = load_checked(head, init)?;
            }
            model = model.with_variance_head(head);
            ema = model.valid();
        }
        if run.state().exists() {
            let saved: TrainState = serde_json::from_str(&std::fs::read_to_string(run.state()).map_err(|e| e.to_string())?)
                .map_err(|e| format!("{}: {e}", run.state().display()))?;
            // Training settings count too: the learning-rate decay depends on the planned steps, so
            // a run resumed with other settings would match no single command.
            if saved.config.model != cfg.model || saved.config.seed != cfg.seed || saved.config.schedule != cfg.schedule || saved.config.train != cfg.train {
                return Err(format!(
                    "{} holds a run with another model, seed, schedule or training settings ({} steps planned there, {} asked); \
                     use another --run directory or the run's own settings",
                    run.0.display(),
                    saved.config.train.steps,
                    cfg.train.steps
                ));
            }
            model = load_record_file(model, &run.online())?;
            ema = load_record_file(ema, &run.ema())?;
            optimizer = optimizer.load(run.optimizer()).map_err(|e| format!("{}: {e}", run.optimizer().display()))?;
            state = TrainState { config: cfg.clone(), ..saved };
        }
        Ok(Self { schedule: cfg.schedule(), cfg, device: ad, model, ema, optimizer, state, run })
    }

    /// One optimisation step; returns its losses.
    pub fn step(&mut self, train: &[Vec<f32>], labels: &[usize]) -> StepLoss {
        let step = self.state.step;
        let batch = make_batch(&self.cfg, train, labels, step);
        let (loss, vlb) = loss(&self.model, &self.schedule, &batch, self.cfg.train.weighting, &self.device);
        let value = StepLoss { loss: loss.clone().into_scalar::<f32>() as f64, vlb: vlb.map(|v| v.into_scalar::<f32>() as f64) };
        let lr = learning_rate(&self.cfg, step);
        self.model = descend(self.model.clone(), &mut self.optimizer, loss, lr);
        // EMA warm-up (as in common DDPM code): early averages forget the random init faster.
        let decay = self.cfg.train.ema_decay.min((1.0 + step as f64) / (10.0 + step as f64));
        self.ema = ema_update(self.ema.clone(), &self.model.valid(), decay);
        self.state.step += 1;
        value
    }

    pub fn checkpoint(&self) -> Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        write_atomic(&self.run.online(), &record_bytes(self.model.clone())).map_err(io)?;
        write_atomic(&self.run.ema(), &record_bytes(self.ema.clone())).map_err(io)?;
        let optim = self.optimizer.into_bytes().map_err(|e| e.to_string())?;
        write_atomic(&self.run.optimizer(), &optim).map_err(io)?;
        // The state goes last: a crash before it leaves the previous consistent checkpoint's state.
        write_atomic(&self.run.state(), serde_json::to_string_pretty(&self.state).unwrap().as_bytes()).map_err(io)
    }

    /// One line of the loss log: the window's mean losses (L_vlb's column only in hybrid runs).
    pub fn append_loss(&self, loss: StepLoss, images_per_s: f64) -> std::io::Result<()> {
        let path = self.run.loss_log();
        let new = !path.exists();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let hybrid = self.cfg.train.hybrid.is_some();
        if new {
            writeln!(f, "step,loss,learning_rate,images_per_s,elapsed_s{}", if hybrid { ",vlb_bits_per_dim" } else { "" })?;
        }
        let step = self.state.step;
        let vlb = loss.vlb.map(|v| format!(",{v:.4}")).unwrap_or_default();
        writeln!(f, "{step},{:.6},{:.3e},{images_per_s:.1},{:.0}{vlb}", loss.loss, learning_rate(&self.cfg, step - 1), self.state.seconds)
    }
}

/// Sample a grid of every digit (columns) with DDIM from `model` and write it as a PNG.
pub fn write_sample_grid(cfg: &DdpmConfig, model: &UNet, rows: usize, path: &Path, device: &Device) -> Result<(), String> {
    let schedule = cfg.schedule();
    let mut columns = Vec::new();
    for digit in 0..NUM_DIGITS {
        let settings = SampleSettings {
            class: ClassChoice::Digit(digit),
            guidance: cfg.guidance,
            guidance_interval: cfg.guidance_interval,
            method: Method::Ddim { steps: 25, eta: 0.0 },
            seed: cfg.seed + digit as u64,
            count: rows,
            first_cell: 0,
            clip_x0: true,
        };
        let mut sampler = Sampler::new(settings, &schedule, device);
        while sampler.step(model).is_some() {}
        let values: Vec<f32> = sampler.current().into_data().try_to_vec().map_err(|e| format!("{e:?}"))?;
        columns.push(to_pixels(&values));
    }
    let (w, h) = (NUM_DIGITS * IMAGE_SIZE, rows * IMAGE_SIZE);
    let mut image = vec![0u8; w * h];
    for (c, col) in columns.iter().enumerate() {
        for r in 0..rows {
            for y in 0..IMAGE_SIZE {
                for x in 0..IMAGE_SIZE {
                    image[(r * IMAGE_SIZE + y) * w + c * IMAGE_SIZE + x] = col[r * PIXELS + y * IMAGE_SIZE + x];
                }
            }
        }
    }
    write_png_gray(path, w, h, &image)
}

pub fn write_png_gray(path: &Path, width: usize, height: usize, pixels: &[u8]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(pixels).map_err(|e| e.to_string())
}

/// Digits as model-space vectors and their labels.
pub fn to_training_arrays(digits: &[Digit]) -> (Vec<Vec<f32>>, Vec<usize>) {
    (digits.iter().map(Digit::to_model_space).collect(), digits.iter().map(|d| d.label).collect())
}

/// Wall-clock timer that survives resumes (adds to the saved seconds).
pub struct Clock {
    start: Instant,
    base: f64,
}

impl Clock {
    pub fn new(base: f64) -> Self {
        Self { start: Instant::now(), base }
    }
    pub fn seconds(&self) -> f64 {
        self.base + self.start.elapsed().as_secs_f64()
    }
}
