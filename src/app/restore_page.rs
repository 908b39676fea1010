//! The restore page's contract: every control's range and default ([`RestoreLimits`], read by the
//! page to build its controls), the URL and form rules ([`RestoreControls::parse`]), the settings a
//! run is made of ([`RestoreControls::settings`]), and the typed messages between the page and its
//! worker ([`RestoreRequest`] / [`RestoreReply`]). Platform-free, so every rule is tested natively.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::app::controls::{BackendPreference, NumberLimit, echo};
use crate::app::protocol::{BackendInfo, WeightFiles};
use crate::restore::damage::Damage;
pub use crate::restore::operation::Measure;
use crate::restore::evaluation::RestoreTable;
use crate::restore::operation::{Noise, Operation, RestoreSettings, Task};

/// Every control's limits and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreLimits {
    /// Which shipped held-out digit (index into `digits.json`).
    pub digit: NumberLimit,
    pub guidance: NumberLimit,
    pub steps: NumberLimit,
    pub seed: NumberLimit,
    pub jump: NumberLimit,
    pub resamplings: NumberLimit,
    /// Denoising: the noise's standard deviation in the model's space (2 = black to white).
    pub noise: NumberLimit,
    pub samples: NumberLimit,
    /// Sketch to digit: t_0 as a share of T.
    pub strength: NumberLimit,
    pub frames: NumberLimit,
    pub factors: Vec<usize>,
    pub default_factor: usize,
    pub operations: Vec<Operation>,
    pub presets: Vec<PresetChoice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetChoice {
    pub preset: Damage,
    pub key: String,
    pub label: String,
}

impl RestoreLimits {
    /// For a model with `timesteps` steps and `digits` shipped example digits.
    pub fn new(timesteps: usize, digits: usize, guidance: f64) -> Self {
        Self {
            digit: NumberLimit::whole(0.0, digits.saturating_sub(1) as f64, 0.0),
            guidance: NumberLimit::real(0.0, 5.0, 0.5, guidance),
            steps: NumberLimit::whole(5.0, timesteps.min(250) as f64, 50.0),
            seed: NumberLimit::whole(0.0, u32::MAX as f64, 1.0),
            jump: NumberLimit::whole(1.0, 25.0, 5.0),
            resamplings: NumberLimit::whole(1.0, 10.0, 3.0),
            noise: NumberLimit::real(0.05, 1.5, 0.05, 0.5),
            samples: NumberLimit::whole(1.0, 8.0, 4.0),
            strength: NumberLimit::real(0.1, 1.0, 0.05, 0.5),
            frames: NumberLimit::whole(3.0, 11.0, 7.0),
            factors: vec![2, 4],
            default_factor: 4,
            operations: Operation::ALL.to_vec(),
            presets: Damage::ALL.iter().map(|&d| PresetChoice { preset: d, key: d.key().into(), label: d.label().into() }).collect(),
        }
    }
}

/// What a reader can set on the restore page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreControls {
    pub operation: Operation,
    pub digit: usize,
    /// Inversion's second digit.
    pub second: usize,
    /// Condition on this digit (`None`: any digit, the unconditional model).
    pub class: Option<usize>,
    pub guidance: f64,
    pub steps: usize,
    pub seed: u64,
    pub preset: Damage,
    pub jump: usize,
    pub resamplings: usize,
    pub noise: f64,
    pub samples: usize,
    pub factor: usize,
    pub strength: f64,
    pub frames: usize,
}

impl RestoreControls {
    pub fn defaults(limits: &RestoreLimits) -> Self {
        Self {
            operation: Operation::Inpaint,
            digit: limits.digit.default as usize,
            second: (limits.digit.max as usize).min(1),
            class: None,
            guidance: limits.guidance.default,
            steps: limits.steps.default as usize,
            seed: limits.seed.default as u64,
            preset: Damage::LeftHalf,
            jump: limits.jump.default as usize,
            resamplings: limits.resamplings.default as usize,
            noise: limits.noise.default,
            samples: limits.samples.default as usize,
            factor: limits.default_factor,
            strength: limits.strength.default,
            frames: limits.frames.default as usize,
        }
    }

