//! Feature pooling ([`Pooling`]): stage pooling is its definition on the CPU path, on Candle's
//! graph and in the map a heatmap reads; feature caches and `.wick` models keep the poolings apart;
//! and the CLI refuses what does not go together.

use std::path::Path;

use candle_core::{Device, Tensor};
use wick::backbone::Pooling;
use wick::data::feature_set::FeatureSet;
use wick::data::preprocess::decode_image;
use wick::infer::MatmulPrecision;
use wick::model::features::{CacheHeader, FeatureCache};
use wick::model::{Backbone, Classifier};

use crate::common::pickle::CheckpointSpec;
use crate::common::{refused, s, scratch, seeds};

fn photos() -> Vec<image::RgbImage> {
    ["coffee.png", "rocket.jpg", "brick.png"]
        .iter()
        .map(|p| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p);
            decode_image(&std::fs::read(path).unwrap()).unwrap()
        })
        .collect()
}

fn lite0() -> Backbone {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors");
    Backbone::from_backbone_file(&std::fs::read(path).unwrap(), &Device::Cpu).unwrap()
}

fn resnet18() -> Backbone {
    let bytes = CheckpointSpec::contiguous(&seeds::random_resnet("resnet18", 18)).to_bytes();
    Backbone::from_torch_checkpoint(&bytes, &Device::Cpu).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}, image {i}: length");
        let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= tolerance * scale, "{what}, image {i}: off by {worst}");
    }
}

/// Stage pooling is the last map's pool, then each pooled block's input averaged over its cells —
/// the same numbers from the CPU path's one pass, from separate passes, and from Candle's graph,
/// for both families; and a feature map's cells average to the features.
#[test]
fn stage_pooling_is_the_last_pool_then_each_stage_outputs_pool() {
    for (what, backbone, blocks, dims) in
        [("lite0", lite0(), vec![11, 15, 16], (1280, 1904)), ("resnet18", resnet18(), vec![4, 6], (512, 896))]
    {
        let config = &backbone.meta.config;
        assert_eq!(config.pooled_blocks(Pooling::Stages), blocks, "{what}: pooled blocks");
        assert_eq!(config.pooled_blocks(Pooling::Last), Vec::<usize>::new());
        let exact = backbone.with_precision(MatmulPrecision::F32);
        let stages = exact.with_pooling(Pooling::Stages);
        assert_eq!((exact.feature_dim(), stages.feature_dim()), dims, "{what}: feature lengths");
        let input = stages.input_tensor(&photos()).unwrap();

        let got = rows(&stages.features(&input).unwrap());
        let mut want = rows(&exact.features(&input).unwrap());
        for &block in &blocks {
            let pooled = rows(&exact.activations(&input, block).unwrap().mean((2, 3)).unwrap());
            for (row, p) in want.iter_mut().zip(pooled) {
                row.extend(p);
            }
        }
        assert_close(&format!("{what}: one pass against separate passes"), &got, &want, 1e-6);
        assert_close(
            &format!("{what}: CPU path against the graph"),
            &got,
            &rows(&stages.graph_features(&input).unwrap()),
            1e-4,
        );

        // int8 products: the last map's part is the `last` features exactly.
        let int8 = backbone.with_pooling(Pooling::Stages).features(&input).unwrap();
        let last = rows(&backbone.features(&input).unwrap());
        let leading: Vec<Vec<f32>> = rows(&int8).iter().map(|r| r[..dims.0].to_vec()).collect();
        assert_eq!(leading, last, "{what}: the first values are the last map's pool");

        // The map a heatmap reads: each cell carries the other pools, and the cells average to the features.
        let (map, [h, w, c]) = stages.feature_maps(&input.narrow(0, 0, 1).unwrap()).unwrap();
        assert_eq!(c, dims.1);
        let mean: Vec<f32> =
            (0..c).map(|j| (0..h * w).map(|cell| map[cell * c + j]).sum::<f32>() / (h * w) as f32).collect();
        assert_close(&format!("{what}: the map's mean"), &[mean], &got[..1], 1e-5);
    }
}

