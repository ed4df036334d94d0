//! EfficientNet-Lite's training graph: the network of [`crate::efficientnet_lite`] with every
//! BatchNorm kept as a layer of its own (not folded into the convolution), so that fine-tuning can
//! run it in training mode — batch statistics, running averages updated — and fold it again for
//! export ([`crate::weights::fold_named`]). Variable names are the PyTorch checkpoint's
//! (`_blocks.3._depthwise_conv.weight`, `_blocks.3._bn1.running_var`, ...).
//!
//! Mixed precision works like PyTorch's autocast: the weights stay f32, and with a bf16 compute
//! dtype the convolutions (nearly all the arithmetic) run on bf16 copies of the weights and
//! activations, while every BatchNorm, the pooling and everything after run in f32.

use candle_core::{DType, ModuleT, Result, Tensor, Var, D};
use candle_nn::VarBuilder;

use crate::batch_norm::{batch_norm_eval, batch_norm_train};
use crate::depthwise::depthwise_conv2d;
use crate::efficientnet_lite::{pointwise_conv, stem_conv, BlockConfig, Config};

#[derive(Debug, Clone, Copy)]
enum Conv {
    Stem,
    Pointwise,
    Depthwise { stride: usize },
}

/// BatchNorm's parameters and running statistics, named as in the checkpoint.
#[derive(Debug, Clone)]
struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
}

impl BatchNorm2d {
    /// PyTorch's default: running = 0.9 · running + 0.1 · batch (the variance unbiased).
    const MOMENTUM: f64 = 0.1;

    fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        // The variable map hands out its variables' tensors; `from_tensor` keeps them shared.
        let var = |name| Var::from_tensor(&vb.get(channels, name)?);
        Ok(Self {
            weight: vb.get(channels, "weight")?,
            bias: vb.get(channels, "bias")?,
            running_mean: var("running_mean")?,
            running_var: var("running_var")?,
            eps,
        })
    }

    /// Normalises (in f32), then ReLU6 if `relu6`. In training with the batch's statistics, which
    /// also move the running averages.
    fn forward(&self, x: &Tensor, train: bool, relu6: bool) -> Result<Tensor> {
        if !train {
            let (mean, var) = (self.running_mean.as_tensor(), self.running_var.as_tensor());
            return batch_norm_eval(x, &self.weight, &self.bias, mean, var, self.eps, relu6);
        }
        let (y, mean, var) = batch_norm_train(x, &self.weight, &self.bias, self.eps, relu6)?;
        let count = (x.elem_count() / x.dim(1)?) as f64;
        let update = |running: &Var, batch: Tensor| {
            running.set(&((running.as_tensor() * (1.0 - Self::MOMENTUM))? + (batch * Self::MOMENTUM)?)?)
        };
        update(&self.running_mean, mean)?;
        update(&self.running_var, (var * (count / (count - 1.0).max(1.0)))?)?;
        Ok(y)
    }
}

/// Convolution (no bias: the BatchNorm's shift is the bias) → BatchNorm → ReLU6?
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv,
    weight: Tensor,
    bn: BatchNorm2d,
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
        Ok(Self { conv, weight, bn: BatchNorm2d::new(shape.0, eps, bn_vb)?, relu6 })
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
        self.bn.forward(&y.to_dtype(DType::F32)?, train, self.relu6)?.to_dtype(x.dtype())
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
