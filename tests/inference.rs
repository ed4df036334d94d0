//! The CPU inference path ([`wick::infer`]) against definitions: its int8 and f32 matrix products
//! against f64 sums, its NHWC depthwise and dense convolutions against the graph's kernels, and
//! whole backbones against Candle's graph.

mod common;

use candle_core::{Device, Tensor};
use common::pickle::CheckpointSpec;
use rand::{rngs::StdRng, Rng, SeedableRng};
use wick::data::preprocess::decode_image;
use wick::infer::MatmulPrecision;
use wick::kernels::geometry::ConvGeometry;
use wick::kernels::int8::{Int8Matrix, Kernel, Quantized};
use wick::kernels::matmul::{Epilogue, Weights};
use wick::kernels::nhwc;
use wick::kernels::Activation;
use wick::model::features::{compute, View};
use wick::model::Backbone;

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

/// The kernels this machine can run: the portable one always, VNNI where the CPU has it.
fn kernels() -> Vec<Kernel> {
    let mut kernels = vec![Kernel::Pairs];
    if Kernel::detect() == Kernel::Vnni {
        kernels.push(Kernel::Vnni);
    }
    kernels
}

/// The integer sums are exact: every kernel gives the same i32 for each row and column, and they
/// equal the sums of the quantized values.
#[test]
fn int8_kernels_agree_exactly() {
    let mut rng = StdRng::seed_from_u64(1);
    for (m, k, n) in SHAPES {
        let weight = random(&mut rng, n * k, 0.5);
        let input = random(&mut rng, m * k, 3.0);
        let mut results = Vec::new();
        for kernel in kernels() {
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
            let weights = Weights::new(&weight, n, k, precision);
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

/// An all-zero row or column quantizes to zeros (no division by zero), and the output is the bias.
#[test]
fn zero_rows_and_columns_give_the_bias() {
    let (m, k, n) = (3, 8, 4);
    let weight = vec![0.0; n * k];
    let input = vec![0.0; m * k];
    let bias = [1.0, -2.0, 3.0, 7.0];
    let mut out = vec![0.0; m * n];
    Weights::new(&weight, n, k, MatmulPrecision::Int8).apply(
        &input,
        &mut out,
        Epilogue { bias: &bias, residual: None, activation: Activation::Relu6 },
        1,
    );
    assert_eq!(out, [1.0, 0.0, 3.0, 6.0].repeat(m));
}

fn nchw_to_nhwc(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    nhwc::nchw_to_nhwc(x, c, &mut out);
    assert_eq!(out.len(), c * h * w);
    out
}

/// The NHWC depthwise kernel gives what the graph's NCHW kernel gives, bias and ReLU6 included.
#[test]
fn nhwc_depthwise_matches_the_graph_kernel() {
    let mut rng = StdRng::seed_from_u64(3);
    for (c, h, w, k, stride) in
        [(16, 7, 7, 3, 1), (24, 9, 8, 5, 2), (37, 12, 13, 3, 2), (8, 1, 1, 5, 1), (96, 14, 14, 5, 1)]
    {
        let x = random(&mut rng, c * h * w, 4.0);
        let weight = random(&mut rng, c * k * k, 1.0);
        let bias = random(&mut rng, c, 1.0);
        let xt = Tensor::from_slice(&x, (1, c, h, w), &Device::Cpu).unwrap();
        let wt = Tensor::from_slice(&weight, (c, 1, k, k), &Device::Cpu).unwrap();
        let bt = Tensor::from_slice(&bias, c, &Device::Cpu).unwrap();
        let graph = wick::kernels::depthwise::depthwise_conv2d(&xt, &wt, stride).unwrap();
        let graph = wick::kernels::bias_relu6::add_bias_relu6(&graph, &bt, true).unwrap();
        let (_, _, oh, ow) = graph.dims4().unwrap();
        let want = nchw_to_nhwc(&graph.flatten_all().unwrap().to_vec1::<f32>().unwrap(), c, oh, ow);

        let g = ConvGeometry::same(h, w, c, k, stride);
        assert_eq!((g.out_h, g.out_w), (oh, ow));
        let taps = nhwc::taps_for_depthwise(&weight, c, k);
        for threads in [1, 2] {
            let mut out = vec![f32::NAN; oh * ow * c];
            nhwc::depthwise(&g, &nchw_to_nhwc(&x, c, h, w), &taps, &bias, Activation::Relu6, &mut out, threads);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-4, "c{c} {h}×{w} k{k} s{stride} [{i}]: {a} vs {b}");
            }
        }
    }
}

/// A dense convolution as im2col + product equals Candle's `conv2d` (PyTorch's symmetric padding).
#[test]
fn im2col_convolution_matches_conv2d() {
    let mut rng = StdRng::seed_from_u64(4);
    for (c_in, c_out, h, k, stride) in [(3, 8, 11, 7, 2), (5, 6, 9, 3, 1), (4, 7, 8, 3, 2), (6, 5, 7, 1, 2)] {
        let x = random(&mut rng, c_in * h * h, 2.0);
        let weight = random(&mut rng, c_out * c_in * k * k, 1.0);
        let xt = Tensor::from_slice(&x, (1, c_in, h, h), &Device::Cpu).unwrap();
        let wt = Tensor::from_slice(&weight, (c_out, c_in, k, k), &Device::Cpu).unwrap();
        let graph = xt.conv2d(&wt, k / 2, stride, 1, 1).unwrap();
        let (_, _, oh, ow) = graph.dims4().unwrap();
        let want = nchw_to_nhwc(&graph.flatten_all().unwrap().to_vec1::<f32>().unwrap(), c_out, oh, ow);

        let g = ConvGeometry::symmetric(h, h, c_in, k, stride, k / 2);
        assert_eq!((g.out_h, g.out_w), (oh, ow));
        let rows = nhwc::filters_for_im2col(&weight, c_out, c_in, k);
        let weights = Weights::new(&rows, c_out, k * k * c_in, MatmulPrecision::F32);
        let input = nchw_to_nhwc(&x, c_in, h, h);
        let mut out = vec![f32::NAN; oh * ow * c_out];
        let bias = vec![0.0; c_out];
        let epilogue = Epilogue { bias: &bias, residual: None, activation: Activation::None };
        weights.apply_rows(g.out_pixels(), |r, block| nhwc::im2col(&g, &input, r, block), &mut out, epilogue, 1);
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-4, "{c_in}→{c_out} {h}² k{k} s{stride} [{i}]: {a} vs {b}");
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn photos() -> Vec<image::RgbImage> {
    ["coffee.png", "chelsea.png", "rocket.jpg", "brick.png"]
        .iter()
        .map(|p| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p);
            decode_image(&std::fs::read(path).unwrap()).unwrap()
        })
        .collect()
}

