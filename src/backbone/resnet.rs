//! ResNet-18, -34 and -50 (He et al. 2016) in torchvision's layout: a 7×7 stride-2 stem and a 3×3
//! stride-2 max pool, four layers of BasicBlocks (18, 34) or Bottlenecks (50, the stride on the 3×3
//! convolution, as torchvision's v1.5 has it), a 1×1 strided projection where a block changes
//! resolution or width, global average pooling and `fc`. BatchNorm ε 1e-5, ReLU.
//!
//! Weight names are torchvision's (`layer2.0.downsample.1.running_var`, …), which timm's and Hugging
//! Face's ResNet state dicts share; as with EfficientNet-Lite, the inference network has every
//! BatchNorm folded into its convolution ([`ResNet::new`]) and fine-tuning keeps them as layers
//! ([`ResNet::unfolded`]).

use std::sync::Arc;

use candle_core::{DType, ModuleT, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::backbone::family::{BlockInfo, Family, Graph};
use crate::backbone::layers::{check_conv_shapes, Activation, Conv, ConvBn, ConvNorm};
use crate::backbone::ops::{ConvOp, Op, OpGraph, Padding, IMAGE_SLOT};
use crate::data::preprocess::Preprocess;
use crate::kernels::matmul::MatmulPrecision;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Bottleneck blocks (1×1 → 3×3 → 1×1, four times wider out) rather than basic ones (3×3 → 3×3).
    pub bottleneck: bool,
    /// Blocks in each of the four layers.
    pub layers: [usize; 4],
    pub num_classes: usize,
    pub batch_norm_eps: f64,
}

/// The published variants: name, bottleneck blocks, blocks per layer.
const VARIANTS: [(&str, bool, [usize; 4]); 3] =
    [("resnet18", false, [2, 2, 2, 2]), ("resnet34", false, [3, 4, 6, 3]), ("resnet50", true, [3, 4, 6, 3])];
const WIDTHS: [usize; 4] = [64, 128, 256, 512];
/// At most this many blocks in a layer read from a file (ResNet-152 has 36).
pub const MAX_BLOCKS: usize = 64;

/// One block's convolutions, as (name, shape, stride, activation), and its projection if it has one.
pub(crate) struct BlockLayout {
    pub convs: Vec<(String, [usize; 4], usize, Activation)>,
    pub downsample: Option<[usize; 4]>,
    pub stride: usize,
}

impl Config {
    /// A published variant by name, with torchvision's ImageNet preprocessing (shorter side 256,
    /// centre crop 224, ImageNet mean and std).
    pub fn variant(name: &str) -> Option<(Self, Preprocess)> {
        let &(_, bottleneck, layers) = VARIANTS.iter().find(|(n, ..)| *n == name)?;
        let config = Self { bottleneck, layers, num_classes: 1000, batch_norm_eps: 1e-5 };
        Some((config, Preprocess::imagenet()))
    }

    /// Which variant a torchvision state dict holds, from its names and shapes.
    pub fn detect(shape_of: impl Fn(&str) -> Option<Vec<usize>>) -> crate::Result<(&'static str, Self, Preprocess)> {
        let bottleneck = shape_of("layer1.0.conv3.weight").is_some();
        let mut layers = [0usize; 4];
        for (l, count) in layers.iter_mut().enumerate() {
            while shape_of(&format!("layer{}.{}.conv1.weight", l + 1, *count)).is_some() && *count < MAX_BLOCKS {
                *count += 1;
            }
        }
        let Some(&(name, ..)) = VARIANTS.iter().find(|(_, b, l)| *b == bottleneck && *l == layers) else {
            return Err(crate::error::invalid!(
                "a torchvision ResNet with {layers:?} {} blocks per layer is not one of ResNet-18, -34 or -50",
                if bottleneck { "bottleneck" } else { "basic" }
            ));
        };
        let (config, preprocess) = Self::variant(name).expect("listed");
        check_conv_shapes(&format!("a {name} checkpoint"), &config.conv_bn_pairs(), shape_of)?;
        Ok((name, config, preprocess))
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |why: String| Err(crate::error::invalid!("bad ResNet configuration: {why}"));
        if let Some(n) = self.layers.iter().find(|&&n| !(1..=MAX_BLOCKS).contains(&n)) {
            return bad(format!("a layer has {n} blocks, expected 1 to {MAX_BLOCKS}"));
        }
        if !(1..=crate::backbone::efficientnet_lite::MAX_CLASSES).contains(&self.num_classes) {
            return bad(format!("num_classes is {}", self.num_classes));
        }
        if !(self.batch_norm_eps > 0.0 && self.batch_norm_eps < 1.0) {
            return bad(format!("batch_norm_eps is {}, expected between 0 and 1", self.batch_norm_eps));
        }
        Ok(())
    }

