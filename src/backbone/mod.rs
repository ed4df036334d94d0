//! The backbone families as networks: [`efficientnet_lite`] (Lite0/1/2) and [`resnet`] (18/34/50),
//! one family per file, behind one [`NetworkConfig`] ([`network`]); each builds its network for
//! inference (BatchNorms folded, [`fold`]) or for fine-tuning (BatchNorms unfolded) from the units
//! in [`layers`]. A loaded backbone, weights and all, is [`crate::model::Backbone`].

pub mod efficientnet_lite;
pub mod family;
pub mod fold;
pub mod imagenet_classes;
pub mod layers;
pub mod network;
pub mod ops;
pub mod resnet;

pub use network::{Network, NetworkConfig, Pooling, MAX_TRAIN_LAYERS};
