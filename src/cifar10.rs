//! CIFAR-10 in its official binary form (`cifar-10-batches-bin`): `data_batch_1.bin` …
//! `data_batch_5.bin` (50 000 training images) and `test_batch.bin` (10 000). Every record is one
//! label byte (0–9) and 3 072 pixel bytes: the red, green and blue 32×32 planes, row by row.

use image::RgbImage;

use crate::error::{invalid, Result};

pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
pub const SIDE: u32 = 32;
pub const PIXELS: usize = 3 * (SIDE * SIDE) as usize;
pub const RECORD: usize = 1 + PIXELS;
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub const TEST_FILE: &str = "test_batch.bin";

/// Images (planar RGB, [`PIXELS`] bytes each) with their labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cifar10 {
    pub labels: Vec<u8>,
    pub pixels: Vec<u8>,
}

impl Cifar10 {
    /// Parses one batch file's bytes; `name` is used in error messages.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
            return Err(invalid!(
                "{name}: {} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated, or not the binary version?)",
                bytes.len()
            ));
        }
        let mut set = Self::default();
        for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
            if record[0] as usize >= CLASSES.len() {
                return Err(invalid!("{name}: record {i} has label {} (CIFAR-10 labels are 0–9)", record[0]));
            }
            set.labels.push(record[0]);
            set.pixels.extend_from_slice(&record[1..]);
        }
        Ok(set)
    }

    /// The binary format's bytes (what [`Cifar10::parse`] reads).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * RECORD);
        for (label, pixels) in self.labels.iter().zip(self.pixels.chunks_exact(PIXELS)) {
            out.push(*label);
            out.extend_from_slice(pixels);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        self.labels.truncate(n);
        self.pixels.truncate(n * PIXELS);
    }

    pub fn extend(&mut self, other: Self) {
        self.labels.extend(other.labels);
        self.pixels.extend(other.pixels);
    }

    /// Image `i`'s planar bytes.
    pub fn planes(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..][..PIXELS]
    }

    /// Image `i` as an RGB image.
    pub fn image(&self, i: usize) -> RgbImage {
        let planes = self.planes(i);
        let plane = (SIDE * SIDE) as usize;
        RgbImage::from_fn(SIDE, SIDE, |x, y| {
            let p = (y * SIDE + x) as usize;
            image::Rgb([planes[p], planes[plane + p], planes[2 * plane + p]])
        })
    }
}

/// Reads the five training batches and the test batch from `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: &std::path::Path) -> Result<(Cifar10, Cifar10)> {
    let read = |name: &str| -> Result<Cifar10> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| {
            invalid!(
                "{}: cannot read it ({e}); --data must be the `cifar-10-batches-bin` folder of the official binary \
                 version, holding {} and {TEST_FILE}",
                path.display(),
                TRAIN_FILES.join(", ")
            )
        })?;
        Cifar10::parse(&bytes, &path.display().to_string())
    };
    let mut train = Cifar10::default();
    for name in TRAIN_FILES {
        train.extend(read(name)?);
    }
    Ok((train, read(TEST_FILE)?))
}
