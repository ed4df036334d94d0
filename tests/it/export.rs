//! The ONNX export ([`wick::export::onnx`]) run by onnx's checker and onnxruntime
//! (`tests/reference/onnx_run.py`) on real photos: Lite0 with a trained head, and a random ResNet-18
//! with its own classifier, against Wick's own f32 answers on the same pixels; and `wick export`'s
//! refusals.

use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use wick::backbone::Pooling;
use wick::data::feature_set::FeatureSet;
use wick::data::preprocess::decode_image;
use wick::export::onnx::{to_onnx, OnnxWeights};
use wick::export::tfjs::to_tfjs;
use wick::export::Exported;
use wick::infer::MatmulPrecision;
use wick::model::{Backbone, Classifier};
use wick::train::config::{Solver, TrainConfig};
use wick::train::head_fit::{HeadData, HeadFit};

use crate::common::pickle::CheckpointSpec;
use crate::common::{s, scratch, seeds, text, wick};

const PHOTOS: [&str; 6] = ["coffee.png", "chelsea.png", "rocket.jpg", "brick.png", "grass.png", "gravel.png"];

fn photos() -> Vec<image::RgbImage> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    PHOTOS.iter().map(|p| decode_image(&std::fs::read(dir.join(p)).unwrap()).unwrap()).collect()
}

fn shipped_backbone() -> Backbone {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors");
    Backbone::from_backbone_file(&std::fs::read(path).unwrap(), &Device::Cpu).unwrap()
}

struct Answers {
    probabilities: Vec<Vec<f32>>,
    features: Vec<Vec<f32>>,
    metadata: serde_json::Value,
}

/// `onnx` checked and run by onnxruntime on `backbone`'s view of the photos.
fn onnxruntime(dir: &Path, onnx: &[u8], backbone: &Backbone) -> Answers {
    let images = photos();
    let pixels: Vec<f32> = images.iter().flat_map(|im| backbone.meta.preprocess.pixels(im)).collect();
    std::fs::write(dir.join("model.onnx"), onnx).unwrap();
    std::fs::write(dir.join("pixels.f32"), pixels.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/onnx_run.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir.join("model.onnx"))
        .arg(dir.join("pixels.f32"))
        .arg(images.len().to_string())
        .output()
        .expect("python3 runs (scripts/setup.sh test installs onnx and onnxruntime)");
    assert!(out.status.success(), "onnx_run.py: {}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = |key: &str| -> Vec<Vec<f32>> { serde_json::from_value(answer[key].clone()).unwrap() };
    assert_eq!(answer["opset"], serde_json::json!([13]));
    Answers { probabilities: rows("probabilities"), features: rows("features"), metadata: answer["metadata"].clone() }
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap()
}

/// Same top-1 on every photo, every probability within 2e-3, features within 1e-3 relative.
fn assert_same_answers(what: &str, got: &Answers, probabilities: &[Vec<f32>], features: &[Vec<f32>]) {
    for (i, (g, w)) in got.probabilities.iter().zip(probabilities).enumerate() {
        assert_eq!(argmax(g), argmax(w), "{what}, {}: top-1", PHOTOS[i]);
        let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 2e-3, "{what}, {}: probabilities differ by {worst}", PHOTOS[i]);
    }
    for (i, (g, w)) in got.features.iter().zip(features).enumerate() {
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-3 * scale.max(1.0), "{what}, {}: features differ by {worst}", PHOTOS[i]);
    }
}

