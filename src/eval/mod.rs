//! How good a classifier is.

pub mod metrics;
