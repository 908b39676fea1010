//! Native only: the MNIST data ([`data`]), training ([`train`]) and evaluation ([`evaluate`])
//! behind the command-line tools in `src/bin/`.

pub mod data;
pub mod evaluate;
pub mod train;
