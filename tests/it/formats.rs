//! Every supported container decodes to the same picture and the same top class.

use std::io::Cursor;

use candle_core::Device;
use image::{DynamicImage, ImageFormat};
use wick::data::preprocess::decode_image;
use wick::model::Backbone;

#[test]
fn jpeg_png_webp_gif_bmp_all_classify_the_coffee_as_espresso() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let original = decode_image(&std::fs::read(dir.join("tests/fixtures/coffee.png")).unwrap()).unwrap();
    let model = std::fs::read(dir.join("static/efficientnet-lite0-int8.safetensors")).unwrap();
    let backbone = Backbone::from_backbone_file(&model, &Device::Cpu).unwrap();
    for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif, ImageFormat::Bmp] {
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(original.clone()).write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        let decoded = decode_image(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(decoded.dimensions(), original.dimensions(), "{format:?}");
        let top = &backbone.top_k(&[decoded], 1).unwrap()[0][0];
        assert_eq!(top.label, "espresso", "{format:?}");
    }
}
