//! Structure-aware fuzzing of every file Wick reads: PyTorch state dicts (the pickle reader in both
//! `torch.save` containers, and safetensors), the backbone
//! file, the `.wick`, the project file, the fine-tuning checkpoint, the feature cache and the CIFAR-10
//! batches. Each target starts from valid seeds (`tests/common/seeds.rs`) and mutates them the way a
//! lying file would: JSON metadata fields set to extremes, tensor dtypes, shapes and offsets bent,
//! pickle sizes, strides, offsets and element counts replaced, memo and nesting gadgets added — then
//! plain byte flips, cuts and splices on top. A reader may refuse an input; it must never panic or
//! allocate without bound (this binary's allocator refuses anything over [`MEMORY_LIMIT`]).
//!
//! `WICK_FUZZ_ITERS` sets the cases per target (`make test`: 300; `make fuzz`: 20 000) and
//! `WICK_FUZZ_SEED` the generator's seed. A case that panics is saved under
//! `target/fuzz-crashers/`; copy it into `tests/fuzz/regressions/<target>/` and it is replayed by
//! every run from then on. Before each case the input is written to
//! `target/fuzz-current/<target>.bin`, so a case that aborts the process is not lost either.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use candle_core::Device;
use safetensors::Dtype;
use serde_json::{json, Value};
use wick::data::cifar10::{Cifar10, CLASSES, PIXELS};
use wick::formats::project::Project;
use wick::model::features::{CacheHeader, FeatureCache};
use wick::model::Backbone;
use wick::model::Classifier;
use wick::train::config::FinetuneConfig;
use wick::train::finetune::{fingerprint, Finetuner};
use wick::util::rng::Rng;

use common::alloc::Counting;
use common::pickle::{CheckpointSpec, Gadget};
use common::seeds;

/// No single allocation, and no total, above this: a reader sized by a lying field fails the case.
const MEMORY_LIMIT: usize = 3 << 30;

#[global_allocator]
static ALLOCATOR: Counting = Counting { limit: MEMORY_LIMIT };

fn iterations() -> usize {
    std::env::var("WICK_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Runs `run` on the regression inputs of `target`, then on `iterations()` mutants of its seeds.
/// `run` says whether the reader accepted the input (a harness whose mutants are all refused at the
/// first check tests little: the count is printed).
fn fuzz(target: &str, seeds: Vec<Vec<u8>>, mutate: impl Fn(&[u8], &mut Rng) -> Vec<u8>, run: impl Fn(&[u8]) -> bool) {
    let regressions = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions").join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&regressions)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.path().display().to_string(), std::fs::read(e.path()).unwrap()))
        .collect();
    inputs.sort();
    inputs.extend(seeds.iter().enumerate().map(|(i, s)| (format!("seed {i}"), s.clone())));
    let seed = std::env::var("WICK_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0u64);
    let mut rng = Rng::new(seed ^ target.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)));
    let current = target_dir().join("fuzz-current");
    std::fs::create_dir_all(&current).unwrap();
    let current = current.join(format!("{target}.bin"));
    let cases = inputs.len() + iterations();
    let mut accepted = 0;
    for case in 0..cases {
        let (name, input) = if case < inputs.len() {
            inputs[case].clone()
        } else {
            let parent = &seeds[rng.below(seeds.len())];
            (format!("mutant {case}"), mutate(parent, &mut rng))
        };
        std::fs::write(&current, &input).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&input)));
        accepted += usize::from(outcome.as_ref().is_ok_and(|&ok| ok));
        if outcome.is_err() {
            let crashers = target_dir().join("fuzz-crashers");
            std::fs::create_dir_all(&crashers).unwrap();
            let path = crashers.join(format!("{target}-{case}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!("{target}: {name} panicked; the input is saved as {}", path.display());
        }
    }
    eprintln!("{target}: {cases} cases, {accepted} accepted, no panic");
}

// ---- mutations -------------------------------------------------------------------------------

const INTERESTING: [i64; 14] =
    [0, 1, -1, 2, 7, 255, 65_536, 1 << 31, (1 << 32) + 1, 1 << 40, 1_000_000_000_000, i64::MAX, i64::MIN, 20_000];