/// Lite0 (f32 products, stage pooling: the graphs pool four maps) with a hidden-layer head trained
/// on the photos, and Wick's own features and probabilities for them. Three classes, with labels that stress every format's metadata: a quote,
/// a slash, an emoji.
fn lite0_model() -> (Backbone, Classifier, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let backbone = shipped_backbone().with_precision(MatmulPrecision::F32).with_pooling(Pooling::Stages);
    let images = photos();
    let features = backbone.features(&backbone.input_tensor(&images).unwrap()).unwrap().to_vec2::<f32>().unwrap();
    let labels: Vec<String> = ["cup \"espresso\"", "cat/kitten", "rest 🚀"].map(String::from).to_vec();
    let mut set = FeatureSet::new(backbone.feature_dim());
    for (i, row) in features.iter().enumerate() {
        set.push(row, [0, 1, 2, 2, 2, 2][i]);
    }
    let config = TrainConfig { hidden: Some(16), solver: Solver::AdamW, ..TrainConfig::default() };
    let fitted = HeadFit::new(HeadData::train_only(set, labels.clone()), &config, &Device::Cpu)
        .unwrap()
        .run(|_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    let classifier = Classifier::from_training(fitted.trained, labels, &backbone, config, None, 0);
    let probabilities = classifier.probabilities(&Tensor::new(features.clone(), &Device::Cpu).unwrap()).unwrap();
    (backbone, classifier, features, probabilities)
}

#[test]
fn lite0_with_a_trained_head_answers_in_onnxruntime_as_in_wick() {
    let dir = scratch("lite0");
    let (backbone, classifier, features, probabilities) = lite0_model();
    let labels = classifier.meta.labels.clone();
    let model = Exported::new(backbone.clone(), Some(classifier)).unwrap();
    let onnx = to_onnx(&model, OnnxWeights::F32).unwrap();
    let got = onnxruntime(&dir, &onnx, &backbone);
    assert_same_answers("Lite0 + hidden-layer head", &got, &probabilities, &features);
    let listed: Vec<String> = serde_json::from_str(got.metadata["labels"].as_str().unwrap()).unwrap();
    assert_eq!(listed, labels);
    assert_eq!(got.metadata["crop"], "224");
    assert_eq!(got.metadata["backbone_sha256"].as_str().unwrap(), backbone.sha256);

    // --quantize: int8 weights, a scale per output channel. The same top-1 wherever Wick's f32
    // answer leads by more than 0.05, every probability within 0.03, a quarter of the bytes or so.
    let quantized = to_onnx(&model, OnnxWeights::Int8).unwrap();
    assert!(quantized.len() * 3 < onnx.len(), "{} bytes against {}", quantized.len(), onnx.len());
    let int8_dir = dir.join("int8");
    std::fs::create_dir_all(&int8_dir).unwrap();
    let got_int8 = onnxruntime(&int8_dir, &quantized, &backbone);
    for (i, (g, w)) in got_int8.probabilities.iter().zip(&probabilities).enumerate() {
        let mut sorted = w.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] - sorted[1] > 0.05 {
            assert_eq!(argmax(g), argmax(w), "--quantize, {}: top-1", PHOTOS[i]);
        }
        let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 0.03, "--quantize, {}: probabilities differ by {worst}", PHOTOS[i]);
    }

    // docs/elsewhere.md's snippet, preprocessing with Pillow, gives Wick's top-1 on the files.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/onnx_snippet.py"))
        .arg(dir.join("model.onnx"))
        .args(PHOTOS.iter().map(|p| fixtures.join(p)))
        .output()
        .unwrap();
    assert!(out.status.success(), "onnx_snippet.py: {}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["label"], labels[argmax(&probabilities[i])].as_str(), "{}: the snippet's top-1", PHOTOS[i]);
    }
    assert_eq!(lines.len(), PHOTOS.len());
}

