//! The explainer's training worker (section 7): trains the 2-D denoiser with
//! `crate::toy::train` on this worker's backend, a chunk of steps per request so that the page
//! can show progress and stop, and draws the loss, the learned and exact score fields and the
//! model's samples into the canvases the page handed over.

use std::cell::RefCell;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use web_sys::OffscreenCanvas;

use super::backend::{Backend, init_backend};
use super::draw::{Canvases, draw_chart, draw_field, draw_paths};
use super::session::read_f32;
use crate::diffusion::objective::{Prediction, elbo_x0_weight};
use crate::explain::plot::{Axis, Chart, Scale, Series};
use crate::app::protocol::{BackendInfo, BackendPreference};
use crate::diffusion::schedule::{NoiseSchedule, ScheduleKind};
use crate::diffusion::noise::NoiseSource;
use crate::diffusion::solver::Method;
use crate::toy::mixture::{EXTENT, MarginalCheck, check_marginals, field_points, normal_points, points_at};
use crate::toy::flow::straight_time;
use crate::toy::train::{DRAWN_POINTS, FitCheck, StepsFit, ToyObjective, ToySettings, ToyTarget, ToyTrainer, check_fit, fit_by_steps};
use crate::nets::mlp::ToyDenoiser;
use crate::diffusion::variance::VarianceChoice;

const COLORS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#b35900"];
/// Steps one `Train` request may ask for: a chunk is short, so Stop and the page's progress
/// answer within a fraction of a second.
pub const MAX_CHUNK: usize = 500;

/// One choice of a select element: its value in requests, and its label.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice<T> {
    pub value: T,
    pub label: String,
    pub help: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrainerRequest {
    /// Choose the backend (the page's `?backend=`).
    Init { backend: BackendPreference },
    /// A fresh model for `target`, learning `objective` (the other settings are the defaults).
    Start { target: ToyTarget, objective: ToyObjective },
    /// Up to `steps` more optimisation steps (1 to MAX_CHUNK), stopping at the planned total.
    Train { steps: usize },
    /// Draw the loss so far, the learned and exact score fields at t, and the model's samples.
    Show { t: usize, seed: u32 },
    /// The trained model's reverse SDE and probability-flow ODE from the same starts (computed
    /// once per model and seed), drawn at t over q_t.
    Paths { t: usize, seed: u32 },
    /// The trained model's fit against the number of steps of its two deterministic samplers.
    Steps { seed: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrainerReply {
    /// The rules the section's controls follow, defined here once.
    Ready {
        backend: BackendInfo,
        presets: Vec<Choice<crate::toy::train::ToyPreset>>,
        objectives: Vec<Choice<ToyObjective>>,
        settings: ToySettings,
        parameters: usize,
        timesteps: usize,
        /// The plane is [-extent, extent]^2; a drawing has `drawn_points` points.
        extent: f64,
        drawn_points: [usize; 2],
        max_chunk: usize,
    },
    Started { total: usize },
    /// Each new step's loss.
    Trained { step: usize, total: usize, losses: Vec<f64> },
    Shown { step: usize, fit: FitCheck },
    Paths { check: MarginalCheck },
    /// Rows by step count, each sampler's row in turn; `floor`: the distance between two exact
    /// draws (sampling noise alone), `threshold`: a good fit's bound.
    Steps { rows: Vec<StepsFit>, floor: f64, threshold: f64 },
    Failed { message: String },
}

struct Run {
    trainer: ToyTrainer,
    losses: Vec<f64>,
    /// The trained model's SDE and ODE paths: (steps trained, seed, sde, ode).
    paths: Option<(usize, u32, Vec<Vec<[f64; 2]>>, Vec<Vec<[f64; 2]>>)>,
}

/// Points the trained model's SDE and ODE carry (each step is a network call on all of them).
const PATH_POINTS: usize = 300;

#[wasm_bindgen]
#[derive(Default)]
pub struct TrainerWorker {
    backend: RefCell<Option<Backend>>,
    run: RefCell<Option<Run>>,
    canvases: Canvases,
}

/// The schedule the 2-D models use: the digits' (linear, T = 1000).
fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, 1000)
}

#[wasm_bindgen]
impl TrainerWorker {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// The section's canvases, transferred as `OffscreenCanvas`es and keyed by element id.
    pub fn attach(&self, canvases: js_sys::Object) {
        self.canvases.attach(canvases);
    }

    /// Handle one request (a [`TrainerRequest`]) and return its [`TrainerReply`].
    pub async fn handle(&self, request: JsValue) -> Result<JsValue, JsError> {
        let reply = match serde_wasm_bindgen::from_value::<TrainerRequest>(request) {
            Ok(request) => self.reply(request).await.unwrap_or_else(|message| TrainerReply::Failed { message }),
            Err(e) => TrainerReply::Failed { message: format!("malformed request: {e}") },
        };
        Ok(serde_wasm_bindgen::to_value(&reply)?)
    }
}

impl TrainerWorker {
    fn canvas(&self, id: &str) -> Result<OffscreenCanvas, String> {
        self.canvases.get(id)
    }

