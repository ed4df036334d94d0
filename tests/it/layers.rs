//! Training the backbone's last layers on cached activations (`wick::train::layers`): where each
//! family is cut, that the frozen part and the trained part together are the whole network, that a
//! run trains, exports a backbone file and a `.wick` that answer as the run measured, and that bad
//! input is refused with its reason.

use crate::common::{s, scratch, text, wick};
use candle_core::{Device, Tensor};
use image::RgbImage;

use wick::backbone::{efficientnet_lite, resnet, Network, NetworkConfig};
use wick::data::augment::{self, AUGMENTED_VIEWS};
use wick::data::feature_set::FeatureSet;
use wick::data::preprocess::Preprocess;
use wick::infer::MatmulPrecision;
use wick::model::features::{compute, View};
use wick::model::Backbone;
use wick::model::Classifier;
use wick::train::config::TrainConfig;
use wick::train::head_fit::{HeadData, HeadFit};
use wick::train::layers::{layer_cost, Activations, LayerFit, TrainImages, ValImages};
use wick::util::rng::Rng;

fn lite0() -> Backbone {
    let bytes =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/efficientnet-lite0-int8.safetensors")).unwrap();
    Backbone::from_backbone_file(&bytes, &Device::Cpu).unwrap()
}

/// Lite0 fed 64-px images: small enough for tests, the same layers.
fn small_lite0() -> Backbone {
    lite0().with_preprocess(Preprocess { resize_shorter: 64, crop: 64, mean: [0.5; 3], std: [0.5; 3] }).unwrap()
}

#[test]
fn each_family_is_cut_at_its_last_parts() {
    let lite0 = NetworkConfig::EfficientNetLite(efficientnet_lite::Config::lite0());
    // The 1×1 head convolution alone; then block 15 (the last stage); then blocks 11–14.
    let firsts: Vec<usize> = (1..=3).map(|d| lite0.first_trained_block(d).unwrap()).collect();
    assert_eq!(firsts, [16, 15, 11]);
    assert_eq!(lite0.trained_convs(16), ["_conv_head"]);
    // What each cut holds for a 224-px image.
    let shapes: Vec<[usize; 3]> = firsts.iter().map(|&f| lite0.activation_shape((224, 224), f)).collect();
    assert_eq!(shapes, [[320, 7, 7], [192, 7, 7], [112, 14, 14]]);
    assert!(lite0.trained_convs(15).contains(&"_blocks.15._depthwise_conv".to_string()));
    assert!(!lite0.trained_convs(15).iter().any(|c| c.starts_with("_blocks.14.")));
    let resnet18 = NetworkConfig::ResNet(resnet::Config::variant("resnet18").unwrap().0);
    // ResNet-18's 8 blocks: the last block; then layer4; then layer3 and layer4.
    let firsts: Vec<usize> = (1..=3).map(|d| resnet18.first_trained_block(d).unwrap()).collect();
    assert_eq!(firsts, [7, 6, 4]);
    assert!(resnet18.trained_convs(6).iter().all(|c| c.starts_with("layer4.")));
    let shapes: Vec<[usize; 3]> = firsts.iter().map(|&f| resnet18.activation_shape((224, 224), f)).collect();
    assert_eq!(shapes, [[512, 7, 7], [256, 14, 14], [128, 28, 28]]);
    for depth in [0, 4] {
        let err = lite0.first_trained_block(depth).unwrap_err().to_string();
        assert!(err.contains("layers to train must be 1 to 3"), "{err}");
    }
}

#[test]
fn frozen_part_then_trained_part_is_the_whole_network() {
    // f32 products, so that the inference path and Candle's graph agree to rounding.
    let backbone = small_lite0().with_precision(MatmulPrecision::F32);
    let vb = backbone.weights().var_builder(&Device::Cpu).unwrap();
    let network = Network::folded(&backbone.meta.config, MatmulPrecision::F32, vb).unwrap();
    let input = Tensor::randn(0f32, 1f32, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let whole = backbone.features(&input).unwrap().to_vec2::<f32>().unwrap();
    for first in [11, 15, 16] {
        let cut = backbone.activations(&input, first).unwrap();
        assert_eq!(cut.dims()[1..], backbone.meta.config.activation_shape((64, 64), first));
        let through_graph = network.front(&input, first).unwrap();
        let gap = (&cut - &through_graph).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(gap < 1e-3, "block {first}: the inference path's activation differs from the graph's by {gap}");
        let joined = network.last_layers(&cut, first, false).unwrap().to_vec2::<f32>().unwrap();
        for (a, b) in joined.iter().flatten().zip(whole.iter().flatten()) {
            assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "block {first}: {a} vs {b}");
        }
    }
}