#[test]
fn a_resnet_backbone_alone_answers_in_onnxruntime_as_in_wick() {
    let dir = scratch("resnet");
    let checkpoint = CheckpointSpec::contiguous(&seeds::random_resnet("resnet18", 5)).to_bytes();
    let backbone =
        Backbone::from_torch_checkpoint(&checkpoint, &Device::Cpu).unwrap().with_precision(MatmulPrecision::F32);
    let images = photos();
    let input = backbone.input_tensor(&images).unwrap();
    let features = backbone.features(&input).unwrap();
    let probabilities = backbone.imagenet_probabilities(&features).unwrap().to_vec2::<f32>().unwrap();
    let onnx = to_onnx(&Exported::new(backbone.clone(), None).unwrap(), OnnxWeights::F32).unwrap();
    let got = onnxruntime(&dir, &onnx, &backbone);
    assert_same_answers("random ResNet-18", &got, &probabilities, &features.to_vec2::<f32>().unwrap());
    assert_eq!(got.probabilities[0].len(), 1000);

    // A head on its stage pools (the last map's, layer2's and layer3's outputs').
    let stages = backbone.with_pooling(Pooling::Stages);
    let classifier = random_classifier(&stages, ["a", "b", "c", "d"].map(String::from).to_vec());
    let features = stages.features(&input).unwrap();
    let probabilities = classifier.probabilities(&features).unwrap();
    let onnx = to_onnx(&Exported::new(backbone.clone(), Some(classifier)).unwrap(), OnnxWeights::F32).unwrap();
    let stages_dir = dir.join("stages");
    std::fs::create_dir_all(&stages_dir).unwrap();
    let got = onnxruntime(&stages_dir, &onnx, &backbone);
    assert_eq!(got.features[0].len(), 512 + 128 + 256);
    assert_same_answers("random ResNet-18, stage pooling", &got, &probabilities, &features.to_vec2::<f32>().unwrap());
}

#[test]
fn export_refuses_what_it_cannot_do_and_never_replaces_a_file_unasked() {
    let dir = scratch("cli");
    let out = dir.join("model.onnx");
    std::fs::write(&out, b"my own file").unwrap();
    let run = wick(&["export", "--format", "onnx", "--out", s(&out)]);
    assert!(!run.status.success());
    assert!(text(&run.stderr).contains("--force"), "{}", text(&run.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), b"my own file", "an existing file was touched");

    let run = wick(&["export", "--format", "tflite", "--out", s(&dir.join("x"))]);
    assert!(text(&run.stderr).contains("possible values: onnx, tfjs"), "{}", text(&run.stderr));

    let run = wick(&["export", "--format", "onnx", "--out", s(&out), "--force"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.len() > 10_000_000, "the f32 backbone and its ImageNet classifier: {} bytes", bytes.len());

    let run = wick(&["export", "--format", "tfjs", "--quantize", "--out", s(&dir.join("q"))]);
    assert!(text(&run.stderr).contains("--quantize is for --format onnx"), "{}", text(&run.stderr));

    // A folder export: never into a folder that exists unless --force, and never over files that
    // are not an earlier export's, even with --force.
    let folder = dir.join("tm");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), b"mine").unwrap();
    let run = wick(&["export", "--format", "tfjs", "--out", s(&folder)]);
    assert!(text(&run.stderr).contains("without --force"), "{}", text(&run.stderr));
    let run = wick(&["export", "--format", "tfjs", "--out", s(&folder), "--force"]);
    assert!(text(&run.stderr).contains("notes.txt"), "{}", text(&run.stderr));
    assert_eq!(std::fs::read(folder.join("notes.txt")).unwrap(), b"mine");
    std::fs::remove_file(folder.join("notes.txt")).unwrap();
    for _ in 0..2 {
        let run = wick(&["export", "--format", "tfjs", "--out", s(&folder), "--force"]);
        assert!(run.status.success(), "{}", text(&run.stderr));
    }
    let mut names: Vec<String> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["metadata.json", "model.json", "weights.bin"]);
    assert!(!std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp")));

    // A .wick trained on another backbone is refused, naming both.
    let other = CheckpointSpec::contiguous(&seeds::random_resnet("resnet18", 6)).to_bytes();
    let pth = dir.join("other.pth");
    std::fs::write(&pth, other).unwrap();
    let lite0 = shipped_backbone();
    let model = random_classifier(&lite0, vec!["a".into(), "b".into()]);
    let wick_path = dir.join("lite0.wick");
    std::fs::write(&wick_path, model.to_bytes().unwrap()).unwrap();
    let fresh = dir.join("fresh.onnx");
    let run = wick(&["export", "--format", "onnx", "--model", s(&wick_path), "--pth", s(&pth), "--out", s(&fresh)]);
    assert!(!run.status.success());
    let err = text(&run.stderr);
    assert!(err.contains("efficientnet-lite0") && err.contains("resnet18"), "{err}");
    assert!(!fresh.exists(), "a refused export left a file");
}

