//! The unit backbones are built from: a convolution, its normalisation, and an optional ReLU6.
//!
//! The normalisation is either folded into the convolution (a backbone file's weights: the
//! BatchNorm became a bias, see [`crate::backbone::fold`]) or a BatchNorm layer of its own (a
//! checkpoint's weights, for fine-tuning). Training or evaluation is the `train` flag of
//! [`ModuleT`], as in candle-nn's `BatchNorm`: with it, a BatchNorm normalises with the batch's
//! statistics and moves its running averages.
//!
//! Mixed precision works like PyTorch's autocast: the weights stay f32, and with bf16 activations
//! the convolution runs on a bf16 copy of its weight, while the BatchNorm runs in f32.

use candle_core::{DType, ModuleT, Result, Tensor, Var};
use candle_nn::VarBuilder;

use crate::kernels::batch_norm::{batch_norm_eval, batch_norm_train};
use crate::kernels::bias_relu6::add_bias_relu6;
use crate::kernels::depthwise::depthwise_conv2d;
use crate::kernels::matmul::MatmulPrecision;
use crate::kernels::pointwise::pointwise_conv;
use crate::kernels::stem::stem_conv;

/// The convolutions the backbones use.
#[derive(Debug, Clone, Copy)]
pub enum Conv {
    /// EfficientNet's stem: 3×3, stride 2, from RGB, TF 'SAME' padding.
    Stem,
    /// 1×1.
    Pointwise,
    /// One filter per channel, TF 'SAME' padding.
    Depthwise { stride: usize },
    /// A dense k×k convolution with symmetric zero padding (PyTorch's `Conv2d`).
    Dense { stride: usize, padding: usize },
}

pub use crate::kernels::Activation;

/// A convolution, the BatchNorm after it, and the weight shape the architecture gives it (the
/// checkpoint's names: what folding and fine-tuning walk).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvBn {
    pub conv: String,
    pub bn: String,
    pub shape: [usize; 4],
}

/// Every convolution of `pairs` must have its shape in the checkpoint (`shape_of`), or the error
/// names the first that does not, saying what the checkpoint looked like (`described`: "a resnet18
/// checkpoint").
pub fn check_conv_shapes(
    described: &str,
    pairs: &[ConvBn],
    shape_of: impl Fn(&str) -> Option<Vec<usize>>,
) -> crate::Result<()> {
    for pair in pairs {
        let tensor = format!("{}.weight", pair.conv);
        let shape = shape_of(&tensor);
        if shape.as_deref() != Some(&pair.shape[..]) {
            return Err(crate::error::invalid!(
                "this looks like {described}, but `{tensor}` has shape {}, expected {:?}",
                shape.map_or("(missing)".into(), |s| format!("{s:?}")),
                pair.shape
            ));
        }
    }
    Ok(())
}

/// BatchNorm's parameters and running statistics, named as in the checkpoint.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
}

impl BatchNorm2d {
    /// PyTorch's default: running = 0.9 · running + 0.1 · batch (the variance unbiased).
    const MOMENTUM: f64 = 0.1;

    pub fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
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

#[derive(Debug, Clone)]
enum Norm {
    /// The BatchNorm folded into the convolution: what is left of it is this bias.
    Folded(Tensor),
    Batch(BatchNorm2d),
}

/// Convolution → normalisation → ReLU6?
#[derive(Debug, Clone)]
pub struct ConvNorm {
    conv: Conv,
    /// (out, in, k, k); a pointwise convolution's as (out, in).
    weight: Tensor,
    norm: Norm,
    activation: Activation,
    /// A 1×1 convolution's forward product (see [`pointwise_conv`]).
    products: MatmulPrecision,
}

impl ConvNorm {
    /// With its BatchNorm folded: `weight` and `bias` under `vb`; a 1×1 convolution's forward
    /// product in `products` (int8: as the inference path computes it).
    pub fn folded(
        conv: Conv,
        shape: [usize; 4],
        activation: Activation,
        products: MatmulPrecision,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = Self::weight(conv, shape, &vb)?;
        Ok(Self { conv, weight, norm: Norm::Folded(vb.get(shape[0], "bias")?), activation, products })
    }

    /// With its BatchNorm as a layer: the convolution's `weight` under `conv_vb` (no bias: the
    /// BatchNorm's shift is the bias), the BatchNorm under `bn_vb`.
    pub fn unfolded(
        conv: Conv,
        shape: [usize; 4],
        activation: Activation,
        eps: f64,
        conv_vb: VarBuilder,
        bn_vb: VarBuilder,
    ) -> Result<Self> {
        let weight = Self::weight(conv, shape, &conv_vb)?;
        let norm = Norm::Batch(BatchNorm2d::new(shape[0], eps, bn_vb)?);
        Ok(Self { conv, weight, norm, activation, products: MatmulPrecision::F32 })
    }

    fn weight(conv: Conv, shape: [usize; 4], vb: &VarBuilder) -> Result<Tensor> {
        let weight = vb.get((shape[0], shape[1], shape[2], shape[3]), "weight")?;
        match conv {
            Conv::Pointwise => weight.reshape((shape[0], shape[1])),
            _ => Ok(weight),
        }
    }
}

impl ModuleT for ConvNorm {
    /// The convolution runs in `x`'s dtype, a BatchNorm in f32; the output is in `x`'s dtype.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let weight = self.weight.to_dtype(x.dtype())?;
        let y = match self.conv {
            Conv::Stem => stem_conv(x, &weight, 2)?,
            Conv::Pointwise => pointwise_conv(x, &weight, self.products)?,
            Conv::Depthwise { stride } => depthwise_conv2d(x, &weight, stride)?,
            Conv::Dense { stride, padding } => x.conv2d(&weight, padding, stride, 1, 1)?,
        };
        let relu6 = self.activation == Activation::Relu6;
        let y = match &self.norm {
            Norm::Folded(bias) => add_bias_relu6(&y, bias, relu6)?,
            Norm::Batch(bn) => bn.forward(&y.to_dtype(DType::F32)?, train, relu6)?.to_dtype(x.dtype())?,
        };
        if self.activation == Activation::Relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}
