//! EfficientNet-Lite (Tan & Le 2019, the "Lite" variant for mobile/edge): MBConv blocks without
//! squeeze-excite, ReLU6 everywhere, a fixed 32-channel stem and 1280-channel head.
//!
//! This is the *inference* graph: every BatchNorm is folded into the convolution before it, so each
//! layer is `conv → + bias → ReLU6?`. Weight names mirror the PyTorch checkpoint
//! (`_blocks.3._depthwise_conv.weight`, ...) with the folded BatchNorm's shift stored as the conv's
//! `bias`; [`crate::weights::fold_batch_norms`] makes them from a checkpoint. Fine-tuning trains the same network
//! with its BatchNorms unfolded: [`crate::efficientnet_lite_train`].

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::bias_relu6::add_bias_relu6;
use crate::depthwise::{depthwise_conv2d, same_padding};

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

impl Config {
    pub fn lite0() -> Self {
        let stage = |kernel, stride, expand_ratio, out_channels, repeats| StageConfig {
            kernel,
            stride,
            expand_ratio,
            out_channels,
            repeats,
        };
        Self {
            stem_channels: 32,
            head_channels: 1280,
            stages: vec![
                stage(3, 1, 1, 16, 1),
                stage(3, 2, 6, 24, 2),
                stage(5, 2, 6, 40, 2),
                stage(3, 2, 6, 80, 3),
                stage(5, 1, 6, 112, 3),
                stage(5, 2, 6, 192, 4),
                stage(3, 1, 6, 320, 1),
            ],
            num_classes: 1000,
            batch_norm_eps: 1e-3,
        }
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

/// A convolution, the BatchNorm after it, and the weight shape the architecture gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvBn {
    pub conv: String,
    pub bn: String,
    pub shape: [usize; 4],
}

#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    pub in_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand_ratio: usize,
    pub out_channels: usize,
}

/// A 1×1 convolution is a matrix product over the channel axis.
#[derive(Debug, Clone)]
struct Pointwise {
    weight: Tensor, // (out, in)
    bias: Tensor,
    relu6: bool,
}

impl Pointwise {
    fn new(c_in: usize, c_out: usize, relu6: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((c_out, c_in, 1, 1), "weight")?.reshape((c_out, c_in))?;
        Ok(Self { weight, bias: vb.get(c_out, "bias")?, relu6 })
    }
}

impl Module for Pointwise {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        add_bias_relu6(&pointwise_conv(x, &self.weight)?, &self.bias, self.relu6)
    }
}

/// A 1×1 convolution, `x`: (N, C_in, H, W), `weight`: (C_out, C_in) → (N, C_out, H, W).
pub(crate) fn pointwise_conv(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let c_out = weight.dim(0)?;
    // One image (what `Backbone::features` feeds) is a plain 2-D product. For a batch, Candle's
    // broadcast product copies the weight once per image (and its gradient is summed from as many
    // copies): where the feature maps are small (late layers, CIFAR-sized inputs) it is far cheaper
    // to move the batch next to the pixels, (C, N·H·W), and multiply once.
    if n == 1 {
        weight.matmul(&x.reshape((c, h * w))?)?.reshape((1, c_out, h, w))
    } else if h * w * (c + c_out) < c * c_out {
        let columns = x.transpose(0, 1)?.reshape((c, n * h * w))?;
        weight.matmul(&columns)?.reshape((c_out, n, h, w))?.transpose(0, 1)?.contiguous()
    } else {
        weight.broadcast_matmul(&x.reshape((n, c, h * w))?)?.reshape((n, c_out, h, w))
    }
}

#[derive(Debug, Clone)]
struct Depthwise {
    weight: Tensor, // (c, 1, k, k)
    bias: Tensor,
    stride: usize,
}

impl Depthwise {
    fn new(channels: usize, kernel: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((channels, 1, kernel, kernel), "weight")?;
        Ok(Self { weight, bias: vb.get(channels, "bias")?, stride })
    }
}