fn interesting(rng: &mut Rng) -> i64 {
    INTERESTING[rng.below(INTERESTING.len())]
}

/// Byte-level damage: flips, interesting bytes, cuts, duplicated or deleted runs.
fn mutate_bytes(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            out.push(rng.next_u64() as u8);
            continue;
        }
        let at = rng.below(out.len());
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = [0, 0xff, 0x7f, 0x80, b'(', b'.', b']', b'h'][rng.below(8)],
            2 => out.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let run = out[at..end].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, run);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
            _ => {
                let bytes = interesting(rng).to_le_bytes();
                let n = (out.len() - at).min([1, 2, 4, 8][rng.below(4)]);
                out[at..at + n].copy_from_slice(&bytes[..n]);
            }
        }
    }
    out
}

/// Replaces one node of a JSON value with an extreme of some kind.
fn mutate_json(value: &mut Value, rng: &mut Rng) {
    let mut nodes = 0usize;
    count_nodes(value, &mut nodes);
    let target = rng.below(nodes.max(1));
    let mut seen = 0usize;
    replace_node(value, target, &mut seen, rng);
}

fn count_nodes(value: &Value, n: &mut usize) {
    *n += 1;
    match value {
        Value::Array(items) => items.iter().for_each(|v| count_nodes(v, n)),
        Value::Object(map) => map.values().for_each(|v| count_nodes(v, n)),
        _ => {}
    }
}

fn replace_node(value: &mut Value, target: usize, seen: &mut usize, rng: &mut Rng) {
    if *seen == target {
        *value = extreme(value, rng);
        *seen += 1;
        return;
    }
    *seen += 1;
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| replace_node(v, target, seen, rng)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_node(v, target, seen, rng)),
        _ => {}
    }
}

fn extreme(old: &Value, rng: &mut Rng) -> Value {
    match rng.below(12) {
        0..=3 => json!(interesting(rng)),
        4 => json!([1e308, -1e308, 0.0, 1e-45][rng.below(4)]),
        5 => json!(["", "../../escaped", "/tmp/absolute", "a\u{0}b", "x".repeat(5000).as_str()][rng.below(5)]),
        6 => json!(null),
        7 => json!([]),
        8 => json!({}),
        9 => match old {
            Value::Array(items) if !items.is_empty() => {
                let mut items = items.clone();
                if rng.below(2) == 0 {
                    items.pop();
                } else {
                    items.push(items[0].clone());
                }
                Value::Array(items)
            }
            _ => json!(interesting(rng)),
        },
        10 => json!(-(rng.below(5) as i64)),
        _ => json!(rng.below(3)),
    }
}

/// A safetensors file with its header bent: the metadata JSON, or a tensor's dtype, shape or
/// offsets; then, sometimes, byte damage on top.
fn mutate_safetensors(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let n = input.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize);
    let parsed =
        n.and_then(|n| Some((serde_json::from_slice::<Value>(input.get(8..8usize.checked_add(n)?)?).ok()?, n)));
    let Some((mut header, n)) = parsed else { return mutate_bytes(input, rng) };
    let data = input[8 + n..].to_vec();
    let names: Vec<String> = header.as_object().unwrap().keys().cloned().collect();
    let name = &names[rng.below(names.len())];
    if name == "__metadata__" {
        let fields = header[name].as_object_mut().unwrap();
        let keys: Vec<String> = fields.keys().cloned().collect();
        let key = &keys[rng.below(keys.len())];
        if let Some(mut meta) = fields[key].as_str().and_then(|m| serde_json::from_str::<Value>(m).ok()) {
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut meta, rng);
            }
            fields[key] = Value::String(meta.to_string());
        } else {
            fields[key] = extreme(&fields[key], rng);
        }
    } else {
        let tensor = &mut header[name];
        match rng.below(4) {
            0 => tensor["dtype"] = json!(["F32", "F16", "I8", "U8", "BF16", "I64", "F64", "BOOL"][rng.below(8)]),
            1 => mutate_json(&mut tensor["shape"], rng),
            2 => mutate_json(&mut tensor["data_offsets"], rng),
            _ => {
                // A consistent lie: a new shape with offsets that fit it.
                let dims: Vec<usize> = (0..rng.below(4)).map(|_| [0, 1, 2, 3, 5, 16, 1000][rng.below(7)]).collect();
                tensor["shape"] = json!(dims);
            }
        }
    }
    let out = seeds::join_safetensors(&header, &data);
    if rng.below(4) == 0 {
        mutate_bytes(&out, rng)
    } else {
        out
    }
}