    /// Read controls from name/value pairs (the URL, or the form). A bad value keeps its default
    /// and adds a bounded message; other names are ignored.
    pub fn parse(pairs: &[(String, String)], limits: &RestoreLimits) -> (Self, Vec<String>) {
        let mut c = Self::defaults(limits);
        let mut problems = Vec::new();
        for (name, raw) in pairs {
            let result: Result<(), String> = match name.as_str() {
                "operation" => Operation::parse(raw).map(|o| c.operation = o).ok_or_else(|| {
                    let keys: Vec<&str> = Operation::ALL.iter().map(|o| o.key()).collect();
                    format!("operation={} is not one of {}", echo(raw), keys.join(", "))
                }),
                "digit" => limits.digit.check(name, raw).map(|v| c.digit = v as usize),
                "second" => limits.digit.check(name, raw).map(|v| c.second = v as usize),
                "class" => match raw.trim() {
                    "any" => Ok(c.class = None),
                    d if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => Ok(c.class = Some(d.parse().unwrap())),
                    _ => Err(format!("class={} is not any or 0-9", echo(raw))),
                },
                "guidance" => limits.guidance.check(name, raw).map(|v| c.guidance = v),
                "steps" => limits.steps.check(name, raw).map(|v| c.steps = v as usize),
                "seed" => limits.seed.check(name, raw).map(|v| c.seed = v as u64),
                "preset" => Damage::parse(raw).map(|d| c.preset = d).ok_or_else(|| {
                    let keys: Vec<&str> = Damage::ALL.iter().map(|d| d.key()).collect();
                    format!("preset={} is not one of {}", echo(raw), keys.join(", "))
                }),
                "jump" => limits.jump.check(name, raw).map(|v| c.jump = v as usize),
                "resamplings" => limits.resamplings.check(name, raw).map(|v| c.resamplings = v as usize),
                "noise" => limits.noise.check(name, raw).map(|v| c.noise = v),
                "samples" => limits.samples.check(name, raw).map(|v| c.samples = v as usize),
                "factor" => match raw.trim().parse::<usize>() {
                    Ok(f) if limits.factors.contains(&f) => Ok(c.factor = f),
                    _ => Err(format!("factor={} is not one of {:?}", echo(raw), limits.factors)),
                },
                "strength" => limits.strength.check(name, raw).map(|v| c.strength = v),
                "frames" => limits.frames.check(name, raw).map(|v| c.frames = v as usize),
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
        [
            ("operation", self.operation.key().to_string()),
            ("digit", self.digit.to_string()),
            ("second", self.second.to_string()),
            ("class", self.class.map_or("any".into(), |d| d.to_string())),
            ("guidance", self.guidance.to_string()),
            ("steps", self.steps.to_string()),
            ("seed", self.seed.to_string()),
            ("preset", self.preset.key().to_string()),
            ("jump", self.jump.to_string()),
            ("resamplings", self.resamplings.to_string()),
            ("noise", self.noise.to_string()),
            ("samples", self.samples.to_string()),
            ("factor", self.factor.to_string()),
            ("strength", self.strength.to_string()),
            ("frames", self.frames.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The run these controls describe. `mask`: a drawn known-pixel mask (1 known) that replaces
    /// the preset's; `other`: inversion's second image.
    pub fn settings(&self, mask: Option<Vec<f32>>, other: Vec<f32>) -> RestoreSettings {
        let task = match self.operation {
            Operation::Inpaint => Task::Inpaint { mask: mask.unwrap_or_else(|| self.preset.mask(self.seed)), jump: self.jump, resamplings: self.resamplings },
            Operation::Denoise => Task::Denoise { sigma: self.noise, samples: self.samples, noise: Noise::Added },
            Operation::Superres => Task::Superres { factor: self.factor },
            Operation::Sketch => Task::Sketch { strength: self.strength },
            Operation::Invert => Task::Invert { other, frames: self.frames },
        };
        RestoreSettings { task, class: self.class, guidance: self.guidance, steps: self.steps, seed: self.seed }
    }
}

/// The page's URL read: the controls, the backend, `start=1`, and one message per bad value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreQuery {
    pub controls: RestoreControls,
    pub backend: BackendPreference,
    pub start: bool,
    pub problems: Vec<String>,
    /// The controls as the URL should now read.
    pub query: Vec<(String, String)>,
}

impl RestoreQuery {
    pub fn parse(pairs: &[(String, String)], limits: &RestoreLimits) -> Self {
        let (controls, mut problems) = RestoreControls::parse(pairs, limits);
        let mut backend = BackendPreference::Auto;
        let mut start = false;
        for (name, raw) in pairs {
            match name.as_str() {
                "backend" => match BackendPreference::parse(Some(raw)) {
                    Ok(b) => backend = b,
                    Err(e) => problems.push(e),
                },
                "start" => start = raw.trim() == "1",
                _ => {}
            }
        }
        let query = controls.to_pairs();
        Self { controls, backend, start, problems, query }
    }
}

/// An image for the page: 28x28 RGBA, or a strip of several side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgba: ByteBuf,
}

/// Where a run's starting image comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The shipped held-out digit the controls name.
    Shipped,
    /// The reader's drawing on the pad: 784 grey levels.
    Drawn { levels: ByteBuf },
    /// A picture the reader uploaded, reduced by the page to 784 grey levels. Denoising takes it
    /// as already noisy (no noise is added); the other operations start from it as from a drawing.
    Uploaded { levels: ByteBuf },
}

/// Requests from the restore page to its worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RestoreRequest {
    /// Open the backend and the weights; `digits` is `digits.json`.
    Init { query: Vec<(String, String)>, files: WeightFiles, digits: String },
    Parse { pairs: Vec<(String, String)> },
    /// The starting image of a run for these controls, its damaged / noisy / low-resolution
    /// input, and the preset's mask, for the page to show and edit.
    Prepare { controls: RestoreControls, source: Source },
    /// Begin a run; `mask`: the reader's brush mask as 784 bytes (1 known, 0 erased), replacing
    /// the preset's.
    Begin { controls: RestoreControls, mask: Option<ByteBuf>, source: Source },
    /// One move; `draw`: read back and send the frame; `view_x0`: show x_0's estimate, not x_t.
    Step { draw: bool, view_x0: bool },
    /// The kept frame `index` of the last run.
    Frame { index: usize },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RestoreReply {
    /// `table`: the shipped evaluation of these weights' restorations, when they have one.
    Ready { backend: BackendInfo, limits: RestoreLimits, page: RestoreQuery, digit_labels: Vec<usize>, table: Option<RestoreTable> },
    Parsed { page: RestoreQuery },
    /// The original (when there is one), the operation's input, and the mask as 784 bytes;
    /// for an uploaded picture to denoise, its estimated noise level (the slider's value to set,
    /// within the slider's range).
    Prepared { original: Option<Picture>, input: Picture, mask: Option<ByteBuf>, noise_estimate: Option<f64> },
    /// The run began: its moves, the frame's size, and the baselines' pictures by name.
    Began { total: usize, width: usize, height: usize, baselines: Vec<(String, Picture)> },
    /// A move done; the frame when drawn, with the classifier's reading of each image.
    Stepped { t: usize, done: usize, total: usize, frame: Option<Picture>, read: Vec<usize>, confidences: Vec<f32> },
    /// The run is over: its figures against the original (PSNR in dB and the like).
    Finished { measures: Vec<Measure> },
    Frame { frame: Picture, t: usize, done: usize, kept: usize },
    Failed { message: String },
}