    async fn reply(&self, request: TrainerRequest) -> Result<TrainerReply, String> {
        if let TrainerRequest::Init { backend } = request {
            let backend = init_backend(backend).await;
            let info = backend.info.clone();
            let parameters = ToyDenoiser::init_seeded(0, &backend.device).parameters();
            *self.backend.borrow_mut() = Some(backend);
            return Ok(TrainerReply::Ready {
                backend: info,
                presets: crate::toy::train::ToyPreset::ALL.iter().map(|&p| Choice { value: p, label: p.label().into(), help: String::new() }).collect(),
                objectives: ToyObjective::all().into_iter().map(|o| Choice { value: o, label: o.label().into(), help: o.help().into() }).collect(),
                settings: ToySettings::default(),
                parameters,
                timesteps: schedule().timesteps(),
                extent: EXTENT,
                drawn_points: [*DRAWN_POINTS.start(), *DRAWN_POINTS.end()],
                max_chunk: MAX_CHUNK,
            });
        }
        let device = self.backend.borrow().as_ref().map(|b| b.device.clone()).ok_or("the worker is not initialised yet")?;
        match request {
            TrainerRequest::Init { .. } => unreachable!("handled above"),
            TrainerRequest::Start { target, objective } => {
                let data = target.mixture()?;
                let settings = ToySettings { objective, ..ToySettings::default() };
                let schedule = schedule();
                draw_chart(&self.canvas("train-weights")?, &weighting_chart(&schedule, objective))?;
                let trainer = ToyTrainer::new(data, settings, schedule, &device);
                let total = trainer.settings.steps;
                *self.run.borrow_mut() = Some(Run { trainer, losses: Vec::new(), paths: None });
                Ok(TrainerReply::Started { total })
            }
            TrainerRequest::Train { steps } => {
                if !(1..=MAX_CHUNK).contains(&steps) {
                    return Err(format!("a chunk is 1 to {MAX_CHUNK} steps, not {steps}"));
                }
                let losses = {
                    let mut run = self.run.borrow_mut();
                    let run = run.as_mut().ok_or("no model is being trained")?;
                    let left = run.trainer.settings.steps - run.trainer.steps_done();
                    let losses: Vec<Tensor<1>> = (0..steps.min(left)).map(|_| run.trainer.train_step()).collect();
                    (!losses.is_empty()).then(|| Tensor::cat(losses, 0))
                };
                // One readback per chunk (the losses stay on the device until then).
                let losses: Vec<f64> = match losses {
                    Some(l) => read_f32(l).await?.iter().map(|&v| v as f64).collect(),
                    None => Vec::new(),
                };
                let mut run = self.run.borrow_mut();
                let run = run.as_mut().ok_or("no model is being trained")?;
                run.losses.extend(&losses);
                Ok(TrainerReply::Trained { step: run.trainer.steps_done(), total: run.trainer.settings.steps, losses })
            }
            TrainerRequest::Show { t, seed } => self.show(t, seed, &device).await,
            TrainerRequest::Paths { t, seed } => self.paths(t, seed, &device).await,
            TrainerRequest::Steps { seed } => {
                let (model, data, schedule) = {
                    let run = self.run.borrow();
                    let run = run.as_ref().ok_or("no model has been trained")?;
                    (run.trainer.model(), run.trainer.data.clone(), run.trainer.schedule.clone())
                };
                let rows = fit_by_steps(&model, &data, &schedule, seed as u64, &device).await?;
                let (_, fit) = check_fit(&model, &data, &schedule, seed as u64, &device).await?;
                Ok(TrainerReply::Steps { rows, floor: fit.floor, threshold: fit.threshold })
            }
        }
    }

    async fn show(&self, t: usize, seed: u32, device: &burn::tensor::Device) -> Result<TrainerReply, String> {
        let (model, data, schedule, losses, step) = {
            let run = self.run.borrow();
            let run = run.as_ref().ok_or("no model has been trained")?;
            (run.trainer.model(), run.trainer.data.clone(), run.trainer.schedule.clone(), run.losses.clone(), run.trainer.steps_done())
        };
        if !(1..=schedule.timesteps()).contains(&t) {
            return Err(format!("t = {t} is not in 1-{}", schedule.timesteps()));
        }
        let i = t - 1;
        let a = schedule.alpha_bar[i];
        let learned = model.score_field(&schedule, i, device).await?;
        draw_field(&self.canvas("train-field")?, &data, a, &learned)?;
        let exact: Vec<[f64; 2]> = field_points().iter().map(|&x| data.score(x, a)).collect();
        draw_field(&self.canvas("train-exact")?, &data, a, &exact)?;
        let (samples, fit) = check_fit(&model, &data, &schedule, seed as u64, device).await?;
        let dots: Vec<Vec<[f64; 2]>> = samples.iter().map(|&p| vec![p]).collect();
        draw_paths(&self.canvas("train-samples")?, &data, 1.0, &dots, 0, 0)?;
        draw_chart(&self.canvas("train-loss")?, &loss_chart(&losses))?;
        Ok(TrainerReply::Shown { step, fit })
    }
}

