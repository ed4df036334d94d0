//! CIFAR-10's binary format and `wick cifar10 --mode probe`, on generated files in that exact format
//! (the real data set cannot be fetched here): each class is a colour with noise and a stripe pattern.

use crate::common::{s, scratch, wick};
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::SafeTensors;
use wick::data::cifar10::{Cifar10, CLASSES, PIXELS, RECORD, TEST_FILE, TRAIN_FILES};
use wick::util::rng::Rng;

/// `n` images: class `i % 10`, a per-class colour and stripe direction, plus noise.
fn synthetic(n: usize, seed: u64) -> Cifar10 {
    let mut rng = Rng::new(seed);
    let mut set = Cifar10::default();
    for i in 0..n {
        let class = i % CLASSES.len();
        let colour = [(class * 37) % 256, (class * 91 + 40) % 256, (class * 151 + 80) % 256];
        set.labels.push(class as u8);
        for &base in &colour {
            for y in 0..32 {
                for x in 0..32 {
                    let along = if class.is_multiple_of(2) { x } else { y };
                    let stripe = if along % 8 < 4 { 40.0 } else { -40.0 };
                    let v = base as f32 + stripe + 60.0 * (rng.uniform() - 0.5);
                    set.pixels.push(v.clamp(0.0, 255.0) as u8);
                }
            }
        }
    }
    set
}

fn write_dataset(dir: &Path, per_batch: usize, test: usize) {
    for (b, name) in TRAIN_FILES.iter().enumerate() {
        std::fs::write(dir.join(name), synthetic(per_batch, b as u64).encode()).unwrap();
    }
    std::fs::write(dir.join(TEST_FILE), synthetic(test, 99).encode()).unwrap();
}

#[test]
fn the_binary_format_round_trips() {
    let set = synthetic(12, 1);
    let bytes = set.encode();
    assert_eq!(bytes.len(), 12 * RECORD);
    assert_eq!(bytes[RECORD], 1, "record 1's first byte is its label");
    let parsed = Cifar10::parse(&bytes, "x").unwrap();
    assert_eq!(parsed, set);
    // Planar RGB: pixel (x, y) of channel c is byte c·1024 + y·32 + x.
    let image = parsed.image(3);
    let planes = parsed.planes(3);
    assert_eq!(image.get_pixel(5, 2).0, [planes[2 * 32 + 5], planes[1024 + 2 * 32 + 5], planes[2048 + 2 * 32 + 5]]);
    assert_eq!(planes.len(), PIXELS);
}

