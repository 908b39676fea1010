//! Evaluate the shipped weights in `weights/`.
//!
//!   cargo run --release --bin evaluate -- [--per-digit 100] [--fd-samples 1000] [--nll-digits 1000]
//!       [--only classifier,ddim,ddpm,fd,nll,nll-beta-tilde,nll-learned] [--batch 100] [--weights DIR] [--record]
//!       [--guidance 0,0.5,1,2] [--guidance-interval 83-580|all] [--steps-samples 500] [--steps-list 5,10,20,50,100]
//!       [--restore-digits 500] [--stray-samples 500]
//!
//! 1. the classifier's held-out accuracy;
//! 2. conditional accuracy: `--per-digit` samples per digit at the default guidance, with DDIM
//!    (50 steps, eta 0) and DDPM (1000 steps), labelled by the classifier;
//! 3. the default mode (any digit, a label per image, guided, DDIM 50): Fréchet distance, how
//!    often the classifier reads the drawn label, and the share read with >= 90% confidence
//!    (beside the null class and real held-out digits), and the share with stray marks beside the
//!    digit (a second bright region), at the default guidance weight and at each
//!    weight of `--guidance` (the data behind the page's default weight), and the classifier
//!    score (an Inception Score with the digit classifier) of each set; then the Fréchet distance between `--fd-samples` unconditional samples
//!    (null class, DDIM 50) and the held-out digits, beside real-vs-real and noise-vs-real
//!    calibrations, and as a diagnostic the same for the label marginal (conditional network,
//!    no guidance, equal counts per digit);
//! 4. (`steps`) samplers against network evaluations: the default mode with DDIM (eta 0),
//!    DPM-Solver++(2M) and ancestral sampling (DDIM eta 1 on the same steps; at 1000 steps, DDPM
//!    itself) at each count of `--steps-list`, `--steps-samples` images each: Fréchet distance
//!    (beside real-vs-real at the same count) and the share read as the drawn label;
//! 5. (`restore`) the restore page's operations on `--restore-digits` held-out digits at the page's
//!    defaults, unconditional, beside classic baselines: inpainting per damage preset (classifier
//!    accuracy against the true labels, PSNR in the damaged region; harmonic fill, the damaged
//!    input), denoising at three noise levels (Tweedie, one posterior sample, the mean of several;
//!    a Gaussian blur tuned per level), super-resolution x2 and x4 (ILVR; bilinear, bicubic) and
//!    DDIM inversion's reconstruction at 10, 50 and 200 steps;
//! 6. (`stray`, a diagnostic) where stray marks begin: `--stray-samples` samples of the default
//!    mode, of the conditional network without guidance and of the null class, traced step by
//!    step; for each that ends marked, the t from which x̂_0 carried the mark to the end;
//! 7. the NLL bound in bits/dim (all T terms) on `--nll-digits` held-out digits, with the sampler's
//!    reverse variance sigma^2 = beta, (`nll-beta-tilde`) with sigma^2 = beta_tilde and
//!    (`nll-learned`) with the variance channel's Sigma_theta.
//! Finished chunks are cached under .cache/eval/<weights sha>/, so an interrupted run resumes.
//! Guidance applies where the manifest's `guidance_interval` says; `--guidance-interval` measures
//! another interval (`all`: every step) instead.
//! `--record` writes the figures into the manifest. `--weights DIR` evaluates a candidate set
//! (e.g. one exported with `export --out DIR`) before it replaces `weights/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use ddpm_web::nets::classifier::Classifier;
use ddpm_web::native::data::{DEFAULT_CACHE, load_mnist, split};
use ddpm_web::native::evaluate::*;
use ddpm_web::diffusion::metrics::{STRAY_MARK_PIXELS, classifier_score, frechet_distance_of, stray_mark_share};
use ddpm_web::nets::unet::{IMAGE_SIZE, PIXELS, UNet, VarianceHead};
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::diffusion::sampling::{ClassChoice, GuidanceInterval, Method, SampleSettings};
use ddpm_web::diffusion::schedule::VarianceKind;
use ddpm_web::diffusion::variance::VarianceChoice;
use ddpm_web::app::weights::{CLASSIFIER_FILE, MANIFEST, Manifest, UNET_FILE, VARIANCE_FILE, load_module, update_manifest, verify};
use ddpm_web::app::restore_page::{RestoreControls, RestoreLimits};
use ddpm_web::native::evaluate_restore::{RestorePlan, restore_table};
use ddpm_web::restore::evaluation::{RestoreTable, TableSettings};
use serde_json::json;

