//! Wick: train image classifiers privately — in a browser tab (wasm) or natively (CPU/CUDA).
//!
//! The data flows image → [`preprocess`] → [`backbone`] ([`efficientnet_lite`], with its fast
//! [`depthwise`] convolution) → [`features`] (cached) → [`head`] (trained on a labelled [`dataset`])
//! → [`metrics`], and the trained head is saved as a `.wick` [`bundle`]. Backbone weights come from
//! the legacy PyTorch checkpoint ([`torch_legacy`], folded by [`weights`]) or from the quantized
//! [`model_file`]; without a head the backbone's own ImageNet classifier answers.
//!
//! Natively, [`finetune`] trains the whole network on [`cifar10`] ([`efficientnet_lite_train`], the
//! BatchNorms unfolded and run by [`batch_norm`]) and exports it as a model file with its `.wick`.

pub mod backbone;
pub mod batch_norm;
pub mod bias_relu6;
pub mod bundle;
pub mod cifar10;
pub mod dataset;
pub mod depthwise;
pub mod efficientnet_lite;
pub mod efficientnet_lite_train;
pub mod error;
pub mod features;
pub mod finetune;
pub mod head;
pub mod imagenet_classes;
pub mod metrics;
pub mod model_file;
pub mod preprocess;
pub mod project;
pub mod recompute;
pub mod rng;
pub mod torch_legacy;
pub mod weights;
pub mod wick_file;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
