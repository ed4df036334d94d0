//! Where the model looks ([`wick::eval::class_map`]) on the shipped backbone: the map of a linear
//! head averages to the image's logit, and on a picture of a cat and a coffee cup the cat's map is
//! high where the cat is and the cup's where the cup is.

use candle_core::Device;
use image::{imageops, RgbImage};
use wick::data::feature_set::FeatureSet;
use wick::data::preprocess::decode_image;
use wick::eval::class_map::{overlay, ClassMaps};
use wick::model::Backbone;
use wick::train::config::TrainConfig;
use wick::train::head_fit::{HeadData, HeadFit};

fn photo(name: &str) -> RgbImage {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    decode_image(&std::fs::read(path).unwrap()).unwrap()
}

fn backbone() -> Backbone {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors");
    Backbone::from_backbone_file(&std::fs::read(path).unwrap(), &Device::Cpu).unwrap()
}

/// A 448 × 448 grey picture with `a` in the top-left quarter and `b` in the bottom-right one.
fn two_objects(a: &RgbImage, b: &RgbImage) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(448, 448, image::Rgb([128, 128, 128]));
    let fit = |im: &RgbImage| imageops::resize(im, 224, 224, imageops::FilterType::Triangle);
    imageops::overlay(&mut canvas, &fit(a), 0, 0);
    imageops::overlay(&mut canvas, &fit(b), 224, 224);
    canvas
}

/// Mean of the cells of a `side × side` map inside rows/columns `range`.
fn mean_over(map: &[f32], side: usize, range: std::ops::Range<usize>) -> f32 {
    let cells: Vec<f32> = range.clone().flat_map(|y| range.clone().map(move |x| map[y * side + x])).collect();
    cells.iter().sum::<f32>() / cells.len() as f32
}

#[test]
fn the_map_follows_the_class() {
    let backbone = backbone();
    let (cat, cup) = (photo("chelsea.png"), photo("coffee.png"));
    // A linear head told apart from the two photos and their mirror images.
    let views = [cat.clone(), imageops::flip_horizontal(&cat), cup.clone(), imageops::flip_horizontal(&cup)];
    let features = backbone.features(&backbone.input_tensor(&views).unwrap()).unwrap().to_vec2::<f32>().unwrap();
    let mut set = FeatureSet::new(backbone.feature_dim());
    for (i, row) in features.iter().enumerate() {
        set.push(row, (i / 2) as u32);
    }
    let data = HeadData::train_only(set, vec!["cat".into(), "cup".into()]);
    let fitted = HeadFit::new(data, &TrainConfig::default(), &Device::Cpu).unwrap();
    let trained = fitted.run(|_| std::ops::ControlFlow::Continue(())).unwrap().trained;

    let picture = two_objects(&cat, &cup);
    let input = backbone.input_tensor(&[&picture]).unwrap();
    let (maps, shape) = backbone.feature_maps(&input).unwrap();
    assert_eq!(shape, [7, 7, 1280]);
    let class_maps = ClassMaps::new(&trained.head, &maps, shape, &Device::Cpu).unwrap();

    // A linear head: the pooled features are the cells' mean, so the logits are the maps' means.
    let pooled = backbone.features(&input).unwrap();
    let logits = trained.head.logits(&pooled, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (class, &logit) in logits.iter().enumerate() {
        let mean = class_maps.of(class).iter().sum::<f32>() / 49.0;
        assert!((mean - logit).abs() < 1e-3 * (1.0 + logit.abs()), "class {class}: map mean {mean}, logit {logit}");
    }

    // The crop keeps rows and columns 16..240 of 256: cells 0..3 are the top-left photo, 4..7 the other.
    let (cat_map, cup_map) = (class_maps.of(0), class_maps.of(1));
    let (cat_at_cat, cat_at_cup) = (mean_over(&cat_map, 7, 0..3), mean_over(&cat_map, 7, 4..7));
    let (cup_at_cat, cup_at_cup) = (mean_over(&cup_map, 7, 0..3), mean_over(&cup_map, 7, 4..7));
    eprintln!(
        "cat map: {cat_at_cat:.2} on the cat, {cat_at_cup:.2} on the cup; cup map: {cup_at_cat:.2}, {cup_at_cup:.2}"
    );
    assert!(cat_at_cat > cat_at_cup + 1.0, "the cat's map is highest on the cat");
    assert!(cup_at_cup > cup_at_cat + 1.0, "the cup's map is highest on the cup");

    // Drawn over what the network saw: reddest where the class's map is highest.
    let view = backbone.meta.preprocess.view(&picture);
    assert_eq!(view.dimensions(), (224, 224));
    let drawn = overlay(&view, &cat_map, (7, 7));
    let redness = |x: u32, y: u32| drawn.get_pixel(x, y)[0] as i32 - drawn.get_pixel(x, y)[2] as i32;
    assert!(redness(40, 40) > redness(190, 190), "the cat's corner is redder");
}

#[test]
fn a_map_of_the_wrong_size_is_refused() {
    let set = {
        let mut set = FeatureSet::new(1280);
        set.push(&[0.5; 1280], 0);
        set.push(&[0.0; 1280], 1);
        set
    };
    let data = HeadData::train_only(set, vec!["cat".into(), "cup".into()]);
    let fitted = HeadFit::new(data, &TrainConfig::default(), &Device::Cpu).unwrap();
    let trained = fitted.run(|_| std::ops::ControlFlow::Continue(())).unwrap().trained;
    let err = ClassMaps::new(&trained.head, &[0.0; 49 * 1000], [7, 7, 1000], &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("does not fit a head on 1280 features"), "{err}");
    let err = ClassMaps::new(&trained.head, &[0.0; 10], [7, 7, 1280], &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("10 values"), "{err}");
    // A flat map draws without NaN.
    let view = RgbImage::from_pixel(32, 32, image::Rgb([10, 20, 30]));
    let drawn = overlay(&view, &[1.0; 4], (2, 2));
    assert_eq!(drawn.dimensions(), (32, 32));
}
