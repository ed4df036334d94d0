//! The classification loss every trainer uses, its class weights, and the accuracy count.

use candle_core::{Tensor, D};
use candle_nn::ops::log_softmax;

use crate::error::Result;

/// `n / (classes · n_c)` per class (classes absent from `labels` get 0), or all ones.
pub fn class_weights(labels: &[u32], classes: usize, balanced: bool) -> Vec<f32> {
    if !balanced {
        return vec![1.0; classes];
    }
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    counts.iter().map(|&c| if c == 0 { 0.0 } else { labels.len() as f32 / (classes * c) as f32 }).collect()
}

/// Weighted, label-smoothed softmax cross-entropy, averaged like PyTorch's `CrossEntropyLoss(weight=…)`:
/// `Σ_i w_{y_i} · CE_i / Σ_i w_{y_i}`, with the target `(1 − ε)·onehot + ε/classes`.
pub fn cross_entropy(logits: &Tensor, labels: &[u32], class_weights: &[f32], smoothing: f32) -> Result<Tensor> {
    let classes = class_weights.len();
    let mut targets = vec![0f32; labels.len() * classes];
    let mut weight_sum = 0f32;
    for (row, &label) in targets.chunks_mut(classes).zip(labels) {
        let w = class_weights[label as usize];
        row.iter_mut().for_each(|t| *t = w * smoothing / classes as f32);
        row[label as usize] += w * (1.0 - smoothing);
        weight_sum += w;
    }
    let targets = Tensor::from_vec(targets, (labels.len(), classes), logits.device())?;
    let log_probs = log_softmax(logits, D::Minus1)?;
    Ok(((targets * log_probs)?.sum_all()? / (-weight_sum as f64))?)
}

pub fn count_correct(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count())
}
