//! Native only: the MNIST data ([`data`]), training ([`train`], of the variance channel
//! [`train_variance`]) and evaluation ([`evaluate`], and
//! of the restore page's operations [`evaluate_restore`], where stray marks begin [`stray`])
//! behind the command-line tools in `src/bin/`.

pub mod data;
pub mod evaluate;
pub mod evaluate_restore;
pub mod stray;
pub mod train;
pub mod train_variance;
