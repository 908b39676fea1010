//! Browser tests, run by wasm-bindgen-test in a dedicated worker of headless Chromium (WebGPU
//! through SwiftShader), where the pages run all model work: the wgpu device initialises
//! asynchronously; one U-Net forward and one reverse step on WebGPU equal the CPU fallback's for
//! the same weights and seeded noise; the fallback takes over when WebGPU is missing; the
//! sampling page's worker, split over 1, 2 and 3 workers, reproduces the native trajectory; the
//! explainer's 2-D sampler paths reproduce the native ones.
#![cfg(target_family = "wasm")]

use burn::tensor::{Device, Int, Tensor, TensorData};
use ddpm_web::app::config::DdpmConfig;
use ddpm_web::nets::unet::UNet;
use ddpm_web::diffusion::noise::NoiseSource;
use ddpm_web::app::protocol::{BackendKind, BackendPreference};
use ddpm_web::diffusion::sampling::{ClassChoice, GuidanceInterval, Method, SampleSettings, Sampler};
use ddpm_web::app::image::grid_rgba;
use ddpm_web::web::{init_backend, read_f32};
use js_sys::Reflect;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

#[path = "common/tolerance.rs"]
mod tolerance;
use tolerance::Tolerance;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn log(message: &str) {
    web_sys::console::log_1(&message.into());
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

async fn webgpu() -> Device {
    let backend = init_backend(BackendPreference::WebGpu).await;
    assert_eq!(backend.info.kind, BackendKind::WebGpu, "WebGPU unavailable: {:?}", backend.info.fallback_reason);
    log(&format!("WebGPU adapter: {}", backend.info.adapter));
    backend.device
}

async fn forward(model: &UNet, seed: u64, device: &Device) -> Vec<f32> {
    let mut rng = NoiseSource::new(seed);
    let x = rng.tensor([2, 1, 28, 28], device);
    let t = [37.0f32, 815.0];
    let c = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 10], [2]), device);
    read_f32(model.forward(x, &t, c)).await.unwrap()
}

#[wasm_bindgen_test]
async fn webgpu_device_initialises_asynchronously() {
    let device = webgpu().await;
    let x = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [3]), &device);
    assert_eq!(read_f32(x.mul_scalar(2.0)).await.unwrap(), vec![2.0, 4.0, 6.0]);
}

#[wasm_bindgen_test]
async fn unet_forward_and_reverse_step_match_between_webgpu_and_cpu() {
    let gpu = webgpu().await;
    let cpu = Device::flex();
    let cfg = DdpmConfig::default();
    // The same seeded weights, built directly on each device.
    let on_gpu = UNet::init_seeded(&cfg.model, 5, &gpu);
    let on_cpu = UNet::init_seeded(&cfg.model, 5, &cpu);
    let (a, b) = (forward(&on_gpu, 1, &gpu).await, forward(&on_cpu, 1, &cpu).await);
    log(&format!("U-Net forward, WebGPU vs CPU: max |diff| = {:e}", max_abs_diff(&a, &b)));
    tolerance::WEBGPU_FORWARD.check("forward", &a, &b).unwrap();

    let schedule = cfg.schedule();
    // t = 1000 (outside the interval: one conditional pass), then t = 980 (guided: a batch of 4).
    let interval = Some(GuidanceInterval { first: 1, last: 990 });
    let settings = SampleSettings { class: ClassChoice::Digit(4), guidance: 2.0, guidance_interval: interval, method: Method::Ddim { steps: 50, eta: 1.0 }, seed: 9, count: 2, first_cell: 0, clip_x0: true };
    let mut sg = Sampler::new(settings.clone(), &schedule, &gpu);
    let mut sc = Sampler::new(settings, &schedule, &cpu);
    for _ in 0..2 {
        let (g, c) = (sg.step(&on_gpu).unwrap(), sc.step(&on_cpu).unwrap());
        let (g_x, c_x) = (read_f32(g.x).await.unwrap(), read_f32(c.x).await.unwrap());
        log(&format!("reverse step t={}, WebGPU vs CPU: max |diff| = {:e}", g.t, max_abs_diff(&g_x, &c_x)));
        tolerance::WEBGPU_FORWARD.check(&format!("reverse step t={}", g.t), &g_x, &c_x).unwrap();
    }
}

