//! `wick train`, `wick eval` and `wick predict --model` end to end through the real binary, on real
//! photos: crops of three texture photos from scikit-image (brick, grass, gravel). Training crops come
//! from the top of each photo, evaluation crops from the bottom, so the model is judged on pixels it
//! never saw.

use crate::common::seeds::wick_meta;
use crate::common::{refused, s, scratch, text, wick, Scratch};
use std::path::Path;
use std::process::Output;
use wick::backbone::Pooling;

use wick::util::rng::Rng;

const CLASSES: [&str; 3] = ["brick", "grass", "gravel"];

/// `per_class` 160×160 crops of each texture, with rows from `rows` (every other one mirrored).
fn texture_folder(dir: &Path, rows: std::ops::Range<u32>, per_class: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    for class in CLASSES {
        let photo = image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{class}.png")))
            .unwrap()
            .to_rgb8();
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..per_class {
            let x = rng.below((photo.width() - 160) as usize) as u32;
            let y = rows.start + rng.below((rows.end - rows.start - 160) as usize) as u32;
            let mut crop = image::imageops::crop_imm(&photo, x, y, 160, 160).to_image();
            if i % 2 == 1 {
                crop = image::imageops::flip_horizontal(&crop);
            }
            crop.save(dir.join(class).join(format!("{i:02}.png"))).unwrap();
        }
    }
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "wick failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn train_then_eval_then_predict_on_real_photos() {
    let dir = scratch("e2e");
    let (data, held_out, cache, model) =
        (dir.join("data"), dir.join("held-out"), dir.join("cache"), dir.join("m.wick"));
    texture_folder(&data, 0..300, 12, 1);
    texture_folder(&held_out, 330..512, 6, 2);
    // One unreadable file in a class: skipped, listed, and training goes on.
    std::fs::write(data.join("grass/broken.jpg"), b"\xff\xd8\xff\xe0 this is not really a jpeg").unwrap();

    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", s(&data), "--out", s(&model), "--cache-dir", s(&cache), "--json"];
        args.extend_from_slice(extra);
        wick(&args)
    };
    let first = train(&["--seed", "3"]);
    let report = json(&first);
    // The run's picture lies next to the model: curves for every step, the validation confusion matrix.
    assert_eq!(report["plot"], s(&dir.join("m.svg")));
    let svg = std::fs::read_to_string(dir.join("m.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("L2 strength") && svg.contains("confusion on the validation images")
    );
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("broken.jpg"));
    assert!(text(&first.stderr).contains("broken.jpg"), "the skipped file is listed on stderr");
    // 12 per class, 15% (2) held out; the broken file was assigned to one side of the split.
    let (train_n, val_n) = (&report["train_images"], &report["validation_images"]);
    assert_eq!(CLASSES.map(|c| train_n[c].as_u64().unwrap() + val_n[c].as_u64().unwrap()), [12, 12, 12]);
    assert_eq!(report["features_computed"], 36);
    let val_accuracy = report["validation"]["accuracy"].as_f64().unwrap();
    assert!(val_accuracy >= 0.99, "validation accuracy {val_accuracy}");
    assert!(model.exists());

    // Evaluation on the held-out bottom rows: these textures are easy for an ImageNet backbone.
    let eval = json(&wick(&["eval", "--data", s(&held_out), "--model", s(&model), "--cache-dir", s(&cache), "--json"]));
    let accuracy = eval["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.94, "held-out accuracy {accuracy}: {eval}");
    assert_eq!(eval["images"], 18);
    assert_eq!(eval["confusion"].as_array().unwrap().len(), 3);
    for class in eval["classes"].as_array().unwrap() {
        assert!(class["recall"].as_f64().unwrap() >= 0.8, "{class}");
    }

    // Training again with other settings reuses every feature; the same seed gives the same bytes of weights.
    let again = json(&train(&["--seed", "3"]));
    assert_eq!(again["features_computed"], 0, "the backbone ran again");
    assert_eq!(again["history"], report["history"]);
    let mlp = json(&train(&["--seed", "4", "--hidden", "32", "--flip", "--epochs", "30"]));
    assert_eq!(mlp["features_computed"], 30, "only the mirror images of the training crops are new");
    // The default pools the last stages too; the last map's pool alone has a cache of its own.
    assert_eq!(wick_meta(&std::fs::read(&model).unwrap()).pooling, Pooling::Stages);
    let last = json(&train(&["--pooling", "last"]));
    assert_eq!(last["features_computed"], 36, "features of another pooling are computed, not reused");
    assert_eq!(wick_meta(&std::fs::read(&model).unwrap()).pooling, Pooling::Last);

    // An explicit validation folder replaces the split: all 12 (and the broken file) train, all 6 validate.
    let explicit = json(&train(&["--val", s(&held_out)]));
    assert_eq!(CLASSES.map(|c| explicit["train_images"][c].as_u64().unwrap()), [12, 12, 12]);
    assert_eq!(CLASSES.map(|c| explicit["validation_images"][c].as_u64().unwrap()), [6, 6, 6]);
    assert!(explicit["validation"]["accuracy"].as_f64().unwrap() >= 0.94, "{}", explicit["validation"]);

    // predict --model: the held-out brick crops come out as brick.
    let bricks: Vec<String> =
        (0..6).map(|i| held_out.join(format!("brick/{i:02}.png")).display().to_string()).collect();
    let mut args = vec!["predict", "--model", s(&model), "--top", "2", "--json"];
    args.extend(bricks.iter().map(String::as_str));
    let out = wick(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 6);
    for r in &records {
        assert_eq!(r["classes"].as_array().unwrap().len(), 2);
        assert_eq!(r["classes"][0]["label"], "brick", "{r}");
    }

    // The human-readable report has the table and the confusion matrix.
    let table = wick(&["eval", "--data", s(&held_out), "--model", s(&model), "--cache-dir", s(&cache)]);
    let table = text(&table.stdout);
    assert!(table.contains("precision") && table.contains("confusion matrix"), "{table}");
}

