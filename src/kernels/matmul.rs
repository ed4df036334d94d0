//! The product behind every 1×1 convolution (and, after [`crate::kernels::nhwc::im2col`], every
//! dense one) of the inference path: activations as rows of channels (NHWC: M pixels × K) times a
//! weight matrix (K × N), with the bias, the residual and the activation applied to each block of
//! output rows while it is still in cache.
//!
//! Two ways to store the weights ([`MatmulPrecision`]):
//! - f32, multiplied by the `gemm` crate (Candle's own CPU matmul);
//! - int8 per output channel, each block of activation rows quantized to int8 on the fly with one
//!   scale per row (per pixel), multiplied in integers ([`crate::kernels::int8`]) and rescaled in the
//!   epilogue. Per-pixel scales keep a dark pixel's small values from being rounded away next to a
//!   bright one's; the product then costs a quarter of the f32 bytes and, with AVX-512 VNNI or wasm's
//!   `i32x4.dot_i16x8`, 2–4× the multiply-adds per instruction.

use serde::{Deserialize, Serialize};

use crate::kernels::crew::for_each_chunk;
use crate::kernels::int8::{self, Int8Matrix};
use crate::kernels::{apply_activation, Activation};

/// How the inference path multiplies: int8 products (fast) or f32 (exact, for comparison).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    #[default]
    Int8,
    F32,
}

impl MatmulPrecision {
    pub fn name(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::F32 => "f32",
        }
    }

    pub fn parse(name: &str) -> crate::Result<Self> {
        match name {
            "int8" => Ok(Self::Int8),
            "f32" => Ok(Self::F32),
            other => Err(crate::error::invalid!("unknown precision `{other}`: expected int8 or f32")),
        }
    }
}

/// What happens to each output value `acc` of column `n`, row `r`:
/// `activation(acc + bias[n] + residual[r][n])`.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub residual: Option<&'a [f32]>,
    pub activation: Activation,
}

/// A weight matrix ready for [`Weights::apply`].
#[derive(Debug, Clone)]
pub struct Weights {
    /// Input channels (rows of the K × N matrix).
    pub k: usize,
    /// Output channels.
    pub n: usize,
    stored: Stored,
}

#[derive(Debug, Clone)]
enum Stored {
    /// K × N, row-major.
    F32(Vec<f32>),
    Int8(Int8Matrix),
}

/// Output rows computed together: the block's quantized input and its output stay in L2, and the
/// `gemm` crate's per-call packing of the weights is spread over enough rows to be negligible.
const ROW_BLOCK: usize = 96;

/// Rows per block for `m` rows on `threads` threads: at most [`ROW_BLOCK`], in a number of blocks
/// that shares out evenly (a 14×14 map is 4 blocks of 49 rows on 2 threads, not 96 + 96 + 4), in
/// multiples of 6 (the int8 kernels' tile).
fn block_rows(m: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    let blocks = m.div_ceil(ROW_BLOCK).max(threads).div_ceil(threads) * threads;
    m.div_ceil(blocks).next_multiple_of(6).clamp(6, ROW_BLOCK)
}

impl Weights {
    /// From PyTorch's layout, `weight[n][k]` (N × K row-major: a 1×1 convolution's (out, in), or a
    /// dense one's (out, in·k·k) after reordering its taps to im2col's order).
    pub fn new(weight: &[f32], n: usize, k: usize, precision: MatmulPrecision) -> Self {
        assert_eq!(weight.len(), n * k, "weight is not {n}×{k}");
        let stored = match precision {
            MatmulPrecision::F32 => {
                let mut kn = vec![0.0; k * n];
                for (o, row) in weight.chunks_exact(k).enumerate() {
                    for (i, &w) in row.iter().enumerate() {
                        kn[i * n + o] = w;
                    }
                }
                Stored::F32(kn)
            }
            MatmulPrecision::Int8 => Stored::Int8(Int8Matrix::quantize(weight, n, k)),
        };
        Self { k, n, stored }
    }

    /// `out` (M × N) = epilogue(`input` (M × K) · W), over `threads` threads.
    pub fn apply(&self, input: &[f32], out: &mut [f32], epilogue: Epilogue, threads: usize) {
        let m = out.len() / self.n;
        assert_eq!(input.len(), m * self.k, "input is not {m}×{}", self.k);
        self.run(m, Rows::Given(input), out, epilogue, threads)
    }

    /// As [`Weights::apply`], with the input rows made on demand (`fill(rows, block)` writes rows
    /// `rows` of the M × K input into `block`): an im2col block is built, used and dropped while it
    /// is in cache, never as a whole image.
    pub fn apply_rows(
        &self,
        m: usize,
        fill: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
        out: &mut [f32],
        epilogue: Epilogue,
        threads: usize,
    ) {
        self.run(m, Rows::Made(&fill), out, epilogue, threads)
    }

