//! What a reader can set on the sampling page, each rule defined once: the ranges and defaults
//! ([`Limits`], which the page reads to build its controls), the URL rules ([`Controls::parse`],
//! used for the address bar and for the form alike), and the settings a run is made of
//! ([`Controls::settings`]). Platform-free, so every rule is tested natively.

use serde::{Deserialize, Serialize};

use crate::app::config::DdpmConfig;
use crate::diffusion::variance::VarianceChoice;
use crate::diffusion::sampling::{ClassChoice, Method, SampleSettings};

/// Which backend the reader asked for (`?backend=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendPreference {
    Auto,
    #[serde(rename = "webgpu")]
    WebGpu,
    Cpu,
}

impl BackendPreference {
    /// Parse the `backend` URL parameter; missing or empty means auto.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim).unwrap_or("") {
            "" | "auto" => Ok(Self::Auto),
            "webgpu" => Ok(Self::WebGpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!("backend={} is not cpu or webgpu; chose automatically", echo(other))),
        }
    }
}

/// Longest echo of a reader's value in a message: a hostile URL cannot flood the page.
pub const ECHO_CHARS: usize = 40;

/// A numeric control: its range, its slider step and its default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NumberLimit {
    pub min: f64,
    pub max: f64,
    pub step: f64,
    pub default: f64,
    /// Only whole numbers.
    pub integer: bool,
}

impl NumberLimit {
    pub const fn real(min: f64, max: f64, step: f64, default: f64) -> Self {
        Self { min, max, step, default, integer: false }
    }
    pub const fn whole(min: f64, max: f64, default: f64) -> Self {
        Self { min, max, step: 1.0, default, integer: true }
    }

    /// The allowed value nearest `value`: within the range and on the step's grid from `min`.
    pub fn nearest(&self, value: f64) -> f64 {
        let value = if value.is_finite() { value.clamp(self.min, self.max) } else { self.default };
        let on_grid = self.min + ((value - self.min) / self.step).round() * self.step;
        // A whole number of millionths, so that the value prints as it reads.
        (on_grid.min(self.max) * 1e6).round() / 1e6
    }

    /// The value if it is a number within the limit, else why not.
    pub fn check(&self, name: &str, raw: &str) -> Result<f64, String> {
        let kind = if self.integer { "a whole number" } else { "a number" };
        let problem = || format!("{name}={} is not {kind} from {} to {}", echo(raw), self.min, self.max);
        let value: f64 = raw.trim().parse().map_err(|_| problem())?;
        if !value.is_finite() || value < self.min || value > self.max || (self.integer && value.fract() != 0.0) {
            return Err(problem());
        }
        Ok(value)
    }
}

/// Every control's limits and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub guidance: NumberLimit,
    /// Steps of DDIM and DPM-Solver++ (DDPM always takes all T).
    pub steps: NumberLimit,
    pub eta: NumberLimit,
    pub seed: NumberLimit,
    pub every: NumberLimit,
    /// CPU workers in the pool (`?workers=`); the page's default comes from the browser's cores.
    pub workers: NumberLimit,
    /// The samplers offered, in the page's order.
    pub samplers: Vec<SamplerChoice>,
    /// The grid sizes offered, and the default one.
    pub grids: Vec<usize>,
    pub default_grid: usize,
    /// Default pool size is the browser's core count, capped here.
    pub default_workers_cap: usize,
}

impl Limits {
    /// The limits for a model with `timesteps` diffusion steps and default guidance `guidance`.
    pub fn new(timesteps: usize, guidance: f64) -> Self {
        Self {
            guidance: NumberLimit::real(0.0, 10.0, 0.5, guidance),
            steps: NumberLimit::whole(2.0, timesteps as f64, 50.0),
            eta: NumberLimit::real(0.0, 1.0, 0.1, 0.0),
            seed: NumberLimit::whole(0.0, u32::MAX as f64, 1.0),
            every: NumberLimit::whole(1.0, timesteps as f64, 1.0),
            workers: NumberLimit::whole(1.0, 16.0, 4.0),
            samplers: SamplerKind::ALL.iter().map(|&kind| SamplerChoice::of(kind, timesteps)).collect(),
            grids: vec![1, 4, 16, 64],
            default_grid: 4,
            default_workers_cap: 8,
        }
    }
}

