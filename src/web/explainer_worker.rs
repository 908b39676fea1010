//! The explainer's worker: every number and figure of the explainer page is computed here from
//! the shipped model (`crate::explain::compute`) and drawn into the canvases the page handed over. The
//! ELBO sweep is split into chunks of t that any worker of the page's pool computes.

use std::cell::RefCell;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use web_sys::OffscreenCanvas;

use super::draw::{Canvases, draw_chart, draw_field, draw_image, draw_paths};
use super::session::{Session, read_f32};
use crate::app::controls::{ExplainerQuery, Limits};
use crate::diffusion::elbo::bits_per_dim;
use crate::explain::compute::{
    ElboSummary, ExampleDigit, InterpolationProfile, VarianceBound, VarianceTerms, elbo_summary, elbo_terms_by_variance, elbo_weighting, forward_sample, l2_distance, log_spaced_indices, loss_weights,
    max_abs_diff, parse_example_digits, prior_term, rmse, running_sum, schedule_curves, signed_for_display, step_views, tweedie_error,
};
use crate::nets::unet::{NULL_CLASS, PIXELS};
use crate::explain::plot::{Axis, Chart, Scale, Series};
use crate::app::protocol::{BackendInfo, WeightFiles};
use crate::diffusion::noise::NoiseSource;
use crate::diffusion::schedule::{NoiseSchedule, ScheduleKind};
use crate::diffusion::solver::Method;
use crate::diffusion::variance::VarianceChoice;
use crate::app::weights::StepsTable;
use crate::toy::mixture::{MarginalCheck, Mixture2d, check_marginals, field_points, mean_distance, normal_points, points_at};

/// Timesteps at which Tweedie's error is measured (one batched model call).
const TWEEDIE_POINTS: usize = 25;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExplainerRequest {
    /// Read the page's URL (`query`, name/value pairs), choose the backend it asks for, verify
    /// and decode the weights, read the example digits.
    Init { query: Vec<(String, String)>, files: WeightFiles, digits: String },
    /// Shipped held-out digit `index`.
    SelectDigit { index: usize },
    /// A digit the reader drew: 784 grey levels, row-major.
    UseDrawnDigit { levels: serde_bytes::ByteBuf },
    /// Section 1 at t: x_0, x_t ~ q(x_t | x_0) and the schedule charts.
    Forward { t: usize, seed: u32 },
    /// Sections 3 and 5 at t.
    Views { t: usize, seed: u32 },
    /// Section 4: Tweedie's error over t, and the 2-D score fields at t.
    Score { t: usize, seed: u32 },
    /// L_T for image `x0`.
    ElboPrior { x0: Vec<f32> },
    /// L_{t-1} for t - 1 in `first .. first + count` (index 0 is L_0), for image `x0`, noise `seed`.
    ElboTerms { x0: Vec<f32>, seed: u32, first: usize, count: usize },
    /// The finished sweep's totals and charts: `term_nats` under the model's own variance,
    /// `alternatives` under the others, `learned` the variance channel's profile over t.
    ElboSummary {
        term_nats: Vec<f64>,
        simple: Vec<f64>,
        prior_nats: f64,
        #[serde(default)]
        alternatives: Vec<VarianceTerms>,
        #[serde(default)]
        learned: Option<InterpolationProfile>,
    },
    /// Section 6: the reverse SDE and the probability-flow ODE on the 2-D mixture, drawn at t
    /// (the paths are computed once per seed).
    Paths { t: usize, seed: u32 },
    /// Section 8: the shipped table of samplers against network evaluations, as a chart.
    StepsChart,
}

/// Points carried from x_T by each process in section 6 (kept small: 400 paths of 1001 states).
const PATH_POINTS: usize = 400;
/// Paths drawn as lines (all points are drawn as dots).
const PATHS_TRACED: usize = 12;
/// The step counts at which section 6 compares DDIM with DPM-Solver++ on the mixture.
const SOLVER_STEPS: [usize; 3] = [5, 10, 20];

/// DDIM (first order) against DPM-Solver++(2M) (second order) at one number of network
/// evaluations: the mean distance from each one's samples to the ODE's own solution (its
/// 1000-step endpoints, from the same starts). No sampling noise enters, only the solver's error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SolverRow {
    pub steps: usize,
    pub ddim: f64,
    pub dpm_solver: f64,
}

