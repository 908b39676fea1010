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

use crate::classifier::Classifier;
use crate::config::DdpmConfig;
use crate::model::{IMAGE_SIZE, NUM_DIGITS, UNet};
use crate::sampling::{Method, SampleSettings, Sampler};
use crate::schedule::NoiseSchedule;
use crate::trajectory::{Trajectory, values_from_grid_rgba};
use crate::weights::{CLASSIFIER_FILE, MANIFEST, Manifest, UNET_FILE, load_module, load_unet, verify};

mod explainer;
pub use explainer::Explainer;

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

/// A backend as the pages see it.
#[wasm_bindgen]
pub struct BackendInfo(Backend);

#[wasm_bindgen]
impl BackendInfo {
    /// "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.0.kind.name().into()
    }

    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.0.adapter.clone()
    }

    #[wasm_bindgen(getter, js_name = fallbackReason)]
    pub fn fallback_reason(&self) -> Option<String> {
        self.0.fallback_reason.clone()
    }

    /// One sentence for the page: what runs, on which adapter, and why the CPU if it is the fallback.
    #[wasm_bindgen(getter)]
    pub fn summary(&self) -> String {
        match (&self.0.kind, &self.0.fallback_reason) {
            (BackendKind::WebGpu, _) => format!("Running on WebGPU: {}", self.0.adapter),
            (BackendKind::Cpu, None) => format!("Running on the CPU ({})", self.0.adapter),
            (BackendKind::Cpu, Some(reason)) => format!("Running on the CPU ({}) because {reason}", self.0.adapter),
        }
    }
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

pub(crate) async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
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

/// The verified, decoded networks.
pub struct LoadedWeights {
    pub manifest: Manifest,
    pub unet: UNet,
    pub classifier: Classifier,
}

/// Fetch `manifest.json`, the U-Net and the classifier from `base`, verify sizes and SHA-256,
/// and decode them onto `device`.
pub async fn load_weights(base: &str, device: &Device) -> Result<LoadedWeights, String> {
    let base = base.trim_end_matches('/');
    let manifest_bytes = fetch_bytes(&format!("{base}/{MANIFEST}")).await?;
    let manifest = Manifest::parse(&String::from_utf8_lossy(&manifest_bytes)).map_err(|e| e.to_string())?;
    let entry = manifest.file(UNET_FILE).map_err(|e| e.to_string())?.clone();
    let bytes = fetch_bytes(&format!("{base}/{}", entry.name)).await?;
    let unet = load_unet(&manifest.config, &entry, bytes, device).map_err(|e| e.to_string())?;
    let entry = manifest.file(CLASSIFIER_FILE).map_err(|e| e.to_string())?.clone();
    let bytes = fetch_bytes(&format!("{base}/{}", entry.name)).await?;
    verify(&entry, &bytes).map_err(|e| e.to_string())?;
    let classifier = load_module(Classifier::new(device), bytes).map_err(|e| e.to_string())?;
    Ok(LoadedWeights { manifest, unet, classifier })
}

pub use crate::trajectory::grid_rgba;

/// Put RGBA pixels onto `canvas` (resized to fit, scaled up by CSS).
pub fn draw_rgba(canvas: &HtmlCanvasElement, w: usize, h: usize, rgba: &[u8]) -> Result<(), String> {
    canvas.set_width(w as u32);
    canvas.set_height(h as u32);
    let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(rgba), w as u32, h as u32).map_err(|e| format!("{e:?}"))?;
    context_2d(canvas)?.put_image_data(&image, 0.0, 0.0).map_err(|e| format!("{e:?}"))
}

/// Draw a grid of images ([count, 784] in [-1, 1]) onto `canvas`.
pub fn draw_grid(canvas: &HtmlCanvasElement, values: &[f32], count: usize) -> Result<(), String> {
    let (w, h, rgba) = grid_rgba(values, count);
    draw_rgba(canvas, w, h, &rgba)
}