/// The sampler a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SamplerKind {
    /// Ancestral sampling through all T steps (Ho et al., Algorithm 2).
    #[serde(rename = "ddpm")]
    Ddpm,
    /// DDIM (Song et al.) over fewer steps, with stochasticity eta.
    #[serde(rename = "ddim")]
    Ddim,
    /// DPM-Solver++(2M) (Lu et al.): second order, deterministic, over the same steps as DDIM.
    #[serde(rename = "dpm2m")]
    DpmSolver2M,
    /// Ancestral sampling with the variance the network predicts (Nichol & Dhariwal 2021).
    #[serde(rename = "ddpm-learned")]
    DdpmLearned,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 4] = [SamplerKind::Ddim, SamplerKind::DpmSolver2M, SamplerKind::Ddpm, SamplerKind::DdpmLearned];

    /// The value in the URL and the form (the same as its serde name).
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::DpmSolver2M => "dpm2m",
            SamplerKind::DdpmLearned => "ddpm-learned",
        }
    }

    /// Whether the sampler takes every one of the T steps (so the step count does not apply).
    pub fn takes_every_step(self) -> bool {
        matches!(self, SamplerKind::Ddpm | SamplerKind::DdpmLearned)
    }
}

/// How the page offers a sampler: its label and which controls apply to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerChoice {
    pub kind: SamplerKind,
    pub label: String,
    /// One sentence of help shown when it is chosen.
    pub help: String,
    /// Whether the step count applies (DDPM always takes all T).
    pub uses_steps: bool,
    /// Whether eta applies (only DDIM has it).
    pub uses_eta: bool,
}

impl SamplerChoice {
    fn of(kind: SamplerKind, timesteps: usize) -> Self {
        let (label, help) = match kind {
            SamplerKind::Ddim => ("DDIM (fewer steps)".to_string(), "Skips steps on the same model; with randomness 0 it follows the probability-flow ODE, one first-order step at a time.".to_string()),
            SamplerKind::DpmSolver2M => (
                "DPM-Solver++ 2M (second order)".to_string(),
                "Also solves the probability-flow ODE, but reuses the previous step's guess of x₀ for a second-order step: as good as DDIM in fewer steps.".to_string(),
            ),
            SamplerKind::Ddpm => (
                format!("DDPM (all {timesteps} steps)"),
                "Follows the trained reverse process step by step, adding fresh noise each time (the reverse SDE).".to_string(),
            ),
            SamplerKind::DdpmLearned => (
                format!("DDPM, learned variance (all {timesteps} steps)"),
                "The same reverse process, with the noise of each step scaled by the variance the network predicts per pixel (Improved DDPM) instead of βₜ.".to_string(),
            ),
        };
        Self { kind, label, help, uses_steps: !kind.takes_every_step(), uses_eta: kind == SamplerKind::Ddim }
    }
}

/// What the canvas shows at each drawn step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum View {
    /// The current state x_{t-1}.
    #[serde(rename = "xt")]
    State,
    /// The model's estimate of x_0.
    #[serde(rename = "x0")]
    PredictedX0,
    /// The predicted noise eps (shown scaled into [-1, 1]).
    #[serde(rename = "eps")]
    PredictedNoise,
}

/// Every control of the sampling page, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Controls {
    pub class: ClassChoice,
    pub guidance: f64,
    pub sampler: SamplerKind,
    /// Steps of DDIM and DPM-Solver++ (DDPM always takes all T).
    pub steps: usize,
    pub eta: f64,
    pub seed: u64,
    /// Images in the grid.
    pub grid: usize,
    /// Draw every k-th step.
    pub every: usize,
    pub view: View,
}

