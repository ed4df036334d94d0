//! CIFAR-10's binary format and `wick cifar10 --mode probe`, on generated files in that exact format
//! (the real data set cannot be fetched here): each class is a colour with noise and a stripe pattern.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wick::cifar10::{Cifar10, CLASSES, PIXELS, RECORD, TEST_FILE, TRAIN_FILES};
use wick::rng::Rng;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wick-cifar-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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

fn wick(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wick")).args(args).output().expect("wick runs")
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
    let out = wick(&["cifar10", "--data", dir.to_str().unwrap(), "--out", "/dev/null", "--no-cache"]);
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
            "--epochs",
            "60",
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

    // Features are cached per (image, preprocessing): a second run computes none.
    assert_eq!(run(&["--seed", "1"])["features_computed"], 0);

    // The model carries its preprocessing: `wick predict` upsamples a 32×32 test image the same way.
    let test = synthetic(100, 99);
    let png = dir.join("test-7.png");
    test.image(7).save(&png).unwrap();
    let out = wick(&["predict", "--model", model.to_str().unwrap(), "--json", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["classes"][0]["label"], CLASSES[7]);
}
