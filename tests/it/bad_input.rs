//! Bad input through the real `wick` binary: each gets a clear message naming the file and the problem,
//! and good inputs next to it are still processed.

use crate::common::{scratch, wick, Scratch};
use std::path::{Path, PathBuf};
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file `name` holding `bytes`, in a scratch folder of its own (kept alive by the returned guard).
fn scratch_file(name: &str, bytes: &[u8]) -> (Scratch, PathBuf) {
    let dir = scratch(name);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn assert_refused(args: &[&str], file: &Path, problem: &str) {
    let out = wick(args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(err.contains(&file.display().to_string()), "message does not name {}: {err}", file.display());
    assert!(err.contains(problem), "message does not say `{problem}`: {err}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A well-formed PNG (correct CRCs) whose header claims `w × h` pixels but holds almost no data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    for (kind, data) in [(&b"IDAT"[..], &b"\x78\x9c\x63\x00\x00\x00\x01\x00\x01"[..]), (b"IEND", b"")] {
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}

#[test]
fn non_image_file() {
    let (_dir, f) = scratch_file("notes.txt", b"this is not a picture\n");
    assert_refused(&["predict", f.to_str().unwrap()], &f, "not an image");
}

#[test]
fn zero_byte_file() {
    let (_dir, f) = scratch_file("empty.jpg", b"");
    assert_refused(&["predict", f.to_str().unwrap()], &f, "empty (0 bytes)");
}

#[test]
fn truncated_jpeg_is_reported_and_the_good_image_still_classified() {
    let jpeg = std::fs::read(fixture("rocket.jpg")).unwrap();
    let (_dir, f) = scratch_file("half.jpg", &jpeg[..jpeg.len() / 3]);
    let good = fixture("coffee.png");
    let out = wick(&["predict", "--json", f.to_str().unwrap(), good.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("half.jpg") && err.contains("corrupt or truncated"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("coffee.png") && stdout.contains("espresso"), "good image not classified: {stdout}");
}

#[test]
fn huge_image_header_is_refused_before_decoding() {
    let (_dir, f) = scratch_file("huge.png", &png_header(100_000, 100_000));
    assert_refused(&["predict", f.to_str().unwrap()], &f, "100000 × 100000 pixels, larger than the limit");
}

#[test]
fn truncated_model_file() {
    let model = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("static/efficientnet-lite0-int8.safetensors"))
        .unwrap();
    let (_dir, f) = scratch_file("cut.safetensors", &model[..model.len() / 2]);
    let img = fixture("coffee.png");
    assert_refused(
        &["predict", "--backbone", f.to_str().unwrap(), img.to_str().unwrap()],
        &f,
        "not a valid Wick backbone file",
    );
}

#[test]
fn wrong_model_file() {
    let img = fixture("coffee.png");
    // An image given as the model.
    assert_refused(
        &["predict", "--backbone", img.to_str().unwrap(), img.to_str().unwrap()],
        &img,
        "not a valid Wick backbone file",
    );
    // A safetensors file without Wick's metadata.
    let mut other = br#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.to_vec();
    while !other.len().is_multiple_of(8) {
        other.push(b' ');
    }
    let mut bytes = (other.len() as u64).to_le_bytes().to_vec();
    bytes.extend(other);
    bytes.extend([0u8; 4]);
    let (_dir, f) = scratch_file("other.safetensors", &bytes);
    assert_refused(&["predict", "--backbone", f.to_str().unwrap(), img.to_str().unwrap()], &f, "no Wick metadata");
}

/// The five pickles of a legacy checkpoint whose state dict calls `os.system`.
fn checkpoint_with_global(module: &str, name: &str) -> Vec<u8> {
    let mut b = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec(); // magic
    b.extend(b"\x80\x02M\xe9\x03."); // protocol version 1001
    b.extend(b"\x80\x02}q\x00."); // sys info
    b.extend(b"\x80\x02c");
    b.extend(format!("{module}\n{name}\n").as_bytes());
    b.extend(b"q\x00X\x05\x00\x00\x00touchq\x01\x85q\x02Rq\x03.");
    b
}

#[test]
fn checkpoint_with_forbidden_global_is_refused_not_run() {
    let (_dir, f) = scratch_file("evil.pth", &checkpoint_with_global("os", "system"));
    let img = fixture("coffee.png");
    assert_refused(
        &["predict", "--pth", f.to_str().unwrap(), img.to_str().unwrap()],
        &f,
        "refusing pickle global `os.system`",
    );
    let out = f.with_extension("safetensors");
    assert_refused(&["convert", f.to_str().unwrap(), "--out", out.to_str().unwrap()], &f, "refusing pickle global");
    assert!(!out.exists());
}

#[test]
fn not_a_checkpoint() {
    let (_dir, f) = scratch_file("random.pth", &[7u8; 64]);
    let out = f.with_file_name("converted.safetensors");
    assert_refused(
        &["convert", f.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &f,
        "not a legacy torch checkpoint",
    );
    assert!(!out.exists(), "a failed convert wrote --out");
    // A user's own file at --out is refused before anything is read, and stays as it was.
    let (_dir, keep) = scratch_file("keep.safetensors", b"the user's existing file");
    assert_refused(
        &["convert", f.to_str().unwrap(), "--out", keep.to_str().unwrap()],
        &keep,
        "exists and is not a file of the kind Wick writes there",
    );
    assert_eq!(std::fs::read(&keep).unwrap(), b"the user's existing file", "a failed convert touched --out");
}

/// `--precision` takes int8 or f32 for running the backbone and f32 or bf16 for fine-tuning; the
/// other way round is refused with the reason, before any work.
#[test]
fn precision_that_does_not_fit_the_command_is_refused() {
    let img = fixture("coffee.png");
    let out = wick(&["predict", "--precision", "bf16", img.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--precision bf16 is for fine-tuning"), "{}", stderr(&out));

    let out = wick(&["bench", "--finetune", "--precision", "int8", "--iters", "1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--precision int8 is for running the backbone"), "{}", stderr(&out));

    let out = wick(&["predict", "--precision", "int4", img.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("int4"), "{}", stderr(&out));
}

/// Both arithmetics give the same answer on a clear-cut photo.
#[test]
fn predict_in_f32_and_int8_agree_on_a_clear_photo() {
    let img = fixture("coffee.png");
    for precision in ["int8", "f32"] {
        let out = wick(&["predict", "--json", "--precision", precision, img.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("espresso"), "{precision}");
    }
}
