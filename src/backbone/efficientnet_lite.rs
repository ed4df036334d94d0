//! EfficientNet-Lite (Tan & Le 2019, the "Lite" variant for mobile/edge): MBConv blocks without
//! squeeze-excite, ReLU6 everywhere, a fixed 32-channel stem and 1280-channel head.
//!
//! One graph for inference and training, built from [`ConvNorm`] units: for inference every BatchNorm
//! is folded into the convolution before it (`conv → + bias → ReLU6?`, the backbone file's weights,
//! made by [`crate::backbone::fold::fold_batch_norms`]); for fine-tuning each stays a BatchNorm
//! layer ([`EfficientNetLite::unfolded`]). Weight names mirror the PyTorch checkpoint
//! (`_blocks.3._depthwise_conv.weight`, `_blocks.3._bn1.running_var`, ...).

use std::sync::Arc;

use candle_core::{DType, ModuleT, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::backbone::family::{BlockInfo, Family, Graph};
use crate::backbone::layers::{check_conv_shapes, Activation, Conv, ConvBn, ConvNorm};
use crate::backbone::ops::{ConvOp, Op, OpGraph, Padding, IMAGE_SLOT};
use crate::data::preprocess::Preprocess;
use crate::kernels::matmul::MatmulPrecision;

/// One stage of MBConv blocks; only the first block of a stage strides or changes width.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageConfig {
    pub kernel: usize,
    pub stride: usize,
    pub expand_ratio: usize,
    pub out_channels: usize,
    pub repeats: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub stem_channels: usize,
    pub head_channels: usize,
    pub stages: Vec<StageConfig>,
    pub num_classes: usize,
    pub batch_norm_eps: f64,
}

/// The EfficientNet-B0 stage table every Lite variant scales: (kernel, stride, expand ratio).
const STAGE_SHAPES: [(usize, usize, usize); 7] =
    [(3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6)];

/// The published variants: name, stage widths, stage repeats, input size (Tan & Le's width and
/// depth multipliers applied; Lite keeps the stem, the head and the first and last stage's repeats).
const VARIANTS: [(&str, [usize; 7], [usize; 7], u32); 3] = [
    ("efficientnet-lite0", [16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1], 224),
    ("efficientnet-lite1", [16, 24, 40, 80, 112, 192, 320], [1, 3, 3, 4, 4, 5, 1], 240),
    ("efficientnet-lite2", [16, 24, 48, 88, 120, 208, 352], [1, 3, 3, 4, 4, 5, 1], 260),
];

impl Config {
    pub fn lite0() -> Self {
        Self::variant("efficientnet-lite0").expect("a published variant").0
    }

    /// A published variant by name, with its ImageNet preprocessing (the image is resized to the
    /// input size plus 32, then centre-cropped, as EfficientNet's evaluation does).
    pub fn variant(name: &str) -> Option<(Self, Preprocess)> {
        let (_, widths, repeats, size) = VARIANTS.iter().find(|(n, ..)| *n == name)?;
        let stages = STAGE_SHAPES
            .iter()
            .zip(widths.iter().zip(repeats))
            .map(|(&(kernel, stride, expand_ratio), (&out_channels, &repeats))| StageConfig {
                kernel,
                stride,
                expand_ratio,
                out_channels,
                repeats,
            })
            .collect();
        let config = Self { stem_channels: 32, head_channels: 1280, stages, num_classes: 1000, batch_norm_eps: 1e-3 };
        let preprocess = Preprocess { resize_shorter: size + 32, crop: *size, mean: [0.5; 3], std: [0.5; 3] };
        Some((config, preprocess))
    }

