//! The U-Net's shape, size and determinism, the weights round trip, and the sampling loop.
#![cfg(not(target_family = "wasm"))]

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use ddpm_web::app::config::DdpmConfig;
use ddpm_web::nets::unet::{NULL_CLASS, NUM_DIGITS, PIXELS, UNet, UNetConfig};
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::diffusion::sampling::{ClassChoice, GuidanceInterval, Method, SampleSettings, Sampler};
use ddpm_web::app::weights::{FileEntry, encode_module, load_module, load_unet, sha256_hex};
use ddpm_web::diffusion::variance::VarianceChoice;

mod common;
use common::{dev, read};

fn inputs(n: usize, seed: u64) -> (Tensor<4>, Vec<f32>, Tensor<1, Int>) {
    let mut rng = NoiseSource::new(seed);
    let x = rng.tensor([n, 1, 28, 28], &dev());
    let t: Vec<f32> = (0..n).map(|k| (1 + k * 997 / n.max(1)) as f32).collect();
    let c: Vec<i64> = (0..n).map(|k| (k % 11) as i64).collect();
    (x, t, Tensor::from_data(TensorData::new(c, [n]), &dev()))
}


/// Parameter count from the architecture's layer formulas, written independently of the code.
fn expected_params(cfg: &UNetConfig) -> usize {
    let [c0, c1, c2] = cfg.channels;
    let e = cfg.emb_dim;
    let conv = |i: usize, o: usize, k: usize| i * o * k * k + o;
    let norm = |c: usize| 2 * c;
    let linear = |i: usize, o: usize| i * o + o;
    let res = |i: usize, o: usize| {
        norm(i) + conv(i, o, 3) + linear(e, o) + norm(o) + conv(o, o, 3) + if i != o { conv(i, o, 1) } else { 0 }
    };
    let attn = norm(c2) + linear(c2, 3 * c2) + linear(c2, c2);
    2 * linear(e, e)
        + 11 * e
        + conv(1, c0, 3)
        + res(c0, c0)
        + conv(c0, c0, 3)
        + res(c0, c1)
        + conv(c1, c1, 3)
        + res(c1, c2)
        + attn
        + res(c2, c2)
        + res(2 * c2, c2)
        + res(c2 + c1, c1)
        + res(c1 + c0, c0)
        + norm(c0)
        + conv(c0, 1, 3)
}

#[test]
fn output_shape_and_parameter_count() {
    for cfg in [UNetConfig::default(), UNetConfig { channels: [32, 64, 64], ..UNetConfig::default() }] {
        let model = UNet::init_seeded(&cfg, 1, &dev());
        assert_eq!(model.num_params(), expected_params(&cfg), "{:?}", cfg.channels);
        let (x, t, c) = inputs(3, 0);
        let eps = model.forward(x, &t, c);
        assert_eq!(eps.dims(), [3, 1, 28, 28]);
        assert!(read(eps).iter().all(|v| v.is_finite()));
    }
}

#[test]
fn forward_flops_of_the_default_network() {
    // Hand sum, layer by layer, for channels 16/32/64 and emb 128 (docs/model-and-training.md): convolutions and
    // attention 73,118,976 + embedding projections 73,728 + time MLP 65,536.
    let flops = UNetConfig::default().forward_flops();
    assert_eq!(flops, 73_258_240, "{flops}");
    // Doubling every width roughly quadruples the convolution cost.
    let wide = UNetConfig { channels: [32, 64, 128], ..UNetConfig::default() }.forward_flops();
    assert!((3.8..4.1).contains(&(wide as f64 / flops as f64)));
}

#[test]
fn a_seed_fixes_the_weights_and_the_output() {
    let cfg = UNetConfig::default();
    let (x, t, c) = inputs(2, 5);
    let a = read(UNet::init_seeded(&cfg, 7, &dev()).forward(x.clone(), &t, c.clone()));
    let b = read(UNet::init_seeded(&cfg, 7, &dev()).forward(x.clone(), &t, c.clone()));
    let other = read(UNet::init_seeded(&cfg, 8, &dev()).forward(x, &t, c));
    assert_eq!(a, b);
    assert_ne!(a, other);
}

