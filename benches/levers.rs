//! Issue 29's accuracy levers on CIFAR-10, one table per run: for each input size, the linear
//! probe's test accuracy with
//! - `last`: the last feature map's global average pool ([`Pooling::Last`]);
//! - `stages`: the library's [`Pooling::Stages`] (the last map's pool and the last stages' outputs',
//!   concatenated), as the CLI and the page compute it;
//! - `stages z`: the same, each feature standardised on the training rows (a feature extractor
//!   cannot do this without the training images' statistics: does the head need it?);
//! - `TTA`: each test image's probabilities averaged with its mirror's (`last` and `stages` heads);
//! - `two sizes`: `last` at the first two sizes, concatenated (standardised) or averaged, against
//!   one larger size at about the same cost.
//!
//! The head is the probe's own: L-BFGS along the L2 path, chosen on a stratified tenth of the
//! training images (seed 0). `ms/image` is the backbone's pass over the test images (int8, all
//! threads, batches of 64), for each pooling.
//!
//! With `--timing ROUNDS`, only the two poolings' extraction time instead: the first `--limit`
//! test images at each size, `last` and `stages` alternating for ROUNDS rounds (run it with
//! `RAYON_NUM_THREADS=1` for one thread), each pooling's best round and their ratio.
//!
//! ```text
//! cargo bench --bench levers -- --data ../shared/data/cifar10 [--limit 10000] [--sizes 96,128,160]
//!     [--backbone FILE] [--timing ROUNDS]
//! ```

use std::time::Instant;

use candle_core::{Device, Tensor};
use wick::backbone::Pooling;
use wick::data::cifar10::{self, Cifar10};
use wick::data::dataset::stratified_split;
use wick::data::feature_set::FeatureSet;
use wick::data::preprocess::Preprocess;
use wick::model::features::{compute, View};
use wick::model::Backbone;
use wick::train::config::TrainConfig;
use wick::train::head_fit::{HeadData, HeadFit};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const CHUNK: usize = 64;

struct Args {
    data: String,
    limit: usize,
    sizes: Vec<u32>,
    backbone: Option<String>,
    timing: Option<usize>,
}

fn args() -> Res<Args> {
    let mut a = Args { data: String::new(), limit: 10_000, sizes: vec![96, 128, 160], backbone: None, timing: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => a.data = value()?,
            "--limit" => a.limit = value()?.parse()?,
            "--sizes" => a.sizes = value()?.split(',').map(|v| v.parse()).collect::<Result<_, _>>()?,
            "--backbone" => a.backbone = Some(value()?),
            "--timing" => a.timing = Some(value()?.parse()?),
            "--bench" => {}
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if a.data.is_empty() {
        return Err("--data DIR (CIFAR-10 as cifar-10-batches-bin or train/<class>/*) is needed".into());
    }
    Ok(a)
}

/// `set`'s features in `view` (in batches of [`CHUNK`]) and the seconds per image they took.
fn features(backbone: &Backbone, set: &Cifar10, view: View) -> Res<(Vec<Vec<f32>>, f64)> {
    let (mut rows, mut seconds) = (Vec::with_capacity(set.len()), 0.0);
    for start in (0..set.len()).step_by(CHUNK) {
        let images: Vec<_> = (start..(start + CHUNK).min(set.len())).map(|i| set.image(i)).collect();
        let t = Instant::now();
        rows.extend(compute(backbone, &images, view)?);
        seconds += t.elapsed().as_secs_f64();
    }
    Ok((rows, seconds / set.len() as f64))
}

/// `--timing`: each pooling's best round of extracting `set`'s features, alternating.
fn timing(backbone: &Backbone, set: &Cifar10, sizes: &[u32], rounds: usize) -> Res<()> {
    println!("{:>5} {:>14} {:>14} {:>7}", "size", "last ms/image", "stages ms/image", "ratio");
    for &size in sizes {
        let b =
            backbone.with_preprocess(Preprocess { resize_shorter: size, crop: size, mean: [0.5; 3], std: [0.5; 3] })?;
        let poolings = [b.with_pooling(Pooling::Last), b.with_pooling(Pooling::Stages)];
        let mut best = [f64::INFINITY; 2];
        for _ in 0..rounds {
            for (p, pooled) in poolings.iter().enumerate() {
                best[p] = best[p].min(features(pooled, set, View::AsIs)?.1);
            }
        }
        println!("{size:>5} {:>14.3} {:>14.3} {:>6.3}×", 1e3 * best[0], 1e3 * best[1], best[1] / best[0]);
    }
    Ok(())
}

fn leading(rows: &[Vec<f32>], dim: usize) -> Vec<Vec<f32>> {
    rows.iter().map(|r| r[..dim].to_vec()).collect()
}

/// Per-feature mean and standard deviation of `rows` (the training rows).
fn moments(rows: &[&[f32]]) -> (Vec<f32>, Vec<f32>) {
    let dim = rows[0].len();
    let n = rows.len() as f64;
    let mut mean = vec![0f64; dim];
    let mut sq = vec![0f64; dim];
    for r in rows {
        for (j, &v) in r.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let m: Vec<f32> = mean.iter().map(|s| (s / n) as f32).collect();
    let s = sq.iter().zip(&mean).map(|(q, s)| ((q / n - (s / n).powi(2)).max(0.0).sqrt() as f32).max(1e-6)).collect();
    (m, s)
}

/// The probe's head fitted on `train[train_idx]` (validation `val_idx`), and its test
/// probabilities for each of `tests` (rows per test image).
fn probe(
    train: &[Vec<f32>],
    labels: &[u32],
    split: &(Vec<usize>, Vec<usize>),
    tests: &[&[Vec<f32>]],
    standardise: bool,
) -> Res<Vec<Vec<Vec<f32>>>> {
    let dim = train[0].len();
    let (mean, std) = if standardise {
        moments(&split.0.iter().map(|&i| train[i].as_slice()).collect::<Vec<_>>())
    } else {
        (vec![0.0; dim], vec![1.0; dim])
    };
    let z = |r: &[f32]| -> Vec<f32> { r.iter().zip(&mean).zip(&std).map(|((v, m), s)| (v - m) / s).collect() };
    let set = |idx: &[usize]| {
        let mut s = FeatureSet::new(dim);
        for &i in idx {
            s.push(&z(&train[i]), labels[i]);
        }
        s
    };
    let (t, v) = (set(&split.0), set(&split.1));
    let names = split.1.iter().map(|i| i.to_string()).collect();
    let labels_text = cifar10::CLASSES.iter().map(|c| c.to_string()).collect();
    let data = HeadData { train: t, val: v, val_names: names, labels: labels_text };
    let fitted =
        HeadFit::new(data, &TrainConfig::default(), &Device::Cpu)?.run(|_| std::ops::ControlFlow::Continue(()))?;
    tests
        .iter()
        .map(|rows| {
            let values: Vec<f32> = rows.iter().flat_map(|r| z(r)).collect();
            let x = Tensor::from_vec(values, (rows.len(), dim), &Device::Cpu)?;
            Ok(fitted.trained.head.probabilities(&x)?.to_vec2::<f32>()?)
        })
        .collect()
}

fn accuracy(probabilities: &[Vec<f32>], labels: &[u8]) -> f64 {
    let right = probabilities.iter().zip(labels).filter(|(p, &l)| wick::eval::metrics::argmax(p) == l as usize).count();
    100.0 * right as f64 / labels.len() as f64
}

fn mean_rows(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p + q) / 2.0).collect()).collect()
}

