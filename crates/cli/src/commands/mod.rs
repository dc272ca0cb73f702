//! One module per command.

pub mod bench;
pub mod compare;
pub mod eval;
pub mod export;
pub mod gradcheck;
pub mod gradflow;
pub mod patterns;
pub mod predict;
pub mod report;
pub mod summary;
pub mod train;
pub mod viz;
