//! The evaluation of shipped weights: conditional accuracy of samples under the project's
//! classifier, the Fréchet distance in its feature space, and the NLL bound in bits/dim.
//! Native only; the expensive loops cache each finished chunk so a run can resume.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Serialize, de::DeserializeOwned};

use crate::nets::classifier::Classifier;
use crate::app::config::DdpmConfig;
use crate::native::data::Digit;
use crate::diffusion::elbo::{ReverseVariance, TermBatch, bits_per_dim, prior_kl};
use crate::nets::unet::{IMAGE_SIZE, NULL_CLASS, PIXELS, UNet};
use crate::diffusion::noise::NoiseSource;
use crate::diffusion::sampling::{ClassChoice, GuidanceInterval, Method, SampleSettings, Sampler};
use crate::diffusion::variance::VarianceChoice;

/// Caches finished chunks as JSON files under one directory (keyed by the weights' checksum).
pub struct ChunkCache {
    dir: Option<PathBuf>,
}

impl ChunkCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        if let Some(d) = &dir {
            let _ = std::fs::create_dir_all(d);
        }
        Self { dir }
    }

    /// The cached value under `key`, if one was stored and still parses.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let path = self.dir.as_ref()?.join(format!("{key}.json"));
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// Store `value` under `key` (nothing when the cache has no directory).
    pub fn put<T: Serialize>(&self, key: &str, value: &T) {
        if let Some(d) = &self.dir {
            let _ = std::fs::write(d.join(format!("{key}.json")), serde_json::to_string(value).unwrap());
        }
    }

    pub fn get_or<T: Serialize + DeserializeOwned>(&self, key: &str, compute: impl FnOnce() -> T) -> T {
        if let Some(v) = self.get(key) {
            return v;
        }
        let value = compute();
        self.put(key, &value);
        value
    }
}

fn read(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// Generate `count` samples (final x_0, clamped to [-1, 1]) with one sampler run.
pub fn generate(model: &UNet, cfg: &DdpmConfig, settings: SampleSettings, device: &Device) -> Vec<f32> {
    let schedule = cfg.schedule();
    let mut sampler = Sampler::new(settings, &schedule, device);
    while sampler.step(model).is_some() {}
    read(sampler.current().clamp(-1.0, 1.0))
}

pub fn images(values: &[f32], device: &Device) -> Tensor<4> {
    let n = values.len() / PIXELS;
    Tensor::from_data(TensorData::new(values.to_vec(), [n, 1, IMAGE_SIZE, IMAGE_SIZE]), device)
}

pub fn digits_to_values(digits: &[Digit]) -> Vec<f32> {
    digits.iter().flat_map(Digit::to_model_space).collect()
}

/// Classifier labels and penultimate features for flat image values.
pub fn classify(classifier: &Classifier, values: &[f32], device: &Device) -> (Vec<usize>, Vec<Vec<f32>>) {
    let mut labels = Vec::new();
    let mut features = Vec::new();
    for chunk in values.chunks(500 * PIXELS) {
        let f = classifier.features(images(chunk, device));
        let l: Vec<i64> = classifier.logits_from_features(f.clone()).argmax(1).into_data().convert::<i64>().try_to_vec().unwrap();
        labels.extend(l.into_iter().map(|v| v as usize));
        let [n, d] = f.dims();
        let fv: Vec<f32> = f.into_data().try_to_vec().unwrap();
        features.extend((0..n).map(|k| fv[k * d..(k + 1) * d].to_vec()));
    }
    (labels, features)
}

/// The classifier's top probability for each image: how surely it reads a digit there.
pub fn top_confidences(classifier: &Classifier, values: &[f32], device: &Device) -> Vec<f32> {
    let mut out = Vec::new();
    for chunk in values.chunks(500 * PIXELS) {
        let p: Vec<f32> = classifier.probabilities(images(chunk, device)).max_dim(1).into_data().try_to_vec().unwrap();
        out.extend(p);
    }
    out
}

/// The classifier's class probabilities for each image (rows of 10).
pub fn class_probabilities(classifier: &Classifier, values: &[f32], device: &Device) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for chunk in values.chunks(500 * PIXELS) {
        let p = classifier.probabilities(images(chunk, device));
        let [n, d] = p.dims();
        let flat: Vec<f32> = p.into_data().try_to_vec().unwrap();
        out.extend((0..n).map(|k| flat[k * d..(k + 1) * d].to_vec()));
    }
    out
}

