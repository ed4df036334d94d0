//! A Wick model in other tools' formats, computed from the same description the CPU path runs:
//! each family's op graph ([`crate::backbone::ops`]), the folded weights and the trained head.
//!
//! - [`onnx`]: one ONNX graph from pixels to class probabilities (onnxruntime, onnxruntime-web,
//!   onnx2tf);
//! - [`tfjs`]: a TensorFlow.js layers model with Teachable Machine's metadata (`tf.loadLayersModel`,
//!   `@teachablemachine/image`, ml5);
//! - [`web`]: a drop-in classifier for any web page (Wick's runtime beside the model's own files).

pub mod onnx;
pub mod tfjs;
pub mod web;

use std::collections::HashMap;

use crate::backbone::ops::{Op, OpGraph, Slot, IMAGE_SLOT, SLOTS};
use crate::error::{invalid, Result};
use crate::model::head::Head;
use crate::model::{Backbone, Classifier};

/// What an export holds: the backbone fed the way the model's images were, and the classes it
/// answers with — a trained head's, or the backbone's own classifier's.
pub struct Exported {
    pub backbone: Backbone,
    /// `None`: the backbone's own classifier (ImageNet's, or the classes it was fine-tuned on).
    pub head: Option<Head>,
    pub labels: Vec<String>,
}

/// The four buffers of an op graph as an exporter sees them: what each one holds (a format's node
/// name, and whatever else it tracks) once an op has written it.
pub(crate) struct Slots<S>(Vec<Option<S>>);

impl<S: Clone> Slots<S> {
    pub fn read(&self, slot: Slot) -> Result<S> {
        self.0[slot].clone().ok_or_else(|| invalid!("the op graph reads buffer {slot} before writing it"))
    }

    pub fn set(&mut self, slot: Slot, value: S) {
        self.0[slot] = Some(value);
    }
}

/// `backbone`'s ops in order, as an exporter writes them: `write(before, op, slots)` turns `op` (the
/// one after the ops `before`) into the format's nodes and sets the buffer it writes. The image starts as `image`. Returns what
/// holds the last feature map and, in order, what held each map the backbone's pooling averages
/// besides it (taken when the pass held it: a later op may write its buffer).
pub(crate) fn walk_ops<S: Clone>(
    backbone: &Backbone,
    image: S,
    mut write: impl FnMut(&[Op], &Op, &mut Slots<S>) -> Result<()>,
) -> Result<(S, Vec<S>)> {
    let config = &backbone.meta.config;
    let graph = config.ops();
    let taps = graph.fronts(&config.pooled_blocks(backbone.pooling()));
    let mut slots = Slots(vec![None; SLOTS]);
    slots.set(IMAGE_SLOT, image);
    let mut tapped = Vec::new();
    for i in 0..=graph.ops.len() {
        for _ in taps.iter().filter(|&&t| t == i) {
            tapped.push(slots.read(OpGraph::result_slot(&graph.ops[..i]))?);
        }
        if let Some(op) = graph.ops.get(i) {
            write(&graph.ops[..i], op, &mut slots)?;
        }
    }
    Ok((slots.read(OpGraph::result_slot(&graph.ops))?, tapped))
}

/// One dense layer of the classifier, as both formats write it: `x · Wᵀ + b`, then a ReLU where
/// another layer follows (a hidden layer) — the last one's softmax is each format's own.
pub(crate) struct DenseLayer {
    pub name: String,
    /// (out, in), row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out: usize,
    pub input: usize,
    pub relu: bool,
}

impl Exported {
    /// `classifier` on the backbone it runs on, or without one the backbone alone with its own
    /// classifier. A classifier trained on another backbone is refused, naming both
    /// ([`Classifier::feature_extractor`]).
    pub fn new(base: Backbone, classifier: Option<Classifier>) -> Result<Self> {
        Ok(match classifier {
            Some(classifier) => Self {
                backbone: classifier.feature_extractor(&base)?,
                labels: classifier.meta.labels,
                head: Some(classifier.head),
            },
            None => Self { labels: base.meta.labels.clone(), backbone: base, head: None },
        })
    }

    /// The classifier's layers in order: the head's (`head.hidden`, `head.output`), or the
    /// backbone's own (`_fc`, `fc`: its name in the checkpoint).
    pub(crate) fn classifier_layers(&self) -> Result<Vec<DenseLayer>> {
        let layer = |name: String, weight: &[usize], values: Vec<f32>, bias: Vec<f32>| -> Result<DenseLayer> {
            let &[out, input] = weight else {
                return Err(invalid!("the classifier's `{name}` has shape {weight:?}, not (out, in)"));
            };
            if values.len() != out * input || bias.len() != out {
                return Err(invalid!(
                    "the classifier's `{name}` does not hold {out} × {input} weights and {out} biases"
                ));
            }
            Ok(DenseLayer { name, weight: values, bias, out, input, relu: false })
        };
        let Some(head) = &self.head else {
            let name = self.backbone.meta.config.classifier();
            let weights = &self.backbone.weights().0;
            let get = |part: &str| {
                weights.get(&format!("{name}.{part}")).ok_or_else(|| invalid!("the backbone has no `{name}.{part}`"))
            };
            let ((dims, values), (_, bias)) = (get("weight")?, get("bias")?);
            return Ok(vec![layer(name.to_string(), dims, values.clone(), bias.clone())?]);
        };
        let tensors: HashMap<String, candle_core::Tensor> = head.tensors().into_iter().collect();
        let mut layers = Vec::new();
        for part in if head.spec.hidden.is_some() { &["hidden", "output"][..] } else { &["output"][..] } {
            let (weight, bias) = (&tensors[&format!("{part}.weight")], &tensors[&format!("{part}.bias")]);
            let values = weight.flatten_all()?.to_vec1::<f32>()?;
            let dense = layer(format!("head.{part}"), weight.dims(), values, bias.to_vec1::<f32>()?)?;
            layers.push(DenseLayer { relu: *part == "hidden", ..dense });
        }
        Ok(layers)
    }
}
