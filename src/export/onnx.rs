//! A model as one ONNX graph (opset 13: what onnxruntime, onnxruntime-web and onnx2tf take), from
//! pixels to class probabilities, written with ONNX's own schema ([`proto`]).
//!
//! The graph is the family's op graph ([`crate::backbone::ops`]) with the backbone's folded f32
//! weights (a backbone file's int8 values dequantized: it answers like `--precision f32`):
//! BatchNorm is already in the convolutions, ReLU6 is `Clip(0, 6)`, a depthwise convolution is a
//! grouped `Conv`, and TensorFlow's 'SAME' padding is written out as explicit, possibly uneven pads
//! (the image's size is fixed, so every pad is known).
//!
//! # Shapes
//! - input `pixels`: float32 (N, 3, S, S), RGB in [0, 1] after the model's resize and centre crop
//!   (S = the crop), N dynamic; the normalisation is inside the graph;
//! - outputs `probabilities` (N, K) and `features` (N, D).
//!
//! With [`OnnxWeights::Int8`] (`--quantize`), the weights the backbone file stores in int8 (rows of at
//! least [`MIN_INT8_ROW`] values; the head's too) are int8 initializers with one scale per output
//! channel, each widened by a `DequantizeLinear` (per axis: opset 13): a file about a quarter the
//! size, computing in f32 what the int8 weights hold.
//!
//! `metadata_props` carry the labels (a JSON array), the resize and crop sizes, the backbone's id and
//! sha256, and Wick's version.

use prost::Message;

use super::{walk_ops, DenseLayer, Exported};
use crate::backbone::fold::FloatWeights;
use crate::backbone::ops::{ConvOp, Op, Padding};
use crate::error::{invalid, Result};
use crate::formats::backbone_file::MIN_INT8_ROW;
use crate::kernels::geometry::same_padding;
use crate::kernels::int8::quantize_per_output_channel;
use crate::kernels::Activation;

/// ONNX's schema as Rust types (`proto/onnx.proto`, compiled by `build.rs`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use proto::tensor_proto::DataType;
use proto::{
    attribute_proto, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The operator set the graph uses.
pub const OPSET: i64 = 13;
/// The IR version that goes with it (ONNX 1.8).
const IR_VERSION: i64 = 7;

/// How the export stores its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnnxWeights {
    /// float32 throughout: it answers like `--precision f32`.
    #[default]
    F32,
    /// Rows of at least [`MIN_INT8_ROW`] weights as int8 with a scale per output channel.
    Int8,
}

/// The model as ONNX bytes.
pub fn to_onnx(model: &Exported, weights: OnnxWeights) -> Result<Vec<u8>> {
    Ok(graph_model(model, weights)?.encode_to_vec())
}