/// The share of `confidences` at or above `threshold`.
pub fn share_at_least(confidences: &[f32], threshold: f32) -> f64 {
    confidences.iter().filter(|&&c| c >= threshold).count() as f64 / confidences.len().max(1) as f64
}

/// Fraction of samples of each digit that the classifier labels as that digit.
pub fn conditional_accuracy(
    model: &UNet,
    classifier: &Classifier,
    cfg: &DdpmConfig,
    method: Method,
    per_digit: usize,
    batch: usize,
    cache: &ChunkCache,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> (f64, Vec<f64>) {
    let tag = method_tag(method);
    let mut per_class = Vec::new();
    for digit in 0..10 {
        let mut hits = 0usize;
        let mut done = 0usize;
        while done < per_digit {
            let count = batch.min(per_digit - done);
            let key = format!("acc-cells-{tag}-{}-d{digit}-o{done}-n{count}", guidance_tag(cfg.guidance, cfg.guidance_interval));
            let chunk_hits: usize = cache.get_or(&key, || {
                let settings = SampleSettings {
                    class: ClassChoice::Digit(digit),
                    guidance: cfg.guidance,
                    guidance_interval: cfg.guidance_interval,
                    method,
                    seed: 1_000_000 + 1000 * digit as u64,
                    count,
                    first_cell: done,
                    clip_x0: true,
                };
                let values = generate(model, cfg, settings, device);
                classify(classifier, &values, device).0.iter().filter(|&&l| l == digit).count()
            });
            hits += chunk_hits;
            done += count;
            progress(&format!("{tag}: digit {digit}, {done}/{per_digit}"));
        }
        per_class.push(hits as f64 / per_digit as f64);
    }
    (per_class.iter().sum::<f64>() / 10.0, per_class)
}

/// A cache key's part for guidance weight `w` applied in `interval`.
pub fn guidance_tag(w: f64, interval: Option<GuidanceInterval>) -> String {
    match interval {
        Some(i) => format!("w{w}-t{}to{}", i.first, i.last),
        None => format!("w{w}"),
    }
}

pub fn method_tag(method: Method) -> String {
    match method {
        Method::Ddpm { .. } => "ddpm1000".into(),
        Method::Ddim { steps, eta } => format!("ddim{steps}-eta{eta}"),
        Method::DpmSolver2M { steps } => format!("dpmpp2m{steps}"),
    }
}

/// `count` unconditional samples (null class, no guidance), in chunks of `batch`.
pub fn unconditional_samples(
    model: &UNet,
    cfg: &DdpmConfig,
    method: Method,
    count: usize,
    batch: usize,
    cache: &ChunkCache,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> Vec<f32> {
    let tag = method_tag(method);
    cached_samples(&format!("uncond-cells-{tag}"), count, batch, cache, &mut progress, |done, n| {
        let settings = SampleSettings { class: ClassChoice::Unconditional, guidance: 0.0, guidance_interval: None, method, seed: 2_000_000, count: n, first_cell: done, clip_x0: true };
        generate(model, cfg, settings, device)
    })
}

/// `count` samples of the model's label marginal: the conditional network without guidance,
/// `count / 10` per digit (p(c) uniform, as in the data to within 2%). A diagnostic beside the
/// null-class samples: it tells the conditional network's distribution from the unconditional one's.
pub fn class_marginal_samples(
    model: &UNet,
    cfg: &DdpmConfig,
    method: Method,
    count: usize,
    batch: usize,
    cache: &ChunkCache,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> Vec<f32> {
    let tag = method_tag(method);
    (0..10)
        .flat_map(|digit| {
            cached_samples(&format!("marginal-cells-{tag}-d{digit}"), count / 10, batch, cache, &mut progress, |done, n| {
                let seed = 5_000_000 + 1000 * digit as u64;
                let settings = SampleSettings { class: ClassChoice::Digit(digit), guidance: 0.0, guidance_interval: None, method, seed, count: n, first_cell: done, clip_x0: true };
                generate(model, cfg, settings, device)
            })
        })
        .collect()
}

/// `count` samples of the page's default run: any digit (a label per image from its own stream),
/// guided with weight `guidance` where `cfg` applies guidance. Also returns the label each image
/// was drawn for.
pub fn default_mode_samples(
    model: &UNet,
    cfg: &DdpmConfig,
    method: Method,
    guidance: f64,
    count: usize,
    batch: usize,
    cache: &ChunkCache,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> (Vec<f32>, Vec<usize>) {
    let tag = method_tag(method);
    let settings = |done: usize, n: usize| SampleSettings {
        class: ClassChoice::AnyDigit,
        guidance,
        guidance_interval: cfg.guidance_interval,
        method,
        seed: 3_000_000,
        count: n,
        first_cell: done,
        clip_x0: true,
    };
    let key = format!("any-{}-{tag}", guidance_tag(guidance, cfg.guidance_interval));
    let values = cached_samples(&key, count, batch, cache, &mut progress, |done, n| {
        generate(model, cfg, settings(done, n), device)
    });
    // The labels come from the streams alone (no model call), so they are recomputed, not cached.
    let labels = (0..count).step_by(batch.max(1)).flat_map(|done| {
        Sampler::new(settings(done, batch.min(count - done)), &cfg.schedule(), device).labels().to_vec()
    });
    (values, labels.collect())
}

/// `count` samples in chunks of `batch`, each chunk made by `make(done, n)` and cached under
/// `{key}-o{done}-n{n}`.
fn cached_samples(
    key: &str,
    count: usize,
    batch: usize,
    cache: &ChunkCache,
    progress: &mut impl FnMut(&str),
    make: impl Fn(usize, usize) -> Vec<f32>,
) -> Vec<f32> {
    let mut values = Vec::with_capacity(count * PIXELS);
    let mut done = 0;
    while done < count {
        let n = batch.min(count - done);
        values.extend(cache.get_or::<Vec<f32>>(&format!("{key}-o{done}-n{n}"), || make(done, n)));
        done += n;
        progress(&format!("{key}: {done}/{count}"));
    }
    values
}

/// The full variational bound (all T terms + L_T) for one image, in bits/dim, with the
/// unconditional model (null class), once for each reverse variance in `variances`. The variance
/// changes only the KL, not the noise or ε_θ, so one set of model calls serves them all.
/// `batch` timesteps per model call.
pub fn nll_bounds_bits_per_dim(
    model: &UNet,
    cfg: &DdpmConfig,
    x0: &[f32],
    seed: u64,
    variances: &[VarianceChoice],
    batch: usize,
    device: &Device,
) -> Vec<f64> {
    let s = cfg.schedule();
    let t_max = s.timesteps();
    let mut rng = NoiseSource::new(seed);
    let x0_one = images(x0, device);
    let prior = prior_kl(&s, x0_one).into_data().try_to_vec::<f32>().unwrap()[0] as f64;
    let mut nats = vec![prior; variances.len()];
    let mut start = 0;
    while start < t_max {
        let n = batch.min(t_max - start);
        let idx: Vec<usize> = (start..start + n).collect();
        let repeated: Vec<f32> = (0..n).flat_map(|_| x0.iter().copied()).collect();
        let noise = rng.tensor([n, 1, IMAGE_SIZE, IMAGE_SIZE], device);
        let terms = TermBatch::new(&s, images(&repeated, device), idx.clone(), noise);
        let t: Vec<f32> = idx.iter().map(|&i| (i + 1) as f32).collect();
        let c = Tensor::<1, Int>::from_data(TensorData::new(vec![NULL_CLASS as i64; n], [n]), device);
        let emb = model.time_embedding(&t, device) + model.class_embedding(c, n);
        let (eps, raw) = model.forward_with_variance(terms.x_t.clone(), emb);
        for (total, &variance) in nats.iter_mut().zip(variances) {
            let reverse = match (variance.fixed(), &raw) {
                (Some(kind), _) => ReverseVariance::Fixed(kind),
                (None, Some(raw)) => ReverseVariance::Learned(raw.clone()),
                (None, None) => panic!("the learned bound needs the network's variance channel"),
            };
            let v: Vec<f32> = terms.terms_with(&s, eps.clone(), reverse).into_data().try_to_vec().unwrap();
            *total += v.iter().map(|&x| x as f64).sum::<f64>();
        }
        start += n;
    }
    nats.into_iter().map(|n| bits_per_dim(n, PIXELS)).collect()
}

/// The cache key prefix of a digit's bound under `variance`; a learned one's names the checksum
/// of the variance channel, which can be retrained on the same eps weights.
fn nll_key(variance: VarianceChoice, channel_sha256: Option<&str>) -> String {
    match variance {
        VarianceChoice::Beta => "nll".into(),
        VarianceChoice::BetaTilde => "nll-beta-tilde".into(),
        VarianceChoice::Learned => format!("nll-learned-{}", channel_sha256.map_or("none", |sha| &sha[..12])),
    }
}

/// `n` indices spread evenly over `len` items (all of them, in order, when `n >= len`). The
/// held-out set is ordered by label, so a prefix would be one digit only; a spread subset holds
/// every label in its share.
pub fn spread_indices(len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    (0..n).map(|j| j * len / n).collect()
}

/// Mean and standard error of the bound over `n` of the held-out `digits` (spread over the set,
/// [`spread_indices`]) for each reverse variance in `variances`, each digit cached per variance.
/// Held-out digit k gets the same noise under every variance and in every subset, so the bounds
/// pair up digit by digit, and the variances a digit still lacks share one model pass.
/// `channel_sha256`: the checksum of the model's variance channel, for a learned bound.
pub fn nll_bounds(
    model: &UNet,
    cfg: &DdpmConfig,
    variances: &[VarianceChoice],
    channel_sha256: Option<&str>,
    digits: &[Digit],
    n: usize,
    batch: usize,
    cache: &ChunkCache,
    device: &Device,
    mut progress: impl FnMut(&str),
) -> Vec<(f64, f64)> {
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); variances.len()];
    let chosen = spread_indices(digits.len(), n);
    for (done, &k) in chosen.iter().enumerate() {
        let d = &digits[k];
        let keys: Vec<String> = variances.iter().map(|&v| format!("{}-{k}", nll_key(v, channel_sha256))).collect();
        let cached: Vec<Option<f64>> = keys.iter().map(|key| cache.get(key)).collect();
        let missing: Vec<VarianceChoice> = variances.iter().zip(&cached).filter(|(_, c)| c.is_none()).map(|(&v, _)| v).collect();
        let mut fresh = if missing.is_empty() {
            Vec::new()
        } else {
            nll_bounds_bits_per_dim(model, cfg, &d.to_model_space(), 3_000_000 + k as u64, &missing, batch, device)
        }
        .into_iter();
        for ((column, c), key) in values.iter_mut().zip(cached).zip(&keys) {
            let v = c.unwrap_or_else(|| {
                let v = fresh.next().expect("one fresh value per missing variance");
                cache.put(key, &v);
                v
            });
            column.push(v);
        }
        let means: Vec<String> = values.iter().map(|c| format!("{:.4}", c.iter().sum::<f64>() / c.len() as f64)).collect();
        progress(&format!("NLL bound: {}/{} digits, running mean {} bits/dim", done + 1, chosen.len(), means.join(" / ")));
    }
    values.iter().map(|column| mean_and_standard_error(column)).collect()
}

fn mean_and_standard_error(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    (mean, sd / n.sqrt())
}

pub fn cache_dir(weights_sha: &str) -> PathBuf {
    Path::new(".cache/eval").join(&weights_sha[..16])
}