/// Features of `backbone` on the photos: through the CPU path in each precision and through the graph.
fn compare_paths(backbone: &Backbone, what: &str, f32_floor: f64, int8_floor: f64) {
    let images = photos();
    let input = backbone.input_tensor(&images).unwrap();
    let graph = backbone.graph_features(&input).unwrap().to_vec2::<f32>().unwrap();
    let exact = backbone.with_precision(MatmulPrecision::F32);
    assert_eq!(exact.precision(), MatmulPrecision::F32);
    let f32_path = exact.features(&input).unwrap().to_vec2::<f32>().unwrap();
    let int8_path = backbone.with_precision(MatmulPrecision::Int8).features(&input).unwrap().to_vec2::<f32>().unwrap();
    for i in 0..images.len() {
        let (f, q) = (cosine(&f32_path[i], &graph[i]), cosine(&int8_path[i], &graph[i]));
        eprintln!("{what} photo {i}: f32 path cosine {f:.7}, int8 path cosine {q:.5} to the graph");
        assert!(f >= f32_floor, "{what} photo {i}: f32 path cosine {f}");
        assert!(q >= int8_floor, "{what} photo {i}: int8 path cosine {q}");
    }
}

/// The default backbone (the shipped int8 file): the f32 path is the graph's arithmetic, the int8
/// path within the bound.
#[test]
fn lite0_inference_path_matches_the_graph() {
    let model = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors"),
    )
    .unwrap();
    let backbone = Backbone::from_backbone_file(&model, &Device::Cpu).unwrap();
    assert_eq!(backbone.precision(), MatmulPrecision::Int8, "int8 is the default");
    compare_paths(&backbone, "lite0", 0.99999, 0.995);
}

