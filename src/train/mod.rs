//! Training: the classification head on frozen features, and fine-tuning the whole network.

pub mod config;
pub mod finetune;
pub mod head;
