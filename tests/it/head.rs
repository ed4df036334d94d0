//! The classification head and its training loop, on synthetic features.

use std::collections::HashMap;
use std::ops::ControlFlow;

use candle_core::{Device, Tensor};
use wick::data::feature_set::FeatureSet;
use wick::data::preprocess::Preprocess;
use wick::formats::classifier::{BackboneRef, ClassifierMeta};
use wick::model::head::Head;
use wick::model::Classifier;
use wick::train::config::{HeadSpec, Solver, TrainConfig};
use wick::train::head_fit::{regularization_path, HeadData, HeadFit};
use wick::train::loss::{class_weights, cross_entropy};
use wick::train::report::{EpochStats, Stop};
use wick::util::rng::Rng;
use wick::util::utc_timestamp;

/// `n` points per class around `classes` random centres in `dim` dimensions; `spread` is the noise.
fn blobs(classes: usize, n: usize, dim: usize, spread: f32, seed: u64) -> FeatureSet {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..classes).map(|_| (0..dim).map(|_| 4.0 * rng.uniform()).collect()).collect();
    let mut set = FeatureSet::new(dim);
    for i in 0..classes * n {
        let c = i % classes;
        let x: Vec<f32> = centres[c].iter().map(|v| v + spread * (rng.uniform() - 0.5)).collect();
        set.push(&x, c as u32);
    }
    set
}

/// Moves the rows from `keep` on out of `set` into a new set.
fn hold_out(set: &mut FeatureSet, keep: usize) -> FeatureSet {
    FeatureSet { dim: set.dim, features: set.features.split_off(keep * set.dim), labels: set.labels.split_off(keep) }
}

fn accuracy(head: &Head, set: &FeatureSet) -> f32 {
    let p = head.probabilities(&set.tensor(&Device::Cpu).unwrap()).unwrap().to_vec2::<f32>().unwrap();
    let hits = p.iter().zip(&set.labels).filter(|(row, &l)| wick::eval::metrics::argmax(row) == l as usize).count();
    hits as f32 / set.len() as f32
}

/// The head-fitting data: classes named by their index, validation rows by theirs.
fn data(train_set: &FeatureSet, val: Option<&FeatureSet>, classes: usize) -> HeadData {
    let val = val.cloned().unwrap_or_else(|| FeatureSet::new(train_set.dim));
    let val_names = (0..val.len()).map(|i| i.to_string()).collect();
    HeadData { train: train_set.clone(), val, val_names, labels: (0..classes).map(|c| c.to_string()).collect() }
}

fn fit(
    train_set: &FeatureSet,
    val: Option<&FeatureSet>,
    classes: usize,
    config: &TrainConfig,
    on_epoch: impl FnMut(&EpochStats) -> ControlFlow<()>,
) -> wick::Result<wick::model::head::Trained> {
    Ok(HeadFit::new(data(train_set, val, classes), config, &Device::Cpu)?.run(on_epoch)?.trained)
}

fn run(
    train_set: &FeatureSet,
    val: Option<&FeatureSet>,
    classes: usize,
    config: &TrainConfig,
) -> wick::model::head::Trained {
    fit(train_set, val, classes, config, |_| ControlFlow::Continue(())).unwrap()
}

fn weights(head: &Head) -> Vec<(String, Vec<f32>)> {
    head.tensors().into_iter().map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap())).collect()
}

#[test]
fn linear_head_separates_separable_classes() {
    // Centres differ by 0..4 per dimension and the noise spans 3, so classes overlap in most single
    // dimensions but are linearly separable as a whole. 40 images per class train, 20 are held out.
    let mut train_set = blobs(5, 60, 64, 3.0, 7);
    let held_out = hold_out(&mut train_set, 200);
    let trained = run(&train_set, Some(&held_out), 5, &TrainConfig::default());
    assert!(accuracy(&trained.head, &train_set) >= 0.99, "train accuracy {}", accuracy(&trained.head, &train_set));
    assert!(accuracy(&trained.head, &held_out) >= 0.99, "validation accuracy {}", accuracy(&trained.head, &held_out));
}