/// ResNet-18 (seeded random weights with randomised BatchNorm statistics, torchvision's layout).
#[test]
fn resnet18_inference_path_matches_the_graph() {
    let bytes = CheckpointSpec::contiguous(&common::seeds::random_resnet("resnet18", 18)).to_bytes();
    let backbone = Backbone::from_torch_checkpoint(&bytes, &Device::Cpu).unwrap();
    compare_paths(&backbone, "resnet18", 0.99999, 0.99);
}

/// A crew's jobs of 1–9 parts, thousands in a row (each replacing the last while members may still
/// be looking at it), give every part to exactly one thread; with more members than the pool has
/// threads, or none, the leader does the rest. Outside a crew the same calls run in order.
#[test]
fn crew_parts_each_run_once() {
    use wick::kernels::crew::{for_each_chunk, Crew};
    for members in [0, 1, 3] {
        let checked = Crew::run(members, || {
            let mut out = vec![0usize; 9 * 4];
            for job in 1..3000usize {
                let parts = job % 9 + 1;
                let out = &mut out[..parts * 4 - job % 3];
                out.fill(0);
                for_each_chunk(out, 4, true, |part, chunk| chunk.iter_mut().for_each(|v| *v += part + job));
                for (i, v) in out.iter().enumerate() {
                    assert_eq!(*v, i / 4 + job, "job {job}, value {i}");
                }
            }
            true
        });
        assert!(checked, "{members} members");
    }
    let mut out = vec![0usize; 10];
    for_each_chunk(&mut out, 3, false, |part, chunk| chunk.fill(part));
    assert_eq!(out, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
}

/// A phone's portrait photo — stored sideways with an EXIF Orientation tag — gives the features of
/// the same photo stored upright, for every orientation.
#[test]
fn a_photo_tagged_sideways_has_the_features_of_its_upright_twin() {
    use image::imageops::{flip_horizontal, flip_vertical, rotate180, rotate270, rotate90};
    let backbone = Backbone::from_backbone_file(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors"),
        )
        .unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let photo = image::open(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chelsea.png"))
        .unwrap()
        .to_rgb8();
    let jpeg = |image: &image::RgbImage| {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95).encode_image(image).unwrap();
        out
    };
    let features = |bytes: &[u8]| compute(&backbone, &[&decode_image(bytes).unwrap()], View::AsIs).unwrap().remove(0);
    let upright = features(&jpeg(&photo));
    let sideways = features(&jpeg(&rotate270(&photo)));
    for (tag, stored) in [
        (2, flip_horizontal(&photo)),
        (3, rotate180(&photo)),
        (4, flip_vertical(&photo)),
        (5, flip_horizontal(&rotate90(&photo))),
        (6, rotate270(&photo)),
        (7, flip_horizontal(&rotate270(&photo))),
        (8, rotate90(&photo)),
    ] {
        let tagged = features(&exif_tagged(&jpeg(&stored), tag));
        let c = cosine(&tagged, &upright);
        // JPEG rounds a turned photo's blocks a little differently: measured 0.9991–0.9995
        // (2026-12-06, chelsea.png as a quality-95 JPEG).
        assert!(c > 0.998, "orientation {tag}: cosine {c:.5} to the upright photo's features");
    }
    // Read without its tag, the sideways photo is another picture to the backbone.
    assert!(cosine(&sideways, &upright) < 0.95, "cosine {:.4}", cosine(&sideways, &upright));
}

/// `jpeg` with an EXIF segment holding only the Orientation tag (see `data::preprocess`'s tests).
fn exif_tagged(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut app1 = vec![0xFF, 0xE1, 0, 34];
    app1.extend(b"Exif\0\0MM\0\x2A\0\0\0\x08");
    app1.extend([0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    app1.extend(orientation.to_be_bytes());
    app1.extend([0, 0, 0, 0, 0, 0]);
    [&jpeg[..2], &app1, &jpeg[2..]].concat()
}
