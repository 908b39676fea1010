//! Train the DDPM on the project's MNIST split, resumably.
//!
//!   cargo run --release --bin train -- [--run DIR] [--steps N] [--device flex|cuda]
//!                                      [--bench STEPS] [--channels A,B,C] [--batch N]
//!                                      [--init WEIGHTS.bpk] [--label-dropout P] [--min-snr GAMMA] [--lr X] [--warmup N]
//!                                      [--seed N] [--hybrid] [--init-variance VARIANCE.bpk]
//!
//! `--init` fine-tunes from existing weights (e.g. the shipped ones with a higher
//! `--label-dropout`, to train the null class that unconditional sampling and guidance use).
//! `--seed` gives a fine-tune its own batches, timesteps and noise: under the seed of the run
//! it starts from, its step k would draw exactly what that run's step k drew.
//! `--hybrid` trains the variance channel with the network on L_hybrid (Improved DDPM): a fresh
//! channel, or the one in `--init-variance` (which implies `--hybrid`).
//! Checkpoints (online weights, EMA weights, Adam state, step) go to the run directory every
//! `checkpoint_every` steps with a loss CSV and a PNG grid of samples; re-running the same
//! command resumes from there. `--bench K` times K steps and exits without writing anything.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use ddpm_web::app::config::{DdpmConfig, HybridTraining};
use ddpm_web::native::data::{DEFAULT_CACHE, load_mnist, split};
use ddpm_web::native::train::{Clock, StepLoss, Trainer, pin_weights, to_training_arrays, write_sample_grid};
use indicatif::{ProgressBar, ProgressStyle};