/// Caches of the two poolings have their own files, and one is never read as the other.
#[test]
fn feature_caches_are_kept_per_pooling() {
    let backbone = lite0();
    let (last, stages) = (CacheHeader::of(&backbone), CacheHeader::of(&backbone.with_pooling(Pooling::Stages)));
    assert_eq!((last.pooling, stages.pooling), (Pooling::Last, Pooling::Stages));
    assert_eq!((last.dim, stages.dim), (1280, 1904));
    assert_ne!(last.file_name(), stages.file_name());
    assert!(stages.file_name().ends_with("-int8-stages.wickfeat"), "{}", stages.file_name());
    assert!(last.file_name().ends_with("-int8.wickfeat"), "the last map's caches keep their old names");
    let bytes = seeds::feature_cache(&last, 2);
    let err = FeatureCache::decode(&bytes, &stages).unwrap_err().to_string();
    assert!(err.contains("pooling `last`, not `stages`"), "{err}");
    // A cache written before pooling was recorded is the last map's.
    let mut header: serde_json::Value = serde_json::to_value(&last).unwrap();
    header.as_object_mut().unwrap().remove("pooling");
    assert_eq!(serde_json::from_value::<CacheHeader>(header).unwrap(), last);
}

/// A `.wick` records its pooling: the features it runs on are that pooling's, features of the
/// other are refused by name, and a model written before pooling was recorded reads as `last`.
#[test]
fn a_model_records_its_pooling_and_refuses_features_of_another() {
    let backbone = lite0();
    let stages = backbone.with_pooling(Pooling::Stages);
    let model = seeds::tiny_wick(&stages);
    let classifier = Classifier::from_bytes(&model, &Device::Cpu).unwrap();
    assert_eq!(classifier.meta.pooling, Pooling::Stages);
    assert_eq!(classifier.meta.head.input_dim, 1904);
    // Whatever pooling the backbone handed in, the model's extractor gives the model's features.
    let extractor = classifier.feature_extractor(&backbone).unwrap();
    assert_eq!((extractor.pooling(), extractor.feature_dim()), (Pooling::Stages, 1904));
    let input = extractor.input_tensor(&photos()).unwrap();
    assert_eq!(classifier.probabilities(&extractor.features(&input).unwrap()).unwrap().len(), 3);
    let err = classifier.probabilities(&backbone.features(&input).unwrap()).unwrap_err().to_string();
    assert!(err.contains("reads 1904 features (pooling `stages`), not 1280"), "{err}");

    // Written before pooling was recorded: the last map's, and a head of another length is refused.
    let old = seeds::edit_meta(&seeds::tiny_wick(&backbone), |meta| {
        meta.as_object_mut().unwrap().remove("pooling");
    });
    let old = Classifier::from_bytes(&old, &Device::Cpu).unwrap();
    assert_eq!(old.meta.pooling, Pooling::Last);
    assert_eq!(old.feature_extractor(&stages).unwrap().pooling(), Pooling::Last);
    let mislabelled = seeds::edit_meta(&model, |meta| meta["pooling"] = "last".into());
    let err = Classifier::from_bytes(&mislabelled, &Device::Cpu).unwrap().feature_extractor(&backbone).err().unwrap();
    assert!(err.to_string().contains("takes 1904 features, but backbone"), "{err}");
    let unknown = seeds::edit_meta(&model, |meta| meta["pooling"] = "everything".into());
    assert!(Classifier::from_bytes(&unknown, &Device::Cpu).is_err(), "an unknown pooling is refused");
}

/// The last layers train on the last map's pool: a stage-pooled backbone is refused by the
/// trainer, and `--pooling stages` with `--train-layers` by the CLI, as is `--pooling` for
/// fine-tuning; the leading values of stage-pooled rows are the last map's.
#[test]
fn what_does_not_go_with_stage_pooling_is_refused() {
    let dir = scratch("pooling-cli");
    let (model, finetuned) = (dir.join("m.wick"), dir.join("c.wick"));
    let train = ["train", "--data", s(&dir), "--out", s(&model), "--train-layers", "1", "--pooling", "stages"];
    refused(&train, "--train-layers trains on the last map's pool");
    let missing = dir.join("missing.pth");
    let finetune = [
        "cifar10",
        "--data",
        s(&dir),
        "--out",
        s(&finetuned),
        "--mode",
        "finetune",
        "--pooling",
        "last",
        "--pth",
        s(&missing),
    ];
    refused(&finetune, "does not use --pooling");
    assert!(!model.exists() && !finetuned.exists());

    let set = FeatureSet::from_rows(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![0, 1]).unwrap();
    let leading = set.leading(2);
    assert_eq!((leading.dim, leading.features, leading.labels), (2, vec![1.0, 2.0, 4.0, 5.0], vec![0, 1]));
}
