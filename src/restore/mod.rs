//! Restoring and editing digits with the trained model, what the restore page does: the damage
//! presets of inpainting ([`damage`]), the classic baselines each result is compared with and
//! PSNR ([`baselines`]), and one operation's typed settings, input and step-by-step run
//! ([`operation`]) over the reverse process of `crate::diffusion::restore`, and the table of the
//! shipped evaluation of all of it ([`evaluation`]).

pub mod baselines;
pub mod damage;
pub mod operation;
pub mod evaluation;