#[test]
fn bad_files_are_explained() {
    let bytes = synthetic(3, 1).encode();
    let err = Cifar10::parse(&bytes[..bytes.len() - 10], "data_batch_1.bin").unwrap_err().to_string();
    assert!(err.contains("data_batch_1.bin") && err.contains("not a whole number of 3073-byte"), "{err}");
    assert!(Cifar10::parse(&[], "empty.bin").unwrap_err().to_string().contains("0 bytes"));
    let mut bad_label = bytes.clone();
    bad_label[RECORD] = 10;
    let err = Cifar10::parse(&bad_label, "t.bin").unwrap_err().to_string();
    assert!(err.contains("record 1 has label 10"), "{err}");

    let dir = scratch("missing");
    std::fs::write(dir.join(TRAIN_FILES[0]), &bytes).unwrap();
    let out = wick(&[
        "cifar10",
        "--data",
        dir.to_str().unwrap(),
        "--out",
        dir.join("m.wick").to_str().unwrap(),
        "--no-cache",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("data_batch_2.bin") && err.contains("cifar-10-batches-bin"), "{err}");
}

#[test]
fn probe_learns_the_pattern_and_the_model_predicts_with_its_preprocessing() {
    let dir = scratch("probe");
    write_dataset(&dir, 40, 100);
    let (model, cache) = (dir.join("probe.wick"), dir.join("cache"));
    let run = |extra: &[&str]| {
        let mut args = vec![
            "cifar10",
            "--data",
            dir.to_str().unwrap(),
            "--mode",
            "probe",
            "--img-size",
            "64",
            "--out",
            model.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = wick(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let report = run(&[]);
    assert_eq!(report["train_images"], 180);
    assert_eq!(report["validation_images"], 20);
    assert_eq!(report["test_images"], 100);
    assert_eq!(report["features_computed"], 300);
    let accuracy = report["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "probe test accuracy {accuracy} (chance is 0.1)");
    assert_eq!(report["test"]["confusion"].as_array().unwrap().len(), 10);

    assert_eq!(report["plot"], dir.join("probe.svg").to_str().unwrap());
    assert!(std::fs::read_to_string(dir.join("probe.svg")).unwrap().contains("confusion on the test set"));

    // Features are cached per (image, preprocessing): a second run computes none. Mini-batch
    // settings pick the AdamW solver.
    let adamw = run(&["--seed", "1", "--epochs", "40"]);
    assert_eq!(adamw["features_computed"], 0);
    assert!(adamw["test"]["accuracy"].as_f64().unwrap() >= 0.9);

    // The model carries its preprocessing: `wick predict` upsamples a 32×32 test image the same way.
    let test = synthetic(100, 99);
    let png = dir.join("test-7.png");
    test.image(7).save(&png).unwrap();
    let out = wick(&["predict", "--model", model.to_str().unwrap(), "--json", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["classes"][0]["label"], CLASSES[7]);
}

#[test]
fn cifar_as_image_folders_loads_holds_out_a_test_fifth_and_saves_features() {
    let dir = scratch("cifar-folders");
    let images = synthetic(200, 5); // 20 per class
    for i in 0..images.len() {
        let class_dir = dir.join("train").join(CLASSES[images.labels[i] as usize]);
        std::fs::create_dir_all(&class_dir).unwrap();
        images.image(i).save(class_dir.join(format!("{i:04}.png"))).unwrap();
    }
    let (model, features) = (dir.join("m.wick"), dir.join("features"));
    let run = |extra: &[&str]| {
        let base = ["cifar10", "--data", s(&dir), "--img-size", "32", "--no-cache", "--json", "--out", s(&model)];
        wick(&[&base[..], extra].concat())
    };
    let out = run(&["--save-features", s(&features)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["test_images"], 40, "a fifth of each class is the test set");
    assert_eq!(report["train_images"].as_u64().unwrap() + report["validation_images"].as_u64().unwrap(), 160);
    assert!(report["test"]["accuracy"].as_f64().unwrap() >= 0.8, "{}", report["test"]["accuracy"]);
    for (split, rows) in [("train", report["train_images"].as_u64().unwrap()), ("test", 40)] {
        let labels = std::fs::read(features.join(split).join("labels.u8")).unwrap();
        let values = std::fs::read(features.join(split).join("features.f32")).unwrap();
        // Stage pooling (the default): 1,280 + 112 + 192 + 320 values per image.
        assert_eq!((labels.len() as u64, values.len() as u64), (rows, rows * 1904 * 4), "{split}");
    }

    // The saved features are what `wick bench --head-fit` fits the default head on.
    let out = wick(&["bench", "--head-fit", s(&features), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fit["train_rows"], report["train_images"]);
    assert!(fit["test_accuracy"].as_f64().unwrap() >= 0.8 && fit["path_steps"].as_u64().unwrap() >= 1, "{fit}");
    // Features of another width are refused, naming the folder.
    std::fs::write(features.join("val/labels.u8"), [0u8]).unwrap();
    std::fs::write(features.join("val/features.f32"), [0u8; 4 * 7]).unwrap();
    let out = wick(&["bench", "--head-fit", s(&features)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("train, val and test features differ in width"));

    // A folder that is not a CIFAR-10 class, and an image of the wrong size, are named.
    std::fs::rename(dir.join("train/cat"), dir.join("train/cats")).unwrap();
    let out = run(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`cats` is not a CIFAR-10 class"));
    std::fs::rename(dir.join("train/cats"), dir.join("train/cat")).unwrap();
    image::RgbImage::new(33, 32).save(dir.join("train/dog/big.png")).unwrap();
    let out = run(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("big.png: 33 × 32 pixels; CIFAR-10 images are 32 × 32"));
}

// ---- fine-tuning ---------------------------------------------------------------------------------

/// The ImageNet checkpoint fine-tuning starts from (`scripts/fetch-weights.sh` puts it there).
fn checkpoint_path() -> PathBuf {
    let path = std::env::var_os("WICK_LITE0_PTH").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/wick/efficientnet-lite0-57934424.pth")
    });
    assert!(path.exists(), "{} is missing: run scripts/fetch-weights.sh (or `make test`)", path.display());
    path
}

/// `wick cifar10 --mode finetune` at CIFAR's own 32×32, in batches of 16, with `extra` arguments.
fn finetune_args<'a>(data: &'a Path, out: &'a Path, pth: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args =
        vec!["cifar10", "--mode", "finetune", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    for (flag, value) in
        [("--pth", pth.to_str().unwrap()), ("--img-size", "32"), ("--batch-size", "16"), ("--lr", "0.02")]
    {
        let replaced = extra.contains(&flag) || (flag == "--pth" && extra.contains(&"--backbone"));
        if !replaced {
            args.extend([flag, value]);
        }
    }
    args
}

#[test]
fn finetune_learns_the_pattern_and_exports_a_backbone_that_classifies_on_its_own() {
    let dir = scratch("finetune");
    write_dataset(&dir, 48, 100);
    let (pth, model) = (checkpoint_path(), dir.join("ft.wick"));
    let out = wick(&finetune_args(&dir, &model, &pth, &["--epochs", "5", "--json"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "finetune");
    assert_eq!(report["train_images"], 240, "240 images make 15 whole batches of 16");
    assert_eq!(report["backbone"], dir.join("ft.backbone.safetensors").to_str().unwrap());
    assert!(report.get("validation_images").is_none() && report.get("features_computed").is_none());
    let history = report["history"].as_array().unwrap();
    assert_eq!(history.len(), 5);
    assert!(history.iter().all(|h| h["val_accuracy"].as_f64().is_some()), "every epoch is measured on the test set");
    let accuracy = report["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.8, "fine-tuned test accuracy {accuracy} (chance is 0.1)");

    let backbone = dir.join("ft.backbone.safetensors");
    assert!(dir.join("ft.checkpoint").exists() && backbone.exists());
    // The fine-tuned backbone file alone classifies into CIFAR-10's classes (its `_fc` is the head),
    // and the .wick runs on it: both label 20 test images (as PNGs) as well as the run measured.
    let test = synthetic(100, 99);
    let pngs: Vec<String> = (0..20)
        .map(|i| {
            let png = dir.join(format!("test-{i}.png"));
            test.image(i).save(&png).unwrap();
            png.to_str().unwrap().to_string()
        })
        .collect();
    let labels = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["predict", "--json", "--backbone", backbone.to_str().unwrap()];
        args.extend(extra);
        args.extend(pngs.iter().map(String::as_str));
        let out = wick(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let records = String::from_utf8(out.stdout).unwrap();
        records
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["classes"][0]["label"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let (alone, with_wick) = (labels(&[]), labels(&["--model", model.to_str().unwrap()]));
    for predicted in [&alone, &with_wick] {
        let right =
            predicted.iter().enumerate().filter(|(i, label)| *label == CLASSES[test.labels[*i] as usize]).count();
        assert!(right >= 14, "{right} of 20 right: {predicted:?}");
    }
    // The backbone file's classifier is the head quantized to int8: the same answers, a near tie aside.
    let agree = alone.iter().zip(&with_wick).filter(|(a, b)| a == b).count();
    assert!(agree >= 19, "backbone alone and with its .wick agree on {agree} of 20");
    let png = &pngs[0];
    // The .wick names the fine-tuned backbone, not the ImageNet one.
    let out = wick(&["predict", "--model", model.to_str().unwrap(), png]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("backbone"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn finetune_with_adamw_learns_the_pattern_too() {
    let dir = scratch("finetune-adamw");
    write_dataset(&dir, 48, 100);
    let (pth, model) = (checkpoint_path(), dir.join("adamw.wick"));
    let args = ["--epochs", "3", "--optimizer", "adamw", "--lr", "0.001", "--json"];
    let out = wick(&finetune_args(&dir, &model, &pth, &args));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accuracy = report["test"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.5, "AdamW fine-tuned test accuracy {accuracy} (chance is 0.1)");
}

#[test]
fn one_epoch_of_finetuning_cuts_the_warm_up_to_fit_and_says_so() {
    let dir = scratch("finetune-one-epoch");
    write_dataset(&dir, 8, 10); // 40 training images: two steps of 16
    let (pth, model) = (checkpoint_path(), dir.join("one.wick"));
    let out = wick(&finetune_args(&dir, &model, &pth, &["--epochs", "1"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warming up over the first half of the run (1 of 2 steps)"), "{err}");
    assert!(model.exists());
}

#[test]
fn a_run_killed_mid_epoch_and_resumed_ends_bit_identical_to_an_uninterrupted_one() {
    let dir = scratch("resume");
    write_dataset(&dir, 32, 40);
    let pth = checkpoint_path();
    let epochs = ["--epochs", "3", "--quiet"];

    let whole = dir.join("whole.wick");
    let out = wick(&finetune_args(&dir, &whole, &pth, &epochs));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The same run, killed (SIGKILL) as soon as epoch 1's checkpoint appears, then resumed.
    let killed = dir.join("killed.wick");
    let checkpoint = dir.join("killed.checkpoint");
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_wick")).args(finetune_args(&dir, &killed, &pth, &epochs)).spawn().unwrap();
    while !checkpoint.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.exists(), "the killed run got to the end: the test did not interrupt it");
    let out = wick(&finetune_args(&dir, &killed, &pth, &[&epochs[..], &["--resume"]].concat()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Every weight, running statistic and optimizer buffer, and the recorded history, are the same bits.
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (whole_checkpoint, killed_checkpoint) = (read("whole.checkpoint"), read("killed.checkpoint"));
    let (whole, killed) =
        (SafeTensors::deserialize(&whole_checkpoint).unwrap(), SafeTensors::deserialize(&killed_checkpoint).unwrap());
    assert!(whole.len() > 300, "{} tensors", whole.len());
    assert_eq!(whole.names().len(), killed.names().len());
    for (name, tensor) in whole.tensors() {
        assert!(tensor.data() == killed.tensor(&name).unwrap().data(), "`{name}` differs after resuming");
    }
    let meta = |bytes: &[u8]| SafeTensors::read_metadata(bytes).unwrap().1.metadata().clone().unwrap()["meta"].clone();
    assert_eq!(meta(&whole_checkpoint), meta(&killed_checkpoint));
    assert!(read("whole.backbone.safetensors") == read("killed.backbone.safetensors"), "exported backbones differ");
}

#[test]
fn finetune_refuses_bad_settings_and_foreign_checkpoints_without_touching_the_checkpoint() {
    let dir = scratch("finetune-bad");
    write_dataset(&dir, 8, 10);
    let pth = checkpoint_path();
    let model = dir.join("m.wick");
    let fails = |extra: &[&str], expect: &str| {
        let out = wick(&finetune_args(&dir, &model, &pth, extra));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "{extra:?}: expected `{expect}` in: {err}");
    };
    fails(&["--batch-size", "1"], "batch size must be at least 2");
    fails(&["--batch-size", "64"], "fewer than one batch of 64");
    fails(&["--solver", "lbfgs"], "--mode finetune does not use --solver");
    fails(&["--save-features", "features"], "--mode finetune does not use --save-features");
    fails(&["--backbone", pth.to_str().unwrap()], "folded");
    fails(&["--precision", "bf16"], "bf16 mixed precision needs a CUDA device");
    fails(&["--optimizer", "adam"], "expected sgd (Nesterov momentum) or adamw");
    fails(&["--hidden", "64"], "--mode finetune does not use --hidden");
    let probe_with_resume =
        wick(&["cifar10", "--data", dir.to_str().unwrap(), "--out", model.to_str().unwrap(), "--resume"]);
    let err = String::from_utf8_lossy(&probe_with_resume.stderr);
    assert!(err.contains("--mode probe does not use --resume"), "{err}");
    // Without the checkpoint, fine-tuning says how to get it before touching the data.
    let out = Command::new(env!("CARGO_BIN_EXE_wick"))
        .args([
            "cifar10",
            "--mode",
            "finetune",
            "--data",
            "/nonexistent",
            "--download",
            "--out",
            model.to_str().unwrap(),
        ])
        .env("HOME", dir.join("no-home"))
        .env_remove("WICK_CACHE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run scripts/fetch-weights.sh") && !err.contains("download CIFAR-10"), "{err}");
    fails(&["--resume"], "no checkpoint to resume from");

    // A finished two-epoch run; its checkpoint is refused with other settings and left as it was.
    let out = wick(&finetune_args(&dir, &model, &pth, &["--epochs", "2", "--quiet"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let checkpoint = dir.join("m.checkpoint");
    let saved = std::fs::read(&checkpoint).unwrap();
    fails(&["--epochs", "2", "--resume", "--lr", "0.1"], "learning_rate 0.02 → 0.1");
    fails(&["--epochs", "2", "--resume", "--limit", "32"], "other data");
    assert!(std::fs::read(&checkpoint).unwrap() == saved, "a refused resume changed the checkpoint");
    // The run's own .wick as its checkpoint would be overwritten by it: refused before anything runs.
    fails(
        &["--epochs", "2", "--resume", "--checkpoint", model.to_str().unwrap()],
        "--out and --checkpoint name the same file",
    );
    let other_wick = dir.join("other.wick");
    std::fs::copy(&model, &other_wick).unwrap();
    fails(
        &["--epochs", "2", "--resume", "--checkpoint", other_wick.to_str().unwrap()],
        "this is a trained .wick model",
    );
    let cut = dir.join("cut.checkpoint");
    std::fs::write(&cut, &saved[..saved.len() / 2]).unwrap();
    fails(&["--epochs", "2", "--resume", "--checkpoint", cut.to_str().unwrap()], "cut.checkpoint");
}

// ---- --download ----------------------------------------------------------------------------------

/// A gzipped tar with `files` (path, bytes), like the official `cifar-10-binary.tar.gz`.
fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, *bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn the_archive_unpacks_to_the_six_batch_files_and_bad_archives_are_explained() {
    use wick::data::cifar10::download::{check_md5, is_complete, unpack};
    let batches: Vec<(String, Vec<u8>)> = TRAIN_FILES
        .iter()
        .chain([&TEST_FILE])
        .enumerate()
        .map(|(i, name)| (format!("cifar-10-batches-bin/{name}"), synthetic(4, i as u64).encode()))
        .collect();
    let mut files: Vec<(&str, &[u8])> = batches.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    files.push(("cifar-10-batches-bin/readme.html", b"<html>"));
    let dir = scratch("unpack");
    assert!(!is_complete(&dir));
    unpack(&tar_gz(&files), &dir).unwrap();
    assert!(is_complete(&dir));
    assert!(std::fs::read(dir.join(TEST_FILE)).unwrap() == batches[5].1);
    assert!(!dir.join("readme.html").exists());

    let err = |archive: &[u8]| unpack(archive, &scratch("unpack-bad")).unwrap_err().to_string();
    assert!(err(&tar_gz(&files[..5])).contains("lacks test_batch.bin"), "{}", err(&tar_gz(&files[..5])));
    assert!(err(b"not gzip at all").contains("cannot be unpacked"));
    let short = [(files[0].0, &files[0].1[..100])];
    assert!(err(&tar_gz(&short)).contains("data_batch_1.bin in the archive"), "{}", err(&tar_gz(&short)));
    let md5 = check_md5(b"abc", wick::data::cifar10::ARCHIVE_MD5).unwrap_err().to_string();
    assert!(md5.contains("MD5 is 900150983cd24fb0d6963f7d28e17f72") && md5.contains("nothing was written"), "{md5}");
}

/// Serves `body` once over HTTP on a local port; returns the URL.
fn serve_once(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar-10-binary.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
    });
    url
}

#[test]
fn download_says_clearly_when_it_cannot_reach_the_archive_or_gets_a_wrong_one() {
    let dir = scratch("download");
    let run = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_wick"))
            .args(["cifar10", "--download", "--data", dir.to_str().unwrap(), "--quiet", "--no-cache"])
            .args(["--epochs", "2", "--out", dir.join("probe.wick").to_str().unwrap()])
            .env("WICK_CIFAR10_URL", url)
            .output()
            .unwrap()
    };
    // Nothing listens on port 1: what a machine without internet access sees.
    let out = run("http://127.0.0.1:1/cifar-10-binary.tar.gz");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot download CIFAR-10") && err.contains("pass its cifar-10-batches-bin folder as --data"),
        "{err}"
    );

    let out = run(&serve_once(b"<html>not the archive</html>".to_vec()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("damaged or not CIFAR-10's") && err.contains("nothing was written"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "a failed download left files behind");

    // With the files already there, --download fetches nothing (the URL is unreachable).
    write_dataset(&dir, 4, 10);
    let out = run("http://127.0.0.1:1/cifar-10-binary.tar.gz");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("probe.wick").exists());
}

#[test]
fn bench_finetune_reports_images_per_second_and_every_steps_loss() {
    let pth = checkpoint_path();
    let pth = pth.to_str().unwrap();
    let args =
        ["bench", "--finetune", "--pth", pth, "--img-size", "32", "--batch", "4", "--warmup", "1", "--iters", "2"];
    let out = wick(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["losses"].as_array().unwrap().len(), 3, "{record}");
    assert!(record["losses"].as_array().unwrap().iter().all(|l| l.as_f64().unwrap().is_finite()));
    assert!(record["images_per_second"].as_f64().unwrap() > 0.0);
    let bf16 = wick(&[&args[..], &["--precision", "bf16"]].concat());
    assert!(String::from_utf8_lossy(&bf16.stderr).contains("bf16 mixed precision needs a CUDA device"));
    let none = wick(&["bench", "--finetune", "--pth", pth, "--iters", "0"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("--iters must be at least 1"));
}

/// Fine-tuning a ResNet-18 (seeded random weights: pretrained ones cannot be fetched here) learns the
/// pattern, and exports a ResNet-18 backbone file that classifies with its `.wick` as the run measured.
#[test]
fn finetune_trains_a_resnet_too() {
    let dir = scratch("finetune-resnet");
    write_dataset(&dir, 48, 100);
    let pth = dir.join("resnet18-random.pth");
    std::fs::write(
        &pth,
        crate::common::pickle::CheckpointSpec::contiguous(&crate::common::seeds::random_resnet("resnet18", 3))
            .to_bytes(),
    )
    .unwrap();
    let model = dir.join("r.wick");
    let out = wick(&finetune_args(&dir, &model, &pth, &["--epochs", "5", "--json"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accuracy = report["test"]["accuracy"].as_f64().unwrap();
    eprintln!("ResNet-18 from random weights, 5 epochs: test accuracy {accuracy}");
    assert!(accuracy >= 0.5, "fine-tuned test accuracy {accuracy} (chance is 0.1)");
    let backbone = dir.join("r.backbone.safetensors");
    let (meta, _) = wick::formats::backbone_file::read(&std::fs::read(&backbone).unwrap()).unwrap();
    assert_eq!(meta.architecture, "resnet18");
    assert_eq!(meta.preprocess.mean, [0.485, 0.456, 0.406], "the ResNet's own normalisation is kept");
    let png = dir.join("test-0.png");
    synthetic(100, 99).image(0).save(&png).unwrap();
    let out = wick(&[
        "predict",
        "--json",
        "--backbone",
        backbone.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
