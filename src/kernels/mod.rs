//! The fast ops the networks run on.
//!
//! Training and the non-CPU devices run Candle tensors through custom ops with closed-form gradients
//! ([`batch_norm`], [`bias_relu6`], [`depthwise`], [`pointwise`], [`stem`]; on other devices the same ops from tensor ops,
//! with activation checkpointing, [`recompute`]). CPU inference runs plain buffers through [`nhwc`]
//! and [`matmul`] (int8 products in [`int8`]), with every bias, residual and activation fused.

pub mod batch_norm;
pub mod bias_relu6;
pub mod crew;
pub mod depthwise;
pub mod geometry;
pub mod int8;
pub mod matmul;
pub mod nhwc;
pub mod pointwise;
pub mod recompute;
pub mod rows;
pub mod scalar;
#[cfg(target_arch = "wasm32")]
mod simd128;
pub mod stem;

pub use rows::apply_activation;
pub use scalar::{activate, Activation};

/// Whether this CPU runs the AVX2 + FMA builds of the inference kernels. The crate is compiled for
/// baseline x86-64 (SSE2), so each hot kernel also has a copy compiled with these features, chosen
/// at run time.
#[cfg(target_arch = "x86_64")]
pub fn avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU runs the AVX-512 builds of the kernels that have one.
#[cfg(target_arch = "x86_64")]
pub fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && avx2_fma()
}

/// `kernel(args)` compiled for AVX2 where the CPU has it, as it is elsewhere: the kernels are plain
/// Rust, so the AVX2 copy is the same arithmetic (no fused multiply-adds), the same bits, 8 lanes
/// instead of SSE2's 4. The kernel, everything it calls and the closure that carries the call are
/// `#[inline(always)]`, so that the copy compiled with those features holds all of them (an unmarked
/// closure handed to a `#[target_feature]` function stayed a function of its own, without them: no
/// AVX2 instruction in it, `objdump`).
macro_rules! dispatch {
    ($kernel:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if crate::kernels::avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                unsafe { avx2(#[inline(always)] || $kernel($($arg),*)) }
            } else {
                $kernel($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        $kernel($($arg),*)
    }};
}
pub(crate) use dispatch;

/// The f32 values of a custom op's operand `what` (of op `op`), which must be contiguous.
pub(crate) fn contiguous_f32<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<f32>()?[start..end]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}

/// Whether work may be split over `threads` threads. The web app's single-threaded wasm leaves the
/// parallel code out of the binary altogether (it counts against the first load); its threaded
/// build (`web-threads`) keeps it.
#[inline(always)]
pub fn parallel(threads: usize) -> bool {
    cfg!(any(not(target_arch = "wasm32"), feature = "web-threads")) && threads > 1
}

/// `f`, run on a thread of the rayon pool when work may be split. Every parallel loop that starts
/// outside the pool hands its work over to the pool's threads and sleeps until they are done, and a
/// training step starts several per layer: on a pool thread they start where they are. `f` must
/// not start a crew ([`crew::Crew::run`]): a member queued on this thread could be run by it and
/// spin there for good. Native
/// only: the threaded web build's first load is within a few hundred bytes of its 6 MB bound, and
/// what it would buy in the browser is not measured.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if cfg!(not(target_arch = "wasm32")) && parallel(available_threads()) && rayon::current_thread_index().is_none() {
        rayon::scope(|_| f())
    } else {
        f()
    }
}

/// How many threads the CPU work may use: the pool's size in the web app's threaded build (its
/// Web Workers), else Candle's choice (the physical cores, or `RAYON_NUM_THREADS`).
pub fn available_threads() -> usize {
    if cfg!(feature = "web-threads") {
        rayon::current_num_threads()
    } else {
        candle_core::utils::get_num_threads()
    }
}

/// `f` over `items`, one item per thread when [`parallel`] allows (per-image work: decoding,
/// resizing, thumbnails), in order.
pub fn map_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    if parallel(available_threads()) && items.len() > 1 {
        items.par_iter().map(f).collect()
    } else {
        items.iter().map(f).collect()
    }
}

/// Multiply-adds below which a layer runs on one thread: sharing it out costs more than a small
/// layer takes (Lite0 on 2 cores, batch 1, measured when each split woke the pool's threads: 9.4
/// ms/image splitting every layer, 8.2 with this bound, 11.7 with 4 000 000; not measured again
/// since the crew keeps them awake).
pub const PARALLEL_WORK: usize = 500_000;
