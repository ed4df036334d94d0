//! Small, valid files of every kind Wick reads, built in memory: the fuzzing harness mutates them and
//! the hostile-file tests bend one field at a time.

use candle_core::{Device, Tensor};
use safetensors::Dtype;
use wick::backbone::efficientnet_lite::{Config, StageConfig};
use wick::backbone::fold::FloatWeights;
use wick::backbone::NetworkConfig;
use wick::data::preprocess::Preprocess;
use wick::formats::backbone_file::{self, BackboneMeta, Source};
use wick::formats::classifier::ClassifierMeta;
use wick::model::features::{CacheHeader, FeatureCache, View};
use wick::model::head::{Head, Trained};
use wick::model::Backbone;
use wick::model::Classifier;
use wick::train::config::{HeadSpec, TrainConfig};
use wick::train::report::Stop;
use wick::util::rng::Rng;

/// A two-stage EfficientNet-Lite small enough to run in microseconds.
pub fn tiny_config() -> Config {
    let stage = |kernel, stride, expand_ratio, out_channels| StageConfig {
        kernel,
        stride,
        expand_ratio,
        out_channels,
        repeats: 1,
    };
    Config {
        stem_channels: 8,
        head_channels: 40,
        stages: vec![stage(3, 1, 1, 8), stage(5, 2, 2, 12)],
        num_classes: 3,
        batch_norm_eps: 1e-3,
    }
}

pub fn tiny_meta() -> BackboneMeta {
    BackboneMeta {
        architecture: "efficientnet-lite0".into(),
        config: NetworkConfig::EfficientNetLite(tiny_config()),
        preprocess: Preprocess { resize_shorter: 36, crop: 32, mean: [0.5; 3], std: [0.5; 3] },
        labels: vec!["red".into(), "green".into(), "blue".into()],
        source: Source {
            package: "test".into(),
            file: "seeds.rs".into(),
            sha256: "00".repeat(32),
            license: "MIT".into(),
        },
        quantization: "test".into(),
    }
}

/// The tiny network's checkpoint-named, unfolded tensors (convolutions, BatchNorms, classifier).
pub fn tiny_checkpoint_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let cfg = tiny_config();
    let mut rng = Rng::new(7);
    let mut random = |n: usize, scale: f32| (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * scale).collect::<Vec<f32>>();
    let mut out = Vec::new();
    for pair in cfg.conv_bn_pairs() {
        let n = pair.shape.iter().product();
        out.push((format!("{}.weight", pair.conv), pair.shape.to_vec(), random(n, 0.5)));
        let c = pair.shape[0];
        out.push((format!("{}.weight", pair.bn), vec![c], random(c, 1.0)));
        out.push((format!("{}.bias", pair.bn), vec![c], random(c, 0.1)));
        out.push((format!("{}.running_mean", pair.bn), vec![c], random(c, 0.1)));
        out.push((format!("{}.running_var", pair.bn), vec![c], vec![1.0; c]));
    }
    out.push((
        "_fc.weight".into(),
        vec![cfg.num_classes, cfg.head_channels],
        random(cfg.num_classes * cfg.head_channels, 0.3),
    ));
    out.push(("_fc.bias".into(), vec![cfg.num_classes], random(cfg.num_classes, 0.1)));
    out
}

/// The tiny network as a Wick backbone file.
pub fn tiny_backbone_file() -> Vec<u8> {
    let named = tiny_checkpoint_tensors();
    let lookup = |name: &str| {
        let (_, shape, values) = named.iter().find(|(n, _, _)| n == name).expect("tiny tensor");
        Ok((shape.clone(), values.clone()))
    };
    let weights: FloatWeights =
        wick::backbone::fold::fold_named(lookup, &NetworkConfig::EfficientNetLite(tiny_config())).expect("folds");
    backbone_file::write(&weights, &tiny_meta()).expect("writes")
}

pub fn tiny_backbone() -> Backbone {
    Backbone::from_backbone_file(&tiny_backbone_file(), &Device::Cpu).expect("tiny backbone loads")
}

/// A `.wick` for the tiny backbone: a linear head over its 40 features, three classes.
pub fn tiny_wick(backbone: &Backbone) -> Vec<u8> {
    let spec = HeadSpec { input_dim: backbone.feature_dim(), hidden: None, classes: 3 };
    let head = Head::init(spec, &mut Rng::new(1), &Device::Cpu).unwrap();
    let trained = Trained { head, history: Vec::new(), best_epoch: 0, stop: Stop::Completed };
    let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    Classifier::from_training(trained, labels, backbone, TrainConfig::default(), None, 0).to_bytes().unwrap()
}

pub fn wick_meta(bytes: &[u8]) -> ClassifierMeta {
    Classifier::from_bytes(bytes, &Device::Cpu).unwrap().meta
}