/// The L-BFGS objective at a head's weights: class-weighted mean cross-entropy plus `λ/2 · ‖W‖²`.
fn penalised_loss(head: &Head, set: &FeatureSet, classes: usize, strength: f64) -> f64 {
    let logits = head.logits(&set.tensor(&Device::Cpu).unwrap(), None).unwrap();
    let loss: f32 = cross_entropy(&logits, &set.labels, &class_weights(&set.labels, classes, true), 0.0)
        .unwrap()
        .to_scalar()
        .unwrap();
    let weight = &weights(head).into_iter().find(|(name, _)| name == "output.weight").unwrap().1;
    loss as f64 + 0.5 * strength * weight.iter().map(|&w| (w as f64).powi(2)).sum::<f64>()
}

#[test]
fn lbfgs_reaches_the_regularised_optimum_and_picks_the_strength_on_validation() {
    // Overlapping blobs: the best strength is neither the strongest nor the weakest.
    let mut train_set = blobs(4, 60, 32, 9.0, 21);
    let val = hold_out(&mut train_set, 160);
    let trained = run(&train_set, Some(&val), 4, &TrainConfig::default());
    let path = regularization_path();
    for (step, stats) in trained.history.iter().enumerate() {
        assert_eq!(stats.regularization, Some(path[step]), "the path runs from strong to weak");
    }
    let best = &trained.history[trained.best_epoch - 1];
    let lowest = trained.history.iter().map(|h| h.val_loss.unwrap()).fold(f32::INFINITY, f32::min);
    assert_eq!(best.val_loss.unwrap(), lowest, "the kept strength has the lowest validation loss");
    assert!(trained.best_epoch > 1, "the strongest L2 (weights ≈ 0) should not win on separable-ish data");
    if trained.stop == Stop::EarlyStopped {
        assert_eq!(trained.history.len(), trained.best_epoch + 2, "the path stops a decade past its best");
    }
    // The kept weights minimise the penalised loss at their strength: no small step lowers it.
    let strength = best.regularization.unwrap();
    let optimum = penalised_loss(&trained.head, &train_set, 4, strength);
    let mut rng = Rng::new(5);
    for _ in 0..8 {
        let nudged: HashMap<String, Tensor> = trained
            .head
            .tensors()
            .into_iter()
            .map(|(name, t)| {
                let noise: Vec<f32> = (0..t.elem_count()).map(|_| 1e-2 * (rng.uniform() - 0.5)).collect();
                let noise = Tensor::from_vec(noise, t.dims(), &Device::Cpu).unwrap();
                (name, (t + noise).unwrap())
            })
            .collect();
        let nudged = Head::from_tensors(trained.head.spec, &nudged).unwrap();
        let moved = penalised_loss(&nudged, &train_set, 4, strength);
        assert!(moved >= optimum - 1e-6, "a nudge lowered the objective: {moved} < {optimum}");
    }
    // Without validation images there is nothing to choose by: one fit at scikit-learn's default C = 1.
    let alone = run(&train_set, None, 4, &TrainConfig::default());
    assert_eq!(alone.history.len(), 1);
    assert_eq!(alone.history[0].regularization, Some(1.0 / train_set.len() as f64));
}

#[test]
fn settings_the_solver_does_not_use_are_refused() {
    let set = blobs(2, 10, 4, 1.0, 1);
    let config = TrainConfig { hidden: Some(8), solver: Solver::Lbfgs, ..TrainConfig::default() };
    let err = HeadFit::new(data(&set, None, 2), &config, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("L-BFGS solver trains linear heads only"), "{err}");
}

