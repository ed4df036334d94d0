//! EfficientNet-Lite's training graph: the network of [`crate::efficientnet_lite`] with every
//! BatchNorm kept as a layer of its own (not folded into the convolution), so that fine-tuning can
//! run it in training mode — batch statistics, running averages updated — and fold it again for
//! export ([`crate::weights::fold_named`]). Variable names are the PyTorch checkpoint's
//! (`_blocks.3._depthwise_conv.weight`, `_blocks.3._bn1.running_var`, ...).
//!
//! Mixed precision works like PyTorch's autocast: the weights stay f32, and with a bf16 compute
//! dtype the convolutions (nearly all the arithmetic) run on bf16 copies of the weights and
//! activations, while every BatchNorm, the pooling and everything after run in f32.

use candle_core::{DType, ModuleT, Result, Tensor, D};
use candle_nn::{BatchNorm, BatchNormConfig, VarBuilder};

use crate::depthwise::depthwise_conv2d;
use crate::efficientnet_lite::{pointwise_conv, stem_conv, BlockConfig, Config};

#[derive(Debug, Clone, Copy)]
enum Conv {
    Stem,
    Pointwise,
    Depthwise { stride: usize },
}

/// Convolution (no bias: the BatchNorm's shift is the bias) → BatchNorm → ReLU6?
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv,
    weight: Tensor,
    bn: BatchNorm,
    relu6: bool,
}

impl ConvBn {
    fn new(
        conv: Conv,
        shape: (usize, usize, usize, usize),
        relu6: bool,
        eps: f64,
        vb: (VarBuilder, VarBuilder),
    ) -> Result<Self> {
        let (conv_vb, bn_vb) = vb;
        let mut weight = conv_vb.get(shape, "weight")?;
        if let Conv::Pointwise = conv {
            weight = weight.reshape((shape.0, shape.1))?;
        }
        // PyTorch's default momentum: running = 0.9 · running + 0.1 · batch.
        let config = BatchNormConfig { eps, remove_mean: true, affine: true, momentum: 0.1 };
        Ok(Self { conv, weight, bn: candle_nn::batch_norm(shape.0, config, bn_vb)?, relu6 })
    }
}

impl ModuleT for ConvBn {
    /// The convolution runs in `x`'s dtype; the BatchNorm in f32; the output is in `x`'s dtype.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let weight = self.weight.to_dtype(x.dtype())?;
        let y = match self.conv {
            Conv::Stem => stem_conv(x, &weight)?,
            Conv::Pointwise => pointwise_conv(x, &weight)?,
            Conv::Depthwise { stride } => depthwise_conv2d(x, &weight, stride)?,
        };
        let y = self.bn.forward_t(&y.to_dtype(DType::F32)?, train)?;
        let y = if self.relu6 { y.clamp(0f32, 6f32)? } else { y };
        y.to_dtype(x.dtype())
    }
}

#[derive(Debug, Clone)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    skip: bool,
}

impl MbConv {
    fn new(b: BlockConfig, eps: f64, vb: VarBuilder) -> Result<Self> {
        let hidden = b.in_channels * b.expand_ratio;
        let pair = |conv: &str, bn: &str| (vb.pp(conv), vb.pp(bn));
        let expand = if b.expand_ratio != 1 {
            let shape = (hidden, b.in_channels, 1, 1);
            Some(ConvBn::new(Conv::Pointwise, shape, true, eps, pair("_expand_conv", "_bn0"))?)
        } else {
            None
        };
        let depthwise = Conv::Depthwise { stride: b.stride };
        Ok(Self {
            expand,
            depthwise: ConvBn::new(
                depthwise,
                (hidden, 1, b.kernel, b.kernel),
                true,
                eps,
                pair("_depthwise_conv", "_bn1"),
            )?,
            project: ConvBn::new(
                Conv::Pointwise,
                (b.out_channels, hidden, 1, 1),
                false,
                eps,
                pair("_project_conv", "_bn2"),
            )?,
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

/// The backbone up to the pooled features; the classifier is trained separately (a [`crate::head::Head`]).
#[derive(Debug, Clone)]
pub struct EfficientNetLiteTrain {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
    /// The convolutions' dtype: F32, or BF16 for mixed precision.
    compute: DType,
}

impl EfficientNetLiteTrain {
    /// The variables are f32 (in `vb`); the convolutions run in `compute`.
    pub fn new(cfg: &Config, compute: DType, vb: VarBuilder) -> Result<Self> {
        let eps = cfg.batch_norm_eps;
        let blocks = cfg
            .blocks()
            .into_iter()
            .enumerate()
            .map(|(i, b)| MbConv::new(b, eps, vb.pp("_blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let last = cfg.stages.last().map_or(cfg.stem_channels, |s| s.out_channels);
        let pair = |conv: &str, bn: &str| (vb.pp(conv), vb.pp(bn));
        Ok(Self {
            stem: ConvBn::new(Conv::Stem, (cfg.stem_channels, 3, 3, 3), true, eps, pair("_conv_stem", "_bn0"))?,
            blocks,
            head: ConvBn::new(Conv::Pointwise, (cfg.head_channels, last, 1, 1), true, eps, pair("_conv_head", "_bn1"))?,
            compute,
        })
    }
}

impl ModuleT for EfficientNetLiteTrain {
    /// Images (N, 3, H, W), RGB in [-1, 1] → pooled features (N, 1280), f32. With `train`, every
    /// BatchNorm normalises with the batch's statistics and updates its running averages.
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = self.stem.forward_t(&images.to_dtype(self.compute)?, train)?;
        for block in &self.blocks {
            x = block.forward_t(&x, train)?;
        }
        self.head.forward_t(&x, train)?.to_dtype(DType::F32)?.flatten_from(2)?.mean(D::Minus1)
    }
}