#[test]
fn time_and_class_change_the_prediction() {
    let model = UNet::init_seeded(&UNetConfig::default(), 3, &dev());
    let mut rng = NoiseSource::new(1);
    let x = rng.tensor([1, 1, 28, 28], &dev());
    let run = |t: f32, c: i64| {
        read(model.forward(
            x.clone(),
            &[t],
            Tensor::from_data(TensorData::new(vec![c], [1]), &dev()),
        ))
    };
    assert_ne!(run(10.0, 3), run(900.0, 3));
    assert_ne!(run(10.0, 3), run(10.0, NULL_CLASS as i64));
}

#[test]
fn weights_round_trip_in_f32_exactly_and_in_f16_within_1e_3() {
    let cfg = UNetConfig::default();
    let model = UNet::init_seeded(&cfg, 11, &dev());
    let (x, t, c) = inputs(2, 9);
    let want = read(model.forward(x.clone(), &t, c.clone()));
    let f32_bytes = encode_module(model.clone(), false).unwrap();
    let loaded = load_module(UNet::new(&cfg, &dev()), f32_bytes).unwrap();
    assert_eq!(read(loaded.forward(x.clone(), &t, c.clone())), want);
    let f16_bytes = encode_module(model, true).unwrap();
    let entry = FileEntry { name: "unet.bpk".into(), bytes: f16_bytes.len(), sha256: sha256_hex(&f16_bytes), dtype: "f16".into() };
    let half = load_unet(&DdpmConfig { model: cfg, ..DdpmConfig::default() }, &entry, f16_bytes.clone(), &dev()).unwrap();
    let got = read(half.forward(x, &t, c));
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "f16 weights change the output by {diff}");
}

#[test]
fn corrupt_truncated_or_foreign_weights_give_clear_errors() {
    let cfg = UNetConfig::default();
    let bytes = encode_module(UNet::init_seeded(&cfg, 1, &dev()), true).unwrap();
    let entry = FileEntry { name: "unet.bpk".into(), bytes: bytes.len(), sha256: sha256_hex(&bytes), dtype: "f16".into() };
    let config = DdpmConfig { model: cfg.clone(), ..DdpmConfig::default() };
    let err = load_unet(&config, &entry, bytes[..bytes.len() - 10].to_vec(), &dev()).unwrap_err();
    assert!(err.0.contains("bytes, the manifest says"), "{err}");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0xff;
    let err = load_unet(&config, &entry, flipped, &dev()).unwrap_err();
    assert!(err.0.contains("SHA-256"), "{err}");
    assert!(load_module(UNet::new(&cfg, &dev()), b"not a burnpack".to_vec()).unwrap_err().0.contains("burnpack"));
    // Weights of another architecture do not load silently.
    let other = UNetConfig { channels: [32, 64, 64], ..cfg.clone() };
    let foreign = encode_module(UNet::init_seeded(&other, 1, &dev()), false).unwrap();
    assert!(load_module(UNet::new(&cfg, &dev()), foreign).is_err());
}

fn settings(method: Method, class: ClassChoice, seed: u64) -> SampleSettings {
    SampleSettings { class, guidance: 2.0, guidance_interval: None, method, seed, count: 2, first_cell: 0, clip_x0: true }
}

#[test]
fn sampler_runs_every_step_and_a_seed_fixes_the_trajectory() {
    let cfg = DdpmConfig::default();
    let schedule = cfg.schedule();
    let model = UNet::init_seeded(&cfg.model, 2, &dev());
    let run = |s: SampleSettings| {
        let mut sampler = Sampler::new(s, &schedule, &dev());
        let mut ts = Vec::new();
        while let Some(step) = sampler.step(&model) {
            assert_eq!(step.done, ts.len() + 1);
            ts.push(step.t);
        }
        (ts, read(sampler.current()))
    };
    let (ts, a) = run(settings(Method::Ddim { steps: 5, eta: 0.5 }, ClassChoice::Digit(7), 1));
    assert_eq!(ts, vec![1000, 750, 501, 251, 1]);
    let (_, b) = run(settings(Method::Ddim { steps: 5, eta: 0.5 }, ClassChoice::Digit(7), 1));
    let (_, c) = run(settings(Method::Ddim { steps: 5, eta: 0.5 }, ClassChoice::Digit(7), 2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|v| v.is_finite()));
    let (_, u) = run(settings(Method::Ddim { steps: 3, eta: 0.0 }, ClassChoice::Unconditional, 1));
    assert!(u.iter().all(|v| v.is_finite()));
}

