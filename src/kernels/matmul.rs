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
use crate::kernels::int8::{self, Inputs, Int8Matrix};
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

/// Input channels from which a 1×1 convolution multiplies in int8, on every target (so that the
/// page and the CLI give the same features, bit for bit), in inference and in the trained layers'
/// forward pass ([`crate::kernels::pointwise`]). With AVX-512 VNNI, whose kernel finishes
/// its sums in registers, Lite0's 16- and 24-channel expansions took 0.39 and 0.155 ms in f32,
/// 0.23 and 0.08 ms in int8 (one thread, AMD EPYC Zen 5, 2026-12-07); in the browser see
/// BENCHMARKS.md. (Before that kernel it was 32: 9.3–9.5 ms/image with those expansions in f32,
/// 9.7–11.1 in int8, row-by-row epilogue.)
pub const INT8_MIN_INPUTS: usize = 16;

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
    /// dense one's (out, in·k·k) after reordering its taps to im2col's order), for activations that
    /// can be what `inputs` says.
    pub fn new(weight: &[f32], n: usize, k: usize, precision: MatmulPrecision, inputs: Inputs) -> Self {
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
            MatmulPrecision::Int8 => Stored::Int8(Int8Matrix::quantize(weight, n, k, inputs)),
        };
        Self { k, n, stored }
    }

    /// How the product is computed: `f32`, or `int8` and the integer kernel (`int8 vnni`).
    pub fn kernel_name(&self) -> String {
        match &self.stored {
            Stored::F32(_) => "f32".into(),
            Stored::Int8(m) => format!("int8 {}", m.kernel().name()),
        }
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
        match &self.stored {
            Stored::F32(kn) => {
                for (r, row) in out.chunks_exact_mut(n).enumerate() {
                    row.copy_from_slice(epilogue.bias);
                    if let Some(residual) = epilogue.residual {
                        row.iter_mut().zip(&residual[r * n..(r + 1) * n]).for_each(|(o, x)| *o += x);
                    }
                }
                product(out, n, k, Strided::rows(input, k), Strided::rows(kn, n), true);
                apply_activation(out, epilogue.activation);
            }
            Stored::Int8(matrix) => {
                let quantized = &mut scratch.quantized;
                quantized.quantize_rows(input, k, matrix.kernel());
                matrix.multiply_finish(quantized, epilogue.bias, epilogue.residual, epilogue.activation, out);
            }
        }
    }
}

/// A matrix in a buffer: element (r, c) at `data[r · rs + c · cs]`.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Strided<'a> {
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self { data, rs: cols, cs: 1 }
    }

    pub fn transposed(self) -> Self {
        Self { rs: self.cs, cs: self.rs, ..self }
    }

    /// The matrix without its first `from` rows.
    pub fn rows_after(self, from: usize) -> Self {
        Self { data: &self.data[(from * self.rs).min(self.data.len())..], ..self }
    }
}

