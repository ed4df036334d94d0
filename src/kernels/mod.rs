//! The fast ops the networks run on: CPU kernels with closed-form gradients, and the same ops from
//! tensor ops on other devices (with activation checkpointing, [`recompute`]).

pub mod batch_norm;
pub mod bias_relu6;
pub mod depthwise;
pub mod recompute;