/// A sample counts as legible when the classifier reads it with at least this probability.
const CONFIDENT: f32 = 0.9;

/// A comma-separated list after `flag`, every item parsed and accepted by `valid`.
fn list<T: std::str::FromStr>(raw: Option<String>, flag: &str, what: &str, valid: impl Fn(&T) -> bool) -> Result<Vec<T>, String> {
    let raw = raw.ok_or(format!("{flag} needs a comma-separated list"))?;
    raw.split(',')
        .map(|item| item.trim().parse::<T>().ok().filter(|v| valid(v)).ok_or(format!("{flag}: {item} is not {what}")))
        .collect()
}

/// `--guidance-interval`'s value: `LO-HI` (the paper's t, inclusive) or `all`.
fn parse_interval(raw: Option<String>) -> Result<Option<GuidanceInterval>, String> {
    let raw = raw.ok_or("--guidance-interval needs LO-HI or all")?;
    if raw == "all" {
        return Ok(None);
    }
    let bounds = raw.split_once('-').and_then(|(lo, hi)| Some((lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?)));
    match bounds {
        Some((first, last)) if 1 <= first && first <= last => Ok(Some(GuidanceInterval { first, last })),
        _ => Err(format!("--guidance-interval: {raw} is not LO-HI (1 <= LO <= HI) or all")),
    }
}

