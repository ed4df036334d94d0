//! Fitting a head to a project's features and measuring it on the held-out images: the one call
//! behind `wick train`, `wick cifar10 --mode probe` and the page's Train button.

use std::ops::ControlFlow;

use candle_core::Device;

use crate::error::Result;
use crate::eval::metrics::Metrics;
use crate::train::config::TrainConfig;
use crate::train::head::{train, FeatureSet, Trained, Trainer};
use crate::train::report::EpochStats;

/// A fitted head and how it did on the validation images.
pub struct FittedHead {
    pub trained: Trained,
    /// `None` without validation images.
    pub validation: Option<Metrics>,
    /// Rows the head trained on (with mirrored views, two per image).
    pub train_rows: usize,
}

/// A fit one step at a time (an epoch, or a strength of the L-BFGS path), for the page's worker,
/// which answers Cancel between steps. [`fit_head`] is the whole fit.
pub struct HeadFit {
    trainer: Trainer,
    labels: Vec<String>,
    val_set: FeatureSet,
    /// The validation rows' names (file paths, or the page's sample indices) for the metrics'
    /// list of misclassified images.
    val_names: Vec<String>,
    train_rows: usize,
    device: Device,
}

impl HeadFit {
    /// `labels` names the classes that the sets' class indices point into.
    pub fn new(
        train_set: &FeatureSet,
        val_set: FeatureSet,
        val_names: Vec<String>,
        labels: Vec<String>,
        config: &TrainConfig,
        device: &Device,
    ) -> Result<Self> {
        assert_eq!(val_names.len(), val_set.len(), "one name per validation row");
        let trainer = Trainer::new(train_set, Some(&val_set), labels.len(), config, device)?;
        Ok(Self { trainer, labels, val_set, val_names, train_rows: train_set.len(), device: device.clone() })
    }

    /// Runs the next step: its numbers, or `None` once the fit has stopped.
    pub fn next_epoch(&mut self) -> Result<Option<&EpochStats>> {
        self.trainer.next_epoch()
    }

    /// Stops after the current step; the best weights so far are kept.
    pub fn cancel(&mut self) {
        self.trainer.cancel();
    }

    /// The head with the best step's weights, measured on the validation images.
    pub fn finish(self) -> Result<FittedHead> {
        let trained = self.trainer.finish()?;
        FittedHead::measure(trained, &self.val_set, &self.val_names, &self.labels, self.train_rows, &self.device)
    }
}

impl FittedHead {
    fn measure(
        trained: Trained,
        val_set: &FeatureSet,
        val_names: &[String],
        labels: &[String],
        train_rows: usize,
        device: &Device,
    ) -> Result<Self> {
        let validation =
            if val_set.is_empty() { None } else { Some(trained.head.evaluate(val_set, labels, val_names, device)?) };
        Ok(Self { trained, validation, train_rows })
    }
}

/// Fits a head; `on_epoch` sees each step's numbers and may stop the fit with `Break` (the head then
/// keeps the best weights so far).
pub fn fit_head(
    train_set: &FeatureSet,
    val_set: FeatureSet,
    val_names: Vec<String>,
    labels: Vec<String>,
    config: &TrainConfig,
    device: &Device,
    on_epoch: impl FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<FittedHead> {
    assert_eq!(val_names.len(), val_set.len(), "one name per validation row");
    let trained = train(train_set, Some(&val_set), labels.len(), config, device, on_epoch)?;
    FittedHead::measure(trained, &val_set, &val_names, &labels, train_set.len(), device)
}
