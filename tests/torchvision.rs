//! Wick against PyTorch itself: torchvision's ResNet-18, -34 and -50 with seeded random weights and
//! randomised BatchNorm statistics, saved by `torch.save` (and as safetensors when the package is
//! there) by `tests/reference/check_torchvision.py`, with torchvision's features and logits on real
//! photos. Run by `make check-torch` (it needs PyTorch, ~3 GB: not part of `make test`, so ignored).

use std::path::PathBuf;

use candle_core::Device;
use wick::data::preprocess::decode_image;
use wick::model::{convert_checkpoint, Backbone};

/// The largest difference over the largest magnitude: "within 1e-4 relative".
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs())) / scale
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
#[ignore = "needs the files of tests/reference/check_torchvision.py: run `make check-torch`"]
fn resnets_match_torchvision() {
    let dir = PathBuf::from(
        std::env::var("WICK_TORCHVISION").expect("WICK_TORCHVISION names the folder of check_torchvision.py"),
    );
    for name in ["resnet18", "resnet34", "resnet50"] {
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let rows = |key: &str| -> Vec<Vec<f32>> {
            reference[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
                .collect()
        };
        let (features, logits) = (rows("features"), rows("logits"));
        let images: Vec<_> = reference["photos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| decode_image(&std::fs::read(p.as_str().unwrap()).unwrap()).unwrap())
            .collect();
        let mut files = vec![dir.join(format!("{name}.pth"))];
        files.extend(Some(dir.join(format!("{name}.safetensors"))).filter(|f| f.exists()));
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let backbone = Backbone::from_torch_checkpoint(&bytes, &Device::Cpu).unwrap();
            assert_eq!(backbone.meta.architecture, name);
            let ours = backbone.features(&backbone.input_tensor(&images).unwrap()).unwrap();
            let probabilities = backbone.imagenet_probabilities(&ours).unwrap();
            let ours = ours.to_vec2::<f32>().unwrap();
            for (i, (f, l)) in features.iter().zip(&logits).enumerate() {
                let error = relative_error(&ours[i], f);
                eprintln!("{name} {} photo {i}: features within {error:.1e} relative of torchvision's", file.display());
                assert!(error <= 1e-4, "{name} photo {i}: features {error:.2e} relative from torchvision's");
                let top1 = probabilities.get(i).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap() as usize;
                let expected = l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
                assert_eq!(top1, expected, "{name} photo {i}: top-1");
            }
            let int8 = Backbone::from_backbone_file(&convert_checkpoint(&bytes).unwrap(), &Device::Cpu).unwrap();
            let int8 = int8.features(&int8.input_tensor(&images).unwrap()).unwrap().to_vec2::<f32>().unwrap();
            for (i, f) in features.iter().enumerate() {
                let c = cosine(&int8[i], f);
                eprintln!("{name} photo {i}: int8 file's features cosine {c:.6} to torchvision's");
                assert!(c >= 0.99, "{name} photo {i}: int8 cosine {c}");
            }
        }
    }
}