pub(crate) fn context_2d(canvas: &HtmlCanvasElement) -> Result<CanvasRenderingContext2d, String> {
    canvas
        .get_context("2d")
        .map_err(|e| format!("{e:?}"))?
        .ok_or("canvas has no 2d context")?
        .dyn_into()
        .map_err(|_| "not a 2d context".to_string())
}

/// Bytes of WebAssembly linear memory this page's module holds now. It only grows, in 64 KiB
/// pages, when the allocator needs a new high-water mark.
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size(0) * 65536) as f64
}

/// Bytes the Rust heap has allocated and not freed: the exact measure of a leak across runs.
#[wasm_bindgen(js_name = heapLiveBytes)]
pub fn heap_live_bytes() -> f64 {
    counting_allocator::LIVE.load(std::sync::atomic::Ordering::Relaxed) as f64
}

mod counting_allocator {
    //! The system allocator, counting live bytes (one relaxed atomic add per call).
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static LIVE: AtomicUsize = AtomicUsize::new(0);

    struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_add(new_size, Ordering::Relaxed);
                LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            }
            p
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;
}

pub(crate) fn js_error(message: impl std::fmt::Display) -> JsError {
    JsError::new(&message.to_string())
}

struct State {
    backend: Backend,
    config: DdpmConfig,
    schedule: NoiseSchedule,
    model: UNet,
    classifier: Classifier,
    sampler: Option<Sampler>,
    /// Every drawn frame of the current (or last) run, for the timeline and the strip download.
    trajectory: Trajectory,
}

/// What the page shows at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The current state x_{t-1}.
    State,
    /// The model's estimate of x_0.
    PredictedX0,
    /// The predicted noise eps (shown scaled into [-1, 1]).
    PredictedNoise,
}

impl View {
    pub fn parse(name: &str) -> Result<View, String> {
        match name {
            "xt" => Ok(View::State),
            "x0" => Ok(View::PredictedX0),
            "eps" => Ok(View::PredictedNoise),
            other => Err(format!("view={other} is not one of xt, x0, eps")),
        }
    }
}

/// Top label and its probability for each sample, from class probabilities [n, 10].
pub fn readout(probabilities: &[f32]) -> Vec<(usize, f32)> {
    probabilities
        .chunks(NUM_DIGITS)
        .map(|p| p.iter().copied().enumerate().fold((0, f32::MIN), |best, (k, v)| if v > best.1 { (k, v) } else { best }))
        .collect()
}

pub(crate) fn set(obj: &js_sys::Object, key: &str, value: JsValue) {
    let _ = Reflect::set(obj, &key.into(), &value);
}

fn set_readout(info: &js_sys::Object, labels: &[u32], confidences: &[f32]) {
    let labels: js_sys::Array = labels.iter().map(|l| JsValue::from(*l)).collect();
    let confidences: js_sys::Array = confidences.iter().map(|p| JsValue::from(*p)).collect();
    set(info, "labels", labels.into());
    set(info, "confidences", confidences.into());
}

/// The sampler as the page sees it.
#[wasm_bindgen]
pub struct App {
    state: Rc<RefCell<State>>,
}

#[wasm_bindgen]
impl App {
    /// Choose the backend (`backend` is the URL parameter, possibly empty), then fetch, verify and
    /// decode the weights under `weights_base`, and warm the networks up once.
    pub async fn create(backend: String, weights_base: String) -> Result<App, JsError> {
        let preference = BackendPreference::parse(Some(&backend)).unwrap_or(BackendPreference::Auto);
        let backend = init_backend(preference).await;
        let weights = load_weights(&weights_base, &backend.device).await.map_err(js_error)?;
        let config = weights.manifest.config.clone();
        let schedule = config.schedule();
        // Warm-up: compile shaders / touch every kernel once, then wait for the result.
        let mut warm = Sampler::new(
            SampleSettings { digit: Some(0), guidance: 1.0, method: Method::Ddim { steps: 1, eta: 0.0 }, seed: 0, count: 1, clip_x0: true },
            &schedule,
            &backend.device,
        );
        if let Some(step) = warm.step(&weights.unet) {
            read_f32(weights.classifier.probabilities(step.x0_pred)).await.map_err(js_error)?;
        }
        let state = State { backend, config, schedule, model: weights.unet, classifier: weights.classifier, sampler: None, trajectory: Trajectory::default() };
        Ok(App { state: Rc::new(RefCell::new(state)) })
    }