/// `out` (m × n, row-major) = `lhs` (m × k) · `rhs` (k × n), plus what `out` held if `accumulate`,
/// on this thread (the `gemm` crate: Candle's own CPU matmul).
pub fn product(out: &mut [f32], n: usize, k: usize, lhs: Strided, rhs: Strided, accumulate: bool) {
    let m = out.len() / n.max(1);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let last = |s: Strided, rows: usize, cols: usize| (rows - 1) * s.rs + (cols - 1) * s.cs;
    assert!(out.len() == m * n && last(lhs, m, k) < lhs.data.len() && last(rhs, k, n) < rhs.data.len());
    // SAFETY: every element the product reads or writes is inside its buffer (asserted above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
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

#[cfg(test)]
mod tests {
    // Products against f64 sums: the int8 kernels agree exactly, and the int8 and f32 products are
    // within their error of the exact ones.

    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;
    use crate::kernels::int8::{Int8Matrix, Kernel, Quantized};
    use crate::kernels::Activation;

    fn random(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect()
    }

    /// `input` (m × k) · `weight`ᵀ (weight is n × k), in f64.
    fn product(input: &[f32], weight: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = (0..k).map(|i| input[r * k + i] as f64 * weight[c * k + i] as f64).sum();
            }
        }
        out
    }

    const SHAPES: [(usize, usize, usize); 7] =
        [(1, 1, 1), (5, 3, 17), (7, 27, 32), (13, 33, 15), (100, 96, 24), (97, 144, 40), (6, 320, 1280)];

    /// The kernels this machine can run for inputs of any sign: the portable ones always (the
    /// relaxed-SIMD builds' as plain loops), VNNI where the CPU has it.
    fn kernels() -> Vec<Kernel> {
        let mut kernels = vec![Kernel::Pairs, Kernel::RelaxedSplit];
        if Kernel::detect() == Kernel::Vnni {
            kernels.push(Kernel::Vnni);
        }
        kernels
    }

    /// The integer sums are exact: every kernel gives the same i32 for each row and column, and they
    /// equal the sums of the quantized values; over inputs that are never negative, so does the
    /// relaxed kernel that multiplies them as they are.
    #[test]
    fn int8_kernels_agree_exactly() {
        let mut rng = StdRng::seed_from_u64(1);
        for ((m, k, n), nonnegative) in SHAPES.into_iter().flat_map(|shape| [(shape, false), (shape, true)]) {
            let weight = random(&mut rng, n * k, 0.5);
            let mut input = random(&mut rng, m * k, 3.0);
            let mut kernels = kernels();
            if nonnegative {
                input.iter_mut().for_each(|x| *x = x.max(0.0));
                kernels.push(Kernel::Relaxed);
            }
            let mut results = Vec::new();
            for kernel in kernels {
                let matrix = Int8Matrix::quantize_for(&weight, n, k, kernel);
                assert_eq!(matrix.kernel(), kernel);
                let mut quantized = Quantized::default();
                quantized.quantize_rows(&input, k, kernel);
                let mut sums = vec![i32::MIN; m * n];
                matrix.multiply(&quantized, &mut sums);
                assert!(!sums.contains(&i32::MIN), "{m}×{k}×{n} {kernel:?}: every output written");
                results.push(sums);
            }
            assert!(results.windows(2).all(|w| w[0] == w[1]), "{m}×{k}×{n}: kernels disagree");
        }
    }

    /// int8 products are within quantization error of the exact ones, f32 products within rounding,
    /// and the epilogue adds the bias and the residual before the activation.
    #[test]
    fn weights_apply_matches_the_definition() {
        let mut rng = StdRng::seed_from_u64(2);
        for (m, k, n) in SHAPES {
            let weight = random(&mut rng, n * k, 0.5);
            let input = random(&mut rng, m * k, 3.0);
            let bias = random(&mut rng, n, 1.0);
            let residual = random(&mut rng, m * n, 2.0);
            let exact = product(&input, &weight, m, n, k);
            for (precision, activation, threads) in [
                (MatmulPrecision::F32, Activation::Relu6, 1),
                (MatmulPrecision::Int8, Activation::None, 2),
                (MatmulPrecision::Int8, Activation::Relu, 1),
            ] {
                let weights = Weights::new(&weight, n, k, precision, Inputs::Signed);
                let mut out = vec![f32::NAN; m * n];
                let epilogue = Epilogue { bias: &bias, residual: Some(&residual), activation };
                weights.apply(&input, &mut out, epilogue, threads);
                for (i, (&got, &sum)) in out.iter().zip(&exact).enumerate() {
                    let (r, c) = (i / n, i % n);
                    let (a, w) = (&input[r * k..(r + 1) * k], &weight[c * k..(c + 1) * k]);
                    // int8 steps are max|row|/127 per input row and max|filter|/127 per output channel;
                    // rounding moves each factor by at most half a step, so each product by at most
                    // |a|·Δw/2 + |w|·Δa/2 + Δa·Δw/4: the sum of these bounds the error.
                    let step = |v: &[f32]| v.iter().fold(0f64, |m, x| m.max(x.abs() as f64)) / 127.0;
                    let (da, dw) = (step(a), step(w));
                    let tolerance = match precision {
                        MatmulPrecision::F32 => 1e-4 * (k as f64).sqrt(),
                        MatmulPrecision::Int8 => a
                            .iter()
                            .zip(w)
                            .map(|(&x, &y)| (x.abs() as f64) * dw / 2.0 + (y.abs() as f64) * da / 2.0 + da * dw / 4.0)
                            .sum(),
                    };
                    let pre = sum + bias[i % n] as f64 + residual[i] as f64;
                    let want = match activation {
                        Activation::None => pre,
                        Activation::Relu => pre.max(0.0),
                        Activation::Relu6 => pre.clamp(0.0, 6.0),
                    };
                    assert!(
                        (got as f64 - want).abs() <= tolerance + 1e-5,
                        "{m}×{k}×{n} {precision:?} [{i}]: {got} vs {want} (tolerance {tolerance})"
                    );
                }
            }
        }
    }

    /// The VNNI kernel finishes its sums in registers, the others row by row through
    /// `rows::finish_row`: the same bits, for every activation, with and without a residual, and
    /// with a NaN and an infinity among the inputs.
    #[test]
    fn every_kernel_finishes_its_sums_alike() {
        if Kernel::detect() != Kernel::Vnni {
            eprintln!("no AVX-512 VNNI here: the kernel finishing in registers is not run");
            return;
        }
        let mut rng = StdRng::seed_from_u64(3);
        for (m, k, n) in SHAPES {
            let weight = random(&mut rng, n * k, 0.5);
            let mut input = random(&mut rng, m * k, 3.0);
            if m > 2 {
                (input[k], input[2 * k]) = (f32::NAN, f32::INFINITY);
            }
            let bias = random(&mut rng, n, 1.0);
            let residual = random(&mut rng, m * n, 2.0);
            for activation in [Activation::None, Activation::Relu, Activation::Relu6] {
                for residual in [None, Some(&residual[..])] {
                    let outputs: Vec<Vec<u32>> = [Kernel::Pairs, Kernel::Vnni]
                        .into_iter()
                        .map(|kernel| {
                            let weights =
                                Weights { k, n, stored: Stored::Int8(Int8Matrix::quantize_for(&weight, n, k, kernel)) };
                            let mut out = vec![f32::NAN; m * n];
                            weights.apply(&input, &mut out, Epilogue { bias: &bias, residual, activation }, 1);
                            out.iter().map(|v| v.to_bits()).collect()
                        })
                        .collect();
                    assert_eq!(outputs[0], outputs[1], "{m}×{k}×{n} {activation:?}, residual {}", residual.is_some());
                }
            }
        }
    }

    /// An all-zero row or column quantizes to zeros (no division by zero), and the output is the bias.
    #[test]
    fn zero_rows_and_columns_give_the_bias() {
        let (m, k, n) = (3, 8, 4);
        let weight = vec![0.0; n * k];
        let input = vec![0.0; m * k];
        let bias = [1.0, -2.0, 3.0, 7.0];
        let mut out = vec![0.0; m * n];
        Weights::new(&weight, n, k, MatmulPrecision::Int8, Inputs::Signed).apply(
            &input,
            &mut out,
            Epilogue { bias: &bias, residual: None, activation: Activation::Relu6 },
            1,
        );
        assert_eq!(out, [1.0, 0.0, 3.0, 6.0].repeat(m));
    }
}
