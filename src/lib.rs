//! ddpm-web: a small pixel-space DDPM on MNIST, written once in Burn for native training,
//! native tests and the browser (WebGPU with a CPU fallback).
//!
//! The folders are the layers, and each imports only from the layers above it in this list:
//! - [`nets`]: the networks in plain Burn (the digit U-Net, the classifier, the 2-D MLP);
//! - [`diffusion`]: the maths of DDPM, host-side (schedules, seeded noise) and on tensors
//!   (forward process, posteriors, the ELBO, solvers, objectives) and the reverse loop;
//! - [`toy`]: the 2-D Gaussian mixture with its closed forms, and the in-tab trainer;
//! - [`explain`]: what the explainer page computes and the layout of its charts;
//! - [`restore`]: restoring and editing digits (inpainting, denoising, super-resolution,
//!   sketch to digit, inversion), with the classic baselines they are compared with;
//! - [`app`]: what pages and tools share: the configuration, the shipped weights, every
//!   control's rule, the typed page <-> worker messages, image layouts and trajectories;
//! - [`native`] (native only): data, training and evaluation for the command-line tools;
//! - [`web`] (browser only): the workers, which move data and draw.

pub mod app;
pub mod diffusion;
pub mod explain;
pub mod nets;
pub mod restore;
pub mod toy;

#[cfg(not(target_family = "wasm"))]
pub mod native;

#[cfg(target_family = "wasm")]
pub mod web;