// ---- targets ---------------------------------------------------------------------------------

#[test]
fn pickle_reader_and_torch_checkpoints() {
    let tensors = seeds::tiny_checkpoint_tensors();
    let valid = CheckpointSpec::contiguous(&tensors);
    let zip_fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-zip.pth")).unwrap();
    let as_safetensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(n, shape, values)| (n.clone(), shape.clone(), seeds::f32_le(values))).collect();
    let as_safetensors = seeds::safetensors_file(
        &as_safetensors.iter().map(|(n, s, b)| (n.as_str(), Dtype::F32, s.clone(), b.clone())).collect::<Vec<_>>(),
        &[],
    );
    let seed_files = vec![valid.to_bytes(), valid.to_zip(), zip_fixture, as_safetensors];
    let cfg = wick::backbone::NetworkConfig::EfficientNetLite(seeds::tiny_config());
    fuzz(
        "pth",
        seed_files,
        |input, rng| {
            if rng.below(3) == 0 {
                return mutate_bytes(input, rng);
            }
            // Structure-aware: bend the description, then write it.
            let mut spec = valid.clone();
            for _ in 0..1 + rng.below(3) {
                let t = rng.below(spec.tensors.len());
                let tensor = &mut spec.tensors[t];
                match rng.below(9) {
                    0 => tensor.size = (0..rng.below(5)).map(|_| interesting(rng)).collect(),
                    1 if !tensor.size.is_empty() => {
                        let d = rng.below(tensor.size.len());
                        tensor.size[d] = interesting(rng);
                    }
                    2 if !tensor.stride.is_empty() => {
                        let d = rng.below(tensor.stride.len());
                        tensor.stride[d] = interesting(rng);
                    }
                    3 => tensor.offset = interesting(rng),
                    4 => tensor.numel = interesting(rng),
                    5 => {
                        tensor.storage_type =
                            ["LongStorage", "HalfStorage", "EvilStorage", "ByteStorage"][rng.below(4)].into()
                    }
                    6 => tensor.key = spec.storages[rng.below(spec.storages.len())].0.clone(),
                    7 => {
                        let s = rng.below(spec.storages.len());
                        spec.storages[s].1 = interesting(rng) as u64;
                    }
                    _ => {
                        spec.gadget = Some(if rng.below(2) == 0 {
                            Gadget::MemoBomb { rounds: 8 + rng.below(56) }
                        } else {
                            Gadget::Nesting { depth: 1 + rng.below(200_000) }
                        })
                    }
                }
            }
            // Either container: the same lies in the legacy file or in the zip archive.
            if rng.below(2) == 0 {
                spec.to_bytes()
            } else {
                spec.to_zip()
            }
        },
        |bytes| {
            let Ok(state) = wick::checkpoint::read_state_dict(bytes) else { return false };
            for (name, _) in &state.tensors {
                let _ = state.f32_contiguous(name);
            }
            wick::backbone::fold::fold_batch_norms(&state, &cfg).is_ok()
        },
    );
}

#[test]
fn backbone_files() {
    let image = seeds::colour_image(1);
    fuzz("backbone", vec![seeds::tiny_backbone_file()], mutate_safetensors, |bytes| {
        let Ok(backbone) = Backbone::from_backbone_file(bytes, &Device::Cpu) else { return false };
        backbone.top_k(std::slice::from_ref(&image), 3).is_ok()
    });
}

#[test]
fn wick_models() {
    let backbone = seeds::tiny_backbone();
    let features = seeds::tensor(vec![0.5; 2 * backbone.feature_dim()], &[2, backbone.feature_dim()]);
    let image = seeds::colour_image(2);
    fuzz("wick", vec![seeds::tiny_wick(&backbone)], mutate_safetensors, |bytes| {
        let Ok(classifier) = Classifier::from_bytes(bytes, &Device::Cpu) else { return false };
        let _ = classifier.probabilities(&features);
        let _ = classifier.meta.validation.as_ref().map(|m| m.table());
        let Ok(extractor) = classifier.feature_extractor(&backbone) else { return false };
        extractor.features(&extractor.input_tensor(std::slice::from_ref(&image)).unwrap()).is_ok()
    });
}

