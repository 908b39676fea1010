//! Train the project's MNIST classifier on the 9,000 training digits and ship it.
//!
//!   cargo run --release --bin classifier -- [--epochs N] [--out weights]
//!
//! Adam, batch 128, random shifts of up to 2 pixels as augmentation, seed 7. Reports held-out
//! accuracy, stores `classifier.bpk` (f16 when that leaves every held-out label unchanged) and
//! records the file and the accuracy in `manifest.json`.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn::nn::loss::CrossEntropyLossConfig;
use ddpm_web::nets::classifier::Classifier;
use ddpm_web::native::evaluate::{classify, digits_to_values};
use ddpm_web::native::data::{DEFAULT_CACHE, Digit, load_mnist, split};
use ddpm_web::nets::unet::{IMAGE_SIZE, PIXELS};
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::app::weights::{CLASSIFIER_FILE, CLASSIFIER_METRIC, encode_module, file_entry, load_module, update_manifest};

const SEED: u64 = 7;
const BATCH: usize = 128;

/// Shift an image by (dy, dx) pixels, filling with background (-1).
fn shifted(image: &[f32], dy: i32, dx: i32) -> Vec<f32> {
    let mut out = vec![-1.0; PIXELS];
    for y in 0..IMAGE_SIZE as i32 {
        for x in 0..IMAGE_SIZE as i32 {
            let (sy, sx) = (y - dy, x - dx);
            if (0..IMAGE_SIZE as i32).contains(&sy) && (0..IMAGE_SIZE as i32).contains(&sx) {
                out[(y * IMAGE_SIZE as i32 + x) as usize] = image[(sy * IMAGE_SIZE as i32 + sx) as usize];
            }
        }
    }
    out
}

/// Held-out labels as the classifier reads them (the evaluation's own batching and argmax).
fn predict(model: &Classifier, digits: &[Digit], device: &Device) -> Vec<usize> {
    classify(model, &digits_to_values(digits), device).0
}

fn accuracy(predicted: &[usize], digits: &[Digit]) -> f64 {
    predicted.iter().zip(digits).filter(|(p, d)| **p == d.label).count() as f64 / digits.len() as f64
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut epochs = 40usize;
    let mut out = PathBuf::from("weights");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--epochs" => epochs = args.next().and_then(|v| v.parse().ok()).ok_or("--epochs needs a number")?,
            "--out" => out = args.next().ok_or("--out needs a value")?.into(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let digits = load_mnist(std::path::Path::new(DEFAULT_CACHE)).map_err(|e| e.to_string())?;
    let (train, held_out) = split(&digits);
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let mut model = Classifier::init_seeded(SEED, &ad);
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut rng = NoiseSource::new(SEED);
    let start = Instant::now();
    let steps_per_epoch = train.len() / BATCH;
    for epoch in 0..epochs {
        let lr = 1e-3 * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos());
        let mut total = 0.0;
        for _ in 0..steps_per_epoch {
            let mut values = Vec::with_capacity(BATCH * PIXELS);
            let mut labels = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                let d = &train[rng.index(0..train.len())];
                let (dy, dx) = (rng.index(0..5) as i32 - 2, rng.index(0..5) as i32 - 2);
                values.extend(shifted(&d.to_model_space(), dy, dx));
                labels.push(d.label as i64);
            }
            let x = Tensor::<4>::from_data(TensorData::new(values, [BATCH, 1, IMAGE_SIZE, IMAGE_SIZE]), &ad);
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [BATCH]), &ad);
            let loss = loss_fn.forward(model.logits(x), y);
            total += loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        let acc = accuracy(&predict(&model.valid(), &held_out, &device), &held_out);
        println!("epoch {}: loss {:.4}, held-out accuracy {:.2}% ({:.0} s)", epoch + 1, total / steps_per_epoch as f64, 100.0 * acc, start.elapsed().as_secs_f64());
    }
    let model = model.valid();
    let predicted = predict(&model, &held_out, &device);
    let acc = accuracy(&predicted, &held_out);
    let half = encode_module(model.clone(), true).map_err(|e| e.to_string())?;
    let reloaded = load_module(Classifier::new(&device), half.clone()).map_err(|e| e.to_string())?;
    let (bytes, dtype) = if predict(&reloaded, &held_out, &device) == predicted {
        (half, "f16")
    } else {
        (encode_module(model, false).map_err(|e| e.to_string())?, "f32")
    };
    std::fs::write(out.join(CLASSIFIER_FILE), &bytes).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    update_manifest(&out, |m| {
        m.files.retain(|f| f.name != CLASSIFIER_FILE);
        m.files.push(file_entry(CLASSIFIER_FILE, &bytes, dtype));
        m.metrics[CLASSIFIER_METRIC] = serde_json::json!({
            "value": acc,
            "digits": held_out.len(),
            "epochs": epochs,
            "train_seconds": seconds.round(),
            "command": "cargo run --release --bin classifier",
        });
    })
    .map_err(|e| e.to_string())?;
    println!("classifier: held-out accuracy {:.2}% on {} digits; {} bytes ({dtype}) in {}", 100.0 * acc, held_out.len(), bytes.len(), out.display());
    Ok(())
}
