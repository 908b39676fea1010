//! What the pages, their workers and the native tools share: the configuration ([`config`]), the
//! shipped weights ([`weights`]), every control's rule ([`controls`]), the typed page <-> worker
//! messages ([`protocol`]), the restore page's controls and messages ([`restore_page`]), image
//! layouts ([`image`]) and kept trajectories ([`trajectory`]).

pub mod config;
pub mod controls;
pub mod image;
pub mod protocol;
pub mod restore_page;
pub mod trajectory;
pub mod weights;