/// `files` run by `package` (`@tensorflow/tfjs` 4.22 or `tfjs-1.3.1`) in Node
/// (`tests/reference/tfjs_run.mjs`) on `backbone`'s view of the photos, fed as Teachable Machine
/// feeds them (x / 127 − 1, channels last): the version and the probabilities.
fn tfjs(
    dir: &Path,
    files: &wick::export::tfjs::TfjsFiles,
    backbone: &Backbone,
    package: &str,
) -> (String, Vec<Vec<f32>>) {
    let export = dir.join("export");
    std::fs::create_dir_all(&export).unwrap();
    for (name, bytes) in files.files() {
        std::fs::write(export.join(name), bytes).unwrap();
    }
    let side = backbone.meta.preprocess.crop as usize;
    let mut pixels = Vec::new();
    for image in photos() {
        let planes = backbone.meta.preprocess.pixels(&image);
        for p in 0..side * side {
            pixels.extend((0..3).map(|c| planes[c * side * side + p] * 255.0 / 127.0 - 1.0));
        }
    }
    std::fs::write(dir.join("pixels.f32"), pixels.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/tfjs_run.mjs"))
        .arg(package)
        .arg(&export)
        .arg(dir.join("pixels.f32"))
        .arg(PHOTOS.len().to_string())
        .arg(dir.join("out.json"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("node runs (scripts/setup.sh test installs the npm packages)");
    assert!(out.status.success(), "tfjs_run.mjs {package}: {}", text(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("out.json")).unwrap()).unwrap();
    (result["version"].as_str().unwrap().to_string(), serde_json::from_value(result["probabilities"].clone()).unwrap())
}

/// Same top-1 on every photo, every probability within 1e-3.
fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), PHOTOS.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(argmax(g), argmax(w), "{what}, {}: top-1", PHOTOS[i]);
        let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-3, "{what}, {}: probabilities differ by {worst}", PHOTOS[i]);
    }
}

/// The TF.js export in TF.js 4.22 and 1.3.1 (Node's CPU backend) on the same pixels: Wick's
/// probabilities within 1e-3; and Teachable Machine's metadata.
#[test]
fn lite0_with_a_trained_head_answers_in_tfjs_as_in_wick() {
    let dir = scratch("tfjs");
    let (backbone, classifier, _, probabilities) = lite0_model();
    let labels = classifier.meta.labels.clone();
    let files = to_tfjs(&Exported::new(backbone.clone(), Some(classifier)).unwrap(), 1_765_000_000).unwrap();
    for (package, version) in [("@tensorflow/tfjs", "4.22.0"), ("tfjs-1.3.1", "1.3.1")] {
        let (got_version, got) = tfjs(&dir, &files, &backbone, package);
        assert_eq!(got_version, version);
        assert_close(&format!("Lite0 in TF.js {version}"), &got, &probabilities);
    }
    let metadata: serde_json::Value = serde_json::from_str(&files.metadata_json).unwrap();
    assert_eq!(metadata["labels"], serde_json::json!(labels));
    assert_eq!(metadata["imageSize"], 224);
    assert_eq!(metadata["tfjsVersion"], "1.3.1");
    assert_eq!(metadata["timeStamp"], "2025-12-06T05:46:40Z");
}

