//! The explainer page's side in wasm: every figure and number is computed here, from the shipped
//! model on the active backend (`crate::explain`) and the host-side schedule maths, and drawn to
//! canvases. Tensors are read only with `into_data_async`.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Tensor;
use wasm_bindgen::prelude::*;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use super::{Backend, BackendInfo, BackendPreference, context_2d, draw_rgba, fetch_bytes, init_backend, js_error, load_weights, read_f32, set};
use crate::config::DdpmConfig;
use crate::elbo::bits_per_dim;
use crate::explain::{ExampleDigit, elbo_terms, forward_sample, loss_weights, parse_example_digits, prior_term, schedule_curves, step_views, tweedie_error};
use crate::model::{NULL_CLASS, PIXELS, UNet};
use crate::plot::{Axis, Chart, Frame, Scale, Series, format_tick};
use crate::schedule::{NoiseSchedule, ScheduleKind};
use crate::toy::Mixture2d;
use crate::trajectory::grid_rgba;

/// Timesteps per model call in the ELBO sweep (the page shows progress between calls).
const ELBO_BATCH: usize = 50;
/// Timesteps at which Tweedie's error is measured (one batched model call).
const TWEEDIE_POINTS: usize = 25;

const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// One ELBO sweep over all T for the chosen digit and one draw of noise.
struct ElboRun {
    seed: u64,
    /// L_0 (index 0) and L_{t-1} (index t-1), nats per image; NaN until computed.
    nats: Vec<f64>,
    /// ||eps - eps_theta||^2 per pixel at each t (the L_simple summand).
    simple: Vec<f64>,
    prior_nats: f64,
    next: usize,
}

struct State {
    backend: Backend,
    config: DdpmConfig,
    schedule: NoiseSchedule,
    model: UNet,
    digits: Vec<ExampleDigit>,
    /// The chosen digit in model space, and its label (None when drawn by the reader).
    x0: Vec<f32>,
    elbo: Option<ElboRun>,
}

#[wasm_bindgen]
pub struct Explainer {
    state: Rc<RefCell<State>>,
}

/// Signed values shown on the grey range: divided by their largest magnitude (returned).
fn signed_for_display(values: &[f32]) -> (Vec<f32>, f32) {
    let peak = values.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    (values.iter().map(|v| v / peak).collect(), peak)
}

fn draw_image(canvas: &HtmlCanvasElement, values: &[f32]) -> Result<(), JsError> {
    let (w, h, rgba) = grid_rgba(values, 1);
    draw_rgba(canvas, w, h, &rgba).map_err(js_error)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max)
}

fn array(values: &[f64]) -> JsValue {
    js_sys::Float64Array::from(values).into()
}

#[wasm_bindgen]
impl Explainer {
    /// Choose the backend, load and verify the weights under `weights_base`, and the example
    /// digits at `digits_url`.
    pub async fn create(backend: String, weights_base: String, digits_url: String) -> Result<Explainer, JsError> {
        let preference = BackendPreference::parse(Some(&backend)).unwrap_or(BackendPreference::Auto);
        let backend = init_backend(preference).await;
        let weights = load_weights(&weights_base, &backend.device).await.map_err(js_error)?;
        let digits_json = fetch_bytes(&digits_url).await.map_err(js_error)?;
        let digits = parse_example_digits(&String::from_utf8_lossy(&digits_json)).map_err(js_error)?;
        let config = weights.manifest.config.clone();
        let x0 = digits[0].to_model_space();
        let state = State { schedule: config.schedule(), config, backend, model: weights.unet, digits, x0, elbo: None };
        Ok(Explainer { state: Rc::new(RefCell::new(state)) })
    }

    /// Which backend computes, on what, and why (for the page to show).
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> BackendInfo {
        BackendInfo(self.state.borrow().backend.clone())
    }

    #[wasm_bindgen(getter)]
    pub fn timesteps(&self) -> usize {
        self.state.borrow().config.timesteps
    }

    /// "linear" or "cosine": the schedule the model was trained with.
    #[wasm_bindgen(getter, js_name = scheduleName)]
    pub fn schedule_name(&self) -> String {
        self.state.borrow().config.schedule.name().into()
    }

    /// Labels of the shipped held-out digits, in order.
    #[wasm_bindgen(getter, js_name = digitLabels)]
    pub fn digit_labels(&self) -> Vec<u32> {
        self.state.borrow().digits.iter().map(|d| d.label as u32).collect()
    }

