//! The restore page's worker: it prepares an operation's input from a shipped digit or the
//! reader's drawing, runs the operation move by move (`crate::restore::operation`) with the
//! U-Net on this worker's backend, and sends back each drawn frame with the classifier's reading,
//! then the run's figures. One request in, one reply out ([`RestoreRequest`] / [`RestoreReply`]).

use std::cell::RefCell;

use burn::tensor::Tensor;
use serde_bytes::ByteBuf;
use wasm_bindgen::prelude::*;

use super::sampler_worker::readout;
use super::session::{Session, read_f32};
use crate::app::image::{from_pixels, grid_rgba, light_on_dark, to_pixels};
use crate::app::restore_page::{Picture, RestoreControls, RestoreLimits, RestoreQuery, RestoreReply, RestoreRequest, Source};
use crate::diffusion::sampling::GuidedDenoiser;
use crate::explain::compute::{ExampleDigit, parse_example_digits};
use crate::nets::unet::{NULL_CLASS, NUM_DIGITS, PIXELS};
use crate::restore::baselines::estimate_noise_sigma;
use crate::restore::operation::{Noise, Operation, RestoreRun, RestoreSettings, Task};

struct Kept {
    t: usize,
    done: usize,
    picture: Picture,
}

struct Run {
    run: RestoreRun,
    /// The original the run is measured against (none for a drawing, except as a sketch).
    truth: Option<Vec<f32>>,
    frames: Vec<Kept>,
}

struct State {
    session: Session,
    limits: RestoreLimits,
    digits: Vec<ExampleDigit>,
    run: Option<Run>,
}

#[wasm_bindgen]
#[derive(Default)]
pub struct RestoreWorker {
    state: RefCell<Option<State>>,
}

fn picture(values: &[f32], count: usize) -> Picture {
    let (width, height, rgba) = grid_rgba(values, count);
    Picture { width, height, rgba: ByteBuf::from(rgba) }
}

/// 784 bytes (0 / 1, or grey levels) from the page, checked.
fn bytes(name: &str, b: Option<ByteBuf>) -> Result<Option<Vec<u8>>, String> {
    match b.map(ByteBuf::into_vec) {
        Some(v) if v.len() != PIXELS => Err(format!("{name} has {} values, not {PIXELS}", v.len())),
        other => Ok(other),
    }
}

/// A run's starting image and what the page knows about it.
struct Start {
    image: Vec<f32>,
    /// The reader's own picture (drawn or uploaded): there is no original to measure against,
    /// except as a sketch's faithfulness.
    own: bool,
    /// An uploaded picture: denoising takes it as already noisy.
    uploaded: bool,
}

impl State {
    /// The starting image: the shipped digit, the reader's drawing, or an upload (light strokes
    /// on dark, like the model's digits).
    fn start(&self, controls: &RestoreControls, source: Source) -> Result<Start, String> {
        match source {
            Source::Shipped => {
                let digit = self.digits.get(controls.digit).ok_or_else(|| format!("no shipped digit {}", controls.digit))?;
                Ok(Start { image: digit.to_model_space(), own: false, uploaded: false })
            }
            Source::Drawn { levels } => Ok(Start { image: from_pixels(&bytes("the drawing", Some(levels))?.unwrap()), own: true, uploaded: false }),
            Source::Uploaded { levels } => {
                let levels = bytes("the uploaded picture", Some(levels))?.unwrap();
                Ok(Start { image: from_pixels(&light_on_dark(&levels)), own: true, uploaded: true })
            }
        }
    }
}

impl Start {
    /// The run's settings: an upload to denoise carries its own noise.
    fn settings(&self, controls: &RestoreControls, mask: Option<Vec<f32>>, other: Vec<f32>) -> RestoreSettings {
        let mut settings = controls.settings(mask, other);
        if let Task::Denoise { noise, .. } = &mut settings.task {
            if self.uploaded {
                *noise = Noise::Given;
            }
        }
        settings
    }

    /// The original a run is measured against.
    fn truth(&self, operation: Operation) -> Option<Vec<f32>> {
        (!self.own || operation == Operation::Sketch).then(|| self.image.clone())
    }
}

#[wasm_bindgen]
impl RestoreWorker {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Handle one request (a [`RestoreRequest`]) and return its [`RestoreReply`].
    pub async fn handle(&self, request: JsValue) -> Result<JsValue, JsError> {
        let reply = match serde_wasm_bindgen::from_value::<RestoreRequest>(request) {
            Ok(request) => self.reply(request).await.unwrap_or_else(|message| RestoreReply::Failed { message }),
            Err(e) => RestoreReply::Failed { message: format!("malformed request: {e}") },
        };
        Ok(serde_wasm_bindgen::to_value(&reply)?)
    }