impl TrainerWorker {
    async fn paths(&self, t: usize, seed: u32, device: &burn::tensor::Device) -> Result<TrainerReply, String> {
        let (model, data, schedule, step, cached) = {
            let run = self.run.borrow();
            let run = run.as_ref().ok_or("no model has been trained")?;
            let step = run.trainer.steps_done();
            let cached = run.paths.as_ref().is_some_and(|p| p.0 == step && p.1 == seed);
            (run.trainer.model(), run.trainer.data.clone(), run.trainer.schedule.clone(), step, cached)
        };
        let total = schedule.timesteps();
        if !(1..=total).contains(&t) {
            return Err(format!("t = {t} is not in 1-{total}"));
        }
        if !cached {
            let starts = normal_points(PATH_POINTS, &mut NoiseSource::new(seed as u64));
            let noise = || NoiseSource::new(seed as u64 + 1);
            let sde = model.paths(Method::Ddpm { variance: VarianceChoice::Beta }, &schedule, &starts, &mut noise(), device).await?;
            let ode = model.paths(Method::Ddim { steps: total, eta: 0.0 }, &schedule, &starts, &mut noise(), device).await?;
            self.run.borrow_mut().as_mut().ok_or("no model has been trained")?.paths = Some((step, seed, sde, ode));
        }
        let run = self.run.borrow();
        let (_, _, sde, ode) = run.as_ref().and_then(|r| r.paths.as_ref()).ok_or("no paths")?;
        // After T - t steps both processes hold x_t.
        let frame = total - t;
        let a = schedule.alpha_bar[t - 1];
        draw_paths(&self.canvas("train-sde")?, &data, a, sde, frame, 12)?;
        draw_paths(&self.canvas("train-ode")?, &data, a, ode, frame, 12)?;
        let check = check_marginals(&data, a, &points_at(sde, frame), &points_at(ode, frame), &mut NoiseSource::new(seed as u64 ^ 0x5eed));
        Ok(TrainerReply::Paths { check })
    }
}

/// The loss per step and its running mean over 50 steps (one batch's loss is noisy).
fn loss_chart(losses: &[f64]) -> Chart {
    let window = 50;
    let mean: Vec<(f64, f64)> = (window..=losses.len())
        .step_by(5)
        .map(|end| (end as f64, losses[end - window..end].iter().sum::<f64>() / window as f64))
        .collect();
    let raw: Vec<(f64, f64)> = losses.iter().enumerate().step_by(losses.len().div_ceil(600).max(1)).map(|(k, &v)| ((k + 1) as f64, v)).collect();
    let series = vec![
        Series { name: "loss of each batch".into(), color: "#9ecae1".into(), points: raw },
        Series { name: "mean of the last 50".into(), color: COLORS[0].into(), points: mean },
    ];
    Chart {
        title: "Training loss".into(),
        x: Axis::new("step", 1.0, losses.len().max(2) as f64, Scale::Linear),
        y: Axis::fit("loss", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), Scale::Log),
        series,
        marker: None,
    }
}

/// The weight each objective's plain squared error puts on ||x_0 - x0_hat||^2 at each t, and the
/// ELBO's, each divided by its mean over t so that their shapes compare. Flow matching's velocity
/// error is the x_0 error over s (x_0 = x_s - s v), and it draws s, not t, uniformly: its weight at
/// t is (s_t - s_{t-1}) / s_t^2.
fn weighting_chart(s: &NoiseSchedule, chosen: ToyObjective) -> Chart {
    let total = s.timesteps();
    let normalised = |w: Vec<(f64, f64)>| {
        let mean = w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64;
        w.into_iter().map(|(t, v)| (t, v / mean)).collect::<Vec<_>>()
    };
    let mut series: Vec<Series> = Prediction::ALL
        .iter()
        .enumerate()
        .map(|(k, &p)| Series {
            name: format!("predict {}{}", p.label(), if ToyObjective::Diffusion(p) == chosen { " (training)" } else { "" }),
            color: COLORS[k].into(),
            points: normalised((1..total).map(|i| ((i + 1) as f64, p.x0_weight(s, i))).collect()),
        })
        .collect();
    let flow = (1..total).map(|i| ((i + 1) as f64, (straight_time(s, i) - straight_time(s, i - 1)) / straight_time(s, i).powi(2))).collect();
    let flow_name = format!("flow matching{}", if chosen == ToyObjective::FLOW { " (training)" } else { "" });
    series.push(Series { name: flow_name, color: COLORS[4].into(), points: normalised(flow) });
    series.push(Series { name: "the ELBO (σ² = β̃)".into(), color: COLORS[3].into(), points: normalised((1..total).map(|i| ((i + 1) as f64, elbo_x0_weight(s, i))).collect()) });
    Chart {
        title: "Weight on ‖x₀ − x̂₀‖² per t (÷ its mean)".into(),
        x: Axis::new("t", 2.0, total as f64, Scale::Log),
        y: Axis::fit("weight", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), Scale::Log),
        series,
        marker: None,
    }
}
