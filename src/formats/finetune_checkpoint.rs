//! The fine-tuning checkpoint (format `wick-finetune-checkpoint`, version 1): every weight, running
//! statistic and optimizer buffer of a run (F32 tensors named `model.…`, `head.…` and
//! `optimizer.<param>.<k>`), and as metadata the run's settings, classes, the pretrained weights'
//! sha256, the training data's fingerprint and its progress — enough to continue it exactly, and to
//! refuse continuing it with anything else.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::formats::FileKind;
use crate::train::config::FinetuneConfig;
use crate::train::report::EpochStats;

pub const FORMAT: &str = "wick-finetune-checkpoint";

/// Checkpoint metadata: enough to refuse resuming with other settings, data or weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub config: FinetuneConfig,
    pub classes: Vec<String>,
    /// sha256 of the pretrained checkpoint the run started from.
    pub source_sha256: String,
    pub data_fingerprint: String,
    pub epochs_done: usize,
    pub optimizer_steps: usize,
    pub history: Vec<EpochStats>,
}

impl CheckpointMeta {
    /// The record of progress must agree with itself: one history entry per epoch done, numbered
    /// 1, 2, …, no more epochs than the run has, and the optimizer's steps those epochs take. (A
    /// history longer than the epochs trained would otherwise skip training.)
    pub fn check_progress(&self, epochs: usize, steps_per_epoch: usize) -> Result<()> {
        let bad = |why: String| Err(CHECKPOINT.invalid(why));
        if self.epochs_done > epochs {
            return bad(format!("it has {} epochs done of a run of {epochs}", self.epochs_done));
        }
        if self.history.len() != self.epochs_done || self.history.iter().enumerate().any(|(i, h)| h.epoch != i + 1) {
            return bad(format!(
                "its history lists {} epochs, but it records {} done",
                self.history.len(),
                self.epochs_done
            ));
        }
        if Some(self.optimizer_steps) != self.epochs_done.checked_mul(steps_per_epoch) {
            return bad(format!(
                "it records {} optimizer steps, but {} epochs of {steps_per_epoch} steps take {}",
                self.optimizer_steps,
                self.epochs_done,
                self.epochs_done.saturating_mul(steps_per_epoch)
            ));
        }
        Ok(())
    }
}

pub const CHECKPOINT: FileKind = FileKind {
    format: FORMAT,
    version: "1",
    noun: "fine-tuning checkpoint",
    version_label: "Checkpoint",
    written: "the checkpoint",
    mistaken_for: &[
        (crate::formats::classifier::FORMAT, "this is a trained .wick model, not a checkpoint"),
        (crate::formats::backbone_file::FORMAT, "this is a backbone file, not a checkpoint"),
    ],
};
