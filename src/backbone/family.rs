//! What the generic code asks of a backbone family, answered in the family's own file
//! ([`super::efficientnet_lite`], [`super::resnet`]): its shape, its checkpoint's names, where it
//! can be cut for training the last layers, its inference network op by op, and its Candle graph.
//! [`super::NetworkConfig::family`] picks a family (and `Network::unfolded`, for the one method kept
//! out of the trait object); nothing else names one.

use std::sync::Arc;

use candle_core::{DType, ModuleT, Tensor};
use candle_nn::VarBuilder;

use crate::backbone::layers::ConvBn;
use crate::backbone::ops::OpGraph;
use crate::error::Result;
use crate::kernels::matmul::MatmulPrecision;

/// A block of the network as the generic code sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockInfo {
    /// Its weights' name prefix in the checkpoint (`_blocks.3`, `layer2.1`).
    pub prefix: String,
    /// The stage it belongs to (blocks of a stage train together).
    pub stage: usize,
    pub in_channels: usize,
    pub stride: usize,
}

pub trait Family {
    /// Checks a configuration read from a file against the family's bounds.
    fn validate(&self) -> Result<()>;
    fn num_classes(&self) -> usize;
    /// Length of the pooled feature vector.
    fn feature_dim(&self) -> usize;
    fn batch_norm_eps(&self) -> f64;
    /// The classifier's name in the checkpoint (`_fc`, `fc`).
    fn classifier(&self) -> &'static str;
    /// The checkpoint's convolutions with the BatchNorm after each, in forward order.
    fn conv_bn_pairs(&self) -> Vec<ConvBn>;
    /// The largest activation of one `side`×`side` image, in bytes (f32).
    fn peak_activation_bytes(&self, side: usize) -> usize;
    /// Each block, in forward order.
    fn block_layout(&self) -> Vec<BlockInfo>;
    /// The convolution after the last block, when the family has one (EfficientNet-Lite's
    /// `_conv_head`): the first part to train with the head.
    fn head_conv(&self) -> Option<&'static str>;
    /// How many times what comes before the blocks halves a side (stems and their pooling).
    fn stem_halvings(&self) -> usize;
    /// Channels of what the blocks give out.
    fn blocks_out_channels(&self) -> usize;
    /// The folded network op by op (the CPU path runs it; an exporter can write it).
    fn ops(&self) -> OpGraph;
    /// The Candle graph with every BatchNorm folded (a backbone file's weights), its 1×1
    /// convolutions' forward products in `products`.
    fn folded(&self, products: MatmulPrecision, vb: VarBuilder) -> candle_core::Result<Arc<dyn Graph>>;
    /// The Candle graph with its BatchNorms as layers, for fine-tuning; the convolutions in
    /// `compute` (F32, or BF16 where the family takes mixed precision). Called on the concrete
    /// family only (`Self: Sized` keeps it out of the trait object): the page's build never
    /// fine-tunes, and a vtable entry would have kept the training graph in its wasm (+12 KB
    /// gzipped, measured 2026-12-07, over the first load's 6 MB).
    fn unfolded(&self, compute: DType, vb: VarBuilder) -> Result<Arc<dyn Graph>>
    where
        Self: Sized;
}

/// A family's Candle graph, up to its pooled features.
pub trait Graph: ModuleT + std::fmt::Debug + Send + Sync {
    /// Images → the input of block `first`, every BatchNorm in evaluation mode.
    fn front(&self, images: &Tensor, first: usize) -> candle_core::Result<Tensor>;
    /// The input of block `from` → the input of block `to` (`from ≤ to`), every BatchNorm in
    /// evaluation mode.
    fn blocks(&self, x: &Tensor, from: usize, to: usize) -> candle_core::Result<Tensor>;
    /// The input of block `first` → pooled features, f32.
    fn last_layers(&self, x: &Tensor, first: usize, train: bool) -> candle_core::Result<Tensor>;
}