#[test]
fn the_trained_layers_compute_what_the_int8_inference_path_computes() {
    // With int8 products (the default), the graph the layers train in multiplies its 1×1
    // convolutions as the inference path does: its features from a cut are those of the int8
    // inference path to f32 rounding, where the f32 graph's are not. Not for every image: the bias
    // and ReLU6 are added apart and the depthwise filters run another kernel, so now and then an
    // activation lands on the other side of an int8 rounding step and that image's features move
    // by up to ~0.07 (1.6% of the largest). Measured 2026-12-08 (AMD EPYC Zen 5): 2 images of 180
    // at the deepest cut, none at the others; a run with 2 random images failed 1 in 40 on CI.
    // So: 8 images, at most 2 of them off at any cut.
    const IMAGES: usize = 8;
    let backbone = small_lite0();
    assert_eq!(backbone.precision(), MatmulPrecision::Int8);
    let mut rng = Rng::new(30);
    let pixels: Vec<f32> = (0..IMAGES * 3 * 64 * 64).map(|_| rng.uniform() * 2.0 - 1.0).collect();
    let input = Tensor::from_vec(pixels, (IMAGES, 3, 64, 64), &Device::Cpu).unwrap();
    let whole = backbone.features(&input).unwrap().to_vec2::<f32>().unwrap();
    let largest = whole.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    // Each image's largest gap between the graph's features and the inference path's.
    let gaps = |products: MatmulPrecision, first: usize| -> Vec<f32> {
        let vb = backbone.weights().var_builder(&Device::Cpu).unwrap();
        let network = Network::folded(&backbone.meta.config, products, vb).unwrap();
        let cut = backbone.activations(&input, first).unwrap();
        let features = network.last_layers(&cut, first, false).unwrap().to_vec2::<f32>().unwrap();
        let gap = |(a, b): (&Vec<f32>, &Vec<f32>)| a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        features.iter().zip(&whole).map(gap).collect()
    };
    let rounding = 1e-4 * largest;
    for first in [11, 15, 16] {
        let (int8, f32) = (gaps(MatmulPrecision::Int8, first), gaps(MatmulPrecision::F32, first));
        let off = int8.iter().filter(|&&g| g > rounding).count();
        assert!(off <= 2, "block {first}: {off} of {IMAGES} images' int8-graph features off the inference path's: {int8:?} (largest feature {largest})");
        assert!(
            f32.iter().all(|&g| g > 10.0 * rounding),
            "block {first}: the f32 graph's features are as close: {f32:?}"
        );
    }
}

/// `n` images of a class: its colour, a random bright square, noise.
fn images(class: usize, n: usize, rng: &mut Rng) -> Vec<RgbImage> {
    let base = [[200u8, 40, 40], [40, 200, 40], [40, 40, 200]][class];
    (0..n)
        .map(|_| {
            let (x0, y0) = (rng.below(40) as u32, rng.below(40) as u32);
            RgbImage::from_fn(72, 64, |x, y| {
                let square = (x0..x0 + 20).contains(&x) && (y0..y0 + 20).contains(&y);
                image::Rgb(base.map(|v| {
                    let noise = (rng.uniform() * 60.0) as u8;
                    if square {
                        255 - noise
                    } else {
                        v.saturating_add(noise)
                    }
                }))
            })
        })
        .collect()
}

