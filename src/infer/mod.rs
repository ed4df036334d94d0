//! The CPU inference path: a backbone's folded network over plain NHWC buffers instead of Candle
//! tensors, one image at a time, with every bias, residual and activation fused into the
//! convolution before it, buffers reused across layers and images ([`layers::Arena`]), and the 1×1
//! and dense convolutions multiplied in int8 ([`MatmulPrecision::Int8`], the default) or f32.
//!
//! Candle's graph ([`crate::backbone::Network`]) stays the path for training, for CUDA, and the
//! reference the tests hold this one to.

pub mod layers;

use std::cell::RefCell;

use rayon::prelude::*;

use crate::backbone::fold::FloatWeights;
use crate::backbone::ops::{Op, OpGraph, IMAGE_SLOT, SLOTS};
use crate::backbone::{NetworkConfig, Pooling};
use crate::error::{invalid, Result};
use crate::kernels::crew::Crew;
use crate::kernels::geometry::ConvGeometry;
pub use crate::kernels::matmul::MatmulPrecision;
use crate::kernels::nhwc;
use layers::{Arena, FusedConv, Shape};

thread_local! {
    /// Each thread's activation buffers, kept from image to image and call to call: a stream of
    /// images allocates nothing (the page sends a batch of one file per thread at a time, and fresh
    /// buffers each time cost a few milliseconds of zeroed pages per image).
    static ARENA: RefCell<Arena> = RefCell::default();
}

/// One op of the network, ready to run: a convolution with its filters prepared (int8 or f32), or
/// a max pool.
#[derive(Debug, Clone)]
enum Step {
    Conv { conv: FusedConv, input: usize, output: usize, residual: Option<usize> },
    MaxPool { kernel: usize, stride: usize, padding: usize, input: usize, output: usize },
}

/// `f` on this thread, with its layers split over a crew of the pool's other threads, awake for
/// the whole of `f`, where `threads` allows (one image at a time).
fn with_crew<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    if crate::kernels::parallel(threads) {
        Crew::run(threads - 1, f)
    } else {
        f()
    }
}

/// One op's place in a pass ([`CpuNetwork::layer_times`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerTime {
    /// The convolution's checkpoint name (its weights' prefix).
    pub name: String,
    /// How it computes, e.g. `1×1 int8 vnni`, `5×5 depthwise f32`.
    pub kernel: String,
    /// Its output (H, W, C).
    pub output: [usize; 3],
    pub multiply_adds: usize,
    pub seconds: f64,
}

/// A folded network ready to run images on the CPU: the family's ops ([`OpGraph`]), walked in
/// order over four reused buffers. Nothing here is particular to a family.
#[derive(Debug)]
pub struct CpuNetwork {
    steps: Vec<Step>,
    graph: OpGraph,
    config: NetworkConfig,
}