    /// Choose shipped digit `index`; forgets the ELBO of the previous digit.
    #[wasm_bindgen(js_name = selectDigit)]
    pub fn select_digit(&self, index: usize) -> Result<(), JsError> {
        let mut state = self.state.borrow_mut();
        let digit = state.digits.get(index).ok_or_else(|| js_error(format!("no example digit {index}")))?;
        state.x0 = digit.to_model_space();
        state.elbo = None;
        Ok(())
    }

    /// Use a digit the reader drew: 784 grey levels (0 = background), row-major.
    #[wasm_bindgen(js_name = useDrawnDigit)]
    pub fn use_drawn_digit(&self, levels: Vec<u8>) -> Result<(), JsError> {
        if levels.len() != PIXELS {
            return Err(js_error(format!("a drawn digit has {PIXELS} pixels, not {}", levels.len())));
        }
        let mut state = self.state.borrow_mut();
        state.x0 = levels.iter().map(|&p| p as f32 / 127.5 - 1.0).collect();
        state.elbo = None;
        Ok(())
    }

    /// Draw the chosen x_0.
    #[wasm_bindgen(js_name = drawDigit)]
    pub fn draw_digit(&self, canvas: HtmlCanvasElement) -> Result<(), JsError> {
        draw_image(&canvas, &self.state.borrow().x0)
    }

    fn check_t(&self, t: usize) -> Result<usize, JsError> {
        let total = self.timesteps();
        if !(1..=total).contains(&t) {
            return Err(js_error(format!("t = {t} is not in 1-{total}")));
        }
        Ok(t - 1)
    }

    /// Section 1: draw x_t ~ q(x_t | x_0) for the chosen digit with noise `seed`.
    #[wasm_bindgen(js_name = forwardSample)]
    pub async fn forward_sample(&self, canvas: HtmlCanvasElement, t: usize, seed: u32) -> Result<(), JsError> {
        let i = self.check_t(t)?;
        let x_t = {
            let state = self.state.borrow();
            forward_sample(&state.schedule, &state.x0, i, seed as u64, &state.backend.device)
        };
        draw_image(&canvas, &read_f32(x_t).await.map_err(js_error)?)
    }

