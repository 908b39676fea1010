//! The networks, in plain Burn with no web or training imports: the eps-prediction U-Net for
//! digits, the MNIST classifier the evaluation and the pages read, and the 2-D MLP the explainer
//! trains in the tab.

pub mod classifier;
pub mod mlp;
pub mod unet;
