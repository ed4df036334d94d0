//! The learning-rate schedule of fine-tuning: linear warm-up, then cosine decay to zero.

use std::f64::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// The warm-up asked for, in steps, when it did not fit and was cut to half the run.
    pub clamped_from: Option<usize>,
}

impl Schedule {
    /// `warmup_epochs` of linear warm-up, then cosine decay over the rest of `epochs`. A warm-up that
    /// would leave no steps to decay over (e.g. `--epochs 1` with the default one-epoch warm-up) is
    /// cut to half the run, and `clamped_from` says so.
    pub fn warmup_cosine(peak: f64, warmup_epochs: usize, epochs: usize, steps_per_epoch: usize) -> Self {
        let total_steps = epochs * steps_per_epoch;
        let asked = warmup_epochs * steps_per_epoch;
        let (warmup_steps, clamped_from) =
            if asked >= total_steps && asked > 0 { (total_steps / 2, Some(asked)) } else { (asked, None) };
        Self { peak, warmup_steps, total_steps, clamped_from }
    }

    /// Linear warm-up from `peak / warmup_steps` to the peak, then cosine decay to zero at the last step.
    pub fn learning_rate(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            self.peak * (step + 1) as f64 / self.warmup_steps as f64
        } else {
            let progress = (step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps).max(1) as f64;
            self.peak * 0.5 * (1.0 + (PI * progress.min(1.0)).cos())
        }
    }
}
