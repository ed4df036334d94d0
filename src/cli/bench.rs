//! `wick bench`: backbone forward, fine-tuning steps, head training.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::data::cifar10::{self, Cifar10};
use crate::data::feature_set::FeatureSet;
use crate::error::InFile;
use crate::formats::f32_values;
use crate::model::Pretrained;
use crate::train::config::TrainConfig;
use crate::train::config::{ComputeDtype, FinetuneConfig};
use crate::train::finetune::Finetuner;
use crate::train::head_fit::{time_head_fit, HeadData, HeadFit};

use super::flags::*;
use super::shared::*;

/// The flags of `wick bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batch: Vec<usize>,
    /// Timed passes per batch size (after one warm-up pass); the median is reported.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Time head training instead (linear head, 50 epochs, batch 64) on DIR/features.f32
    /// (N×dim little-endian f32) and DIR/labels.u8 (N class indices), as `benches/head.py` writes them.
    #[arg(long, value_name = "DIR")]
    pub head_data: Option<PathBuf>,
    /// Fit the default head (L-BFGS along the regularisation path) on DIR/train, choosing on
    /// DIR/val, and measure it on DIR/test (each a folder like --head-data's, as
    /// `wick cifar10 --save-features` writes them); prints accuracies and time. `benches/head_fit.py`
    /// runs it against scikit-learn on the same features.
    #[arg(long, value_name = "DIR", conflicts_with = "head_data")]
    pub head_fit: Option<PathBuf>,
    /// Time fine-tuning instead: SGD steps (forward, backward, update) of the whole network from
    /// the ImageNet checkpoint (--pth) on seeded random 32×32 images upsampled to each --img-size,
    /// in batches of each --batch; prints images/s and every step's loss.
    #[arg(long, conflicts_with_all = ["head_data", "head_fit"])]
    pub finetune: bool,
    /// --finetune: input sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "224,64")]
    pub img_size: Vec<u32>,
    /// --finetune: untimed steps first (cuDNN/cuBLAS set-up, allocator warm-up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Time each layer of the CPU inference path instead (one image, the fastest of --iters passes):
    /// its kernel, multiply-adds, time and share of the pass, then the totals per kind of kernel.
    #[arg(long, conflicts_with_all = ["head_data", "head_fit", "finetune"])]
    pub layers: bool,
    /// Time training the last layers instead (`wick train --train-layers`): for each depth, the
    /// frozen part per view and a training step per image (forward and backward through the trained
    /// layers and a linear head), on --batch random images, the fastest of --iters steps.
    #[arg(long, value_delimiter = ',', value_name = "DEPTHS", conflicts_with_all = ["head_data", "head_fit", "finetune", "layers"])]
    pub train_layers: Vec<usize>,
    /// Worker threads (default: all cores). Set before any work starts.
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub fn run(self) -> Result<()> {
        if let Some(n) = self.threads {
            // Both pools candle uses read these when first touched.
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
        let (backbone, iters, json) = (&self.backbone, self.iters, self.json);
        match (&self.head_data, &self.head_fit) {
            (Some(dir), _) => bench_head(dir, iters, json),
            (_, Some(dir)) => bench_head_fit(dir, json),
            _ if self.finetune => {
                let precision = backbone.training_precision()?;
                bench_finetune(backbone, &self.batch, &self.img_size, self.warmup, iters, precision, json)
            }
            _ if self.layers => bench_layers(backbone, iters, json),
            _ if !self.train_layers.is_empty() => {
                bench_train_layers(backbone, &self.train_layers, &self.batch, iters, json)
            }
            _ => bench(backbone, &self.batch, iters, json),
        }
    }
}

#[derive(Serialize)]
pub struct BenchRecord {
    pub backbone: String,
    pub precision: &'static str,
    pub threads: usize,
    pub batch: usize,
    pub ms_per_image: f64,
}

