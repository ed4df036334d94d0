//! EfficientNet-Lite's inference path: the folded network of [`crate::backbone::efficientnet_lite`]
//! over NHWC buffers, each MBConv block three fused convolutions.

use crate::backbone::efficientnet_lite::Config;
use crate::backbone::fold::FloatWeights;
use crate::error::Result;
use crate::infer::layers::{Arena, FusedConv, Padding, Shape};
use crate::kernels::matmul::MatmulPrecision;
use crate::kernels::nhwc;
use crate::kernels::Activation;

#[derive(Debug, Clone)]
struct MbConv {
    expand: Option<FusedConv>,
    depthwise: FusedConv,
    project: FusedConv,
    skip: bool,
}

#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    stem: FusedConv,
    blocks: Vec<MbConv>,
    head: FusedConv,
    config: Config,
}

impl EfficientNetLite {
    pub fn new(config: &Config, weights: &FloatWeights, precision: MatmulPrecision) -> Result<Self> {
        let conv = |name: &str, shape, depthwise, stride, activation| {
            FusedConv::new(weights, name, shape, depthwise, stride, Padding::Same, activation, precision)
        };
        let stem = conv("_conv_stem", [config.stem_channels, 3, 3, 3], false, 2, Activation::Relu6)?;
        let blocks = config
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let p = format!("_blocks.{i}");
                let hidden = b.in_channels * b.expand_ratio;
                let expand = (b.expand_ratio != 1)
                    .then(|| {
                        let shape = [hidden, b.in_channels, 1, 1];
                        conv(&format!("{p}._expand_conv"), shape, false, 1, Activation::Relu6)
                    })
                    .transpose()?;
                let depthwise = [hidden, 1, b.kernel, b.kernel];
                Ok(MbConv {
                    expand,
                    depthwise: conv(&format!("{p}._depthwise_conv"), depthwise, true, b.stride, Activation::Relu6)?,
                    project: conv(
                        &format!("{p}._project_conv"),
                        [b.out_channels, hidden, 1, 1],
                        false,
                        1,
                        Activation::None,
                    )?,
                    skip: b.stride == 1 && b.in_channels == b.out_channels,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let last = config.stages.last().map_or(config.stem_channels, |s| s.out_channels);
        let head = conv("_conv_head", [config.head_channels, last, 1, 1], false, 1, Activation::Relu6)?;
        Ok(Self { stem, blocks, head, config: config.clone() })
    }

    /// One image (3, H, W), RGB in [-1, 1] → its pooled features (`features`, 1280 values).
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

    /// One image → the head convolution's output (NHWC), the map the features pool.
    pub fn last_map<'a>(
        &self,
        image: &[f32],
        side: (usize, usize),
        arena: &'a mut Arena,
        threads: usize,
    ) -> (Shape, &'a [f32]) {
        let (shape, [x, y, ..]) = self.front(image, side, arena, self.blocks.len(), threads);
        let out = self.head.output_shape(shape);
        self.head.forward(shape, &x[..shape.elements()], None, &mut y[..out.elements()], threads);
        (out, &y[..out.elements()])
    }

    /// The stem and blocks `..blocks` of one image: the result's shape, and the arena's buffers
    /// with the result in the first.
    pub fn front<'a>(
        &self,
        image: &[f32],
        side: (usize, usize),
        arena: &'a mut Arena,
        blocks: usize,
        threads: usize,
    ) -> (Shape, [&'a mut Vec<f32>; 4]) {
        let largest = self.config.peak_activation_bytes(side.0.max(side.1)) / 4;
        let (mut shape, [x, y, expanded, filtered]) = arena.start(image, side, largest);
        let out = self.stem.output_shape(shape);
        self.stem.forward(shape, &filtered[..shape.elements()], None, &mut x[..out.elements()], threads);
        shape = out;
        for block in &self.blocks[..blocks] {
            let hidden = match &block.expand {
                Some(expand) => {
                    let out = expand.output_shape(shape);
                    expand.forward(shape, &x[..shape.elements()], None, &mut expanded[..out.elements()], threads);
                    (out, &expanded[..out.elements()])
                }
                None => (shape, &x[..shape.elements()]),
            };
            let dw = block.depthwise.output_shape(hidden.0);
            block.depthwise.forward(hidden.0, hidden.1, None, &mut filtered[..dw.elements()], threads);
            let out = block.project.output_shape(dw);
            let residual = block.skip.then(|| &x[..out.elements()]);
            block.project.forward(dw, &filtered[..dw.elements()], residual, &mut y[..out.elements()], threads);
            std::mem::swap(x, y);
            shape = out;
        }
        (shape, [x, y, expanded, filtered])
    }
}
