//! The runtime objects built from files: the loaded backbone ([`backbone`]), the features it
//! computes, cached ([`features`]), the classification head ([`head`]) and a trained classifier ([`classifier`]), on top of the network descriptions ([`crate::backbone`]), the
//! file formats ([`crate::formats`]) and the CPU inference path ([`crate::infer`]).

pub mod backbone;
pub mod classifier;
pub mod features;
pub mod head;

pub use backbone::{convert_checkpoint, ranked, Backbone, Prediction, Pretrained};
pub use classifier::Classifier;