/// The backbone's forward pass: each batch size timed `iters` times after a warm-up, reporting the
/// median pass per image (a shared host stalls a process now and then for 100–200 ms, which a mean of
/// ten passes would spread over all of them).
fn bench(args: &BackboneArgs, batches: &[usize], iters: usize, json: bool) -> Result<()> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let backbone = args.load()?;
    let crop = backbone.meta.preprocess.crop as usize;
    let threads = candle_core::utils::get_num_threads();
    for &batch in batches {
        let input = Tensor::randn(0f32, 1f32, (batch, 3, crop, crop), backbone.device())?;
        backbone.features(&input)?; // warm-up
        let mut passes = Vec::with_capacity(iters);
        for _ in 0..iters {
            let start = Instant::now();
            backbone.features(&input)?.to_vec2::<f32>()?;
            passes.push(start.elapsed().as_secs_f64());
        }
        passes.sort_by(f64::total_cmp);
        let ms = passes[iters / 2] * 1e3 / batch as f64;
        let precision = backbone.precision().name();
        let record = BenchRecord { backbone: backbone.id.clone(), precision, threads, batch, ms_per_image: ms };
        if json {
            println!("{}", serde_json::to_string(&record)?);
        } else {
            println!("{}  {precision}  threads {threads}  batch {batch:>3}: {ms:8.2} ms/image", record.backbone);
        }
    }
    Ok(())
}

/// Each layer of the CPU path on one image (`--layers`): a row per layer, then per kind of kernel.
fn bench_layers(args: &BackboneArgs, iters: usize, json: bool) -> Result<()> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let backbone = args.load()?;
    let crop = backbone.meta.preprocess.crop as usize;
    let input = Tensor::randn(0f32, 1f32, (1, 3, crop, crop), backbone.device())?;
    let layers = backbone.layer_times(&input, iters)?;
    let total: f64 = layers.iter().map(|l| l.seconds).sum();
    if json {
        for layer in &layers {
            println!("{}", serde_json::to_string(layer)?);
        }
        return Ok(());
    }
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{}, {crop}², threads {threads}: fastest of {iters} passes per layer, {:.3} ms in all",
        backbone.id,
        total * 1e3
    );
    println!(
        "{:<34} {:<24} {:>14} {:>9} {:>9} {:>8} {:>6}",
        "layer", "kernel", "output", "MMAC", "ms", "GMAC/s", "share"
    );
    let gmacs = |macs: usize, s: f64| if s > 0.0 { macs as f64 / s / 1e9 } else { 0.0 };
    for l in &layers {
        let [h, w, c] = l.output;
        println!(
            "{:<34} {:<24} {:>14} {:>9.2} {:>9.4} {:>8.1} {:>5.1}%",
            l.name,
            l.kernel,
            format!("{h}×{w}×{c}"),
            l.multiply_adds as f64 / 1e6,
            l.seconds * 1e3,
            gmacs(l.multiply_adds, l.seconds),
            100.0 * l.seconds / total
        );
    }
    // The kinds, by what they cost: `3×3 depthwise f32` and `5×5/2 depthwise f32` are one kind.
    let kind = |k: &str| k.split_once(' ').map_or(k.to_string(), |(_, rest)| rest.to_string());
    let mut kinds: Vec<(String, usize, f64)> = Vec::new();
    for l in &layers {
        match kinds.iter_mut().find(|(k, ..)| *k == kind(&l.kernel)) {
            Some((_, macs, s)) => (*macs, *s) = (*macs + l.multiply_adds, *s + l.seconds),
            None => kinds.push((kind(&l.kernel), l.multiply_adds, l.seconds)),
        }
    }
    kinds.sort_by(|a, b| b.2.total_cmp(&a.2));
    println!("\n{:<34} {:>9} {:>9} {:>8} {:>6}", "kind", "MMAC", "ms", "GMAC/s", "share");
    for (k, macs, s) in kinds {
        println!(
            "{k:<34} {:>9.2} {:>9.4} {:>8.1} {:>5.1}%",
            macs as f64 / 1e6,
            s * 1e3,
            gmacs(macs, s),
            100.0 * s / total
        );
    }
    Ok(())
}

#[derive(Serialize)]
pub struct TrainLayersRecord {
    pub what: &'static str,
    pub depth: usize,
    pub batch: usize,
    pub threads: usize,
    pub prepare_ms_per_view: f64,
    pub step_ms_per_image: f64,
    pub forward_ms_per_image: f64,
}

