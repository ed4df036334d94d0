//! How good a classifier is on labelled images: accuracy, per-class precision/recall/F1, the confusion
//! matrix and the images it got wrong.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f32,
    pub recall: f32,
    pub f1: f32,
    /// Images of this class in the evaluated set.
    pub support: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Misclassified {
    /// The image's file name (or upload name).
    pub name: String,
    pub truth: String,
    pub predicted: String,
    /// The predicted class's probability.
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub images: usize,
    pub accuracy: f32,
    /// Unweighted mean of the per-class F1 scores.
    pub macro_f1: f32,
    pub classes: Vec<ClassMetrics>,
    /// `confusion[truth][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    #[serde(default)]
    pub misclassified: Vec<Misclassified>,
}

impl Metrics {
    /// `probabilities[i]` is image `i`'s distribution over `labels`; `truth[i]` its class; `names[i]` its name.
    pub fn compute(labels: &[String], truth: &[u32], probabilities: &[Vec<f32>], names: &[String]) -> Self {
        let k = labels.len();
        let mut confusion = vec![vec![0usize; k]; k];
        let mut misclassified = Vec::new();
        for ((&t, p), name) in truth.iter().zip(probabilities).zip(names) {
            let predicted = argmax(p);
            confusion[t as usize][predicted] += 1;
            if predicted != t as usize {
                misclassified.push(Misclassified {
                    name: name.clone(),
                    truth: labels[t as usize].clone(),
                    predicted: labels[predicted].clone(),
                    confidence: p[predicted],
                });
            }
        }
        // Most confident mistakes first: those are the ones worth a look (or a relabel).
        misclassified.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));

        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
        let classes: Vec<ClassMetrics> = (0..k)
            .map(|c| {
                let hits = confusion[c][c];
                let support = confusion[c].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[c]).sum();
                let (precision, recall) = (ratio(hits, predicted), ratio(hits, support));
                let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
                ClassMetrics { label: labels[c].clone(), precision, recall, f1, support }
            })
            .collect();
        let correct = (0..k).map(|c| confusion[c][c]).sum();
        Self {
            images: truth.len(),
            accuracy: ratio(correct, truth.len()),
            macro_f1: classes.iter().map(|c| c.f1).sum::<f32>() / k.max(1) as f32,
            classes,
            confusion,
            misclassified,
        }
    }

    /// Checks metrics read from a file (a `.wick`, a project) against the classes they describe, so
    /// that the page and the terminal can draw them without a missing row or a NaN.
    pub fn check(&self, labels: &[String]) -> crate::Result<()> {
        let k = labels.len();
        let bad = |why: String| Err(crate::error::invalid!("bad validation metrics: {why}"));
        if self.classes.len() != k || self.confusion.len() != k || self.confusion.iter().any(|row| row.len() != k) {
            return bad(format!("they do not describe {k} classes"));
        }
        let total = self.confusion.iter().flatten().try_fold(0usize, |n, &c| n.checked_add(c));
        if total != Some(self.images) {
            return bad(format!("the confusion matrix does not count {} images", self.images));
        }
        let numbers = [self.accuracy, self.macro_f1].into_iter();
        let per_class = self.classes.iter().flat_map(|c| [c.precision, c.recall, c.f1]);
        let confidences = self.misclassified.iter().map(|m| m.confidence);
        if numbers.chain(per_class).chain(confidences).any(|v| !(0.0..=1.0).contains(&v)) {
            return bad("a rate is not a number from 0 to 1".into());
        }
        Ok(())
    }

    /// A plain-text report for the terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self.classes.iter().map(|c| c.label.chars().count()).max().unwrap_or(5).max(5);
        let _ = writeln!(
            out,
            "accuracy {:.2}% on {} images, macro F1 {:.3}\n",
            100.0 * self.accuracy,
            self.images,
            self.macro_f1
        );
        let _ = writeln!(out, "{:width$}  precision  recall     F1  images", "class");
        for c in &self.classes {
            let _ = writeln!(
                out,
                "{:width$}  {:>9.3}  {:>6.3}  {:>5.3}  {:>6}",
                c.label, c.precision, c.recall, c.f1, c.support
            );
        }
        let _ = writeln!(out, "\nconfusion matrix (rows: true class, columns: predicted class)");
        // Columns are headed by the class names, cut to at most 10 characters.
        let count_width = self.confusion.iter().flatten().max().map_or(1, |m| m.to_string().len());
        let heads: Vec<String> = self.classes.iter().map(|c| c.label.chars().take(10).collect()).collect();
        let cell = heads.iter().map(|h| h.chars().count()).max().unwrap_or(1).max(count_width);
        let header: Vec<String> = heads.iter().map(|h| format!("{h:>cell$}")).collect();
        let _ = writeln!(out, "{:width$}  {}", "", header.join(" "));
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(|n| format!("{n:>cell$}")).collect();
            let _ = writeln!(out, "{:width$}  {}", c.label, cells.join(" "));
        }
        if !self.misclassified.is_empty() {
            let _ = writeln!(out, "\nmisclassified ({}):", self.misclassified.len());
            for m in &self.misclassified {
                let _ = writeln!(
                    out,
                    "  {}: {} predicted as {} ({:.1}%)",
                    m.name,
                    m.truth,
                    m.predicted,
                    100.0 * m.confidence
                );
            }
        }
        out
    }
}

pub fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).map_or(0, |(i, _)| i)
}