    async fn reply(&self, request: RestoreRequest) -> Result<RestoreReply, String> {
        if let RestoreRequest::Init { query, files, digits } = request {
            let digits = parse_example_digits(&digits)?;
            let backend = crate::app::controls::ExplainerQuery::backend_of(&query);
            let session = Session::open(backend, files).await?;
            let limits = RestoreLimits::new(session.config.timesteps, digits.len(), session.config.guidance);
            let page = RestoreQuery::parse(&query, &limits);
            // A table that does not parse is left out, not fatal: the page works without it.
            let table = session.manifest.restore_table().and_then(Result::ok);
            let reply = RestoreReply::Ready { backend: session.backend.info.clone(), limits: limits.clone(), page, digit_labels: digits.iter().map(|d| d.label).collect(), table };
            *self.state.borrow_mut() = Some(State { session, limits, digits, run: None });
            return Ok(reply);
        }
        if self.state.borrow().is_none() {
            return Err("the worker is not initialised yet".into());
        }
        match request {
            RestoreRequest::Init { .. } => unreachable!("handled above"),
            RestoreRequest::Parse { pairs } => {
                let state = self.state.borrow();
                Ok(RestoreReply::Parsed { page: RestoreQuery::parse(&pairs, &state.as_ref().unwrap().limits) })
            }
            RestoreRequest::Prepare { controls, source } => self.prepare(controls, source),
            RestoreRequest::Begin { controls, mask, source } => self.begin(controls, bytes("the mask", mask)?, source),
            RestoreRequest::Step { draw, view_x0 } => self.step(draw, view_x0).await,
            RestoreRequest::Frame { index } => {
                let state = self.state.borrow();
                let run = state.as_ref().unwrap().run.as_ref().ok_or("no run yet")?;
                let kept = run.frames.get(index).ok_or_else(|| format!("no frame {index}: {} kept", run.frames.len()))?;
                Ok(RestoreReply::Frame { frame: kept.picture.clone(), t: kept.t, done: kept.done, kept: run.frames.len() })
            }
        }
    }

    fn check(&self, controls: &RestoreControls) -> Result<(), String> {
        let state = self.state.borrow();
        let limits = &state.as_ref().unwrap().limits;
        let (parsed, problems) = RestoreControls::parse(&controls.to_pairs(), limits);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        if &parsed != controls {
            return Err("the controls do not survive their own rules".into());
        }
        Ok(())
    }

    /// What the page shows before a run: the original, the operation's input and the mask.
    fn prepare(&self, controls: RestoreControls, source: Source) -> Result<RestoreReply, String> {
        self.check(&controls)?;
        let state = self.state.borrow();
        let state = state.as_ref().unwrap();
        let start = state.start(&controls, source)?;
        let mask = (controls.operation == Operation::Inpaint).then(|| controls.preset.mask(controls.seed));
        let other = state.digits.get(controls.second).map(|d| d.to_model_space()).unwrap_or_else(|| start.image.clone());
        let run = RestoreRun::new(start.settings(&controls, mask.clone(), other), &start.image, &state.session.schedule, &state.session.backend.device)?;
        let count = run.input.len() / PIXELS;
        let original = start.truth(controls.operation).map(|x| picture(&x, 1));
        let mask = mask.map(|m| ByteBuf::from(m.iter().map(|&v| v as u8).collect::<Vec<u8>>()));
        let noise_estimate = (start.uploaded && controls.operation == Operation::Denoise).then(|| state.limits.noise.nearest(estimate_noise_sigma(&start.image)));
        Ok(RestoreReply::Prepared { original, input: picture(&run.input, count), mask, noise_estimate })
    }