    /// Section 1's plots: alpha_bar_t and sqrt(alpha_bar_t) (linear axis), and SNR(t) (log axis),
    /// for the linear and cosine schedules, with the current t marked.
    #[wasm_bindgen(js_name = drawScheduleCharts)]
    pub fn draw_schedule_charts(&self, alpha_canvas: HtmlCanvasElement, snr_canvas: HtmlCanvasElement, t: usize) -> Result<JsValue, JsError> {
        let i = self.check_t(t)?;
        let total = self.timesteps();
        let schedules = [NoiseSchedule::new(ScheduleKind::DDPM_LINEAR, total), NoiseSchedule::new(ScheduleKind::COSINE, total)];
        let curves: Vec<[Vec<f64>; 3]> = schedules.iter().map(schedule_curves).collect();
        let line = |name: String, color: &str, v: &[f64]| Series { name, color: color.into(), points: v.iter().enumerate().map(|(k, y)| ((k + 1) as f64, *y)).collect() };
        let t_axis = Axis::new("t", 1.0, total as f64, Scale::Linear);
        let mut series = Vec::new();
        for (k, (s, c)) in schedules.iter().zip(&curves).enumerate() {
            series.push(line(format!("ᾱ_t {}", s.kind.name()), COLORS[k], &c[0]));
            series.push(line(format!("√ᾱ_t {}", s.kind.name()), COLORS[k + 2], &c[1]));
        }
        let alpha = Chart { title: "ᾱ_t and √ᾱ_t".into(), x: t_axis.clone(), y: Axis::new("", 0.0, 1.0, Scale::Linear), series, marker: Some(t as f64) };
        draw_chart(&alpha_canvas, &alpha)?;
        let series: Vec<Series> = schedules.iter().zip(&curves).enumerate().map(|(k, (s, c))| line(format!("SNR {}", s.kind.name()), COLORS[k], &c[2])).collect();
        let snr = Chart {
            title: "SNR(t) = ᾱ_t / (1 − ᾱ_t), log scale".into(),
            y: Axis::fit("SNR", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| *v > 1e-8), Scale::Log),
            x: t_axis,
            series,
            marker: Some(t as f64),
        };
        draw_chart(&snr_canvas, &snr)?;
        // The values at t for the page to print.
        let info = js_sys::Object::new();
        for (s, c) in schedules.iter().zip(&curves) {
            let o = js_sys::Object::new();
            set(&o, "alphaBar", c[0][i].into());
            set(&o, "sqrtAlphaBar", c[1][i].into());
            set(&o, "snr", c[2][i].into());
            set(&info, s.kind.name(), o.into());
        }
        Ok(info.into())
    }

    /// Section 2: start an ELBO sweep for the chosen digit with noise draw `seed`.
    #[wasm_bindgen(js_name = elboBegin)]
    pub async fn elbo_begin(&self, seed: u32) -> Result<(), JsError> {
        let prior = {
            let state = self.state.borrow();
            prior_term(&state.schedule, &state.x0, &state.backend.device)
        };
        let prior_nats = read_f32(prior).await.map_err(js_error)?[0] as f64;
        let total = self.timesteps();
        self.state.borrow_mut().elbo = Some(ElboRun { seed: seed as u64, nats: vec![f64::NAN; total], simple: vec![f64::NAN; total], prior_nats, next: 0 });
        Ok(())
    }

    /// Compute the next batch of terms; returns how many of the T terms are done.
    #[wasm_bindgen(js_name = elboNext)]
    pub async fn elbo_next(&self) -> Result<usize, JsError> {
        let (idx, terms, simple) = {
            let state = self.state.borrow();
            let run = state.elbo.as_ref().ok_or_else(|| js_error("call elboBegin first"))?;
            let total = state.config.timesteps;
            if run.next >= total {
                return Ok(total);
            }
            let idx: Vec<usize> = (run.next..(run.next + ELBO_BATCH).min(total)).collect();
            let (terms, simple) = elbo_terms(&state.model, &state.schedule, state.config.variance, &state.x0, &idx, run.seed, NULL_CLASS, &state.backend.device);
            (idx, terms, simple)
        };
        let (terms, simple) = (read_f32(terms).await.map_err(js_error)?, read_f32(simple).await.map_err(js_error)?);
        let mut state = self.state.borrow_mut();
        let run = state.elbo.as_mut().ok_or_else(|| js_error("the ELBO sweep was reset"))?;
        for (k, &i) in idx.iter().enumerate() {
            run.nats[i] = terms[k] as f64;
            run.simple[i] = simple[k] as f64;
        }
        run.next = idx.last().unwrap() + 1;
        Ok(run.next)
    }

    /// Terms of the current sweep in bits/dim: index 0 is L_0, index t-1 is L_{t-1}; NaN where not
    /// yet computed. (For the tests and the page's table.)
    #[wasm_bindgen(js_name = elboTermsBits)]
    pub fn elbo_terms_bits(&self) -> Result<Vec<f64>, JsError> {
        let state = self.state.borrow();
        let run = state.elbo.as_ref().ok_or_else(|| js_error("no ELBO sweep yet"))?;
        Ok(run.nats.iter().map(|n| bits_per_dim(*n, PIXELS)).collect())
    }

    /// The finished sweep's totals, and its plot: each term per t in bits/dim (log axis), their
    /// running sum, and the L_simple summand for comparison.
    #[wasm_bindgen(js_name = elboSummary)]
    pub fn elbo_summary(&self, terms_canvas: HtmlCanvasElement, weights_canvas: HtmlCanvasElement) -> Result<JsValue, JsError> {
        let state = self.state.borrow();
        let run = state.elbo.as_ref().ok_or_else(|| js_error("no ELBO sweep yet"))?;
        if run.next < run.nats.len() {
            return Err(js_error(format!("the ELBO sweep has {} of {} terms", run.next, run.nats.len())));
        }
        let bits: Vec<f64> = run.nats.iter().map(|n| bits_per_dim(*n, PIXELS)).collect();
        let prior_bits = bits_per_dim(run.prior_nats, PIXELS);
        let mut running = Vec::with_capacity(bits.len());
        let mut sum = 0.0;
        for b in &bits {
            sum += b;
            running.push(sum);
        }
        let total = sum + prior_bits;
        let points = |v: &[f64]| v.iter().enumerate().map(|(k, y)| ((k + 1) as f64, *y)).collect::<Vec<_>>();
        let series = vec![
            Series { name: "L_{t−1} (L_0 at t = 1)".into(), color: COLORS[0].into(), points: points(&bits) },
            Series { name: "running sum Σ_{s≤t}".into(), color: COLORS[1].into(), points: points(&running) },
        ];
        let y = Axis::fit("bits/dim", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), Scale::Log);
        let t_axis = Axis::new("t", 1.0, bits.len() as f64, Scale::Log);
        draw_chart(&terms_canvas, &Chart { title: "ELBO terms per t (bits/dim, log–log)".into(), x: t_axis.clone(), y, series, marker: None })?;
        // L_simple weighs every t's noise error equally; the bound weighs it by lambda_t.
        let lambda: Vec<f64> = (0..bits.len()).map(|i| if i == 0 { f64::NAN } else { loss_weights(&state.schedule, state.config.variance, i)[0] }).collect();
        // lambda_t ||eps - eps_theta||^2 is nats per image; per pixel and in bits: lambda_t * simple / ln 2.
        let weighted: Vec<f64> = (0..bits.len()).map(|i| lambda[i] * run.simple[i] / std::f64::consts::LN_2).collect();
        let series = vec![
            Series { name: "‖ε − ε_θ‖² per pixel (L_simple's summand, weight 1)".into(), color: COLORS[2].into(), points: points(&run.simple) },
            Series { name: "ELBO weight λ_t of that error".into(), color: COLORS[3].into(), points: points(&lambda) },
            Series { name: "λ_t ‖ε − ε_θ‖² (bits/dim)".into(), color: COLORS[0].into(), points: points(&weighted) },
        ];
        let y = Axis::fit("", series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), Scale::Log);
        draw_chart(&weights_canvas, &Chart { title: "L_simple against the ELBO's weighting".into(), x: t_axis, y, series, marker: None })?;
        let info = js_sys::Object::new();
        set(&info, "totalBits", total.into());
        set(&info, "priorBits", prior_bits.into());
        set(&info, "decoderBits", bits[0].into());
        set(&info, "diffusionBits", (sum - bits[0]).into());
        set(&info, "simple", (run.simple.iter().sum::<f64>() / run.simple.len() as f64).into());
        Ok(info.into())
    }

    /// Sections 3 and 5 at one t: draws x_t, eps_theta, x0_theta, the score, the posterior mean
    /// and the model mean into `canvases` (an object of canvases keyed xt, eps, x0, score,
    /// posterior, model), and returns the numbers the page prints.
    #[wasm_bindgen(js_name = stepViews)]
    pub async fn step_views(&self, canvases: js_sys::Object, t: usize, seed: u32) -> Result<JsValue, JsError> {
        let i = self.check_t(t)?;
        let (stacked, term) = {
            let state = self.state.borrow();
            let v = step_views(&state.model, &state.schedule, state.config.variance, &state.x0, i, seed as u64, NULL_CLASS, &state.backend.device);
            // One readback for all ten images.
            let stacked = Tensor::cat(
                vec![v.x0, v.x_t, v.eps, v.x0_pred, v.score, v.mean_via_eps, v.mean_via_x0, v.mean_via_score, v.tweedie_x0, v.posterior_mean],
                0,
            );
            (stacked, v.term)
        };
        let all = read_f32(stacked).await.map_err(js_error)?;
        let term_nats = read_f32(term).await.map_err(js_error)?[0] as f64;
        let img = |k: usize| &all[k * PIXELS..(k + 1) * PIXELS];
        let (x0, x_t, eps, x0_pred, score, mu_eps, mu_x0, mu_score, tweedie, posterior) =
            (img(0), img(1), img(2), img(3), img(4), img(5), img(6), img(7), img(8), img(9));
        let canvas = |key: &str| -> Result<HtmlCanvasElement, JsError> {
            js_sys::Reflect::get(&canvases, &key.into()).ok().and_then(|c| c.dyn_into().ok()).ok_or_else(|| js_error(format!("no canvas '{key}'")))
        };
        let (eps_shown, eps_peak) = signed_for_display(eps);
        let (score_shown, score_peak) = signed_for_display(score);
        draw_image(&canvas("xt")?, x_t)?;
        draw_image(&canvas("eps")?, &eps_shown)?;
        draw_image(&canvas("x0")?, x0_pred)?;
        draw_image(&canvas("score")?, &score_shown)?;
        draw_image(&canvas("posterior")?, posterior)?;
        draw_image(&canvas("model")?, mu_eps)?;
        let state = self.state.borrow();
        let [w_eps, w_x0, w_score] = loss_weights(&state.schedule, state.config.variance, i);
        let info = js_sys::Object::new();
        set(&info, "t", t.into());
        set(&info, "meanDiffX0Route", max_abs_diff(mu_eps, mu_x0).into());
        set(&info, "meanDiffScoreRoute", max_abs_diff(mu_eps, mu_score).into());
        set(&info, "routeMaxDiff", max_abs_diff(mu_eps, mu_x0).max(max_abs_diff(mu_eps, mu_score)).max(max_abs_diff(mu_x0, mu_score)).into());
        set(&info, "tweedieVsPredictedX0", max_abs_diff(tweedie, x0_pred).into());
        let rmse = (tweedie.iter().zip(x0).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / PIXELS as f64).sqrt();
        set(&info, "tweedieRmse", rmse.into());
        set(&info, "epsPeak", eps_peak.into());
        set(&info, "scorePeak", score_peak.into());
        set(&info, "weightEps", w_eps.into());
        set(&info, "weightX0", w_x0.into());
        set(&info, "weightScore", w_score.into());
        set(&info, "isDecoder", (i == 0).into());
        set(&info, "termNats", term_nats.into());
        set(&info, "termBits", bits_per_dim(term_nats, PIXELS).into());
        set(&info, "meanDistance", (mu_eps.iter().zip(posterior).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>()).sqrt().into());
        set(&info, "sigma2", state.schedule.reverse_variance(state.config.variance, i).into());
        set(&info, "posteriorVariance", state.schedule.posterior_variance[i].into());
        Ok(info.into())
    }

    /// Section 4: the RMSE of Tweedie's estimate of x_0 against the true x_0 at 25 timesteps
    /// (one batched model call), plotted against t with `t` marked. Returns {t, rmse}.
    #[wasm_bindgen(js_name = tweedieCurve)]
    pub async fn tweedie_curve(&self, canvas: HtmlCanvasElement, seed: u32, t: usize) -> Result<JsValue, JsError> {
        self.check_t(t)?;
        let total = self.timesteps();
        // Log-spaced, so the small-t end, where the estimate is sharp, is resolved.
        let mut idx: Vec<usize> = (0..TWEEDIE_POINTS).map(|k| ((total as f64).powf(k as f64 / (TWEEDIE_POINTS - 1) as f64).round() as usize).clamp(1, total) - 1).collect();
        idx.dedup();
        let errors = {
            let state = self.state.borrow();
            tweedie_error(&state.model, &state.schedule, &state.x0, &idx, seed as u64, NULL_CLASS, &state.backend.device)
        };
        let rmse: Vec<f64> = read_f32(errors).await.map_err(js_error)?.iter().map(|v| *v as f64).collect();
        let ts: Vec<f64> = idx.iter().map(|i| (i + 1) as f64).collect();
        let series = vec![Series { name: "RMSE of Tweedie's x̂_0 against x_0".into(), color: COLORS[0].into(), points: ts.iter().copied().zip(rmse.iter().copied()).collect() }];
        let chart = Chart {
            title: "Tweedie's estimate E[x_0 | x_t] against the true x_0".into(),
            x: Axis::new("t", 1.0, total as f64, Scale::Log),
            y: Axis::fit("RMSE", rmse.iter().copied(), Scale::Linear),
            series,
            marker: Some(t as f64),
        };
        draw_chart(&canvas, &chart)?;
        let info = js_sys::Object::new();
        set(&info, "t", array(&ts));
        set(&info, "rmse", array(&rmse));
        Ok(info.into())
    }

    /// Section 4's 2-D example at the current t (alpha_bar of the model's schedule): the score
    /// implied by Tweedie's formula from the exact posterior mean (left) and the closed-form score
    /// (right), over the diffused density. Returns the largest difference between the two fields.
    #[wasm_bindgen(js_name = drawToyScores)]
    pub fn draw_toy_scores(&self, formula_canvas: HtmlCanvasElement, exact_canvas: HtmlCanvasElement, t: usize) -> Result<f64, JsError> {
        let i = self.check_t(t)?;
        let a = self.state.borrow().schedule.alpha_bar[i];
        let m = Mixture2d::example();
        let mut worst = 0.0f64;
        for (canvas, field) in [(formula_canvas, 0), (exact_canvas, 1)] {
            let score = |x: [f64; 2]| if field == 0 { m.score_via_tweedie(x, a) } else { m.score(x, a) };
            draw_field(&canvas, &m, a, &score).map_err(js_error)?;
        }
        for gx in 0..GRID {
            for gy in 0..GRID {
                let x = grid_point(gx, gy);
                let (f, e) = (m.score_via_tweedie(x, a), m.score(x, a));
                worst = worst.max((f[0] - e[0]).abs()).max((f[1] - e[1]).abs());
            }
        }
        Ok(worst)
    }
}