    /// Which backend computes, on what, and why (for the page to show).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> BackendInfo {
        BackendInfo(self.state.borrow().backend.clone())
    }

    #[wasm_bindgen(getter, js_name = defaultGuidance)]
    pub fn default_guidance(&self) -> f64 {
        self.state.borrow().config.guidance
    }

    #[wasm_bindgen(getter)]
    pub fn timesteps(&self) -> usize {
        self.state.borrow().config.timesteps
    }

    /// Start a run. `digit` < 0 means any digit (unconditional); `ddim_steps` 0 means DDPM over all T.
    pub fn begin(&self, digit: i32, guidance: f64, ddim_steps: usize, eta: f64, seed: f64, count: usize) -> Result<usize, JsError> {
        let mut state = self.state.borrow_mut();
        let t = state.config.timesteps;
        let problems = [
            (!(-1..=9).contains(&digit)).then(|| format!("digit {digit} is not 0-9 or any")),
            (!(0.0..=10.0).contains(&guidance)).then(|| format!("guidance {guidance} is not in 0-10")),
            (!(ddim_steps == 0 || (10..=t).contains(&ddim_steps))).then(|| format!("DDIM steps {ddim_steps} is not in 10-{t}")),
            (!(0.0..=1.0).contains(&eta)).then(|| format!("eta {eta} is not in 0-1")),
            (!(seed >= 0.0 && seed <= u32::MAX as f64 && seed.fract() == 0.0)).then(|| format!("seed {seed} is not a whole number in 0-4294967295")),
            (![1, 4, 16, 64].contains(&count)).then(|| format!("grid {count} is not 1, 4, 16 or 64")),
        ];
        let problems: Vec<String> = problems.into_iter().flatten().collect();
        if !problems.is_empty() {
            return Err(js_error(problems.join("; ")));
        }
        let method = if ddim_steps == 0 { Method::Ddpm { variance: state.config.variance } } else { Method::Ddim { steps: ddim_steps, eta } };
        let settings = SampleSettings { digit: (digit >= 0).then_some(digit as usize), guidance, method, seed: seed as u64, count, clip_x0: true };
        let sampler = Sampler::new(settings, &state.schedule, &state.backend.device);
        let total = sampler.total_steps();
        state.sampler = Some(sampler);
        state.trajectory = Trajectory::new(count);
        Ok(total)
    }

    /// Take one reverse step. When `canvas` is given, read the chosen `view` ("xt", "x0", "eps")
    /// back, draw it, and classify the predicted x_0. Returns `undefined` when the run is over, else
    /// `{t, done, total, labels?, confidences?}`.
    pub async fn step(&self, canvas: Option<HtmlCanvasElement>, view: String) -> Result<JsValue, JsError> {
        let view = View::parse(&view).map_err(js_error)?;
        let (step, count, probabilities) = {
            let mut state = self.state.borrow_mut();
            let State { sampler, model, classifier, .. } = &mut *state;
            let Some(sampler) = sampler.as_mut() else { return Ok(JsValue::UNDEFINED) };
            let count = sampler.settings().count;
            let Some(step) = sampler.step(model) else { return Ok(JsValue::UNDEFINED) };
            let probabilities = canvas.is_some().then(|| classifier.probabilities(step.x0_pred.clone()));
            (step, count, probabilities)
        };
        let info = js_sys::Object::new();
        set(&info, "t", step.t.into());
        set(&info, "done", step.done.into());
        set(&info, "total", step.total.into());
        if let (Some(canvas), Some(probabilities)) = (canvas, probabilities) {
            let shown = match view {
                View::State => step.x,
                View::PredictedX0 => step.x0_pred,
                // eps ~ N(0, 1): show +-3 sigma across the grey range.
                View::PredictedNoise => step.eps.div_scalar(3.0),
            };
            // One readback per drawn frame: the shown images and the class probabilities together.
            let pixels = count * crate::model::PIXELS;
            let both = Tensor::cat(vec![shown.reshape([pixels]), probabilities.reshape([count * NUM_DIGITS])], 0);
            let mut values = read_f32(both).await.map_err(js_error)?;
            let read = readout(&values.split_off(pixels));
            let labels: Vec<u32> = read.iter().map(|(l, _)| *l as u32).collect();
            let confidences: Vec<f32> = read.iter().map(|(_, p)| *p).collect();
            draw_grid(&canvas, &values, count).map_err(js_error)?;
            set_readout(&info, &labels, &confidences);
            // A Stop during the reads began no new run, so the frame still belongs to this one.
            self.state.borrow_mut().trajectory.push(step.t, step.done, &values, labels, confidences);
        }
        Ok(info.into())
    }

    /// Classify what is drawn on `canvas` now (a grid of `count` images): lets a test check that
    /// the canvas shows what the tensors hold.
    #[wasm_bindgen(js_name = classifyCanvas)]
    pub async fn classify_canvas(&self, canvas: HtmlCanvasElement, count: usize) -> Result<Vec<u32>, JsError> {
        let (w, h) = (canvas.width() as usize, canvas.height() as usize);
        let rgba = context_2d(&canvas).map_err(js_error)?.get_image_data(0.0, 0.0, w as f64, h as f64).map_err(|e| js_error(format!("{e:?}")))?.data().0;
        let values = values_from_grid_rgba(&rgba, w, h, count).map_err(js_error)?;
        let probabilities = {
            let state = self.state.borrow();
            let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [count, 1, IMAGE_SIZE, IMAGE_SIZE]), &state.backend.device);
            state.classifier.probabilities(x)
        };
        let read = readout(&read_f32(probabilities).await.map_err(js_error)?);
        Ok(read.iter().map(|(l, _)| *l as u32).collect())
    }

    /// Forget the current run (Stop). Its drawn frames stay for the timeline.
    pub fn stop(&self) {
        self.state.borrow_mut().sampler = None;
    }

    /// Frames kept from the current (or last) run: one per drawn step.
    #[wasm_bindgen(getter, js_name = frameCount)]
    pub fn frame_count(&self) -> usize {
        self.state.borrow().trajectory.len()
    }

    /// Redraw kept frame `index` (timeline replay) and return `{t, done, labels, confidences}`.
    #[wasm_bindgen(js_name = showFrame)]
    pub fn show_frame(&self, canvas: HtmlCanvasElement, index: usize) -> Result<JsValue, JsError> {
        let state = self.state.borrow();
        let trajectory = &state.trajectory;
        let frame = trajectory.frame(index).ok_or_else(|| js_error(format!("no frame {index}: {} kept", trajectory.len())))?;
        let (w, h, rgba) = crate::trajectory::grid_rgba_from_pixels(&frame.pixels, trajectory.count());
        draw_rgba(&canvas, w, h, &rgba).map_err(js_error)?;
        let info = js_sys::Object::new();
        set(&info, "t", frame.t.into());
        set(&info, "done", frame.done.into());
        set_readout(&info, &frame.labels, &frame.confidences);
        Ok(info.into())
    }

    /// The kept trajectory as one image for download: a row per sample, `columns` frames spread
    /// from the first drawn step to the last.
    #[wasm_bindgen(js_name = stripImage)]
    pub fn strip_image(&self, columns: usize) -> Result<ImageData, JsError> {
        let state = self.state.borrow();
        if state.trajectory.is_empty() {
            return Err(js_error("no trajectory yet: run the sampler first"));
        }
        let (w, h, rgba) = state.trajectory.strip_rgba(columns.clamp(1, 100), 2);
        ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), w as u32, h as u32).map_err(|e| js_error(format!("{e:?}")))
    }
}