/// A control's value in the URL and in the form: "any", "none" or a digit.
pub fn class_name(class: ClassChoice) -> String {
    match class {
        ClassChoice::AnyDigit => "any".into(),
        ClassChoice::Unconditional => "none".into(),
        ClassChoice::Digit(d) => d.to_string(),
    }
}

/// `raw` cut to [`ECHO_CHARS`] characters with an ellipsis, for messages.
pub fn echo(raw: &str) -> String {
    let mut chars = raw.chars();
    let head: String = chars.by_ref().take(ECHO_CHARS).collect();
    if chars.next().is_some() { format!("{head}…") } else { head }
}

impl Controls {
    pub fn defaults(limits: &Limits) -> Self {
        Self {
            class: ClassChoice::AnyDigit,
            guidance: limits.guidance.default,
            sampler: SamplerKind::Ddim,
            steps: limits.steps.default as usize,
            eta: limits.eta.default,
            seed: limits.seed.default as u64,
            grid: limits.default_grid,
            every: limits.every.default as usize,
            view: View::State,
        }
    }

    /// Read controls from name/value pairs (the URL's query, or the form's fields). A missing
    /// value keeps its default; a bad one keeps its default and adds a message. Other names are
    /// ignored (the page's own `start`, `backend`, `workers`).
    pub fn parse(pairs: &[(String, String)], limits: &Limits) -> (Self, Vec<String>) {
        let mut c = Self::defaults(limits);
        let mut problems = Vec::new();
        let mut sampler_named = false;
        for (name, raw) in pairs {
            let result: Result<(), String> = match name.as_str() {
                "digit" => match raw.trim() {
                    "any" => Ok(c.class = ClassChoice::AnyDigit),
                    "none" => Ok(c.class = ClassChoice::Unconditional),
                    d if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => Ok(c.class = ClassChoice::Digit(d.parse().unwrap())),
                    _ => Err(format!("digit={} is not any, none or 0-9", echo(raw))),
                },
                "guidance" => limits.guidance.check(name, raw).map(|v| c.guidance = v),
                "sampler" => match SamplerKind::ALL.iter().find(|k| k.name() == raw.trim()) {
                    Some(&kind) => Ok(c.sampler = kind),
                    None => {
                        let names: Vec<&str> = SamplerKind::ALL.iter().map(|k| k.name()).collect();
                        Err(format!("sampler={} is not one of {}", echo(raw), names.join(", ")))
                    }
                }
                .map(|()| sampler_named = true),
                // Links from before the sampler had its own control said steps=0 for DDPM.
                "steps" if raw.trim() == "0" => {
                    if !sampler_named {
                        c.sampler = SamplerKind::Ddpm;
                    }
                    Ok(())
                }
                "steps" => limits.steps.check(name, raw).map(|v| c.steps = v as usize),
                "eta" => limits.eta.check(name, raw).map(|v| c.eta = v),
                "seed" => limits.seed.check(name, raw).map(|v| c.seed = v as u64),
                "count" => match raw.trim().parse::<usize>() {
                    Ok(n) if limits.grids.contains(&n) => Ok(c.grid = n),
                    _ => Err(format!("count={} is not one of {:?}", echo(raw), limits.grids)),
                },
                "every" => limits.every.check(name, raw).map(|v| c.every = v as usize),
                "view" => match raw.trim() {
                    "xt" => Ok(c.view = View::State),
                    "x0" => Ok(c.view = View::PredictedX0),
                    "eps" => Ok(c.view = View::PredictedNoise),
                    _ => Err(format!("view={} is not xt, x0 or eps", echo(raw))),
                },
                _ => Ok(()),
            };
            if let Err(problem) = result {
                problems.push(problem);
            }
        }
        (c, problems)
    }

