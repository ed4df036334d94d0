//! Files and servers that lie: each one that once made Wick panic, exhaust memory, hang, write outside
//! its folder or overwrite an output gets a clear message here, and nothing is written.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::Device;
use serde_json::json;
use wick::checkpoint::read_state_dict;
use wick::data::cifar10::download::{fetch, FetchLimits};
use wick::data::cifar10::{Cifar10, CLASSES, PIXELS};
use wick::model::features::{CacheFile, CacheHeader};
use wick::model::Backbone;
use wick::model::Classifier;
use wick::train::config::FinetuneConfig;
use wick::train::finetune::{fingerprint, Finetuner};

use crate::common::pickle::{CheckpointSpec, Gadget};
use crate::common::{s, scratch, seeds, wick_with_env};

/// `wick args` fails, without a panic, saying `says`; returns its stderr.
fn refused(args: &[&str], env: &[(&str, &str)], says: &str) -> String {
    let out = wick_with_env(args, env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail with exit 1: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(err.contains(says), "{args:?} does not say `{says}`: {err}");
    err
}

fn error_of<T>(result: wick::Result<T>) -> String {
    match result {
        Ok(_) => panic!("a hostile input was accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_says(message: &str, says: &str) {
    assert!(message.contains(says), "`{message}` does not say `{says}`");
}

// ---- torch checkpoints -----------------------------------------------------------------------

fn checkpoint_with(edit: impl FnOnce(&mut CheckpointSpec)) -> Vec<u8> {
    let mut spec = CheckpointSpec::contiguous(&seeds::tiny_checkpoint_tensors());
    edit(&mut spec);
    spec.to_bytes()
}

#[test]
fn a_stem_weight_of_the_wrong_rank_or_no_channels_is_refused_and_nothing_is_written() {
    let dir = scratch("stem");
    // A checkpoint with every Lite0 tensor (zeros), but its stem bent.
    let lite0: Vec<(String, Vec<usize>, Vec<f32>)> = wick::backbone::efficientnet_lite::Config::lite0()
        .conv_bn_pairs()
        .into_iter()
        .flat_map(|pair| {
            let c = pair.shape[0];
            let bn = ["weight", "bias", "running_mean", "running_var"]
                .map(|p| (format!("{}.{p}", pair.bn), vec![c], vec![1.0; c]));
            std::iter::once((
                format!("{}.weight", pair.conv),
                pair.shape.to_vec(),
                vec![0.0; pair.shape.iter().product()],
            ))
            .chain(bn)
        })
        .chain([
            ("_fc.weight".into(), vec![1000, 1280], vec![0.0; 1_280_000]),
            ("_fc.bias".into(), vec![1000], vec![0.0; 1000]),
        ])
        .collect();
    for (size, stride, shown) in [(vec![], vec![], "[]"), (vec![0, 3, 3, 3], vec![27, 9, 3, 1], "[0, 3, 3, 3]")] {
        let mut spec = CheckpointSpec::contiguous(&lite0);
        spec.tensors[0].size = size.clone();
        spec.tensors[0].stride = stride.clone();
        let pth = dir.join("stem.pth");
        std::fs::write(&pth, spec.to_bytes()).unwrap();
        let out = dir.join("model.safetensors");
        refused(
            &["convert", s(&pth), "--out", s(&out)],
            &[],
            &format!("`_conv_stem.weight` has shape {shown}, expected [32, 3, 3, 3]"),
        );
        assert!(!out.exists());
        // The same through the library, against the architecture the checkpoint is read as.
        let state = read_state_dict(&std::fs::read(&pth).unwrap()).unwrap();
        assert_says(
            &error_of(wick::backbone::fold::fold_batch_norms(
                &state,
                &wick::backbone::NetworkConfig::EfficientNetLite(wick::backbone::efficientnet_lite::Config::lite0()),
            )),
            "has shape",
        );
    }
}

#[test]
fn sizes_and_strides_that_overflow_or_outgrow_their_storage_are_refused() {
    let cases: [(Vec<i64>, Vec<i64>, i64); 4] = [
        (vec![1 << 31, 1 << 31], vec![0, 0], 0), // 2⁶² elements over one value (capacity overflow)
        (vec![1 << 30], vec![0], 0),             // 2³⁰ elements over one value (4 GB)
        (vec![2, 2], vec![i64::MAX / 2, 1], 0),  // (n-1)·stride wraps the bound check
        (vec![8, 3, 3, 3], vec![27, 9, 3, 1], i64::MAX - 4), // offset + extent wraps
    ];
    for (size, stride, offset) in cases {
        let bytes = checkpoint_with(|spec| {
            spec.tensors[0].size = size.clone();
            spec.tensors[0].stride = stride.clone();
            spec.tensors[0].offset = offset;
        });
        assert_says(&error_of(read_state_dict(&bytes)), "does not fit its storage");
    }
}

#[test]
fn memo_fetch_bombs_and_deep_nesting_cost_time_and_memory_in_proportion_to_the_file() {
    for gadget in [Gadget::MemoBomb { rounds: 64 }, Gadget::Nesting { depth: 1_000_000 }] {
        let bytes = checkpoint_with(|spec| spec.gadget = Some(gadget));
        let start = Instant::now();
        let state = read_state_dict(&bytes).expect("the gadgets sit in a valid checkpoint");
        assert_eq!(state.tensors.len(), seeds::tiny_checkpoint_tensors().len());
        assert!(start.elapsed() < Duration::from_secs(10), "{gadget:?} took {:?}", start.elapsed());
    }
    // 2⁶⁴ copies would be the cost of copying memoised values; a 427-byte file must stay small.
    let bomb = checkpoint_with(|spec| {
        spec.tensors.truncate(1);
        spec.storages.truncate(1);
        spec.gadget = Some(Gadget::MemoBomb { rounds: 40 });
    });
    assert!(read_state_dict(&bomb).is_ok());
}

// ---- backbone files and .wick models -----------------------------------------------------------

#[test]
fn a_backbone_file_whose_int8_tensor_has_no_dimensions_is_refused() {
    let file = seeds::tiny_backbone_file();
    let (mut header, data) = seeds::split_safetensors(&file);
    let name = header.as_object().unwrap().keys().find(|k| k.ends_with(".q")).unwrap().clone();
    let [start, end] = [0, 1].map(|i| header[&name]["data_offsets"][i].as_u64().unwrap());
    // A 0-dimensional int8 tensor holds one byte.
    header[&name]["shape"] = json!([]);
    header[&name]["data_offsets"] = json!([start, start + 1]);
    let _ = end;
    let bytes = seeds::join_safetensors(&header, &data);
    let message = error_of(Backbone::from_backbone_file(&bytes, &Device::Cpu));
    assert!(message.contains("not a valid Wick backbone file"), "{message}");
}

#[test]
fn lying_preprocessing_in_a_backbone_or_a_wick_is_refused() {
    let backbone = seeds::tiny_backbone();
    let wick_file = seeds::tiny_wick(&backbone);
    let cases = [
        ("crop", json!(65536), "crop is 65536 pixels"),
        ("crop", json!(0), "crop is 0 pixels"),
        ("crop", json!(20000), "crop is 20000 pixels"),
        ("resize_shorter", json!(4_000_000_000u64), "resize_shorter is 4000000000 pixels"),
        ("std", json!([0.0, 0.5, 0.5]), "std [0.0, 0.5, 0.5] must be positive numbers"),
    ];
    for (field, value, says) in cases {
        let bad_backbone = seeds::edit_meta(&seeds::tiny_backbone_file(), |m| m["preprocess"][field] = value.clone());
        assert_says(&error_of(Backbone::from_backbone_file(&bad_backbone, &Device::Cpu)), says);
        let bad_wick = seeds::edit_meta(&wick_file, |m| m["preprocess"][field] = value.clone());
        assert_says(&error_of(Classifier::from_bytes(&bad_wick, &Device::Cpu)), says);
    }
}

#[test]
fn lying_architecture_configs_are_refused_before_they_size_anything() {
    let cases = [
        (json!(1_000_000_000_000u64), "repeats", "stage 0's repeats is 1000000000000, expected 1 to 16"),
        (json!(1_000_000_007u64), "stride", "stage 0 has stride 1000000007, expected 1 or 2"),
        (json!(4), "kernel", "stage 0 has kernel 4"),
    ];
    for (value, field, says) in cases {
        let bytes = seeds::edit_meta(&seeds::tiny_backbone_file(), |m| m["config"]["stages"][0][field] = value.clone());
        assert_says(&error_of(Backbone::from_backbone_file(&bytes, &Device::Cpu)), says);
    }
    // Within every bound, but one layer's activations would take gigabytes.
    let bytes = seeds::edit_meta(&seeds::tiny_backbone_file(), |m| {
        m["config"]["stem_channels"] = json!(4096);
        m["preprocess"]["crop"] = json!(1024);
    });
    assert_says(&error_of(Backbone::from_backbone_file(&bytes, &Device::Cpu)), "over the limit of 1024 MB");
}

#[test]
fn an_architecture_name_never_becomes_a_path_outside_the_cache() {
    let dir = scratch("architecture");
    let cache = dir.join("cache");
    for name in ["../../escaped", "/tmp/wick-absolute", "UPPER", ""] {
        let bytes = seeds::edit_meta(&seeds::tiny_backbone_file(), |m| m["architecture"] = json!(name));
        let message = error_of(Backbone::from_backbone_file(&bytes, &Device::Cpu));
        assert_says(&message, "is not a valid name");
        let backbone = dir.join("evil.safetensors");
        std::fs::write(&backbone, &bytes).unwrap();
        let data = dir.join("data");
        for class in ["a", "b"] {
            std::fs::create_dir_all(data.join(class)).unwrap();
            seeds::colour_image(class.len() as u8).save(data.join(class).join("1.png")).unwrap();
        }
        refused(
            &[
                "train",
                "--data",
                s(&data),
                "--out",
                s(&dir.join("m.wick")),
                "--backbone",
                s(&backbone),
                "--cache-dir",
                s(&cache),
            ],
            &[],
            "is not a valid name",
        );
    }
    assert!(!dir.join("m.wick").exists());
    assert!(!cache.exists(), "nothing is written to the cache");
    assert!(!Path::new("/tmp/wick-absolute").exists());
}

// ---- fine-tuning checkpoints -------------------------------------------------------------------

fn tiny_train() -> Cifar10 {
    let mut train = Cifar10::default();
    for i in 0..4u8 {
        train.labels.push(i);
        train.pixels.extend(std::iter::repeat_n(i * 50, PIXELS));
    }
    train
}

fn checkpoint_meta(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let config = FinetuneConfig { epochs: 2, batch_size: 2, warmup_epochs: 0, ..FinetuneConfig::default() };
    let mut meta = json!({
        "config": config, "classes": CLASSES, "source_sha256": "cd".repeat(32),
        "data_fingerprint": fingerprint(&tiny_train()), "epochs_done": 1, "optimizer_steps": 2,
        "history": [{"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.1, "val_loss": 2.0, "val_accuracy": 0.1}],
    });
    edit(&mut meta);
    seeds::safetensors_file(
        &[("head.output.bias", safetensors::Dtype::F32, vec![10], seeds::f32_le(&[0.0; 10]))],
        &[("format", "wick-finetune-checkpoint".into()), ("format_version", "1".into()), ("meta", meta.to_string())],
    )
}

fn resume(bytes: &[u8]) -> String {
    let config = FinetuneConfig { epochs: 2, batch_size: 2, warmup_epochs: 0, ..FinetuneConfig::default() };
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    error_of(Finetuner::resume(
        bytes,
        &seeds::tiny_pretrained(&"cd".repeat(32)),
        &classes,
        &tiny_train(),
        config,
        &Device::Cpu,
    ))
}

#[test]
fn a_checkpoint_for_other_classes_or_with_a_history_it_did_not_train_is_refused() {
    let five = checkpoint_meta(|m| m["classes"] = json!(["a", "b", "c", "d", "e"]));
    assert_says(&resume(&five), "it was made for the classes");
    let epoch = json!({"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.1, "val_loss": null, "val_accuracy": null});
    let longer = checkpoint_meta(|m| m["history"] = json!([epoch.clone(), epoch.clone()]));
    assert_says(&resume(&longer), "its history lists 2 epochs, but it records 1 done");
    let ahead = checkpoint_meta(|m| m["epochs_done"] = json!(7));
    assert_says(&resume(&ahead), "it has 7 epochs done of a run of 2");
    let steps = checkpoint_meta(|m| m["optimizer_steps"] = json!(99));
    assert_says(&resume(&steps), "it records 99 optimizer steps");
    // A consistent record gets as far as the tensors, which must all be there.
    assert_says(&resume(&checkpoint_meta(|_| {})), "it has no `model.");
}

// ---- outputs that collide ----------------------------------------------------------------------

#[test]
fn outputs_that_are_the_same_file_are_refused_before_any_work() {
    let dir = scratch("collide");
    let pth = dir.join("weights.pth");
    std::fs::write(&pth, b"never read").unwrap();
    let out = dir.join("run.wick");
    let data = dir.join("no-data-needed");
    let finetune = |extra: &[&str]| {
        let mut args = vec!["cifar10", "--mode", "finetune", "--data", s(&data), "--pth", s(&pth), "--out", s(&out)];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let cases = [
        (finetune(&["--backbone-out", s(&out)]), "--out and --backbone-out name the same file"),
        (finetune(&["--checkpoint", s(&out)]), "--out and --checkpoint name the same file"),
        (finetune(&["--backbone-out", s(&pth)]), "--backbone-out and --pth name the same file"),
        (finetune(&["--checkpoint", &format!("{}/./run.wick", dir.display())]), "--out and --checkpoint"),
    ];
    for (args, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, &[], says);
    }
    refused(&["convert", s(&pth), "--out", s(&pth)], &[], "--out and --pth name the same file");
    assert_eq!(std::fs::read(&pth).unwrap(), b"never read");
    assert!(!out.exists() && !data.exists());
}

// ---- the feature cache -------------------------------------------------------------------------

#[test]
fn a_cache_with_nan_features_is_named_replaced_and_its_way_out_given() {
    let dir = scratch("cache");
    let backbone = seeds::tiny_backbone();
    let header = CacheHeader::of(&backbone);
    let mut bytes = seeds::feature_cache(&header, 2);
    let last = bytes.len() - 4;
    bytes[last..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(dir.join(header.file_name()), &bytes).unwrap();
    let (cache, note) = CacheFile::open(&dir, header).unwrap();
    let note = note.expect("the damage is reported");
    assert!(note.contains(&dir.join(cache.cache.header.file_name()).display().to_string()), "{note}");
    assert_says(&note, "NaN or infinite");
    assert_says(&note, "--no-cache");
    assert!(cache.cache.is_empty());
}

// ---- downloads ---------------------------------------------------------------------------------

/// Serves one connection on 127.0.0.1 with `respond`, in a thread; returns the URL.
fn serve_once(respond: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar-10-binary.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            respond(stream);
        }
    });
    url
}

#[test]
fn a_mirror_that_claims_a_huge_body_is_refused_before_anything_is_allocated() {
    for length in [u64::MAX, 1_000_000_000_000] {
        let url = serve_once(move |mut stream| {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nabc");
            std::thread::sleep(Duration::from_secs(2));
        });
        assert_says(
            &error_of(fetch(&url, FetchLimits::default(), |_, _| {})),
            "but the CIFAR-10 archive is 170052171 bytes",
        );
    }
    // A body longer than the archive, without a length, is cut off too.
    let url = serve_once(|mut stream| {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(&[0u8; 5000]);
    });
    let limits = FetchLimits { max_bytes: 1000, ..FetchLimits::default() };
    assert_says(&error_of(fetch(&url, limits, |_, _| {})), "not the archive");
}

#[test]
fn a_mirror_that_stalls_after_its_headers_times_out() {
    let url = serve_once(|mut stream| {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc");
        let _ = stream.flush();
        std::thread::sleep(Duration::from_secs(20));
    });
    let start = Instant::now();
    let limits = FetchLimits { read_timeout: Duration::from_secs(1), ..FetchLimits::default() };
    let message = error_of(fetch(&url, limits, |_, _| {}));
    assert_says(&message, "cannot download CIFAR-10");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[test]
fn download_refusals_leave_the_data_folder_empty() {
    let dir = scratch("download");
    let data = dir.join("cifar");
    let url = serve_once(|mut stream| {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n");
        std::thread::sleep(Duration::from_secs(2));
    });
    refused(
        &["cifar10", "--data", s(&data), "--download", "--out", s(&dir.join("c.wick")), "--quiet"],
        &[("WICK_CIFAR10_URL", url.as_str())],
        "not the archive",
    );
    assert!(!data.exists() || std::fs::read_dir(&data).unwrap().next().is_none());
    assert!(!dir.join("c.wick").exists());
}

#[test]
fn a_training_run_over_a_damaged_cache_says_which_file_and_goes_on() {
    let dir = scratch("train-cache");
    let data = dir.join("data");
    for (class, seed) in [("red", 1u8), ("blue", 5)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..2u8 {
            seeds::colour_image(seed + i).save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let cache = dir.join("cache");
    let model = dir.join("m.wick");
    let args = ["train", "--data", s(&data), "--out", s(&model), "--cache-dir", s(&cache), "--quiet"];
    assert!(wick_with_env(&args, &[]).status.success());
    let file = std::fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 4;
    bytes[last..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&file, bytes).unwrap();
    let out = wick_with_env(&args, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&file.display().to_string()) && err.contains("--no-cache"), "{err}");
}

// ---- round 3: decode budgets, special files, finite weights, text, outputs (issue 26) -----------

/// `wick args` under an address-space cap of `megabytes` (as wasm32's 4 GB, or a smaller machine's).
fn capped(megabytes: u64, args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", megabytes * 1024))
        .arg(env!("CARGO_BIN_EXE_wick"))
        .args(args)
        .output()
        .expect("sh runs")
}

/// An 8192 × 8192 (64-megapixel) PNG of one colour: a few hundred kilobytes on disk, 192 MB of RGB.
fn huge_png(shade: u8) -> Vec<u8> {
    seeds::png(&image::RgbImage::from_pixel(8192, 8192, image::Rgb([shade, 100, 200])))
}

#[test]
fn predict_decodes_large_photos_within_the_budget() {
    let dir = scratch("predict-budget");
    let png = huge_png(50);
    let paths: Vec<String> = (0..4)
        .map(|i| {
            let path = dir.join(format!("big-{i}.png"));
            std::fs::write(&path, &png).unwrap();
            s(&path).to_string()
        })
        .collect();
    // Four decoded at once (each its pixels and an RGB copy) take 1.6 GB, more than the cap.
    let mut args = vec!["predict", "--top", "1"];
    args.extend(paths.iter().map(String::as_str));
    let out = capped(1400, &args);
    let (stdout, stderr) = (crate::common::text(&out.stdout), crate::common::text(&out.stderr));
    assert!(out.status.success(), "predict under a 1.4 GB cap: {stderr}");
    assert_eq!(stdout.lines().filter(|l| l.ends_with(".png")).count(), 4, "{stdout}");
}

#[test]
fn training_the_last_layers_on_large_photos_keeps_small_views() {
    let dir = scratch("layers-budget");
    for (class, shade) in [("light", 220u8), ("dark", 30)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        let png = huge_png(shade);
        for i in 0..3 {
            std::fs::write(dir.join(class).join(format!("{i}.png")), &png).unwrap();
        }
    }
    let out = dir.join("m.wick");
    let run = capped(
        1400,
        &[
            "train",
            "--data",
            s(&dir),
            "--out",
            s(&out),
            "--train-layers",
            "1",
            "--layer-epochs",
            "1",
            "--no-cache",
            "--quiet",
        ],
    );
    assert!(run.status.success(), "train --train-layers under a 1.4 GB cap: {}", crate::common::text(&run.stderr));
    assert!(out.exists() && out.with_extension("backbone.safetensors").exists());
}

/// Runs `wick args`, killing it after `seconds`: a read that never ends fails the test instead of
/// hanging it.
fn within(seconds: u64, args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wick"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("wick {args:?} still ran after {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn special_files_in_a_data_folder_are_named_and_never_opened() {
    let dir = scratch("special");
    for class in ["a", "b"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..3u8 {
            seeds::colour_image(i * 40 + if class == "a" { 0 } else { 20 })
                .save(dir.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    mkfifo(&dir.join("a/pipe.png"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("b/zero.png")).unwrap();
    std::os::unix::fs::symlink(dir.join("a/missing.png"), dir.join("b/dangling.png")).unwrap();
    let out = dir.join("m.wick");
    let run = within(120, &["train", "--data", s(&dir), "--out", s(&out), "--no-cache", "--quiet"]);
    let err = crate::common::text(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("pipe.png: a FIFO (named pipe): not read"), "{err}");
    assert!(err.contains("zero.png: a device: not read"), "{err}");
    assert!(err.contains("dangling.png: a link to nothing"), "{err}");
    // Named on the command line too, and in a CIFAR-10 folder.
    let run = within(60, &["predict", s(&dir.join("a/pipe.png")), s(&dir.join("a/0.png"))]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        crate::common::text(&run.stderr).contains("a FIFO (named pipe), not an image file"),
        "{}",
        crate::common::text(&run.stderr)
    );
    assert!(crate::common::text(&run.stdout).contains("0.png"), "the other image is still classified");
}

fn resnet_safetensors(edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> Vec<u8> {
    let mut tensors = seeds::random_resnet("resnet18", 26);
    edit(&mut tensors);
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(name, shape, values)| (name, shape, seeds::f32_le(&values))).collect();
    let views: Vec<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)> =
        encoded.iter().map(|(n, s, b)| (n.as_str(), safetensors::Dtype::F32, s.clone(), b.clone())).collect();
    seeds::safetensors_file(&views, &[])
}

#[test]
fn checkpoints_with_non_finite_values_are_refused_by_name() {
    let dir = scratch("nonfinite");
    let set = |name: &'static str, value: f32| {
        move |t: &mut Vec<(String, Vec<usize>, Vec<f32>)>| {
            t.iter_mut().find(|(n, _, _)| n == name).unwrap().2[3] = value;
        }
    };
    let photo = dir.join("photo.png");
    seeds::colour_image(7).save(&photo).unwrap();
    for (what, bytes, says) in [
        (
            "an inf weight",
            resnet_safetensors(set("layer1.0.conv1.weight", f32::INFINITY)),
            "`layer1.0.conv1.weight` holds a NaN or infinite value",
        ),
        (
            "a NaN running_var",
            resnet_safetensors(set("bn1.running_var", f32::NAN)),
            "`bn1.running_var` holds a NaN or infinite value",
        ),
    ] {
        let pth = dir.join("bad.safetensors");
        std::fs::write(&pth, &bytes).unwrap();
        let err = refused(&["predict", "--pth", s(&pth), s(&photo)], &[], says);
        assert!(!err.contains("NaN%"), "{what}: {err}");
        let out = dir.join("bad.backbone.safetensors");
        refused(&["convert", s(&pth), "--out", s(&out)], &[], says);
        assert!(!out.exists(), "{what}: nothing written");
    }
}

#[test]
fn convert_refuses_to_write_what_its_reader_would_refuse() {
    let dir = scratch("convert-refuses");
    // A negative running variance: folding takes its square root, and the weights become NaN.
    let pth = dir.join("fold-to-nan.safetensors");
    std::fs::write(
        &pth,
        resnet_safetensors(|t| t.iter_mut().find(|(n, _, _)| n == "bn1.running_var").unwrap().2[0] = -1.0),
    )
    .unwrap();
    let out = dir.join("out.backbone.safetensors");
    refused(&["convert", s(&pth), "--out", s(&out)], &[], "`conv1.bias` holds a NaN or infinite value (after folding");
    assert!(!out.exists());
    // A variance of −ε (ResNet's BatchNorm ε): finite weights after folding, 10⁵ times too large.
    let pth = dir.join("fold-to-huge.safetensors");
    std::fs::write(
        &pth,
        resnet_safetensors(|t| t.iter_mut().find(|(n, _, _)| n == "bn1.running_var").unwrap().2[0] = -1e-5),
    )
    .unwrap();
    refused(&["convert", s(&pth), "--out", s(&out)], &[], "beyond ±10000 (weights out of range)");
    assert!(!out.exists());
}

#[test]
fn a_backbone_file_whose_products_or_biases_are_out_of_range_is_refused() {
    let file = seeds::tiny_backbone_file();
    let (header, data) = seeds::split_safetensors(&file);
    let tensor = |pick: &dyn Fn(&str) -> bool| header.as_object().unwrap().keys().find(|k| pick(k)).unwrap().clone();
    let set_f32 = |name: &str, value: f32| {
        let mut data = data.clone();
        let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
        data[start..start + 4].copy_from_slice(&value.to_le_bytes());
        seeds::join_safetensors(&header, &data)
    };
    // A scale of 3·10³⁸ is finite; its product with an int8 weight is not.
    let scale = tensor(&|k| k.ends_with(".scale"));
    assert_says(
        &error_of(Backbone::from_backbone_file(&set_f32(&scale, 3e38), &Device::Cpu)),
        "holds a NaN or infinite value",
    );
    // A bias of 10³⁰ is finite; the sums it enters are not.
    let bias = tensor(&|k| k.ends_with(".bias") && header[k]["dtype"] == "F32");
    assert_says(&error_of(Backbone::from_backbone_file(&set_f32(&bias, 1e30), &Device::Cpu)), "beyond ±1000000");
}

#[test]
fn labels_and_file_names_reach_the_terminal_as_text() {
    let dir = scratch("text");
    // A backbone file whose class names carry an escape sequence and a forged line.
    let forged = seeds::edit_meta(&seeds::tiny_backbone_file(), |m| {
        m["labels"][0] = json!("cat\u{1b}[2J\n  99.99%     1  dog");
    });
    assert_says(&error_of(Backbone::from_backbone_file(&forged, &Device::Cpu)), "contains control characters");
    // A photo whose file name does the same is printed with its control characters escaped.
    let name = dir.join("photo\u{1b}[31m\n  99.99%     7  forged.png");
    seeds::colour_image(9).save_with_format(&name, image::ImageFormat::Png).unwrap();
    let out = crate::common::wick(&["predict", "--top", "1", s(&name)]);
    let stdout = crate::common::text(&out.stdout);
    assert!(out.status.success(), "{}", crate::common::text(&out.stderr));
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(stdout.contains(r"photo\u{1b}[31m\n  99.99%"), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 2, "one name line and one class line: {stdout:?}");
}

#[test]
fn a_heatmap_that_cannot_be_written_does_not_stop_the_batch() {
    let dir = scratch("heatmaps");
    let maps = dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    // A legal 251-byte name (its heatmap's name would be 263 bytes), and a dangling link where a
    // heatmap would go.
    let long = dir.join(format!("{}.png", "x".repeat(247)));
    let blocked = dir.join("blocked.png");
    let fine = dir.join("fine.png");
    for (i, path) in [&long, &blocked, &fine].into_iter().enumerate() {
        seeds::colour_image(i as u8 * 60).save(path).unwrap();
    }
    std::os::unix::fs::symlink(dir.join("nowhere"), maps.join("blocked.heatmap.png")).unwrap();
    let out = crate::common::wick(&["predict", "--top", "1", "--heatmap", s(&maps), s(&long), s(&blocked), s(&fine)]);
    let (stdout, stderr) = (crate::common::text(&out.stdout), crate::common::text(&out.stderr));
    assert!(out.status.success(), "every map was written under another name: {stderr}");
    assert_eq!(stdout.matches("where the model looks").count(), 3, "{stdout}");
    assert!(maps.join("blocked-2.heatmap.png").exists(), "the dangling link's name is taken: the next one is used");
    assert!(std::fs::read_dir(&maps)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().len() <= 255 && e.file_name().to_string_lossy().starts_with("xxxx")));
    // A folder that cannot be written: every image is still answered, and the exit status says so.
    let locked = dir.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::write(locked.join("fine.heatmap.png"), b"").unwrap();
    let mut perms = std::fs::metadata(&locked).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o500);
    std::fs::set_permissions(&locked, perms).unwrap();
    let out = crate::common::wick(&["predict", "--top", "1", "--heatmap", s(&locked), s(&fine), s(&blocked)]);
    let mut perms = std::fs::metadata(&locked).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(&locked, perms).unwrap();
    if out.status.success() {
        return; // running as root: the folder is writable anyway
    }
    let (stdout, stderr) = (crate::common::text(&out.stdout), crate::common::text(&out.stderr));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout.lines().filter(|l| l.ends_with(".png")).count(), 2, "both images answered: {stdout}");
    assert!(stderr.contains("heatmaps could not be written"), "{stderr}");
}

fn two_class_folder(dir: &Path) {
    for (class, shade) in [("cat", 10u8), ("dog", 200)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..3u8 {
            seeds::colour_image(shade.wrapping_add(i * 7)).save(dir.join(class).join(format!("img{i}.png"))).unwrap();
        }
    }
}

#[test]
fn outputs_never_eat_inputs_or_a_users_files() {
    let dir = scratch("outputs");
    let data = dir.join("data");
    two_class_folder(&data);
    let photo = data.join("cat/img0.png");
    let photo_bytes = std::fs::read(&photo).unwrap();
    let train = |extra: &[&str]| {
        let mut args =
            vec!["train".to_string(), "--data".into(), s(&data).into(), "--no-cache".into(), "--quiet".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let run = |args: Vec<String>, says: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, &[], says)
    };
    // --out naming a training image.
    run(train(&["--out", s(&photo)]), "img0.png exists and is not a file of the kind Wick writes there");
    assert_eq!(std::fs::read(&photo).unwrap(), photo_bytes);
    // The plot beside --out, named by another output.
    let m = dir.join("m.wick");
    run(
        train(&["--out", s(&m), "--train-layers", "1", "--backbone-out", s(&dir.join("m.svg"))]),
        "--backbone-out and the plot name the same file",
    );
    // A user's own file where an output goes.
    let notes = dir.join("notes.wick");
    std::fs::write(&notes, b"my notes").unwrap();
    run(train(&["--out", s(&notes)]), "exists and is not a file of the kind Wick writes there");
    assert_eq!(std::fs::read(&notes).unwrap(), b"my notes");
    // A user's own report.svg beside --out report.wick: the plot goes to report-2.svg.
    let report = dir.join("report.wick");
    std::fs::write(dir.join("report.svg"), b"<svg>mine</svg>").unwrap();
    let args = train(&["--out", s(&report)]);
    let out = crate::common::wick(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", crate::common::text(&out.stderr));
    assert!(
        crate::common::text(&out.stderr).contains("report.svg is not a plot Wick wrote"),
        "{}",
        crate::common::text(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.join("report.svg")).unwrap(), b"<svg>mine</svg>");
    assert!(dir.join("report-2.svg").exists());
    // The second run replaces its own .wick and its own plot.
    let out = crate::common::wick(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", crate::common::text(&out.stderr));
    assert!(!dir.join("report-3.svg").exists());
    // convert over a file that is not a backbone.
    let pth = dir.join("w.safetensors");
    std::fs::write(&pth, resnet_safetensors(|_| {})).unwrap();
    refused(&["convert", s(&pth), "--out", s(&notes)], &[], "exists and is not a file of the kind Wick writes there");
    assert_eq!(std::fs::read(&notes).unwrap(), b"my notes");
}
