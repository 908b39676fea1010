//! The files in `weights/`: sizes and checksums match the manifest, they decode into the
//! architectures, and a small evaluation catches a regression in the weights or the sampler.
#![cfg(not(target_family = "wasm"))]

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use ddpm_web::native::data::{DEFAULT_CACHE, load_mnist, split};
use ddpm_web::native::evaluate::{ChunkCache, classify, conditional_accuracy, digits_to_values, spread_indices};
use ddpm_web::diffusion::sampling::{ClassChoice, Method, SampleSettings, Sampler};

mod common;
use common::shipped_models as models;

#[test]
fn shipped_files_match_the_manifest_and_decode() {
    let (m, unet, _) = models();
    // The manifest counts the eps network; the variance channel is its own file.
    let channel = unet.variance_head().map_or(0, |h| h.num_params());
    assert_eq!(unet.num_params() - channel, m.parameters);
    let total: usize = m.files.iter().map(|f| f.bytes).sum();
    assert!(total < 8 << 20, "weights total {total} bytes");
    for f in &m.files {
        assert_eq!(std::fs::metadata(Path::new("weights").join(&f.name)).unwrap().len() as usize, f.bytes);
    }
}

/// The training record reads back, run by run, to a first run from scratch; each fine-tune names
/// the SHA-256 of the weights it started from, and its command reproduces it with that start.
#[test]
fn the_training_record_chains_back_to_a_run_from_scratch() {
    let (m, ..) = models();
    let init = m.config.train.init.as_ref().map(|i| i.sha256.clone());
    assert_eq!(m.training.started_from.as_ref().map(|s| s.sha256.clone()), init, "config.train.init and training.started_from disagree");
    assert_eq!(m.training.steps_done, m.training.steps_planned, "shipped weights come from a finished run");
    assert_eq!(m.training.images_seen, m.training.steps_done * m.config.train.batch_size);
    let mut stage = &m.training;
    let mut runs = 1;
    while let Some(start) = &stage.started_from {
        assert!(stage.command.contains("--init "), "a fine-tune's command names its start: {}", stage.command);
        assert_eq!(start.sha256.len(), 64);
        stage = start.training.as_ref().expect("every starting weights' training is recorded");
        runs += 1;
    }
    assert!(!stage.command.contains("--init"), "the first run starts from scratch: {}", stage.command);
    assert!(runs <= 8, "{runs} runs");
}

/// The variance channel was trained on the shipped eps weights, by a finished run its command
/// reproduces, and it reads the conditioning: v differs between a small and a large t.
#[test]
fn the_variance_channel_belongs_to_the_shipped_eps_weights() {
    use burn::tensor::{Int, Tensor, TensorData};
    let (m, unet, _) = models();
    assert!(m.file(ddpm_web::app::weights::VARIANCE_FILE).is_ok(), "the manifest lists the variance channel");
    match (&m.variance_training, &m.config.train.hybrid) {
        // Trained afterwards on the frozen eps network: its own record names those eps weights.
        (Some(record), None) => {
            let unet_sha = &m.file(ddpm_web::app::weights::UNET_FILE).unwrap().sha256;
            assert_eq!(record.started_from.as_ref().map(|s| &s.sha256), Some(unet_sha), "trained on other eps weights");
            assert_eq!(record.steps_done, record.steps_planned);
            assert!(record.command.contains("train-variance") && record.command.contains("--export"), "{}", record.command);
        }
        // Trained with the body on L_hybrid: the main record is the channel's too.
        (None, Some(_)) => {
            assert_eq!(m.training.steps_done, m.training.steps_planned);
            assert!(m.training.command.contains("--hybrid") || m.training.command.contains("--init-variance"), "{}", m.training.command);
        }
        (separate, hybrid) => panic!("the channel's training is recorded once: separate {:?}, hybrid {:?}", separate.is_some(), hybrid.is_some()),
    }
    let device = Device::flex();
    let x = Tensor::<4>::zeros([2, 1, 28, 28], &device);
    let class = Tensor::<1, Int>::from_data(TensorData::new(vec![10i64, 10], [2]), &device);
    let (_, raw) = unet.forward_with_variance(x, unet.time_embedding(&[2.0, 900.0], &device) + unet.class_embedding(class, 2));
    let v: Vec<f32> = raw.expect("a variance channel").into_data().try_to_vec().unwrap();
    let mean = |k: usize| v[k * 784..(k + 1) * 784].iter().sum::<f32>() / 784.0;
    assert!(v.iter().all(|x| x.is_finite()));
    assert!((mean(0) - mean(1)).abs() > 0.05, "v at t = 2 ({}) and t = 900 ({}) differ", mean(0), mean(1));
}