/// Images → the run's inputs: activations at block `first` in `views` views, plain features.
fn prepared(
    backbone: &Backbone,
    set: &[(RgbImage, u32)],
    first: usize,
    views: usize,
) -> (Activations, Vec<Vec<usize>>, FeatureSet) {
    let mut activations = None::<Activations>;
    let mut rows = Vec::new();
    let mut features = FeatureSet::new(backbone.feature_dim());
    for (i, (image, label)) in set.iter().enumerate() {
        let viewed: Vec<RgbImage> = (0..views).map(|v| augment::view(image, v, i as u64)).collect();
        let batch = backbone.activations(&backbone.input_tensor(&viewed).unwrap(), first).unwrap();
        let (_, c, h, w) = batch.dims4().unwrap();
        let store = activations.get_or_insert_with(|| Activations::new([c, h, w]));
        rows.push((store.len()..store.len() + views).collect());
        store.push(&batch).unwrap();
        features.push(&compute(backbone, std::slice::from_ref(image), View::AsIs).unwrap()[0], *label);
    }
    (activations.unwrap(), rows, features)
}

#[test]
fn a_run_trains_the_layers_and_exports_a_backbone_that_answers_as_measured() {
    let backbone = small_lite0();
    let mut rng = Rng::new(5);
    let mut labelled = |n| {
        (0..3)
            .flat_map(|c| images(c, n, &mut Rng::new(rng.next_u64())).into_iter().map(move |im| (im, c as u32)))
            .collect::<Vec<_>>()
    };
    let (train_set, val_set) = (labelled(6), labelled(3));
    let depth = 2;
    let first = backbone.meta.config.first_trained_block(depth).unwrap();
    let (activations, views, features) = prepared(&backbone, &train_set, first, AUGMENTED_VIEWS);
    assert_eq!(activations.len(), train_set.len() * AUGMENTED_VIEWS);
    let (val_activations, _, val_features) = prepared(&backbone, &val_set, first, 1);
    let names: Vec<String> = (0..val_set.len()).map(|i| i.to_string()).collect();
    let labels: Vec<String> = ["red", "green", "blue"].map(String::from).to_vec();
    let config = TrainConfig { train_layers: depth, layer_epochs: 2, ..TrainConfig::default() };
    let data = HeadData {
        train: features.clone(),
        val: val_features.clone(),
        val_names: names.clone(),
        labels: labels.clone(),
    };
    let head_only =
        HeadFit::new(data, &config, &Device::Cpu).unwrap().run(|_| std::ops::ControlFlow::Continue(())).unwrap();
    let mut run = LayerFit::new(
        &backbone,
        depth,
        TrainImages { activations, views, features },
        ValImages { activations: val_activations, features: val_features, names },
        labels.clone(),
        &config,
    )
    .unwrap();
    let mut steps = 0;
    while run.next_epoch().unwrap().is_some() {
        steps += 1;
    }
    let fitted = run.finish(0).unwrap();
    let history = &fitted.classifier.meta.history;
    assert_eq!(history.len(), steps);
    // The head fit's steps (head-only training itself), then the layers' 2 epochs.
    assert_eq!(history.len(), head_only.trained.history.len() + 2, "{history:?}");
    assert_eq!(history[..head_only.trained.history.len()], head_only.trained.history[..]);
    let (deeper, head) =
        (fitted.validation.as_ref().unwrap().accuracy, head_only.validation.as_ref().unwrap().accuracy);
    assert!(deeper >= head, "validation accuracy {deeper} below head-only's {head}");
    assert_eq!(fitted.classifier.meta.training.train_layers, depth);

    // The exported pair: the `.wick` names the new backbone, and together they classify.
    let exported = Backbone::from_backbone_file(&fitted.backbone_file, &Device::Cpu).unwrap();
    assert_ne!(exported.sha256, backbone.sha256);
    assert_eq!(exported.meta.labels, labels, "a linear head is also the backbone file's own classifier");
    let classifier = Classifier::from_bytes(&fitted.classifier.to_bytes().unwrap(), &Device::Cpu).unwrap();
    let extractor = classifier.feature_extractor(&exported).unwrap();
    assert!(
        classifier.feature_extractor(&backbone).is_err(),
        "the model must refuse the backbone it did not train with"
    );
    let val_images: Vec<RgbImage> = val_set.iter().map(|(im, _)| im.clone()).collect();
    let features = compute(&extractor, &val_images, View::AsIs).unwrap();
    let x = Tensor::from_vec(features.concat(), (val_images.len(), extractor.feature_dim()), &Device::Cpu).unwrap();
    let probabilities = classifier.probabilities(&x).unwrap();
    let correct = probabilities
        .iter()
        .zip(&val_set)
        .filter(|(p, (_, label))| p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 == *label as usize)
        .count();
    let exported_accuracy = correct as f32 / val_set.len() as f32;
    assert!(
        (exported_accuracy - deeper).abs() <= 1.0 / val_set.len() as f32 + 1e-6,
        "exported {exported_accuracy} vs measured {deeper}"
    );
}

