//! How good a classifier is, which labels to check, where it looks, and a map of the data.

pub mod check;
pub mod class_map;
pub mod metrics;
pub mod projection;