const GRID: usize = 15;
const TOY_EXTENT: f64 = 2.5;

fn grid_point(gx: usize, gy: usize) -> [f64; 2] {
    let step = 2.0 * TOY_EXTENT / GRID as f64;
    [-TOY_EXTENT + (gx as f64 + 0.5) * step, -TOY_EXTENT + (gy as f64 + 0.5) * step]
}

/// The diffused density as a grey background and the score field as arrows.
fn draw_field(canvas: &HtmlCanvasElement, m: &Mixture2d, a: f64, score: &dyn Fn([f64; 2]) -> [f64; 2]) -> Result<(), String> {
    let size = 96usize;
    let mut density = vec![0f64; size * size];
    for py in 0..size {
        for px in 0..size {
            let x = [-TOY_EXTENT + (px as f64 + 0.5) / size as f64 * 2.0 * TOY_EXTENT, TOY_EXTENT - (py as f64 + 0.5) / size as f64 * 2.0 * TOY_EXTENT];
            density[py * size + px] = m.log_density(x, a).exp();
        }
    }
    let peak = density.iter().cloned().fold(1e-300, f64::max);
    let mut rgba = vec![255u8; size * size * 4];
    for (k, d) in density.iter().enumerate() {
        let v = (255.0 - 120.0 * (d / peak).sqrt()) as u8;
        rgba[k * 4..k * 4 + 3].copy_from_slice(&[v, v, 255]);
    }
    // Paint the density small, then scale the canvas up for the arrows.
    draw_rgba(canvas, size, size, &rgba)?;
    let ctx = context_2d(canvas)?;
    let image = ctx.get_image_data(0.0, 0.0, size as f64, size as f64).map_err(|e| format!("{e:?}"))?;
    let side = 300.0;
    canvas.set_width(side as u32);
    canvas.set_height(side as u32);
    let scratch: HtmlCanvasElement = web_sys::window().and_then(|w| w.document()).ok_or("no document")?.create_element("canvas").map_err(|e| format!("{e:?}"))?.dyn_into().map_err(|_| "not a canvas")?;
    scratch.set_width(size as u32);
    scratch.set_height(size as u32);
    context_2d(&scratch)?.put_image_data(&image, 0.0, 0.0).map_err(|e| format!("{e:?}"))?;
    ctx.draw_image_with_html_canvas_element_and_dw_and_dh(&scratch, 0.0, 0.0, side, side).map_err(|e| format!("{e:?}"))?;
    let to_px = |x: [f64; 2]| ((x[0] + TOY_EXTENT) / (2.0 * TOY_EXTENT) * side, (TOY_EXTENT - x[1]) / (2.0 * TOY_EXTENT) * side);
    // One scale for every arrow (the longest spans one grid cell), so lengths compare.
    let longest = (0..GRID * GRID).map(|k| score(grid_point(k % GRID, k / GRID))).map(|s| s[0].hypot(s[1])).fold(1e-12, f64::max);
    let cell = side / GRID as f64;
    ctx.set_stroke_style_str("#222");
    ctx.set_line_width(1.2);
    for k in 0..GRID * GRID {
        let x = grid_point(k % GRID, k / GRID);
        let s = score(x);
        let (x0, y0) = to_px(x);
        let (dx, dy) = (s[0] / longest * cell * 0.9, -s[1] / longest * cell * 0.9);
        arrow(&ctx, x0, y0, x0 + dx, y0 + dy);
    }
    Ok(())
}

