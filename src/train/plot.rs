//! A training run as a picture: the loss and accuracy curves per step and the confusion matrix,
//! in one self-contained SVG that `wick train` and `wick cifar10` write next to the `.wick`.
//! Hand-written SVG: a few rectangles, lines and labels do not need a plotting library.

use std::fmt::Write;

use crate::eval::metrics::Metrics;
use crate::train::report::EpochStats;

const PANEL: f64 = 300.0;
const MARGIN: f64 = 40.0;
const TRAIN_COLOUR: &str = "#1f77b4";
const VAL_COLOUR: &str = "#d62728";

/// Marks the plots Wick writes, so that a later run replaces its own picture and never a user's
/// file of the same name.
pub const PLOT_MARK: &str = r#"data-written-by="wick-training-plot""#;

/// `title` heads the picture; `measured_on` names the set the confusion matrix counts (e.g.
/// "validation images" or "test set").
pub fn training_svg(
    title: &str,
    history: &[EpochStats],
    metrics: Option<&Metrics>,
    labels: &[String],
    measured_on: &str,
) -> String {
    let width = MARGIN + 3.0 * (PANEL + MARGIN) + 220.0;
    let height = PANEL + 2.5 * MARGIN + 60.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11" {PLOT_MARK}>"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{MARGIN}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    let x_name =
        if history.iter().any(|h| h.regularization.is_some()) { "L2 strength (strong → weak)" } else { "epoch" };
    let losses = |h: &EpochStats| [Some(h.train_loss), h.val_loss];
    let accuracies = |h: &EpochStats| [Some(100.0 * h.train_accuracy), h.val_accuracy.map(|a| 100.0 * a)];
    curves(&mut svg, MARGIN, "loss", x_name, history, losses);
    curves(&mut svg, 2.0 * MARGIN + PANEL, "accuracy (%)", x_name, history, accuracies);
    let legend_y = PANEL + 2.0 * MARGIN + 30.0;
    let _ = write!(
        svg,
        r#"<text x="{MARGIN}" y="{legend_y}" fill="{TRAIN_COLOUR}">— training</text><text x="{}" y="{legend_y}" fill="{VAL_COLOUR}">— validation / held out</text>"#,
        MARGIN + 90.0
    );
    if let Some(metrics) = metrics {
        confusion(&mut svg, 4.0 * MARGIN + 2.0 * PANEL + 40.0, metrics, labels, measured_on);
    }
    svg.push_str("</svg>\n");
    svg
}

fn curves(
    svg: &mut String,
    left: f64,
    title: &str,
    x_name: &str,
    history: &[EpochStats],
    values: impl Fn(&EpochStats) -> [Option<f32>; 2],
) {
    let top = 2.0 * MARGIN;
    let (bottom, right) = (top + PANEL, left + PANEL);
    let max =
        history.iter().flat_map(&values).flatten().filter(|v| v.is_finite()).fold(0f32, f32::max).max(1e-6) as f64;
    let _ = write!(
        svg,
        r##"<text x="{left}" y="{}">{title}</text><path d="M{left} {top}V{bottom}H{right}" stroke="#333" fill="none"/><text x="{}" y="{}" text-anchor="end">{max:.3}</text><text x="{}" y="{bottom}" text-anchor="end">0</text><text x="{}" y="{}" text-anchor="middle">{x_name} 1–{}</text>"##,
        top - 8.0,
        left - 3.0,
        top + 4.0,
        left - 3.0,
        left + PANEL / 2.0,
        bottom + 16.0,
        history.len()
    );
    let steps = history.len().max(2) - 1;
    for (series, colour) in [(0, TRAIN_COLOUR), (1, VAL_COLOUR)] {
        let points: Vec<String> = history
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let v = values(h)[series].filter(|v| v.is_finite())? as f64;
                Some(format!("{:.1},{:.1}", left + PANEL * i as f64 / steps as f64, bottom - PANEL * v / max))
            })
            .collect();
        if !points.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline points="{}" stroke="{colour}" fill="none" stroke-width="1.5"/>"#,
                points.join(" ")
            );
        }
    }
}

fn confusion(svg: &mut String, left: f64, metrics: &Metrics, labels: &[String], measured_on: &str) {
    let top = 2.0 * MARGIN;
    let k = metrics.confusion.len().max(1);
    let cell = PANEL / k as f64;
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{}">confusion on the {} ({:.1}% of {} right): rows truth, columns predicted</text>"#,
        top - 8.0,
        escape(measured_on),
        100.0 * metrics.accuracy,
        metrics.images
    );
    for (t, row) in metrics.confusion.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        let y = top + cell * t as f64;
        let label = labels.get(t).map_or(String::new(), |l| escape(l));
        let _ =
            write!(svg, r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>"#, left - 3.0, y + cell / 2.0 + 4.0);
        for (p, &count) in row.iter().enumerate() {
            let share = count as f64 / total;
            let x = left + cell * p as f64;
            let _ = write!(
                svg,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({shade},{shade},255)" fill-opacity="{share:.3}" stroke="#ddd"><title>{label} → {predicted}: {count}</title></rect>"##,
                shade = (255.0 * (1.0 - share)) as u8,
                predicted = labels.get(p).map_or(String::new(), |l| escape(l))
            );
            if k <= 12 {
                let colour = if share > 0.5 { "white" } else { "black" };
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{colour}">{count}</text>"#,
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0
                );
            }
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picture_holds_both_curves_and_every_cell_and_escapes_labels() {
        let history: Vec<EpochStats> = (1..=3)
            .map(|epoch| EpochStats {
                epoch,
                train_loss: 1.0 / epoch as f32,
                train_accuracy: 0.5,
                val_loss: Some(1.2 / epoch as f32),
                val_accuracy: Some(0.4),
                regularization: None,
            })
            .collect();
        let labels = vec!["cat".to_string(), "<dog>".to_string()];
        let metrics = Metrics::compute(
            &labels,
            &[0, 1, 1],
            &[vec![0.9, 0.1], vec![0.2, 0.8], vec![0.7, 0.3]],
            &["a".into(), "b".into(), "c".into()],
        );
        let svg = training_svg("run", &history, Some(&metrics), &labels, "test set");
        assert_eq!(svg.matches("<polyline").count(), 4, "train and validation, loss and accuracy");
        assert_eq!(svg.matches("<rect x=").count(), 4, "a 2 × 2 confusion matrix");
        assert!(svg.contains("&lt;dog&gt;") && !svg.contains("<dog>"));
        assert!(svg.contains("66.7% of 3 right"));
    }
}
