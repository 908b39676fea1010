//! The sampling page's worker: it owns some cells of a run (all of them on WebGPU, a share of
//! them in the CPU pool), steps them, and sends back what to draw. One request in, one reply out
//! ([`SamplerRequest`] / [`SamplerReply`]).

use std::cell::RefCell;

use burn::tensor::{Tensor, TensorData};
use serde_bytes::ByteBuf;
use wasm_bindgen::prelude::*;

use super::session::{Session, read_f32};
use crate::app::controls::{Controls, Limits, View};
use crate::nets::unet::{IMAGE_SIZE, NULL_CLASS, NUM_DIGITS, PIXELS};
use crate::app::protocol::{BackendPreference, FramePart, ParsedQuery, SamplerReply, SamplerRequest, Tile};
use crate::diffusion::sampling::{SampleSettings, Sampler};
use crate::app::image::{grid_shape, strip_rgba, tile_rgba, values_from_grid_rgba};
use crate::app::trajectory::{Frame, Trajectory};

/// A run's share: the sampler and where its cells sit in the whole grid.
struct Run {
    sampler: Option<Sampler>,
    first_cell: usize,
    grid: usize,
}

struct State {
    session: Session,
    limits: Limits,
    run: Option<Run>,
    /// Every drawn frame of this worker's cells in the current (or last) run.
    trajectory: Trajectory,
}

#[wasm_bindgen]
#[derive(Default)]
pub struct SamplerWorker {
    state: RefCell<Option<State>>,
}

/// Top label and its probability for each sample, from class probabilities [n, 10].
pub fn readout(probabilities: &[f32]) -> (Vec<usize>, Vec<f32>) {
    probabilities
        .chunks(NUM_DIGITS)
        .map(|p| p.iter().copied().enumerate().fold((0, f32::MIN), |best, (k, v)| if v > best.1 { (k, v) } else { best }))
        .unzip()
}

/// A frame's cells as tiles at their place in the grid of `grid` cells.
fn tiles(pixels: &[u8], first_cell: usize, grid: usize) -> Vec<Tile> {
    let (cols, _) = grid_shape(grid);
    pixels
        .chunks(PIXELS)
        .enumerate()
        .map(|(k, grey)| {
            let cell = first_cell + k;
            Tile { x: (cell % cols) * IMAGE_SIZE, y: (cell / cols) * IMAGE_SIZE, rgba: ByteBuf::from(tile_rgba(grey)) }
        })
        .collect()
}

fn part(frame: &Frame, run: &Run) -> FramePart {
    FramePart {
        t: frame.t,
        done: frame.done,
        tiles: tiles(&frame.pixels, run.first_cell, run.grid),
        read: frame.labels.iter().map(|&l| l as usize).collect(),
        confidences: frame.confidences.clone(),
    }
}

#[wasm_bindgen]
impl SamplerWorker {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Handle one request (a [`SamplerRequest`]) and return its [`SamplerReply`].
    pub async fn handle(&self, request: JsValue) -> Result<JsValue, JsError> {
        let reply = match serde_wasm_bindgen::from_value::<SamplerRequest>(request) {
            Ok(request) => self.reply(request).await.unwrap_or_else(|message| SamplerReply::Failed { message }),
            Err(e) => SamplerReply::Failed { message: format!("malformed request: {e}") },
        };
        Ok(serde_wasm_bindgen::to_value(&reply)?)
    }

    async fn reply(&self, request: SamplerRequest) -> Result<SamplerReply, String> {
        if let SamplerRequest::Init { query, files } = request {
            // The limits need the model's T; the URL's backend is all that is read before it.
            let backend = query.iter().rev().find(|(k, _)| k == "backend").and_then(|(_, v)| BackendPreference::parse(Some(v)).ok());
            let session = Session::open(backend.unwrap_or(BackendPreference::Auto), files).await?;
            warm_up(&session).await?;
            let limits = Limits::new(session.config.timesteps, session.config.guidance);
            let page = ParsedQuery::parse(&query, &limits);
            let reply = SamplerReply::Ready {
                backend: session.backend.info.clone(),
                limits: limits.clone(),
                timesteps: session.config.timesteps,
                guidance_interval: session.config.guidance_interval,
                page,
            };
            *self.state.borrow_mut() = Some(State { session, limits, run: None, trajectory: Trajectory::default() });
            return Ok(reply);
        }
        if self.state.borrow().is_none() {
            return Err("the worker is not initialised yet".into());
        }
        match request {
            SamplerRequest::Init { .. } => unreachable!("handled above"),
            SamplerRequest::Parse { pairs } => {
                let state = self.state.borrow();
                let limits = &state.as_ref().unwrap().limits;
                Ok(SamplerReply::Parsed { parsed: ParsedQuery::parse(&pairs, limits) })
            }
            SamplerRequest::Begin { controls, first_cell, count, guide_every_step } => self.begin(controls, first_cell, count, guide_every_step),
            SamplerRequest::Step { draw, view } => self.step(draw, view).await,
            SamplerRequest::Stop => {
                if let Some(run) = self.state.borrow_mut().as_mut().unwrap().run.as_mut() {
                    run.sampler = None;
                }
                Ok(SamplerReply::Stopped)
            }
            SamplerRequest::Frame { index } => {
                let state = self.state.borrow();
                let state = state.as_ref().unwrap();
                let run = state.run.as_ref().ok_or("no run yet")?;
                let frame = state.trajectory.frame(index).ok_or_else(|| format!("no frame {index}: {} kept", state.trajectory.len()))?;
                Ok(SamplerReply::Frame { frame: part(frame, run), kept: state.trajectory.len() })
            }
            SamplerRequest::StripPart { columns } => {
                let state = self.state.borrow();
                let trajectory = &state.as_ref().unwrap().trajectory;
                if trajectory.is_empty() {
                    return Err("no trajectory yet: run the sampler first".into());
                }
                let frames = trajectory.strip_indices(columns.clamp(1, 100)).into_iter().map(|i| ByteBuf::from(trajectory.frame(i).unwrap().pixels.clone())).collect();
                Ok(SamplerReply::StripPart { frames })
            }
            SamplerRequest::ComposeStrip { frames, count } => {
                let frames: Vec<Vec<u8>> = frames.into_iter().map(ByteBuf::into_vec).collect();
                if count == 0 || frames.iter().any(|f| f.len() != count * PIXELS) {
                    return Err(format!("a strip frame must hold {count} images"));
                }
                let (width, height, rgba) = strip_rgba(&frames, count, 2);
                Ok(SamplerReply::Strip { width, height, rgba: ByteBuf::from(rgba) })
            }
            SamplerRequest::Classify { rgba, width, height, count } => {
                let values = values_from_grid_rgba(&rgba, width, height, count)?;
                let probabilities = {
                    let state = self.state.borrow();
                    let session = &state.as_ref().unwrap().session;
                    let x = Tensor::<4>::from_data(TensorData::new(values, [count, 1, IMAGE_SIZE, IMAGE_SIZE]), &session.backend.device);
                    session.classifier.probabilities(x)
                };
                Ok(SamplerReply::Classified { labels: readout(&read_f32(probabilities).await?).0 })
            }
            SamplerRequest::Memory => Ok(SamplerReply::Memory { wasm_bytes: super::wasm_memory_bytes(), heap_live_bytes: super::heap_live_bytes() }),
        }
    }