fn tiny_folder(name: &str, classes: &[&str]) -> Scratch {
    let dir = scratch(name);
    texture_folder(&dir, 0..300, 2, 5);
    for class in CLASSES {
        if !classes.contains(&class) {
            std::fs::remove_dir_all(dir.join(class)).unwrap();
        }
    }
    dir
}

#[test]
fn bad_training_folders_are_explained() {
    let out_dir = scratch("bad-out");
    let out_file = out_dir.join("never.wick");
    let out = s(&out_file);

    let one = tiny_folder("one-class", &["brick"]);
    refused(&["train", "--data", s(&one), "--out", out, "--no-cache"], "only one class (`brick`)");

    let empty_class = tiny_folder("empty-class", &["brick", "grass"]);
    std::fs::create_dir_all(empty_class.join("gravel")).unwrap();
    refused(&["train", "--data", s(&empty_class), "--out", out, "--no-cache"], "class `gravel` has no images");

    let no_images = scratch("no-images");
    refused(&["train", "--data", s(&no_images), "--out", out, "--no-cache"], "no class folders found");

    let unreadable_class = tiny_folder("unreadable-class", &["brick", "grass"]);
    std::fs::create_dir_all(unreadable_class.join("gravel")).unwrap();
    std::fs::write(unreadable_class.join("gravel/a.png"), b"not a png").unwrap();
    refused(
        &["train", "--data", s(&unreadable_class), "--out", out, "--no-cache"],
        "class `gravel` has no readable training images",
    );

    let blank = tiny_folder("blank-label", &["brick", "grass"]);
    std::fs::rename(blank.join("grass"), blank.join("  ")).unwrap();
    refused(&["train", "--data", s(&blank), "--out", out, "--no-cache"], "class name is empty");

    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let latin1 = tiny_folder("latin1-label", &["brick", "grass"]);
        std::fs::rename(latin1.join("grass"), latin1.join(std::ffi::OsStr::from_bytes(b"gr\xe4s"))).unwrap();
        refused(&["train", "--data", s(&latin1), "--out", out, "--no-cache"], "not valid UTF-8");
    }

    // A learning rate that blows up in the first epoch (one image per step): said so, nothing written.
    let two = tiny_folder("diverge", &["brick", "grass"]);
    let diverge = ["train", "--data", s(&two), "--out", out, "--no-cache", "--lr", "1e38"];
    refused(&[&diverge[..], &["--batch-size", "1"]].concat(), "lower learning rate");
    refused(&["train", "--data", s(&two), "--out", out, "--no-cache", "--batch-size", "0"], "batch size");
    // Settings the chosen solver does not use are refused, not ignored.
    let lbfgs = ["train", "--data", s(&two), "--out", out, "--no-cache", "--solver", "lbfgs"];
    refused(&[&lbfgs[..], &["--epochs", "5", "--lr", "0.1"]].concat(), "L-BFGS solver does not use --epochs, --lr");
    refused(&[&lbfgs[..], &["--hidden", "8"]].concat(), "L-BFGS solver trains linear heads only");
    refused(&["train", "--data", s(&two), "--out", out, "--dropout", "0.5"], "--dropout applies to the hidden layer");
    refused(&["train", "--data", s(&two), "--out", out, "--solver", "sgd"], "expected lbfgs or adamw");
    assert!(!out_file.exists(), "a failed training run wrote a model");

    // One step per epoch: epoch 1 is fine, epoch 2 blows up. Training stops, says so, keeps epoch 1.
    let run = wick(&[&diverge[..], &["--json"]].concat());
    let report = json(&run);
    assert!(text(&run.stderr).contains("training stopped in epoch 2"), "{}", text(&run.stderr));
    assert_eq!(report["stop"]["kind"], "diverged");
    assert_eq!(report["best_epoch"], 1);
    assert!(out_file.exists());
}

