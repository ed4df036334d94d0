//! ResNet-18 and -50 in torchvision's layout, on seeded random weights with randomised BatchNorm
//! statistics (pretrained ResNet weights cannot be fetched here), against the independent numpy
//! reference (`tests/reference/resnet_numpy.py`) on real photos.

use std::path::PathBuf;
use std::process::Command;

use crate::common::pickle::CheckpointSpec;
use crate::common::seeds;
use candle_core::Device;
use wick::backbone::NetworkConfig;
use wick::data::preprocess::decode_image;
use wick::infer::MatmulPrecision;
use wick::model::{convert_checkpoint, Backbone, Pretrained};

const PHOTOS: [&str; 2] = ["coffee.png", "rocket.jpg"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn resnet18_matches_the_numpy_reference_and_its_int8_file_answers_alike() {
    let dir = crate::common::scratch("resnet18");
    let pth = dir.join("resnet18-random.pth");
    let bytes = CheckpointSpec::contiguous(&seeds::random_resnet("resnet18", 18)).to_bytes();
    std::fs::write(&pth, &bytes).unwrap();
    let out = Command::new("python3")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/resnet_numpy.py"))
        .arg(&pth)
        .args(PHOTOS.map(fixture))
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let images: Vec<_> = PHOTOS.iter().map(|p| decode_image(&std::fs::read(fixture(p)).unwrap()).unwrap()).collect();

    let check = |backbone: &Backbone, at_least: f64, what: &str| {
        assert_eq!(backbone.meta.architecture, "resnet18");
        assert_eq!(backbone.feature_dim(), 512);
        let features = backbone.features(&backbone.input_tensor(&images).unwrap()).unwrap().to_vec2::<f32>().unwrap();
        let top1 = backbone.top_k(&images, 1).unwrap();
        for (i, photo) in PHOTOS.iter().enumerate() {
            let expected: Vec<f32> =
                reference["features"][i].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let cos = cosine(&features[i], &expected);
            eprintln!("resnet18 {what} {photo}: cosine to reference {cos:.7}");
            assert!(cos >= at_least, "{what} {photo}: cosine {cos}");
            if reference["top2_margin"][i].as_f64().unwrap() > 0.05 {
                assert_eq!(top1[i][0].index as u64, reference["top5"][i][0].as_u64().unwrap(), "{what} {photo}: top-1");
            }
        }
    };
    let f32_weights = Backbone::from_torch_checkpoint(&bytes, &Device::Cpu).unwrap();
    check(&f32_weights.with_precision(MatmulPrecision::F32), 0.9999, "f32");
    let int8_file = Backbone::from_backbone_file(&convert_checkpoint(&bytes).unwrap(), &Device::Cpu).unwrap();
    check(&int8_file.with_precision(MatmulPrecision::F32), 0.99, "int8 file, f32 compute");
    check(&int8_file, 0.99, "int8 file, int8 compute");
}

#[test]
fn resnet50_is_recognised_by_its_bottlenecks_and_other_layouts_are_refused() {
    let tensors = seeds::random_resnet("resnet50", 50);
    let pretrained = Pretrained::from_checkpoint(&CheckpointSpec::contiguous(&tensors).to_zip()).unwrap();
    assert_eq!(pretrained.architecture, "resnet50");
    assert!(matches!(&pretrained.config, NetworkConfig::ResNet(c) if c.bottleneck && c.layers == [3, 4, 6, 3]));
    assert_eq!(pretrained.config.feature_dim(), 2048);
    assert_eq!(pretrained.preprocess, wick::data::preprocess::Preprocess::imagenet());
    // A ResNet-101's block counts, and a ResNet-18 whose downsample projection has the wrong shape.
    let mut deeper = tensors.clone();
    let extra: Vec<_> = deeper
        .iter()
        .filter(|(n, ..)| n.starts_with("layer3.5."))
        .map(|(n, s, v)| (n.replacen("layer3.5.", "layer3.6.", 1), s.clone(), v.clone()))
        .collect();
    deeper.extend(extra);
    let message = Pretrained::from_checkpoint(&CheckpointSpec::contiguous(&deeper).to_zip()).err().unwrap().to_string();
    assert!(message.contains("[3, 4, 7, 3] bottleneck blocks per layer is not one of"), "{message}");
    let mut bent = seeds::random_resnet("resnet18", 1);
    let at = bent.iter().position(|(n, ..)| n == "layer2.0.downsample.0.weight").unwrap();
    bent[at].1 = vec![128, 64, 3, 3];
    bent[at].2 = vec![0.0; 128 * 64 * 9];
    let message = Pretrained::from_checkpoint(&CheckpointSpec::contiguous(&bent).to_zip()).err().unwrap().to_string();
    assert!(
        message.contains("`layer2.0.downsample.0.weight` has shape [128, 64, 3, 3], expected [128, 64, 1, 1]"),
        "{message}"
    );
}