/// Section 6's paths for one seed.
struct ToyRun {
    seed: u32,
    sde: Vec<Vec<[f64; 2]>>,
    ode: Vec<Vec<[f64; 2]>>,
    solvers: Vec<SolverRow>,
}

/// alpha_bar_t, sqrt(alpha_bar_t) and SNR(t) of one schedule at the chosen t.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleValues {
    pub name: String,
    pub alpha_bar: f64,
    pub sqrt_alpha_bar: f64,
    pub snr: f64,
}

/// What sections 3 and 5 print at one t.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewValues {
    pub t: usize,
    pub mean_diff_x0_route: f64,
    pub mean_diff_score_route: f64,
    pub route_max_diff: f64,
    pub tweedie_vs_predicted_x0: f64,
    pub tweedie_rmse: f64,
    pub eps_peak: f32,
    pub score_peak: f32,
    pub weight_eps: f64,
    pub weight_x0: f64,
    pub weight_score: f64,
    pub is_decoder: bool,
    pub term_nats: f64,
    pub term_bits: f64,
    pub mean_distance: f64,
    pub sigma2: f64,
    pub posterior_variance: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExplainerReply {
    /// `limits` carries the worker pool's rule, shared with the sampling page; `query` the URL's
    /// values, each checked (its problems are for the page to show).
    Ready { backend: BackendInfo, timesteps: usize, schedule: String, digit_labels: Vec<usize>, limits: Limits, query: ExplainerQuery },
    /// The chosen image in model space (the page hands it to the sweep's workers).
    Selected { x0: Vec<f32> },
    Forward { schedules: Vec<ScheduleValues> },
    Views { values: ViewValues },
    Score { t: Vec<f64>, rmse: Vec<f64>, toy_max_diff: f64 },
    ElboPrior { nats: f64 },
    /// `nats` under the model's own variance (the sampler's), `alternatives` under the other
    /// reverse variances the model offers; `learned` where its variance channel lies.
    ElboTerms { first: usize, nats: Vec<f64>, simple: Vec<f64>, alternatives: Vec<VarianceTerms>, learned: Option<InterpolationProfile> },
    /// `bounds`: the image's bound under every variance of the sweep, the model's own first.
    ElboSummary { summary: ElboSummary, bounds: Vec<VarianceBound> },
    /// The two clouds at t against q_t, and (per seed) DDIM against DPM-Solver++ at few steps.
    Paths { check: MarginalCheck, solvers: Vec<SolverRow> },
    StepsChart { table: StepsTable },
    Failed { message: String },
}

struct State {
    session: Session,
    digits: Vec<ExampleDigit>,
    x0: Vec<f32>,
}

#[wasm_bindgen]
#[derive(Default)]
pub struct ExplainerWorker {
    state: RefCell<Option<State>>,
    toy: RefCell<Option<ToyRun>>,
    canvases: Canvases,
}

#[wasm_bindgen]
impl ExplainerWorker {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// The page's canvases, transferred as `OffscreenCanvas`es and keyed by element id.
    pub fn attach(&self, canvases: js_sys::Object) {
        self.canvases.attach(canvases);
    }

    /// Handle one request (an [`ExplainerRequest`]) and return its [`ExplainerReply`].
    pub async fn handle(&self, request: JsValue) -> Result<JsValue, JsError> {
        let reply = match serde_wasm_bindgen::from_value::<ExplainerRequest>(request) {
            Ok(request) => self.reply(request).await.unwrap_or_else(|message| ExplainerReply::Failed { message }),
            Err(e) => ExplainerReply::Failed { message: format!("malformed request: {e}") },
        };
        Ok(serde_wasm_bindgen::to_value(&reply)?)
    }
}

