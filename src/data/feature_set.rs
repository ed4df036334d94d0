//! Features of a set of images with their class indices: what a head is fitted to and measured on.

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Features (row-major, `len × dim`) with their class indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureSet {
    pub dim: usize,
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
}

impl FeatureSet {
    pub fn new(dim: usize) -> Self {
        Self { dim, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn push(&mut self, features: &[f32], label: u32) {
        assert_eq!(features.len(), self.dim, "feature length");
        self.features.extend_from_slice(features);
        self.labels.push(label);
    }

    pub fn tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.features, (self.len(), self.dim), device)?)
    }
}
