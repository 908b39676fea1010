//! The compute backend of one worker: WebGPU through burn-wgpu when the browser offers it (and
//! the reader did not ask for the CPU), else Burn's flex CPU backend, with the reason kept.
//! Runs in a dedicated worker, where `navigator.gpu` exists too.

#[cfg(feature = "webgpu")]
use std::cell::RefCell;

use burn::tensor::Device;
use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::app::protocol::{BackendInfo, BackendKind, BackendPreference};

/// The device a worker computes on, and how the page describes it.
#[derive(Clone)]
pub struct Backend {
    pub device: Device,
    pub info: BackendInfo,
}

#[cfg(feature = "webgpu")]
thread_local! {
    /// The wgpu runtime can be initialised once per wasm instance; keep the device it gave.
    static WEBGPU: RefCell<Option<(Device, String)>> = const { RefCell::new(None) };
}

fn cpu_backend(reason: Option<String>) -> Backend {
    Backend {
        device: Device::flex(),
        info: BackendInfo { kind: BackendKind::Cpu, adapter: "Burn flex (WebAssembly)".into(), fallback_reason: reason },
    }
}

/// `navigator.gpu`, if this context (page or worker) exposes WebGPU.
fn navigator_gpu() -> Option<JsValue> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok()?;
    (!gpu.is_undefined() && !gpu.is_null()).then_some(gpu)
}

/// Ask `navigator.gpu` for an adapter and describe it (wgpu's own adapter info is empty on the web).
async fn describe_adapter(gpu: &JsValue) -> Result<String, String> {
    let request: js_sys::Function = Reflect::get(gpu, &"requestAdapter".into())
        .and_then(|f| f.dyn_into().map_err(|_| JsValue::NULL))
        .map_err(|_| "navigator.gpu.requestAdapter is missing".to_string())?;
    let promise: js_sys::Promise = request
        .call0(gpu)
        .and_then(|p| p.dyn_into().map_err(|_| JsValue::NULL))
        .map_err(|_| "requestAdapter failed".to_string())?;
    let adapter = JsFuture::from(promise).await.map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("the browser has WebGPU but offers no adapter".into());
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let field = |name: &str| Reflect::get(&info, &name.into()).ok().and_then(|v| v.as_string()).filter(|s| !s.is_empty());
    let parts: Vec<String> = ["vendor", "architecture", "description"].iter().filter_map(|f| field(f)).collect();
    Ok(if parts.is_empty() { "a WebGPU adapter".into() } else { parts.join(" ") })
}

#[cfg(feature = "webgpu")]
/// Kernel launches recorded before the wgpu runtime submits them to the queue. CubeCL's default
/// (32) split a reverse step (about 450 launches) into 14 queue submits, each with its own
/// browser overhead; a step's launches now go in one submit, or two when a readback ends it.
const TASKS_PER_SUBMIT: usize = 1024;

/// Initialise the backend asynchronously, before any tensor exists. WebGPU is tried first
/// (unless the CPU is asked for); any failure falls back to the CPU with the reason kept.
pub async fn init_backend(preference: BackendPreference) -> Backend {
    super::run_static_constructors();
    if preference == BackendPreference::Cpu {
        return cpu_backend(None);
    }
    #[cfg(feature = "webgpu")]
    if let Some((device, adapter)) = WEBGPU.with(|w| w.borrow().clone()).filter(|_| navigator_gpu().is_some()) {
        return Backend { device, info: BackendInfo { kind: BackendKind::WebGpu, adapter, fallback_reason: None } };
    }
    let Some(gpu) = navigator_gpu() else {
        return cpu_backend(Some("this browser does not offer WebGPU".into()));
    };
    let adapter = match describe_adapter(&gpu).await {
        Ok(a) => a,
        Err(reason) => return cpu_backend(Some(reason)),
    };
    webgpu_backend(adapter).await
}

/// The CPU-only build (no `webgpu` feature), which a page loads when the browser offers no
/// adapter: were it asked for WebGPU anyway, it says so and computes on the CPU.
#[cfg(not(feature = "webgpu"))]
async fn webgpu_backend(adapter: String) -> Backend {
    cpu_backend(Some(format!("this is the CPU-only build, so {adapter} is not used")))
}

#[cfg(feature = "webgpu")]
async fn webgpu_backend(adapter: String) -> Backend {
    let options = Device::wgpu_options().graphics_api(burn::tensor::wgpu::WgpuBackend::WebGpu).tasks_max(TASKS_PER_SUBMIT);
    match options.init_async().await {
        Ok(device) => {
            WEBGPU.with(|w| *w.borrow_mut() = Some((device.clone(), adapter.clone())));
            Backend { device, info: BackendInfo { kind: BackendKind::WebGpu, adapter, fallback_reason: None } }
        }
        Err(e) => cpu_backend(Some(format!("creating the WebGPU device failed: {e}"))),
    }
}
