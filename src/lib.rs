//! Wick: train image classifiers privately — in a browser tab (wasm) or natively (CPU/CUDA).
//!
//! The data flows image → [`preprocess`] → [`backbone`] ([`efficientnet_lite`], with its fast
//! [`depthwise`] convolution) → features → ImageNet classes. Weights come from the legacy PyTorch
//! checkpoint ([`torch_legacy`], folded by [`weights`]) or from the quantized [`model_file`].

pub mod backbone;
pub mod bias_relu6;
pub mod depthwise;
pub mod efficientnet_lite;
pub mod error;
pub mod imagenet_classes;
pub mod model_file;
pub mod preprocess;
pub mod torch_legacy;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
