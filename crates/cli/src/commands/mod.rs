//! One module per command.

pub mod eval;
pub mod patterns;
pub mod predict;
pub mod train;
