//! Where a convolution's taps fall: output sizes and padding for TensorFlow's 'SAME' and PyTorch's
//! symmetric padding, shared by the graph's NCHW kernels and the inference path's NHWC ones.

/// TF 'SAME' geometry along one axis: output length and the padding before the first element
/// (the odd extra pixel, if any, goes after — bottom/right).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, total / 2)
}

/// Where a convolution's taps read from: input and output sizes and the padding before the first
/// row and column (the rest, if any, is after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvGeometry {
    /// TensorFlow's 'SAME' padding (EfficientNet): the odd extra pixel goes bottom/right.
    pub fn same(in_h: usize, in_w: usize, channels: usize, kernel: usize, stride: usize) -> Self {
        let (out_h, pad_top) = same_padding(in_h, kernel, stride);
        let (out_w, pad_left) = same_padding(in_w, kernel, stride);
        Self { in_h, in_w, channels, kernel, stride, pad_top, pad_left, out_h, out_w }
    }

    /// `padding` zeros on every side (PyTorch's `Conv2d`, `MaxPool2d`).
    pub fn symmetric(in_h: usize, in_w: usize, channels: usize, kernel: usize, stride: usize, padding: usize) -> Self {
        let out = |len: usize| (len + 2 * padding - kernel) / stride + 1;
        Self {
            in_h,
            in_w,
            channels,
            kernel,
            stride,
            pad_top: padding,
            pad_left: padding,
            out_h: out(in_h),
            out_w: out(in_w),
        }
    }

    pub fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }

    pub fn in_pixels(&self) -> usize {
        self.in_h * self.in_w
    }

    /// The input row under tap row `ky` of output row `oy`, if it is inside the image.
    #[inline(always)]
    pub fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky).checked_sub(self.pad_top).filter(|&iy| iy < self.in_h)
    }

    /// The input pixel under tap (ky, kx) of output pixel (oy, ox), if it is inside the image.
    #[inline(always)]
    pub fn input_pixel(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let iy = self.input_row(oy, ky)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad_left).filter(|&x| x < self.in_w)?;
        Some(iy * self.in_w + ix)
    }
}
