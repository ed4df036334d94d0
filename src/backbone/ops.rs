//! A backbone's inference network, op by op: what each family's file says its folded network is
//! (its convolutions by checkpoint name, with their geometry, activation and residual, and its
//! pooling), in the order it runs. The CPU inference path walks it ([`crate::infer::CpuNetwork`]),
//! and so can anything else that needs the network as a list of operations (an exporter).
//!
//! Values live in four buffers ([`Slot`]s) that every op names: the image starts in
//! [`IMAGE_SLOT`], and each op reads its input (and residual) from some and writes its output to
//! another, so that a family chooses which buffer holds what, and no op overwrites what a later
//! one still reads.

use crate::kernels::Activation;

/// One of the four buffers an inference pass runs on.
pub type Slot = usize;
/// How many buffers a pass needs.
pub const SLOTS: usize = 4;
/// The buffer the image (NHWC) starts in.
pub const IMAGE_SLOT: Slot = 3;

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow's 'SAME': as much as the stride needs, the extra pixel at the end (EfficientNet).
    Same,
    /// `k / 2` zeros on every side (PyTorch's `Conv2d(padding = k // 2)`, ResNet).
    Symmetric,
}

/// A convolution with its folded BatchNorm (`<name>.weight`, `<name>.bias`) and activation; with
/// `residual`, that buffer (of the output's shape) is added before the activation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvOp {
    pub name: String,
    /// PyTorch's weight shape: (out, in, k, k), or (C, 1, k, k) for a depthwise convolution.
    pub shape: [usize; 4],
    /// One filter per channel.
    pub depthwise: bool,
    pub stride: usize,
    pub padding: Padding,
    pub activation: Activation,
    pub input: Slot,
    pub output: Slot,
    pub residual: Option<Slot>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Conv(ConvOp),
    /// Max pooling with symmetric padding (ResNet's after its stem).
    MaxPool {
        kernel: usize,
        stride: usize,
        padding: usize,
        input: Slot,
        output: Slot,
    },
}

impl Op {
    /// The buffer the op writes.
    pub fn output(&self) -> Slot {
        match self {
            Op::Conv(c) => c.output,
            Op::MaxPool { output, .. } => *output,
        }
    }
}

/// A family's folded network up to its last feature map (global average pooling gives the
/// features): its ops, and where each block begins, so that a pass can stop at a block's input
/// (the cut where the last layers train).
#[derive(Debug, Clone, PartialEq)]
pub struct OpGraph {
    pub ops: Vec<Op>,
    /// The op each block begins with; a pass that stops at block `blocks.len()` runs every block
    /// but not what follows them (EfficientNet-Lite's head convolution).
    pub block_starts: Vec<usize>,
    /// The op after the last block.
    pub blocks_end: usize,
}

impl OpGraph {
    /// The ops that compute block `first`'s input (every block's output, for `first` = the number
    /// of blocks).
    pub fn front(&self, first: usize) -> &[Op] {
        let end = self.block_starts.get(first).copied().unwrap_or(self.blocks_end);
        &self.ops[..end]
    }

    /// How many ops compute each of `blocks`' inputs (the ops after which a pass holds it).
    pub fn fronts(&self, blocks: &[usize]) -> Vec<usize> {
        blocks.iter().map(|&b| self.front(b).len()).collect()
    }

    /// The buffer that holds the result of `ops` (the image's, for none).
    pub fn result_slot(ops: &[Op]) -> Slot {
        ops.last().map_or(IMAGE_SLOT, Op::output)
    }

    /// For each op, whether its input cannot be negative: a convolution's output after a ReLU (or
    /// ReLU6), or a max pool of one. The image's values can be anything.
    pub fn nonnegative_inputs(&self) -> Vec<bool> {
        let mut nonnegative = [false; SLOTS];
        self.ops
            .iter()
            .map(|op| {
                let (input, output, result) = match *op {
                    Op::Conv(ref c) => (c.input, c.output, c.activation != Activation::None),
                    Op::MaxPool { input, output, .. } => (input, output, nonnegative[input]),
                };
                let before = nonnegative[input];
                nonnegative[output] = result;
                before
            })
            .collect()
    }

    /// The convolutions, in order.
    pub fn convs(&self) -> impl Iterator<Item = &ConvOp> {
        self.ops.iter().filter_map(|op| match op {
            Op::Conv(c) => Some(c),
            Op::MaxPool { .. } => None,
        })
    }
}