#[test]
fn project_files() {
    let dim = 4;
    let meta = json!({
        "backbone": {"id": "b", "architecture": "efficientnet-lite0", "sha256": "ab".repeat(32)},
        "classes": [{"name": "cat", "samples": [{"name": "1.jpg", "thumbnail_bytes": 3}]},
                    {"name": "dog", "samples": [{"name": "webcam", "thumbnail_bytes": 2}]}],
        "settings": {"epochs": 5, "trained_on": [0, 1], "report": {
            "history": [{"epoch": 1, "train_loss": 0.5, "train_accuracy": 1.0, "val_loss": null, "val_accuracy": null}],
            "best_epoch": 1, "stop": {"kind": "completed"}, "train_count": 1,
            "validation": {"images": 1, "accuracy": 0.0, "macro_f1": 0.0,
                "classes": [{"label": "cat", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
                            {"label": "dog", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}],
                "confusion": [[0, 1], [0, 0]],
                "misclassified": [{"name": "1", "truth": "cat", "predicted": "dog", "confidence": 0.9}]}}}
    });
    let features = seeds::f32_le(&[0.1; 8]);
    let file = seeds::safetensors_file(
        &[
            ("features", Dtype::F32, vec![2, dim], features),
            ("thumbnails", Dtype::U8, vec![5], vec![1, 2, 3, 4, 5]),
            ("model", Dtype::U8, vec![3], b"abc".to_vec()),
        ],
        &[("format", "wick-project".into()), ("format_version", "1".into()), ("meta", meta.to_string())],
    );
    Project::from_bytes(&file, dim).expect("the seed project is valid");
    // A project whose samples keep copies and whose settings train the backbone's layers.
    let mut deeper = meta.clone();
    deeper["classes"][0]["samples"][0]["source_bytes"] = 2.into();
    deeper["classes"][1]["samples"][0]["source_bytes"] = 1.into();
    deeper["settings"]["train_layers"] = 2.into();
    deeper["settings"]["layer_epochs"] = 10.into();
    deeper["settings"]["augment"] = true.into();
    let with_copies = seeds::safetensors_file(
        &[
            ("features", Dtype::F32, vec![2, dim], seeds::f32_le(&[0.1; 8])),
            ("thumbnails", Dtype::U8, vec![5], vec![1, 2, 3, 4, 5]),
            ("sources", Dtype::U8, vec![3], vec![7, 8, 9]),
            ("model", Dtype::U8, vec![3], b"abc".to_vec()),
        ],
        &[("format", "wick-project".into()), ("format_version", "1".into()), ("meta", deeper.to_string())],
    );
    Project::from_bytes(&with_copies, dim).expect("the seed project with copies is valid");
    fuzz("project", vec![file, with_copies], mutate_safetensors, |bytes| Project::from_bytes(bytes, dim).is_ok());
}

#[test]
fn finetuning_checkpoints() {
    // The checkpoint's metadata is what a lying file bends; its tensors are checked by shape and type
    // against the network (the tiny one of `seeds`; the seed carries one small tensor).
    let mut train = Cifar10::default();
    for i in 0..4u8 {
        train.labels.push(i);
        train.pixels.extend(std::iter::repeat_n(i * 50, PIXELS));
    }
    let config = FinetuneConfig { epochs: 2, batch_size: 2, warmup_epochs: 0, ..FinetuneConfig::default() };
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let meta = json!({
        "config": config, "classes": classes, "source_sha256": "cd".repeat(32),
        "data_fingerprint": fingerprint(&train), "epochs_done": 1, "optimizer_steps": 2,
        "history": [{"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.1, "val_loss": 2.0, "val_accuracy": 0.1}],
    });
    let file = seeds::safetensors_file(
        &[("head.output.bias", Dtype::F32, vec![10], seeds::f32_le(&[0.0; 10]))],
        &[("format", "wick-finetune-checkpoint".into()), ("format_version", "1".into()), ("meta", meta.to_string())],
    );
    let pretrained = seeds::tiny_pretrained(&"cd".repeat(32));
    fuzz("checkpoint", vec![file], mutate_safetensors, |bytes| {
        // The seed lacks the network's tensors: how far a case got is told by the error.
        match Finetuner::resume(bytes, &pretrained, &classes, &train, config.clone(), &Device::Cpu) {
            Ok(_) => true,
            Err(e) => e.to_string().contains("it has no `model."),
        }
    });
}

#[test]
fn feature_caches() {
    let backbone = seeds::tiny_backbone();
    let header = CacheHeader::of(&backbone);
    let file = seeds::feature_cache(&header, 3);
    fuzz(
        "feature-cache",
        vec![file],
        |input, rng| {
            if rng.below(2) == 0 {
                return mutate_bytes(input, rng);
            }
            // The JSON header bent, its length field kept true.
            let n = u32::from_le_bytes(input[12..16].try_into().unwrap()) as usize;
            let mut json: Value = serde_json::from_slice(&input[16..16 + n]).unwrap();
            mutate_json(&mut json, rng);
            let json = serde_json::to_vec(&json).unwrap();
            let mut out = input[..12].to_vec();
            out.extend((json.len() as u32).to_le_bytes());
            out.extend(json);
            out.extend(&input[16 + n..]);
            out
        },
        |bytes| FeatureCache::decode(bytes, &header).is_ok(),
    );
}

#[test]
fn cifar10_batches() {
    let mut set = Cifar10::default();
    for i in 0..3u8 {
        set.labels.push(i);
        set.pixels.extend((0..PIXELS).map(|p| (p as u8).wrapping_add(i)));
    }
    fuzz("cifar10", vec![set.encode()], mutate_bytes, |bytes| {
        let Ok(set) = Cifar10::parse(bytes, "batch") else { return false };
        set.image(set.len() - 1).width() == 32
    });
}

/// Image seeds with what decoders read besides the pixels: a PNG with a (small) colour profile,
/// EXIF and text; a JPEG with EXIF; a two-frame GIF; a WebP with an EXIF chunk (not read: see
/// `decode_image`); a BMP.
fn image_seeds() -> Vec<Vec<u8>> {
    let picture = seeds::colour_image(4);
    let encode = |format: image::ImageFormat| {
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(picture.clone()).write_to(&mut std::io::Cursor::new(&mut out), format).unwrap();
        out
    };
    let exif = b"MM\0\x2A\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
    let png = seeds::png_with_chunks(
        &seeds::png(&picture),
        &[(*b"iCCP", seeds::iccp_bomb(1 << 20)), (*b"eXIf", exif.clone()), (*b"tEXt", b"Comment\0hello".to_vec())],
    );
    let jpeg = encode(image::ImageFormat::Jpeg);
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend(((2 + 6 + exif.len()) as u16).to_be_bytes());
    app1.extend(b"Exif\0\0");
    app1.extend(&exif);
    let jpeg = [&jpeg[..2], &app1, &jpeg[2..]].concat();
    let mut gif = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut gif);
        for shade in [10u8, 200] {
            let frame = image::RgbaImage::from_pixel(24, 20, image::Rgba([shade, 50, 90, 255]));
            encoder.encode_frame(image::Frame::new(frame)).unwrap();
        }
    }
    // A WebP with its EXIF in an extended (VP8X) container: RIFF, VP8X, EXIF, then the image data.
    let lossless = encode(image::ImageFormat::WebP);
    let image_chunk = &lossless[12..];
    let (w, h) = picture.dimensions();
    let mut vp8x = b"VP8X".to_vec();
    vp8x.extend(10u32.to_le_bytes());
    vp8x.push(0x08); // EXIF present
    vp8x.extend([0, 0, 0]);
    vp8x.extend(&(w - 1).to_le_bytes()[..3]);
    vp8x.extend(&(h - 1).to_le_bytes()[..3]);
    let mut exif_chunk = b"EXIF".to_vec();
    exif_chunk.extend((exif.len() as u32).to_le_bytes());
    exif_chunk.extend(&exif);
    let body = [b"WEBP".as_slice(), &vp8x, &exif_chunk, image_chunk].concat();
    let webp = [b"RIFF".as_slice(), &(body.len() as u32).to_le_bytes(), &body].concat();
    vec![png, jpeg, gif, webp, encode(image::ImageFormat::Bmp)]
}

/// Every decoder, on lying images: no panic, and — the decode budget's promise — no more memory
/// than [`decoded_bytes`] says the file takes (what the waves of every multi-image path count).
#[test]
fn images() {
    use wick::data::preprocess::{decode_image, decoded_bytes, ANCILLARY_BYTES};
    for seed in image_seeds() {
        assert!(decode_image(&seed).is_ok(), "every seed decodes");
    }
    let worst = std::sync::atomic::AtomicUsize::new(0);
    fuzz("images", image_seeds(), mutate_bytes, |bytes| {
        Counting::reset_thread_peak();
        let decoded = decode_image(bytes);
        let peak = Counting::thread_peak();
        // A file whose header cannot be read costs what reading it may take (twice ANCILLARY_BYTES).
        let allowed = decoded_bytes(bytes).max(2 * ANCILLARY_BYTES) as usize + (1 << 20);
        worst.fetch_max(peak * 100 / allowed, std::sync::atomic::Ordering::Relaxed);
        assert!(peak <= allowed, "decoding took {peak} bytes, over the {allowed} its size allows");
        decoded.is_ok()
    });
    eprintln!("images: the most any case took was {}% of what its decoded size allows", worst.into_inner());
}

/// Writes the lying files found by hand (each also has its own test, with its message, in
/// `tests/hostile.rs`) into the regression corpus: `cargo test --release --test fuzz -- --ignored`.
#[test]
#[ignore = "writes tests/fuzz/regressions"]
fn write_hand_found_crashers() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions");
    let save = |target: &str, name: &str, bytes: Vec<u8>| {
        std::fs::create_dir_all(dir.join(target)).unwrap();
        std::fs::write(dir.join(target).join(name), bytes).unwrap();
    };
    let pth = |edit: &dyn Fn(&mut CheckpointSpec)| {
        let mut spec = CheckpointSpec::contiguous(&seeds::tiny_checkpoint_tensors());
        edit(&mut spec);
        spec.to_bytes()
    };
    save("pth", "stem-0-dim.pth", pth(&|s| (s.tensors[0].size, s.tensors[0].stride) = (vec![], vec![])));
    save("pth", "stem-0-channels.pth", pth(&|s| s.tensors[0].size[0] = 0));
    save(
        "pth",
        "stride-0-2e62.pth",
        pth(&|s| (s.tensors[0].size, s.tensors[0].stride) = (vec![1 << 31, 1 << 31], vec![0, 0])),
    );
    save("pth", "stride-wraps.pth", pth(&|s| s.tensors[0].stride[0] = i64::MAX / 2));
    save("pth", "memo-bomb.pth", pth(&|s| s.gadget = Some(Gadget::MemoBomb { rounds: 64 })));
    let backbone = seeds::tiny_backbone_file();
    let edit = |bytes: &[u8], path: &[&str], value: Value| {
        seeds::edit_meta(bytes, |m| {
            let mut at = m;
            for key in path {
                at = match key.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*key],
                };
            }
            *at = value;
        })
    };
    save("backbone", "crop-65536.safetensors", edit(&backbone, &["preprocess", "crop"], json!(65536)));
    save("backbone", "crop-0.safetensors", edit(&backbone, &["preprocess", "crop"], json!(0)));
    save(
        "backbone",
        "repeats-1e12.safetensors",
        edit(&backbone, &["config", "stages", "0", "repeats"], json!(1_000_000_000_000u64)),
    );
    save(
        "backbone",
        "stride-huge.safetensors",
        edit(&backbone, &["config", "stages", "1", "stride"], json!(1u64 << 40)),
    );
    save("backbone", "architecture-path.safetensors", edit(&backbone, &["architecture"], json!("../../escaped")));
    let wick = seeds::tiny_wick(&seeds::tiny_backbone());
    save("wick", "crop-20000.wick", edit(&wick, &["preprocess", "crop"], json!(20000)));
    save("wick", "resize-4e9.wick", edit(&wick, &["preprocess", "resize_shorter"], json!(4_000_000_000u64)));
    save("wick", "std-0.wick", edit(&wick, &["preprocess", "std"], json!([0.0, 0.5, 0.5])));
}
