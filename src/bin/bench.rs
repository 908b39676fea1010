//! Native sampling benchmark: ms per reverse step for grids of 1, 16 and 64 on Burn's flex CPU
//! backend, with the shipped weights, doing what the page does on a drawn step: a guided DDIM
//! step, the classifier on the predicted x_0, and one readback of the images and probabilities.
//!
//!   cargo run --release --bin bench -- [--steps 20]
//!
//! Each grid runs with plain Burn's GroupNorm and SiLU and with the fused SiLU(GroupNorm(x)) of
//! `nets::fused` (the model's default on the CPU), so one run shows the kernel's effect.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use ddpm_web::nets::classifier::Classifier;
use ddpm_web::nets::unet::{NUM_DIGITS, PIXELS, UNet};
use ddpm_web::diffusion::sampling::{ClassChoice, Method, SampleSettings, Sampler};
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
}