#[wasm_bindgen_test]
async fn the_fused_kernels_equal_plain_burn_on_the_cpu_and_on_webgpu() {
    // The fused SiLU(GroupNorm(x)): simd128 on the CPU fallback, one CubeCL kernel on WebGPU.
    use ddpm_web::nets::fused::{set_fused, takes_fused_path};
    for device in [Device::flex(), webgpu().await] {
        assert!(takes_fused_path(&device));
        let model = UNet::init_seeded(&DdpmConfig::default().model, 5, &device);
        set_fused(false);
        let plain = forward(&model, 2, &device).await;
        set_fused(true);
        let fused = forward(&model, 2, &device).await;
        log(&format!("U-Net forward on {device:?}, fused vs plain Burn: max |diff| = {:e}", max_abs_diff(&fused, &plain)));
        tolerance::FUSED_KERNEL.check("forward", &fused, &plain).unwrap();
    }
}

#[wasm_bindgen_test]
async fn cpu_fallback_is_used_and_works_without_webgpu() {
    let navigator: JsValue = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let descriptor = js_sys::Object::new();
    Reflect::set(&descriptor, &"value".into(), &JsValue::UNDEFINED).unwrap();
    Reflect::set(&descriptor, &"configurable".into(), &JsValue::TRUE).unwrap();
    js_sys::Object::define_property(&navigator.clone().into(), &"gpu".into(), &descriptor);
    let backend = init_backend(BackendPreference::Auto).await;
    // Restore WebGPU for the other tests before asserting.
    Reflect::delete_property(&navigator.into(), &"gpu".into()).unwrap();
    assert_eq!(backend.info.kind, BackendKind::Cpu);
    let reason = backend.info.fallback_reason.expect("the page must say why it uses the CPU");
    assert!(reason.contains("does not offer WebGPU"), "{reason}");
    let model = UNet::init_seeded(&DdpmConfig::default().model, 5, &backend.device);
    let out = forward(&model, 1, &backend.device).await;
    assert!(out.iter().all(|v| v.is_finite()));
    // An explicit ?backend=cpu also gives the CPU, without a fallback message.
    let forced = init_backend(BackendPreference::parse(Some("cpu")).unwrap()).await;
    assert_eq!((forced.info.kind, forced.info.fallback_reason), (BackendKind::Cpu, None));
    assert!(BackendPreference::parse(Some("tpu")).unwrap_err().contains("tpu"));
}

#[wasm_bindgen_test]
fn grid_pixels_are_the_tensor_values() {
    let values: Vec<f32> = (0..4 * 784).map(|k| ((k % 255) as f32) / 127.5 - 1.0).collect();
    let (w, h, rgba) = grid_rgba(&values, 4);
    assert_eq!((w, h), (56, 56));
    // Image 3 sits bottom-right; its pixel (y=5, x=7) is value index 3*784 + 5*28 + 7.
    let k = 3 * 784 + 5 * 28 + 7;
    let o = ((28 + 5) * 56 + 28 + 7) * 4;
    let want = ((values[k] + 1.0) * 127.5).round() as u8;
    assert_eq!(&rgba[o..o + 4], &[want, want, want, 255]);
}

mod explainer {
    //! The explainer's computations on WebGPU and on the CPU fallback against the native
    //! computation recorded in tests/fixtures/explainer-elbo.json (by `cargo test --test explain`).
    use super::*;
    use ddpm_web::explain::compute::{elbo_terms, elbo_terms_by_variance, parse_example_digits, prior_term, step_views};
    use ddpm_web::diffusion::variance::VarianceChoice;
    use ddpm_web::nets::unet::NULL_CLASS;
    use ddpm_web::toy::mixture::Mixture2d;
    use ddpm_web::app::weights::{Manifest, UNET_FILE, VARIANCE_FILE, load_unet, load_variance_head};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct ElboFixture {
        digit: usize,
        seed: u64,
        indices: Vec<usize>,
        terms_nats: Vec<f32>,
        simple: Vec<f32>,
        prior_nats: f32,
        learned_terms_nats: Vec<f32>,
    }

