//! What the explainer page computes from the shipped model ([`compute`]) and the layout of its
//! charts ([`plot`]).

pub mod compute;
pub mod plot;
