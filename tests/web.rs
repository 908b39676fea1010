//! Browser tests, run by wasm-bindgen-test in headless Chromium (WebGPU through SwiftShader):
//! the wgpu device initialises asynchronously; one U-Net forward and one reverse step on WebGPU
//! equal the CPU fallback's for the same weights and seeded noise; the fallback takes over when
//! WebGPU is missing.
#![cfg(target_family = "wasm")]

use burn::tensor::{Device, Int, Tensor, TensorData};
use ddpm_web::config::DdpmConfig;
use ddpm_web::model::UNet;
use ddpm_web::noise::NoiseSource;
use ddpm_web::sampling::{Method, SampleSettings, Sampler};
use ddpm_web::web::{BackendKind, BackendPreference, grid_rgba, init_backend, read_f32};
use js_sys::Reflect;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn log(message: &str) {
    web_sys::console::log_1(&message.into());
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

async fn webgpu() -> Device {
    let backend = init_backend(BackendPreference::WebGpu).await;
    assert_eq!(backend.kind, BackendKind::WebGpu, "WebGPU unavailable: {:?}", backend.fallback_reason);
    log(&format!("WebGPU adapter: {}", backend.adapter));
    backend.device
}

async fn forward(model: &UNet, seed: u64, device: &Device) -> Vec<f32> {
    let mut rng = NoiseSource::new(seed);
    let x = rng.tensor([2, 1, 28, 28], device);
    let t = Tensor::<1>::from_data(TensorData::new(vec![37.0f32, 815.0], [2]), device);
    let c = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 10], [2]), device);
    read_f32(model.forward(x, t, c)).await.unwrap()
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
    let d = max_abs_diff(&a, &b);
    log(&format!("U-Net forward, WebGPU vs CPU: max |diff| = {d:e}"));
    assert!(d < 1e-4, "forward differs by {d}");

    let schedule = cfg.schedule();
    let settings = SampleSettings { digit: Some(4), guidance: 2.0, method: Method::Ddim { steps: 50, eta: 1.0 }, seed: 9, count: 2, clip_x0: true };
    let mut sg = Sampler::new(settings.clone(), &schedule, &gpu);
    let mut sc = Sampler::new(settings, &schedule, &cpu);
    for _ in 0..2 {
        let (g, c) = (sg.step(&on_gpu).unwrap(), sc.step(&on_cpu).unwrap());
        let d = max_abs_diff(&read_f32(g.x).await.unwrap(), &read_f32(c.x).await.unwrap());
        log(&format!("reverse step t={}, WebGPU vs CPU: max |diff| = {d:e}", g.t));
        assert!(d < 1e-4, "reverse step differs by {d}");
    }
}

#[wasm_bindgen_test]
async fn cpu_fallback_is_used_and_works_without_webgpu() {
    let navigator: JsValue = web_sys::window().unwrap().navigator().into();
    let descriptor = js_sys::Object::new();
    Reflect::set(&descriptor, &"value".into(), &JsValue::UNDEFINED).unwrap();
    Reflect::set(&descriptor, &"configurable".into(), &JsValue::TRUE).unwrap();
    js_sys::Object::define_property(&navigator.clone().into(), &"gpu".into(), &descriptor);
    let backend = init_backend(BackendPreference::Auto).await;
    // Restore WebGPU for the other tests before asserting.
    Reflect::delete_property(&navigator.into(), &"gpu".into()).unwrap();
    assert_eq!(backend.kind, BackendKind::Cpu);
    let reason = backend.fallback_reason.expect("the page must say why it uses the CPU");
    assert!(reason.contains("navigator.gpu"), "{reason}");
    let model = UNet::init_seeded(&DdpmConfig::default().model, 5, &backend.device);
    let out = forward(&model, 1, &backend.device).await;
    assert!(out.iter().all(|v| v.is_finite()));
    // An explicit ?backend=cpu also gives the CPU, without a fallback message.
    let forced = init_backend(BackendPreference::parse(Some("cpu")).unwrap()).await;
    assert_eq!((forced.kind, forced.fallback_reason), (BackendKind::Cpu, None));
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
