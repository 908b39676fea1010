//! The training loop's checkpoints: a run split by a resume equals the same run in one go, and a
//! run directory refuses to resume under other settings.
#![cfg(not(target_family = "wasm"))]

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ddpm_web::app::config::DdpmConfig;
use ddpm_web::nets::unet::{NULL_CLASS, PIXELS, UNet, UNetConfig};
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::native::train::{Trainer, pin_weights};

/// A tiny network and batch so a few steps take well under a second.
fn tiny_config() -> DdpmConfig {
    let mut cfg = DdpmConfig::default();
    cfg.model = UNetConfig { channels: [8, 16, 16], emb_dim: 32, groups: 4, attention_heads: 2 };
    cfg.train.batch_size = 4;
    cfg.train.steps = 4;
    cfg.train.warmup_steps = 2;
    cfg.train.checkpoint_every = 2;
    cfg
}

fn tiny_data() -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut rng = NoiseSource::new(5);
    let images = (0..12).map(|_| rng.normal(PIXELS).iter().map(|v| v.clamp(-1.0, 1.0)).collect()).collect();
    (images, (0..12).map(|k| k % 10).collect())
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-train-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The online and EMA networks' outputs on a fixed batch: equal outputs mean equal weights here.
fn outputs(trainer: &Trainer) -> (Vec<f32>, Vec<f32>) {
    let device = Device::flex();
    let x = NoiseSource::new(9).tensor([3, 1, 28, 28], &device);
    let run = |model: &UNet| -> Vec<f32> {
        let x = x.clone();
        let c = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 7, NULL_CLASS as i64], [3]), &device);
        model.forward(x, &[1.0, 400.0, 1000.0], c).into_data().try_to_vec().unwrap()
    };
    (run(&trainer.model.valid()), run(&trainer.ema))
}