    /// The shipped U-Net with its variance channel.
    fn shipped(device: &Device) -> (Manifest, UNet) {
        let manifest = Manifest::parse(include_str!("../weights/manifest.json")).unwrap();
        let entry = manifest.file(UNET_FILE).unwrap().clone();
        let model = load_unet(&manifest.config, &entry, include_bytes!("../weights/unet.bpk").to_vec(), device).unwrap();
        let entry = manifest.file(VARIANCE_FILE).unwrap().clone();
        let head = load_variance_head(&manifest.config, &entry, include_bytes!("../weights/variance.bpk").to_vec(), device).unwrap();
        (manifest, model.with_variance_head(head))
    }

    async fn check_elbo_against_native(device: &Device, name: &str, gpu_tolerance: bool) {
        let fixture: ElboFixture = serde_json::from_str(include_str!("fixtures/explainer-elbo.json")).unwrap();
        let digits = parse_example_digits(include_str!("../www/digits.json")).unwrap();
        let (manifest, model) = shipped(device);
        let s = manifest.config.schedule();
        let x0 = digits[fixture.digit].to_model_space();
        let (terms, simple) = elbo_terms(&model, &s, manifest.config.variance, &x0, &fixture.indices, fixture.seed, NULL_CLASS, device);
        let (terms, simple) = (read_f32(terms).await.unwrap(), read_f32(simple).await.unwrap());
        let (term_tolerance, simple_tolerance) = if gpu_tolerance {
            (tolerance::WEBGPU_ELBO_TERM, tolerance::WEBGPU_SIMPLE_TERM)
        } else {
            (tolerance::WASM_ELBO_TERM, tolerance::WASM_SIMPLE_TERM)
        };
        let mut worst = 0.0f32;
        for (k, (a, b)) in terms.iter().zip(&fixture.terms_nats).enumerate() {
            let rel = (a - b).abs() / b.abs();
            worst = worst.max(rel);
            let t = fixture.indices[k] + 1;
            log(&format!("{name}: L at t={t}: {a} nats vs native {b}: relative {rel:.2e}"));
            term_tolerance.check_one(&format!("{name}: ELBO term at t={t}"), *a, *b).unwrap();
        }
        let (sum, native_sum): (f32, f32) = (terms.iter().sum(), fixture.terms_nats.iter().sum());
        tolerance::BROWSER_SUM.check_one(&format!("{name}: sum of terms"), sum, native_sum).unwrap();
        // The same terms with the learned variance (the variance channel's Sigma_theta).
        let learned = elbo_terms_by_variance(&model, &s, &[VarianceChoice::Learned], &x0, &fixture.indices, fixture.seed, NULL_CLASS, device);
        let (_, learned) = learned.terms.into_iter().next().expect("the shipped weights have a variance channel");
        let learned = read_f32(learned).await.unwrap();
        let mut worst_learned = 0.0f32;
        for (k, (a, b)) in learned.iter().zip(&fixture.learned_terms_nats).enumerate() {
            worst_learned = worst_learned.max((a - b).abs() / b.abs());
            term_tolerance.check_one(&format!("{name}: learned-variance ELBO term at t={}", fixture.indices[k] + 1), *a, *b).unwrap();
        }
        let (sum, native_sum): (f32, f32) = (learned.iter().sum(), fixture.learned_terms_nats.iter().sum());
        tolerance::BROWSER_SUM.check_one(&format!("{name}: sum of learned-variance terms"), sum, native_sum).unwrap();
        log(&format!("{name}: learned-variance terms, largest relative difference from native {worst_learned:.2e}"));
        log(&format!("{name}: L_simple terms {simple:?} vs native {:?}", fixture.simple));
        simple_tolerance.check(&format!("{name}: L_simple"), &simple, &fixture.simple).unwrap();
        let prior = read_f32(prior_term(&s, &x0, device)).await.unwrap()[0];
        tolerance::BROWSER_SUM.check_one(&format!("{name}: L_T"), prior, fixture.prior_nats).unwrap();
        log(&format!("{name}: {} ELBO terms, largest relative difference from native {worst:.2e}", terms.len()));
        // The three routes to mu agree, and Tweedie's estimate is the predicted x_0.
        for i in [0usize, 49, 499, 998] {
            let v = step_views(&model, &s, manifest.config.variance, &x0, i, 3, NULL_CLASS, device);
            let m = read_f32(v.mean_via_eps).await.unwrap();
            let (mx, ms) = (read_f32(v.mean_via_x0).await.unwrap(), read_f32(v.mean_via_score).await.unwrap());
            let (tw, x0p) = (read_f32(v.tweedie_x0).await.unwrap(), read_f32(v.x0_pred).await.unwrap());
            let scale = x0p.iter().fold(1.0f32, |a, b| a.max(b.abs()));
            let (dx, ds, dt) = (max_abs_diff(&m, &mx), max_abs_diff(&m, &ms), max_abs_diff(&tw, &x0p));
            assert!(dx < 1e-5 && ds < 1e-5, "{name} t={}: routes differ by {dx:e} / {ds:e}", i + 1);
            assert!(dt <= 1e-5 * scale, "{name} t={}: Tweedie differs from x0 by {dt:e}", i + 1);
        }
    }