    fn run(&self, m: usize, input: Rows, out: &mut [f32], epilogue: Epilogue, threads: usize) {
        assert_eq!(out.len(), m * self.n);
        assert_eq!(epilogue.bias.len(), self.n);
        if let Some(residual) = epilogue.residual {
            assert_eq!(residual.len(), out.len());
        }
        let (k, n) = (self.k, self.n);
        let block_rows = block_rows(m, threads);
        let block = |index: usize, out: &mut [f32]| {
            let rows = index * block_rows..(index * block_rows + out.len() / n);
            let residual = epilogue.residual.map(|r| &r[rows.start * n..rows.end * n]);
            let epilogue = Epilogue { residual, ..epilogue };
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let scratch = &mut *scratch;
                match &input {
                    Rows::Given(input) => self.block(&input[rows.start * k..rows.end * k], out, epilogue, scratch),
                    Rows::Made(fill) => {
                        let mut made = std::mem::take(&mut scratch.input);
                        made.resize(rows.len() * k, 0.0);
                        fill(rows.clone(), &mut made);
                        self.block(&made, out, epilogue, scratch);
                        scratch.input = made;
                    }
                }
            })
        };
        let split = crate::kernels::parallel(threads) && m > block_rows && m * k * n >= crate::kernels::PARALLEL_WORK;
        for_each_chunk(out, block_rows * n, split, block);
    }

    fn block(&self, input: &[f32], out: &mut [f32], epilogue: Epilogue, scratch: &mut Scratch) {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { self.block_avx2(input, out, epilogue, scratch) };
        }
        self.block_portable(input, out, epilogue, scratch)
    }

    /// [`Weights::block_portable`] compiled for AVX2: quantizing and finishing rows run 8 lanes wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_avx2(&self, input: &[f32], out: &mut [f32], epilogue: Epilogue, scratch: &mut Scratch) {
        self.block_portable(input, out, epilogue, scratch)
    }

    #[inline(always)]
    fn block_portable(&self, input: &[f32], out: &mut [f32], epilogue: Epilogue, scratch: &mut Scratch) {
        let (k, n) = (self.k, self.n);
        let rows = out.len() / n;
        match &self.stored {
            Stored::F32(kn) => {
                for (r, row) in out.chunks_exact_mut(n).enumerate() {
                    row.copy_from_slice(epilogue.bias);
                    if let Some(residual) = epilogue.residual {
                        row.iter_mut().zip(&residual[r * n..(r + 1) * n]).for_each(|(o, x)| *o += x);
                    }
                }
                // SAFETY: the pointers and strides describe `out` (rows × n), `input` (rows × k)
                // and `kn` (k × n), all row-major and of those lengths (checked above).
                unsafe {
                    gemm::gemm(
                        rows,
                        n,
                        k,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        true,
                        input.as_ptr(),
                        1,
                        k as isize,
                        kn.as_ptr(),
                        1,
                        n as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                }
                apply_activation(out, epilogue.activation);
            }
            Stored::Int8(matrix) => {
                let quantized = &mut scratch.quantized;
                quantized.quantize_rows(input, k, matrix.kernel());
                matrix.multiply_with(quantized, &mut Finish { matrix, scales: &quantized.scales, epilogue, out });
            }
        }
    }
}

/// The int8 sums of a block → its output rows, through the epilogue.
struct Finish<'a> {
    matrix: &'a Int8Matrix,
    scales: &'a [f32],
    epilogue: Epilogue<'a>,
    out: &'a mut [f32],
}

impl int8::Sums for Finish<'_> {
    #[inline(always)]
    fn take(&mut self, r: usize, first: usize, sums: &[i32]) {
        let n = self.matrix.n();
        let residual = self.epilogue.residual.map(|res| &res[r * n..(r + 1) * n]);
        let row = &mut self.out[r * n..(r + 1) * n];
        let (bias, activation) = (self.epilogue.bias, self.epilogue.activation);
        self.matrix.finish(first, sums, self.scales[r], bias, residual, activation, row);
    }
}

/// Where a block's input rows come from.
enum Rows<'a> {
    Given(&'a [f32]),
    Made(&'a (dyn Fn(std::ops::Range<usize>, &mut [f32]) + Sync)),
}

/// Per-thread buffers for one block: its input rows (f32, when they are made by im2col) and their
/// int8 copy.
#[derive(Default)]
struct Scratch {
    input: Vec<f32>,
    quantized: int8::Quantized,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}