fn arrow(ctx: &CanvasRenderingContext2d, x0: f64, y0: f64, x1: f64, y1: f64) {
    let (dx, dy) = (x1 - x0, y1 - y0);
    let len = dx.hypot(dy);
    ctx.begin_path();
    ctx.move_to(x0, y0);
    ctx.line_to(x1, y1);
    if len > 3.0 {
        let (ux, uy) = (dx / len, dy / len);
        let head = len.min(12.0) * 0.35;
        ctx.move_to(x1, y1);
        ctx.line_to(x1 - head * (ux - 0.5 * uy), y1 - head * (uy + 0.5 * ux));
        ctx.move_to(x1, y1);
        ctx.line_to(x1 - head * (ux + 0.5 * uy), y1 - head * (uy - 0.5 * ux));
    }
    ctx.stroke();
}

/// Stroke a chart: frame, ticks with labels, axis labels, title, lines, legend, marker.
pub fn draw_chart(canvas: &HtmlCanvasElement, chart: &Chart) -> Result<(), JsError> {
    let ctx = context_2d(canvas).map_err(js_error)?;
    let (w, h) = (canvas.width() as f64, canvas.height() as f64);
    let frame = Frame::inside(w, h);
    ctx.set_fill_style_str("#fff");
    ctx.fill_rect(0.0, 0.0, w, h);
    ctx.set_font("12px system-ui, sans-serif");
    ctx.set_fill_style_str("#333");
    ctx.set_stroke_style_str("#bbb");
    ctx.set_line_width(1.0);
    ctx.stroke_rect(frame.left, frame.top, frame.width, frame.height);
    for v in chart.x.ticks() {
        let (px, _) = chart.to_pixel(&frame, v, chart.y.min);
        ctx.set_stroke_style_str("#eee");
        line(&ctx, px, frame.top, px, frame.top + frame.height);
        ctx.set_text_align("center");
        let _ = ctx.fill_text(&format_tick(v), px, frame.top + frame.height + 14.0);
    }
    for v in chart.y.ticks() {
        let (_, py) = chart.to_pixel(&frame, chart.x.min, v);
        ctx.set_stroke_style_str("#eee");
        line(&ctx, frame.left, py, frame.left + frame.width, py);
        ctx.set_text_align("right");
        let _ = ctx.fill_text(&format_tick(v), frame.left - 4.0, py + 4.0);
    }
    ctx.set_text_align("center");
    let _ = ctx.fill_text(&chart.x.label, frame.left + frame.width / 2.0, frame.top + frame.height + 30.0);
    let _ = ctx.fill_text(&chart.title, frame.left + frame.width / 2.0, 15.0);
    ctx.save();
    let _ = ctx.translate(12.0, frame.top + frame.height / 2.0);
    let _ = ctx.rotate(-std::f64::consts::FRAC_PI_2);
    let _ = ctx.fill_text(&chart.y.label, 0.0, 0.0);
    ctx.restore();
    // Lines, clipped to the frame.
    ctx.save();
    ctx.begin_path();
    ctx.rect(frame.left, frame.top, frame.width, frame.height);
    ctx.clip();
    ctx.set_line_width(1.6);
    for (k, points) in chart.polylines(&frame) {
        ctx.set_stroke_style_str(&chart.series[k].color);
        ctx.begin_path();
        for (j, (x, y)) in points.iter().enumerate() {
            if j == 0 { ctx.move_to(*x, *y) } else { ctx.line_to(*x, *y) }
        }
        if points.len() == 1 {
            ctx.arc(points[0].0, points[0].1, 2.0, 0.0, std::f64::consts::TAU).ok();
        }
        ctx.stroke();
    }
    if let Some(m) = chart.marker {
        let (px, _) = chart.to_pixel(&frame, m, chart.y.min);
        ctx.set_stroke_style_str("#000");
        ctx.set_line_width(1.0);
        let _ = ctx.set_line_dash(&js_sys::Array::of2(&4.into(), &3.into()));
        line(&ctx, px, frame.top, px, frame.top + frame.height);
        let _ = ctx.set_line_dash(&js_sys::Array::new());
    }
    ctx.restore();
    // Legend, bottom row under the axis label.
    ctx.set_text_align("left");
    let mut x = frame.left;
    for s in &chart.series {
        ctx.set_fill_style_str(&s.color);
        ctx.fill_rect(x, h - 10.0, 14.0, 3.0);
        ctx.set_fill_style_str("#333");
        let _ = ctx.fill_text(&s.name, x + 18.0, h - 5.0);
        x += 24.0 + ctx.measure_text(&s.name).map(|m| m.width()).unwrap_or(80.0);
    }
    Ok(())
}

fn line(ctx: &CanvasRenderingContext2d, x0: f64, y0: f64, x1: f64, y1: f64) {
    ctx.begin_path();
    ctx.move_to(x0, y0);
    ctx.line_to(x1, y1);
    ctx.stroke();
}