/// Section 6's computation for one seed, on the CPU backend (2-D points are host-sized work):
/// the same starts through DDPM (the reverse SDE) and DDIM with eta 0 (the probability-flow
/// ODE), every one of the T steps, and the sampler comparison at few steps.
async fn toy_run(m: &Mixture2d, schedule: &NoiseSchedule, seed: u32) -> Result<ToyRun, String> {
    let device = burn::tensor::Device::flex();
    let total = schedule.timesteps();
    let starts = normal_points(PATH_POINTS, &mut NoiseSource::new(seed as u64));
    let noise = || NoiseSource::new(seed as u64 + 1);
    let sde = m.reverse_paths(Method::Ddpm { variance: VarianceChoice::Beta }, schedule, &starts, &mut noise(), &device).await?;
    let ode = m.reverse_paths(Method::Ddim { steps: total, eta: 0.0 }, schedule, &starts, &mut noise(), &device).await?;
    let solution = points_at(&ode, usize::MAX);
    let mut solvers = Vec::new();
    for steps in SOLVER_STEPS {
        let error = |paths: Vec<Vec<[f64; 2]>>| mean_distance(&points_at(&paths, usize::MAX), &solution);
        let ddim = error(m.reverse_paths(Method::Ddim { steps, eta: 0.0 }, schedule, &starts, &mut noise(), &device).await?);
        let dpm_solver = error(m.reverse_paths(Method::DpmSolver2M { steps }, schedule, &starts, &mut noise(), &device).await?);
        solvers.push(SolverRow { steps, ddim, dpm_solver });
    }
    Ok(ToyRun { seed, sde, ode, solvers })
}

impl ExplainerWorker {
    fn canvas(&self, id: &str) -> Result<OffscreenCanvas, String> {
        self.canvases.get(id)
    }

    fn check_t(&self, t: usize) -> Result<usize, String> {
        let total = self.state.borrow().as_ref().map(|s| s.session.config.timesteps).unwrap_or(0);
        if !(1..=total).contains(&t) {
            return Err(format!("t = {t} is not in 1-{total}"));
        }
        Ok(t - 1)
    }

    async fn reply(&self, request: ExplainerRequest) -> Result<ExplainerReply, String> {
        if let ExplainerRequest::Init { query, files, digits } = request {
            let digits = parse_example_digits(&digits)?;
            // The URL names the backend; its other values are checked once the model's T is known.
            let session = Session::open(ExplainerQuery::backend_of(&query), files).await?;
            let limits = Limits::new(session.config.timesteps, session.config.guidance);
            let query = ExplainerQuery::parse(&query, session.config.timesteps, digits.len(), &limits);
            let reply = ExplainerReply::Ready {
                backend: session.backend.info.clone(),
                timesteps: session.config.timesteps,
                schedule: session.config.schedule.name().into(),
                digit_labels: digits.iter().map(|d| d.label).collect(),
                limits,
                query,
            };
            let x0 = digits[0].to_model_space();
            *self.state.borrow_mut() = Some(State { session, digits, x0 });
            return Ok(reply);
        }
        if self.state.borrow().is_none() {
            return Err("the worker is not initialised yet".into());
        }
        match request {
            ExplainerRequest::Init { .. } => unreachable!("handled above"),
            ExplainerRequest::SelectDigit { index } => {
                let mut state = self.state.borrow_mut();
                let state = state.as_mut().unwrap();
                let digit = state.digits.get(index).ok_or_else(|| format!("no example digit {index}"))?;
                state.x0 = digit.to_model_space();
                Ok(ExplainerReply::Selected { x0: state.x0.clone() })
            }
            ExplainerRequest::UseDrawnDigit { levels } => {
                if levels.len() != PIXELS {
                    return Err(format!("a drawn digit has {PIXELS} pixels, not {}", levels.len()));
                }
                let mut state = self.state.borrow_mut();
                let state = state.as_mut().unwrap();
                state.x0 = crate::app::image::from_pixels(&levels);
                Ok(ExplainerReply::Selected { x0: state.x0.clone() })
            }
            ExplainerRequest::Forward { t, seed } => self.forward(t, seed).await,
            ExplainerRequest::Views { t, seed } => self.views(t, seed).await,
            ExplainerRequest::Score { t, seed } => self.score(t, seed).await,
            ExplainerRequest::ElboPrior { x0 } => {
                let prior = {
                    let state = self.state.borrow();
                    let s = &state.as_ref().unwrap().session;
                    prior_term(&s.schedule, &x0, &s.backend.device)
                };
                Ok(ExplainerReply::ElboPrior { nats: read_f32(prior).await?[0] as f64 })
            }
            ExplainerRequest::ElboTerms { x0, seed, first, count } => {
                if x0.len() != PIXELS {
                    return Err(format!("an image has {PIXELS} pixels, not {}", x0.len()));
                }
                let sweep = {
                    let state = self.state.borrow();
                    let s = &state.as_ref().unwrap().session;
                    let total = s.config.timesteps;
                    if count == 0 || first + count > total {
                        return Err(format!("terms {first}..{} are not in 0..{total}", first + count));
                    }
                    let idx: Vec<usize> = (first..first + count).collect();
                    // The model's own variance first, then the others it offers.
                    let own = VarianceChoice::from(s.config.variance);
                    let choices: Vec<VarianceChoice> = std::iter::once(own).chain(VarianceChoice::ALL.into_iter().filter(|c| *c != own)).collect();
                    elbo_terms_by_variance(&s.unet, &s.schedule, &choices, &x0, &idx, seed as u64, NULL_CLASS, &s.backend.device)
                };
                // Every variance's terms and L_simple in one readback: [(variances + 1) * count].
                let (variances, tensors): (Vec<VarianceChoice>, Vec<Tensor<1>>) = sweep.terms.into_iter().unzip();
                let all = read_f32(Tensor::cat(tensors.into_iter().chain([sweep.simple]).collect(), 0)).await?;
                let mut rows = all.chunks(count).map(|row| row.iter().map(|v| *v as f64).collect::<Vec<f64>>());
                let mut terms: Vec<VarianceTerms> = variances.into_iter().map(|variance| VarianceTerms { variance, nats: rows.next().unwrap() }).collect();
                let simple = rows.next().unwrap();
                let learned = match sweep.interpolation {
                    Some(v) => Some(InterpolationProfile::of(&read_f32(v).await?, count)),
                    None => None,
                };
                let nats = terms.remove(0).nats;
                Ok(ExplainerReply::ElboTerms { first, nats, simple, alternatives: terms, learned })
            }
            ExplainerRequest::ElboSummary { term_nats, simple, prior_nats, alternatives, learned } => {
                self.elbo_summary(&term_nats, &simple, prior_nats, &alternatives, learned.as_ref())
            }
            ExplainerRequest::Paths { t, seed } => self.paths(t, seed).await,
            ExplainerRequest::StepsChart => self.steps_chart(),
        }
    }

