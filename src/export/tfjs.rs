//! A model as a TensorFlow.js layers model with Teachable Machine's metadata: `model.json` (a Keras
//! functional model that `tf.loadLayersModel` reads), `weights.bin` and `metadata.json` — so that
//! `@teachablemachine/image`'s `tmImage.load(modelURL, metadataURL)`, and what is built on it (ml5,
//! the Scratch and p5 extensions), load a Wick model as they load one of Teachable Machine's.
//!
//! Only layers that TF.js 1.3.1 (what Teachable Machine's page snippet pins) and 4.x both know:
//! `Conv2D`, `DepthwiseConv2D`, `ZeroPadding2D`, `Add`, `Activation` (`relu`, `relu6`),
//! `MaxPooling2D`, `GlobalAveragePooling2D`, `Dense`. TensorFlow's 'SAME' padding is Keras's own
//! `same`; PyTorch's symmetric padding (ResNet) is a `ZeroPadding2D` before a `valid` layer (zeros
//! pad the max pool too: its input has been through a ReLU).
//!
//! # Shapes
//! Input (N, S, S, 3), channels last, as Teachable Machine feeds it: RGB `x / 127 − 1` of the
//! S × S centre square (S = the crop, `imageSize` in the metadata). The first layer, a 1 × 1
//! depthwise convolution, turns that into the family's own normalisation. Output: the class
//! probabilities (N, K).

use std::collections::HashSet;

use serde_json::{json, Value};

use super::{walk_ops, DenseLayer, Exported};
use crate::backbone::ops::{ConvOp, Op, Padding};
use crate::error::{invalid, Result};
use crate::kernels::Activation;
use crate::util::utc_timestamp;

/// The TF.js version Teachable Machine's snippet loads, written into the metadata as its exports do.
pub const TFJS_VERSION: &str = "1.3.1";

/// The three files of the export.
pub struct TfjsFiles {
    pub model_json: String,
    pub weights_bin: Vec<u8>,
    pub metadata_json: String,
}

impl TfjsFiles {
    /// The files' names, in the order they are written.
    pub const NAMES: [&'static str; 3] = ["model.json", "weights.bin", "metadata.json"];

    /// (file name, contents), in the order they are written.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        let [model, weights, metadata] = Self::NAMES;
        [(model, self.model_json.as_bytes()), (weights, &self.weights_bin), (metadata, self.metadata_json.as_bytes())]
    }
}