#[test]
fn hidden_layer_head_learns_xor() {
    // XOR is not linearly separable: a linear head cannot pass 75%, one hidden layer can.
    let mut rng = Rng::new(3);
    let mut set = FeatureSet::new(2);
    for _ in 0..400 {
        let (a, b) = (rng.uniform() > 0.5, rng.uniform() > 0.5);
        let x = [a as u8 as f32 + 0.2 * rng.uniform(), b as u8 as f32 + 0.2 * rng.uniform()];
        set.push(&x, (a ^ b) as u32);
    }
    let config = TrainConfig { epochs: 200, learning_rate: 1e-2, patience: 0, ..TrainConfig::default() };
    let linear = run(&set, None, 2, &config);
    let config = TrainConfig { solver: Solver::AdamW, ..config };
    assert!(accuracy(&linear.head, &set) <= 0.8, "a linear head cannot fit XOR: {}", accuracy(&linear.head, &set));
    let mlp = run(&set, None, 2, &TrainConfig { hidden: Some(16), dropout: 0.0, ..config });
    assert!(accuracy(&mlp.head, &set) >= 0.99, "hidden layer on XOR: {}", accuracy(&mlp.head, &set));
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    // Random labels: the head can only memorise them, so the validation loss bottoms out early and rises.
    let mut set = blobs(4, 50, 32, 3.0, 5);
    let mut rng = Rng::new(9);
    set.labels.iter_mut().for_each(|l| *l = rng.below(4) as u32);
    let val = hold_out(&mut set, 150);
    let config =
        TrainConfig { epochs: 300, learning_rate: 1e-2, patience: 5, solver: Solver::AdamW, ..TrainConfig::default() };
    let trained = run(&set, Some(&val), 4, &config);
    assert_eq!(trained.stop, Stop::EarlyStopped);
    let epochs_run = trained.history.len();
    assert!(
        epochs_run < 300 && trained.best_epoch == epochs_run - 5,
        "{epochs_run} epochs, best {}",
        trained.best_epoch
    );
    let best = &trained.history[trained.best_epoch - 1];
    let lowest = trained.history.iter().map(|h| h.val_loss.unwrap()).fold(f32::INFINITY, f32::min);
    assert_eq!(best.val_loss.unwrap(), lowest);
    // The head holds that epoch's weights: its validation loss is the best epoch's, not the last's.
    let logits = trained.head.logits(&val.tensor(&Device::Cpu).unwrap(), None).unwrap();
    let weights = class_weights(&set.labels, 4, true);
    let loss: f32 = cross_entropy(&logits, &val.labels, &weights, config.label_smoothing).unwrap().to_scalar().unwrap();
    assert!((loss - lowest).abs() < 1e-5, "restored head's val loss {loss}, best epoch's {lowest}");
    assert!(trained.history.last().unwrap().val_loss.unwrap() > lowest);
}

#[test]
fn the_same_seed_gives_bit_identical_weights() {
    let set = blobs(3, 30, 48, 3.0, 11);
    let val = blobs(3, 5, 48, 3.0, 11);
    let config = TrainConfig {
        hidden: Some(32),
        epochs: 20,
        seed: 42,
        flip_augment: false,
        solver: Solver::AdamW,
        ..TrainConfig::default()
    };
    let a = run(&set, Some(&val), 3, &config);
    let b = run(&set, Some(&val), 3, &config);
    assert_eq!(weights(&a.head), weights(&b.head));
    assert_eq!(a.history, b.history);
    let c = run(&set, Some(&val), 3, &TrainConfig { seed: 43, ..config });
    assert_ne!(weights(&a.head), weights(&c.head), "another seed should give other weights");
}

#[test]
fn class_weights_balance_the_loss() {
    // Three images of class 0, one of class 1: weights n / (classes · n_c) = 4/6 and 4/2.
    let labels: [usize; 4] = [0, 0, 0, 1];
    let labels32: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let w = class_weights(&labels32, 2, true);
    assert!((w[0] - 4.0 / 6.0).abs() < 1e-6 && (w[1] - 2.0).abs() < 1e-6, "{w:?}");
    assert_eq!(class_weights(&labels32, 2, false), vec![1.0, 1.0]);

    let logits = Tensor::new(&[[2.0f32, 0.0], [1.0, 0.5], [0.0, 0.0], [3.0, -1.0]], &Device::Cpu).unwrap();
    let rows = logits.to_vec2::<f32>().unwrap();
    let ce = |row: &[f32], target: usize, eps: f32| -> f32 {
        let lse = row.iter().map(|v| v.exp()).sum::<f32>().ln();
        (0..2).map(|k| -((if k == target { 1.0 - eps } else { 0.0 }) + eps / 2.0) * (row[k] - lse)).sum()
    };
    for (weights, eps) in [(vec![1.0, 1.0], 0.0), (w.clone(), 0.0), (w.clone(), 0.1)] {
        let expected: f32 = labels.iter().zip(&rows).map(|(&l, r)| weights[l] * ce(r, l, eps)).sum::<f32>()
            / labels.iter().map(|&l| weights[l]).sum::<f32>();
        let got: f32 = cross_entropy(&logits, &labels32, &weights, eps).unwrap().to_scalar().unwrap();
        assert!((got - expected).abs() < 1e-5, "weights {weights:?} ε {eps}: {got} vs {expected}");
    }
    // The misclassified minority image (row 3: class 1, logits favour 0) counts 3x more when balanced.
    let unweighted: f32 = cross_entropy(&logits, &[0, 0, 0, 1], &[1.0, 1.0], 0.0).unwrap().to_scalar().unwrap();
    let balanced: f32 = cross_entropy(&logits, &[0, 0, 0, 1], &w, 0.0).unwrap().to_scalar().unwrap();
    assert!(balanced > unweighted, "{balanced} should exceed {unweighted}");
}

