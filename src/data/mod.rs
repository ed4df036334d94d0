//! Images in: decoding and preprocessing, class folders and the split, CIFAR-10 (and its download),
//! and the backbone features of images, cached.

pub mod cifar10;
pub mod dataset;
pub mod features;
pub mod preprocess;