/// The held-out set is ordered by label: a subset of the NLL evaluation must be spread over it,
/// or `--nll-digits 100` would score zeros only.
#[test]
fn an_nll_subset_holds_every_label_in_its_share() {
    let digits = load_mnist(Path::new(DEFAULT_CACHE)).expect("run scripts/fetch-data.sh");
    let (_, held_out) = split(&digits);
    assert!(held_out.windows(2).all(|w| w[0].label <= w[1].label), "the held-out set is ordered by label");
    assert_eq!(spread_indices(held_out.len(), held_out.len()), (0..held_out.len()).collect::<Vec<_>>());
    assert_eq!(spread_indices(held_out.len(), 5000).len(), held_out.len());
    let chosen = spread_indices(held_out.len(), 100);
    assert_eq!(chosen.len(), 100);
    assert!(chosen.windows(2).all(|w| w[0] < w[1]), "distinct, in order");
    let mut per_label = [0usize; 10];
    for &i in &chosen {
        per_label[held_out[i].label] += 1;
    }
    for (label, &count) in per_label.iter().enumerate() {
        let share = held_out.iter().filter(|d| d.label == label).count() as f64 / held_out.len() as f64 * 100.0;
        assert!((count as f64 - share).abs() <= 1.0, "label {label}: {count} of 100 against a share of {share:.1}");
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

/// Three guided DDIM steps of the shipped model from a fixed seed: the browser suite checks that
/// WebGPU and the CPU fallback reproduce this native trajectory (tests/fixtures/sampler-ddim.json).
#[derive(serde::Serialize, serde::Deserialize)]
struct SamplerFixture {
    /// The U-Net the states were computed with: new weights need a new fixture.
    weights_sha256: String,
    settings: SampleSettings,
    steps: usize,
    /// x after each step, [count * 784] each.
    states: Vec<Vec<f32>>,
}

const SAMPLER_FIXTURE: &str = "tests/fixtures/sampler-ddim.json";

#[test]
fn seeded_trajectory_matches_the_browser_fixture() {
    let (m, unet, _) = models();
    let device = Device::flex();
    // Four images, any digit: the browser suite splits them over 1, 2 and 3 workers.
    // Guidance where the page applies it (the manifest's interval): the steps at t = 1000, 889,
    // 778 and 667 lie outside the shipped interval, the fifth (t = 556) inside.
    let interval = m.config.guidance_interval;
    assert!(interval.is_some_and(|i| [1000, 889, 778, 667].iter().all(|&t| !i.contains(t)) && i.contains(556)), "{interval:?}");
    let settings = SampleSettings { class: ClassChoice::AnyDigit, guidance: 2.0, guidance_interval: interval, method: Method::Ddim { steps: 10, eta: 0.5 }, seed: 11, count: 4, first_cell: 0, clip_x0: true };
    let schedule = m.config.schedule();
    let mut sampler = Sampler::new(settings.clone(), &schedule, &device);
    let states: Vec<Vec<f32>> = (0..5).map(|_| sampler.step(&unet).unwrap().x.into_data().try_to_vec::<f32>().unwrap()).collect();
    if std::env::var("DDPM_UPDATE_FIXTURES").is_ok() {
        let now = SamplerFixture { weights_sha256: common::shipped_unet_sha256(), settings: settings.clone(), steps: 5, states: states.clone() };
        std::fs::write(SAMPLER_FIXTURE, serde_json::to_string(&now).unwrap() + "\n").unwrap();
    }
    let fixture: SamplerFixture = serde_json::from_str(&std::fs::read_to_string(SAMPLER_FIXTURE).expect("DDPM_UPDATE_FIXTURES=1 writes it")).unwrap();
    assert_eq!(fixture.weights_sha256, common::shipped_unet_sha256(), "the fixture was written with other weights: rewrite it");
    assert_eq!(fixture.settings, settings);
    for (k, (a, b)) in states.iter().zip(&fixture.states).enumerate() {
        common::tolerance::SAMPLER_STATE.check(&format!("step {}", k + 1), a, b).unwrap_or_else(|e| panic!("native trajectory moved from the fixture: {e} (sampler changed?)"));
    }
}

#[test]
fn the_shipped_samplers_table_reads_as_typed_rows() {
    // The explainer's section 8 draws this table from the manifest.
    let manifest = common::shipped_manifest();
    let table = manifest.steps_table().expect("samplers_by_steps is shipped").unwrap();
    assert!(table.real_vs_real_same_count > 0.0 && table.command.contains("--only steps"));
    // Measured with the guidance the page uses by default.
    assert_eq!((table.guidance, table.guidance_interval), (manifest.config.guidance, manifest.config.guidance_interval));
    for sampler in ["ddim", "dpm2m", "ancestral"] {
        let rows: Vec<_> = table.rows.iter().filter(|r| r.sampler == sampler).collect();
        assert!(rows.len() >= 5, "{sampler}: {} rows", rows.len());
        assert!(rows.iter().all(|r| r.frechet_distance > 0.0 && (r.ratio_to_real - r.frechet_distance / table.real_vs_real_same_count).abs() < 1e-9));
    }
}

#[test]
fn the_shipped_restore_table_covers_every_operation_on_at_least_500_held_out_digits() {
    // The restore page draws this table from the manifest (`evaluate --only restore --record`).
    use ddpm_web::restore::damage::Damage;
    let manifest = common::shipped_manifest();
    let table = manifest.restore_table().expect("the restore table is shipped").unwrap();
    assert!(table.digits >= 500 && table.command.contains("--only restore"), "{} digits", table.digits);
    assert_eq!(table.inpainting.iter().map(|r| r.preset).collect::<Vec<_>>(), Damage::ALL.to_vec());
    assert!(table.denoising.len() >= 3 && table.denoising.windows(2).all(|w| w[0].sigma < w[1].sigma && w[0].t < w[1].t));
    assert_eq!(table.superres.iter().map(|r| r.factor).collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(table.inversion.iter().map(|r| r.steps).collect::<Vec<_>>(), vec![10, 50, 200]);
    for r in &table.denoising {
        // The noisy input is not clipped, so its PSNR is the noise's own, 10 log10(4 / sigma^2) dB,
        // to sampling error over 392,000 pixels.
        assert!((r.noisy - 10.0 * (4.0 / (r.sigma * r.sigma)).log10()).abs() < 0.1, "{r:?}");
    }
    // Inversion's round trip improves with the steps.
    assert!(table.inversion.windows(2).all(|w| w[0].psnr < w[1].psnr));
}
