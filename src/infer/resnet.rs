//! ResNet's inference path: the folded network of [`crate::backbone::resnet`] over NHWC buffers.
//! Each block's last convolution takes the shortcut as its residual, with the ReLU after the sum.

use crate::backbone::fold::FloatWeights;
use crate::backbone::resnet::Config;
use crate::error::Result;
use crate::infer::layers::{Arena, FusedConv, Padding, Shape};
use crate::kernels::geometry::ConvGeometry;
use crate::kernels::matmul::MatmulPrecision;
use crate::kernels::nhwc;
use crate::kernels::Activation;

#[derive(Debug, Clone)]
struct Block {
    /// 3×3 → 3×3 (basic) or 1×1 → 3×3 → 1×1 (bottleneck); the last adds the shortcut, then ReLU.
    convs: Vec<FusedConv>,
    downsample: Option<FusedConv>,
}

#[derive(Debug, Clone)]
pub struct ResNet {
    stem: FusedConv,
    blocks: Vec<Block>,
    config: Config,
}

impl ResNet {
    pub fn new(config: &Config, weights: &FloatWeights, precision: MatmulPrecision) -> Result<Self> {
        let conv = |name: &str, shape, stride, activation| {
            FusedConv::new(weights, name, shape, false, stride, Padding::Symmetric, activation, precision)
        };
        let stem = conv("conv1", [64, 3, 7, 7], 2, Activation::Relu)?;
        let blocks = config
            .blocks()
            .into_iter()
            .map(|(prefix, layout)| {
                let last = layout.convs.len() - 1;
                let convs = layout
                    .convs
                    .iter()
                    .enumerate()
                    .map(|(i, (name, shape, stride, activation))| {
                        let activation = if i == last { Activation::Relu } else { *activation };
                        conv(&format!("{prefix}.{name}"), *shape, *stride, activation)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let downsample = layout
                    .downsample
                    .map(|shape| conv(&format!("{prefix}.downsample.0"), shape, layout.stride, Activation::None))
                    .transpose()?;
                Ok(Block { convs, downsample })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { stem, blocks, config: config.clone() })
    }

    /// One image (3, H, W), normalised → its pooled features (512 or 2048 values).
    pub fn forward(
        &self,
        image: &[f32],
        side: (usize, usize),
        arena: &mut Arena,
        features: &mut [f32],
        threads: usize,
    ) {
        let (shape, map) = self.last_map(image, side, arena, threads);
        nhwc::global_average_pool(map, shape.c, features);
    }

    /// One image → the last block's output (NHWC), the map the features pool.
    pub fn last_map<'a>(
        &self,
        image: &[f32],
        side: (usize, usize),
        arena: &'a mut Arena,
        threads: usize,
    ) -> (Shape, &'a [f32]) {
        let (shape, [x, ..]) = self.front(image, side, arena, self.blocks.len(), threads);
        (shape, &x[..shape.elements()])
    }

    /// The stem, max pool and blocks `..blocks` of one image: the result's shape, and the arena's
    /// buffers with the result in the first.
    pub fn front<'a>(
        &self,
        image: &[f32],
        side: (usize, usize),
        arena: &'a mut Arena,
        blocks: usize,
        threads: usize,
    ) -> (Shape, [&'a mut Vec<f32>; 4]) {
        let largest = self.config.peak_activation_bytes(side.0.max(side.1)) / 4;
        let (input, [x, a, b, shortcut]) = arena.start(image, side, largest);
        let stem = self.stem.output_shape(input);
        self.stem.forward(input, &shortcut[..input.elements()], None, &mut b[..stem.elements()], threads);
        // MaxPool2d(3, stride 2, padding 1).
        let pool = ConvGeometry::symmetric(stem.h, stem.w, stem.c, 3, 2, 1);
        let mut shape = Shape { h: pool.out_h, w: pool.out_w, c: stem.c };
        nhwc::max_pool(&pool, &b[..stem.elements()], &mut x[..shape.elements()]);
        for block in &self.blocks[..blocks] {
            let run = |conv: &FusedConv, shape: Shape, input: &[f32], residual, out: &mut [f32]| {
                let out_shape = conv.output_shape(shape);
                conv.forward(shape, &input[..shape.elements()], residual, &mut out[..out_shape.elements()], threads);
                out_shape
            };
            let out_shape = block.convs.iter().fold(shape, |s, conv| conv.output_shape(s));
            let identity = match &block.downsample {
                Some(downsample) => {
                    run(downsample, shape, x, None, shortcut);
                    &shortcut[..out_shape.elements()]
                }
                None => &x[..out_shape.elements()],
            };
            let result = match block.convs.as_slice() {
                [first, second] => {
                    let s = run(first, shape, x, None, a);
                    run(second, s, a, Some(identity), b);
                    &mut *b
                }
                [first, second, third] => {
                    let s = run(first, shape, x, None, a);
                    let s = run(second, s, a, None, b);
                    run(third, s, b, Some(identity), a);
                    &mut *a
                }
                _ => unreachable!("ResNet blocks have two or three convolutions"),
            };
            std::mem::swap(x, result);
            shape = out_shape;
        }
        (shape, [x, a, b, shortcut])
    }
}
