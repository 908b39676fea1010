//! The maths of diffusion, platform-free and tested natively: the schedules and their
//! coefficients on the host ([`schedule`]), seeded host-side noise ([`noise`]), the forward
//! process, posteriors and parameterisations on tensors ([`process`]), the variational bound
//! ([`elbo`]) with fixed or learned reverse variances ([`variance`]), the reverse-time solvers ([`solver`]), the training objectives ([`objective`]),
//! the digit sampler's reverse loop ([`sampling`]), restoring and editing images with it
//! ([`restore`]) and sample-quality metrics ([`metrics`]).

pub mod elbo;
pub mod metrics;
pub mod noise;
pub mod objective;
pub mod process;
pub mod restore;
pub mod sampling;
pub mod schedule;
pub mod solver;
pub mod variance;
