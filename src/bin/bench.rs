//! Native sampling benchmark: ms per reverse step for grids of 1, 16 and 64 on Burn's flex CPU
//! backend, with the shipped weights, doing what the page does on a drawn step: a guided DDIM
//! step, the classifier on the predicted x_0, and one readback of the images and probabilities.
//!
//!   cargo run --release --bin bench -- [--steps 20]
//!
//! Each grid runs with plain Burn's GroupNorm and SiLU and with the fused SiLU(GroupNorm(x)) of
//! `nets::fused` (the model's default on the CPU), so one run shows the kernel's effect.
//!
//! Then the explainer's 2-D trainer with its defaults on each preset: ms per training step, and
//! the step and the training seconds at which its samples first pass the fit threshold (checked
//! every 100 steps, as the page checks about once a second).

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use ddpm_web::nets::classifier::Classifier;
use ddpm_web::nets::unet::{NUM_DIGITS, PIXELS, UNet};
use ddpm_web::diffusion::sampling::{ClassChoice, Method, SampleSettings, Sampler};
use ddpm_web::diffusion::schedule::{NoiseSchedule, ScheduleKind};
use ddpm_web::toy::train::{ToyPreset, ToySettings, ToyTrainer, check_fit};
use ddpm_web::app::weights::{CLASSIFIER_FILE, MANIFEST, Manifest, UNET_FILE, load_module, load_unet};

fn main() {
    let mut steps = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--steps" => steps = args.next().and_then(|v| v.parse().ok()).filter(|&v| v > 1).expect("--steps needs a number > 1"),
            other => panic!("unknown argument {other}"),
        }
    }
    let manifest = Manifest::parse(&std::fs::read_to_string(format!("weights/{MANIFEST}")).expect("weights/manifest.json")).unwrap();
    let device = Device::flex();
    let entry = manifest.file(UNET_FILE).unwrap();
    let model: UNet = load_unet(&manifest.config, entry, std::fs::read(format!("weights/{UNET_FILE}")).unwrap(), &device).unwrap();
    let classifier = load_module(Classifier::new(&device), std::fs::read(format!("weights/{CLASSIFIER_FILE}")).unwrap()).unwrap();
    let cfg = &manifest.config;
    println!(
        "network: {} parameters, {:.1} MFLOPs per image per forward; guided steps run 2 images per sample",
        model.num_params(),
        cfg.model.forward_flops() as f64 / 1e6
    );
    // flex runs on rayon's pool, which RAYON_NUM_THREADS sizes (the benchmark's single-thread run).
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    for (count, fused) in [1usize, 16, 64].into_iter().flat_map(|c| [(c, false), (c, true)]) {
        ddpm_web::nets::fused::set_fused(fused);
        // Guided at every step: the cost of a step inside the guidance interval, the dearest kind.
        let settings = SampleSettings { class: ClassChoice::Digit(7), guidance: cfg.guidance, guidance_interval: None, method: Method::Ddim { steps: 1000, eta: 0.0 }, seed: 1, count, first_cell: 0, clip_x0: true };
        let schedule = cfg.schedule();
        let mut sampler = Sampler::new(settings, &schedule, &device);
        let drawn_step = |sampler: &mut Sampler| {
            let step = sampler.step(&model).unwrap();
            let probabilities = classifier.probabilities(step.x0_pred);
            let _ = Tensor::cat(vec![step.x.reshape([count * PIXELS]), probabilities.reshape([count * NUM_DIGITS])], 0).into_data();
        };
        drawn_step(&mut sampler);
        let start = Instant::now();
        for _ in 0..steps {
            drawn_step(&mut sampler);
        }
        let ms = 1e3 * start.elapsed().as_secs_f64() / steps as f64;
        let kernels = if fused { "fused GroupNorm+SiLU" } else { "plain Burn" };
        println!("native flex ({threads} thread{}), {kernels:>20}: grid {count:>2}: {ms:8.1} ms/step", if threads == 1 { "" } else { "s" });
    }
    toy_first_fit(&device);
}

fn toy_first_fit(device: &Device) {
    let schedule = NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 1000);
    for preset in ToyPreset::ALL {
        let mut trainer = ToyTrainer::new(preset.mixture(), ToySettings::default(), schedule.clone(), device);
        let mut training = 0.0;
        let first = loop {
            let start = Instant::now();
            for _ in 0..100 {
                let _ = trainer.train_step().into_data();
            }
            training += start.elapsed().as_secs_f64();
            let (_, fit) = futures_lite::future::block_on(check_fit(&trainer.model(), &preset.mixture(), &schedule, 11, device)).unwrap();
            if fit.good() || trainer.steps_done() >= trainer.settings.steps {
                break fit.good().then_some(trainer.steps_done());
            }
        };
        let ms = 1e3 * training / trainer.steps_done() as f64;
        match first {
            Some(step) => println!("native 2-D trainer, {:?}: {ms:.2} ms/step, first fit at step {step} after {training:.1} s of training", preset),
            None => println!("native 2-D trainer, {:?}: {ms:.2} ms/step, no fit in {} steps", preset, trainer.steps_done()),
        }
    }
}