    fn expansion(&self) -> usize {
        if self.bottleneck {
            4
        } else {
            1
        }
    }

    /// Length of the pooled feature vector: 512 (basic blocks) or 2048 (bottlenecks).
    pub fn feature_dim(&self) -> usize {
        WIDTHS[3] * self.expansion()
    }

    /// Every block, layer by layer: its name prefix and layout.
    pub(crate) fn blocks(&self) -> Vec<(String, BlockLayout)> {
        let mut blocks = Vec::new();
        let mut in_channels = 64;
        for (l, (&width, &count)) in WIDTHS.iter().zip(&self.layers).enumerate() {
            for b in 0..count {
                let stride = if b == 0 && l > 0 { 2 } else { 1 };
                let out = width * self.expansion();
                let convs = if self.bottleneck {
                    vec![
                        ("conv1".to_string(), [width, in_channels, 1, 1], 1, Activation::Relu),
                        ("conv2".to_string(), [width, width, 3, 3], stride, Activation::Relu),
                        ("conv3".to_string(), [out, width, 1, 1], 1, Activation::None),
                    ]
                } else {
                    vec![
                        ("conv1".to_string(), [width, in_channels, 3, 3], stride, Activation::Relu),
                        ("conv2".to_string(), [width, width, 3, 3], 1, Activation::None),
                    ]
                };
                let downsample = (stride != 1 || in_channels != out).then_some([out, in_channels, 1, 1]);
                blocks.push((format!("layer{}.{b}", l + 1), BlockLayout { convs, downsample, stride }));
                in_channels = out;
            }
        }
        blocks
    }

    /// The folded network op by op (for the CPU path and exporters): the stem, its max pool, each
    /// block's convolutions with the shortcut added by the last one (then the ReLU), and the
    /// downsampling shortcut where the block has one. A block reads buffer `x` and writes its
    /// result to another; its other buffers are the three that are not `x`.
    pub fn ops(&self) -> OpGraph {
        let conv = |name: String, shape, stride, activation, input, output, residual| {
            Op::Conv(ConvOp {
                name,
                shape,
                depthwise: false,
                stride,
                padding: Padding::Symmetric,
                activation,
                input,
                output,
                residual,
            })
        };
        let mut ops = vec![
            conv("conv1".into(), [64, 3, 7, 7], 2, Activation::Relu, IMAGE_SLOT, 2, None),
            Op::MaxPool { kernel: 3, stride: 2, padding: 1, input: 2, output: 0 },
        ];
        let mut block_starts = Vec::new();
        let mut x = 0;
        for (prefix, block) in self.blocks() {
            block_starts.push(ops.len());
            let [a, b, shortcut] = match x {
                0 => [1, 2, 3],
                1 => [0, 2, 3],
                2 => [0, 1, 3],
                _ => [0, 1, 2],
            };
            let identity = match block.downsample {
                Some(shape) => {
                    ops.push(conv(
                        format!("{prefix}.downsample.0"),
                        shape,
                        block.stride,
                        Activation::None,
                        x,
                        shortcut,
                        None,
                    ));
                    shortcut
                }
                None => x,
            };
            // Each conv writes the buffer its input is not in: a, then b, then a again.
            let last = block.convs.len() - 1;
            let mut input = x;
            for (i, (name, shape, stride, activation)) in block.convs.into_iter().enumerate() {
                let output = if i % 2 == 0 { a } else { b };
                let (activation, residual) =
                    if i == last { (Activation::Relu, Some(identity)) } else { (activation, None) };
                ops.push(conv(format!("{prefix}.{name}"), shape, stride, activation, input, output, residual));
                input = output;
            }
            x = input;
        }
        let blocks_end = ops.len();
        OpGraph { ops, block_starts, blocks_end }
    }

