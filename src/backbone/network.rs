//! What a network is, before any weights: each family's configuration behind one
//! [`NetworkConfig`], which answers through the family ([`Family`]) — its bounds, its blocks,
//! where it can be cut for training the last layers, its ops — and the built Candle graph of any
//! family ([`Network`]). Nothing here knows of files, of the CPU inference path or of callers.

use std::sync::Arc;

use candle_core::{DType, ModuleT, Tensor};
use serde::{Deserialize, Serialize};

use crate::backbone::efficientnet_lite;
use crate::backbone::family::{Family, Graph};
use crate::backbone::layers::ConvBn;
use crate::backbone::ops::OpGraph;
use crate::backbone::resnet;
use crate::error::{invalid, Result};
use crate::kernels::matmul::MatmulPrecision;

/// A backbone family's configuration, as the backbone file stores it (its JSON is the family's own
/// config, told apart by its fields, so files written before ResNet read as before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NetworkConfig {
    EfficientNetLite(efficientnet_lite::Config),
    ResNet(resnet::Config),
}

impl NetworkConfig {
    /// The family's answers: the one place a family is picked.
    pub fn family(&self) -> &dyn Family {
        match self {
            Self::EfficientNetLite(c) => c,
            Self::ResNet(c) => c,
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

    pub fn validate(&self) -> Result<()> {
        self.family().validate()
    }

    pub fn num_classes(&self) -> usize {
        self.family().num_classes()
    }

    /// Length of the pooled feature vector ([`Pooling::Last`]'s: the last feature map's channels).
    pub fn feature_dim(&self) -> usize {
        self.family().feature_dim()
    }

    /// The blocks whose input [`Pooling`] averages besides the last feature map, in order: none for
    /// [`Pooling::Last`]; for [`Pooling::Stages`] the ends of the last three stages (EfficientNet-Lite0:
    /// blocks 11, 15 and 16, i.e. the outputs of its 112-, 192- and 320-channel stages), less one
    /// that is the last map itself (ResNet's last stage, which no head convolution follows).
    pub fn pooled_blocks(&self, pooling: Pooling) -> Vec<usize> {
        if pooling == Pooling::Last {
            return Vec::new();
        }
        let blocks = self.family().block_layout();
        let mut ends: Vec<usize> =
            (1..=blocks.len()).filter(|&i| i == blocks.len() || blocks[i].stage != blocks[i - 1].stage).collect();
        if self.family().head_conv().is_none() {
            ends.pop(); // the last stage's output is the last map itself
        }
        ends.split_off(ends.len().saturating_sub(if self.family().head_conv().is_some() { 3 } else { 2 }))
    }

    /// Length of the feature vector `pooling` gives: the last map's channels, then each pooled
    /// block's input channels.
    pub fn pooled_dim(&self, pooling: Pooling) -> usize {
        self.feature_dim() + self.pooled_blocks(pooling).iter().map(|&b| self.channels_at(b)).sum::<usize>()
    }

    /// Channels of block `first`'s input (of what the blocks give out, for `first` = their number).
    pub fn channels_at(&self, first: usize) -> usize {
        let family = self.family();
        family.block_layout().get(first).map_or(family.blocks_out_channels(), |b| b.in_channels)
    }

    pub fn batch_norm_eps(&self) -> f64 {
        self.family().batch_norm_eps()
    }

    /// The folded network op by op: what the CPU path runs (and an exporter writes).
    pub fn ops(&self) -> OpGraph {
        self.family().ops()
    }

    /// The checkpoint's convolutions with the BatchNorm after each.
    pub fn conv_bn_pairs(&self) -> Vec<ConvBn> {
        self.family().conv_bn_pairs()
    }

    /// The classifier's name in the checkpoint (`_fc`, `fc`).
    pub fn classifier(&self) -> &'static str {
        self.family().classifier()
    }

    pub fn peak_activation_bytes(&self, side: usize) -> usize {
        self.family().peak_activation_bytes(side)
    }

    /// The first block that trains when the last `layers` (1 to [`MAX_TRAIN_LAYERS`]) parts of
    /// the network do, the earlier ones frozen: first the head convolution where the family has
    /// one (EfficientNet-Lite's; Lite0's then block 15, then blocks 11–14), else the last block
    /// (ResNet: then the rest of the last stage); each further part is the rest of the stage
    /// before the cut.
    pub fn first_trained_block(&self, layers: usize) -> Result<usize> {
        if !(1..=MAX_TRAIN_LAYERS).contains(&layers) {
            return Err(invalid!("the layers to train must be 1 to {MAX_TRAIN_LAYERS} (0 trains the head only)"));
        }
        let blocks = self.family().block_layout();
        let mut first = if self.family().head_conv().is_some() { blocks.len() } else { blocks.len() - 1 };
        for _ in 1..layers {
            let Some(stage) = first.checked_sub(1).map(|i| blocks[i].stage) else { break };
            while first > 0 && blocks[first - 1].stage == stage {
                first -= 1;
            }
        }
        Ok(first)
    }

    /// The input of block `first` (of what follows the last block when `first` is their number)
    /// for an image of `side` (H, W): (C, H', W'). Every stride-2 layer halves a side, rounding up,
    /// as TF 'SAME' and the symmetric paddings both do.
    pub fn activation_shape(&self, (h, w): (usize, usize), first: usize) -> [usize; 3] {
        let family = self.family();
        let blocks = family.block_layout();
        let halve = |(h, w): (usize, usize)| (h.div_ceil(2), w.div_ceil(2));
        let mut side = (h, w);
        for _ in 0..family.stem_halvings() {
            side = halve(side);
        }
        for block in &blocks[..first] {
            if block.stride == 2 {
                side = halve(side);
            }
        }
        [self.channels_at(first), side.0, side.1]
    }

    /// The last feature map before pooling for an image of `side` (H, W): (H', W', feature_dim), NHWC.
    pub fn feature_map_shape(&self, side: (usize, usize)) -> [usize; 3] {
        let [_, h, w] = self.activation_shape(side, self.family().block_layout().len());
        [h, w, self.feature_dim()]
    }

    /// The (folded) convolutions that train from block `first` on, by weight name (`<name>.weight`,
    /// `<name>.bias`).
    pub fn trained_convs(&self, first: usize) -> Vec<String> {
        let family = self.family();
        let trained: Vec<String> = family.block_layout()[first..].iter().map(|b| format!("{}.", b.prefix)).collect();
        family
            .conv_bn_pairs()
            .into_iter()
            .map(|pair| pair.conv)
            .filter(|conv| {
                Some(conv.as_str()) == family.head_conv() || trained.iter().any(|p| conv.starts_with(p.as_str()))
            })
            .collect()
    }
}

/// Which feature maps a backbone's features average: the features a head trains on, the same in
/// the CLI, the page, the feature caches and every export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The last feature map's global average pool: what the backbone's own (ImageNet) classifier
    /// reads, and what a `.wick` written before pooling was a choice has.
    #[default]
    Last,
    /// The last map's pool, then the pools of the last stages' outputs
    /// ([`NetworkConfig::pooled_blocks`]), concatenated: the hypercolumn trick of the linear-probe
    /// literature. Measured on the CIFAR-10 JPEG copy (10,000 training images, BENCHMARKS.md
    /// "Accuracy levers"): +3.3 points at 96 px and +2.4 at 128 px over `Last` with Lite0, at
    /// 0.99–1.00× the extraction time (the pools come from the same pass). The first `feature_dim`
    /// values are `Last`'s features.
    Stages,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Self::Last => "last",
            Self::Stages => "stages",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "last" => Ok(Self::Last),
            "stages" => Ok(Self::Stages),
            _ => Err(invalid!("unknown pooling {name:?}: `last` or `stages`")),
        }
    }
}