    fn begin(&self, controls: RestoreControls, mask: Option<Vec<u8>>, source: Source) -> Result<RestoreReply, String> {
        self.check(&controls)?;
        let mut state = self.state.borrow_mut();
        let state = state.as_mut().unwrap();
        let start = state.start(&controls, source)?;
        let mask: Option<Vec<f32>> = match controls.operation {
            Operation::Inpaint => Some(match mask {
                Some(m) => m.iter().map(|&v| if v > 0 { 1.0 } else { 0.0 }).collect(),
                None => controls.preset.mask(controls.seed),
            }),
            _ => None,
        };
        if let Some(m) = &mask {
            let known = m.iter().filter(|&&v| v > 0.5).count();
            if known == 0 {
                return Err("the mask erases every pixel: nothing is left to restore from (keep some of the digit)".into());
            }
            if known == PIXELS {
                return Err("the mask erases nothing: erase part of the digit first".into());
            }
        }
        let other = state.digits.get(controls.second).map(|d| d.to_model_space()).ok_or_else(|| format!("no shipped digit {}", controls.second))?;
        let truth = start.truth(controls.operation);
        let run = RestoreRun::new(start.settings(&controls, mask, other), &start.image, &state.session.schedule, &state.session.backend.device)?;
        let total = run.total_moves();
        let (width, height) = {
            let count = match &run.settings().task {
                Task::Invert { frames, .. } => *frames,
                _ => run.count(),
            };
            let (w, h, _) = grid_rgba(&vec![0.0; count * PIXELS], count);
            (w, h)
        };
        let baselines = run.baselines.iter().map(|b| (b.name.clone(), picture(&b.image, 1))).collect();
        state.run = Some(Run { run, truth, frames: Vec::new() });
        Ok(RestoreReply::Began { total, width, height, baselines })
    }

    async fn step(&self, draw: bool, view_x0: bool) -> Result<RestoreReply, String> {
        // Between inversion and decoding the two inverted noises come to the host once.
        let inverted = {
            let state = self.state.borrow();
            let run = state.as_ref().unwrap().run.as_ref().ok_or("no run yet")?;
            run.run.needs_inverted().then(|| run.run.current())
        };
        let inverted = match inverted {
            Some(x) => Some(read_f32(x).await?),
            None => None,
        };
        let stepped = {
            let mut state = self.state.borrow_mut();
            let State { session, run, .. } = state.as_mut().unwrap();
            let run = run.as_mut().ok_or("no run yet")?;
            let class = run.run.class();
            let guidance = run.run.settings().guidance;
            let (unet, device, interval) = (&session.unet, session.backend.device.clone(), session.config.guidance_interval);
            let mut eps = |x: Tensor<4>, i: usize| {
                let labels = vec![class.unwrap_or(NULL_CLASS); x.dims()[0]];
                GuidedDenoiser::new(unet, &labels, guidance, interval, &device).eps(x, i)
            };
            run.run.step(&mut eps, inverted.as_deref()).map(|step| {
                let probabilities = (draw || run.run.is_done()).then(|| session.classifier.probabilities(step.x0_pred.clone()));
                (step, probabilities)
            })
        };
        let Some((step, probabilities)) = stepped else { return self.finish().await };
        let Some(probabilities) = probabilities else {
            return Ok(RestoreReply::Stepped { t: step.t, done: step.done, total: step.total, frame: None, read: Vec::new(), confidences: Vec::new() });
        };
        let count = step.x.dims()[0];
        let shown = if view_x0 { step.x0_pred } else { step.x };
        // One readback per drawn frame: the shown images and the class probabilities together.
        let pixels = count * PIXELS;
        let both = Tensor::cat(vec![shown.reshape([pixels]), probabilities.reshape([count * NUM_DIGITS])], 0);
        let mut values = read_f32(both).await?;
        let (read, confidences) = readout(&values.split_off(pixels));
        let frame = picture(&values, count);
        let mut state = self.state.borrow_mut();
        let run = state.as_mut().unwrap().run.as_mut().ok_or("the run was replaced")?;
        run.frames.push(Kept { t: step.t, done: step.done, picture: frame.clone() });
        Ok(RestoreReply::Stepped { t: step.t, done: step.done, total: step.total, frame: Some(frame), read, confidences })
    }

    /// The figures of a finished run: the final state and the denoiser's estimate read back once.
    async fn finish(&self) -> Result<RestoreReply, String> {
        let (x, tweedie) = {
            let state = self.state.borrow();
            let run = state.as_ref().unwrap().run.as_ref().ok_or("no run yet")?;
            (run.run.current(), run.run.tweedie.clone())
        };
        let result = read_f32(x).await?;
        let tweedie = match tweedie {
            Some(t) => Some(read_f32(t).await?),
            None => None,
        };
        let state = self.state.borrow();
        let run = state.as_ref().unwrap().run.as_ref().ok_or("the run was replaced")?;
        // The result as the page downloads it: 8-bit levels, as the classifier read them.
        let levels = to_pixels(&result);
        let result: Vec<f32> = from_pixels(&levels);
        Ok(RestoreReply::Finished { measures: run.run.measures(run.truth.as_deref(), &result, tweedie.as_deref()) })
    }
}
