//! What every worker holds: its backend and the verified, decoded networks. The page fetches the
//! files once and hands each worker the bytes; the worker checks them against the manifest
//! (size and SHA-256) before decoding.

use burn::tensor::Tensor;

use super::backend::{Backend, init_backend};
use crate::nets::classifier::Classifier;
use crate::app::config::DdpmConfig;
use crate::nets::fused::conv_weights_laid_out;
use crate::nets::unet::UNet;
use crate::app::protocol::{BackendPreference, WeightFiles};
use crate::diffusion::schedule::NoiseSchedule;
use crate::app::weights::{CLASSIFIER_FILE, Manifest, UNET_FILE, VARIANCE_FILE, load_module, load_unet, load_variance_head, verify};

pub struct Session {
    pub backend: Backend,
    pub config: DdpmConfig,
    pub schedule: NoiseSchedule,
    pub unet: UNet,
    pub classifier: Classifier,
    pub manifest: Manifest,
}

impl Session {
    pub async fn open(preference: BackendPreference, files: WeightFiles) -> Result<Self, String> {
        let backend = init_backend(preference).await;
        let manifest = Manifest::parse(&files.manifest).map_err(|e| e.to_string())?;
        let entry = manifest.file(UNET_FILE).map_err(|e| e.to_string())?;
        let mut unet = load_unet(&manifest.config, entry, files.unet.into_vec(), &backend.device).map_err(|e| e.to_string())?;
        // The variance channel is optional for the weights, not for a page given a manifest that lists it.
        if let Ok(entry) = manifest.file(VARIANCE_FILE) {
            let bytes = files.variance.ok_or_else(|| format!("{VARIANCE_FILE} is listed in the manifest but was not downloaded"))?;
            let head = load_variance_head(&manifest.config, entry, bytes.into_vec(), &backend.device).map_err(|e| e.to_string())?;
            unet = unet.with_variance_head(head);
        }
        let entry = manifest.file(CLASSIFIER_FILE).map_err(|e| e.to_string())?;
        let bytes = files.classifier.into_vec();
        verify(entry, &bytes).map_err(|e| e.to_string())?;
        let classifier = conv_weights_laid_out(load_module(Classifier::new(&backend.device), bytes).map_err(|e| e.to_string())?);
        let config = manifest.config.clone();
        Ok(Self { backend, schedule: config.schedule(), config, unet, classifier, manifest })
    }
}

/// Read a tensor to the host (the only way that works on WebGPU).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    let data = t.into_data_async().await.map_err(|e| format!("reading a tensor failed: {e:?}"))?;
    data.try_to_vec::<f32>().map_err(|e| format!("unexpected tensor data: {e:?}"))
}
