//! Features of a set of images with their class indices: what a head is fitted to and measured on.

use candle_core::{Device, Tensor};

use crate::error::{invalid, Result};

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

    /// Rows of features (`labels.len()` of them, row-major) with their class indices; refuses values
    /// that do not divide into the rows.
    pub fn from_rows(features: Vec<f32>, labels: Vec<u32>) -> Result<Self> {
        let dim = if labels.is_empty() { 0 } else { features.len() / labels.len() };
        if dim == 0 || features.len() != dim * labels.len() {
            return Err(invalid!("{} feature values do not divide into {} rows", features.len(), labels.len()));
        }
        Ok(Self { dim, features, labels })
    }

    /// The rows at `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> Self {
        let mut set = Self::new(self.dim);
        for &i in rows {
            set.push(&self.features[i * self.dim..(i + 1) * self.dim], self.labels[i]);
        }
        set
    }

    /// Each row's first `dim` values (e.g. [`crate::backbone::Pooling::Last`]'s part of
    /// [`crate::backbone::Pooling::Stages`]' features).
    pub fn leading(&self, dim: usize) -> Self {
        assert!(dim <= self.dim, "{dim} leading values of rows of {}", self.dim);
        let features = self.features.chunks_exact(self.dim.max(1)).flat_map(|row| &row[..dim]).copied().collect();
        Self { dim, features, labels: self.labels.clone() }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_that_do_not_divide_are_refused() {
        let set = FeatureSet::from_rows(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![0, 1, 0]).unwrap();
        assert_eq!((set.dim, set.len()), (2, 3));
        assert_eq!(set.subset(&[2, 0]).features, [5.0, 6.0, 1.0, 2.0]);
        for (features, labels) in [(vec![1.0; 5], vec![0, 1]), (vec![1.0; 4], vec![]), (vec![], vec![0])] {
            let err = FeatureSet::from_rows(features, labels).unwrap_err().to_string();
            assert!(err.contains("do not divide"), "{err}");
        }
    }
}
