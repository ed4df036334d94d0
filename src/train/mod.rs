//! Training: the classification head on frozen features, the backbone's last layers with it on
//! cached activations, and fine-tuning the whole network.

pub mod config;
pub mod finetune;
pub mod head_fit;
pub mod layers;
pub mod lbfgs;
pub mod loss;
pub mod optim;
pub mod plot;
pub mod report;
pub mod schedule;
