//! Which labelled images to check: each image's class probabilities from heads that never saw it
//! (out-of-fold predictions), ranked by how little probability they leave its given label.
//!
//! The images are dealt into [`CHECK_FOLDS`] folds, class by class (each fold gets its share of
//! every class). For each fold a linear head is fitted on the other folds' cached features and
//! predicts that fold's images. A mislabelled image is then judged by heads trained without it, so
//! its wrong label cannot have been learnt. The heads are L-BFGS logistic regressions with
//! scikit-learn's default strength (`C = 1`): no images are left to choose one on, and this is the
//! usual model for finding label errors (Northcutt et al., "Confident learning", 2021).

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::data::feature_set::FeatureSet;
use crate::error::{invalid, Result};
use crate::train::config::{Solver, TrainConfig};
use crate::train::head_fit::{HeadData, HeadFit};
use crate::util::rng::Rng;

/// Folds of the check: each head trains on four fifths of the images.
pub const CHECK_FOLDS: usize = 5;

/// An image whose given label the other folds' head doubts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    /// The image's row in the checked set.
    pub row: usize,
    /// The label it was given.
    pub given: u32,
    /// The most probable other class.
    pub suggested: u32,
    pub given_probability: f32,
    pub suggested_probability: f32,
}

impl Suspect {
    /// How strongly the heads disagree with the label: the probability they give every other class
    /// together, 1 − p(given) (the "self-confidence" ranking of confident learning, which found
    /// planted errors best in its study and here: on CIFAR-10 photos it lists a planted cat in
    /// the ship folder 3rd of 122, where the margin to the next class listed it 10th).
    pub fn doubt(&self) -> f32 {
        1.0 - self.given_probability
    }

    /// Whether another class is more likely than the given one (else the image is only hard).
    pub fn probably_mislabelled(&self) -> bool {
        self.suggested_probability > self.given_probability
    }
}

/// Each row's fold: the rows of each class shuffled (seeded) and dealt round the folds, the next
/// class starting where the last one stopped, so the folds' sizes differ by one at most.
pub fn assign_folds(labels: &[u32], folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut fold_of = vec![0; labels.len()];
    let mut next = 0;
    for class in 0..classes {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&r| labels[r] as usize == class).collect();
        rng.shuffle(&mut rows);
        for row in rows {
            fold_of[row] = next % folds;
            next += 1;
        }
    }
    fold_of
}

/// Every row's class probabilities from the head fitted on the other folds (`classes` columns).
/// `on_fold(done, folds)` is called after each fold (for progress).
pub fn out_of_fold_probabilities(
    set: &FeatureSet,
    classes: usize,
    seed: u64,
    device: &Device,
    mut on_fold: impl FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>> {
    if set.len() < 2 {
        return Err(invalid!("checking labels needs at least 2 images, the project has {}", set.len()));
    }
    let folds = CHECK_FOLDS.min(set.len());
    let fold_of = assign_folds(&set.labels, folds, seed);
    let config = TrainConfig { solver: Solver::Lbfgs, hidden: None, flip_augment: false, seed, ..Default::default() };
    let mut probabilities = vec![Vec::new(); set.len()];
    for fold in 0..folds {
        let (mut train_set, mut held_out) = (FeatureSet::new(set.dim), FeatureSet::new(set.dim));
        let mut held_rows = Vec::new();
        for (row, features) in set.features.chunks_exact(set.dim).enumerate() {
            if fold_of[row] == fold {
                held_out.push(features, set.labels[row]);
                held_rows.push(row);
            } else {
                train_set.push(features, set.labels[row]);
            }
        }
        let data = HeadData::train_only(train_set, (0..classes).map(|c| c.to_string()).collect());
        let trained = HeadFit::new(data, &config, device)?.run(|_| std::ops::ControlFlow::Continue(()))?.trained;
        let predicted = trained.head.probabilities(&held_out.tensor(device)?)?.to_vec2::<f32>()?;
        for (row, p) in held_rows.into_iter().zip(predicted) {
            probabilities[row] = p;
        }
        on_fold(fold + 1, folds);
    }
    Ok(probabilities)
}

/// Every row as a [`Suspect`], the most doubtful first (ties: lower row first).
pub fn rank_suspects(labels: &[u32], probabilities: &[Vec<f32>]) -> Vec<Suspect> {
    assert_eq!(labels.len(), probabilities.len(), "one row of probabilities per label");
    let mut suspects: Vec<Suspect> = labels
        .iter()
        .zip(probabilities)
        .enumerate()
        .filter(|(_, (_, p))| p.len() > 1)
        .map(|(row, (&given, p))| {
            let suggested = (0..p.len()).filter(|&c| c != given as usize).max_by(|&a, &b| p[a].total_cmp(&p[b]));
            let suggested = suggested.expect("two classes or more");
            Suspect {
                row,
                given,
                suggested: suggested as u32,
                given_probability: p.get(given as usize).copied().unwrap_or(0.0),
                suggested_probability: p[suggested],
            }
        })
        .collect();
    suspects.sort_by(|a, b| b.doubt().total_cmp(&a.doubt()).then(a.row.cmp(&b.row)));
    suspects
}

/// What the check found: every row as a [`Suspect`], the most doubtful first, and each row's
/// out-of-fold class (the suggested one where the row is probably mislabelled, else its own).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub suspects: Vec<Suspect>,
    pub predicted: Vec<u32>,
}

/// The check in one call: [`out_of_fold_probabilities`] then [`rank_suspects`].
pub fn find_suspects(
    set: &FeatureSet,
    classes: usize,
    seed: u64,
    device: &Device,
    on_fold: impl FnMut(usize, usize),
) -> Result<Report> {
    let probabilities = out_of_fold_probabilities(set, classes, seed, device, on_fold)?;
    let suspects = rank_suspects(&set.labels, &probabilities);
    let mut predicted = set.labels.clone();
    for s in suspects.iter().filter(|s| s.probably_mislabelled()) {
        predicted[s.row] = s.suggested;
    }
    Ok(Report { suspects, predicted })
}
