//! Export a training run's EMA weights to `weights/` with `manifest.json`.
//!
//!   cargo run --release --bin export -- [--run DIR] [--out weights] [--from DIR]
//!   cargo run --release --bin export -- --digits     (writes www/digits.json: the first
//!                                                     held-out digit of each label, for the explainer;
//!                                                     and www/restore-digits.json: the first ten of
//!                                                     each label, for the restore page)
//!
//! Stores the U-Net in half precision when that reproduces the f32 network's output to 1e-3
//! (checked here on a seeded batch), else in f32. Metrics already in the manifest are kept while
//! the U-Net is unchanged; new U-Net weights keep only the classifier's accuracy.
//!
//! A fine-tune's manifest nests the training record of the weights it started from, read from the
//! manifest in `--from` (default: the one in `--out`, which a fine-tune usually overwrites) when
//! that manifest describes the starting file's SHA-256.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use ddpm_web::app::config::DdpmConfig;
use ddpm_web::native::data::{DEFAULT_CACHE, load_mnist, split};
use ddpm_web::explain::compute::{EXAMPLE_DIGITS_FILE, ExampleDigit, RESTORE_DIGITS_FILE, RESTORE_DIGITS_PER_LABEL};
use ddpm_web::nets::unet::{UNet, VarianceHead};
use ddpm_web::diffusion::objective::LossWeighting;
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::native::train::TrainState;
use ddpm_web::app::weights::{
    CLASSIFIER_METRIC, FileEntry, MANIFEST, file_entry, Manifest, StartingWeights, TrainingRecord, UNET_FILE, VARIANCE_FILE, encode_module, load_module, sha256_hex,
};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn max_output_diff(a: &UNet, b: &UNet, device: &Device) -> f32 {
    let mut rng = NoiseSource::new(99);
    let x = rng.tensor([4, 1, 28, 28], device);
    let t = [1.0f32, 10.0, 300.0, 1000.0];
    let c = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3, 7, 10], [4]), device);
    let ya: Vec<f32> = a.forward(x.clone(), &t, c.clone()).into_data().try_to_vec().unwrap();
    let yb: Vec<f32> = b.forward(x, &t, c).into_data().try_to_vec().unwrap();
    ya.iter().zip(&yb).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
}

fn export_digits() -> Result<(), String> {
    let all = load_mnist(Path::new(DEFAULT_CACHE)).map_err(|e| e.to_string())?;
    let (_, held_out) = split(&all);
    let digits: Vec<ExampleDigit> = (0..10)
        .filter_map(|label| held_out.iter().position(|d| d.label == label))
        .map(|k| ExampleDigit { held_out_index: k, label: held_out[k].label, levels: held_out[k].pixels.clone() })
        .collect();
    let path = Path::new("www").join(EXAMPLE_DIGITS_FILE);
    std::fs::write(&path, serde_json::to_string(&digits).unwrap() + "\n").map_err(|e| e.to_string())?;
    println!("wrote {} ({} held-out digits)", path.display(), digits.len());
    // Label-major: the first RESTORE_DIGITS_PER_LABEL held-out digits of 0, then of 1, ...
    let restore: Vec<ExampleDigit> = (0..10)
        .flat_map(|label| held_out.iter().enumerate().filter(move |(_, d)| d.label == label).take(RESTORE_DIGITS_PER_LABEL))
        .map(|(k, d)| ExampleDigit { held_out_index: k, label: d.label, levels: d.pixels.clone() })
        .collect();
    let path = Path::new("www").join(RESTORE_DIGITS_FILE);
    std::fs::write(&path, serde_json::to_string(&restore).unwrap() + "\n").map_err(|e| e.to_string())?;
    println!("wrote {} ({} held-out digits)", path.display(), restore.len());
    Ok(())
}

const DEFAULT_RUN: &str = ".cache/runs/main";