    /// Which published variant a checkpoint holds, read from its tensors' names and shapes: the
    /// blocks' widths, kernels and expansions group into stages. A checkpoint of another network is
    /// refused with the tensors that are missing or unexpected.
    pub fn detect(
        shape_of: impl Fn(&str) -> Option<Vec<usize>>,
        names: &[String],
    ) -> crate::Result<(&'static str, Self, Preprocess)> {
        let mut blocks = Vec::new();
        while let Some(depthwise) = shape_of(&format!("_blocks.{}._depthwise_conv.weight", blocks.len())) {
            let project = shape_of(&format!("_blocks.{}._project_conv.weight", blocks.len()));
            match (depthwise.as_slice(), project.as_deref()) {
                ([hidden, 1, k, _], Some([out, _, 1, 1])) => blocks.push((*hidden, *k, *out)),
                _ => break,
            }
        }
        let widths_and_repeats = |blocks: &[(usize, usize, usize)]| {
            let mut stages: Vec<(usize, usize)> = Vec::new();
            for &(_, _, out) in blocks {
                match stages.last_mut() {
                    Some((width, repeats)) if *width == out => *repeats += 1,
                    _ => stages.push((out, 1)),
                }
            }
            stages
        };
        let found = widths_and_repeats(&blocks);
        for (name, widths, repeats, _) in VARIANTS {
            let expected: Vec<(usize, usize)> = widths.into_iter().zip(repeats).collect();
            if found == expected {
                // The stages say which variant; every convolution must then have its shape.
                let (config, preprocess) = Self::variant(name).expect("listed");
                check_conv_shapes(&format!("an {name} checkpoint"), &config.conv_bn_pairs(), &shape_of)?;
                return Ok((name, config, preprocess));
            }
        }
        // Not a Lite variant this build knows: name what a Lite0 checkpoint would have had.
        let lite0 = Self::lite0();
        let mut expected: Vec<String> =
            lite0.conv_bn_pairs().into_iter().map(|p| format!("{}.weight", p.conv)).collect();
        expected.push("_fc.weight".into());
        let missing: Vec<&String> = expected.iter().filter(|n| !names.contains(n)).take(5).collect();
        let unexpected: Vec<&String> = names
            .iter()
            .filter(|n| {
                !n.starts_with("_blocks.")
                    && !n.starts_with("_conv_")
                    && !n.starts_with("_bn")
                    && !n.starts_with("_fc.")
            })
            .take(5)
            .collect();
        Err(crate::error::invalid!(
            "not an EfficientNet-Lite0, -Lite1 or -Lite2 checkpoint: stages (width, blocks) {found:?}; missing {missing:?}; unexpected {unexpected:?}"
        ))
    }

    /// Every block, flattened: (in_channels, kernel, stride, expand_ratio, out_channels).
    pub fn blocks(&self) -> Vec<BlockConfig> {
        let mut blocks = Vec::new();
        let mut in_channels = self.stem_channels;
        for s in &self.stages {
            for r in 0..s.repeats {
                blocks.push(BlockConfig {
                    in_channels,
                    kernel: s.kernel,
                    stride: if r == 0 { s.stride } else { 1 },
                    expand_ratio: s.expand_ratio,
                    out_channels: s.out_channels,
                });
                in_channels = s.out_channels;
            }
        }
        blocks
    }

    /// The folded network op by op (for the CPU path and exporters): the stem, each MBConv block
    /// (expansion, depthwise, projection with the skip), the head convolution. The block's input
    /// alternates between buffers 0 and 1; the expansion goes to 2, the depthwise filter to 3.
    pub fn ops(&self) -> OpGraph {
        let conv = |name: String, shape, depthwise, stride, activation, input, output, residual| {
            Op::Conv(ConvOp {
                name,
                shape,
                depthwise,
                stride,
                padding: Padding::Same,
                activation,
                input,
                output,
                residual,
            })
        };
        let mut ops = vec![conv(
            "_conv_stem".into(),
            [self.stem_channels, 3, 3, 3],
            false,
            2,
            Activation::Relu6,
            IMAGE_SLOT,
            0,
            None,
        )];
        let mut block_starts = Vec::new();
        let mut x = 0;
        for (i, b) in self.blocks().iter().enumerate() {
            block_starts.push(ops.len());
            let p = format!("_blocks.{i}");
            let hidden = b.in_channels * b.expand_ratio;
            let mut input = x;
            if b.expand_ratio != 1 {
                let shape = [hidden, b.in_channels, 1, 1];
                ops.push(conv(format!("{p}._expand_conv"), shape, false, 1, Activation::Relu6, x, 2, None));
                input = 2;
            }
            let depthwise = [hidden, 1, b.kernel, b.kernel];
            ops.push(conv(
                format!("{p}._depthwise_conv"),
                depthwise,
                true,
                b.stride,
                Activation::Relu6,
                input,
                3,
                None,
            ));
            let skip = b.stride == 1 && b.in_channels == b.out_channels;
            let project = [b.out_channels, hidden, 1, 1];
            ops.push(conv(
                format!("{p}._project_conv"),
                project,
                false,
                1,
                Activation::None,
                3,
                1 - x,
                skip.then_some(x),
            ));
            x = 1 - x;
        }
        let blocks_end = ops.len();
        let last = self.stages.last().map_or(self.stem_channels, |s| s.out_channels);
        ops.push(conv(
            "_conv_head".into(),
            [self.head_channels, last, 1, 1],
            false,
            1,
            Activation::Relu6,
            x,
            1 - x,
            None,
        ));
        OpGraph { ops, block_starts, blocks_end }
    }

