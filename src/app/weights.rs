//! The shipped weights: burnpack files plus `manifest.json` (sizes, SHA-256, config, metrics).
//! Decoding is platform-neutral: the browser fetches the bytes, native code reads files.

use burn::module::{Module, ModuleMapper, Param};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::config::DdpmConfig;
use crate::nets::fused::conv_weights_laid_out;
use crate::nets::unet::{UNet, VarianceHead};
use crate::diffusion::sampling::GuidanceInterval;
use crate::restore::evaluation::RestoreTable;

pub const MANIFEST: &str = "manifest.json";
pub const UNET_FILE: &str = "unet.bpk";
/// The U-Net's variance channel (`crate::nets::unet::UNet::with_variance_head`), when trained.
pub const VARIANCE_FILE: &str = "variance.bpk";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: usize,
    pub sha256: String,
    /// Storage precision at rest ("f16" or "f32"); loading casts to f32.
    pub dtype: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
    pub config: DdpmConfig,
    pub parameters: usize,
    pub training: TrainingRecord,
    /// How the variance channel in `VARIANCE_FILE` was trained on these eps weights, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variance_training: Option<TrainingRecord>,
    /// Every measured metric with the command that measured it.
    pub metrics: serde_json::Value,
}

/// How a set of weights was trained: the command that reproduces the run, its progress and cost,
/// and for a fine-tune (`config.train.init`) the weights it started from, with their own record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub command: String,
    pub steps_done: usize,
    pub steps_planned: usize,
    pub seconds: f64,
    pub images_seen: usize,
    pub machine: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<Box<StartingWeights>>,
}

/// The weights a fine-tune started from: their hash and, when the exporter had their manifest,
/// how they were trained (so a chain of fine-tunes reads back to its first run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartingWeights {
    pub sha256: String,
    pub training: Option<TrainingRecord>,
}

impl Manifest {
    pub fn parse(json: &str) -> Result<Self, WeightsError> {
        serde_json::from_str(json).map_err(|e| WeightsError(format!("manifest.json is malformed: {e}")))
    }

    pub fn file(&self, name: &str) -> Result<&FileEntry, WeightsError> {
        self.files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| WeightsError(format!("manifest.json lists no file named {name}")))
    }
}

/// One row of the shipped samplers-against-evaluations table (`evaluate --only steps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepsRow {
    /// The sampling page's name of the sampler ("ddim", "dpm2m"), or "ancestral" (DDIM, eta = 1).
    pub sampler: String,
    pub evaluations: usize,
    pub frechet_distance: f64,
    pub ratio_to_real: f64,
    pub read_as_drawn_label: f64,
}

/// The table as the manifest ships it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepsTable {
    pub command: String,
    pub guidance: f64,
    /// Where that guidance applied; `None`: every step.
    #[serde(default)]
    pub guidance_interval: Option<GuidanceInterval>,
    pub sample_count: usize,
    pub real_vs_real_same_count: f64,
    pub rows: Vec<StepsRow>,
}

impl Manifest {
    /// The samplers-against-evaluations table, if the weights were evaluated for it.
    pub fn steps_table(&self) -> Option<Result<StepsTable, WeightsError>> {
        self.metrics.get("samplers_by_steps").map(|v| {
            serde_json::from_value(v.clone()).map_err(|e| WeightsError(format!("manifest.json's samplers_by_steps is malformed: {e}")))
        })
    }
}

impl Manifest {
    /// The restore evaluation's table, if the weights were evaluated for it.
    pub fn restore_table(&self) -> Option<Result<RestoreTable, WeightsError>> {
        self.metrics.get("restore").map(|v| {
            serde_json::from_value(v.clone()).map_err(|e| WeightsError(format!("manifest.json's restore table is malformed: {e}")))
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeightsError(pub String);

impl std::fmt::Display for WeightsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WeightsError {}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Check a downloaded file against its manifest entry before decoding it.
pub fn verify(entry: &FileEntry, bytes: &[u8]) -> Result<(), WeightsError> {
    if bytes.len() != entry.bytes {
        return Err(WeightsError(format!(
            "{} is {} bytes, the manifest says {} (truncated or replaced download?)",
            entry.name,
            bytes.len(),
            entry.bytes
        )));
    }
    let digest = sha256_hex(bytes);
    if digest != entry.sha256 {
        return Err(WeightsError(format!(
            "{} has SHA-256 {digest}, the manifest says {} (corrupt file?)",
            entry.name, entry.sha256
        )));
    }
    Ok(())
}

/// Decode burnpack bytes into a module built on `device`, casting stored f16 to the module's f32.
pub fn load_module<M: Module>(module: M, bytes: Vec<u8>) -> Result<M, WeightsError> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| WeightsError(format!("not a valid burnpack file: {e}")))?
        .cast_to_module_dtype();
    module.try_load_record(record).map_err(|e| WeightsError(format!("weights do not fit the network: {e}")))
}

/// Encode a module as burnpack bytes, optionally in half precision.
pub fn encode_module<M: Module>(module: M, half: bool) -> Result<Vec<u8>, WeightsError> {
    let module = if half { module.map(&mut CastTo(DType::F16)) } else { module };
    let bytes = module
        .into_record()
        .into_bytes()
        .map_err(|e| WeightsError(format!("cannot encode weights: {e}")))?;
    Ok(bytes.to_vec())
}

/// Build the U-Net of `config` on `device` and load verified weights into it, its convolution
/// weights laid out for the device's convolution (`crate::nets::fused::conv_weights_laid_out`).
pub fn load_unet(config: &DdpmConfig, entry: &FileEntry, bytes: Vec<u8>, device: &Device) -> Result<UNet, WeightsError> {
    verify(entry, &bytes)?;
    load_module(UNet::new(&config.model, device), bytes).map(conv_weights_laid_out)
}

/// The variance channel of the U-Net of `config`, from verified weights, laid out the same way.
pub fn load_variance_head(config: &DdpmConfig, entry: &FileEntry, bytes: Vec<u8>, device: &Device) -> Result<VarianceHead, WeightsError> {
    verify(entry, &bytes)?;
    load_module(VarianceHead::new(&config.model, device), bytes).map(conv_weights_laid_out)
}

/// Casts every float parameter to one dtype (half precision at rest).
struct CastTo(DType);

impl ModuleMapper for CastTo {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

pub const CLASSIFIER_FILE: &str = "classifier.bpk";
/// The manifest's metric that depends on the classifier alone, not on the U-Net.
pub const CLASSIFIER_METRIC: &str = "classifier_heldout_accuracy";

/// Read `dir/manifest.json`, let `edit` change it, write it back (native tools only).
#[cfg(not(target_family = "wasm"))]
pub fn update_manifest(dir: &std::path::Path, edit: impl FnOnce(&mut Manifest)) -> Result<(), WeightsError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| WeightsError(format!("{}: {e} (export the U-Net first: cargo run --release --bin export)", path.display())))?;
    let mut manifest = Manifest::parse(&text)?;
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap() + "\n")
        .map_err(|e| WeightsError(format!("{}: {e}", path.display())))
}

/// Record a file (bytes and checksum) in the manifest's file list, replacing an older entry.
pub fn file_entry(name: &str, bytes: &[u8], dtype: &str) -> FileEntry {
    FileEntry { name: name.into(), bytes: bytes.len(), sha256: sha256_hex(bytes), dtype: dtype.into() }
}