impl Module for Depthwise {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        add_bias_relu6(&depthwise_conv2d(x, &self.weight, self.stride)?, &self.bias, true)
    }
}

/// The stem: a full 3×3 stride-2 convolution with TF 'SAME' padding (extra pixel bottom/right).
#[derive(Debug, Clone)]
struct Stem {
    weight: Tensor,
    bias: Tensor,
}

impl Stem {
    fn new(c_out: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((c_out, 3, 3, 3), "weight")?;
        Ok(Self { weight, bias: vb.get(c_out, "bias")? })
    }
}

impl Module for Stem {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        add_bias_relu6(&stem_conv(x, &self.weight)?, &self.bias, true)
    }
}

/// The stem's 3×3 stride-2 convolution, `weight`: (C_out, 3, 3, 3), with TF 'SAME' padding.
pub(crate) fn stem_conv(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    const KERNEL: usize = 3;
    const STRIDE: usize = 2;
    let (_, _, h, w) = x.dims4()?;
    let pad = |len: usize| {
        let (out, before) = same_padding(len, KERNEL, STRIDE);
        let total = ((out - 1) * STRIDE + KERNEL).saturating_sub(len);
        (before, total - before)
    };
    let ((top, bottom), (left, right)) = (pad(h), pad(w));
    let x = x.pad_with_zeros(2, top, bottom)?.pad_with_zeros(3, left, right)?;
    x.conv2d(weight, 0, STRIDE, 1, 1)
}

/// Mobile inverted bottleneck: 1×1 expand → depthwise → 1×1 project, with an identity skip when the
/// block keeps both resolution and width.
#[derive(Debug, Clone)]
struct MbConv {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    skip: bool,
}

impl MbConv {
    fn new(b: BlockConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = b.in_channels * b.expand_ratio;
        let expand = if b.expand_ratio != 1 {
            Some(Pointwise::new(b.in_channels, hidden, true, vb.pp("_expand_conv"))?)
        } else {
            None
        };
        Ok(Self {
            expand,
            depthwise: Depthwise::new(hidden, b.kernel, b.stride, vb.pp("_depthwise_conv"))?,
            project: Pointwise::new(hidden, b.out_channels, false, vb.pp("_project_conv"))?,
            skip: b.stride == 1 && b.in_channels == b.out_channels,
        })
    }
}

impl Module for MbConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.expand {
            Some(expand) => expand.forward(x)?,
            None => x.clone(),
        };
        let h = self.project.forward(&self.depthwise.forward(&h)?)?;
        if self.skip {
            h + x
        } else {
            Ok(h)
        }
    }
}

/// The backbone with its ImageNet classifier.
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    stem: Stem,
    blocks: Vec<MbConv>,
    head: Pointwise,
    classifier: candle_nn::Linear,
}

impl EfficientNetLite {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let blocks = cfg
            .blocks()
            .into_iter()
            .enumerate()
            .map(|(i, b)| MbConv::new(b, vb.pp("_blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let last = cfg.stages.last().map_or(cfg.stem_channels, |s| s.out_channels);
        Ok(Self {
            stem: Stem::new(cfg.stem_channels, vb.pp("_conv_stem"))?,
            blocks,
            head: Pointwise::new(last, cfg.head_channels, true, vb.pp("_conv_head"))?,
            classifier: candle_nn::linear(cfg.head_channels, cfg.num_classes, vb.pp("_fc"))?,
        })
    }

    /// Images (N, 3, H, W), RGB in [-1, 1] → pooled features (N, 1280).
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        let mut x = self.stem.forward(images)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.head.forward(&x)?.flatten_from(2)?.mean(D::Minus1)
    }

    /// Pooled features → ImageNet logits (N, 1000).
    pub fn classify(&self, features: &Tensor) -> Result<Tensor> {
        self.classifier.forward(features)
    }
}

impl Module for EfficientNetLite {
    fn forward(&self, images: &Tensor) -> Result<Tensor> {
        self.classify(&self.features(images)?)
    }
}