impl CpuNetwork {
    pub fn new(config: &NetworkConfig, weights: &FloatWeights, precision: MatmulPrecision) -> Result<Self> {
        let graph = config.ops();
        let steps = graph
            .ops
            .iter()
            .zip(graph.nonnegative_inputs())
            .map(|(op, nonnegative_input)| {
                Ok(match op {
                    Op::Conv(c) => Step::Conv {
                        conv: FusedConv::new(weights, c, precision, nonnegative_input)?,
                        input: c.input,
                        output: c.output,
                        residual: c.residual,
                    },
                    &Op::MaxPool { kernel, stride, padding, input, output } => {
                        Step::MaxPool { kernel, stride, padding, input, output }
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { steps, graph, config: config.clone() })
    }

    /// Images (N, 3, H, W) as one row-major buffer → their pooled features (N × the pooling's
    /// dimension): the last map's global average, then each of `pooling`'s blocks' inputs', all
    /// from one pass.
    pub fn features(
        &self,
        images: &[f32],
        n: usize,
        side: (usize, usize),
        pooling: Pooling,
        threads: usize,
    ) -> Result<Vec<f32>> {
        let taps = self.taps(pooling);
        let dim = self.config.pooled_dim(pooling);
        self.each_image(images, n, side, dim, threads, |image, arena, out, threads| {
            let (last, pools) = out.split_at_mut(self.config.feature_dim());
            let (shape, map) = self.run_pooled(image, side, arena, threads, &taps, pools);
            nhwc::global_average_pool(map, shape.c, last);
        })
    }

    /// Images (N, 3, H, W) → each one's last feature map before pooling, NHWC (N, H', W', C), with
    /// `pooling`'s other pools appended to every cell, and (H', W', C): the map whose cells a head
    /// can be applied to one by one (where the model looks; the cells' mean is the features).
    pub fn feature_maps(
        &self,
        images: &[f32],
        n: usize,
        side: (usize, usize),
        pooling: Pooling,
        threads: usize,
    ) -> Result<(Vec<f32>, [usize; 3])> {
        let [h, w, c] = self.config.feature_map_shape(side);
        let dim = self.config.pooled_dim(pooling);
        let taps = self.taps(pooling);
        let values = self.each_image(images, n, side, h * w * dim, threads, |image, arena, out, threads| {
            let mut pools = vec![0.0; dim - c];
            let (_, map) = self.run_pooled(image, side, arena, threads, &taps, &mut pools);
            assert_eq!(map.len(), h * w * c, "the configuration's map shape is the network's");
            for (cell, out) in map.chunks_exact(c).zip(out.chunks_exact_mut(dim)) {
                out[..c].copy_from_slice(cell);
                out[c..].copy_from_slice(&pools);
            }
        })?;
        Ok((values, [h, w, dim]))
    }

    /// One image through the whole network: its last map (as [`CpuNetwork::run`]), with the
    /// global average of the result after each count of steps in `taps` written to `pools`, one
    /// after another.
    fn run_pooled<'a>(
        &self,
        image: &[f32],
        side: (usize, usize),
        arena: &'a mut Arena,
        threads: usize,
        taps: &[usize],
        mut pools: &mut [f32],
    ) -> (Shape, &'a [f32]) {
        self.run(
            self.steps.len(),
            image,
            side,
            arena,
            threads,
            taps,
            &mut |shape, x| {
                let (pooled, rest) = std::mem::take(&mut pools).split_at_mut(shape.c);
                nhwc::global_average_pool(x, shape.c, pooled);
                pools = rest;
            },
            None,
        )
    }

    /// After how many steps each of `pooling`'s blocks' inputs is ready.
    fn taps(&self, pooling: Pooling) -> Vec<usize> {
        self.graph.fronts(&self.config.pooled_blocks(pooling))
    }

    /// Images (N, 3, H, W) → each one's input to block `first` (N, C, H', W'), and (C, H', W'): the
    /// frozen part of the network, run once per image when its last layers are trained.
    pub fn activations(
        &self,
        images: &[f32],
        n: usize,
        side: (usize, usize),
        first: usize,
        threads: usize,
    ) -> Result<(Vec<f32>, [usize; 3])> {
        let shape = self.config.activation_shape(side, first);
        let steps = self.graph.front(first).len();
        let values =
            self.each_image(images, n, side, shape.iter().product(), threads, |image, arena, out, threads| {
                let (shape, x) = self.run(steps, image, side, arena, threads, &[], &mut |_, _| {}, None);
                assert_eq!(x.len(), out.len(), "the configuration's activation shape is the network's");
                nhwc::nhwc_to_nchw(x, shape.c, out)
            })?;
        Ok((values, shape))
    }

    /// Each op's time on one image (3, H, W) on `threads` threads: the fastest of `passes` passes
    /// after a warm-up, with what the op is and what it costs (`wick bench --layers`).
    pub fn layer_times(
        &self,
        image: &[f32],
        side: (usize, usize),
        passes: usize,
        threads: usize,
    ) -> Result<Vec<LayerTime>> {
        if image.len() != 3 * side.0 * side.1 {
            return Err(invalid!("expected an image of 3×{}×{}, got {} values", side.0, side.1, image.len()));
        }
        let mut best = vec![f64::INFINITY; self.steps.len()];
        let mut shapes = Vec::new();
        let run = |times: &mut Vec<(Shape, Shape, f64)>| {
            ARENA.with(|arena| {
                with_crew(threads, || {
                    let arena = &mut arena.borrow_mut();
                    self.run(self.steps.len(), image, side, arena, threads, &[], &mut |_, _| {}, Some(times));
                })
            })
        };
        for pass in 0..=passes {
            let mut times = Vec::with_capacity(self.steps.len());
            run(&mut times);
            if pass > 0 {
                best.iter_mut().zip(&times).for_each(|(best, &(_, _, t))| *best = best.min(t));
            }
            shapes = times.into_iter().map(|(input, output, _)| (input, output)).collect();
        }
        Ok(self
            .steps
            .iter()
            .zip(&self.graph.ops)
            .zip(shapes.into_iter().zip(best))
            .map(|((step, op), ((input, output), seconds))| {
                let (name, kernel, multiply_adds) = match (step, op) {
                    (Step::Conv { conv, .. }, Op::Conv(c)) => {
                        (c.name.clone(), conv.kernel_name(), conv.multiply_adds(input))
                    }
                    (_, _) => ("max pool".into(), "max pool f32".into(), 0),
                };
                LayerTime { name, kernel, output: [output.h, output.w, output.c], multiply_adds, seconds }
            })
            .collect())
    }

    /// One image (3, H, W) through the first `steps` ops: the result's shape and values (NHWC),
    /// in the arena's buffers. After each count of steps in `taps` (ascending), `tap` sees the
    /// result so far; `times`, where given, gets each op's input and output shapes and seconds.
    #[allow(clippy::too_many_arguments)]
    fn run<'a>(
        &self,
        steps: usize,
        image: &[f32],
        side: (usize, usize),
        arena: &'a mut Arena,
        threads: usize,
        taps: &[usize],
        tap: &mut dyn FnMut(Shape, &[f32]),
        mut times: Option<&mut Vec<(Shape, Shape, f64)>>,
    ) -> (Shape, &'a [f32]) {
        let largest = self.config.peak_activation_bytes(side.0.max(side.1)) / 4;
        let (input, buffers) = arena.start(image, side, largest);
        let mut shapes = [Shape { h: 0, w: 0, c: 0 }; SLOTS];
        shapes[IMAGE_SLOT] = input;
        let mut taps = taps.iter().peekable();
        for (done, step) in self.steps[..steps].iter().enumerate() {
            while taps.next_if(|&&t| t == done).is_some() {
                let slot = OpGraph::result_slot(&self.graph.ops[..done]);
                tap(shapes[slot], &buffers[slot][..shapes[slot].elements()]);
            }
            let (input, output) = match step {
                Step::Conv { input, output, .. } | Step::MaxPool { input, output, .. } => (*input, *output),
            };
            // The output buffer is taken out while the others are read (a family never reads the
            // buffer an op writes).
            let start = times.is_some().then(std::time::Instant::now);
            let mut out = std::mem::take(&mut *buffers[output]);
            let x = &buffers[input][..shapes[input].elements()];
            shapes[output] = match step {
                Step::Conv { conv, residual, .. } => {
                    let shape = conv.output_shape(shapes[input]);
                    let residual = residual.map(|r| {
                        assert_eq!(shapes[r], shape, "a residual has the output's shape");
                        &buffers[r][..shape.elements()]
                    });
                    conv.forward(shapes[input], x, residual, &mut out[..shape.elements()], threads);
                    shape
                }
                &Step::MaxPool { kernel, stride, padding, .. } => {
                    let s = shapes[input];
                    let g = ConvGeometry::symmetric(s.h, s.w, s.c, kernel, stride, padding);
                    let shape = Shape { h: g.out_h, w: g.out_w, c: s.c };
                    nhwc::max_pool(&g, x, &mut out[..shape.elements()]);
                    shape
                }
            };
            *buffers[output] = out;
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                times.push((shapes[input], shapes[output], start.elapsed().as_secs_f64()));
            }
        }
        let result = OpGraph::result_slot(&self.graph.ops[..steps]);
        let shape = shapes[result];
        if taps.next_if(|&&t| t == steps).is_some() {
            tap(shape, &buffers[result][..shape.elements()]);
        }
        assert!(taps.next().is_none(), "taps ascend and end by the last step");
        let [a, b, c, d] = buffers;
        let result: &'a [f32] = [a, b, c, d].into_iter().nth(result).expect("four buffers");
        (shape, &result[..shape.elements()])
    }

    /// `run(image, arena, out, threads)` for each image and its `per_output` values of the result.
    fn each_image(
        &self,
        images: &[f32],
        n: usize,
        side: (usize, usize),
        per_output: usize,
        threads: usize,
        run: impl Fn(&[f32], &mut Arena, &mut [f32], usize) + Sync,
    ) -> Result<Vec<f32>> {
        let per_image = 3 * side.0 * side.1;
        if images.len() != n * per_image || per_image == 0 {
            return Err(invalid!("expected {n} images of 3×{}×{}, got {} values", side.0, side.1, images.len()));
        }
        let mut outputs = vec![0.0; n * per_output];
        // Each image on its thread's own buffers ([`ARENA`]).
        let forward = |image: &[f32], out: &mut [f32], threads| {
            ARENA.with(|arena| run(image, &mut arena.borrow_mut(), out, threads))
        };
        let pairs = images.chunks_exact(per_image).zip(outputs.chunks_exact_mut(per_output));
        if crate::kernels::parallel(threads) && n >= threads {
            // A batch: one image per thread, each single-threaded (splitting one image's small late
            // layers across threads costs more than it gains).
            pairs.par_bridge().for_each(|(image, out)| forward(image, out, 1));
        } else {
            with_crew(threads, || pairs.for_each(|(image, out)| forward(image, out, threads)));
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    // The relaxed-SIMD web builds' int8 kernels (`kernels::int8`'s `Kernel::Relaxed` where a layer's
    // input cannot be negative, `Kernel::RelaxedSplit` elsewhere), run here as plain loops over
    // whole backbones: the same features, bit for bit, as the simd128 builds' kernel.

    use candle_core::Device;

    use crate::backbone::Pooling;
    use crate::kernels::int8::{with_kernel, Kernel};
    use crate::model::Backbone;

    /// The default backbone on real photos, both kernels used (its expansions and head take signed
    /// inputs, its projections ReLU6's).
    #[test]
    fn relaxed_kernels_give_the_simd128_kernels_features() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let lite0 = std::fs::read(root.join("static/efficientnet-lite0-int8.safetensors")).unwrap();
        let load = || Backbone::from_backbone_file(&lite0, &Device::Cpu).unwrap();
        let photos: Vec<_> = ["coffee.png", "chelsea.png", "rocket.jpg", "brick.png"]
            .iter()
            .map(|p| {
                crate::data::preprocess::decode_image(&std::fs::read(root.join("tests/fixtures").join(p)).unwrap())
                    .unwrap()
            })
            .collect();
        let input = load().input_tensor(&photos).unwrap();
        // Each its own backbone: the CPU path is built on first use (here, inside `with_kernel`).
        let features = |kernel| {
            let (features, matrices) = with_kernel(kernel, || {
                load().with_pooling(Pooling::Stages).features(&input).unwrap().to_vec2::<f32>().unwrap()
            });
            // The 1×1 convolutions of 16 inputs or more: 16 projections, 15 expansions, the head.
            assert_eq!(matrices, 32, "{kernel:?}: int8 matrices built");
            features
        };
        assert_eq!(features(Kernel::Relaxed), features(Kernel::Pairs));
    }

    /// Which layers take inputs that cannot be negative: Lite0's projections (after the depthwise
    /// ReLU6), not its expansions or head (after a residual sum or a projection).
    #[test]
    fn only_inputs_after_a_relu_count_as_nonnegative() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let lite0 = std::fs::read(root.join("static/efficientnet-lite0-int8.safetensors")).unwrap();
        let (meta, _) = crate::formats::backbone_file::read(&lite0).unwrap();
        let graph = meta.config.ops();
        for (op, nonnegative) in graph.ops.iter().zip(graph.nonnegative_inputs()) {
            let crate::backbone::ops::Op::Conv(conv) = op else { unreachable!("Lite0 has no max pool") };
            assert_eq!(nonnegative, conv.depthwise || conv.name.contains("project"), "{}", conv.name);
        }
    }
}