/// ResNet's symmetric padding and max pool as ZeroPadding2D + valid layers, and its normalisation
/// (ImageNet's mean and std) in the first layer: a random ResNet-18 alone answers in TF.js as in Wick.
#[test]
fn a_resnet_backbone_alone_answers_in_tfjs_as_in_wick() {
    let dir = scratch("tfjs-resnet");
    let checkpoint = CheckpointSpec::contiguous(&seeds::random_resnet("resnet18", 5)).to_bytes();
    let backbone =
        Backbone::from_torch_checkpoint(&checkpoint, &Device::Cpu).unwrap().with_precision(MatmulPrecision::F32);
    let features = backbone.features(&backbone.input_tensor(&photos()).unwrap()).unwrap();
    let probabilities = backbone.imagenet_probabilities(&features).unwrap().to_vec2::<f32>().unwrap();
    let files = to_tfjs(&Exported::new(backbone.clone(), None).unwrap(), 0).unwrap();
    let (_, got) = tfjs(&dir, &files, &backbone, "@tensorflow/tfjs");
    assert_close("random ResNet-18 in TF.js 4.22", &got, &probabilities);
}

/// A model whose last layer trained runs on its own backbone file: exported with it, onnxruntime
/// gives Wick's f32 answers; exported without it, the refusal names the file to add.
#[test]
fn a_layer_trained_model_exports_with_its_own_backbone() {
    let dir = scratch("layers");
    let data = dir.join("data");
    for (class, photo) in [("brick", "brick.png"), ("grass", "grass.png")] {
        let image = decode_image(
            &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(photo)).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..6u32 {
            let tile = image::imageops::crop_imm(&image, 40 * i, 20 * (i % 3), 96, 96).to_image();
            tile.save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let model = dir.join("tiles.wick");
    let run = wick(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&model),
        "--no-cache",
        "--quiet",
        "--train-layers",
        "1",
        "--layer-epochs",
        "1",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let backbone_file = dir.join("tiles.backbone.safetensors");
    assert!(backbone_file.exists());

    let without = dir.join("without.onnx");
    let run = wick(&["export", "--model", s(&model), "--format", "onnx", "--out", s(&without)]);
    assert!(!run.status.success());
    assert!(text(&run.stderr).contains(".backbone.safetensors"), "{}", text(&run.stderr));
    assert!(!without.exists());

    let out = dir.join("tiles.onnx");
    let run =
        wick(&["export", "--model", s(&model), "--backbone", s(&backbone_file), "--format", "onnx", "--out", s(&out)]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let base = Backbone::from_backbone_file(&std::fs::read(&backbone_file).unwrap(), &Device::Cpu).unwrap();
    let classifier = Classifier::from_bytes(&std::fs::read(&model).unwrap(), &Device::Cpu).unwrap();
    let backbone = classifier.feature_extractor(&base).unwrap().with_precision(MatmulPrecision::F32);
    let features = backbone.features(&backbone.input_tensor(&photos()).unwrap()).unwrap();
    let probabilities = classifier.probabilities(&features).unwrap();
    let got = onnxruntime(&dir, &std::fs::read(&out).unwrap(), &backbone);
    assert_same_answers("layer-trained model", &got, &probabilities, &features.to_vec2::<f32>().unwrap());

    // The web export ships the backbone the layers trained, not the default; without it, it refuses.
    let runtime = fake_runtime(&dir);
    let site = dir.join("site");
    let run = wick(&["export", "--model", s(&model), "--format", "web", "--out", s(&site), "--runtime", s(&runtime)]);
    assert!(text(&run.stderr).contains(".backbone.safetensors"), "{}", text(&run.stderr));
    assert!(!site.exists());
    let run = wick(&[
        "export",
        "--model",
        s(&model),
        "--backbone",
        s(&backbone_file),
        "--format",
        "web",
        "--out",
        s(&site),
        "--runtime",
        s(&runtime),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(std::fs::read(site.join("backbone.safetensors")).unwrap(), std::fs::read(&backbone_file).unwrap());
    assert_eq!(std::fs::read(site.join("model.wick")).unwrap(), std::fs::read(&model).unwrap());
}

/// A linear head of random weights on `backbone`, one output per label: a model to export.
fn random_classifier(backbone: &Backbone, labels: Vec<String>) -> Classifier {
    let spec = wick::train::config::HeadSpec { input_dim: backbone.feature_dim(), hidden: None, classes: labels.len() };
    let head = wick::model::head::Head::init(spec, &mut wick::util::rng::Rng::new(1), &Device::Cpu).unwrap();
    let stop = wick::train::report::Stop::Completed;
    let trained = wick::model::head::Trained { head, history: Vec::new(), best_epoch: 1, stop };
    Classifier::from_training(trained, labels, backbone, TrainConfig::default(), None, 0)
}

/// A stand-in for the web runtime's built files (`scripts/build-web-feature.sh runtime` needs the wasm
/// toolchain; the browser test runs the real one): what `wick export --format web` copies.
fn fake_runtime(dir: &Path) -> std::path::PathBuf {
    let runtime = dir.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    write_runtime(&runtime, b"\0asm\x01\0\0\0");
    runtime
}

/// The runtime's built files in `folder`: both bindings, both builds' wasm `wasm`.
fn write_runtime(folder: &Path, wasm: &[u8]) {
    for name in wick::export::web::RUNTIME_FILES {
        let bytes: &[u8] = if name.ends_with(".wasm") { wasm } else { b"export default function init() {}\n" };
        std::fs::write(folder.join(name), bytes).unwrap();
    }
}

#[test]
fn the_web_export_writes_its_folder_and_refuses_what_it_cannot_use() {
    let dir = scratch("web");
    let runtime = fake_runtime(&dir);
    let out = dir.join("site");
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&dir.join("nowhere"))]);
    assert!(!run.status.success());
    let err = text(&run.stderr);
    assert!(err.contains("nowhere") && err.contains("wick_runtime.js is missing"), "{err}");
    assert!(!out.exists());

    let not_wasm = dir.join("not-wasm");
    std::fs::create_dir(&not_wasm).unwrap();
    write_runtime(&not_wasm, b"<html>404</html>");
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&not_wasm)]);
    assert!(text(&run.stderr).contains("wick_runtime_bg.wasm is not WebAssembly"), "{}", text(&run.stderr));
    assert!(!out.exists());

    // A runtime built before its relaxed-SIMD twin (or half copied): refused, naming the missing
    // file; a twin that is not WebAssembly or not text, refused by name.
    let plain_only = dir.join("plain-only");
    std::fs::create_dir(&plain_only).unwrap();
    write_runtime(&plain_only, b"\0asm\x01\0\0\0");
    std::fs::remove_file(plain_only.join("wick_runtime_relaxed_bg.wasm")).unwrap();
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&plain_only)]);
    assert!(text(&run.stderr).contains("wick_runtime_relaxed_bg.wasm is missing"), "{}", text(&run.stderr));
    std::fs::write(plain_only.join("wick_runtime_relaxed_bg.wasm"), b"<html>404</html>").unwrap();
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&plain_only)]);
    assert!(text(&run.stderr).contains("wick_runtime_relaxed_bg.wasm is not WebAssembly"), "{}", text(&run.stderr));
    std::fs::write(plain_only.join("wick_runtime_relaxed_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(plain_only.join("wick_runtime_relaxed.js"), b"\xff\xfe binary").unwrap();
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&plain_only)]);
    assert!(text(&run.stderr).contains("wick_runtime_relaxed.js is not text"), "{}", text(&run.stderr));
    assert!(!out.exists());

    let run = wick(&["export", "--format", "web", "--quantize", "--out", s(&out), "--runtime", s(&runtime)]);
    assert!(text(&run.stderr).contains("--quantize is for --format onnx"), "{}", text(&run.stderr));
    let run = wick(&["export", "--format", "onnx", "--out", s(&dir.join("m.onnx")), "--runtime", s(&runtime)]);
    assert!(text(&run.stderr).contains("--runtime is for --format web"), "{}", text(&run.stderr));

    // The backbone alone: its own classes, no model.wick; the files are the runtime's and the
    // built-in backbone file, byte for byte.
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&runtime)]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut expected: Vec<&str> = wick::export::web::FILES.iter().copied().filter(|f| *f != "model.wick").collect();
    expected.sort();
    assert_eq!(names, expected);
    for name in wick::export::web::RUNTIME_FILES {
        assert_eq!(std::fs::read(out.join(name)).unwrap(), std::fs::read(runtime.join(name)).unwrap(), "{name}");
    }
    assert_eq!(
        std::fs::read(out.join("backbone.safetensors")).unwrap(),
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/efficientnet-lite0-int8.safetensors")).unwrap()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("wick-model.json")).unwrap()).unwrap();
    assert_eq!(manifest["classifier"], serde_json::Value::Null);
    assert_eq!(manifest["backbone"], "backbone.safetensors");

    // An earlier web export is replaced with --force; a folder holding anything else is not.
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&runtime)]);
    assert!(text(&run.stderr).contains("without --force"), "{}", text(&run.stderr));
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&runtime), "--force"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    std::fs::write(out.join("my-page.html"), b"mine").unwrap();
    let run = wick(&["export", "--format", "web", "--out", s(&out), "--runtime", s(&runtime), "--force"]);
    assert!(text(&run.stderr).contains("my-page.html"), "{}", text(&run.stderr));
    assert_eq!(std::fs::read(out.join("my-page.html")).unwrap(), b"mine");
}

