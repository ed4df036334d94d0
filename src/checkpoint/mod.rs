//! Readers for PyTorch checkpoints: a safe pickle subset, never executing anything.

pub mod torch_legacy;
