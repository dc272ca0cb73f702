//! Training runs on top of the ocellus engine: the training loop ([`trainer`]), run
//! directories with checkpoints, metrics and exact resume ([`run`]), gradient-flow
//! diagnostics while training ([`diagnostics`]), a CNN measured
//! against fully connected networks under one budget ([`compare`]) and throughput
//! measurement ([`mod@bench`]).

pub mod bench;
pub mod compare;
pub mod datasets;
pub mod diagnostics;
pub mod early_stop;
pub mod parallel;
pub mod run;
pub mod trainer;
pub mod transfer;