/// 10,000 classes whose names hold quotes, slashes, backslashes, markup and emoji come out of every
/// format's metadata as they went in.
#[test]
fn ten_thousand_hostile_labels_survive_every_format() {
    let dir = scratch("labels");
    let labels: Vec<String> = (0..10_000)
        .map(|i| match i % 4 {
            0 => format!("say \"{i}\""),
            1 => format!("a/b\\c {i}"),
            2 => format!("<script>{i}</script>"),
            _ => format!("rocket 🚀 {i} ünï"),
        })
        .collect();
    let lite0 = shipped_backbone();
    let classifier = random_classifier(&lite0, labels.clone());
    let wick_path = dir.join("many.wick");
    std::fs::write(&wick_path, classifier.to_bytes().unwrap()).unwrap();
    let model = Exported::new(lite0, Some(classifier)).unwrap();

    // ONNX: the labels metadata, read back by onnx itself.
    let onnx = dir.join("many.onnx");
    std::fs::write(&onnx, to_onnx(&model, OnnxWeights::Int8).unwrap()).unwrap();
    let read = Command::new("python3")
        .args([
            "-c",
            "import onnx, sys; m = onnx.load(sys.argv[1]); print({p.key: p.value for p in m.metadata_props}['labels'])",
        ])
        .arg(&onnx)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", text(&read.stderr));
    let onnx_labels: Vec<String> = serde_json::from_str(text(&read.stdout).trim()).unwrap();
    assert_eq!(onnx_labels, labels, "ONNX");

    // TF.js: Teachable Machine's metadata, and a last layer of 10,000 units.
    let tfjs = to_tfjs(&model, 0).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&tfjs.metadata_json).unwrap();
    assert_eq!(serde_json::from_value::<Vec<String>>(meta["labels"].clone()).unwrap(), labels, "TF.js");
    assert!(tfjs.model_json.contains("\"units\":10000"), "TF.js: the last Dense layer's units");

    // Web: the .wick as it was, and the package's description, still JSON.
    let runtime = fake_runtime(&dir);
    let out = dir.join("site");
    let run =
        wick(&["export", "--model", s(&wick_path), "--format", "web", "--out", s(&out), "--runtime", s(&runtime)]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let shipped = Classifier::from_bytes(&std::fs::read(out.join("model.wick")).unwrap(), &Device::Cpu).unwrap();
    assert_eq!(shipped.meta.labels, labels, "web");
    let package: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("package.json")).unwrap()).unwrap();
    let description = package["description"].as_str().unwrap();
    assert!(description.contains("10000 classes (say \"0\", a/b\\c 1, <script>2</script>"), "{description}");
}
