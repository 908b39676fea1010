//! Everything that touches the browser: backend choice (WebGPU through burn-wgpu, else Burn's
//! flex CPU backend in wasm), fetching and verifying the weights, the sampling loop the page
//! drives, and drawing to a canvas. Tensors are read only with `into_data_async().await`.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{Device, Tensor};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{Clamped, JsCast};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData, Response};

use crate::config::DdpmConfig;
use crate::model::{IMAGE_SIZE, PIXELS, UNet};
use crate::sampling::{Method, SampleSettings, Sampler, to_pixels};
use crate::schedule::NoiseSchedule;
use crate::weights::{MANIFEST, Manifest, UNET_FILE, load_unet};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Which backend the user asked for (`?backend=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendPreference {
    Auto,
    WebGpu,
    Cpu,
}

impl BackendPreference {
    /// Parse the `backend` URL parameter; `None` or empty means auto.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim).unwrap_or("") {
            "" | "auto" => Ok(Self::Auto),
            "webgpu" => Ok(Self::WebGpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!("backend={other} is not one of cpu, webgpu; using automatic choice")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    WebGpu,
    Cpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::WebGpu => "webgpu",
            BackendKind::Cpu => "cpu",
        }
    }
}

/// The device the page computes on, and why.
#[derive(Clone)]
pub struct Backend {
    pub device: Device,
    pub kind: BackendKind,
    /// Adapter description from `navigator.gpu` (vendor, architecture), or the CPU backend's name.
    pub adapter: String,
    /// Why the CPU is used when WebGPU was wanted, for the page to show.
    pub fallback_reason: Option<String>,
}

thread_local! {
    /// The wgpu runtime can be initialised once per page; keep the device it gave.
    static WEBGPU: RefCell<Option<(Device, String)>> = const { RefCell::new(None) };
}

fn cpu_backend(reason: Option<String>) -> Backend {
    Backend { device: Device::flex(), kind: BackendKind::Cpu, adapter: "Burn flex (CPU, WebAssembly)".into(), fallback_reason: reason }
}

/// `navigator.gpu`, if this browser exposes WebGPU.
fn navigator_gpu() -> Option<JsValue> {
    let navigator = web_sys::window()?.navigator();
    let gpu = Reflect::get(&navigator, &JsValue::from_str("gpu")).ok()?;
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
        return Err("the browser has WebGPU but offers no adapter (requestAdapter returned null)".into());
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let field = |name: &str| Reflect::get(&info, &name.into()).ok().and_then(|v| v.as_string()).filter(|s| !s.is_empty());
    let parts: Vec<String> = ["vendor", "architecture", "description"].iter().filter_map(|f| field(f)).collect();
    Ok(if parts.is_empty() { "WebGPU adapter".into() } else { parts.join(" / ") })
}

/// Initialise the compute backend asynchronously, before any tensor exists. WebGPU is tried first
/// (unless the CPU is asked for); any failure falls back to the CPU with the reason kept.
pub async fn init_backend(preference: BackendPreference) -> Backend {
    if preference == BackendPreference::Cpu {
        return cpu_backend(None);
    }
    if let Some((device, adapter)) = WEBGPU.with(|w| w.borrow().clone()) {
        if navigator_gpu().is_some() {
            return Backend { device, kind: BackendKind::WebGpu, adapter, fallback_reason: None };
        }
    }
    let Some(gpu) = navigator_gpu() else {
        return cpu_backend(Some("this browser does not expose WebGPU (navigator.gpu is missing)".into()));
    };
    let adapter = match describe_adapter(&gpu).await {
        Ok(a) => a,
        Err(reason) => return cpu_backend(Some(reason)),
    };
    match Device::wgpu_options().graphics_api(burn::tensor::wgpu::WgpuBackend::WebGpu).init_async().await {
        Ok(device) => {
            WEBGPU.with(|w| *w.borrow_mut() = Some((device.clone(), adapter.clone())));
            Backend { device, kind: BackendKind::WebGpu, adapter, fallback_reason: None }
        }
        Err(e) => cpu_backend(Some(format!("WebGPU device creation failed: {e}"))),
    }
}

/// Read a tensor to the host (the only way that works on WebGPU).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    let data = t.into_data_async().await.map_err(|e| format!("reading a tensor failed: {e:?}"))?;
    data.try_to_vec::<f32>().map_err(|e| format!("unexpected tensor data: {e:?}"))
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| format!("cannot fetch {url}: {e:?}"))?;
    let response: Response = response.dyn_into().map_err(|_| format!("{url}: not a response"))?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {} {}", response.status(), response.status_text()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| format!("{url}: {e:?}"))?)
        .await
        .map_err(|e| format!("{url}: download interrupted: {e:?}"))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Fetch `manifest.json` and the U-Net from `base`, verify size and SHA-256, decode onto `device`.
pub async fn load_weights(base: &str, device: &Device) -> Result<(Manifest, UNet), String> {
    let base = base.trim_end_matches('/');
    let manifest_bytes = fetch_bytes(&format!("{base}/{MANIFEST}")).await?;
    let manifest = Manifest::parse(&String::from_utf8_lossy(&manifest_bytes)).map_err(|e| e.to_string())?;
    let entry = manifest.file(UNET_FILE).map_err(|e| e.to_string())?.clone();
    let bytes = fetch_bytes(&format!("{base}/{}", entry.name)).await?;
    let model = load_unet(&manifest.config, &entry, bytes, device).map_err(|e| e.to_string())?;
    Ok((manifest, model))
}

/// Grey images ([n, 784] in [-1, 1]) tiled into a square-ish grid, as RGBA bytes.
pub fn grid_rgba(values: &[f32], count: usize) -> (usize, usize, Vec<u8>) {
    let cols = (count as f64).sqrt().ceil() as usize;
    let rows = count.div_ceil(cols);
    let (w, h) = (cols * IMAGE_SIZE, rows * IMAGE_SIZE);
    let grey = to_pixels(values);
    let mut rgba = vec![0u8; w * h * 4];
    for k in 0..count {
        let (r, c) = (k / cols, k % cols);
        for y in 0..IMAGE_SIZE {
            for x in 0..IMAGE_SIZE {
                let v = grey[k * PIXELS + y * IMAGE_SIZE + x];
                let o = ((r * IMAGE_SIZE + y) * w + c * IMAGE_SIZE + x) * 4;
                rgba[o..o + 4].copy_from_slice(&[v, v, v, 255]);
            }
        }
    }
    (w, h, rgba)
}

/// Draw a grid of images onto `canvas` (resized to fit, scaled up by CSS).
pub fn draw_grid(canvas: &HtmlCanvasElement, values: &[f32], count: usize) -> Result<(), String> {
    let (w, h, rgba) = grid_rgba(values, count);
    canvas.set_width(w as u32);
    canvas.set_height(h as u32);
    let ctx: CanvasRenderingContext2d = canvas
        .get_context("2d")
        .map_err(|e| format!("{e:?}"))?
        .ok_or("canvas has no 2d context")?
        .dyn_into()
        .map_err(|_| "not a 2d context")?;
    let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), w as u32, h as u32).map_err(|e| format!("{e:?}"))?;
    ctx.put_image_data(&image, 0.0, 0.0).map_err(|e| format!("{e:?}"))
}

fn js_error(message: impl std::fmt::Display) -> JsError {
    JsError::new(&message.to_string())
}

struct State {
    backend: Backend,
    config: DdpmConfig,
    schedule: NoiseSchedule,
    model: UNet,
    sampler: Option<Sampler>,
}

/// The sampler as the page sees it.
#[wasm_bindgen]
pub struct App {
    state: Rc<RefCell<State>>,
}

#[wasm_bindgen]
impl App {
    /// Choose the backend (`backend` is the URL parameter, possibly empty), then fetch, verify and
    /// decode the weights under `weights_base`, and warm the network up once.
    pub async fn create(backend: String, weights_base: String) -> Result<App, JsError> {
        let preference = BackendPreference::parse(Some(&backend)).unwrap_or(BackendPreference::Auto);
        let backend = init_backend(preference).await;
        let (manifest, model) = load_weights(&weights_base, &backend.device).await.map_err(js_error)?;
        let config = manifest.config.clone();
        let schedule = config.schedule();
        // Warm-up: compile shaders / touch every kernel once, then wait for the result.
        let mut warm = Sampler::new(
            SampleSettings { digit: Some(0), guidance: 1.0, method: Method::Ddim { steps: 1, eta: 0.0 }, seed: 0, count: 1, clip_x0: true },
            &schedule,
            &backend.device,
        );
        if let Some(step) = warm.step(&model) {
            read_f32(step.x).await.map_err(js_error)?;
        }
        Ok(App { state: Rc::new(RefCell::new(State { backend, config, schedule, model, sampler: None })) })
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.state.borrow().backend.kind.name().into()
    }

    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.state.borrow().backend.adapter.clone()
    }

    #[wasm_bindgen(getter, js_name = fallbackReason)]
    pub fn fallback_reason(&self) -> Option<String> {
        self.state.borrow().backend.fallback_reason.clone()
    }

    #[wasm_bindgen(getter, js_name = defaultGuidance)]
    pub fn default_guidance(&self) -> f64 {
        self.state.borrow().config.guidance
    }

    /// Start a run. `digit` < 0 means any digit (unconditional); `ddim_steps` 0 means DDPM over all T.
    pub fn begin(&self, digit: i32, guidance: f64, ddim_steps: usize, eta: f64, seed: f64, count: usize) -> Result<usize, JsError> {
        let mut state = self.state.borrow_mut();
        let t = state.config.timesteps;
        if !(0..=t).contains(&ddim_steps) || !(1..=64).contains(&count) || digit > 9 {
            return Err(js_error(format!("settings out of range: digit {digit}, steps {ddim_steps}, count {count}")));
        }
        let method = if ddim_steps == 0 { Method::Ddpm { variance: state.config.variance } } else { Method::Ddim { steps: ddim_steps, eta } };
        let settings = SampleSettings {
            digit: (digit >= 0).then_some(digit as usize),
            guidance,
            method,
            seed: seed.max(0.0) as u64,
            count,
            clip_x0: true,
        };
        let sampler = Sampler::new(settings, &state.schedule, &state.backend.device);
        let total = sampler.total_steps();
        state.sampler = Some(sampler);
        Ok(total)
    }

    /// Take one reverse step; when `canvas` is given, read x_{t-1} back and draw it. Returns the
    /// step's t, or `undefined` when the run is finished.
    pub async fn step(&self, canvas: Option<HtmlCanvasElement>) -> Result<Option<usize>, JsError> {
        let (step, count) = {
            let mut state = self.state.borrow_mut();
            let State { sampler, model, .. } = &mut *state;
            let Some(sampler) = sampler.as_mut() else { return Ok(None) };
            let count = sampler.settings().count;
            (sampler.step(model), count)
        };
        let Some(step) = step else { return Ok(None) };
        if let Some(canvas) = canvas {
            let values = read_f32(step.x).await.map_err(js_error)?;
            draw_grid(&canvas, &values, count).map_err(js_error)?;
        }
        Ok(Some(step.t))
    }

    /// Forget the current run (Stop).
    pub fn stop(&self) {
        self.state.borrow_mut().sampler = None;
    }
}