    /// The checkpoint's convolutions with the BatchNorm after each, in forward order.
    pub fn conv_bn_pairs(&self) -> Vec<ConvBn> {
        let pair = |conv: String, bn: String, shape: [usize; 4]| ConvBn { conv, bn, shape };
        let mut pairs = vec![pair("_conv_stem".into(), "_bn0".into(), [self.stem_channels, 3, 3, 3])];
        for (i, b) in self.blocks().iter().enumerate() {
            let p = format!("_blocks.{i}");
            let hidden = b.in_channels * b.expand_ratio;
            if b.expand_ratio != 1 {
                pairs.push(pair(format!("{p}._expand_conv"), format!("{p}._bn0"), [hidden, b.in_channels, 1, 1]));
            }
            pairs.push(pair(format!("{p}._depthwise_conv"), format!("{p}._bn1"), [hidden, 1, b.kernel, b.kernel]));
            pairs.push(pair(format!("{p}._project_conv"), format!("{p}._bn2"), [b.out_channels, hidden, 1, 1]));
        }
        let last = self.stages.last().map_or(self.stem_channels, |s| s.out_channels);
        pairs.push(pair("_conv_head".into(), "_bn1".into(), [self.head_channels, last, 1, 1]));
        pairs
    }

    /// Checks a configuration read from a file against the bounds below before anything is sized by
    /// it: a lying file must get an error, not a loop over 10¹² blocks or a stride that wraps an index.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |why: String| Err(crate::error::invalid!("bad EfficientNet-Lite configuration: {why}"));
        let within = |what: &str, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                bad(format!("{what} is {value}, expected 1 to {max}"))
            }
        };
        within("stem_channels", self.stem_channels, MAX_CHANNELS)?;
        within("head_channels", self.head_channels, MAX_CHANNELS)?;
        within("num_classes", self.num_classes, MAX_CLASSES)?;
        within("the number of stages", self.stages.len(), MAX_STAGES)?;
        for (i, s) in self.stages.iter().enumerate() {
            if !KERNELS.contains(&s.kernel) {
                return bad(format!("stage {i} has kernel {}, expected one of {KERNELS:?}", s.kernel));
            }
            if !(1..=2).contains(&s.stride) {
                return bad(format!("stage {i} has stride {}, expected 1 or 2", s.stride));
            }
            within(&format!("stage {i}'s expand_ratio"), s.expand_ratio, MAX_EXPAND_RATIO)?;
            within(&format!("stage {i}'s out_channels"), s.out_channels, MAX_CHANNELS)?;
            within(&format!("stage {i}'s repeats"), s.repeats, MAX_REPEATS)?;
        }
        if !(self.batch_norm_eps > 0.0 && self.batch_norm_eps < 1.0) {
            return bad(format!("batch_norm_eps is {}, expected between 0 and 1", self.batch_norm_eps));
        }
        Ok(())
    }

    /// The largest activation one image of `side`×`side` pixels makes on its way through the network,
    /// in bytes (f32): what a file's configuration and preprocessing together ask of memory.
    pub fn peak_activation_bytes(&self, side: usize) -> usize {
        let mut spatial = side.div_ceil(2); // the stem strides by 2
        let mut peak = self.stem_channels * spatial * spatial;
        for b in self.blocks() {
            let hidden = b.in_channels * b.expand_ratio;
            peak = peak.max(hidden * spatial * spatial);
            spatial = spatial.div_ceil(b.stride);
            peak = peak.max(hidden.max(b.out_channels) * spatial * spatial);
        }
        peak.max(self.head_channels * spatial * spatial) * 4
    }
}

