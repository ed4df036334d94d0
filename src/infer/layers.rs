//! The inference path's unit: a convolution with its folded BatchNorm (a bias) and activation, over
//! one image's NHWC activations, plus the buffers a forward pass reuses.

use crate::backbone::fold::FloatWeights;
use crate::backbone::ops::{ConvOp, Padding};
use crate::error::{invalid, Result};
use crate::kernels::geometry::ConvGeometry;
use crate::kernels::int8::Inputs;
use crate::kernels::matmul::{Epilogue, MatmulPrecision, Weights, INT8_MIN_INPUTS};
use crate::kernels::nhwc;
use crate::kernels::Activation;

#[derive(Debug, Clone)]
enum Filters {
    /// 1×1: a matrix product of the whole image.
    Pointwise(Weights),
    /// k×k over all input channels: im2col blocks, then a matrix product.
    Dense(Weights),
    /// One k×k filter per channel, as taps (k · k × C).
    Depthwise(Vec<f32>),
}

/// Convolution → + bias (the folded BatchNorm) → (+ residual) → activation, in one pass.
#[derive(Debug, Clone)]
pub struct FusedConv {
    filters: Filters,
    bias: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    activation: Activation,
}

/// An activation: its pixels (rows × columns) and channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    /// How many values it holds.
    pub fn elements(&self) -> usize {
        self.h * self.w * self.c
    }
}

impl FusedConv {
    /// The folded convolution `op` (its `<name>.weight` and `<name>.bias` in `weights`), whose input
    /// is never negative where `nonnegative_input` says so. Depthwise filters, the stem and 1×1
    /// convolutions of fewer than [`INT8_MIN_INPUTS`] channels stay f32 whatever `precision` says:
    /// quantizing such short rows costs about what the product saves.
    pub fn new(
        weights: &FloatWeights,
        op: &ConvOp,
        precision: MatmulPrecision,
        nonnegative_input: bool,
    ) -> Result<Self> {
        let ConvOp { ref name, shape, depthwise, stride, padding, activation, .. } = *op;
        let get = |suffix: &str, expected: &[usize]| -> Result<&[f32]> {
            let tensor = format!("{name}.{suffix}");
            match weights.0.get(&tensor) {
                Some((s, values)) if s == expected && values.len() == expected.iter().product::<usize>() => Ok(values),
                Some((s, _)) => Err(invalid!("`{tensor}` has shape {s:?}, expected {expected:?}")),
                None => Err(invalid!("the weights have no `{tensor}`")),
            }
        };
        let [out, input, k, _] = shape;
        let weight = get("weight", &shape)?;
        let bias = get("bias", &[out])?.to_vec();
        let precision = if input < INT8_MIN_INPUTS { MatmulPrecision::F32 } else { precision };
        let inputs = if nonnegative_input { Inputs::NonNegative } else { Inputs::Signed };
        let (filters, in_channels) = if depthwise {
            (Filters::Depthwise(nhwc::taps_for_depthwise(weight, out, k)), out)
        } else if k == 1 {
            (Filters::Pointwise(Weights::new(weight, out, input, precision, inputs)), input)
        } else {
            let rows = nhwc::filters_for_im2col(weight, out, input, k);
            (Filters::Dense(Weights::new(&rows, out, k * k * input, precision, inputs)), input)
        };
        Ok(Self { filters, bias, in_channels, out_channels: out, kernel: k, stride, padding, activation })
    }

    /// How it computes, e.g. `1×1 int8 vnni`, `3×3/2 im2col f32`, `5×5 depthwise f32`.
    pub fn kernel_name(&self) -> String {
        let (k, stride) = (self.kernel, self.stride);
        let size = if stride == 1 { format!("{k}×{k}") } else { format!("{k}×{k}/{stride}") };
        match &self.filters {
            Filters::Pointwise(w) => format!("{size} {}", w.kernel_name()),
            Filters::Dense(w) => format!("{size} im2col {}", w.kernel_name()),
            Filters::Depthwise(_) => format!("{size} depthwise f32"),
        }
    }

    /// Multiply-adds over an input of shape `input`.
    pub fn multiply_adds(&self, input: Shape) -> usize {
        let out = self.output_shape(input);
        let per_output = match self.filters {
            Filters::Depthwise(_) => self.kernel * self.kernel,
            _ => self.kernel * self.kernel * self.in_channels,
        };
        out.elements() * per_output
    }

    fn geometry(&self, input: Shape) -> ConvGeometry {
        match self.padding {
            Padding::Same => ConvGeometry::same(input.h, input.w, input.c, self.kernel, self.stride),
            Padding::Symmetric => {
                ConvGeometry::symmetric(input.h, input.w, input.c, self.kernel, self.stride, self.kernel / 2)
            }
        }
    }

    /// The output's shape for an input of shape `input`.
    pub fn output_shape(&self, input: Shape) -> Shape {
        let g = self.geometry(input);
        Shape { h: g.out_h, w: g.out_w, c: self.out_channels }
    }

    /// `input` (of shape `shape`) → `out` (the output shape's length); `residual`, of the output's
    /// shape, is added before the activation.
    pub fn forward(&self, shape: Shape, input: &[f32], residual: Option<&[f32]>, out: &mut [f32], threads: usize) {
        assert_eq!(shape.c, self.in_channels, "input has {} channels, expected {}", shape.c, self.in_channels);
        let g = self.geometry(shape);
        let epilogue = Epilogue { bias: &self.bias, residual, activation: self.activation };
        match &self.filters {
            Filters::Pointwise(w) if self.stride == 1 => w.apply(input, out, epilogue, threads),
            Filters::Pointwise(w) | Filters::Dense(w) => {
                w.apply_rows(g.out_pixels(), |rows, block| nhwc::im2col(&g, input, rows, block), out, epilogue, threads)
            }
            Filters::Depthwise(taps) => {
                assert!(residual.is_none(), "a depthwise convolution takes no residual");
                nhwc::depthwise(&g, input, taps, &self.bias, self.activation, out, threads)
            }
        }
    }
}

/// Buffers reused from layer to layer and image to image: a forward pass allocates nothing once
/// they have grown to the network's largest activation (fresh zeroed pages cost ~14% of a pass).
#[derive(Debug, Default)]
pub struct Arena {
    buffers: [Vec<f32>; 4],
}

impl Arena {
    /// Starts a forward pass: four buffers of at least `largest` values each (not cleared: every
    /// layer overwrites its output), the last holding `image` (3, H, W) as NHWC, whose shape is
    /// returned.
    pub fn start(&mut self, image: &[f32], (h, w): (usize, usize), largest: usize) -> (Shape, [&mut Vec<f32>; 4]) {
        let input = Shape { h, w, c: 3 };
        for b in &mut self.buffers {
            if b.len() < largest.max(input.elements()) {
                b.resize(largest.max(input.elements()), 0.0);
            }
        }
        let [a, b, c, d] = &mut self.buffers;
        nhwc::nchw_to_nhwc(image, 3, &mut d[..input.elements()]);
        (input, [a, b, c, d])
    }
}