    async fn forward(&self, t: usize, seed: u32) -> Result<ExplainerReply, String> {
        let i = self.check_t(t)?;
        let (x0, x_t, total) = {
            let state = self.state.borrow();
            let state = state.as_ref().unwrap();
            let s = &state.session;
            (state.x0.clone(), forward_sample(&s.schedule, &state.x0, i, seed as u64, &s.backend.device), s.config.timesteps)
        };
        draw_image(&self.canvas("x0")?, &x0)?;
        draw_image(&self.canvas("xt-forward")?, &read_f32(x_t).await?)?;
        let schedules = [NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, total), NoiseSchedule::new(ScheduleKind::COSINE, total)];
        let curves: Vec<[Vec<f64>; 3]> = schedules.iter().map(schedule_curves).collect();
        let line = |name: String, color: &str, v: &[f64]| Series { name, color: color.into(), points: v.iter().enumerate().map(|(k, y)| ((k + 1) as f64, *y)).collect() };
        let t_axis = Axis::new("t", 1.0, total as f64, Scale::Linear);
        let mut series = Vec::new();
        for (k, (s, c)) in schedules.iter().zip(&curves).enumerate() {
            series.push(line(format!("ᾱₜ {}", s.kind.name()), COLORS[k], &c[0]));
            series.push(line(format!("√ᾱₜ {}", s.kind.name()), COLORS[k + 2], &c[1]));
        }
        let alpha = Chart { title: "ᾱₜ and √ᾱₜ".into(), x: t_axis.clone(), y: Axis::new("", 0.0, 1.0, Scale::Linear), series, marker: Some(t as f64) };
        draw_chart(&self.canvas("alpha-chart")?, &alpha)?;
        let series: Vec<Series> = schedules.iter().zip(&curves).enumerate().map(|(k, (s, c))| line(format!("SNR {}", s.kind.name()), COLORS[k], &c[2])).collect();
        let snr = Chart {
            title: "SNR(t) = ᾱₜ / (1 − ᾱₜ), log scale".into(),
            y: Axis::fit("SNR", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| *v > 1e-8), Scale::Log),
            x: t_axis,
            series,
            marker: Some(t as f64),
        };
        draw_chart(&self.canvas("snr-chart")?, &snr)?;
        let schedules = schedules
            .iter()
            .zip(&curves)
            .map(|(s, c)| ScheduleValues { name: s.kind.name().into(), alpha_bar: c[0][i], sqrt_alpha_bar: c[1][i], snr: c[2][i] })
            .collect();
        Ok(ExplainerReply::Forward { schedules })
    }

    async fn views(&self, t: usize, seed: u32) -> Result<ExplainerReply, String> {
        let i = self.check_t(t)?;
        let (stacked, term) = {
            let state = self.state.borrow();
            let state = state.as_ref().unwrap();
            let s = &state.session;
            let v = step_views(&s.unet, &s.schedule, s.config.variance, &state.x0, i, seed as u64, NULL_CLASS, &s.backend.device);
            // One readback for all ten images.
            let stacked = Tensor::cat(vec![v.x0, v.x_t, v.eps, v.x0_pred, v.score, v.mean_via_eps, v.mean_via_x0, v.mean_via_score, v.tweedie_x0, v.posterior_mean], 0);
            (stacked, v.term)
        };
        let all = read_f32(stacked).await?;
        let term_nats = read_f32(term).await?[0] as f64;
        let img = |k: usize| &all[k * PIXELS..(k + 1) * PIXELS];
        let (x0, x_t, eps, x0_pred, score, mu_eps, mu_x0, mu_score, tweedie, posterior) =
            (img(0), img(1), img(2), img(3), img(4), img(5), img(6), img(7), img(8), img(9));
        let (eps_shown, eps_peak) = signed_for_display(eps);
        let (score_shown, score_peak) = signed_for_display(score);
        draw_image(&self.canvas("v-xt")?, x_t)?;
        draw_image(&self.canvas("v-eps")?, &eps_shown)?;
        draw_image(&self.canvas("v-x0")?, x0_pred)?;
        draw_image(&self.canvas("v-score")?, &score_shown)?;
        draw_image(&self.canvas("v-posterior")?, posterior)?;
        draw_image(&self.canvas("v-model")?, mu_eps)?;
        let state = self.state.borrow();
        let s = &state.as_ref().unwrap().session;
        let [weight_eps, weight_x0, weight_score] = loss_weights(&s.schedule, s.config.variance, i);
        Ok(ExplainerReply::Views {
            values: ViewValues {
                t,
                mean_diff_x0_route: max_abs_diff(mu_eps, mu_x0),
                mean_diff_score_route: max_abs_diff(mu_eps, mu_score),
                route_max_diff: max_abs_diff(mu_eps, mu_x0).max(max_abs_diff(mu_eps, mu_score)).max(max_abs_diff(mu_x0, mu_score)),
                tweedie_vs_predicted_x0: max_abs_diff(tweedie, x0_pred),
                tweedie_rmse: rmse(tweedie, x0),
                eps_peak,
                score_peak,
                weight_eps,
                weight_x0,
                weight_score,
                is_decoder: i == 0,
                term_nats,
                term_bits: bits_per_dim(term_nats, PIXELS),
                mean_distance: l2_distance(mu_eps, posterior),
                sigma2: s.schedule.reverse_variance(s.config.variance, i),
                posterior_variance: s.schedule.posterior_variance[i],
            },
        })
    }

    async fn score(&self, t: usize, seed: u32) -> Result<ExplainerReply, String> {
        let i = self.check_t(t)?;
        let (errors, idx, total, alpha_bar) = {
            let state = self.state.borrow();
            let state = state.as_ref().unwrap();
            let s = &state.session;
            let total = s.config.timesteps;
            let idx = log_spaced_indices(total, TWEEDIE_POINTS);
            (tweedie_error(&s.unet, &s.schedule, &state.x0, &idx, seed as u64, NULL_CLASS, &s.backend.device), idx, total, s.schedule.alpha_bar[i])
        };
        let rmse: Vec<f64> = read_f32(errors).await?.iter().map(|v| *v as f64).collect();
        let ts: Vec<f64> = idx.iter().map(|i| (i + 1) as f64).collect();
        let chart = Chart {
            title: "Tweedie's estimate E[x₀ | xₜ] against the true x₀".into(),
            x: Axis::new("t", 1.0, total as f64, Scale::Log),
            y: Axis::fit("RMSE", rmse.iter().copied(), Scale::Linear),
            series: vec![Series { name: "RMSE of Tweedie's x̂₀ against x₀".into(), color: COLORS[0].into(), points: ts.iter().copied().zip(rmse.iter().copied()).collect() }],
            marker: Some(t as f64),
        };
        draw_chart(&self.canvas("tweedie-chart")?, &chart)?;
        let m = Mixture2d::example();
        let arrows = |score: &dyn Fn([f64; 2]) -> [f64; 2]| field_points().into_iter().map(score).collect::<Vec<_>>();
        draw_field(&self.canvas("toy-formula")?, &m, alpha_bar, &arrows(&|x| m.score_via_tweedie(x, alpha_bar)))?;
        draw_field(&self.canvas("toy-exact")?, &m, alpha_bar, &arrows(&|x| m.score(x, alpha_bar)))?;
        Ok(ExplainerReply::Score { t: ts, rmse, toy_max_diff: m.tweedie_field_error(alpha_bar) })
    }

    async fn paths(&self, t: usize, seed: u32) -> Result<ExplainerReply, String> {
        self.check_t(t)?;
        let schedule = self.state.borrow().as_ref().unwrap().session.schedule.clone();
        let total = schedule.timesteps();
        let m = Mixture2d::example();
        if self.toy.borrow().as_ref().map(|run| run.seed) != Some(seed) {
            let run = toy_run(&m, &schedule, seed).await?;
            *self.toy.borrow_mut() = Some(run);
        }
        let toy = self.toy.borrow();
        let run = toy.as_ref().unwrap();
        // After T - t steps both processes hold x_t.
        let frame = total - t;
        let a = schedule.alpha_bar[t - 1];
        draw_paths(&self.canvas("paths-sde")?, &m, a, &run.sde, frame, PATHS_TRACED)?;
        draw_paths(&self.canvas("paths-ode")?, &m, a, &run.ode, frame, PATHS_TRACED)?;
        let check = check_marginals(&m, a, &points_at(&run.sde, frame), &points_at(&run.ode, frame), &mut NoiseSource::new(seed as u64 ^ 0x5eed));
        Ok(ExplainerReply::Paths { check, solvers: run.solvers.clone() })
    }

    fn steps_chart(&self) -> Result<ExplainerReply, String> {
        let table = {
            let state = self.state.borrow();
            let manifest = &state.as_ref().unwrap().session.manifest;
            manifest.steps_table().ok_or("these weights ship no table of samplers against steps")?.map_err(|e| e.to_string())?
        };
        let names = [("ddim", "DDIM (η = 0)"), ("dpm2m", "DPM-Solver++(2M)"), ("ancestral", "ancestral (DDIM, η = 1)")];
        let mut series: Vec<Series> = names
            .iter()
            .enumerate()
            .map(|(k, (name, label))| Series {
                name: (*label).into(),
                color: COLORS[k].into(),
                points: table.rows.iter().filter(|r| r.sampler == *name).map(|r| (r.evaluations as f64, r.ratio_to_real)).collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let x = Axis::fit("network evaluations", table.rows.iter().map(|r| r.evaluations as f64), Scale::Log);
        series.push(Series { name: "real digits (1×)".into(), color: "#888".into(), points: vec![(x.min, 1.0), (x.max, 1.0)] });
        let y = Axis::fit("× real-vs-real", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain([0.0]), Scale::Linear);
        let title = format!("Fréchet distance of {} samples ÷ real digits' (measured natively)", table.sample_count);
        draw_chart(&self.canvas("steps-chart")?, &Chart { title, x, y, series, marker: None })?;
        Ok(ExplainerReply::StepsChart { table })
    }

    fn elbo_summary(
        &self,
        term_nats: &[f64],
        simple: &[f64],
        prior_nats: f64,
        alternatives: &[VarianceTerms],
        learned: Option<&InterpolationProfile>,
    ) -> Result<ExplainerReply, String> {
        let state = self.state.borrow();
        let s = &state.as_ref().unwrap().session;
        let total = s.config.timesteps;
        let complete = |v: &[f64]| v.len() == total && v.iter().all(|x| x.is_finite());
        let profile_complete = learned.is_none_or(|p| complete(&p.mean) && complete(&p.low) && complete(&p.high));
        if !complete(term_nats) || !complete(simple) || !alternatives.iter().all(|a| complete(&a.nats)) || !profile_complete {
            return Err(format!("an ELBO sweep has {total} finite terms"));
        }
        let own = VarianceTerms { variance: s.config.variance.into(), nats: term_nats.to_vec() };
        let bounds: Vec<VarianceBound> = std::iter::once(&own).chain(alternatives).map(|terms| VarianceBound::of(terms, prior_nats)).collect();
        self.draw_learned_variance(learned, total)?;
        let summary = elbo_summary(term_nats, prior_nats, simple);
        let bits: Vec<f64> = term_nats.iter().map(|n| bits_per_dim(*n, PIXELS)).collect();
        let points = |v: &[f64]| v.iter().enumerate().map(|(k, y)| ((k + 1) as f64, *y)).collect::<Vec<_>>();
        let series = vec![
            Series { name: "Lₜ₋₁ (L₀ at t = 1)".into(), color: COLORS[0].into(), points: points(&bits) },
            Series { name: "running sum".into(), color: COLORS[1].into(), points: points(&running_sum(&bits)) },
        ];
        let y = Axis::fit("bits/dim", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), Scale::Log);
        let t_axis = Axis::new("t", 1.0, total as f64, Scale::Log);
        draw_chart(&self.canvas("elbo-chart")?, &Chart { title: "ELBO terms per t (bits/dim, log–log)".into(), x: t_axis.clone(), y, series, marker: None })?;
        let (lambda, weighted) = elbo_weighting(&s.schedule, s.config.variance, simple);
        let series = vec![
            Series { name: "‖ε − ε_θ‖² per pixel (weight 1 in L_simple)".into(), color: COLORS[2].into(), points: points(simple) },
            Series { name: "ELBO weight λₜ".into(), color: COLORS[3].into(), points: points(&lambda) },
            Series { name: "λₜ‖ε − ε_θ‖² (bits/dim)".into(), color: COLORS[0].into(), points: points(&weighted) },
        ];
        let y = Axis::fit("", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), Scale::Log);
        draw_chart(&self.canvas("weights-chart")?, &Chart { title: "L_simple against the ELBO's weighting".into(), x: t_axis, y, series, marker: None })?;
        Ok(ExplainerReply::ElboSummary { summary, bounds })
    }

    /// Where the learned variance lies between beta_tilde_t and beta_t over t (or, for weights
    /// without a variance channel, the two fixed choices alone).
    fn draw_learned_variance(&self, learned: Option<&InterpolationProfile>, total: usize) -> Result<(), String> {
        let flat = |name: &str, color: &str, y: f64| Series { name: name.into(), color: color.into(), points: vec![(1.0, y), (total as f64, y)] };
        let mut series = vec![flat("σ² = β̃ₜ (v = 0)", "#888", 0.0), flat("σ² = βₜ (v = 1)", "#444", 1.0)];
        let title = match learned {
            Some(p) => {
                let points = |v: &[f64]| v.iter().enumerate().map(|(k, y)| ((k + 1) as f64, *y)).collect::<Vec<_>>();
                series.push(Series { name: "learned v, mean over pixels".into(), color: COLORS[0].into(), points: points(&p.mean) });
                series.push(Series { name: "10th / 90th percentile".into(), color: COLORS[2].into(), points: points(&p.low) });
                series.push(Series { name: String::new(), color: COLORS[2].into(), points: points(&p.high) });
                "Learned Σ_θ = exp(v log βₜ + (1 − v) log β̃ₜ): v over t"
            }
            None => "These weights have no variance channel: β̃ₜ and βₜ only",
        };
        let y = Axis::fit("v", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), Scale::Linear);
        let x = Axis::new("t", 1.0, total as f64, Scale::Log);
        draw_chart(&self.canvas("variance-chart")?, &Chart { title: title.into(), x, y, series, marker: None })
    }
}
