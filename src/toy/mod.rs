//! The 2-D world of the explainer: a Gaussian mixture whose diffused marginals and score are
//! known in closed form ([`mixture`]), training the 2-D denoiser on it in seconds ([`train`]),
//! with diffusion's objectives or flow matching on the straight path ([`flow`]).

pub mod flow;
pub mod mixture;
pub mod train;
