//! The ONNX export ([`wick::export::onnx`]) run by onnx's checker and onnxruntime
//! (`tests/reference/onnx_run.py`) on real photos: Lite0 with a trained head, and a random ResNet-18
//! with its own classifier, against Wick's own f32 answers on the same pixels; and `wick export`'s
//! refusals.

use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use wick::data::feature_set::FeatureSet;
use wick::data::preprocess::decode_image;
use wick::export::onnx::to_onnx;
use wick::export::Exported;
use wick::infer::MatmulPrecision;
use wick::model::{Backbone, Classifier};
use wick::train::config::TrainConfig;
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

#[test]
fn lite0_with_a_trained_head_answers_in_onnxruntime_as_in_wick() {
    let dir = scratch("lite0");
    let backbone = shipped_backbone().with_precision(MatmulPrecision::F32);
    let images = photos();
    let features = backbone.features(&backbone.input_tensor(&images).unwrap()).unwrap().to_vec2::<f32>().unwrap();
    // Three classes with a label that stresses the metadata: a quote, a slash, an emoji.
    let labels: Vec<String> = ["cup \"espresso\"", "cat/kitten", "rest 🚀"].map(String::from).to_vec();
    let mut set = FeatureSet::new(backbone.feature_dim());
    for (i, row) in features.iter().enumerate() {
        set.push(row, [0, 1, 2, 2, 2, 2][i]);
    }
    let config = TrainConfig { hidden: Some(16), ..TrainConfig::default() };
    let config = TrainConfig { solver: wick::train::config::Solver::for_head(config.hidden), ..config };
    let fitted = HeadFit::new(HeadData::train_only(set, labels.clone()), &config, &Device::Cpu)
        .unwrap()
        .run(|_| std::ops::ControlFlow::Continue(()))
        .unwrap();
    let classifier = Classifier::from_training(fitted.trained, labels.clone(), &backbone, config, None, 0);
    let x = Tensor::new(features.clone(), &Device::Cpu).unwrap();
    let probabilities = classifier.probabilities(&x).unwrap();

    let onnx = to_onnx(&Exported::model(&classifier, &backbone)).unwrap();
    let got = onnxruntime(&dir, &onnx, &backbone);
    assert_same_answers("Lite0 + hidden-layer head", &got, &probabilities, &features);
    let listed: Vec<String> = serde_json::from_str(got.metadata["labels"].as_str().unwrap()).unwrap();
    assert_eq!(listed, labels);
    assert_eq!(got.metadata["crop"], "224");
    assert_eq!(got.metadata["backbone_sha256"].as_str().unwrap(), backbone.sha256);

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
    let onnx = to_onnx(&Exported::backbone(&backbone)).unwrap();
    let got = onnxruntime(&dir, &onnx, &backbone);
    assert_same_answers("random ResNet-18", &got, &probabilities, &features.to_vec2::<f32>().unwrap());
    assert_eq!(got.probabilities[0].len(), 1000);
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
    assert!(text(&run.stderr).contains("possible values: onnx"), "{}", text(&run.stderr));

    let run = wick(&["export", "--format", "onnx", "--out", s(&out), "--force"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.len() > 10_000_000, "the f32 backbone and its ImageNet classifier: {} bytes", bytes.len());

    // A .wick trained on another backbone is refused, naming both.
    let other = CheckpointSpec::contiguous(&seeds::random_resnet("resnet18", 6)).to_bytes();
    let pth = dir.join("other.pth");
    std::fs::write(&pth, other).unwrap();
    let lite0 = shipped_backbone();
    let head = wick::model::head::Head::init(
        wick::train::config::HeadSpec { input_dim: lite0.feature_dim(), hidden: None, classes: 2 },
        &mut wick::util::rng::Rng::new(1),
        &Device::Cpu,
    )
    .unwrap();
    let trained = wick::model::head::Trained {
        head,
        history: Vec::new(),
        best_epoch: 1,
        stop: wick::train::report::Stop::Completed,
    };
    let model =
        Classifier::from_training(trained, vec!["a".into(), "b".into()], &lite0, TrainConfig::default(), None, 0);
    let wick_path = dir.join("lite0.wick");
    std::fs::write(&wick_path, model.to_bytes().unwrap()).unwrap();
    let fresh = dir.join("fresh.onnx");
    let run = wick(&["export", "--format", "onnx", "--model", s(&wick_path), "--pth", s(&pth), "--out", s(&fresh)]);
    assert!(!run.status.success());
    let err = text(&run.stderr);
    assert!(err.contains("efficientnet-lite0") && err.contains("resnet18"), "{err}");
    assert!(!fresh.exists(), "a refused export left a file");
}