/// The model as TF.js files; `unix_seconds` stamps the metadata.
pub fn to_tfjs(model: &Exported, unix_seconds: u64) -> Result<TfjsFiles> {
    let backbone = &model.backbone;
    let preprocess = &backbone.meta.preprocess;
    let side = preprocess.crop as usize;
    let mut k = Keras::new(backbone.weights());

    k.layers.push(json!({
        "class_name": "InputLayer",
        "name": "pixels",
        "config": { "batch_input_shape": [null, side, side, 3], "dtype": "float32", "sparse": false, "name": "pixels" },
        "inbound_nodes": [],
    }));
    // Teachable Machine's x / 127 − 1 → the family's (x / 255 − mean) / std, per channel.
    let scale: Vec<f32> = preprocess.std.iter().map(|s| 127.0 / (255.0 * s)).collect();
    let shift: Vec<f32> =
        scale.iter().zip(&preprocess.mean).zip(&preprocess.std).map(|((a, m), s)| a - m / s).collect();
    k.names.extend(["pixels".to_string(), "features".to_string()]);
    let one_by_one = Window { k: 1, stride: 1, padding: "valid", activation: "linear" };
    let image = k.depthwise("normalize", "pixels", one_by_one, &scale, &shift);

    let (last, tapped) = walk_ops(backbone, image, |before, op, slots| {
        match op {
            Op::Conv(conv) => {
                let input = slots.read(conv.input)?;
                let residual = conv.residual.map(|r| slots.read(r)).transpose()?;
                slots.set(conv.output, k.conv(conv, &input, residual.as_deref())?);
            }
            &Op::MaxPool { kernel, stride, padding, input, output } => {
                // Zero padding stands in for −∞ only where the input cannot be negative.
                let after_relu = before
                    .iter()
                    .rev()
                    .find(|o| o.output() == input)
                    .is_some_and(|o| matches!(o, Op::Conv(c) if c.activation != Activation::None));
                if !after_relu {
                    return Err(invalid!("cannot export a max pool whose input may be negative"));
                }
                let x = slots.read(input)?;
                let name = k.name(&format!("maxpool_{}", before.len()));
                let padded = k.zero_pad(&name, &x, padding);
                k.layers.push(json!({
                    "class_name": "MaxPooling2D",
                    "name": name,
                    "config": { "name": name, "trainable": false, "dtype": "float32", "pool_size": [kernel, kernel],
                                "strides": [stride, stride], "padding": "valid", "data_format": "channels_last" },
                    "inbound_nodes": [[[padded, 0, 0, {}]]],
                }));
                slots.set(output, name);
            }
        }
        Ok(())
    })?;
    let pool = |k: &mut Keras, name: &str, map: &str| {
        k.layers.push(json!({
            "class_name": "GlobalAveragePooling2D",
            "name": name,
            "config": { "name": name, "trainable": false, "dtype": "float32", "data_format": "channels_last" },
            "inbound_nodes": [[[map, 0, 0, {}]]],
        }));
    };
    if tapped.is_empty() {
        pool(&mut k, "features", &last);
    } else {
        // The last map's pool, then each tapped map's, side by side (Wick's order).
        let mut parts = vec![k.name("pool_last")];
        pool(&mut k, &parts[0].clone(), &last);
        for (i, map) in tapped.iter().enumerate() {
            let name = k.name(&format!("pool_{i}"));
            pool(&mut k, &name, map);
            parts.push(name);
        }
        let inbound: Vec<_> = parts.iter().map(|p| json!([p, 0, 0, {}])).collect();
        k.layers.push(json!({
            "class_name": "Concatenate",
            "name": "features",
            "config": { "name": "features", "trainable": false, "dtype": "float32", "axis": -1 },
            "inbound_nodes": [inbound],
        }));
    }

    // The classifier's layers; the last one, named `probabilities`, ends in the softmax.
    let layers = model.classifier_layers()?;
    let mut x = "features".to_string();
    for (i, layer) in layers.iter().enumerate() {
        let last = i + 1 == layers.len();
        let name = if last { "probabilities" } else { layer.name.as_str() };
        let activation = if last {
            "softmax"
        } else if layer.relu {
            "relu"
        } else {
            "linear"
        };
        x = k.dense(name, &x, layer, activation);
    }

    let model_json = json!({
        "format": "layers-model",
        "generatedBy": format!("wick {}", env!("CARGO_PKG_VERSION")),
        "convertedBy": null,
        "modelTopology": {
            "class_name": "Model",
            "config": {
                "name": "wick",
                "layers": k.layers,
                "input_layers": [["pixels", 0, 0]],
                "output_layers": [["probabilities", 0, 0]],
            },
            "keras_version": "2.2.4-tf",
            "backend": "tensorflow",
        },
        "weightsManifest": [{ "paths": ["weights.bin"], "weights": k.manifest }],
    });
    let metadata = json!({
        "tfjsVersion": TFJS_VERSION,
        "packageName": "@teachablemachine/image",
        "packageVersion": "0.8.5",
        "modelName": format!("wick {}", backbone.meta.architecture),
        "timeStamp": utc_timestamp(unix_seconds),
        "labels": &model.labels,
        "imageSize": side,
        "userMetadata": {
            "wick": {
                "version": env!("CARGO_PKG_VERSION"),
                "backbone_id": backbone.id,
                "backbone_sha256": backbone.sha256,
                "resize_shorter": preprocess.resize_shorter,
                "crop": preprocess.crop,
            }
        },
    });
    Ok(TfjsFiles { model_json: model_json.to_string(), weights_bin: k.data, metadata_json: metadata.to_string() })
}

