//! ddpm-web: a small pixel-space DDPM on MNIST, written once in Burn for native training,
//! native tests and the browser (WebGPU with a CPU fallback).
//!
//! Data flows one way: `schedule` (host maths) -> `diffusion`/`elbo` (tensor maths) ->
//! `model` (the U-Net) -> `sampling` (reverse loop) -> `weights` (shipped files) -> `web`
//! (browser workers only) / `train` (native only). `controls` (every control's rule, defined
//! once) and `protocol` (the typed page <-> worker messages) are platform-free and tested natively.

pub mod classifier;
pub mod config;
pub mod controls;
pub mod diffusion;
pub mod elbo;
pub mod explain;
pub mod image;
pub mod metrics;
pub mod model;
pub mod noise;
pub mod objective;
pub mod plot;
pub mod protocol;
pub mod sampling;
pub mod schedule;
pub mod solver;
pub mod toy;
pub mod toy_model;
pub mod toy_train;
pub mod trajectory;
pub mod weights;

#[cfg(not(target_family = "wasm"))]
pub mod data;
#[cfg(not(target_family = "wasm"))]
pub mod evaluate;
#[cfg(not(target_family = "wasm"))]
pub mod train;

#[cfg(target_family = "wasm")]
pub mod web;