/// The command that reproduces a run with `cfg` in `run_dir`: the train command with the flags for
/// whatever it sets away from the defaults.
fn train_command(cfg: &DdpmConfig, run_dir: &Path) -> String {
    let default = DdpmConfig::default();
    let mut flags = Vec::new();
    if run_dir != Path::new(DEFAULT_RUN) {
        flags.push(format!("--run {}", run_dir.display()));
    }
    if cfg.train.steps != default.train.steps {
        flags.push(format!("--steps {}", cfg.train.steps));
    }
    if cfg.model.channels != default.model.channels {
        flags.push(format!("--channels {}", cfg.model.channels.map(|c| c.to_string()).join(",")));
    }
    if cfg.train.batch_size != default.train.batch_size {
        flags.push(format!("--batch {}", cfg.train.batch_size));
    }
    if let Some(init) = &cfg.train.init {
        flags.push(format!("--init {}", init.file));
    }
    if cfg.train.label_dropout != default.train.label_dropout {
        flags.push(format!("--label-dropout {}", cfg.train.label_dropout));
    }
    if cfg.train.learning_rate != default.train.learning_rate {
        flags.push(format!("--lr {}", cfg.train.learning_rate));
    }
    if cfg.train.warmup_steps != default.train.warmup_steps {
        flags.push(format!("--warmup {}", cfg.train.warmup_steps));
    }
    if cfg.seed != default.seed {
        flags.push(format!("--seed {}", cfg.seed));
    }
    if let LossWeighting::MinSnr { gamma } = cfg.train.weighting {
        flags.push(format!("--min-snr {gamma}"));
    }
    match cfg.train.hybrid.as_ref().map(|h| h.variance_init.as_ref()) {
        Some(Some(init)) => flags.push(format!("--init-variance {}", init.file)),
        Some(None) => flags.push("--hybrid".into()),
        None => {}
    }
    let base = "cargo run --release --bin train";
    if flags.is_empty() { base.into() } else { format!("{base} -- {}", flags.join(" ")) }
}

fn read_manifest(path: &Path) -> Option<Manifest> {
    std::fs::read_to_string(path).ok().and_then(|s| Manifest::parse(&s).ok())
}