    #[wasm_bindgen_test]
    async fn elbo_terms_routes_and_tweedie_match_native_on_webgpu() {
        check_elbo_against_native(&webgpu().await, "WebGPU", true).await;
    }

    #[wasm_bindgen_test]
    async fn elbo_terms_routes_and_tweedie_match_native_on_the_cpu_fallback() {
        check_elbo_against_native(&Device::flex(), "CPU (wasm)", false).await;
    }

    #[wasm_bindgen_test]
    fn two_d_closed_form_score_matches_tweedies_formula() {
        let m = Mixture2d::example();
        let s = DdpmConfig::default().schedule();
        for i in [0usize, 99, 499, 999] {
            let a = s.alpha_bar[i];
            for x in [[-2.0, 1.5], [0.0, 0.0], [1.2, -0.7]] {
                let (f, e) = (m.score_via_tweedie(x, a), m.score(x, a));
                assert!((f[0] - e[0]).abs() <= 1e-8 * e[0].abs().max(1.0) && (f[1] - e[1]).abs() <= 1e-8 * e[1].abs().max(1.0), "t={}: {f:?} vs {e:?}", i + 1);
            }
        }
    }
}

mod seeded_trajectory {
    //! The same seed and settings give the same images on WebGPU, on the CPU fallback and natively:
    //! three guided DDIM steps of the shipped model against the native run recorded by
    //! `cargo test --test shipped_weights` in tests/fixtures/sampler-ddim.json.
    use super::*;
    use ddpm_web::app::weights::{Manifest, UNET_FILE, load_unet};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct SamplerFixture {
        settings: SampleSettings,
        steps: usize,
        states: Vec<Vec<f32>>,
    }

    async fn check(device: &Device, name: &str) {
        let fixture: SamplerFixture = serde_json::from_str(include_str!("fixtures/sampler-ddim.json")).unwrap();
        let manifest = Manifest::parse(include_str!("../weights/manifest.json")).unwrap();
        let entry = manifest.file(UNET_FILE).unwrap().clone();
        let model = load_unet(&manifest.config, &entry, include_bytes!("../weights/unet.bpk").to_vec(), device).unwrap();
        let schedule = manifest.config.schedule();
        let mut sampler = Sampler::new(fixture.settings.clone(), &schedule, device);
        for k in 0..fixture.steps {
            let x = read_f32(sampler.step(&model).unwrap().x).await.unwrap();
            log(&format!("{name}: step {} of the seeded trajectory, max |diff| from native = {:e}", k + 1, max_abs_diff(&x, &fixture.states[k])));
            tolerance::BROWSER_SAMPLER_STATE.check(&format!("{name}: step {}", k + 1), &x, &fixture.states[k]).unwrap();
        }
    }

