//! The label check ([`wick::eval::check`]): folds keep every class's share, and images put in the
//! wrong class come first in the ranking, with their true class suggested.

use candle_core::Device;
use rand::{rngs::StdRng, Rng, SeedableRng};
use wick::data::feature_set::FeatureSet;
use wick::eval::check::{assign_folds, find_suspects, rank_suspects, CHECK_FOLDS};

/// `per_class` noisy points around each of `classes` random centres in `dim` dimensions.
fn clusters(classes: usize, per_class: usize, dim: usize, seed: u64) -> FeatureSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> =
        (0..classes).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let mut set = FeatureSet::new(dim);
    for i in 0..classes * per_class {
        let class = i % classes;
        let row: Vec<f32> = centres[class].iter().map(|c| c + rng.random_range(-0.6..0.6)).collect();
        set.push(&row, class as u32);
    }
    set
}

#[test]
fn folds_share_out_every_class() {
    let labels: Vec<u32> = (0..103).map(|i| (i % 7 % 3) as u32).collect();
    let folds = assign_folds(&labels, CHECK_FOLDS, 4);
    assert_eq!(folds, assign_folds(&labels, CHECK_FOLDS, 4), "seeded");
    for class in 0..3 {
        let mut sizes = [0usize; CHECK_FOLDS];
        labels.iter().zip(&folds).filter(|(&l, _)| l == class).for_each(|(_, &f)| sizes[f] += 1);
        let (low, high) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(high - low <= 1, "class {class}: fold sizes {sizes:?}");
    }
    let mut totals = [0usize; CHECK_FOLDS];
    folds.iter().for_each(|&f| totals[f] += 1);
    assert!(totals.iter().max().unwrap() - totals.iter().min().unwrap() <= 1, "fold sizes {totals:?}");
}

#[test]
fn mislabelled_images_come_first() {
    let mut set = clusters(4, 40, 32, 1);
    let wrong = [5usize, 50, 97];
    let truth: Vec<u32> = wrong.iter().map(|&r| set.labels[r]).collect();
    for &row in &wrong {
        set.labels[row] = (set.labels[row] + 1) % 4;
    }
    let mut progress = Vec::new();
    let suspects =
        find_suspects(&set, 4, 0, &Device::Cpu, |done, folds| progress.push((done, folds))).unwrap().suspects;
    assert_eq!(progress, (1..=CHECK_FOLDS).map(|d| (d, CHECK_FOLDS)).collect::<Vec<_>>());
    assert_eq!(suspects.len(), set.len());
    let mut top: Vec<usize> = suspects[..3].iter().map(|s| s.row).collect();
    top.sort();
    assert_eq!(top, wrong, "top of the list: {:?}", &suspects[..5]);
    for s in &suspects[..3] {
        let i = wrong.iter().position(|&r| r == s.row).unwrap();
        assert_eq!(s.suggested, truth[i], "row {} suggests its true class", s.row);
        assert!(s.probably_mislabelled(), "row {}: {s:?}", s.row);
    }
    assert!(suspects[3].doubt() < suspects[2].doubt());
    assert!(!suspects.last().unwrap().probably_mislabelled(), "a clean image is not doubted");
}

#[test]
fn ranking_is_by_doubt_and_odd_input_is_refused() {
    let probabilities = vec![vec![0.9, 0.1, 0.0], vec![0.2, 0.3, 0.5], vec![0.5, 0.5, 0.0], vec![0.6, 0.35, 0.05]];
    let suspects = rank_suspects(&[0, 0, 0, 1], &probabilities);
    let rows: Vec<usize> = suspects.iter().map(|s| s.row).collect();
    // Doubts (1 − p(given)): 0.1, 0.8, 0.5, 0.65.
    assert_eq!(rows, [1, 3, 2, 0]);
    assert_eq!((suspects[0].given, suspects[0].suggested), (0, 2), "the most likely other class");
    assert!(suspects[0].probably_mislabelled() && suspects[1].probably_mislabelled());
    assert!(!suspects[2].probably_mislabelled(), "a tie keeps the given label");
    let one = clusters(2, 1, 4, 2);
    let mut single = FeatureSet::new(4);
    single.push(&one.features[..4], 0);
    let err = find_suspects(&single, 2, 0, &Device::Cpu, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("at least 2 images"), "{err}");
}

/// A class with a single image (absent from the head that predicts it) still gets probabilities.
#[test]
fn a_class_of_one_image_is_checked() {
    let mut set = clusters(3, 10, 8, 3);
    set.labels.truncate(21);
    set.features.truncate(21 * 8);
    let lone = set.features[..8].to_vec();
    set.push(&lone, 2);
    let suspects = find_suspects(&set, 3, 0, &Device::Cpu, |_, _| {}).unwrap().suspects;
    assert_eq!(suspects.len(), 22);
    assert!(suspects.iter().all(|s| s.given_probability.is_finite() && s.suggested_probability.is_finite()));
}