fn concat_rows(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    a.iter().zip(b).map(|(x, y)| [x.as_slice(), y].concat()).collect()
}

fn main() -> Res<()> {
    let a = args()?;
    let (mut train, mut test) = cifar10::load(std::path::Path::new(&a.data))?;
    train.truncate(a.limit);
    test.truncate(a.limit);
    let bytes = match &a.backbone {
        Some(path) => std::fs::read(path)?,
        None => include_bytes!("../static/efficientnet-lite0-int8.safetensors").to_vec(),
    };
    let backbone = Backbone::from_backbone_file(&bytes, &Device::Cpu)?;
    let config = &backbone.meta.config;
    let labels: Vec<u32> = train.labels.iter().map(|&l| l as u32).collect();
    let split = stratified_split(&labels, cifar10::CLASSES.len(), 0.1, 0)?;
    println!(
        "{}: {} training images ({} for the head, {} to choose its L2), {} test images; stages pools blocks {:?}; \
         features {} / {}; {} threads",
        backbone.id,
        train.len(),
        split.0.len(),
        split.1.len(),
        test.len(),
        config.pooled_blocks(Pooling::Stages),
        config.pooled_dim(Pooling::Last),
        config.pooled_dim(Pooling::Stages),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let Some(rounds) = a.timing {
        return timing(&backbone, &test, &a.sizes, rounds);
    }
    println!(
        "{:>5} {:>10} {:>10} | {:>6} {:>6} {:>8} {:>8} {:>10}",
        "size", "ms last", "ms stages", "last", "stages", "stages z", "last TTA", "stages TTA"
    );
    let dim = config.feature_dim();
    let mut kept = Vec::new();
    for &size in &a.sizes {
        let b =
            backbone.with_preprocess(Preprocess { resize_shorter: size, crop: size, mean: [0.5; 3], std: [0.5; 3] })?;
        let stages = b.with_pooling(Pooling::Stages);
        let (_, last_seconds) = features(&b, &test, View::AsIs)?;
        let (tr, _) = features(&stages, &train, View::AsIs)?;
        let (te, stages_seconds) = features(&stages, &test, View::AsIs)?;
        let (te_mirrored, _) = features(&stages, &test, View::Mirrored)?;
        let (tr_last, te_last, te_last_mirrored) = (leading(&tr, dim), leading(&te, dim), leading(&te_mirrored, dim));
        let last = probe(&tr_last, &labels, &split, &[&te_last, &te_last_mirrored], false)?;
        let pooled = probe(&tr, &labels, &split, &[&te, &te_mirrored], false)?;
        let pooled_z = probe(&tr, &labels, &split, &[&te], true)?;
        let acc = |p: &[Vec<f32>]| accuracy(p, &test.labels);
        println!(
            "{size:>5} {:>10.2} {:>10.2} | {:>6.2} {:>6.2} {:>8.2} {:>8.2} {:>10.2}",
            1e3 * last_seconds,
            1e3 * stages_seconds,
            acc(&last[0]),
            acc(&pooled[0]),
            acc(&pooled_z[0]),
            acc(&mean_rows(&last[0], &last[1])),
            acc(&mean_rows(&pooled[0], &pooled[1])),
        );
        kept.push((size, tr_last, te_last, last_seconds));
    }
    if kept.len() >= 2 {
        let ((s0, tr0, te0, t0), (s1, tr1, te1, t1)) = (&kept[0], &kept[1]);
        let cat = probe(&concat_rows(tr0, tr1), &labels, &split, &[&concat_rows(te0, te1)], true)?;
        let avg = probe(&mean_rows(tr0, tr1), &labels, &split, &[&mean_rows(te0, te1)], false)?;
        println!(
            "two sizes {s0}+{s1} (last): {:.2} ms/image; concatenated (z) {:.2}%, averaged {:.2}%",
            1e3 * (t0 + t1),
            accuracy(&cat[0], &test.labels),
            accuracy(&avg[0], &test.labels)
        );
    }
    Ok(())
}