    #[wasm_bindgen_test]
    async fn webgpu_reproduces_the_native_trajectory() {
        check(&webgpu().await, "WebGPU").await;
    }

    #[wasm_bindgen_test]
    async fn cpu_fallback_reproduces_the_native_trajectory() {
        check(&Device::flex(), "CPU (wasm)").await;
    }
}

mod two_d_paths {
    //! The explainer's section 6 (the reverse SDE and the probability-flow ODE on the 2-D mixture,
    //! and DPM-Solver++): the same starts and noise give the native paths of
    //! tests/fixtures/paths-2d.json on WebGPU and on the CPU in wasm.
    use super::*;
    use ddpm_web::toy::mixture::PathsFixture;

    async fn check(device: &Device, name: &str, tolerance: Tolerance) {
        let fixture: PathsFixture = serde_json::from_str(include_str!("fixtures/paths-2d.json")).unwrap();
        let here = PathsFixture::compute(device).await.unwrap();
        assert_eq!(fixture.layout(), here.layout());
        let worst = tolerance.check(&format!("{name}: 2-D path coordinate"), &here.coordinates(), &fixture.coordinates()).unwrap();
        log(&format!("{name}: 2-D SDE/ODE/DPM-Solver++ paths, worst difference {worst:.3} of the tolerance"));
    }

    #[wasm_bindgen_test]
    async fn webgpu_reproduces_the_native_paths() {
        check(&webgpu().await, "WebGPU", tolerance::WEBGPU_PATH_POINT).await;
    }

    #[wasm_bindgen_test]
    async fn cpu_fallback_reproduces_the_native_paths() {
        check(&Device::flex(), "CPU (wasm)", tolerance::PATH_POINT).await;
    }
}

mod sampler_worker {
    //! The sampling page's own code path: the requests the page sends to its workers, with the
    //! grid split across 1, 2 and 3 workers as the page splits it, against the native trajectory
    //! (tests/fixtures/sampler-ddim.json); bad requests are clear errors, not traps.
    use super::*;
    use ddpm_web::app::controls::{Controls, Limits, SamplerKind, View};
    use ddpm_web::app::protocol::{FramePart, SamplerReply, SamplerRequest, WeightFiles};
    use ddpm_web::app::image::to_pixels;
    use ddpm_web::web::SamplerWorker;
    use serde::Deserialize;
    use serde_bytes::ByteBuf;

    #[derive(Deserialize)]
    struct SamplerFixture {
        settings: SampleSettings,
        steps: usize,
        states: Vec<Vec<f32>>,
    }

    fn files() -> WeightFiles {
        WeightFiles {
            manifest: include_str!("../weights/manifest.json").into(),
            unet: ByteBuf::from(include_bytes!("../weights/unet.bpk").to_vec()),
            classifier: ByteBuf::from(include_bytes!("../weights/classifier.bpk").to_vec()),
            variance: Some(ByteBuf::from(include_bytes!("../weights/variance.bpk").to_vec())),
        }
    }

    async fn send(worker: &SamplerWorker, request: SamplerRequest) -> SamplerReply {
        let reply = worker.handle(serde_wasm_bindgen::to_value(&request).unwrap()).await.map_err(JsValue::from).unwrap();
        serde_wasm_bindgen::from_value(reply).unwrap()
    }

    async fn start(backend: &str) -> (SamplerWorker, Limits) {
        let worker = SamplerWorker::new();
        let query = vec![("backend".to_string(), backend.to_string())];
        match send(&worker, SamplerRequest::Init { query, files: files() }).await {
            SamplerReply::Ready { backend: info, limits, .. } => {
                assert_eq!(info.kind, if backend == "cpu" { BackendKind::Cpu } else { BackendKind::WebGpu }, "{info:?}");
                (worker, limits)
            }
            other => panic!("init: {other:?}"),
        }
    }

