//! Wick: train image classifiers privately — in a browser tab (wasm) or natively (CPU/CUDA).
//!
//! The data flows image → [`data`] (decoding, preprocessing, class folders, CIFAR-10, cached
//! features) → [`backbone`] (EfficientNet-Lite and ResNet, on the fast ops in [`kernels`]; on the CPU
//! their inference path is [`infer`]) → [`train`] (the head
//! on frozen features, or fine-tuning the whole network) → [`eval`], and is saved in one of the
//! [`formats`]: the int8 backbone file, the `.wick` classifier, the web app's project, the
//! fine-tuning checkpoint, the feature cache. Pretrained weights come from PyTorch checkpoints
//! ([`checkpoint`]). The web app ([`web`], wasm only) and the `wick` CLI (`src/cli/`) are thin shells
//! over this library.

pub mod backbone;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
#[cfg(feature = "export")]
pub mod export;
pub mod formats;
pub mod infer;
pub(crate) mod kernels;
pub mod model;
pub mod train;
pub mod util;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