/// How many parts at the end of a backbone can train with the head (see
/// [`NetworkConfig::first_trained_block`]).
pub const MAX_TRAIN_LAYERS: usize = 3;

/// A built network of any family, up to its pooled features: for inference with every BatchNorm
/// folded ([`Network::folded`]), or for fine-tuning with them as layers ([`Network::unfolded`]).
#[derive(Debug, Clone)]
pub struct Network(Arc<dyn Graph>);

impl Network {
    /// Every BatchNorm folded; the 1×1 convolutions' forward products in `products` (int8 for the
    /// trained layers: what the exported model will compute; f32 for the exact graph).
    pub fn folded(
        config: &NetworkConfig,
        products: MatmulPrecision,
        vb: candle_nn::VarBuilder,
    ) -> candle_core::Result<Self> {
        config.family().folded(products, vb).map(Self)
    }

    /// The convolutions run in `compute` (F32, or BF16 for the families that take mixed precision).
    pub fn unfolded(config: &NetworkConfig, compute: DType, vb: candle_nn::VarBuilder) -> Result<Self> {
        // By concrete family, not through `family()`: see `Family::unfolded`.
        match config {
            NetworkConfig::EfficientNetLite(c) => c.unfolded(compute, vb),
            NetworkConfig::ResNet(c) => c.unfolded(compute, vb),
        }
        .map(Self)
    }

    /// Images → the input of block `first`, every BatchNorm in evaluation mode.
    pub fn front(&self, images: &Tensor, first: usize) -> candle_core::Result<Tensor> {
        self.0.front(images, first)
    }

    /// The input of block `from` → the input of block `to`, every BatchNorm in evaluation mode.
    pub fn blocks(&self, x: &Tensor, from: usize, to: usize) -> candle_core::Result<Tensor> {
        self.0.blocks(x, from, to)
    }

    /// The input of block `first` → pooled features, f32.
    pub fn last_layers(&self, x: &Tensor, first: usize, train: bool) -> candle_core::Result<Tensor> {
        self.0.last_layers(x, first, train)
    }
}

impl ModuleT for Network {
    /// Images → pooled features, f32; with `train`, BatchNorms use and update batch statistics.
    fn forward_t(&self, images: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.0.forward_t(images, train)
    }
}