struct Args {
    run: PathBuf,
    steps: Option<usize>,
    device: String,
    bench: Option<usize>,
    channels: Option<[usize; 3]>,
    batch: Option<usize>,
    init: Option<String>,
    label_dropout: Option<f64>,
    min_snr: Option<f64>,
    lr: Option<f64>,
    warmup: Option<usize>,
    seed: Option<u64>,
    hybrid: bool,
    init_variance: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { run: PathBuf::from(".cache/runs/main"), steps: None, device: "flex".into(), bench: None, channels: None, batch: None, init: None, label_dropout: None, min_snr: None, lr: None, warmup: None, seed: None, hybrid: false, init_variance: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|_| format!("{flag}: '{v}' is not a number"));
        let real = |v: String| v.parse::<f64>().map_err(|_| format!("{flag}: '{v}' is not a number"));
        match flag.as_str() {
            "--run" => args.run = PathBuf::from(value()?),
            "--steps" => args.steps = Some(number(value()?)?),
            "--device" => args.device = value()?,
            "--bench" => args.bench = Some(number(value()?)?),
            "--batch" => args.batch = Some(number(value()?)?),
            "--init" => args.init = Some(value()?),
            "--label-dropout" => args.label_dropout = Some(real(value()?)?).filter(|p| (0.0..=1.0).contains(p)).or_else(|| {
                eprintln!("--label-dropout must be in [0, 1]");
                std::process::exit(2)
            }),
            "--min-snr" => args.min_snr = Some(real(value()?)?).filter(|g| *g > 0.0).or_else(|| {
                eprintln!("--min-snr takes gamma > 0 (Hang et al. use 5)");
                std::process::exit(2)
            }),
            "--lr" => args.lr = Some(real(value()?)?),
            "--warmup" => args.warmup = Some(number(value()?)?),
            "--seed" => args.seed = Some(number(value()?)? as u64),
            "--hybrid" => args.hybrid = true,
            "--init-variance" => {
                args.init_variance = Some(value()?);
                args.hybrid = true;
            }
            "--channels" => {
                let v = value()?;
                let parts: Vec<usize> = v.split(',').map(|p| p.trim().parse().map_err(|_| format!("--channels: bad list '{v}'"))).collect::<Result<_, _>>()?;
                args.channels = Some(parts.try_into().map_err(|_| "--channels takes three numbers".to_string())?);
            }
            "-h" | "--help" => {
                println!("usage: train [--run DIR] [--steps N] [--device flex|cuda] [--bench STEPS] [--channels A,B,C] [--batch N] [--init WEIGHTS.bpk] [--label-dropout P] [--min-snr GAMMA] [--lr X] [--warmup N] [--seed N] [--hybrid] [--init-variance VARIANCE.bpk]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(args)
}

fn device(name: &str) -> Result<Device, String> {
    match name {
        "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)] // kept only to compare its training throughput with flex
        "ndarray" => Ok(Device::ndarray()),
        other => Err(format!("unknown or not compiled-in device '{other}' (flex; cuda and ndarray need --features cuda / ndarray)")),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mut cfg = DdpmConfig::default();
    if let Some(s) = args.steps {
        cfg.train.steps = s;
    }
    if let Some(c) = args.channels {
        cfg.model.channels = c;
    }
    if let Some(b) = args.batch {
        cfg.train.batch_size = b;
    }
    if let Some(gamma) = args.min_snr {
        cfg.train.weighting = ddpm_web::diffusion::objective::LossWeighting::MinSnr { gamma };
    }
    if let Some(p) = args.label_dropout {
        cfg.train.label_dropout = p;
    }
    if let Some(lr) = args.lr {
        cfg.train.learning_rate = lr;
    }
    if let Some(w) = args.warmup {
        cfg.train.warmup_steps = w;
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    let pinned = |file: &String| pin_weights(file, &args.run);
    if let Some(file) = &args.init {
        cfg.train.init = Some(pinned(file)?);
    }
    if args.hybrid {
        cfg.train.hybrid = Some(HybridTraining { variance_init: args.init_variance.as_ref().map(pinned).transpose()? });
    }
    let device = device(&args.device)?;
    let digits = load_mnist(std::path::Path::new(DEFAULT_CACHE)).map_err(|e| e.to_string())?;
    let (train, held_out) = split(&digits);
    let (images, labels) = to_training_arrays(&train);
    println!("data: {} training digits, {} held out", train.len(), held_out.len());

    if let Some(k) = args.bench {
        let dir = std::env::temp_dir().join(format!("ddpm-bench-{}", std::process::id()));
        let mut trainer = Trainer::open(cfg.clone(), dir.clone(), device)?;
        println!(
            "model: {:?}, {} parameters, {:.1} MFLOPs per image per forward, batch {}",
            cfg.model.channels,
            trainer.model.num_params(),
            cfg.model.forward_flops() as f64 / 1e6,
            cfg.train.batch_size
        );
        trainer.step(&images, &labels); // warm-up
        let start = Instant::now();
        for _ in 0..k {
            trainer.step(&images, &labels);
        }
        let s = start.elapsed().as_secs_f64();
        println!("train step: {:.1} ms, {:.1} images/s over {k} steps on {}", 1e3 * s / k as f64, (k * cfg.train.batch_size) as f64 / s, args.device);
        let _ = std::fs::remove_dir_all(dir);
        return Ok(());
    }

    let mut trainer = Trainer::open(cfg.clone(), args.run.clone(), device)?;
    let total = cfg.train.steps;
    println!(
        "run {}: step {} of {total}, {} parameters, device {}",
        args.run.display(),
        trainer.state.step,
        trainer.model.num_params(),
        args.device
    );
    let bar = ProgressBar::new(total as u64).with_position(trainer.state.step as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} loss {msg} [{elapsed_precise} < {eta_precise}]")
            .map_err(|e| e.to_string())?,
    );
    let clock = Clock::new(trainer.state.seconds);
    let (mut window_loss, mut window_vlb, mut window_steps, mut window_start) = (0.0, 0.0, 0usize, Instant::now());
    while trainer.state.step < total {
        let loss = trainer.step(&images, &labels);
        trainer.state.seconds = clock.seconds();
        window_loss += loss.loss;
        window_vlb += loss.vlb.unwrap_or(0.0);
        window_steps += 1;
        let rate = (window_steps * cfg.train.batch_size) as f64 / window_start.elapsed().as_secs_f64();
        bar.set_position(trainer.state.step as u64);
        bar.set_message(format!("{:.4} | {rate:.0} img/s", window_loss / window_steps as f64));
        if trainer.state.step % cfg.train.checkpoint_every == 0 || trainer.state.step == total {
            let mean = StepLoss { loss: window_loss / window_steps as f64, vlb: loss.vlb.map(|_| window_vlb / window_steps as f64) };
            trainer.append_loss(mean, rate).map_err(|e| e.to_string())?;
            trainer.checkpoint()?;
            write_sample_grid(&cfg, &trainer.ema, 2, &trainer.run.grid(), &trainer.ema.devices()[0])?;
            let vlb = mean.vlb.map(|v| format!(", L_vlb {v:.4} bits/dim")).unwrap_or_default();
            bar.println(format!("step {}: loss {:.4}{vlb}, {rate:.0} images/s, checkpoint written", trainer.state.step, mean.loss));
            (window_loss, window_vlb, window_steps, window_start) = (0.0, 0.0, 0, Instant::now());
        }
    }
    bar.finish();
    println!("done: {} steps in {:.0} s; EMA weights in {}", trainer.state.step, trainer.state.seconds, trainer.run.ema().display());
    Ok(())
}