fn run() -> Result<(), String> {
    let mut run_dir = PathBuf::from(DEFAULT_RUN);
    let mut out = PathBuf::from("weights");
    let mut from = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--run" => run_dir = args.next().ok_or("--run needs a value")?.into(),
            "--out" => out = args.next().ok_or("--out needs a value")?.into(),
            "--from" => from = Some(PathBuf::from(args.next().ok_or("--from needs a value")?)),
            "--digits" => return export_digits(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let state: TrainState = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("state.json")).map_err(|e| format!("{}: {e} (no checkpoint yet?)", run_dir.display()))?,
    )
    .map_err(|e| e.to_string())?;
    // Guidance is a sampling choice, not part of training: the page's evaluated default, not
    // whatever default the run was started under.
    let cfg = DdpmConfig { guidance: DdpmConfig::default().guidance, ..state.config.clone() };
    let device = Device::flex();
    let bytes = std::fs::read(run_dir.join("ema.bpk")).map_err(|e| e.to_string())?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| e.to_string())?;
    let shape = match cfg.train.hybrid {
        Some(_) => UNet::new(&cfg.model, &device).with_variance_head(VarianceHead::new(&cfg.model, &device)),
        None => UNet::new(&cfg.model, &device),
    };
    // A hybrid run's channel is stored beside the eps weights, in its own file.
    let (ema, head) = shape.try_load_record(record).map_err(|e| e.to_string())?.split_variance_head();

    let half = encode_module(ema.clone(), true).map_err(|e| e.to_string())?;
    let reloaded = load_module(UNet::new(&cfg.model, &device), half.clone()).map_err(|e| e.to_string())?;
    let diff = max_output_diff(&ema, &reloaded, &device);
    let (bytes, dtype) = if diff < 1e-3 { (half, "f16") } else { (encode_module(ema.clone(), false).map_err(|e| e.to_string())?, "f32") };
    println!("f16 weights change the output by at most {diff:.2e}: storing {dtype}");

    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join(UNET_FILE), &bytes).map_err(|e| e.to_string())?;
    let manifest_path = out.join(MANIFEST);
    let old = read_manifest(&manifest_path);
    let started_from = match &cfg.train.init {
        None => None,
        Some(init) => {
            let describes_start = |m: &Manifest| m.file(UNET_FILE).is_ok_and(|f| f.sha256 == init.sha256);
            let parent = read_manifest(&from.as_deref().unwrap_or(&out).join(MANIFEST))
                .filter(describes_start)
                .map(|m| m.training)
                // Exporting the same run again keeps the record it already wrote.
                .or_else(|| {
                    old.as_ref()
                        .and_then(|m| m.training.started_from.as_ref())
                        .filter(|s| s.sha256 == init.sha256)
                        .and_then(|s| s.training.clone())
                });
            if parent.is_none() {
                println!("no manifest in --from/--out describes the starting weights {}: their training is not recorded", init.file);
            }
            Some(Box::new(StartingWeights { sha256: init.sha256.clone(), training: parent }))
        }
    };
    let mut files: Vec<FileEntry> = old.as_ref().map(|m| m.files.clone()).unwrap_or_default();
    let sha256 = sha256_hex(&bytes);
    let same_unet = files.iter().any(|f| f.name == UNET_FILE && f.sha256 == sha256);
    files.retain(|f| f.name != UNET_FILE);
    files.insert(0, FileEntry { name: UNET_FILE.into(), bytes: bytes.len(), sha256, dtype: dtype.into() });
    // A variance channel was trained on the old body: it goes with it.
    let mut variance_training = old.as_ref().filter(|_| same_unet).and_then(|m| m.variance_training.clone());
    if let Some(head) = head {
        // Trained with this body, in the run the manifest's training record describes.
        let bytes = encode_module(head, false).map_err(|e| e.to_string())?;
        std::fs::write(out.join(VARIANCE_FILE), &bytes).map_err(|e| e.to_string())?;
        files.retain(|f| f.name != VARIANCE_FILE);
        files.push(file_entry(VARIANCE_FILE, &bytes, "f32"));
        variance_training = None;
    } else if !same_unet && files.iter().any(|f| f.name == VARIANCE_FILE) {
        files.retain(|f| f.name != VARIANCE_FILE);
        let _ = std::fs::remove_file(out.join(VARIANCE_FILE));
        println!("new U-Net weights: dropped the variance channel trained on the old ones; run train-variance");
    }
    // Metrics measured on other U-Net weights no longer hold; only the classifier's own stays.
    let mut metrics = old.map(|m| m.metrics).unwrap_or_else(|| serde_json::json!({}));
    if !same_unet {
        if let Some(map) = metrics.as_object_mut() {
            let dropped: Vec<String> = map.keys().filter(|k| *k != CLASSIFIER_METRIC).cloned().collect();
            for k in &dropped {
                map.remove(k);
            }
            if !dropped.is_empty() {
                println!("new U-Net weights: dropped {} metrics measured on the old ones; run the evaluate command", dropped.len());
            }
        }
    }
    let manifest = Manifest {
        files,
        parameters: ema.num_params(),
        training: TrainingRecord {
            command: train_command(&cfg, &run_dir),
            steps_done: state.step,
            steps_planned: cfg.train.steps,
            seconds: state.seconds.round(),
            images_seen: state.step * cfg.train.batch_size,
            machine: "2-core x86-64 CPU, Burn flex backend (simd, rayon)".into(),
            started_from,
        },
        variance_training,
        metrics,
        config: cfg,
    };
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).unwrap() + "\n").map_err(|e| e.to_string())?;
    println!("wrote {} ({} bytes) and {} at step {}", out.join(UNET_FILE).display(), bytes.len(), manifest_path.display(), state.step);
    Ok(())
}
