//! Helpers the native test files share: the CPU device, tensor reads, and the shipped weights.
#![allow(dead_code)] // each test file uses its own subset

pub mod tolerance;

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use ddpm_web::nets::classifier::Classifier;
use ddpm_web::nets::unet::{UNet, VarianceHead};
use ddpm_web::app::weights::{CLASSIFIER_FILE, MANIFEST, Manifest, UNET_FILE, VARIANCE_FILE, load_module, verify};

pub fn dev() -> Device {
    Device::flex()
}

/// A tensor's values on the host (native code may read synchronously).
pub fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// The SHA-256 of the shipped U-Net, which fixtures that depend on the weights record.
pub fn shipped_unet_sha256() -> String {
    shipped_manifest().file(UNET_FILE).unwrap().sha256.clone()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn shipped_manifest() -> Manifest {
    Manifest::parse(&std::fs::read_to_string(Path::new("weights").join(MANIFEST)).expect("weights/manifest.json")).unwrap()
}

/// A file of `weights/`, checked against the manifest.
pub fn shipped_bytes(m: &Manifest, name: &str) -> Vec<u8> {
    let data = std::fs::read(Path::new("weights").join(name)).unwrap_or_else(|e| panic!("weights/{name}: {e}"));
    verify(m.file(name).unwrap(), &data).unwrap();
    data
}

/// The shipped manifest, U-Net (with its variance channel, when one is shipped) and classifier on the CPU.
pub fn shipped_models() -> (Manifest, UNet, Classifier) {
    let m = shipped_manifest();
    let mut unet = load_module(UNet::new(&m.config.model, &dev()), shipped_bytes(&m, UNET_FILE)).unwrap();
    // The manifest counts the eps network's parameters.
    assert_eq!(unet.num_params(), m.parameters);
    if m.file(VARIANCE_FILE).is_ok() {
        unet = unet.with_variance_head(load_module(VarianceHead::new(&m.config.model, &dev()), shipped_bytes(&m, VARIANCE_FILE)).unwrap());
    }
    let classifier = load_module(Classifier::new(&dev()), shipped_bytes(&m, CLASSIFIER_FILE)).unwrap();
    (m, unet, classifier)
}
