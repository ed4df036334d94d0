//! Wick's integration tests, one binary (one link of the library and Candle instead of one per
//! file), a module per area. `fuzz`, `torchvision` and `decode_budget` are their own binaries: the
//! Makefile runs the first two by name, and the last two count memory with an allocator of their own.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod check;
mod checkpoint;
mod cifar10;
mod class_map;
mod data;
mod export;
mod finetune;
mod formats;
mod head;
mod hostile;
mod inference;
mod int8_cost;
mod layers;
mod metrics;
mod pooling;
mod pretrained;
mod project;
mod projection;
mod resnet;
mod train_cli;