    /// The fixture's settings as the page's controls.
    fn controls(fixture: &SamplerFixture, limits: &Limits) -> Controls {
        let Method::Ddim { steps, eta } = fixture.settings.method else { panic!("the fixture is a DDIM run") };
        let c = Controls {
            class: fixture.settings.class,
            guidance: fixture.settings.guidance,
            sampler: SamplerKind::Ddim,
            steps,
            eta,
            seed: fixture.settings.seed,
            grid: fixture.settings.count,
            every: 1,
            view: View::State,
        };
        c.check(limits).unwrap();
        c
    }

    async fn check_split(backend: &str, workers: usize) {
        let fixture: SamplerFixture = serde_json::from_str(include_str!("fixtures/sampler-ddim.json")).unwrap();
        let count = fixture.settings.count;
        let mut pool = Vec::new();
        for _ in 0..workers {
            pool.push(start(backend).await);
        }
        let c = controls(&fixture, &pool[0].1);
        // Balanced contiguous shares, as the page's pool splits a grid.
        let mut first = 0;
        for (k, (worker, _)) in pool.iter().enumerate() {
            let n = count / workers + usize::from(k < count % workers);
            match send(worker, SamplerRequest::Begin { controls: c.clone(), first_cell: first, count: n, guide_every_step: false }).await {
                SamplerReply::Began { width, height, .. } => assert_eq!((width, height), (56, 56)),
                other => panic!("begin: {other:?}"),
            }
            first += n;
        }
        for step in 0..fixture.steps {
            let mut parts: Vec<FramePart> = Vec::new();
            for (worker, _) in &pool {
                match send(worker, SamplerRequest::Step { draw: true, view: View::State }).await {
                    SamplerReply::Stepped { frame: Some(frame), done, .. } => {
                        assert_eq!(done, step + 1);
                        parts.push(frame);
                    }
                    other => panic!("step: {other:?}"),
                }
            }
            // Every cell's tile at its place in the grid, within one grey level of native.
            let native = to_pixels(&fixture.states[step]);
            let mut worst = 0i32;
            let mut levels = Vec::with_capacity(native.len());
            let mut cell = 0;
            for part in &parts {
                for tile in &part.tiles {
                    assert_eq!((tile.x, tile.y), ((cell % 2) * 28, (cell / 2) * 28), "cell {cell}");
                    for p in 0..784 {
                        worst = worst.max((tile.rgba[4 * p] as i32 - native[cell * 784 + p] as i32).abs());
                        levels.push(tile.rgba[4 * p] as f64);
                    }
                    cell += 1;
                }
            }
            assert_eq!(cell, count);
            log(&format!("{backend}, {workers} worker(s): step {} within {worst} grey level(s) of native", step + 1));
            let native: Vec<f64> = native.iter().map(|&v| v as f64).collect();
            tolerance::BROWSER_TILE_LEVELS.check(&format!("{backend}, {workers} workers: step {} grey levels", step + 1), &levels, &native).unwrap();
        }
    }

    #[wasm_bindgen_test]
    async fn one_two_and_three_cpu_workers_reproduce_the_native_trajectory() {
        for workers in 1..=3 {
            check_split("cpu", workers).await;
        }
    }

    #[wasm_bindgen_test]
    async fn one_two_and_three_webgpu_workers_reproduce_the_native_trajectory() {
        for workers in 1..=3 {
            check_split("webgpu", workers).await;
        }
    }