    fn begin(&self, controls: Controls, first_cell: usize, count: usize, guide_every_step: bool) -> Result<SamplerReply, String> {
        let mut state = self.state.borrow_mut();
        let state = state.as_mut().unwrap();
        controls.check(&state.limits)?;
        if count == 0 || first_cell + count > controls.grid {
            return Err(format!("cells {first_cell}..{} are not in a grid of {}", first_cell + count, controls.grid));
        }
        let mut settings: SampleSettings = controls.settings(&state.session.config, first_cell, count);
        if guide_every_step {
            settings.guidance_interval = None;
        }
        if settings.method.needs_learned_variance() && !state.session.unet.has_learned_variance() {
            return Err("these weights have no variance channel: choose another sampler".into());
        }
        let sampler = Sampler::new(settings, &state.session.schedule, &state.session.backend.device);
        let labels = sampler.labels().iter().map(|&l| (l != NULL_CLASS).then_some(l)).collect();
        let total = sampler.total_steps();
        let (cols, rows) = grid_shape(controls.grid);
        state.run = Some(Run { sampler: Some(sampler), first_cell, grid: controls.grid });
        state.trajectory = Trajectory::new(count);
        Ok(SamplerReply::Began { total, width: cols * IMAGE_SIZE, height: rows * IMAGE_SIZE, labels })
    }

    async fn step(&self, draw: bool, view: View) -> Result<SamplerReply, String> {
        let (step, count, probabilities) = {
            let mut state = self.state.borrow_mut();
            let State { session, run, .. } = state.as_mut().unwrap();
            let Some(sampler) = run.as_mut().and_then(|r| r.sampler.as_mut()) else { return Ok(SamplerReply::Finished) };
            let count = sampler.settings().count;
            let Some(step) = sampler.step(&session.unet) else { return Ok(SamplerReply::Finished) };
            let probabilities = draw.then(|| session.classifier.probabilities(step.x0_pred.clone()));
            (step, count, probabilities)
        };
        let Some(probabilities) = probabilities else {
            return Ok(SamplerReply::Stepped { t: step.t, done: step.done, total: step.total, frame: None });
        };
        let shown = match view {
            View::State => step.x,
            View::PredictedX0 => step.x0_pred,
            // eps ~ N(0, 1): show +-3 sigma across the grey range.
            View::PredictedNoise => step.eps.div_scalar(3.0),
        };
        // One readback per drawn frame: the shown images and the class probabilities together.
        let pixels = count * PIXELS;
        let both = Tensor::cat(vec![shown.reshape([pixels]), probabilities.reshape([count * NUM_DIGITS])], 0);
        let mut values = read_f32(both).await?;
        let (read, confidences) = readout(&values.split_off(pixels));
        let mut state = self.state.borrow_mut();
        let state = state.as_mut().unwrap();
        let labels = read.iter().map(|&l| l as u32).collect();
        state.trajectory.push(step.t, step.done, &values, labels, confidences);
        let run = state.run.as_ref().ok_or("the run was replaced")?;
        let frame = part(state.trajectory.frame(state.trajectory.len() - 1).unwrap(), run);
        Ok(SamplerReply::Stepped { t: step.t, done: step.done, total: step.total, frame: Some(frame) })
    }
}

/// Compile shaders / touch every kernel once, and wait for the result: a guided step (a batch of
/// two per image) and a conditional one, as outside the guidance interval.
async fn warm_up(session: &Session) -> Result<(), String> {
    let controls = Controls { steps: 2, ..Controls::defaults(&Limits::new(session.config.timesteps, session.config.guidance)) };
    let guided = SampleSettings { guidance_interval: None, ..controls.settings(&session.config, 0, 1) };
    let conditional = SampleSettings { guidance: 0.0, ..guided.clone() };
    for settings in [guided, conditional] {
        let mut sampler = Sampler::new(settings, &session.schedule, &session.backend.device);
        if let Some(step) = sampler.step(&session.unet) {
            read_f32(session.classifier.probabilities(step.x0_pred)).await?;
        }
    }
    Ok(())
}