/// The model as ONNX's `ModelProto`.
pub fn graph_model(model: &Exported, weights: OnnxWeights) -> Result<ModelProto> {
    let backbone = &model.backbone;
    let preprocess = &backbone.meta.preprocess;
    let side = preprocess.crop as usize;
    let mut g = Graph::new(backbone.weights(), weights);

    // (x − mean) / std, as x · (1 / std) + (−mean / std) — how Wick's preprocessing computes it.
    let scale: Vec<f32> = preprocess.std.iter().map(|s| 1.0 / s).collect();
    let shift: Vec<f32> = preprocess.mean.iter().zip(&preprocess.std).map(|(m, s)| -m / s).collect();
    let scale = g.constant("normalize.scale", &[1, 3, 1, 1], scale);
    let shift = g.constant("normalize.shift", &[1, 3, 1, 1], shift);
    let scaled = g.node("Mul", &["pixels", &scale], "normalize.scaled", vec![]);
    let image = g.node("Add", &[&scaled, &shift], "normalize", vec![]);

    // Each buffer's node and its spatial size.
    let (last, tapped) = walk_ops(backbone, (image, side), |_, op, slots| {
        match op {
            Op::Conv(conv) => {
                let (input, size) = slots.read(conv.input)?;
                let residual = conv.residual.map(|r| slots.read(r).map(|(name, _)| name)).transpose()?;
                slots.set(conv.output, g.conv(conv, &input, size, residual.as_deref())?);
            }
            &Op::MaxPool { kernel, stride, padding, input, output } => {
                let (x, size) = slots.read(input)?;
                let attributes = vec![
                    ints("kernel_shape", &[kernel, kernel]),
                    ints("strides", &[stride, stride]),
                    ints("pads", &[padding; 4]),
                ];
                let name = g.node("MaxPool", &[&x], &format!("maxpool.{output}.{}", g.nodes.len()), attributes);
                slots.set(output, (name, (size + 2 * padding - kernel) / stride + 1));
            }
        }
        Ok(())
    })?;
    let (last, tapped): (String, Vec<String>) = (last.0, tapped.into_iter().map(|(name, _)| name).collect());
    let pooled = g.node("GlobalAveragePool", &[&last], "pool", vec![]);
    if tapped.is_empty() {
        g.node_named("Flatten", &[&pooled], "features", "features", vec![int("axis", 1)]);
    } else {
        // The last map's pool, then each tapped map's, side by side (Wick's order).
        let mut parts = vec![g.node("Flatten", &[&pooled], "pool.flat", vec![int("axis", 1)])];
        for (i, map) in tapped.iter().enumerate() {
            let pooled = g.node("GlobalAveragePool", &[map], &format!("pool.{i}"), vec![]);
            parts.push(g.node("Flatten", &[&pooled], &format!("pool.{i}.flat"), vec![int("axis", 1)]));
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        g.node_named("Concat", &parts, "features", "features", vec![int("axis", 1)]);
    }

    // The classifier: the trained head (a hidden ReLU layer first, where it has one), or the
    // backbone's own.
    let mut logits = "features".to_string();
    for layer in model.classifier_layers()? {
        logits = g.dense(&layer, &logits);
        if layer.relu {
            logits = g.node("Relu", &[&logits], &format!("{}.relu", layer.name), vec![]);
        }
    }
    g.node_named("Softmax", &[&logits], "softmax", "probabilities", vec![int("axis", 1)]);

    let classes = model.labels.len();
    let graph = GraphProto {
        name: Some(format!("wick {}", backbone.meta.architecture)),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info("pixels", &[Dim::Batch, Dim::Fixed(3), Dim::Fixed(side), Dim::Fixed(side)])],
        output: vec![
            value_info("probabilities", &[Dim::Batch, Dim::Fixed(classes)]),
            value_info("features", &[Dim::Batch, Dim::Fixed(backbone.feature_dim())]),
        ],
        ..Default::default()
    };
    let metadata = [
        ("labels", serde_json::to_string(&model.labels).expect("labels serialise")),
        ("resize_shorter", preprocess.resize_shorter.to_string()),
        ("crop", preprocess.crop.to_string()),
        ("input", "RGB in [0, 1], (N, 3, crop, crop), after resizing the shorter side and a centre crop".into()),
        ("backbone_id", backbone.id.clone()),
        ("backbone_sha256", backbone.sha256.clone()),
        ("wick_version", env!("CARGO_PKG_VERSION").into()),
    ];
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("wick".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!("{classes} classes: {}", backbone.meta.architecture)),
        graph: Some(graph),
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key: Some(key.into()), value: Some(value) })
            .collect(),
        ..Default::default()
    })
}