    #[wasm_bindgen_test]
    async fn bad_requests_are_clear_errors() {
        let (worker, limits) = start("cpu").await;
        let mut c = Controls::defaults(&limits);
        c.steps = 1;
        match send(&worker, SamplerRequest::Begin { controls: c, first_cell: 0, count: 1, guide_every_step: false }).await {
            SamplerReply::Failed { message } => assert!(message.contains("steps"), "{message}"),
            other => panic!("{other:?}"),
        }
        let c = Controls::defaults(&limits);
        match send(&worker, SamplerRequest::Begin { controls: c, first_cell: 3, count: 2, guide_every_step: false }).await {
            SamplerReply::Failed { message } => assert!(message.contains("grid"), "{message}"),
            other => panic!("{other:?}"),
        }
        let reply = worker.handle(JsValue::from_str("not a request")).await.map_err(JsValue::from).unwrap();
        match serde_wasm_bindgen::from_value::<SamplerReply>(reply).unwrap() {
            SamplerReply::Failed { message } => assert!(message.contains("malformed"), "{message}"),
            other => panic!("{other:?}"),
        }
        let mut broken = files();
        broken.unet = ByteBuf::from(vec![0u8; 10]);
        match send(&SamplerWorker::new(), SamplerRequest::Init { query: vec![], files: broken }).await {
            SamplerReply::Failed { message } => assert!(message.contains("unet.bpk"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}

mod two_d_training {
    //! The explainer's section 7: the 2-D training step is the native one on WebGPU and on the
    //! CPU in wasm (the first steps' losses and the learned field of tests/fixtures/train-2d.json),
    //! and a whole default run reaches the fit threshold on the CPU. (A whole run on SwiftShader's
    //! WebGPU would take about 29 minutes: 0.58 s per step, measured; see docs/pages.md.)
    use super::*;
    use ddpm_web::diffusion::schedule::{NoiseSchedule, ScheduleKind};
    use ddpm_web::toy::train::{ToyPreset, ToySettings, ToyTrainer, TrainingFixture, check_fit};

    async fn same_steps(device: &Device, name: &str, loss_tolerance: Tolerance, field_share: f64) {
        let fixture: TrainingFixture = serde_json::from_str(include_str!("fixtures/train-2d.json")).unwrap();
        let here = TrainingFixture::compute(device).await.unwrap();
        let loss = loss_tolerance.check(&format!("{name}: loss"), &here.losses, &fixture.losses).unwrap();
        let field = tolerance::of_longest(field_share, &fixture.field_coordinates()).check(&format!("{name}: field"), &here.field_coordinates(), &fixture.field_coordinates()).unwrap();
        log(&format!("{name}: first training steps, worst difference {loss:.3} (losses), {field:.3} (learned field) of the tolerance"));
    }

    async fn fits(device: &Device, name: &str) {
        let schedule = NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 1000);
        let mut trainer = ToyTrainer::new(ToyPreset::Blobs.mixture(), ToySettings::default(), schedule.clone(), device);
        let start = js_sys::Date::now();
        while trainer.steps_done() < trainer.settings.steps {
            // Read a loss every 100 steps, as the page reads one per chunk.
            let losses: Vec<Tensor<1>> = (0..100).map(|_| trainer.train_step()).collect();
            read_f32(Tensor::cat(losses, 0)).await.unwrap();
        }
        let seconds = (js_sys::Date::now() - start) / 1000.0;
        let (_, fit) = check_fit(&trainer.model(), &ToyPreset::Blobs.mixture(), &schedule, 11, device).await.unwrap();
        log(&format!("{name}: {} steps in {seconds:.1} s, {fit:?}", trainer.steps_done()));
        assert!(fit.good(), "{name}: {fit:?}");
    }

    #[wasm_bindgen_test]
    async fn webgpu_trains_with_the_native_step() {
        let device = webgpu().await;
        let start = js_sys::Date::now();
        // f32 kernels of another device, 40 Adam steps: rounding, not a different computation.
        same_steps(&device, "WebGPU", tolerance::WEBGPU_TRAINING_2D_LOSS, tolerance::WEBGPU_TRAINING_2D_FIELD).await;
        log(&format!("WebGPU: 40 steps and a field in {:.1} s", (js_sys::Date::now() - start) / 1000.0));
    }

    #[wasm_bindgen_test]
    async fn cpu_fallback_trains_with_the_native_step_and_fits() {
        same_steps(&Device::flex(), "CPU (wasm)", tolerance::TRAINING_2D_LOSS, tolerance::TRAINING_2D_FIELD).await;
        fits(&Device::flex(), "CPU (wasm)").await;
    }
}

/// The module's static constructors run once per instance, not at every call into it: a
/// "command-style" link (wasm-ld's default when nothing calls `__wasm_call_ctors`) re-runs them at
/// the top of every exported function, which cost a third of a grid-1 CPU step.
mod static_constructors {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RUNS: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn count_run() {
        RUNS.fetch_add(1, Ordering::Relaxed);
    }

    /// A constructor of this test module, registered the way `inventory` registers Burn's.
    #[used]
    #[unsafe(link_section = ".init_array")]
    static COUNT_RUN: extern "C" fn() = count_run;

    #[wasm_bindgen_test]
    async fn run_once_however_often_js_calls_in() {
        ddpm_web::web::run_static_constructors();
        // Each resumption after a JS promise is a call from JS into an exported closure.
        for i in 0..5 {
            let value = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&JsValue::from(i))).await.unwrap();
            assert_eq!(value.as_f64(), Some(i as f64));
        }
        assert_eq!(RUNS.load(Ordering::Relaxed), 1, "static constructors ran more than once");
    }
}

mod restore_ops {
    //! The restore page's operations (inpaint, denoise, super-resolution, sketch, inversion) on
    //! the shipped weights reproduce the native runs of tests/fixtures/restore-ops.json (written
    //! by `cargo test --test restore`) on WebGPU and on the CPU in wasm.
    use super::*;
    use ddpm_web::app::restore_page::RestoreControls;
    use ddpm_web::diffusion::sampling::GuidedDenoiser;
    use ddpm_web::explain::compute::parse_example_digits;
    use ddpm_web::nets::unet::NULL_CLASS;
    use ddpm_web::restore::operation::RestoreRun;
    use ddpm_web::app::weights::{Manifest, UNET_FILE, load_unet};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct RestoreFixture {
        runs: Vec<(RestoreControls, Vec<f32>)>,
    }