#[test]
fn measuring_the_cost_of_an_empty_batch_is_refused() {
    let err = layer_cost(&small_lite0(), 1, 0, || 0.0).expect_err("refused").to_string();
    assert!(err.contains("a batch of at least 1 image"), "{err}");
}

#[test]
fn bad_runs_are_refused_with_their_reason() {
    let backbone = small_lite0();
    let mut rng = Rng::new(9);
    let set: Vec<(RgbImage, u32)> = images(0, 2, &mut rng)
        .into_iter()
        .map(|im| (im, 0))
        .chain(images(1, 2, &mut rng).into_iter().map(|im| (im, 1)))
        .collect();
    let first = backbone.meta.config.first_trained_block(1).unwrap();
    let (activations, views, features) = prepared(&backbone, &set, first, 1);
    let labels = vec!["a".to_string(), "b".to_string()];
    let config = TrainConfig { train_layers: 1, ..TrainConfig::default() };
    let val = || ValImages {
        activations: Activations::new(activations.shape),
        features: FeatureSet::new(backbone.feature_dim()),
        names: vec![],
    };
    let attempt = |views: Vec<Vec<usize>>, depth: usize, labels: &[String]| {
        let train = TrainImages { activations: activations.clone(), views, features: features.clone() };
        LayerFit::new(&backbone, depth, train, val(), labels.to_vec(), &config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(attempt(vec![vec![0], vec![1], vec![2], vec![99]], 1, &labels).contains("row for every view"));
    assert!(attempt(vec![vec![0], vec![1], vec![2], vec![]], 1, &labels).contains("plain view"));
    assert!(attempt(views[..3].to_vec(), 1, &labels).contains("one feature row per training image"));
    assert!(attempt(views.clone(), 4, &labels).contains("layers to train must be 1 to 3"));
    assert!(attempt(views.clone(), 1, &labels[..1]).contains("not one of the 1 classes"));
    // The layers learn through the last map's pool alone: a stage-pooled backbone is refused.
    let train = TrainImages { activations: activations.clone(), views: views.clone(), features: features.clone() };
    let stages = backbone.with_pooling(wick::backbone::Pooling::Stages);
    let err = LayerFit::new(&stages, 1, train, val(), labels.clone(), &config).err().unwrap().to_string();
    assert!(err.contains("train on the last map's pool (pooling `last`), not pooling `stages`"), "{err}");
    // Rows of another shape than the cut's (a stale or foreign cache): refused before training.
    let [c, h, w] = activations.shape;
    let reshaped = Activations::from_bits([c / 2, h, 2 * w], activations.clone().into_bits()).unwrap();
    let train = TrainImages { activations: reshaped, views: views.clone(), features: features.clone() };
    let err = LayerFit::new(&backbone, 1, train, val(), labels.clone(), &config).err().unwrap().to_string();
    assert!(
        err.contains("training activations of shape [160, 2, 4], but block 16 of this backbone takes [320, 2, 2]"),
        "{err}"
    );
    assert!(TrainConfig { train_layers: 7, ..TrainConfig::default() }
        .validate()
        .unwrap_err()
        .to_string()
        .contains("layers to train"));
    // The page's cache: f16 rows of the wrong length.
    let err = Activations::from_bits([320, 7, 7], vec![0; 100]).unwrap_err().to_string();
    assert!(err.contains("not rows of"), "{err}");
    assert_eq!(Activations::from_bits([2, 1, 1], vec![0x3c00; 4]).unwrap().len(), 2);
    assert!(Activations::from_bits([usize::MAX, 2, 2], vec![0; 4]).is_err(), "a shape whose size overflows");
}

#[test]
fn augmented_views_are_fixed_by_their_seed() {
    let image = images(2, 1, &mut Rng::new(1)).remove(0);
    assert_eq!(augment::view(&image, 0, 7), image, "view 0 is the image as it is");
    assert_eq!(augment::view(&image, 1, 7), image::imageops::flip_horizontal(&image));
    for view in 2..AUGMENTED_VIEWS {
        let a = augment::view(&image, view, 7);
        assert_eq!(a, augment::view(&image, view, 7), "the same seed gives the same view");
        assert_ne!(a, augment::view(&image, view, 8));
        assert!(a.width() < image.width() && a.width() >= image.width() * 7 / 10, "a crop of 70–95% of each side");
    }
}

#[test]
fn wick_train_layers_writes_a_backbone_and_a_model_that_predict_together() {
    let dir = scratch("train-layers");
    let data = dir.join("data");
    let mut rng = Rng::new(3);
    for (c, class) in ["red", "green"].iter().enumerate() {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for (i, im) in images(c, 5, &mut rng).iter().enumerate() {
            im.save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let (model, backbone_out) = (dir.join("m.wick"), dir.join("m.backbone.safetensors"));
    let out = wick(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&model),
        "--train-layers",
        "1",
        "--layer-epochs",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backbone"], s(&backbone_out));
    assert_eq!(report["first_trained_block"], 16);
    assert_eq!(report["views_per_training_image"], AUGMENTED_VIEWS);
    assert_eq!(report["activation_bytes_per_view"], 2 * 320 * 7 * 7);
    let image = data.join("red/0.png");
    let predict = wick(&["predict", "--backbone", s(&backbone_out), "--model", s(&model), s(&image), "--json"]);
    assert!(predict.status.success(), "{}", text(&predict.stderr));
    // The model refuses the default backbone: it was trained with its own.
    let refused = wick(&["predict", "--model", s(&model), s(&image)]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("(`<name>.backbone.safetensors`)"), "{}", text(&refused.stderr));
    // The layer flags need --train-layers; --flip is the augmented views' job.
    for (args, says) in [
        (vec!["--layer-epochs", "3"], "add --train-layers N"),
        (vec!["--train-layers", "1", "--flip"], "already include the mirror"),
        (vec!["--train-layers", "4"], "layers to train"),
    ] {
        let other = dir.join("x.wick");
        let mut all = vec!["train", "--data", s(&data), "--out", s(&other)];
        all.extend(args);
        let out = wick(&all);
        assert!(!out.status.success() && text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
}

#[test]
fn cancel_during_the_layers_epochs_keeps_the_best_step() {
    let backbone = small_lite0();
    let mut rng = Rng::new(11);
    let set: Vec<(RgbImage, u32)> =
        (0..2).flat_map(|c| images(c, 5, &mut rng).into_iter().map(move |im| (im, c as u32))).collect();
    let first = backbone.meta.config.first_trained_block(1).unwrap();
    let (activations, views, features) = prepared(&backbone, &set[..8], first, 2);
    let (val_activations, _, val_features) = prepared(&backbone, &set[8..], first, 1);
    let config = TrainConfig { train_layers: 1, layer_epochs: 50, ..TrainConfig::default() };
    let mut run = LayerFit::new(
        &backbone,
        1,
        TrainImages { activations, views, features },
        ValImages { activations: val_activations, features: val_features, names: vec!["8".into(), "9".into()] },
        vec!["red".into(), "green".into()],
        &config,
    )
    .unwrap();
    // The head fit's steps, then one layer epoch, then Cancel (the page's button between steps).
    let mut steps = Vec::new();
    while let Some(stats) = run.next_epoch().unwrap() {
        steps.push(stats.clone());
        if stats.regularization.is_none() {
            break;
        }
    }
    run.cancel();
    assert!(run.next_epoch().unwrap().is_none(), "no step after Cancel");
    let fitted = run.finish(0).unwrap();
    let meta = &fitted.classifier.meta;
    assert_eq!(meta.stop, wick::train::report::Stop::Cancelled);
    assert_eq!(meta.history, steps, "the steps run before Cancel, no more");
    // The kept step beats, or is, the one layer epoch run: by validation accuracy, then loss.
    let (kept, layer_epoch) = (&steps[meta.best_epoch - 1], steps.last().unwrap());
    let key = |s: &wick::train::report::EpochStats| (s.val_accuracy.unwrap(), -s.val_loss.unwrap());
    assert!(key(kept) >= key(layer_epoch), "kept {kept:?}, layer epoch {layer_epoch:?}");
}
