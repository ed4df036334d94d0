//! Images in: decoding and preprocessing, class folders and the split, CIFAR-10 (and its download),
//! and augmented views for training the last layers. (The backbone's features of images, cached,
//! are [`crate::model::features`].)

pub mod augment;
pub mod cifar10;
pub mod dataset;
pub mod feature_set;
pub mod preprocess;
