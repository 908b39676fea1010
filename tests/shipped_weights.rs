//! The files in `weights/`: sizes and checksums match the manifest, they decode into the
//! architectures, and a small evaluation catches a regression in the weights or the sampler.
#![cfg(not(target_family = "wasm"))]

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use ddpm_web::classifier::Classifier;
use ddpm_web::data::{DEFAULT_CACHE, load_mnist, split};
use ddpm_web::evaluate::{ChunkCache, classify, conditional_accuracy, digits_to_values};
use ddpm_web::model::UNet;
use ddpm_web::sampling::Method;
use ddpm_web::weights::{CLASSIFIER_FILE, MANIFEST, Manifest, UNET_FILE, load_module, verify};

fn manifest() -> Manifest {
    Manifest::parse(&std::fs::read_to_string(Path::new("weights").join(MANIFEST)).expect("weights/manifest.json")).unwrap()
}

fn bytes(m: &Manifest, name: &str) -> Vec<u8> {
    let data = std::fs::read(Path::new("weights").join(name)).unwrap_or_else(|e| panic!("weights/{name}: {e}"));
    verify(m.file(name).unwrap(), &data).unwrap();
    data
}

fn models() -> (Manifest, UNet, Classifier) {
    let m = manifest();
    let device = Device::flex();
    let unet = load_module(UNet::new(&m.config.model, &device), bytes(&m, UNET_FILE)).unwrap();
    let classifier = load_module(Classifier::new(&device), bytes(&m, CLASSIFIER_FILE)).unwrap();
    (m, unet, classifier)
}

#[test]
fn shipped_files_match_the_manifest_and_decode() {
    let (m, unet, _) = models();
    assert_eq!(unet.num_params(), m.parameters);
    let total: usize = m.files.iter().map(|f| f.bytes).sum();
    assert!(total < 8 << 20, "weights total {total} bytes");
    for f in &m.files {
        assert_eq!(std::fs::metadata(Path::new("weights").join(&f.name)).unwrap().len() as usize, f.bytes);
    }
}

#[test]
fn small_evaluation_catches_regressions() {
    let (m, unet, classifier) = models();
    let device = Device::flex();
    let digits = load_mnist(Path::new(DEFAULT_CACHE)).expect("run scripts/fetch-data.sh");
    let (_, held_out) = split(&digits);
    let held = &held_out[..300];
    let (labels, _) = classify(&classifier, &digits_to_values(held), &device);
    let acc = labels.iter().zip(held).filter(|(l, d)| **l == d.label).count() as f64 / held.len() as f64;
    assert!(acc >= 0.97, "classifier accuracy on 300 held-out digits: {acc}");
    let (cond, per_digit) =
        conditional_accuracy(&unet, &classifier, &m.config, Method::Ddim { steps: 20, eta: 0.0 }, 3, 3, &ChunkCache::new(None), &device, |_| {});
    assert!(cond >= 0.8, "conditional accuracy with 3 DDIM-20 samples per digit: {cond} ({per_digit:?})");
}