#[test]
fn bad_models_are_refused_and_never_overwritten() {
    let data = tiny_folder("models", &["brick", "grass"]);
    let dir = scratch("models-out");
    let model = dir.join("m.wick");
    json(&wick(&["train", "--data", s(&data), "--out", s(&model), "--no-cache", "--json", "--epochs", "5"]));

    // Corrupt: cut in half.
    let bytes = std::fs::read(&model).unwrap();
    let cut = dir.join("cut.wick");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = refused(&["eval", "--data", s(&data), "--model", s(&cut), "--no-cache"], "not a valid .wick model");
    assert!(err.contains("cut.wick"), "{err}");
    // The backbone file is not a classifier.
    let backbone = concat!(env!("CARGO_MANIFEST_DIR"), "/static/efficientnet-lite0-int8.safetensors");
    let photo = data.join("brick/00.png");
    refused(&["predict", "--model", backbone, s(&photo)], "backbone file, not a trained classifier");

    // Made for another backbone: the same bundle with a different backbone hash.
    let text_bytes = bytes.clone();
    let at = text_bytes.windows(9).position(|w| w == b"sha256\\\":").expect("backbone sha256 in the header");
    let mut other = bytes.clone();
    let digit = at + 11; // after `sha256\":\"`
    other[digit] = if other[digit] == b'0' { b'1' } else { b'0' };
    let foreign = dir.join("foreign.wick");
    std::fs::write(&foreign, &other).unwrap();
    refused(&["predict", "--model", s(&foreign), s(&photo)], "was trained on backbone");
    refused(
        &["eval", "--data", s(&data), "--model", s(&foreign), "--no-cache"],
        "use the backbone it was trained with",
    );

    // Eval on a folder with a class the model does not know.
    let extra = tiny_folder("extra-class", &["brick", "gravel"]);
    refused(&["eval", "--data", s(&extra), "--model", s(&model), "--no-cache"], "class `gravel` is not one of");

    // A failed training run leaves the existing model as it was.
    let one = tiny_folder("one-class-over", &["brick"]);
    refused(&["train", "--data", s(&one), "--out", s(&model), "--no-cache"], "only one class");
    assert_eq!(std::fs::read(&model).unwrap(), bytes);
}

/// `wick train --check` lists a grass crop filed under brick first, suggesting grass; `wick predict
/// --heatmap` draws a picture per image, never over an existing file, and explains a folder it
/// cannot make.
#[test]
fn check_finds_a_planted_image_and_heatmaps_are_drawn() {
    let dir = scratch("check");
    let (data, model, maps) = (dir.join("data"), dir.join("m.wick"), dir.join("maps"));
    texture_folder(&data, 0..300, 12, 5);
    std::fs::copy(data.join("grass/03.png"), data.join("brick/planted.png")).unwrap();
    std::fs::remove_file(data.join("grass/03.png")).unwrap();
    let report = json(&wick(&["train", "--data", s(&data), "--out", s(&model), "--check", "--json"]));
    let check = report["check"].as_array().unwrap();
    assert_eq!(check.len(), 20, "{report}");
    assert!(check[0]["path"].as_str().unwrap().ends_with("planted.png"), "{}", check[0]);
    assert_eq!((check[0]["given"].as_str(), check[0]["suggested"].as_str()), (Some("brick"), Some("grass")));
    assert_eq!(check[0]["probably_mislabelled"], true);
    let table = text(&wick(&["train", "--data", s(&data), "--out", s(&model), "--check"]).stdout);
    assert!(table.contains("labels to check") && table.contains("planted.png"), "{table}");

    let photo = data.join("grass/00.png");
    for expected in ["00.heatmap.png", "00-2.heatmap.png"] {
        let out = wick(&["predict", "--model", s(&model), "--heatmap", s(&maps), "--json", s(&photo)]);
        let record: serde_json::Value = serde_json::from_slice(&json_line(&out)).unwrap();
        assert_eq!(record["heatmap"], s(&maps.join(expected)));
        let drawn = image::open(maps.join(expected)).unwrap();
        assert_eq!((drawn.width(), drawn.height()), (224, 224));
    }
    let blocked = dir.join("a-file");
    std::fs::write(&blocked, b"mine").unwrap();
    let out = wick(&["predict", "--model", s(&model), "--heatmap", s(&blocked), s(&photo)]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot create the heatmap folder"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&blocked).unwrap(), b"mine");
}

fn json_line(out: &Output) -> Vec<u8> {
    assert!(out.status.success(), "wick failed: {}", text(&out.stderr));
    out.stdout.clone()
}

/// `wick bench --train-layers` refuses a batch of no images and a depth it cannot train, saying so
/// (a batch of 0 was a tensor error with a backtrace).
#[test]
fn the_layer_training_bench_refuses_what_it_cannot_time() {
    refused(&["bench", "--train-layers", "1", "--batch", "0"], "--batch must be at least 1");
    refused(&["bench", "--train-layers", "9", "--batch", "2"], "the layers to train must be 1 to 3");
    refused(&["bench", "--layers", "--iters", "0"], "--iters must be at least 1");
}
