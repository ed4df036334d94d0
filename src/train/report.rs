//! What a training run reports, as files record it: each epoch's numbers and why it ended.

use serde::{Deserialize, Serialize};

/// One epoch's numbers, reported as training goes (for progress bars and live charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with dropout, smoothing and class weights).
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
    /// L-BFGS: this step's L2 strength on the regularisation path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regularization: Option<f64>,
}

impl EpochStats {
    pub fn train_only(epoch: usize, train_loss: f32, train_accuracy: f32, regularization: Option<f64>) -> Self {
        Self { epoch, train_loss, train_accuracy, val_loss: None, val_accuracy: None, regularization }
    }
}

/// Why training ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stop {
    /// All epochs ran.
    Completed,
    /// The validation loss stopped improving.
    EarlyStopped,
    /// The caller asked to stop (a Cancel button).
    Cancelled,
    /// The loss became NaN or infinite in this epoch; the weights are those of the last good epoch.
    Diverged { epoch: usize },
}

impl Stop {
    /// Why training ended, in words (the CLI's report and the web app's status say the same).
    pub fn describe(&self) -> String {
        match self {
            Self::Completed => "ran to the end".into(),
            Self::EarlyStopped => "stopped early: the validation loss stopped improving".into(),
            Self::Cancelled => "cancelled".into(),
            Self::Diverged { epoch } => {
                format!("stopped in epoch {epoch}: the loss became NaN or infinite (try a lower learning rate)")
            }
        }
    }
}
