//! The CPU inference path: a backbone's folded network over plain NHWC buffers instead of Candle
//! tensors, one image at a time, with every bias, residual and activation fused into the
//! convolution before it, buffers reused across layers and images ([`layers::Arena`]), and the 1×1
//! and dense convolutions multiplied in int8 ([`Precision::Int8`], the default) or f32.
//!
//! Candle's graph ([`crate::backbone::Network`]) stays the path for training, for CUDA, and the
//! reference the tests hold this one to.

pub mod efficientnet_lite;
pub mod layers;
pub mod resnet;

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::backbone::fold::FloatWeights;
use crate::backbone::NetworkConfig;
use crate::error::{invalid, Result};
use crate::kernels::crew::Crew;
pub use crate::kernels::matmul::Precision;
use layers::Arena;

#[derive(Debug, Clone)]
enum Family {
    EfficientNetLite(Box<efficientnet_lite::EfficientNetLite>),
    ResNet(Box<resnet::ResNet>),
}

thread_local! {
    /// Each pool thread's buffers for the images of a batch it runs, kept from batch to batch (the
    /// page sends a batch of one file per thread at a time: fresh buffers each time cost a few
    /// milliseconds of zeroed pages per image).
    static THREAD_ARENA: std::cell::RefCell<Arena> = std::cell::RefCell::default();
}

/// A folded network ready to run images on the CPU.
#[derive(Debug, Clone)]
pub struct Engine {
    family: Family,
    precision: Precision,
    feature_dim: usize,
    /// Kept between calls, so a stream of single images allocates nothing.
    arena: Arc<Mutex<Arena>>,
}

impl Engine {
    pub fn new(config: &NetworkConfig, weights: &FloatWeights, precision: Precision) -> Result<Self> {
        let family = match config {
            NetworkConfig::EfficientNetLite(c) => {
                Family::EfficientNetLite(Box::new(efficientnet_lite::EfficientNetLite::new(c, weights, precision)?))
            }
            NetworkConfig::ResNet(c) => Family::ResNet(Box::new(resnet::ResNet::new(c, weights, precision)?)),
        };
        Ok(Self { family, precision, feature_dim: config.feature_dim(), arena: Arc::default() })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Images (N, 3, H, W) as one row-major buffer → their pooled features (N × feature_dim).
    pub fn features(&self, images: &[f32], n: usize, side: (usize, usize), threads: usize) -> Result<Vec<f32>> {
        let per_image = 3 * side.0 * side.1;
        if images.len() != n * per_image || per_image == 0 {
            return Err(invalid!("expected {n} images of 3×{}×{}, got {} values", side.0, side.1, images.len()));
        }
        let mut features = vec![0.0; n * self.feature_dim];
        let forward = |arena: &mut Arena, image: &[f32], out: &mut [f32], threads| match &self.family {
            Family::EfficientNetLite(net) => net.forward(image, side, arena, out, threads),
            Family::ResNet(net) => net.forward(image, side, arena, out, threads),
        };
        let pairs = images.chunks_exact(per_image).zip(features.chunks_exact_mut(self.feature_dim));
        if crate::kernels::parallel(threads) && n >= threads {
            // A batch: one image per thread, each single-threaded with an arena of its own (splitting
            // one image's small late layers across threads costs more than it gains).
            pairs
                .par_bridge()
                .for_each(|(image, out)| THREAD_ARENA.with(|arena| forward(&mut arena.borrow_mut(), image, out, 1)));
        } else {
            let run = || {
                let mut arena = self.arena.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                for (image, out) in pairs {
                    forward(&mut arena, image, out, threads);
                }
            };
            if crate::kernels::parallel(threads) {
                // Layers split over a crew of pool threads that stay awake for the whole pass.
                Crew::run(threads - 1, run);
            } else {
                run();
            }
        }
        Ok(features)
    }
}