#[test]
fn ddpm_sampler_takes_t_steps() {
    let cfg = DdpmConfig { timesteps: 20, ..DdpmConfig::default() };
    let schedule = cfg.schedule();
    let model = UNet::init_seeded(&cfg.model, 2, &dev());
    let mut sampler = Sampler::new(settings(Method::Ddpm { variance: VarianceChoice::Beta }, ClassChoice::Digit(3), 4), &schedule, &dev());
    assert_eq!(sampler.total_steps(), 20);
    let mut last_t = 21;
    while let Some(step) = sampler.step(&model) {
        assert_eq!(step.t, last_t - 1);
        last_t = step.t;
    }
    assert_eq!(last_t, 1);
    assert!(sampler.is_done());
}

/// Image i of a run depends only on (seed, i, settings): a grid drawn whole equals the same grid
/// drawn in parts (as the browser's workers split it), and a cell is the same in any grid size.
#[test]
fn each_image_has_its_own_stream_whatever_the_split() {
    let cfg = DdpmConfig::default();
    let schedule = cfg.schedule();
    let model = UNet::init_seeded(&cfg.model, 2, &dev());
    let run = |class: ClassChoice, first_cell: usize, count: usize| {
        let s = SampleSettings { class, guidance: 2.0, guidance_interval: None, method: Method::Ddim { steps: 3, eta: 1.0 }, seed: 5, count, first_cell, clip_x0: true };
        let mut sampler = Sampler::new(s, &schedule, &dev());
        let labels = sampler.labels().to_vec();
        while sampler.step(&model).is_some() {}
        (labels, read(sampler.current()))
    };
    let close = |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5);
    let (labels, whole) = run(ClassChoice::AnyDigit, 0, 5);
    for split in [vec![2, 3], vec![1, 1, 3], vec![4, 1]] {
        let mut first = 0;
        let (mut parts_labels, mut parts) = (Vec::new(), Vec::new());
        for n in split.iter().copied() {
            let (l, x) = run(ClassChoice::AnyDigit, first, n);
            parts_labels.extend(l);
            parts.extend(x);
            first += n;
        }
        assert_eq!(parts_labels, labels, "split {split:?}");
        assert!(close(&parts, &whole), "split {split:?} changed the images");
    }
    // Cell 3 alone equals cell 3 of the grid.
    let (_, alone) = run(ClassChoice::AnyDigit, 3, 1);
    assert!(close(&alone, &whole[3 * PIXELS..4 * PIXELS]));
    // Another seed gives other images.
    assert_ne!(run(ClassChoice::AnyDigit, 0, 1).1, run(ClassChoice::AnyDigit, 1, 1).1);
}