#[test]
fn class_balancing_helps_a_rare_class() {
    // 200 of class 0, 8 of class 1, overlapping: unweighted training sacrifices class 1's recall.
    let mut rng = Rng::new(21);
    let mut set = FeatureSet::new(2);
    for i in 0..208 {
        let c = (i >= 200) as u32;
        set.push(&[c as f32 * 1.5 + rng.uniform() * 2.0, rng.uniform()], c);
    }
    let config =
        TrainConfig { epochs: 150, learning_rate: 1e-2, patience: 0, label_smoothing: 0.0, ..Default::default() };
    let recall = |balanced| {
        let trained = run(&set, None, 2, &TrainConfig { class_balanced: balanced, ..config.clone() });
        let p = trained.head.probabilities(&set.tensor(&Device::Cpu).unwrap()).unwrap().to_vec2::<f32>().unwrap();
        p[200..].iter().filter(|row| row[1] > row[0]).count()
    };
    let (plain, balanced) = (recall(false), recall(true));
    assert!(balanced > plain, "rare-class hits: balanced {balanced}, plain {plain}");
}

#[test]
fn diverging_training_stops_and_keeps_the_last_good_weights() {
    // AdamW's decoupled decay multiplies every weight by (1 − lr·wd) each step: with lr·wd = 4 the
    // weights triple in size every step and overflow f32 after ~80 steps — in a later epoch, not the first.
    let set = blobs(2, 20, 8, 1.0, 4);
    let config = TrainConfig {
        epochs: 50,
        batch_size: 4,
        learning_rate: 1.0,
        weight_decay: 4.0,
        patience: 0,
        solver: Solver::AdamW,
        ..TrainConfig::default()
    };
    let trained = run(&set, None, 2, &config);
    let Stop::Diverged { epoch } = trained.stop else { panic!("expected divergence, got {:?}", trained.stop) };
    assert!(epoch >= 2, "diverged in epoch {epoch}");
    assert_eq!(trained.best_epoch, epoch - 1);
    assert_eq!(trained.history.len(), epoch - 1);
    assert!(weights(&trained.head).iter().all(|(_, w)| w.iter().all(|v| v.is_finite())));

    // Diverging at once leaves nothing worth keeping: an error that says what to do.
    let err = fit(&set, None, 2, &TrainConfig { learning_rate: 1e38, ..config }, |_| ControlFlow::Continue(()))
        .err()
        .expect("diverges in the first epoch");
    assert!(err.to_string().contains("lower learning rate"), "{err}");
}