/// Training the last `depths` layers (`--train-layers`): [`crate::train::layers::layer_cost`], the
/// measure the page's estimate uses, the fastest of `iters` for each batch size.
fn bench_train_layers(
    args: &BackboneArgs,
    depths: &[usize],
    batches: &[usize],
    iters: usize,
    json: bool,
) -> Result<()> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    if batches.contains(&0) {
        bail!("--batch must be at least 1: a training step needs an image");
    }
    let backbone = args.load()?.with_pooling(crate::backbone::Pooling::Last);
    let threads = candle_core::utils::get_num_threads();
    let start = Instant::now();
    let now_ms = || start.elapsed().as_secs_f64() * 1e3;
    for &depth in depths {
        for &batch in batches {
            let mut best: Option<crate::train::layers::LayerCost> = None;
            for _ in 0..iters {
                let cost = crate::train::layers::layer_cost(&backbone, depth, batch, now_ms)?;
                if best.as_ref().is_none_or(|b| cost.step_ms_per_image < b.step_ms_per_image) {
                    best = Some(cost);
                }
            }
            let cost = best.expect("at least one");
            let record = TrainLayersRecord {
                what: "wick train-layers step",
                depth,
                batch,
                threads,
                prepare_ms_per_view: cost.prepare_ms_per_view,
                step_ms_per_image: cost.step_ms_per_image,
                forward_ms_per_image: cost.forward_ms_per_image,
            };
            if json {
                println!("{}", serde_json::to_string(&record)?);
            } else {
                println!(
                    "train-layers  depth {depth}  batch {batch:>3}  threads {threads}: frozen part {:7.2} ms/view, training step {:7.2} ms/image, forward {:7.2} ms/image",
                    cost.prepare_ms_per_view, cost.step_ms_per_image, cost.forward_ms_per_image
                );
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
pub struct FinetuneBenchRecord {
    pub what: &'static str,
    pub device: String,
    pub precision: ComputeDtype,
    pub img_size: u32,
    pub batch: usize,
    pub timed_steps: usize,
    pub images_per_second: f64,
    /// Every step's training loss, warm-up included (for comparing devices from the same weights).
    pub losses: Vec<f32>,
}

/// Fine-tuning throughput: the `wick cifar10 --mode finetune` training step, on random images.
fn bench_finetune(
    args: &BackboneArgs,
    batches: &[usize],
    img_sizes: &[u32],
    warmup: usize,
    iters: usize,
    precision: ComputeDtype,
    json: bool,
) -> Result<()> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let pth = args.imagenet_checkpoint()?;
    let pretrained = Pretrained::from_checkpoint(&read(&pth)?).in_file(pth.display())?;
    let device = parse_device(&args.device)?;
    let classes: Vec<String> = cifar10::CLASSES.iter().map(|c| c.to_string()).collect();
    for &img_size in img_sizes {
        for &batch in batches {
            let steps = warmup + iters;
            let mut rng = crate::util::rng::Rng::new(7);
            let set = Cifar10 {
                labels: (0..steps * batch).map(|_| rng.below(10) as u8).collect(),
                pixels: (0..steps * batch * cifar10::PIXELS).map(|_| rng.below(256) as u8).collect(),
            };
            let config =
                FinetuneConfig { img_size, batch_size: batch, epochs: 2, precision, ..FinetuneConfig::default() };
            let mut run = Finetuner::new(&pretrained, classes.clone(), &set, config, &device)?;
            let mut step_ends = Vec::with_capacity(steps);
            let mut losses = Vec::with_capacity(steps);
            let start = Instant::now();
            // Each step ends by reading its loss back, so the clock sees the device's work done.
            run.train_epoch(&set, |_, loss| {
                losses.push(loss);
                step_ends.push(start.elapsed().as_secs_f64());
            })?;
            let timed_from = if warmup == 0 { 0.0 } else { step_ends[warmup - 1] };
            let record = FinetuneBenchRecord {
                what: "wick finetune step",
                device: args.device.clone(),
                precision,
                img_size,
                batch,
                timed_steps: iters,
                images_per_second: (iters * batch) as f64 / (step_ends[steps - 1] - timed_from),
                losses,
            };
            if json {
                println!("{}", serde_json::to_string(&record)?);
            } else {
                println!(
                    "fine-tune  {}  {img_size}²  batch {batch:>3}: {:8.1} images/s  (losses {:?})",
                    record.device, record.images_per_second, record.losses
                );
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
pub struct HeadBenchRecord {
    pub what: &'static str,
    pub threads: usize,
    pub images: usize,
    pub dim: usize,
    pub classes: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// Fastest of the timed runs.
    pub ms: f64,
    pub train_accuracy: f32,
}

fn bench_head(dir: &Path, iters: usize, json: bool) -> Result<()> {
    let set = read_bench_features(dir)?;
    let classes = *set.labels.iter().max().unwrap_or(&0) as usize + 1;
    let (epochs, batch_size) = (50, 64);
    let clock = Instant::now();
    let (best, accuracy) = time_head_fit(&set, epochs, batch_size, iters, || clock.elapsed().as_secs_f64() * 1e3)?;
    let record = HeadBenchRecord {
        what: "head_training",
        threads: candle_core::utils::get_num_threads(),
        images: set.len(),
        dim: set.dim,
        classes,
        epochs,
        batch_size,
        ms: best,
        train_accuracy: accuracy,
    };
    if json {
        println!("{}", serde_json::to_string(&record)?);
    } else {
        println!(
            "head training, {} × {} → {classes} classes, 50 epochs, batch 64, threads {}: {best:.1} ms",
            set.len(),
            set.dim,
            record.threads
        );
    }
    Ok(())
}

pub fn read_bench_features(dir: &Path) -> Result<FeatureSet> {
    let features = read(&dir.join("features.f32"))?;
    let labels: Vec<u32> = read(&dir.join("labels.u8"))?.into_iter().map(u32::from).collect();
    if labels.is_empty() || features.len() % (4 * labels.len()) != 0 {
        bail!("{}: features.f32 does not hold one f32 row per label in labels.u8", dir.display());
    }
    let dim = features.len() / 4 / labels.len();
    Ok(FeatureSet { dim, features: f32_values(&features), labels })
}

#[derive(Serialize)]
pub struct HeadFitRecord {
    pub what: &'static str,
    pub threads: usize,
    pub train_rows: usize,
    pub dim: usize,
    pub classes: usize,
    /// The L2 strength the validation images chose, and scikit-learn's `C` for it (`1 / (λ · n)`).
    pub regularization: Option<f64>,
    pub sklearn_c: Option<f64>,
    pub path_steps: usize,
    pub val_accuracy: Option<f32>,
    pub test_accuracy: f32,
    pub seconds: f64,
}

/// The default head (what `wick train` and the page fit) on saved features, measured on a test split.
fn bench_head_fit(dir: &Path, json: bool) -> Result<()> {
    let (train, val, test) = (
        read_bench_features(&dir.join("train"))?,
        read_bench_features(&dir.join("val"))?,
        read_bench_features(&dir.join("test"))?,
    );
    if val.dim != train.dim || test.dim != train.dim {
        bail!("{}: train, val and test features differ in width", dir.display());
    }
    let classes = [&train, &val, &test].iter().flat_map(|s| s.labels.iter()).max().map_or(1, |&l| l as usize + 1);
    let labels: Vec<String> = (0..classes).map(|c| format!("class{c}")).collect();
    let val_names = (0..val.len()).map(|i| format!("val[{i}]")).collect();
    let start = Instant::now();
    let config = TrainConfig::default();
    let (train_rows, dim) = (train.len(), train.dim);
    let data = HeadData { train, val, val_names, labels: labels.clone() };
    let fitted = HeadFit::new(data, &config, &Device::Cpu)?.run(|_| ControlFlow::Continue(()))?;
    let seconds = start.elapsed().as_secs_f64();
    let test_names: Vec<String> = (0..test.len()).map(|i| format!("test[{i}]")).collect();
    let test_metrics = fitted.trained.head.evaluate(&test, &labels, &test_names, &Device::Cpu)?;
    let regularization = fitted.trained.history.get(fitted.trained.best_epoch - 1).and_then(|h| h.regularization);
    let record = HeadFitRecord {
        what: "head_fit",
        threads: candle_core::utils::get_num_threads(),
        train_rows,
        dim,
        classes,
        regularization,
        sklearn_c: regularization.map(|l| 1.0 / (l * train_rows as f64)),
        path_steps: fitted.trained.history.len(),
        val_accuracy: fitted.validation.as_ref().map(|m| m.accuracy),
        test_accuracy: test_metrics.accuracy,
        seconds,
    };
    if json {
        println!("{}", serde_json::to_string(&record)?);
    } else {
        println!(
            "head fit on {} rows: test accuracy {:.2}% (L2 {:?}, {} path steps) in {seconds:.1} s",
            record.train_rows,
            100.0 * record.test_accuracy,
            record.regularization,
            record.path_steps
        );
    }
    Ok(())
}
