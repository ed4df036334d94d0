//! Images in: decoding and preprocessing, class folders and the split, CIFAR-10 (and its download),
//! the backbone features of images, cached, and augmented views for training the last layers.

pub mod augment;
pub mod cifar10;
pub mod dataset;
pub mod features;
pub mod preprocess;