#[test]
fn cancelling_keeps_the_best_weights_so_far() {
    let set = blobs(2, 20, 8, 1.0, 4);
    let trained = fit(&set, Some(&set), 2, &TrainConfig::default(), |stats| {
        if stats.epoch == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(trained.stop, Stop::Cancelled);
    assert_eq!(trained.history.len(), 3);
}

#[test]
fn bad_training_input_is_refused() {
    let set = blobs(2, 5, 4, 1.0, 1);
    let refuse = |set: &FeatureSet, classes, config: &TrainConfig| {
        fit(set, None, classes, config, |_| ControlFlow::Continue(())).err().unwrap().to_string()
    };
    let ok = TrainConfig::default();
    assert!(refuse(&set, 1, &ok).contains("class index 1"));
    let mut nan = set.clone();
    nan.features[3] = f32::NAN;
    assert!(refuse(&nan, 2, &ok).contains("NaN"));
    assert!(refuse(&FeatureSet::new(4), 2, &ok).contains("empty"));
    assert!(refuse(&set, 2, &TrainConfig { learning_rate: -1.0, ..ok.clone() }).contains("learning rate"));
    assert!(refuse(&set, 2, &TrainConfig { epochs: 0, ..ok.clone() }).contains("epochs"));
    assert!(refuse(&set, 2, &TrainConfig { label_smoothing: 1.0, ..ok }).contains("label smoothing"));
}

fn classifier(head: Head, sha256: &str) -> Classifier {
    Classifier {
        meta: ClassifierMeta {
            labels: vec!["ant".into(), "bee".into(), "cicada".into()],
            backbone: BackboneRef { id: "test-backbone".into(), architecture: "test".into(), sha256: sha256.into() },
            preprocess: Preprocess::efficientnet_lite(),
            pooling: Default::default(),
            head: head.spec,
            training: TrainConfig::default(),
            finetune: None,
            history: Vec::new(),
            best_epoch: 1,
            stop: Stop::Completed,
            validation: None,
            created: utc_timestamp(1_795_000_000),
            wick_version: "test".into(),
        },
        head,
    }
}

#[test]
fn bundle_round_trips_weights_metadata_and_predictions() {
    for hidden in [None, Some(7)] {
        let spec = HeadSpec { input_dim: 16, hidden, classes: 3 };
        let head = Head::init(spec, &mut Rng::new(5), &Device::Cpu).unwrap();
        let original = classifier(head, "ab".repeat(32).as_str());
        let bytes = original.to_bytes().unwrap();
        let loaded = Classifier::from_bytes(&bytes, &Device::Cpu).unwrap();
        assert_eq!(loaded.meta, original.meta);
        assert_eq!(weights(&loaded.head), weights(&original.head));
        let x = blobs(3, 4, 16, 1.0, 2).tensor(&Device::Cpu).unwrap();
        assert_eq!(original.probabilities(&x).unwrap(), loaded.probabilities(&x).unwrap());
    }
}

#[test]
fn corrupt_bundles_are_refused() {
    let head = Head::init(HeadSpec { input_dim: 4, hidden: None, classes: 3 }, &mut Rng::new(1), &Device::Cpu).unwrap();
    let good = classifier(head, "cd".repeat(32).as_str()).to_bytes().unwrap();
    let refuse = |bytes: &[u8]| Classifier::from_bytes(bytes, &Device::Cpu).err().expect("refused").to_string();
    assert!(refuse(&good[..good.len() - 10]).contains("not a valid .wick model"));
    assert!(refuse(b"hello").contains("not a valid .wick model"));
    assert!(refuse(&[]).contains("not a valid .wick model"));
    let backbone = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/efficientnet-lite0-int8.safetensors"));
    assert!(refuse(&backbone.unwrap()).contains("backbone file, not a trained classifier"));

    // Metadata that does not match the weights (edited in place, same length).
    let edit = |from: &str, to: &str| {
        assert_eq!(from.len(), to.len());
        let at = good.windows(from.len()).position(|w| w == from.as_bytes()).expect("pattern in header");
        let mut bytes = good.clone();
        bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
        bytes
    };
    assert!(refuse(&edit(r#"\"classes\":3"#, r#"\"classes\":4"#)).contains("3 labels for 4 classes"));
    assert!(refuse(&edit(r#"\"ant\""#, r#"\"   \""#)).contains("class name is empty"));
    assert!(refuse(&edit(r#"\"input_dim\":4"#, r#"\"input_dim\":5"#)).contains("expected [3, 5]"));
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(utc_timestamp(1_795_779_296), "2026-11-27T11:34:56Z");
}

#[test]
fn head_weights_are_checked_on_load() {
    let mut tensors = HashMap::new();
    tensors.insert("output.weight".to_string(), Tensor::zeros((3, 5), candle_core::DType::F32, &Device::Cpu).unwrap());
    tensors.insert("output.bias".to_string(), Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap());
    let spec = HeadSpec { input_dim: 4, hidden: None, classes: 3 };
    let err = Head::from_tensors(spec, &tensors).err().unwrap().to_string();
    assert!(err.contains("output.weight") && err.contains("[3, 5]"), "{err}");
}