    /// The checkpoint's convolutions with the BatchNorm after each, in forward order.
    pub fn conv_bn_pairs(&self) -> Vec<ConvBn> {
        let mut pairs = vec![ConvBn { conv: "conv1".into(), bn: "bn1".into(), shape: [64, 3, 7, 7] }];
        for (prefix, block) in self.blocks() {
            for (i, (name, shape, ..)) in block.convs.iter().enumerate() {
                pairs.push(ConvBn {
                    conv: format!("{prefix}.{name}"),
                    bn: format!("{prefix}.bn{}", i + 1),
                    shape: *shape,
                });
            }
            if let Some(shape) = block.downsample {
                pairs.push(ConvBn {
                    conv: format!("{prefix}.downsample.0"),
                    bn: format!("{prefix}.downsample.1"),
                    shape,
                });
            }
        }
        pairs
    }

    /// The largest activation of one `side`×`side` image, in bytes (f32).
    pub fn peak_activation_bytes(&self, side: usize) -> usize {
        let mut spatial = side.div_ceil(2);
        let mut peak = 64 * spatial * spatial;
        spatial = spatial.div_ceil(2); // the max pool
        for (_, block) in self.blocks() {
            spatial = spatial.div_ceil(block.stride);
            let widest = block.convs.iter().map(|(_, shape, ..)| shape[0]).max().unwrap_or(0);
            peak = peak.max(widest * spatial * spatial);
        }
        peak * 4
    }
}

#[derive(Debug, Clone)]
struct Block {
    convs: Vec<ConvNorm>,
    downsample: Option<ConvNorm>,
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for conv in &self.convs {
            h = conv.forward_t(&h, train)?;
        }
        let identity = match &self.downsample {
            Some(downsample) => downsample.forward_t(x, train)?,
            None => x.clone(),
        };
        (h + identity)?.relu()
    }
}

/// The backbone up to its pooled features (the classifier `fc` is the [`crate::model::Backbone`]'s).
#[derive(Debug, Clone)]
pub struct ResNet {
    stem: ConvNorm,
    blocks: Vec<Block>,
}

impl ResNet {
    /// The inference network: every BatchNorm folded into its convolution (`products`: see
    /// [`ConvNorm::folded`]).
    pub fn new(cfg: &Config, products: MatmulPrecision, vb: VarBuilder) -> Result<Self> {
        let make = |conv, shape, activation, conv_name: &str, _bn: &str| {
            ConvNorm::folded(conv, shape, activation, products, vb.pp(conv_name))
        };
        Self::build(cfg, make)
    }

    /// The training network: every BatchNorm a layer of its own, named as in the checkpoint.
    pub fn unfolded(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let eps = cfg.batch_norm_eps;
        let make = |conv, shape, activation, conv_name: &str, bn_name: &str| {
            ConvNorm::unfolded(conv, shape, activation, eps, vb.pp(conv_name), vb.pp(bn_name))
        };
        Self::build(cfg, make)
    }