    /// The controls as name/value pairs, for a shareable URL; `parse` reads them back unchanged.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let view = match self.view {
            View::State => "xt",
            View::PredictedX0 => "x0",
            View::PredictedNoise => "eps",
        };
        let sampler = self.sampler.name();
        [
            ("digit", class_name(self.class)),
            ("guidance", self.guidance.to_string()),
            ("sampler", sampler.into()),
            ("steps", self.steps.to_string()),
            ("eta", self.eta.to_string()),
            ("seed", self.seed.to_string()),
            ("count", self.grid.to_string()),
            ("every", self.every.to_string()),
            ("view", view.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Checks values that came typed (not through `parse`) against the limits.
    pub fn check(&self, limits: &Limits) -> Result<(), String> {
        let (back, problems) = Self::parse(&self.to_pairs(), limits);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        if back != *self {
            return Err("the controls do not survive a round trip through their own rules".into());
        }
        Ok(())
    }

    /// The sampler settings for cells `first_cell .. first_cell + count` of this run.
    /// The model's `config` supplies the DDPM variance and where guidance applies.
    pub fn settings(&self, config: &DdpmConfig, first_cell: usize, count: usize) -> SampleSettings {
        let method = match self.sampler {
            SamplerKind::Ddpm => Method::Ddpm { variance: config.variance.into() },
            SamplerKind::DdpmLearned => Method::Ddpm { variance: VarianceChoice::Learned },
            SamplerKind::Ddim => Method::Ddim { steps: self.steps, eta: self.eta },
            SamplerKind::DpmSolver2M => Method::DpmSolver2M { steps: self.steps },
        };
        SampleSettings {
            class: self.class,
            guidance: self.guidance,
            guidance_interval: config.guidance_interval,
            method,
            seed: self.seed,
            count,
            first_cell,
            clip_x0: true,
        }
    }
}

/// The explainer page's URL, read by the same rules as the sampling page's: which shipped digit,
/// which t, which noise seed, and the page options (backend, CPU workers). A bad value keeps its
/// default and adds a bounded message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainerQuery {
    /// Index of the shipped held-out example digit.
    pub digit: usize,
    pub t: usize,
    pub seed: u64,
    pub backend: BackendPreference,
    pub workers: Option<usize>,
    pub problems: Vec<String>,
}

impl ExplainerQuery {
    /// The t the page opens at.
    pub const DEFAULT_T: usize = 100;

    /// The backend the URL asks for (automatic when it names none or a bad one; `parse` reports it).
    pub fn backend_of(pairs: &[(String, String)]) -> BackendPreference {
        pairs
            .iter()
            .filter(|(name, _)| name == "backend")
            .filter_map(|(_, raw)| BackendPreference::parse(Some(raw)).ok())
            .last()
            .unwrap_or(BackendPreference::Auto)
    }

    pub fn parse(pairs: &[(String, String)], timesteps: usize, example_digits: usize, limits: &Limits) -> Self {
        let digit_rule = NumberLimit::whole(0.0, example_digits.saturating_sub(1) as f64, 0.0);
        let t_rule = NumberLimit::whole(1.0, timesteps as f64, Self::DEFAULT_T.min(timesteps) as f64);
        let mut q = Self {
            digit: digit_rule.default as usize,
            t: t_rule.default as usize,
            seed: limits.seed.default as u64,
            backend: BackendPreference::Auto,
            workers: None,
            problems: Vec::new(),
        };
        for (name, raw) in pairs {
            let result = match name.as_str() {
                "digit" => digit_rule.check(name, raw).map(|v| q.digit = v as usize),
                "t" => t_rule.check(name, raw).map(|v| q.t = v as usize),
                "seed" => limits.seed.check(name, raw).map(|v| q.seed = v as u64),
                "backend" => BackendPreference::parse(Some(raw)).map(|b| q.backend = b),
                "workers" => limits.workers.check(name, raw).map(|v| q.workers = Some(v as usize)),
                _ => Ok(()),
            };
            if let Err(problem) = result {
                q.problems.push(problem);
            }
        }
        q
    }
}