/// A feature cache for `header` holding `records` vectors.
pub fn feature_cache(header: &CacheHeader, records: usize) -> Vec<u8> {
    let cache = FeatureCache::new(header.clone());
    let mut bytes = cache.encode_preamble();
    for r in 0..records {
        let features: Vec<f32> = (0..header.dim).map(|i| (r * header.dim + i) as f32 * 0.01).collect();
        bytes.extend(FeatureCache::encode_record(&[r as u8; 32], View::AsIs, &features));
    }
    bytes
}

/// A safetensors file: `(name, dtype, shape, bytes)` tensors and `__metadata__` entries.
pub fn safetensors_file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], metadata: &[(&str, String)]) -> Vec<u8> {
    let views: Vec<(&str, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            (*name, safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap())
        })
        .collect();
    let metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

/// A safetensors file's header JSON and its data section.
pub fn split_safetensors(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

/// Reassembles a safetensors file from a (possibly edited) header and data section.
pub fn join_safetensors(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut json = serde_json::to_vec(header).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out.extend(data);
    out
}

/// Applies `edit` to the JSON in a Wick file's `__metadata__.meta`.
pub fn edit_meta(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (mut header, data) = split_safetensors(bytes);
    let meta = header["__metadata__"]["meta"].as_str().unwrap().to_string();
    let mut meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    edit(&mut meta);
    header["__metadata__"]["meta"] = serde_json::Value::String(meta.to_string());
    join_safetensors(&header, &data)
}

pub fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Images of three colours for running a backbone.
pub fn colour_image(seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(40, 36, |x, y| image::Rgb([seed.wrapping_mul(40), (x * 6) as u8, (y * 7) as u8]))
}

#[allow(dead_code)]
pub fn tensor(values: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// The tiny network's checkpoint as pretrained weights, recorded as coming from a file with `sha256`.
pub fn tiny_pretrained(sha256: &str) -> wick::model::Pretrained {
    let bytes = super::pickle::CheckpointSpec::contiguous(&tiny_checkpoint_tensors()).to_bytes();
    let meta = tiny_meta();
    wick::model::Pretrained {
        state: wick::checkpoint::read_state_dict(&bytes).unwrap(),
        architecture: meta.architecture,
        config: meta.config,
        preprocess: meta.preprocess,
        source: Source { sha256: sha256.into(), ..meta.source },
    }
}

/// A torchvision ResNet state dict: He-uniform convolutions, BatchNorm scale, shift and running
/// statistics drawn away from their defaults, a small classifier; `num_batches_tracked` as torch has it.
pub fn random_resnet(variant: &str, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (config, _) = wick::backbone::resnet::Config::variant(variant).unwrap();
    let mut rng = Rng::new(seed);
    let mut uniform = |n: usize, lo: f32, hi: f32| (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect::<Vec<f32>>();
    let mut out = Vec::new();
    for pair in config.conv_bn_pairs() {
        let fan_in = pair.shape[1] * pair.shape[2] * pair.shape[3];
        let bound = (6.0 / fan_in as f32).sqrt();
        out.push((
            format!("{}.weight", pair.conv),
            pair.shape.to_vec(),
            uniform(pair.shape.iter().product(), -bound, bound),
        ));
        let c = pair.shape[0];
        out.push((format!("{}.weight", pair.bn), vec![c], uniform(c, 0.5, 1.5)));
        out.push((format!("{}.bias", pair.bn), vec![c], uniform(c, -0.2, 0.2)));
        out.push((format!("{}.running_mean", pair.bn), vec![c], uniform(c, -0.2, 0.2)));
        out.push((format!("{}.running_var", pair.bn), vec![c], uniform(c, 0.5, 2.0)));
    }
    let dim = config.feature_dim();
    let bound = 1.0 / (dim as f32).sqrt();
    out.push(("fc.weight".into(), vec![1000, dim], uniform(1000 * dim, -bound, bound)));
    out.push(("fc.bias".into(), vec![1000], uniform(1000, -bound, bound)));
    out
}

/// `png` (a PNG file) with `chunks` (type, data) inserted after its header chunk, each with its CRC.
pub fn png_with_chunks(png: &[u8], chunks: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
    let ihdr_end = 8 + 8 + 13 + 4; // signature, IHDR length and type, its 13 bytes, its CRC
    let mut out = png[..ihdr_end].to_vec();
    for (kind, data) in chunks {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    out.extend(&png[ihdr_end..]);
    out
}

/// An iCCP chunk's data whose colour profile inflates to `inflated` zero bytes (a zlib bomb: about
/// a thousandth of that on disk).
pub fn iccp_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut data = b"bomb\0\0".to_vec(); // profile name, its terminator, compression method 0
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..inflated / zeros.len() {
        zlib.write_all(&zeros).unwrap();
    }
    data.extend(zlib.finish().unwrap());
    data
}

/// A small PNG of `image`.
pub fn png(image: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}