fn print_restore_table(t: &RestoreTable) {
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    println!("restore, {} held-out digits, unconditional, {} steps (jump {}, {} resamplings), seed {}", t.digits, t.settings.steps, t.settings.jump, t.settings.resamplings, t.settings.seed);
    println!("inpainting | RePaint accuracy, PSNR in the region | harmonic fill | damaged input");
    for r in &t.inpainting {
        println!("{} | {}, {:.2} dB | {}, {:.2} dB | {}, {:.2} dB", r.preset.label(), pct(r.repaint.accuracy), r.repaint.psnr, pct(r.harmonic.accuracy), r.harmonic.psnr, pct(r.damaged.accuracy), r.damaged.psnr);
    }
    println!("denoising sigma (t) | Tweedie | one posterior sample | mean of {} | blur (width) | noisy input", t.settings.samples);
    for r in &t.denoising {
        println!("{} ({}) | {:.2} | {:.2} | {:.2} | {:.2} ({}) | {:.2} dB", r.sigma, r.t, r.tweedie, r.one_sample, r.mean_of_samples, r.blur, r.blur_width, r.noisy);
    }
    println!("super-resolution | ILVR | bilinear | bicubic (accuracy, PSNR)");
    for r in &t.superres {
        println!("x{} | {}, {:.2} dB | {}, {:.2} dB | {}, {:.2} dB", r.factor, pct(r.ilvr.accuracy), r.ilvr.psnr, pct(r.bilinear.accuracy), r.bilinear.psnr, pct(r.bicubic.accuracy), r.bicubic.psnr);
    }
    println!("inversion steps | reconstruction PSNR");
    for r in &t.inversion {
        println!("{} | {:.2} dB", r.steps, r.psnr);
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let (mut per_digit, mut fd_samples, mut nll_digits, mut batch, mut record) = (100usize, 1000usize, 1000usize, 100usize, false);
    let mut dir = PathBuf::from("weights");
    let mut weights_swept: Vec<f64> = Vec::new();
    let mut interval_override: Option<Option<GuidanceInterval>> = None;
    let (mut steps_samples, mut steps_list) = (500usize, vec![5usize, 10, 20, 50, 100]);
    let mut restore_digits = 500usize;
    let mut stray_samples = 500usize;
    let mut only: BTreeSet<String> = ["classifier", "ddim", "ddpm", "fd", "nll", "nll-beta-tilde", "nll-learned"].iter().map(|s| s.to_string()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut num = |name: &str| args.next().and_then(|v| v.parse::<usize>().ok()).filter(|&v| v > 0).ok_or(format!("{name} needs a positive number"));
        match flag.as_str() {
            "--per-digit" => per_digit = num("--per-digit")?,
            "--fd-samples" => fd_samples = num("--fd-samples")?,
            "--nll-digits" => nll_digits = num("--nll-digits")?,
            "--batch" => batch = num("--batch")?,
            "--record" => record = true,
            "--guidance" => weights_swept = list(args.next(), "--guidance", "a weight in [0, 10]", |w: &f64| (0.0..=10.0).contains(w))?,
            "--guidance-interval" => interval_override = Some(parse_interval(args.next())?),
            "--steps-samples" => steps_samples = num("--steps-samples")?,
            "--steps-list" => steps_list = list(args.next(), "--steps-list", "a step count in 2..=1000", |k: &usize| (2..=1000).contains(k))?,
            "--restore-digits" => restore_digits = num("--restore-digits")?,
            "--stray-samples" => stray_samples = num("--stray-samples")?,
            "--weights" => dir = args.next().ok_or("--weights needs a directory")?.into(),
            "--only" => only = args.next().ok_or("--only needs a list")?.split(',').map(|s| s.trim().to_string()).collect(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let manifest = Manifest::parse(&std::fs::read_to_string(dir.join(MANIFEST)).map_err(|e| format!("{}: {e}", dir.join(MANIFEST).display()))?)
        .map_err(|e| e.to_string())?;
    let mut cfg = manifest.config.clone();
    if let Some(interval) = interval_override {
        if record && interval != cfg.guidance_interval {
            return Err("--record keeps the manifest's own settings: measure another --guidance-interval without it".into());
        }
        cfg.guidance_interval = interval;
    }
    let interval_flag = match cfg.guidance_interval {
        _ if interval_override.is_none() => String::new(),
        Some(i) => format!(" --guidance-interval {}-{}", i.first, i.last),
        None => " --guidance-interval all".into(),
    };
    println!("guidance applies {}", match cfg.guidance_interval {
        Some(i) => format!("at t = {}..={}", i.first, i.last),
        None => "at every step".into(),
    });
    let device = Device::flex();
    let load = |name: &str| -> Result<Vec<u8>, String> {
        let entry = manifest.file(name).map_err(|e| e.to_string())?;
        let bytes = std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        verify(entry, &bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    };
    let unet_bytes = load(UNET_FILE)?;
    let mut model = load_module(UNet::new(&cfg.model, &device), unet_bytes).map_err(|e| e.to_string())?;
    let channel_sha256 = manifest.file(VARIANCE_FILE).ok().map(|f| f.sha256.clone());
    if channel_sha256.is_some() {
        let head = load_module(VarianceHead::new(&cfg.model, &device), load(VARIANCE_FILE)?).map_err(|e| e.to_string())?;
        model = model.with_variance_head(head);
    }
    let classifier = load_module(Classifier::new(&device), load(CLASSIFIER_FILE)?).map_err(|e| e.to_string())?;
    let cache = ChunkCache::new(Some(cache_dir(&manifest.file(UNET_FILE).unwrap().sha256)));
    let digits = load_mnist(Path::new(DEFAULT_CACHE)).map_err(|e| e.to_string())?;
    let (train, held_out) = split(&digits);
    let held_values = digits_to_values(&held_out);
    let progress = |m: &str| eprint!("\r\x1b[2K{m}");
    let mut metrics = serde_json::Map::new();
    let command = |flags: String| format!("cargo run --release --bin evaluate -- {flags}{interval_flag}");

    if only.contains("classifier") {
        let (labels, _) = classify(&classifier, &held_values, &device);
        let acc = labels.iter().zip(&held_out).filter(|(l, d)| **l == d.label).count() as f64 / held_out.len() as f64;
        println!("classifier held-out accuracy: {:.2}% ({} digits)", 100.0 * acc, held_out.len());
    }
    for (name, method) in [("ddim", Method::Ddim { steps: 50, eta: 0.0 }), ("ddpm", Method::Ddpm { variance: cfg.variance.into() })] {
        if !only.contains(name) {
            continue;
        }
        let start = Instant::now();
        let (acc, per_class) = conditional_accuracy(&model, &classifier, &cfg, method, per_digit, batch, &cache, &device, progress);
        eprintln!();
        println!(
            "conditional accuracy, {}: {:.2}% ({per_digit} per digit, guidance {}); per digit {:?} [{:.0} s]",
            method_tag(method),
            100.0 * acc,
            cfg.guidance,
            per_class.iter().map(|a| (a * 100.0).round() / 100.0).collect::<Vec<_>>(),
            start.elapsed().as_secs_f64()
        );
        metrics.insert(
            format!("conditional_accuracy_{}", method_tag(method)),
            json!({"value": acc, "per_digit": per_class, "samples_per_digit": per_digit, "guidance": cfg.guidance, "guidance_interval": cfg.guidance_interval,
                   "command": command(format!("--only {name} --per-digit {per_digit}"))}),
        );
    }
    if only.contains("fd") {
        let start = Instant::now();
        let method = Method::Ddim { steps: 50, eta: 0.0 };
        let samples = unconditional_samples(&model, &cfg, method, fd_samples, batch, &cache, &device, progress);
        eprintln!();
        let (_, f_held) = classify(&classifier, &held_values, &device);
        let (_, f_samples) = classify(&classifier, &samples, &device);
        // The split lists digits grouped by label: take every k-th for a stratified subset.
        let stride = (train.len() / held_out.len()).max(1);
        let train_subset: Vec<_> = train.iter().step_by(stride).take(held_out.len()).cloned().collect();
        let train_values = digits_to_values(&train_subset);
        let (_, f_train) = classify(&classifier, &train_values, &device);
        let mut rng = NoiseSource::new(4_000_000);
        let noise: Vec<f32> = rng.normal(held_out.len() * PIXELS).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
        let (_, f_noise) = classify(&classifier, &noise, &device);
        let marginal = class_marginal_samples(&model, &cfg, method, fd_samples, batch, &cache, &device, progress);
        eprintln!();
        let (_, f_marginal) = classify(&classifier, &marginal, &device);
        let fd = frechet_distance_of(&f_samples, &f_held);
        let real = frechet_distance_of(&f_train, &f_held);
        let noise_fd = frechet_distance_of(&f_noise, &f_held);
        let marginal_fd = frechet_distance_of(&f_marginal, &f_held);
        let confident = |values: &[f32]| share_at_least(&top_confidences(&classifier, values, &device), CONFIDENT);
        let (conf_null, conf_held) = (confident(&samples), confident(&held_values));
        // The classifier score (an Inception Score with the digit classifier), at most 10.
        let score = |values: &[f32]| classifier_score(&class_probabilities(&classifier, values, &device));
        let (score_null, score_held) = (score(&samples), score(&held_values));
        // Images with a second bright region (a dot or blob beside the digit).
        let stray = |values: &[f32]| stray_mark_share(values, IMAGE_SIZE);
        let (stray_null, stray_held) = (stray(&samples), stray(&held_values));
        println!("stray marks (a second region above mid-grey of >= {STRAY_MARK_PIXELS} pixels): null class {:.1}%, held-out real digits {:.1}%",
                 100.0 * stray_null, 100.0 * stray_held);
        // The page's default run: any digit (a label per image), guided, DDIM 50; at the default
        // weight first, then at each swept weight.
        let mut sweep = Vec::new();
        let mut weights = vec![cfg.guidance];
        weights.extend(weights_swept.iter().filter(|&&w| w != cfg.guidance));
        for w in weights {
            let (any, any_labels) = default_mode_samples(&model, &cfg, method, w, fd_samples, batch, &cache, &device, progress);
            eprintln!();
            let (read_any, f_any) = classify(&classifier, &any, &device);
            let any_fd = frechet_distance_of(&f_any, &f_held);
            let agree = read_any.iter().zip(&any_labels).filter(|(a, b)| a == b).count() as f64 / any_labels.len().max(1) as f64;
            let (conf_any, stray_any, score_any) = (confident(&any), stray(&any), score(&any));
            println!(
                "default mode (any digit, guidance {w}, {}): Fréchet distance {any_fd:.3} (ratio {:.2}); read as the drawn label {:.1}%; \
                 read with >= {CONFIDENT} confidence: default {:.1}%, null class {:.1}%, held-out real digits {:.1}%; stray marks {:.1}%; \
                 classifier score {score_any:.3} (null class {score_null:.3}, held-out real digits {score_held:.3})",
                method_tag(method),
                any_fd / real,
                100.0 * agree,
                100.0 * conf_any,
                100.0 * conf_null,
                100.0 * conf_held,
                100.0 * stray_any
            );
            let entry = json!({"guidance": w, "frechet_distance": any_fd, "ratio_to_real": any_fd / real,
                               "read_as_drawn_label": agree, "confident_share": conf_any, "stray_mark_share": stray_any, "classifier_score": score_any});
            if w == cfg.guidance {
                metrics.insert(
                    "default_mode".into(),
                    json!({"what": "the page's default run: any digit, one label per image from its own stream, guided; classifier features",
                           "frechet_distance": any_fd, "ratio_to_real": any_fd / real, "sample_count": fd_samples, "sampler": method_tag(method),
                           "guidance": w, "guidance_interval": cfg.guidance_interval, "read_as_drawn_label": agree,
                           "confident_share": {"threshold": CONFIDENT, "default_mode": conf_any, "null_class": conf_null, "held_out_real": conf_held},
                           "stray_mark_share": {"min_pixels": STRAY_MARK_PIXELS, "default_mode": stray_any, "null_class": stray_null, "held_out_real": stray_held,
                                                "what": "images with a second 8-connected region above mid-grey: a dot or blob beside the digit"},
                           "classifier_score": {"default_mode": score_any, "null_class": score_null, "held_out_real": score_held,
                                                "what": "exp E[KL(p(y|x) || p(y))] with the project's classifier (an Inception Score; at most 10)"},
                           "command": command(format!("--only fd --fd-samples {fd_samples}"))}),
                );
            }
            sweep.push(entry);
        }
        if !weights_swept.is_empty() {
            let list: Vec<String> = weights_swept.iter().map(|w| w.to_string()).collect();
            metrics.insert(
                "default_mode_by_guidance".into(),
                json!({"what": "the default mode at other guidance weights (same seeds, labels and sampler)", "sample_count": fd_samples, "guidance_interval": cfg.guidance_interval,
                       "sampler": method_tag(method), "weights": sweep, "command": command(format!("--only fd --fd-samples {fd_samples} --guidance {}", list.join(",")))}),
            );
        }
        println!(
            "Fréchet distance (classifier features): unconditional samples {fd:.3}, real-vs-real {real:.3} (ratio {:.2}), noise {noise_fd:.1}; \
             diagnostic, label-marginal samples (conditional network, no guidance) {marginal_fd:.3} (ratio {:.2}) [{:.0} s]",
            fd / real,
            marginal_fd / real,
            start.elapsed().as_secs_f64()
        );
        metrics.insert(
            "frechet_distance".into(),
            json!({"samples": fd, "real_vs_real": real, "noise_vs_real": noise_fd, "ratio_to_real": fd / real,
                   "sample_count": fd_samples, "sampler": method_tag(method), "real_vs_real_reference": "1000 training digits (every 9th, all labels) vs the 1000 held-out",
                   "label_marginal_diagnostic": {"samples": marginal_fd, "ratio_to_real": marginal_fd / real,
                       "what": "the conditional network without guidance, 1/10 of the samples per digit; not the target's unconditional samples"},
                   "command": command(format!("--only fd --fd-samples {fd_samples}"))}),
        );
    }
    if only.contains("steps") {
        let start = Instant::now();
        let (_, f_held) = classify(&classifier, &held_values, &device);
        let stride = (train.len() / steps_samples).max(1);
        let train_subset: Vec<_> = train.iter().step_by(stride).take(steps_samples).cloned().collect();
        let real = frechet_distance_of(&classify(&classifier, &digits_to_values(&train_subset), &device).1, &f_held);
        println!("samplers against network evaluations: default mode (any digit, guidance {}), {steps_samples} images each; \
                  real-vs-real at this count {real:.3}", cfg.guidance);
        println!("sampler | evaluations | Fréchet distance | ratio to real | read as the drawn label");
        let mut rows = Vec::new();
        let samplers: [(&str, fn(usize, VarianceKind) -> Method); 3] = [
            ("ddim", |k, _| Method::Ddim { steps: k, eta: 0.0 }),
            ("dpm2m", |k, _| Method::DpmSolver2M { steps: k }),
            ("ancestral", |k, v| if k == 1000 { Method::Ddpm { variance: v.into() } } else { Method::Ddim { steps: k, eta: 1.0 } }),
        ];
        for (name, method_for) in samplers {
            for &k in &steps_list {
                let method = method_for(k, cfg.variance);
                let (values, labels) = default_mode_samples(&model, &cfg, method, cfg.guidance, steps_samples, batch, &cache, &device, progress);
                eprintln!();
                let (read, features) = classify(&classifier, &values, &device);
                let fd = frechet_distance_of(&features, &f_held);
                let agree = read.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / labels.len().max(1) as f64;
                println!("{name} | {} | {fd:.3} | {:.2} | {:.1}%", method.evaluations(&cfg.schedule()), fd / real, 100.0 * agree);
                rows.push(json!({"sampler": name, "method": method_tag(method), "evaluations": method.evaluations(&cfg.schedule()),
                                 "frechet_distance": fd, "ratio_to_real": fd / real, "read_as_drawn_label": agree}));
            }
        }
        println!("[{:.0} s]", start.elapsed().as_secs_f64());
        let list: Vec<String> = steps_list.iter().map(|k| k.to_string()).collect();
        metrics.insert(
            "samplers_by_steps".into(),
            json!({"what": "the default mode (any digit, guided) per sampler and number of network evaluations; classifier features vs the held-out digits",
                   "sample_count": steps_samples, "guidance": cfg.guidance, "guidance_interval": cfg.guidance_interval, "real_vs_real_same_count": real, "rows": rows,
                   "command": command(format!("--only steps --steps-samples {steps_samples} --steps-list {}", list.join(",")))}),
        );
    }
    if only.contains("restore") {
        let start = Instant::now();
        // An equal share of each label: the held-out list is grouped by label.
        let n = restore_digits.min(held_out.len());
        let stride = held_out.len() / n;
        let digits: Vec<_> = held_out.iter().step_by(stride).take(n).cloned().collect();
        let limits = RestoreLimits::new(cfg.timesteps, n, cfg.guidance);
        let defaults = RestoreControls::defaults(&limits);
        let plan = RestorePlan {
            settings: TableSettings { steps: defaults.steps, jump: defaults.jump, resamplings: defaults.resamplings, samples: defaults.samples, seed: 7_000_000 },
            sigmas: vec![0.25, 0.5, 1.0],
            factors: limits.factors.clone(),
            inversion_steps: vec![10, 50, 200],
            batch,
        };
        let mut report = |m: &str| progress(m);
        let table = restore_table(&model, &classifier, &cfg, &digits, &plan, command(format!("--only restore --restore-digits {n}")), &cache, &device, &mut report);
        eprintln!();
        print_restore_table(&table);
        println!("[{:.0} s]", start.elapsed().as_secs_f64());
        metrics.insert("restore".into(), serde_json::to_value(&table).expect("the table serialises"));
    }
    if only.contains("stray") {
        let start = Instant::now();
        let method = Method::Ddim { steps: 50, eta: 0.0 };
        // The same seeds as the Fréchet runs: the default mode's marks are the 10% measured there.
        let runs = [
            ("default mode (any digit, guided)", ClassChoice::AnyDigit, cfg.guidance, 3_000_000u64),
            ("the conditional network without guidance", ClassChoice::AnyDigit, 0.0, 3_000_000),
            ("the null class (unconditional)", ClassChoice::Unconditional, 0.0, 2_000_000),
        ];
        let interval = cfg.guidance_interval;
        let bucket = |t: usize| match interval {
            Some(i) if t > i.last => 0,
            Some(i) if t >= i.first => 1,
            _ if t > 1 => 2,
            _ => 3,
        };
        let names = ["before guidance starts", "inside the guidance interval", "after it, before the last step", "the last step"];
        let mut rows = Vec::new();
        for (name, class, guidance, seed) in runs {
            let mut onsets = Vec::new();
            let mut done = 0;
            while done < stray_samples {
                let n = batch.min(stray_samples - done);
                let settings = SampleSettings { class, guidance, guidance_interval: interval, method, seed, count: n, first_cell: done, clip_x0: true };
                onsets.extend(ddpm_web::native::stray::trace(&model, &cfg, settings, &device).onsets);
                done += n;
                progress(&format!("stray marks, {name}: {done}/{stray_samples}"));
            }
            eprintln!();
            let mut counts = [0usize; 4];
            for &t in &onsets {
                counts[bucket(t)] += 1;
            }
            let share = onsets.len() as f64 / stray_samples as f64;
            let median = { let mut o = onsets.clone(); o.sort_unstable(); o.get(o.len() / 2).copied().unwrap_or(0) };
            println!("stray marks, {name}: {:.1}% of {stray_samples}; the mark decided (x̂_0 marked from then on) at t: {} (median t = {median})",
                     100.0 * share, names.iter().zip(counts).map(|(n, c)| format!("{n} {c}")).collect::<Vec<_>>().join(", "));
            rows.push(json!({"run": name, "share": share, "samples": stray_samples, "median_onset_t": median,
                             "onsets_by_phase": names.iter().zip(counts).map(|(n, c)| json!({"phase": n, "count": c})).collect::<Vec<_>>()}));
        }
        println!("[{:.0} s]", start.elapsed().as_secs_f64());
        metrics.insert("stray_mark_onsets".into(), json!({"what": "for samples that end with a stray mark, the t from which the model's x0 estimate carries it to the end (DDIM 50)",
                                                         "guidance_interval": interval, "runs": rows, "command": command(format!("--only stray --stray-samples {stray_samples}"))}));
    }
    // The bound as the sampler defines the model (sigma^2 = beta), with sigma^2 = beta_tilde for
    // t > 1 (Ho et al. 3.2: the other natural choice; same decoder L_0, same noise per digit) and
    // with the network's learned variance (Nichol & Dhariwal 2021). Asked together, all come from
    // one set of model calls.
    let bounds: Vec<_> = [
        ("nll", VarianceChoice::Beta, "nll_bound_bits_per_dim", "L_T + all L_{t-1} + L_0 (T = 1000), sigma^2 = beta"),
        ("nll-beta-tilde", VarianceChoice::BetaTilde, "nll_bound_beta_tilde_bits_per_dim", "L_T + all L_{t-1} + L_0 (T = 1000), sigma^2 = beta_tilde for t > 1"),
        ("nll-learned", VarianceChoice::Learned, "nll_bound_learned_bits_per_dim", "L_T + all L_{t-1} + L_0 (T = 1000), sigma^2 = Sigma_theta, the learned variance"),
    ]
    .into_iter()
    .filter(|(name, ..)| only.contains(*name))
    .filter(|b| {
        let runnable = b.1 != VarianceChoice::Learned || channel_sha256.is_some();
        if !runnable {
            println!("nll-learned skipped: {MANIFEST} lists no {VARIANCE_FILE} (train it: cargo run --release --bin train-variance -- --export)");
        }
        runnable
    })
    .collect();
    if !bounds.is_empty() {
        let start = Instant::now();
        let n = nll_digits.min(held_out.len());
        let variances: Vec<VarianceChoice> = bounds.iter().map(|b| b.1).collect();
        let results = nll_bounds(&model, &cfg, &variances, channel_sha256.as_deref(), &held_out, n, 250, &cache, &device, progress);
        eprintln!();
        for ((name, variance, metric, terms), (mean, se)) in bounds.into_iter().zip(results) {
            println!("NLL bound ({variance:?}): {mean:.4} ± {se:.4} bits/dim on {n} held-out digits [{:.0} s for all bounds]", start.elapsed().as_secs_f64());
            metrics.insert(
                metric.into(),
                json!({"value": mean, "standard_error": se, "digits": n, "terms": terms,
                       "command": command(format!("--only {name} --nll-digits {n}"))}),
            );
        }
    }
    if record {
        update_manifest(&dir, |m| {
            for (k, v) in metrics {
                m.metrics[k.as_str()] = v;
            }
        })
        .map_err(|e| e.to_string())?;
        println!("recorded in {}", dir.join(MANIFEST).display());
    }
    Ok(())
}
