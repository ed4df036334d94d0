//! CIFAR-10 in its official binary form (`cifar-10-batches-bin`): `data_batch_1.bin` …
//! `data_batch_5.bin` (50 000 training images) and `test_batch.bin` (10 000). Every record is one
//! label byte (0–9) and 3 072 pixel bytes: the red, green and blue 32×32 planes, row by row. Copies
//! as images in class folders (`train/<class>/*.jpg`) load into the same form.

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

/// Reads CIFAR-10 from `dir` in either layout it ships in: the official binary version (the five
/// training batches and the test batch), or images in class folders, `train/<class>/*` (and
/// `test/<class>/*` if there is one), e.g. a JPEG copy. Without a `test/` folder, the last
/// [`HELD_OUT_SHARE`] of each class's files (sorted by name) become the test set.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: &std::path::Path) -> Result<(Cifar10, Cifar10)> {
    if dir.join("train").is_dir() && !dir.join(TRAIN_FILES[0]).exists() {
        return load_image_folders(dir);
    }
    let read = |name: &str| -> Result<Cifar10> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| {
            invalid!(
                "{}: cannot read it ({e}); --data must be the `cifar-10-batches-bin` folder of the official binary \
                 version, holding {} and {TEST_FILE}, or a folder of images in class folders, train/<class>/",
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

/// The share of each class's training files held out as the test set when an image-folder copy has
/// no `test/` folder (10,000 of the 50,000, as many as the official test set).
pub const HELD_OUT_SHARE: f32 = 0.2;

/// `dir/train/<class>/*` (and `dir/test/<class>/*`): 32×32 images, the class folders named as
/// [`CLASSES`]. The images are interleaved class by class, so that `--limit` keeps the classes balanced.
#[cfg(not(target_arch = "wasm32"))]
fn load_image_folders(dir: &std::path::Path) -> Result<(Cifar10, Cifar10)> {
    use crate::data::dataset::scan_folder;
    use crate::data::preprocess::decode_image;

    let read_split = |split: &std::path::Path| -> Result<Vec<Vec<std::path::PathBuf>>> {
        let folder = scan_folder(split)?;
        if let Some((path, why)) = folder.skipped.first() {
            return Err(invalid!("{}: {why}; a CIFAR-10 folder holds only image files", path.display()));
        }
        let mut by_class = vec![Vec::new(); CLASSES.len()];
        let mut indices = Vec::with_capacity(folder.labels.len());
        for label in &folder.labels {
            let index = CLASSES.iter().position(|c| c == label).ok_or_else(|| {
                invalid!(
                    "{}: `{label}` is not a CIFAR-10 class (expected folders named {})",
                    split.join(label).display(),
                    CLASSES.join(", ")
                )
            })?;
            indices.push(index);
        }
        for sample in folder.samples {
            by_class[indices[sample.label as usize]].push(sample.path);
        }
        if let Some(missing) = by_class.iter().position(|files| files.is_empty()) {
            return Err(invalid!("{}: the class folder `{}` is missing", split.display(), CLASSES[missing]));
        }
        Ok(by_class)
    };
    let decode = |by_class: &[Vec<std::path::PathBuf>]| -> Result<Cifar10> {
        let mut set = Cifar10::default();
        let longest = by_class.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for (label, files) in by_class.iter().enumerate() {
                let Some(path) = files.get(i) else { continue };
                let bytes = std::fs::read(path).map_err(|e| invalid!("{}: cannot read it: {e}", path.display()))?;
                let image = decode_image(&bytes).map_err(|e| invalid!("{}: {e}", path.display()))?;
                if image.dimensions() != (SIDE, SIDE) {
                    let (w, h) = image.dimensions();
                    return Err(invalid!("{}: {w} × {h} pixels; CIFAR-10 images are 32 × 32", path.display()));
                }
                set.labels.push(label as u8);
                for channel in 0..3 {
                    set.pixels.extend(image.pixels().map(|p| p[channel]));
                }
            }
        }
        Ok(set)
    };
    let mut train_files = read_split(&dir.join("train"))?;
    let test_files = if dir.join("test").is_dir() {
        read_split(&dir.join("test"))?
    } else {
        train_files
            .iter_mut()
            .map(|files| {
                let held_out = ((files.len() as f32 * HELD_OUT_SHARE).round() as usize).min(files.len() - 1);
                files.split_off(files.len() - held_out)
            })
            .collect()
    };
    Ok((decode(&train_files)?, decode(&test_files)?))
}

/// The official binary version, and the MD5 its page publishes.
pub const ARCHIVE_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Its size in bytes: a download is cut off past it.
pub const ARCHIVE_BYTES: u64 = 170_052_171;
/// The folder the archive unpacks to.
pub const ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";

/// `wick cifar10 --download`: fetch the archive, check it, unpack the six batch files.
#[cfg(feature = "download")]
pub mod download {
    use std::io::Read;
    use std::path::Path;
    use std::time::Duration;

    use md5::{Digest, Md5};

    use super::{ARCHIVE_FOLDER, TEST_FILE, TRAIN_FILES};
    use crate::error::{invalid, Result};

    /// Whether `dir` already holds every batch file.
    pub fn is_complete(dir: &Path) -> bool {
        TRAIN_FILES.iter().chain([&TEST_FILE]).all(|name| dir.join(name).is_file())
    }

    /// How much a download may take, and how long the server may go quiet.
    #[derive(Debug, Clone, Copy)]
    pub struct FetchLimits {
        /// The body is refused past this many bytes (a lying `Content-Length` before any is read).
        pub max_bytes: u64,
        /// Each read of the connection (headers or body) must bring something within this time.
        pub read_timeout: Duration,
    }

    impl Default for FetchLimits {
        /// The archive's known size; a minute of silence.
        fn default() -> Self {
            Self { max_bytes: super::ARCHIVE_BYTES, read_timeout: Duration::from_secs(60) }
        }
    }

    /// The archive at `url`, in memory (≈ 170 MB); `on_progress(received, total)` as it arrives.
    pub fn fetch(url: &str, limits: FetchLimits, mut on_progress: impl FnMut(u64, Option<u64>)) -> Result<Vec<u8>> {
        let offline = |e: &dyn std::fmt::Display| {
            invalid!(
                "cannot download CIFAR-10 from {url}: {e}. Without internet access, fetch the binary version \
                 (cifar-10-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html) elsewhere, unpack it \
                 and pass its {ARCHIVE_FOLDER} folder as --data"
            )
        };
        let too_large = |size: u64| {
            invalid!(
                "{url} sends {size} bytes or more, but the CIFAR-10 archive is {} bytes: not the archive \
                 (nothing was written)",
                limits.max_bytes
            )
        };
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(limits.read_timeout))
            .build()
            .new_agent();
        let response = agent.get(url).call().map_err(|e| offline(&e))?;
        let total = response.body().content_length();
        if let Some(size) = total.filter(|&size| size > limits.max_bytes) {
            return Err(too_large(size));
        }
        let mut reader = response.into_body().into_reader();
        let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut chunk).map_err(|e| offline(&e))?;
            if n == 0 {
                break;
            }
            if (bytes.len() + n) as u64 > limits.max_bytes {
                return Err(too_large((bytes.len() + n) as u64));
            }
            bytes.extend_from_slice(&chunk[..n]);
            on_progress(bytes.len() as u64, total);
        }
        Ok(bytes)
    }

    pub fn check_md5(bytes: &[u8], expected: &str) -> Result<()> {
        let actual = crate::util::hex(&Md5::digest(bytes));
        if actual != expected {
            return Err(invalid!(
                "the downloaded archive is damaged or not CIFAR-10's: its MD5 is {actual}, expected {expected} \
                 ({} bytes; nothing was written)",
                bytes.len()
            ));
        }
        Ok(())
    }

    /// Writes the six batch files of a `cifar-10-binary.tar.gz` into `dir`, each through a temporary
    /// file and a rename (an interrupted unpack leaves no half file); other entries are ignored.
    pub fn unpack(archive: &[u8], dir: &Path) -> Result<()> {
        let unreadable = |e: std::io::Error| invalid!("the CIFAR-10 archive cannot be unpacked: {e}");
        std::fs::create_dir_all(dir).map_err(|e| invalid!("{}: cannot create it: {e}", dir.display()))?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
        let mut found = Vec::new();
        for entry in tar.entries().map_err(unreadable)? {
            let mut entry = entry.map_err(unreadable)?;
            let path = entry.path().map_err(unreadable)?.into_owned();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            if !TRAIN_FILES.contains(&name.as_str()) && name != TEST_FILE {
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(unreadable)?;
            super::Cifar10::parse(&bytes, &format!("{name} in the archive"))?;
            let (tmp, target) = (dir.join(format!("{name}.part")), dir.join(&name));
            std::fs::write(&tmp, &bytes)
                .and_then(|()| std::fs::rename(&tmp, &target))
                .map_err(|e| invalid!("{}: cannot write it: {e}", target.display()))?;
            found.push(name);
        }
        let missing: Vec<&str> =
            TRAIN_FILES.iter().chain([&TEST_FILE]).copied().filter(|n| !found.iter().any(|f| f == n)).collect();
        if !missing.is_empty() {
            return Err(invalid!("the CIFAR-10 archive lacks {}", missing.join(", ")));
        }
        Ok(())
    }
}