/// A convolution's window and what follows it, in Keras's terms.
#[derive(Clone, Copy)]
struct Window<'s> {
    k: usize,
    stride: usize,
    padding: &'s str,
    activation: &'s str,
}

/// The Keras model being written: its layers, and the weights' manifest and bytes.
struct Keras<'a> {
    weights: &'a crate::backbone::fold::FloatWeights,
    layers: Vec<Value>,
    manifest: Vec<Value>,
    data: Vec<u8>,
    names: HashSet<String>,
}

impl<'a> Keras<'a> {
    fn new(weights: &'a crate::backbone::fold::FloatWeights) -> Self {
        Self { weights, layers: Vec::new(), manifest: Vec::new(), data: Vec::new(), names: HashSet::new() }
    }

    /// A layer name from a checkpoint name (`_blocks.3._depthwise_conv` → `blocks_3_depthwise_conv`),
    /// unique in the model.
    fn name(&mut self, wanted: &str) -> String {
        let base: String = wanted
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        let mut name = base.clone();
        let mut n = 1;
        while !self.names.insert(name.clone()) {
            n += 1;
            name = format!("{base}_{n}");
        }
        name
    }

    fn add_weight(&mut self, name: String, shape: &[usize], values: &[f32]) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.manifest.push(json!({ "name": name, "shape": shape, "dtype": "float32" }));
        self.data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }

    fn checkpoint(&self, name: &str) -> Result<&(Vec<usize>, Vec<f32>)> {
        self.weights.0.get(name).ok_or_else(|| invalid!("the backbone has no `{name}`"))
    }

    /// A `ZeroPadding2D` of `pad` on every side before `name`, or `x` itself for none.
    fn zero_pad(&mut self, name: &str, x: &str, pad: usize) -> String {
        if pad == 0 {
            return x.to_string();
        }
        let padded = self.name(&format!("{name}_pad"));
        self.layers.push(json!({
            "class_name": "ZeroPadding2D",
            "name": padded,
            "config": { "name": padded, "trainable": false, "dtype": "float32", "padding": [[pad, pad], [pad, pad]],
                        "data_format": "channels_last" },
            "inbound_nodes": [[[x, 0, 0, {}]]],
        }));
        padded
    }

    /// A depthwise convolution with per-channel `k × k` filters (channel-major in `kernel`: C × k × k)
    /// and a bias.
    fn depthwise(&mut self, wanted: &str, x: &str, window: Window, kernel: &[f32], bias: &[f32]) -> String {
        let Window { k, stride, padding, activation } = window;
        let name = self.name(wanted);
        let c = bias.len();
        // (C, k, k) → Keras's (k, k, C, 1)
        let mut keras = vec![0f32; kernel.len()];
        for ch in 0..c {
            for t in 0..k * k {
                keras[t * c + ch] = kernel[ch * k * k + t];
            }
        }
        self.add_weight(format!("{name}/depthwise_kernel"), &[k, k, c, 1], &keras);
        self.add_weight(format!("{name}/bias"), &[c], bias);
        self.layers.push(json!({
            "class_name": "DepthwiseConv2D",
            "name": name,
            "config": { "name": name, "trainable": false, "dtype": "float32", "kernel_size": [k, k],
                        "strides": [stride, stride], "padding": padding, "data_format": "channels_last",
                        "dilation_rate": [1, 1], "depth_multiplier": 1, "activation": activation, "use_bias": true },
            "inbound_nodes": [[[x, 0, 0, {}]]],
        }));
        name
    }

    /// A convolution of the op graph with its bias, residual and activation; returns its output.
    fn conv(&mut self, conv: &ConvOp, x: &str, residual: Option<&str>) -> Result<String> {
        let [out_c, in_c, k, _] = conv.shape;
        let (dims, kernel) = self.checkpoint(&format!("{}.weight", conv.name))?.clone();
        let (_, bias) = self.checkpoint(&format!("{}.bias", conv.name))?.clone();
        if dims[..] != conv.shape[..] || bias.len() != out_c {
            return Err(invalid!("the backbone's `{}` does not have the shape {:?}", conv.name, conv.shape));
        }
        let activation = match conv.activation {
            Activation::None => "linear",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
        };
        // With a residual, the sum comes before the activation: a linear layer, `Add`, then it.
        let fused = if residual.is_some() { "linear" } else { activation };
        let (input, padding) = match conv.padding {
            Padding::Same => (x.to_string(), "same"),
            Padding::Symmetric => (self.zero_pad(&conv.name, x, k / 2), "valid"),
        };
        let name = if conv.depthwise {
            let window = Window { k, stride: conv.stride, padding, activation: fused };
            self.depthwise(&conv.name, &input, window, &kernel, &bias)
        } else {
            let name = self.name(&conv.name);
            // (out, in, k, k) → Keras's (k, k, in, out)
            let mut keras = vec![0f32; kernel.len()];
            for o in 0..out_c {
                for i in 0..in_c {
                    for t in 0..k * k {
                        keras[(t * in_c + i) * out_c + o] = kernel[(o * in_c + i) * k * k + t];
                    }
                }
            }
            self.add_weight(format!("{name}/kernel"), &[k, k, in_c, out_c], &keras);
            self.add_weight(format!("{name}/bias"), &[out_c], &bias);
            self.layers.push(json!({
                "class_name": "Conv2D",
                "name": name,
                "config": { "name": name, "trainable": false, "dtype": "float32", "filters": out_c,
                            "kernel_size": [k, k], "strides": [conv.stride, conv.stride], "padding": padding,
                            "data_format": "channels_last", "dilation_rate": [1, 1], "activation": fused,
                            "use_bias": true },
                "inbound_nodes": [[[input, 0, 0, {}]]],
            }));
            name
        };
        let Some(residual) = residual else { return Ok(name) };
        let sum = self.name(&format!("{}_add", conv.name));
        self.layers.push(json!({
            "class_name": "Add",
            "name": sum,
            "config": { "name": sum, "trainable": false, "dtype": "float32" },
            "inbound_nodes": [[[name, 0, 0, {}], [residual, 0, 0, {}]]],
        }));
        if activation == "linear" {
            return Ok(sum);
        }
        let out = self.name(&format!("{}_{activation}", conv.name));
        self.layers.push(json!({
            "class_name": "Activation",
            "name": out,
            "config": { "name": out, "trainable": false, "dtype": "float32", "activation": activation },
            "inbound_nodes": [[[sum, 0, 0, {}]]],
        }));
        Ok(out)
    }

    /// `Dense` for a classifier layer (Keras's kernel is (in, out)).
    fn dense(&mut self, wanted: &str, x: &str, layer: &DenseLayer, activation: &str) -> String {
        let name = self.name(wanted);
        let (out, input) = (layer.out, layer.input);
        let mut transposed = vec![0f32; out * input];
        for (o, row) in layer.weight.chunks_exact(input).enumerate() {
            for (i, &w) in row.iter().enumerate() {
                transposed[i * out + o] = w;
            }
        }
        self.add_weight(format!("{name}/kernel"), &[input, out], &transposed);
        self.add_weight(format!("{name}/bias"), &[out], &layer.bias);
        self.layers.push(json!({
            "class_name": "Dense",
            "name": name,
            "config": { "name": name, "trainable": false, "dtype": "float32", "units": out, "activation": activation,
                        "use_bias": true },
            "inbound_nodes": [[[x, 0, 0, {}]]],
        }));
        name
    }
}
