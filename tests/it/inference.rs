//! The CPU inference path ([`wick::infer`]) against Candle's graph, whole backbones (the kernels'
//! own tests are beside them, in `src/kernels/`).

use crate::common::pickle::CheckpointSpec;
use candle_core::Device;
use wick::data::preprocess::decode_image;
use wick::infer::MatmulPrecision;
use wick::model::features::{compute, View};
use wick::model::Backbone;

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
    let bytes = CheckpointSpec::contiguous(&crate::common::seeds::random_resnet("resnet18", 18)).to_bytes();
    let backbone = Backbone::from_torch_checkpoint(&bytes, &Device::Cpu).unwrap();
    compare_paths(&backbone, "resnet18", 0.99999, 0.99);
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