/// The graph being written: its nodes and initializers, the weights they come from, and how the
/// weights are stored.
struct Graph<'a> {
    weights: &'a FloatWeights,
    storage: OnnxWeights,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl<'a> Graph<'a> {
    fn new(weights: &'a FloatWeights, storage: OnnxWeights) -> Self {
        Self { weights, storage, nodes: Vec::new(), initializers: Vec::new() }
    }

    /// A weight (out channels first) under `name`: float32, or with [`OnnxWeights::Int8`] and rows
    /// long enough, int8 values and per-channel scales widened by a `DequantizeLinear`.
    fn stored(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        let rows = dims.first().copied().unwrap_or(1);
        if self.storage == OnnxWeights::F32 || dims.len() < 2 || values.len() / rows.max(1) < MIN_INT8_ROW {
            return self.constant(name, dims, values);
        }
        let (q, scales) = quantize_per_output_channel(&values, rows);
        let int8 = |name: String, dims: &[usize], bytes: Vec<u8>| TensorProto {
            name: Some(name),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Int8 as i32),
            raw_data: Some(bytes),
            ..Default::default()
        };
        self.initializers.push(int8(format!("{name}.int8"), dims, q.iter().map(|&v| v as u8).collect()));
        self.initializers.push(int8(format!("{name}.zero_point"), &[rows], vec![0; rows]));
        let scale = self.constant(&format!("{name}.scale"), &[rows], scales);
        let inputs = [format!("{name}.int8"), scale, format!("{name}.zero_point")];
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node_named("DequantizeLinear", &inputs, &format!("{name}.dequantize"), name, vec![int("axis", 0)])
    }

    /// Adds a float32 initializer; returns its name.
    fn constant(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        self.initializers.push(TensorProto {
            name: Some(name.into()),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
        name.into()
    }

    /// A weight of the backbone by its checkpoint name, checked against `shape`, as an initializer.
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<String> {
        let (dims, values) = self.weights.0.get(name).ok_or_else(|| invalid!("the backbone has no `{name}`"))?;
        if dims[..] != shape[..] {
            return Err(invalid!("the backbone's `{name}` has shape {dims:?}, the network needs {shape:?}"));
        }
        Ok(self.stored(name, shape, values.clone()))
    }

    /// Adds a node with one output named after the node; returns the output's name.
    fn node(&mut self, op: &str, inputs: &[&str], name: &str, attributes: Vec<AttributeProto>) -> String {
        self.node_named(op, inputs, name, name, attributes)
    }

    fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        name: &str,
        output: &str,
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attributes,
            ..Default::default()
        });
        output.into()
    }

    /// A convolution with its bias, residual and activation; returns its output and size.
    fn conv(&mut self, conv: &ConvOp, input: &str, size: usize, residual: Option<&str>) -> Result<(String, usize)> {
        let [out_c, in_c, k, _] = conv.shape;
        let weight = self.weight(&format!("{}.weight", conv.name), &conv.shape)?;
        let bias = self.weight(&format!("{}.bias", conv.name), &[out_c])?;
        let (out_size, before, after) = match conv.padding {
            Padding::Same => {
                let (out, before) = same_padding(size, k, conv.stride);
                let total = ((out - 1) * conv.stride + k).saturating_sub(size);
                (out, before, total - before)
            }
            Padding::Symmetric => ((size + 2 * (k / 2) - k) / conv.stride + 1, k / 2, k / 2),
        };
        let group = if conv.depthwise { out_c } else { 1 };
        debug_assert!(!conv.depthwise || in_c == 1);
        let attributes = vec![
            ints("kernel_shape", &[k, k]),
            ints("strides", &[conv.stride, conv.stride]),
            ints("pads", &[before, before, after, after]),
            int("group", group as i64),
        ];
        let mut x = self.node("Conv", &[input, &weight, &bias], &conv.name, attributes);
        if let Some(residual) = residual {
            x = self.node("Add", &[&x, residual], &format!("{}.residual", conv.name), vec![]);
        }
        x = match conv.activation {
            Activation::None => x,
            Activation::Relu => self.node("Relu", &[&x], &format!("{}.relu", conv.name), vec![]),
            Activation::Relu6 => {
                let (low, high) = self.clip_bounds();
                self.node("Clip", &[&x, &low, &high], &format!("{}.relu6", conv.name), vec![])
            }
        };
        Ok((x, out_size))
    }

    /// The scalar bounds every ReLU6 shares (opset 13's `Clip` takes them as inputs).
    fn clip_bounds(&mut self) -> (String, String) {
        if !self.initializers.iter().any(|t| t.name.as_deref() == Some("relu6.min")) {
            self.constant("relu6.min", &[], vec![0.0]);
            self.constant("relu6.max", &[], vec![6.0]);
        }
        ("relu6.min".into(), "relu6.max".into())
    }

    /// `x · Wᵀ + b` for a classifier layer.
    fn dense(&mut self, layer: &DenseLayer, x: &str) -> String {
        let name = &layer.name;
        let w = self.stored(&format!("{name}.weight"), &[layer.out, layer.input], layer.weight.clone());
        let b = self.constant(&format!("{name}.bias"), &[layer.out], layer.bias.clone());
        self.node("Gemm", &[x, &w, &b], name, vec![int("transB", 1)])
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: values.iter().map(|&v| v as i64).collect(),
        ..Default::default()
    }
}

enum Dim {
    Batch,
    Fixed(usize),
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Batch => tensor_shape_proto::dimension::Value::DimParam("N".into()),
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
