//! What a network is, before any weights: each family's configuration behind one
//! [`NetworkConfig`] (its bounds, its blocks, where it can be cut for training the last layers),
//! and the built Candle graph of either family ([`Network`]). Nothing here knows of files, of the
//! CPU inference path or of callers.

use candle_core::{DType, ModuleT, Tensor};
use serde::{Deserialize, Serialize};

use crate::backbone::efficientnet_lite::{self, EfficientNetLite};
use crate::backbone::layers;
use crate::backbone::resnet;
use crate::error::{invalid, Result};

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

    /// The first block that trains when the last `depth` (1 to [`MAX_TRAIN_LAYERS`]) parts of the
    /// network do, the earlier ones frozen. EfficientNet-Lite: the 1×1 head convolution, then the
    /// last stage (Lite0: block 15), then the stage before (blocks 11–14). ResNet, which has no head
    /// convolution: the last block, then the rest of the last stage, then the stage before.
    pub fn first_trained_block(&self, depth: usize) -> Result<usize> {
        if !(1..=MAX_TRAIN_LAYERS).contains(&depth) {
            return Err(invalid!("the layers to train must be 1 to {MAX_TRAIN_LAYERS} (0 trains the head only)"));
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
pub const MAX_TRAIN_LAYERS: usize = 3;

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
    pub fn last_layers(&self, x: &Tensor, first: usize, train: bool) -> candle_core::Result<Tensor> {
        match self {
            Self::EfficientNetLite(n) => n.last_layers(x, first, train),
            Self::ResNet(n) => n.last_layers(x, first, train),
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
