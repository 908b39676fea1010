//! The 2-D world of the explainer: a Gaussian mixture whose diffused marginals and score are
//! known in closed form ([`mixture`]), and training the 2-D denoiser on it in seconds ([`train`]).

pub mod mixture;
pub mod train;
