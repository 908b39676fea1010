//! Train the shipped U-Net's variance channel on its frozen eps network (Improved DDPM's learned
//! reverse variances; see `ddpm_web::native::train_variance`), resumably, and ship it.
//!
//!   cargo run --release --bin train-variance -- [--run DIR] [--steps N] [--batch N] [--lr X]
//!                                               [--seed N] [--weights DIR] [--export]
//!
//! Re-running the same command resumes from the run directory's checkpoint. `--export` writes
//! the channel to `DIR/variance.bpk` (default `weights/`) and records it and its training in the
//! manifest; the bound with it comes from `evaluate --only nll-learned`.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use ddpm_web::app::weights::{
    MANIFEST, Manifest, StartingWeights, TrainingRecord, UNET_FILE, VARIANCE_FILE, encode_module, file_entry, load_unet, update_manifest,
};
use ddpm_web::native::data::{DEFAULT_CACHE, load_mnist, split};
use ddpm_web::native::train::{Clock, to_training_arrays};
use ddpm_web::native::train_variance::{VarianceTrainConfig, VarianceTrainer};

struct Args {
    run: PathBuf,
    weights: PathBuf,
    steps: usize,
    batch: usize,
    lr: f64,
    seed: u64,
    export: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { run: PathBuf::from(".cache/runs/variance"), weights: PathBuf::from("weights"), steps: 2000, batch: 64, lr: 1e-3, seed: 71, export: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{flag}: '{v}' is not a positive number"));
        match flag.as_str() {
            "--run" => args.run = PathBuf::from(value()?),
            "--weights" => args.weights = PathBuf::from(value()?),
            "--steps" => args.steps = number(value()?)?,
            "--batch" => args.batch = number(value()?)?,
            "--seed" => args.seed = number(value()?)? as u64,
            "--lr" => {
                let v = value()?;
                args.lr = v.parse::<f64>().ok().filter(|x| *x > 0.0).ok_or_else(|| format!("--lr: '{v}' is not a positive number"))?;
            }
            "--export" => args.export = true,
            "-h" | "--help" => {
                println!("usage: train-variance [--run DIR] [--steps N] [--batch N] [--lr X] [--seed N] [--weights DIR] [--export]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(args)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(args.weights.join(MANIFEST)).map_err(|e| format!("{}: {e}", args.weights.display()))?;
    let manifest = Manifest::parse(&text).map_err(|e| e.to_string())?;
    let entry = manifest.file(UNET_FILE).map_err(|e| e.to_string())?.clone();
    let bytes = std::fs::read(args.weights.join(UNET_FILE)).map_err(|e| e.to_string())?;
    let device = Device::flex();
    let unet = load_unet(&manifest.config, &entry, bytes, &device).map_err(|e| e.to_string())?;
    let cfg = VarianceTrainConfig {
        steps: args.steps,
        batch_size: args.batch,
        learning_rate: args.lr,
        label_dropout: 0.5,
        seed: args.seed,
        checkpoint_every: 100,
        base_sha256: entry.sha256.clone(),
    };
    let digits = load_mnist(std::path::Path::new(DEFAULT_CACHE)).map_err(|e| e.to_string())?;
    let (train, _) = split(&digits);
    let (images, labels) = to_training_arrays(&train);
    let mut trainer = VarianceTrainer::open(&manifest.config, unet, cfg.clone(), args.run.clone(), device)?;
    println!("run {}: step {} of {}, variance channel of {} ({} parameters)", args.run.display(), trainer.state.step, cfg.steps, &entry.sha256[..12], trainer.head.num_params());
    let clock = Clock::new(trainer.state.seconds);
    let (mut window, mut count, mut start) = (0.0, 0usize, Instant::now());
    while trainer.state.step < cfg.steps {
        window += trainer.step(&images, &labels);
        count += 1;
        trainer.state.seconds = clock.seconds();
        if trainer.state.step % cfg.checkpoint_every == 0 || trainer.state.step == cfg.steps {
            let rate = (count * cfg.batch_size) as f64 / start.elapsed().as_secs_f64();
            trainer.checkpoint()?;
            println!("step {}: L_vlb estimate {:.4} bits/dim (mean of {count}), {rate:.0} images/s, checkpoint written", trainer.state.step, window / count as f64);
            (window, count, start) = (0.0, 0, Instant::now());
        }
    }
    if args.export {
        let bytes = encode_module(trainer.trained_head(), false).map_err(|e| e.to_string())?;
        std::fs::write(args.weights.join(VARIANCE_FILE), &bytes).map_err(|e| e.to_string())?;
        let record = TrainingRecord {
            command: format!(
                "cargo run --release --bin train-variance -- --run {} --steps {} --batch {} --lr {} --seed {} --export",
                args.run.display(), cfg.steps, cfg.batch_size, cfg.learning_rate, cfg.seed
            ),
            steps_done: trainer.state.step,
            steps_planned: cfg.steps,
            seconds: trainer.state.seconds.round(),
            images_seen: trainer.state.step * cfg.batch_size,
            machine: "2-core x86-64 CPU, Burn flex backend (simd, rayon)".into(),
            started_from: Some(Box::new(StartingWeights { sha256: entry.sha256.clone(), training: None })),
        };
        update_manifest(&args.weights, |m| {
            m.files.retain(|f| f.name != VARIANCE_FILE);
            m.files.push(file_entry(VARIANCE_FILE, &bytes, "f32"));
            m.variance_training = Some(record);
        })
        .map_err(|e| e.to_string())?;
        println!("wrote {} ({} bytes) and its manifest entry", args.weights.join(VARIANCE_FILE).display(), bytes.len());
    }
    Ok(())
}
