//! The networks, in plain Burn with no web or training imports: the eps-prediction U-Net for
//! digits, the MNIST classifier the evaluation and the pages read, and the 2-D MLP the explainer
//! trains in the tab; and the U-Net's hottest chain as one operation of our own (`fused`, with
//! its WebGPU kernel in `fused_cube`).

pub mod classifier;
pub mod fused;
#[cfg(feature = "webgpu")]
pub mod fused_cube;
pub mod mlp;
pub mod unet;
