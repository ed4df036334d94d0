//! The CPU inference path: a backbone's folded network over plain NHWC buffers instead of Candle
//! tensors, one image at a time, with every bias, residual and activation fused into the
//! convolution before it, buffers reused across layers and images ([`layers::Arena`]), and the 1×1
//! and dense convolutions multiplied in int8 ([`MatmulPrecision::Int8`], the default) or f32.
//!
//! Candle's graph ([`crate::backbone::Network`]) stays the path for training, for CUDA, and the
//! reference the tests hold this one to.

pub mod efficientnet_lite;
pub mod layers;
pub mod resnet;

use std::cell::RefCell;

use rayon::prelude::*;

use crate::backbone::fold::FloatWeights;
use crate::backbone::NetworkConfig;
use crate::error::{invalid, Result};
use crate::kernels::crew::Crew;
pub use crate::kernels::matmul::MatmulPrecision;
use layers::Arena;

#[derive(Debug, Clone)]
enum Family {
    EfficientNetLite(Box<efficientnet_lite::EfficientNetLite>),
    ResNet(Box<resnet::ResNet>),
}

thread_local! {
    /// Each thread's activation buffers, kept from image to image and call to call: a stream of
    /// images allocates nothing (the page sends a batch of one file per thread at a time, and fresh
    /// buffers each time cost a few milliseconds of zeroed pages per image).
    static ARENA: RefCell<Arena> = RefCell::default();
}

/// A folded network ready to run images on the CPU.
#[derive(Debug)]
pub struct CpuNetwork {
    family: Family,
    config: NetworkConfig,
}

impl CpuNetwork {
    pub fn new(config: &NetworkConfig, weights: &FloatWeights, precision: MatmulPrecision) -> Result<Self> {
        let family = match config {
            NetworkConfig::EfficientNetLite(c) => {
                Family::EfficientNetLite(Box::new(efficientnet_lite::EfficientNetLite::new(c, weights, precision)?))
            }
            NetworkConfig::ResNet(c) => Family::ResNet(Box::new(resnet::ResNet::new(c, weights, precision)?)),
        };
        Ok(Self { family, config: config.clone() })
    }

    /// Images (N, 3, H, W) as one row-major buffer → their pooled features (N × feature_dim).
    pub fn features(&self, images: &[f32], n: usize, side: (usize, usize), threads: usize) -> Result<Vec<f32>> {
        self.each_image(images, n, side, self.config.feature_dim(), threads, |image, arena, out, threads| {
            match &self.family {
                Family::EfficientNetLite(net) => net.forward(image, side, arena, out, threads),
                Family::ResNet(net) => net.forward(image, side, arena, out, threads),
            }
        })
    }

    /// Images (N, 3, H, W) → each one's last feature map before pooling, NHWC (N, H', W', C), and
    /// (H', W', C): the map whose cells a head can be applied to one by one (where the model looks).
    pub fn feature_maps(
        &self,
        images: &[f32],
        n: usize,
        side: (usize, usize),
        threads: usize,
    ) -> Result<(Vec<f32>, [usize; 3])> {
        let shape = self.config.feature_map_shape(side);
        let values =
            self.each_image(images, n, side, shape.iter().product(), threads, |image, arena, out, threads| {
                let (shape, map) = match &self.family {
                    Family::EfficientNetLite(net) => net.last_map(image, side, arena, threads),
                    Family::ResNet(net) => net.last_map(image, side, arena, threads),
                };
                assert_eq!(shape.elements(), out.len(), "the configuration's map shape is the network's");
                out.copy_from_slice(map)
            })?;
        Ok((values, shape))
    }

    /// Images (N, 3, H, W) → each one's input to block `first` (N, C, H', W'), and (C, H', W'): the
    /// frozen part of the network, run once per image when its last layers are trained.
    pub fn activations(
        &self,
        images: &[f32],
        n: usize,
        side: (usize, usize),
        first: usize,
        threads: usize,
    ) -> Result<(Vec<f32>, [usize; 3])> {
        let shape = self.config.activation_shape(side, first);
        let values =
            self.each_image(images, n, side, shape.iter().product(), threads, |image, arena, out, threads| {
                let (shape, [x, ..]) = match &self.family {
                    Family::EfficientNetLite(net) => net.front(image, side, arena, first, threads),
                    Family::ResNet(net) => net.front(image, side, arena, first, threads),
                };
                assert_eq!(shape.elements(), out.len(), "the configuration's activation shape is the network's");
                crate::kernels::nhwc::nhwc_to_nchw(&x[..shape.elements()], shape.c, out)
            })?;
        Ok((values, shape))
    }

    /// `run(image, arena, out, threads)` for each image and its `per_output` values of the result.
    fn each_image(
        &self,
        images: &[f32],
        n: usize,
        side: (usize, usize),
        per_output: usize,
        threads: usize,
        run: impl Fn(&[f32], &mut Arena, &mut [f32], usize) + Sync,
    ) -> Result<Vec<f32>> {
        let per_image = 3 * side.0 * side.1;
        if images.len() != n * per_image || per_image == 0 {
            return Err(invalid!("expected {n} images of 3×{}×{}, got {} values", side.0, side.1, images.len()));
        }
        let mut outputs = vec![0.0; n * per_output];
        // Each image on its thread's own buffers ([`ARENA`]).
        let forward = |image: &[f32], out: &mut [f32], threads| {
            ARENA.with(|arena| run(image, &mut arena.borrow_mut(), out, threads))
        };
        let pairs = images.chunks_exact(per_image).zip(outputs.chunks_exact_mut(per_output));
        if crate::kernels::parallel(threads) && n >= threads {
            // A batch: one image per thread, each single-threaded (splitting one image's small late
            // layers across threads costs more than it gains).
            pairs.par_bridge().for_each(|(image, out)| forward(image, out, 1));
        } else {
            let run = || pairs.for_each(|(image, out)| forward(image, out, threads));
            if crate::kernels::parallel(threads) {
                // Layers split over a crew of pool threads that stay awake for the whole pass.
                Crew::run(threads - 1, run);
            } else {
                run();
            }
        }
        Ok(outputs)
    }
}