/// Bounds on a configuration read from a file (EfficientNet-Lite0–4 use at most 1 280 channels,
/// 1 632 after expansion, 8 repeats, 7 stages, kernels 3 and 5; ImageNet-21k has 21 843 classes).
pub const MAX_CHANNELS: usize = 4096;
pub const MAX_CLASSES: usize = 100_000;
pub const MAX_STAGES: usize = 16;
pub const MAX_REPEATS: usize = 16;
pub const MAX_EXPAND_RATIO: usize = 8;
pub const KERNELS: [usize; 4] = [1, 3, 5, 7];
/// One image's largest activation may take at most this much memory (Lite0 at 1024 px: 100 MB).
pub const MAX_ACTIVATION_BYTES: usize = 1 << 30;

#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    pub in_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand_ratio: usize,
    pub out_channels: usize,
}

/// Mobile inverted bottleneck: 1×1 expand → depthwise → 1×1 project, with an identity skip when the
/// block keeps both resolution and width.
#[derive(Debug, Clone)]
struct MbConv {
    expand: Option<ConvNorm>,
    depthwise: ConvNorm,
    project: ConvNorm,
    skip: bool,
}

impl MbConv {
    fn new(
        b: BlockConfig,
        make: &impl Fn(Conv, [usize; 4], Activation, &str, &str) -> Result<ConvNorm>,
    ) -> Result<Self> {
        let hidden = b.in_channels * b.expand_ratio;
        let expand = if b.expand_ratio != 1 {
            Some(make(Conv::Pointwise, [hidden, b.in_channels, 1, 1], Activation::Relu6, "_expand_conv", "_bn0")?)
        } else {
            None
        };
        let depthwise = Conv::Depthwise { stride: b.stride };
        Ok(Self {
            expand,
            depthwise: make(depthwise, [hidden, 1, b.kernel, b.kernel], Activation::Relu6, "_depthwise_conv", "_bn1")?,
            project: make(Conv::Pointwise, [b.out_channels, hidden, 1, 1], Activation::None, "_project_conv", "_bn2")?,
            skip: b.stride == 1 && b.in_channels == b.out_channels,
        })
    }
}

impl ModuleT for MbConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = match &self.expand {
            Some(expand) => expand.forward_t(x, train)?,
            None => x.clone(),
        };
        let h = self.project.forward_t(&self.depthwise.forward_t(&h, train)?, train)?;
        if self.skip {
            h + x
        } else {
            Ok(h)
        }
    }
}

/// The backbone up to its pooled features (the classifier is the [`crate::model::Backbone`]'s).
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    stem: ConvNorm,
    blocks: Vec<MbConv>,
    head: ConvNorm,
    /// The convolutions' dtype: F32, or BF16 for mixed precision.
    compute: DType,
}

impl EfficientNetLite {
    /// The inference network: every BatchNorm folded into its convolution (the backbone file's
    /// `<conv>.weight` and `<conv>.bias`); the 1×1 convolutions' forward products in `products`.
    pub fn new(cfg: &Config, products: MatmulPrecision, vb: VarBuilder) -> Result<Self> {
        let make = |conv, shape, relu6, conv_name: &str, _bn: &str| {
            ConvNorm::folded(conv, shape, relu6, products, vb.pp(conv_name))
        };
        Self::build(cfg, DType::F32, make)
    }

    /// The training network: every BatchNorm a layer of its own, named as in the PyTorch checkpoint
    /// (`_blocks.3._bn1.running_var`), so fine-tuning can run it in training mode and fold it again
    /// for export ([`crate::backbone::fold::fold_named`]). The variables are f32 (in `vb`); the
    /// convolutions run in `compute`.
    pub fn unfolded(cfg: &Config, compute: DType, vb: VarBuilder) -> Result<Self> {
        let eps = cfg.batch_norm_eps;
        let make = |conv, shape, relu6, conv_name: &str, bn_name: &str| {
            ConvNorm::unfolded(conv, shape, relu6, eps, vb.pp(conv_name), vb.pp(bn_name))
        };
        Self::build(cfg, compute, make)
    }