#[test]
fn a_resumed_run_equals_an_unbroken_one() {
    let cfg = tiny_config();
    let (images, labels) = tiny_data();

    let whole_dir = fresh_dir("whole");
    let mut whole = Trainer::open(cfg.clone(), whole_dir.clone(), Device::flex()).unwrap();
    let whole_losses: Vec<_> = (0..4).map(|_| whole.step(&images, &labels)).collect();

    let split_dir = fresh_dir("split");
    let mut first = Trainer::open(cfg.clone(), split_dir.clone(), Device::flex()).unwrap();
    let mut split_losses: Vec<_> = (0..2).map(|_| first.step(&images, &labels)).collect();
    first.checkpoint().unwrap();
    drop(first);
    let mut resumed = Trainer::open(cfg.clone(), split_dir.clone(), Device::flex()).unwrap();
    assert_eq!(resumed.state.step, 2, "resumes at the checkpointed step");
    split_losses.extend((0..2).map(|_| resumed.step(&images, &labels)));

    assert_eq!(split_losses, whole_losses, "same batches, noise and optimiser state after the resume");
    assert!(whole_losses.iter().all(|l| l.loss.is_finite() && l.loss > 0.0 && l.vlb.is_none()));
    let (online, ema) = outputs(&resumed);
    let (online_whole, ema_whole) = outputs(&whole);
    assert_eq!(online, online_whole, "online weights differ after the resume");
    assert_eq!(ema, ema_whole, "EMA weights differ after the resume");
    // The steps did train: the weights moved from their seeded initialisation.
    let init = Trainer::open(cfg, fresh_dir("init"), Device::flex()).unwrap();
    assert_ne!(outputs(&init).0, online_whole);
    for dir in [whole_dir, split_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_run_directory_refuses_other_settings() {
    let cfg = tiny_config();
    let (images, labels) = tiny_data();
    let dir = fresh_dir("settings");
    let mut trainer = Trainer::open(cfg.clone(), dir.clone(), Device::flex()).unwrap();
    trainer.step(&images, &labels);
    trainer.checkpoint().unwrap();
    drop(trainer);

    // More planned steps change the learning-rate decay of every step already taken.
    let mut longer = cfg.clone();
    longer.train.steps = 8;
    let err = Trainer::open(longer, dir.clone(), Device::flex()).err().expect("other step count refused");
    assert!(err.contains("training settings") && err.contains("4 steps planned there, 8 asked"), "{err}");
    let mut reseeded = cfg.clone();
    reseeded.seed += 1;
    assert!(Trainer::open(reseeded, dir.clone(), Device::flex()).is_err(), "other seed refused");
    // The run's own settings resume it.
    assert_eq!(Trainer::open(cfg, dir.clone(), Device::flex()).unwrap().state.step, 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// Fine-tuning starts from the given weights (online and EMA), checks them by SHA-256, and a run
/// with another label-dropout rate trains the null class on that share of the batch.
#[test]
fn a_fine_tune_starts_from_the_given_weights() {
    let base_cfg = tiny_config();
    let (images, labels) = tiny_data();
    let base_dir = fresh_dir("base");
    let mut base = Trainer::open(base_cfg.clone(), base_dir.clone(), Device::flex()).unwrap();
    for _ in 0..2 {
        base.step(&images, &labels);
    }
    let file = base_dir.join("start.bpk");
    let bytes = ddpm_web::app::weights::encode_module(base.ema.clone(), false).unwrap();
    std::fs::write(&file, &bytes).unwrap();
    let mut cfg = base_cfg.clone();
    cfg.train.label_dropout = 0.5;
    cfg.train.init = Some(ddpm_web::app::config::InitWeights { file: file.display().to_string(), sha256: ddpm_web::app::weights::sha256_hex(&bytes) });
    let dir = fresh_dir("finetune");
    let mut tune = Trainer::open(cfg.clone(), dir.clone(), Device::flex()).unwrap();
    let start = outputs(&tune);
    assert_eq!(start.0, start.1, "online and EMA start equal");
    assert_eq!(start.1, outputs(&base).1, "the fine-tune starts from the base run's EMA weights");
    tune.step(&images, &labels);
    tune.checkpoint().unwrap();
    // A resume needs only the checkpoint, not the starting file: the command's pin of the gone
    // file comes from the run's state, and nowhere else.
    std::fs::remove_file(&file).unwrap();
    drop(tune);
    let name = file.display().to_string();
    assert_eq!(pin_weights(&name, &dir).unwrap(), cfg.train.init.clone().unwrap());
    let err = pin_weights(&name, &fresh_dir("finetune-unplanned")).expect_err("a gone file pins nothing for a fresh run");
    assert!(err.starts_with(&name), "{err}");
    let resumed = Trainer::open(cfg.clone(), dir.clone(), Device::flex()).unwrap();
    assert_eq!(resumed.state.step, 1);
    // Other starting weights are refused for a fresh run.
    std::fs::write(&file, b"not these weights").unwrap();
    let err = Trainer::open(cfg.clone(), fresh_dir("finetune-other"), Device::flex()).err().expect("changed file refused");
    assert!(err.contains("SHA-256"), "{err}");
    // Label dropout 0.5 drops about half of the labels to the null class.
    let batch = ddpm_web::native::train::make_batch(&DdpmConfig { train: ddpm_web::app::config::TrainConfig { batch_size: 2000, ..cfg.train.clone() }, ..cfg }, &images, &labels, 0);
    let dropped = batch.labels.iter().filter(|&&l| l == NULL_CLASS as i64).count();
    assert!((900..=1100).contains(&dropped), "{dropped} of 2000 labels dropped");
    for d in [base_dir, dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A hybrid run trains the variance channel with the network: its loss is the plain run's L_simple
/// plus lambda L_vlb on the same batch and weights, the channel moves, and a resume keeps it.
#[test]
fn a_hybrid_run_trains_the_variance_channel_with_the_network() {
    use ddpm_web::app::config::HybridTraining;
    use ddpm_web::diffusion::objective::HYBRID_LAMBDA;
    let plain_cfg = tiny_config();
    let mut cfg = plain_cfg.clone();
    cfg.train.hybrid = Some(HybridTraining { variance_init: None });
    let (images, labels) = tiny_data();
    let device = Device::flex();
    let raw_variance = |trainer: &Trainer| -> Vec<f32> {
        let model = trainer.model.valid();
        let c = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, NULL_CLASS as i64], [2]), &device);
        let emb = model.time_embedding(&[2.0, 700.0], &device) + model.class_embedding(c, 2);
        let (_, raw) = model.forward_with_variance(NoiseSource::new(9).tensor([2, 1, 28, 28], &device), emb);
        raw.expect("a hybrid run's network has a variance channel").into_data().try_to_vec().unwrap()
    };

    let mut plain = Trainer::open(plain_cfg, fresh_dir("hybrid-plain"), Device::flex()).unwrap();
    let dir = fresh_dir("hybrid");
    let mut trainer = Trainer::open(cfg.clone(), dir.clone(), Device::flex()).unwrap();
    assert!(trainer.ema.has_learned_variance() && !plain.model.has_learned_variance());
    let fresh = raw_variance(&trainer);
    assert!(fresh.iter().all(|v| *v == -1.0), "a fresh channel starts at v = 0 (beta_tilde)");

    let (simple, hybrid) = (plain.step(&images, &labels), trainer.step(&images, &labels));
    assert_eq!(simple.vlb, None);
    let vlb = hybrid.vlb.expect("a hybrid step reports L_vlb");
    assert!(vlb.is_finite() && vlb > 0.0, "L_vlb {vlb}");
    let rest = hybrid.loss - HYBRID_LAMBDA * vlb;
    assert!((rest - simple.loss).abs() <= 1e-5 * simple.loss, "L_hybrid - lambda L_vlb = {rest}, L_simple = {}", simple.loss);

    trainer.step(&images, &labels);
    let trained = raw_variance(&trainer);
    assert!(trained.iter().zip(&fresh).any(|(a, b)| (a - b).abs() > 1e-4), "the channel learned");
    trainer.checkpoint().unwrap();
    drop(trainer);
    let resumed = Trainer::open(cfg, dir.clone(), Device::flex()).unwrap();
    assert_eq!(resumed.state.step, 2);
    assert_eq!(raw_variance(&resumed), trained, "the resume keeps the channel");
    let _ = std::fs::remove_dir_all(dir);
}