    fn build(
        cfg: &Config,
        make: impl Fn(Conv, [usize; 4], Activation, &str, &str) -> Result<ConvNorm>,
    ) -> Result<Self> {
        let dense = |shape: [usize; 4], stride| Conv::Dense { stride, padding: shape[2] / 2 };
        let stem = make(dense([64, 3, 7, 7], 2), [64, 3, 7, 7], Activation::Relu, "conv1", "bn1")?;
        let blocks = cfg
            .blocks()
            .into_iter()
            .map(|(prefix, layout)| {
                let convs = layout
                    .convs
                    .iter()
                    .enumerate()
                    .map(|(i, (name, shape, stride, activation))| {
                        let (conv, bn) = (format!("{prefix}.{name}"), format!("{prefix}.bn{}", i + 1));
                        make(dense(*shape, *stride), *shape, *activation, &conv, &bn)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let downsample = layout
                    .downsample
                    .map(|shape| {
                        let (conv, bn) = (format!("{prefix}.downsample.0"), format!("{prefix}.downsample.1"));
                        make(dense(shape, layout.stride), shape, Activation::None, &conv, &bn)
                    })
                    .transpose()?;
                Ok(Block { convs, downsample })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { stem, blocks })
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.stem.forward_t(&images.to_dtype(DType::F32)?, train)?;
        self.last_layers(&max_pool_3x3_stride_2(&x)?, 0, train)
    }
}

impl ResNet {
    /// Images → the input of block `first`, in evaluation mode: the frozen part when the last
    /// blocks train.
    pub fn front(&self, images: &Tensor, first: usize) -> Result<Tensor> {
        let x = self.stem.forward_t(&images.to_dtype(DType::F32)?, false)?;
        self.blocks(&max_pool_3x3_stride_2(&x)?, 0, first)
    }

    /// The input of block `from` → the input of block `to`, in evaluation mode.
    pub fn blocks(&self, x: &Tensor, from: usize, to: usize) -> Result<Tensor> {
        let mut x = x.clone();
        for block in &self.blocks[from..to] {
            x = block.forward_t(&x, false)?;
        }
        Ok(x)
    }

    /// The input of block `first` → pooled features.
    pub fn last_layers(&self, x: &Tensor, first: usize, train: bool) -> Result<Tensor> {
        let mut x = x.clone();
        for block in &self.blocks[first..] {
            x = block.forward_t(&x, train)?;
        }
        x.flatten_from(2)?.mean(D::Minus1)
    }
}

/// torchvision's `MaxPool2d(3, stride=2, padding=1)` as the maximum of nine strided views, so that
/// it has a gradient (Candle's max pool has none for overlapping windows). The input follows a ReLU,
/// so every value is ≥ 0 and zero padding stands in for −∞.
fn max_pool_3x3_stride_2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    // Padded to 2·(out + 1) a side (1 before, the rest after), then split into its 2×2 phases: tap
    // k of a window starting at 2·o is phase k % 2, row o + k / 2.
    let x = x.pad_with_zeros(2, 1, 2 * (oh + 1) - h - 1)?.pad_with_zeros(3, 1, 2 * (ow + 1) - w - 1)?;
    let x = x.reshape((n, c, oh + 1, 2, ow + 1, 2))?;
    let mut out: Option<Tensor> = None;
    for i in 0..3 {
        for j in 0..3 {
            let tap = x
                .narrow(3, i % 2, 1)?
                .narrow(5, j % 2, 1)?
                .narrow(2, i / 2, oh)?
                .narrow(4, j / 2, ow)?
                .reshape((n, c, oh, ow))?;
            out = Some(match out {
                Some(m) => m.maximum(&tap)?,
                None => tap,
            });
        }
    }
    Ok(out.expect("nine taps"))
}

impl Family for Config {
    fn validate(&self) -> crate::Result<()> {
        Config::validate(self)
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn feature_dim(&self) -> usize {
        Config::feature_dim(self)
    }

    fn batch_norm_eps(&self) -> f64 {
        self.batch_norm_eps
    }

    fn classifier(&self) -> &'static str {
        "fc"
    }

    fn conv_bn_pairs(&self) -> Vec<ConvBn> {
        Config::conv_bn_pairs(self)
    }

    fn peak_activation_bytes(&self, side: usize) -> usize {
        Config::peak_activation_bytes(self, side)
    }

    fn block_layout(&self) -> Vec<BlockInfo> {
        let stages = self.layers.iter().enumerate().flat_map(|(s, &count)| std::iter::repeat_n(s, count));
        self.blocks()
            .into_iter()
            .zip(stages)
            .map(|((prefix, b), stage)| BlockInfo { prefix, stage, in_channels: b.convs[0].1[1], stride: b.stride })
            .collect()
    }

    fn head_conv(&self) -> Option<&'static str> {
        None
    }

    fn stem_halvings(&self) -> usize {
        2 // the stem and its max pool stride by 2
    }

    fn blocks_out_channels(&self) -> usize {
        Config::feature_dim(self)
    }

    fn ops(&self) -> OpGraph {
        Config::ops(self)
    }

    fn folded(&self, products: MatmulPrecision, vb: VarBuilder) -> Result<Arc<dyn Graph>> {
        Ok(Arc::new(ResNet::new(self, products, vb)?))
    }

    fn unfolded(&self, compute: DType, vb: VarBuilder) -> crate::Result<Arc<dyn Graph>> {
        if compute != DType::F32 {
            return Err(crate::error::invalid!(
                "bf16 mixed precision is for EfficientNet-Lite; fine-tune a ResNet with --precision f32"
            ));
        }
        Ok(Arc::new(ResNet::unfolded(self, vb)?))
    }
}

impl Graph for ResNet {
    fn front(&self, images: &Tensor, first: usize) -> Result<Tensor> {
        ResNet::front(self, images, first)
    }

    fn blocks(&self, x: &Tensor, from: usize, to: usize) -> Result<Tensor> {
        ResNet::blocks(self, x, from, to)
    }

    fn last_layers(&self, x: &Tensor, first: usize, train: bool) -> Result<Tensor> {
        ResNet::last_layers(self, x, first, train)
    }
}