    async fn check(device: &Device, name: &str, tolerance: Tolerance) {
        let fixture: RestoreFixture = serde_json::from_str(include_str!("fixtures/restore-ops.json")).unwrap();
        let digits = parse_example_digits(include_str!("../www/restore-digits.json")).unwrap();
        let manifest = Manifest::parse(include_str!("../weights/manifest.json")).unwrap();
        let entry = manifest.file(UNET_FILE).unwrap().clone();
        let unet = load_unet(&manifest.config, &entry, include_bytes!("../weights/unet.bpk").to_vec(), device).unwrap();
        let s = manifest.config.schedule();
        for (controls, want) in &fixture.runs {
            let image = digits[controls.digit].to_model_space();
            let mut run = RestoreRun::new(controls.settings(None, digits[controls.second].to_model_space()), &image, &s, device).unwrap();
            loop {
                let inverted = match run.needs_inverted() {
                    true => Some(read_f32(run.current()).await.unwrap()),
                    false => None,
                };
                let class = run.class();
                let mut eps = |x: Tensor<4>, i: usize| GuidedDenoiser::new(&unet, &vec![class.unwrap_or(NULL_CLASS); x.dims()[0]], controls.guidance, manifest.config.guidance_interval, device).eps(x, i);
                if run.step(&mut eps, inverted.as_deref()).is_none() {
                    break;
                }
            }
            let got = read_f32(run.current()).await.unwrap();
            log(&format!("{name}: {:?} from the shipped digit {}, max |diff| from native = {:e}", controls.operation, controls.digit, max_abs_diff(&got, want)));
            tolerance.check(&format!("{name}: {:?}", controls.operation), &got, want).unwrap();
        }
    }

    #[wasm_bindgen_test]
    async fn webgpu_reproduces_the_native_restorations() {
        check(&webgpu().await, "WebGPU", tolerance::WEBGPU_RESTORE_STATE).await;
    }

    #[wasm_bindgen_test]
    async fn cpu_fallback_reproduces_the_native_restorations() {
        check(&Device::flex(), "CPU (wasm)", tolerance::BROWSER_SAMPLER_STATE).await;
    }
}