    fn build(
        cfg: &Config,
        compute: DType,
        make: impl Fn(Conv, [usize; 4], Activation, &str, &str) -> Result<ConvNorm>,
    ) -> Result<Self> {
        let blocks = cfg
            .blocks()
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let prefix = format!("_blocks.{i}");
                MbConv::new(b, &|conv, shape, relu6, conv_name: &str, bn_name: &str| {
                    make(conv, shape, relu6, &format!("{prefix}.{conv_name}"), &format!("{prefix}.{bn_name}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let last = cfg.stages.last().map_or(cfg.stem_channels, |s| s.out_channels);
        Ok(Self {
            stem: make(Conv::Stem, [cfg.stem_channels, 3, 3, 3], Activation::Relu6, "_conv_stem", "_bn0")?,
            blocks,
            head: make(Conv::Pointwise, [cfg.head_channels, last, 1, 1], Activation::Relu6, "_conv_head", "_bn1")?,
            compute,
        })
    }
}

impl ModuleT for EfficientNetLite {
    /// Images (N, 3, H, W), RGB in [-1, 1] → pooled features (N, 1280), f32. With `train`, every
    /// BatchNorm normalises with the batch's statistics and updates its running averages.
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.stem.forward_t(&images.to_dtype(self.compute)?, train)?;
        self.last_layers(&x, 0, train)
    }
}

impl EfficientNetLite {
    /// Images → the input of block `first` (of the 1×1 head convolution when `first` is the number
    /// of blocks), in evaluation mode: the frozen part when the last layers train.
    pub fn front(&self, images: &Tensor, first: usize) -> Result<Tensor> {
        self.blocks(&self.stem.forward_t(&images.to_dtype(self.compute)?, false)?, 0, first)
    }

    /// The input of block `from` → the input of block `to`, in evaluation mode.
    pub fn blocks(&self, x: &Tensor, from: usize, to: usize) -> Result<Tensor> {
        let mut x = x.to_dtype(self.compute)?;
        for block in &self.blocks[from..to] {
            x = block.forward_t(&x, false)?;
        }
        Ok(x)
    }

    /// The input of block `first` → pooled features (N, 1280), f32.
    pub fn last_layers(&self, x: &Tensor, first: usize, train: bool) -> Result<Tensor> {
        let mut x = x.to_dtype(self.compute)?;
        for block in &self.blocks[first..] {
            x = block.forward_t(&x, train)?;
        }
        self.head.forward_t(&x, train)?.to_dtype(DType::F32)?.flatten_from(2)?.mean(D::Minus1)
    }
}

impl Family for Config {
    fn validate(&self) -> crate::Result<()> {
        Config::validate(self)
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn feature_dim(&self) -> usize {
        self.head_channels
    }

    fn batch_norm_eps(&self) -> f64 {
        self.batch_norm_eps
    }

    fn classifier(&self) -> &'static str {
        "_fc"
    }

    fn conv_bn_pairs(&self) -> Vec<ConvBn> {
        Config::conv_bn_pairs(self)
    }

    fn peak_activation_bytes(&self, side: usize) -> usize {
        Config::peak_activation_bytes(self, side)
    }

    fn block_layout(&self) -> Vec<BlockInfo> {
        let stages = self.stages.iter().enumerate().flat_map(|(s, stage)| std::iter::repeat_n(s, stage.repeats));
        self.blocks()
            .iter()
            .zip(stages)
            .enumerate()
            .map(|(i, (b, stage))| BlockInfo {
                prefix: format!("_blocks.{i}"),
                stage,
                in_channels: b.in_channels,
                stride: b.stride,
            })
            .collect()
    }

    fn head_conv(&self) -> Option<&'static str> {
        Some("_conv_head")
    }

    fn stem_halvings(&self) -> usize {
        1 // the stem strides by 2
    }

    fn blocks_out_channels(&self) -> usize {
        self.stages.last().map_or(self.stem_channels, |s| s.out_channels)
    }

    fn ops(&self) -> OpGraph {
        Config::ops(self)
    }

    fn folded(&self, products: MatmulPrecision, vb: VarBuilder) -> Result<Arc<dyn Graph>> {
        Ok(Arc::new(EfficientNetLite::new(self, products, vb)?))
    }

    fn unfolded(&self, compute: DType, vb: VarBuilder) -> crate::Result<Arc<dyn Graph>> {
        Ok(Arc::new(EfficientNetLite::unfolded(self, compute, vb)?))
    }
}

impl Graph for EfficientNetLite {
    fn front(&self, images: &Tensor, first: usize) -> Result<Tensor> {
        EfficientNetLite::front(self, images, first)
    }

    fn blocks(&self, x: &Tensor, from: usize, to: usize) -> Result<Tensor> {
        EfficientNetLite::blocks(self, x, from, to)
    }

    fn last_layers(&self, x: &Tensor, first: usize, train: bool) -> Result<Tensor> {
        EfficientNetLite::last_layers(self, x, first, train)
    }
}