/// "Any digit" draws one label per image from that image's stream, uniformly over 0-9, and
/// guides towards it: the same as choosing that digit for that cell. The null class is its own
/// choice and runs without guidance.
#[test]
fn any_digit_draws_a_uniform_label_per_image_and_guides_towards_it() {
    let cfg = DdpmConfig::default();
    let schedule = cfg.schedule();
    let method = Method::Ddim { steps: 2, eta: 0.0 };
    let n = 2000;
    let s = SampleSettings { class: ClassChoice::AnyDigit, guidance: 2.0, guidance_interval: None, method, seed: 3, count: n, first_cell: 0, clip_x0: true };
    assert!(s.guided());
    let labels = Sampler::new(s, &schedule, &dev()).labels().to_vec();
    let mut counts = [0usize; NUM_DIGITS];
    for &l in &labels {
        counts[l] += 1;
    }
    // Binomial(2000, 0.1): sd 13.4; 5 sd either side of 200.
    assert!(counts.iter().all(|&c| (133..=267).contains(&c)), "label counts {counts:?}");
    // Pearson's chi-square with 9 degrees of freedom: 27.9 is its 0.999 quantile.
    let chi2: f64 = counts.iter().map(|&c| (c as f64 - 200.0).powi(2) / 200.0).sum();
    assert!(chi2 < 27.9, "chi-square {chi2} over {counts:?}");

    // Cell k of "any" equals cell k with its drawn digit chosen (same stream, same guidance).
    let model = UNet::init_seeded(&cfg.model, 2, &dev());
    let sample = |class: ClassChoice, first_cell: usize| {
        let s = SampleSettings { class, guidance: 2.0, guidance_interval: None, method, seed: 3, count: 1, first_cell, clip_x0: true };
        let mut sampler = Sampler::new(s, &schedule, &dev());
        while sampler.step(&model).is_some() {}
        read(sampler.current())
    };
    for k in [0usize, 7] {
        assert_eq!(sample(ClassChoice::AnyDigit, k), sample(ClassChoice::Digit(labels[k]), k), "cell {k}");
    }
    let null = SampleSettings { class: ClassChoice::Unconditional, guidance: 2.0, guidance_interval: None, method, seed: 3, count: 4, first_cell: 0, clip_x0: true };
    assert!(!null.guided());
    assert_eq!(Sampler::new(null, &schedule, &dev()).labels(), &[NULL_CLASS; 4]);
    // x_T does not depend on the class chosen.
    let x_t = |class| read(Sampler::new(SampleSettings { class, guidance: 2.0, guidance_interval: None, method, seed: 3, count: 3, first_cell: 0, clip_x0: true }, &schedule, &dev()).current());
    assert_eq!(x_t(ClassChoice::AnyDigit), x_t(ClassChoice::Unconditional));
    assert_eq!(x_t(ClassChoice::AnyDigit), x_t(ClassChoice::Digit(4)));
}

/// Inside the guidance interval a step's eps is (1 + w) eps(x, t, c) - w eps(x, t, null); outside it
/// is eps(x, t, c) alone; with no interval every step is guided.
#[test]
fn guidance_applies_only_inside_its_interval() {
    let cfg = DdpmConfig::default();
    let schedule = cfg.schedule();
    let model = UNet::init_seeded(&cfg.model, 2, &dev());
    let method = Method::Ddim { steps: 5, eta: 0.5 }; // t = 1000, 750, 501, 251, 1
    let interval = GuidanceInterval { first: 251, last: 750 };
    let (w, n) = (1.5, 3);
    let settings = |guidance_interval| SampleSettings {
        class: ClassChoice::AnyDigit, guidance: w, guidance_interval, method, seed: 8, count: n, first_cell: 0, clip_x0: true,
    };
    let inside = settings(Some(interval));
    assert_eq!([1000, 750, 501, 251, 1].map(|t| inside.guides_at(t)), [false, true, true, true, false]);
    assert!(!SampleSettings { class: ClassChoice::Unconditional, ..inside.clone() }.guides_at(501));
    assert!(!SampleSettings { guidance: 0.0, ..inside.clone() }.guides_at(501));

    let mut sampler = Sampler::new(inside, &schedule, &dev());
    let labels: Vec<i64> = sampler.labels().iter().map(|&l| l as i64).collect();
    let classes = |c: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(c, [n]), &dev());
    let mut guided_steps = Vec::new();
    loop {
        let x = sampler.current();
        let Some(step) = sampler.step(&model) else { break };
        let t = vec![step.t as f32; n];
        let cond = model.forward(x.clone(), &t, classes(labels.clone()));
        let uncond = model.forward(x, &t, classes(vec![NULL_CLASS as i64; n]));
        let guided = read(cond.clone().mul_scalar(1.0 + w) - uncond.mul_scalar(w));
        let (eps, cond) = (read(step.eps), read(cond));
        let near = |a: &[f32]| a.iter().zip(&eps).all(|(x, y)| (x - y).abs() <= 1e-4);
        assert!(near(if interval.contains(step.t) { &guided } else { &cond }), "t = {}", step.t);
        assert!(!near(if interval.contains(step.t) { &cond } else { &guided }), "t = {}: guidance changes eps", step.t);
        guided_steps.push(interval.contains(step.t));
    }
    assert_eq!(guided_steps, [false, true, true, true, false]);

    // An interval holding every visited t is the same run as no interval.
    let run = |s: SampleSettings| {
        let mut sampler = Sampler::new(s, &schedule, &dev());
        while sampler.step(&model).is_some() {}
        read(sampler.current())
    };
    assert_eq!(run(settings(Some(GuidanceInterval { first: 1, last: 1000 }))), run(settings(None)));
}
