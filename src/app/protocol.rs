//! The messages between a page and its workers: one request in, one reply out, each a Rust
//! type serialised with serde (serde-wasm-bindgen in the browser). Bytes travel as
//! `Uint8Array`s (serde_bytes). Platform-free, so the contract is tested natively.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub use crate::app::controls::BackendPreference;
use crate::app::controls::{Controls, Limits, View};
use crate::diffusion::sampling::GuidanceInterval;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    #[serde(rename = "webgpu")]
    WebGpu,
    Cpu,
}

/// What computes, on what, and why: what the page shows and `data-backend` carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub kind: BackendKind,
    /// The WebGPU adapter (vendor / architecture), or the CPU backend's name.
    pub adapter: String,
    /// Why the CPU runs when WebGPU was wanted.
    pub fallback_reason: Option<String>,
}

impl BackendInfo {
    /// One line for the page, in plain words; `workers` is the CPU pool's size.
    pub fn summary(&self, workers: usize) -> String {
        let plural = if workers == 1 { "" } else { "s" };
        match (&self.kind, &self.fallback_reason) {
            (BackendKind::WebGpu, _) => format!("WebGPU on {}", self.adapter),
            (BackendKind::Cpu, None) => format!("CPU (WebAssembly, {workers} worker{plural})"),
            (BackendKind::Cpu, Some(reason)) => format!("CPU (WebAssembly, {workers} worker{plural}), because {reason}"),
        }
    }
}

/// The page's own URL options, beside the controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageOptions {
    pub backend: BackendPreference,
    /// `?workers=N`: the CPU pool's size, else the browser's cores (capped).
    pub workers: Option<usize>,
    /// `?start=1`: start a run as soon as the page is ready.
    pub start: bool,
}

/// Everything the URL says, validated: the controls, the page's options, and one message per
/// bad value (each value kept at its default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedQuery {
    pub controls: Controls,
    pub options: PageOptions,
    pub problems: Vec<String>,
    /// The controls as the URL should now read.
    pub query: Vec<(String, String)>,
}

impl ParsedQuery {
    pub fn parse(pairs: &[(String, String)], limits: &Limits) -> Self {
        let (controls, mut problems) = Controls::parse(pairs, limits);
        let mut options = PageOptions { backend: BackendPreference::Auto, workers: None, start: false };
        for (name, raw) in pairs {
            match name.as_str() {
                "backend" => match BackendPreference::parse(Some(raw)) {
                    Ok(b) => options.backend = b,
                    Err(e) => problems.push(e),
                },
                "workers" => match limits.workers.check("workers", raw) {
                    Ok(n) => options.workers = Some(n as usize),
                    Err(e) => problems.push(e),
                },
                "start" => options.start = raw.trim() == "1",
                _ => {}
            }
        }
        Self { query: controls.to_pairs(), controls, options, problems }
    }
}

/// The verified inputs a worker starts from: fetched once by the page, handed to every worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightFiles {
    pub manifest: String,
    pub unet: ByteBuf,
    pub classifier: ByteBuf,
    /// The U-Net's variance channel, when the manifest lists one.
    #[serde(default)]
    pub variance: Option<ByteBuf>,
}

/// Requests from the sampling page to one of its workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SamplerRequest {
    /// Read the page's URL (`query`), choose the backend it asks for, verify and decode the
    /// weights, warm up.
    Init { query: Vec<(String, String)>, files: WeightFiles },
    /// Validate name/value pairs (the form's fields) against the limits.
    Parse { pairs: Vec<(String, String)> },
    /// Start drawing cells `first_cell .. first_cell + count` of a run with these controls.
    /// `guide_every_step` (the benchmark's runs) guides outside the model's guidance interval
    /// too, so every step costs what the native benchmark's step does.
    Begin {
        controls: Controls,
        first_cell: usize,
        count: usize,
        #[serde(default)]
        guide_every_step: bool,
    },
    /// One reverse step; `draw` reads back and returns the frame shown with `view`.
    Step { draw: bool, view: View },
    /// Forget the run (its drawn frames stay).
    Stop,
    /// Kept frame `index` again (timeline replay).
    Frame { index: usize },
    /// This worker's cells of the strip's frames: `columns` spread from first to last.
    StripPart { columns: usize },
    /// Tile whole frames (every cell, in order) into the strip image.
    ComposeStrip { frames: Vec<ByteBuf>, count: usize },
    /// Classify a grid image (RGBA) of `count` digits, as the canvas shows it.
    Classify { rgba: ByteBuf, width: usize, height: usize, count: usize },
    /// This worker's wasm memory.
    Memory,
}

/// One 28x28 cell of the grid as RGBA, with where it goes on the canvas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tile {
    pub x: usize,
    pub y: usize,
    pub rgba: ByteBuf,
}

/// What one worker shows for its cells at a drawn step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FramePart {
    pub t: usize,
    pub done: usize,
    pub tiles: Vec<Tile>,
    /// What the classifier reads in each cell's predicted x_0, and how surely.
    pub read: Vec<usize>,
    pub confidences: Vec<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SamplerReply {
    /// The worker is ready: its backend, the controls' rules, the model's T and where its
    /// guidance applies, and the page's URL as read.
    Ready { backend: BackendInfo, limits: Limits, timesteps: usize, guidance_interval: Option<GuidanceInterval>, page: ParsedQuery },
    Parsed { parsed: ParsedQuery },
    /// The run began: its steps, the canvas size, and the label each of these cells is drawn for
    /// (`None` for the null class).
    Began { total: usize, width: usize, height: usize, labels: Vec<Option<usize>> },
    Stepped { t: usize, done: usize, total: usize, frame: Option<FramePart> },
    /// The run is over (or there is none).
    Finished,
    Stopped,
    Frame { frame: FramePart, kept: usize },
    StripPart { frames: Vec<ByteBuf> },
    Strip { width: usize, height: usize, rgba: ByteBuf },
    Classified { labels: Vec<usize> },
    Memory { wasm_bytes: f64, heap_live_bytes: f64 },
    /// The request failed; the worker still works (a trap or a lost device is reported by the
    /// worker script itself, which the page then replaces).
    Failed { message: String },
}
