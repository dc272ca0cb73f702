//! One module per command.

pub mod bench;
pub mod compare;
pub mod eval;
pub mod patterns;
pub mod predict;
pub mod train;
