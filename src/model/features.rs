//! Backbone features of images, computed once and cached: re-training with other settings never runs
//! the backbone again.
//!
//! A cached feature vector is keyed by the sha256 of the image file's bytes and the [`View`] (as is,
//! or mirrored), inside a cache that belongs to one backbone (its sha256), one preprocessing, one
//! precision and one pooling.
//! Renaming or moving an image keeps its cache entry; editing it makes a new one.
//!
//! Cache file format, version 1 (native builds; one file per backbone and preprocessing, by default
//! under `$XDG_CACHE_HOME/wick/features/` or `~/.cache/wick/features/`):
//!
//! | bytes        | content                                                                 |
//! |--------------|-------------------------------------------------------------------------|
//! | 8            | magic `WICKFEAT`                                                        |
//! | 4            | format version, u32 little-endian (1)                                   |
//! | 4            | header length `H`, u32 little-endian                                    |
//! | `H`          | JSON [`CacheHeader`]: backbone id and sha256, preprocessing, feature dim |
//! | 33 + 4·dim … | records: 32-byte sha256 of the image file, 1 byte view (0 as is, 1 mirrored), dim × f32 LE |
//!
//! Records are appended as they are computed, so an interrupted run keeps what it finished; a partial
//! record at the end (a write cut short) is ignored and overwritten by the next append.

use std::borrow::Borrow;
use std::collections::HashMap;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backbone::Pooling;
use crate::data::preprocess::Preprocess;
use crate::error::{invalid, Result};
use crate::formats::{f32_bytes, f32_values};
use crate::infer::MatmulPrecision;
use crate::model::Backbone;

pub const CACHE_MAGIC: &[u8; 8] = b"WICKFEAT";
pub const CACHE_VERSION: u32 = 1;

/// Which version of an image the features describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum View {
    AsIs = 0,
    /// Mirrored left-right: the flip augmentation.
    Mirrored = 1,
}

pub type ImageKey = [u8; 32];

pub fn image_key(file_bytes: &[u8]) -> ImageKey {
    Sha256::digest(file_bytes).into()
}

/// The features of `images` in `view`, one vector per image.
pub fn compute<I: Borrow<RgbImage> + Sync>(backbone: &Backbone, images: &[I], view: View) -> Result<Vec<Vec<f32>>> {
    let input = match view {
        View::AsIs => backbone.input_tensor(images)?,
        View::Mirrored => {
            let mirrored: Vec<RgbImage> = images.iter().map(|i| image::imageops::flip_horizontal(i.borrow())).collect();
            backbone.input_tensor(&mirrored)?
        }
    };
    Ok(backbone.features(&input)?.to_vec2::<f32>()?)
}

/// What a cache's features were computed with; a cache only serves the backbone and preprocessing
/// it was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheHeader {
    pub backbone: String,
    pub backbone_sha256: String,
    pub preprocess: Preprocess,
    pub dim: usize,
    /// The products the features came from (caches written before int8 products were f32's).
    #[serde(default = "f32_precision")]
    pub precision: MatmulPrecision,
    /// Which maps the features average (caches written before pooling was a choice: the last's).
    #[serde(default)]
    pub pooling: Pooling,
}

fn f32_precision() -> MatmulPrecision {
    MatmulPrecision::F32
}

impl CacheHeader {
    pub fn of(backbone: &Backbone) -> Self {
        Self {
            backbone: backbone.id.clone(),
            backbone_sha256: backbone.sha256.clone(),
            preprocess: backbone.meta.preprocess.clone(),
            dim: backbone.feature_dim(),
            precision: backbone.precision(),
            pooling: backbone.pooling(),
        }
    }

    /// A file name unique to this backbone, preprocessing, precision and pooling (f32's and the
    /// last map's pool are the names caches had before those were choices, so they still serve).
    pub fn file_name(&self) -> String {
        let preprocess = serde_json::to_vec(&self.preprocess).expect("preprocess serialises");
        let hash = crate::util::sha256_hex(&preprocess);
        let precision = match self.precision {
            MatmulPrecision::F32 => "",
            MatmulPrecision::Int8 => "-int8",
        };
        let pooling = match self.pooling {
            Pooling::Last => "",
            Pooling::Stages => "-stages",
        };
        format!("{}-{}{precision}{pooling}.wickfeat", self.backbone, &hash[..12])
    }

    fn record_len(&self) -> usize {
        33 + 4 * self.dim
    }
}

/// Features in memory, with the cache file's encoding.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    pub header: CacheHeader,
    entries: HashMap<(ImageKey, View), Vec<f32>>,
}

impl FeatureCache {
    pub fn new(header: CacheHeader) -> Self {
        Self { header, entries: HashMap::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &ImageKey, view: View) -> Option<&[f32]> {
        self.entries.get(&(*key, view)).map(Vec::as_slice)
    }

    pub fn insert(&mut self, key: ImageKey, view: View, features: Vec<f32>) {
        assert_eq!(features.len(), self.header.dim, "feature length");
        self.entries.insert((key, view), features);
    }

    /// The file's preamble: magic, version, header.
    pub fn encode_preamble(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("header serialises");
        let mut out = CACHE_MAGIC.to_vec();
        out.extend_from_slice(&CACHE_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out
    }

    pub fn encode_record(key: &ImageKey, view: View, features: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + 4 * features.len());
        out.extend_from_slice(key);
        out.push(view as u8);
        out.extend(f32_bytes(features));
        out
    }

    /// Parses a cache file. Returns the cache and the length of its whole records (a partial last
    /// record is dropped). Fails if the file is not a cache, or was made for another backbone.
    pub fn decode(bytes: &[u8], expected: &CacheHeader) -> Result<(Self, usize)> {
        let bad = |why: &str| invalid!("not a valid Wick feature cache: {why}");
        if bytes.len() < 16 || &bytes[..8] != CACHE_MAGIC {
            return Err(bad("wrong magic bytes"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if version != CACHE_VERSION {
            return Err(bad(&format!("version {version}, this build reads version {CACHE_VERSION}")));
        }
        let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let start =
            header_len.checked_add(16).filter(|&end| end <= bytes.len()).ok_or_else(|| bad("truncated header"))?;
        let header_bytes = &bytes[16..start];
        let header: CacheHeader = serde_json::from_slice(header_bytes).map_err(|e| bad(&e.to_string()))?;
        if header.precision != expected.precision && header.backbone == expected.backbone {
            let (made, wanted) = (header.precision.name(), expected.precision.name());
            return Err(bad(&format!("it holds features from {made} products, not {wanted}")));
        }
        if header.pooling != expected.pooling && header.backbone == expected.backbone {
            let (made, wanted) = (header.pooling.name(), expected.pooling.name());
            return Err(bad(&format!("it holds features of pooling `{made}`, not `{wanted}`")));
        }
        if &header != expected {
            return Err(bad(&format!("it was made for backbone {}, not {}", header.backbone, expected.backbone)));
        }
        let mut cache = Self::new(header);
        let record_len = cache.header.record_len();
        let whole = (bytes.len() - start) / record_len;
        for record in bytes[start..start + whole * record_len].chunks_exact(record_len) {
            let key: ImageKey = record[..32].try_into().unwrap();
            let view = match record[32] {
                0 => View::AsIs,
                1 => View::Mirrored,
                other => return Err(bad(&format!("unknown view {other}"))),
            };
            let features = f32_values(&record[33..]);
            if features.iter().any(|v| !v.is_finite()) {
                return Err(bad("a record holds NaN or infinite values"));
            }
            cache.entries.insert((key, view), features);
        }
        Ok((cache, start + whole * record_len))
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use file::{default_cache_dir, extract_files, extract_images, CacheFile, ImageFeatures};

#[cfg(not(target_arch = "wasm32"))]
mod file {
    use std::fs::{File, OpenOptions};
    use std::io::{Seek, SeekFrom, Write};
    use std::path::{Path, PathBuf};

    use rayon::prelude::*;

    use super::*;
    use crate::data::preprocess::{decode_image, decode_waves, decoded_bytes, DECODE_BUDGET};
    use crate::error::InFile;

    /// `$XDG_CACHE_HOME/wick/features`, else `~/.cache/wick/features`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("wick").join("features"))
    }

    /// A [`FeatureCache`] backed by an append-only file (or by nothing, with `--no-cache`).
    pub struct CacheFile {
        pub cache: FeatureCache,
        file: Option<(PathBuf, File)>,
    }

    impl CacheFile {
        /// Opens (or creates) the cache for `header` in `dir`. Returns a note when an unusable file was
        /// replaced: the cache only holds derived data, so starting it afresh loses nothing.
        pub fn open(dir: &Path, header: CacheHeader) -> Result<(Self, Option<String>)> {
            std::fs::create_dir_all(dir).in_file(dir.display())?;
            let path = dir.join(header.file_name());
            let existing = match std::fs::read(&path) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).in_file(path.display()),
            };
            let mut note = None;
            let parsed = existing.map(|bytes| FeatureCache::decode(&bytes, &header));
            let (cache, valid_len) = match parsed {
                Some(Ok(found)) => found,
                Some(Err(e)) => {
                    note = Some(format!(
                        "{}: {e}; it is replaced by a new cache (it only holds features that are computed again; \
                         if this repeats, delete the file or train with --no-cache)",
                        path.display()
                    ));
                    (FeatureCache::new(header), 0)
                }
                None => (FeatureCache::new(header), 0),
            };
            let mut file =
                OpenOptions::new().create(true).write(true).truncate(false).open(&path).in_file(path.display())?;
            if valid_len == 0 {
                file.set_len(0).in_file(path.display())?;
                file.write_all(&cache.encode_preamble()).in_file(path.display())?;
            } else {
                file.set_len(valid_len as u64).in_file(path.display())?;
                file.seek(SeekFrom::End(0)).in_file(path.display())?;
            }
            Ok((Self { cache, file: Some((path, file)) }, note))
        }

        /// A cache that lives only as long as this process.
        pub fn in_memory(header: CacheHeader) -> Self {
            Self { cache: FeatureCache::new(header), file: None }
        }

        pub fn path(&self) -> Option<&Path> {
            self.file.as_ref().map(|(path, _)| path.as_path())
        }

        pub fn insert(&mut self, key: ImageKey, view: View, features: Vec<f32>) -> Result<()> {
            if let Some((path, file)) = &mut self.file {
                file.write_all(&FeatureCache::encode_record(&key, view, &features)).in_file(path.display())?;
            }
            self.cache.insert(key, view, features);
            Ok(())
        }
    }

    /// Features of in-memory images (`image(i)` makes image `i`, `keys[i]` identifies it, e.g. the
    /// sha256 of its pixels) in `view`, from the cache where it has them; new ones are computed in
    /// chunks and added to the cache. `progress` is called with the number of images done so far.
    pub fn extract_images(
        backbone: &Backbone,
        cache: &mut CacheFile,
        keys: &[ImageKey],
        image: impl Fn(usize) -> RgbImage + Sync,
        view: View,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        const CHUNK: usize = 64;
        for start in (0..keys.len()).step_by(CHUNK) {
            let missing: Vec<usize> = (start..(start + CHUNK).min(keys.len()))
                .filter(|&i| cache.cache.get(&keys[i], view).is_none())
                .collect();
            if !missing.is_empty() {
                let images: Vec<RgbImage> = missing.par_iter().map(|&i| image(i)).collect();
                for (&i, features) in missing.iter().zip(compute(backbone, &images, view)?) {
                    cache.insert(keys[i], view, features)?;
                }
            }
            progress((start + CHUNK).min(keys.len()));
        }
        Ok(keys.iter().map(|key| cache.cache.get(key, view).expect("computed above").to_vec()).collect())
    }

    /// One image's features: as is, and mirrored when asked for.
    #[derive(Debug, Clone, PartialEq)]
    pub struct ImageFeatures {
        pub as_is: Vec<f32>,
        pub mirrored: Option<Vec<f32>>,
    }

    /// Features of image files, from the cache where it has them; new ones are computed in chunks and
    /// added to the cache. `requests` are (file, also mirrored?). A file that cannot be read or
    /// decoded gets its error (naming the file) in its slot; the others go on. `progress` is called
    /// with the number of files done so far.
    pub fn extract_files(
        backbone: &Backbone,
        cache: &mut CacheFile,
        requests: &[(PathBuf, bool)],
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Result<ImageFeatures>>> {
        const CHUNK: usize = 16;
        let mut results = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(CHUNK) {
            // Read and hash in parallel; only where the cache misses is the image decoded.
            let loaded: Vec<Result<(ImageKey, Option<Vec<u8>>)>> = chunk
                .par_iter()
                .map(|(path, mirrored)| {
                    let bytes = std::fs::read(path).in_file(path.display())?;
                    let key = image_key(&bytes);
                    let cached = cache.cache.get(&key, View::AsIs).is_some()
                        && (!mirrored || cache.cache.get(&key, View::Mirrored).is_some());
                    Ok((key, (!cached).then_some(bytes)))
                })
                .collect();
            let misses: Vec<(usize, ImageKey, &[u8])> = loaded
                .iter()
                .enumerate()
                .filter_map(|(i, l)| match l {
                    Ok((key, Some(bytes))) => Some((i, *key, bytes.as_slice())),
                    _ => None,
                })
                .collect();
            let mut failed: Vec<Option<crate::Error>> = (0..chunk.len()).map(|_| None).collect();
            for wave in waves_of(&misses) {
                let decoded: Vec<(usize, ImageKey, Result<RgbImage>)> = wave
                    .par_iter()
                    .map(|&(i, key, bytes)| (i, key, decode_image(bytes).in_file(chunk[i].0.display())))
                    .collect();
                for view in [View::AsIs, View::Mirrored] {
                    let (keys, images): (Vec<ImageKey>, Vec<&RgbImage>) = decoded
                        .iter()
                        .filter(|(i, key, _)| {
                            (view == View::AsIs || chunk[*i].1) && cache.cache.get(key, view).is_none()
                        })
                        .filter_map(|(_, key, image)| Some((*key, image.as_ref().ok()?)))
                        .unzip();
                    if images.is_empty() {
                        continue;
                    }
                    for (key, features) in keys.into_iter().zip(compute(backbone, &images, view)?) {
                        cache.insert(key, view, features)?;
                    }
                }
                for (i, _, image) in decoded {
                    failed[i] = image.err();
                }
            }
            let cached = |key: &ImageKey, view: View| cache.cache.get(key, view).expect("computed above").to_vec();
            for ((loaded, (_, mirrored)), failure) in loaded.into_iter().zip(chunk).zip(failed) {
                results.push(loaded.and_then(|(key, _)| match failure {
                    Some(e) => Err(e),
                    None => Ok(ImageFeatures {
                        as_is: cached(&key, View::AsIs),
                        mirrored: mirrored.then(|| cached(&key, View::Mirrored)),
                    }),
                }));
            }
            progress(results.len());
        }
        Ok(results)
    }

    /// Decoded images held at once are bounded by their size, not their count: sixteen 64-megapixel
    /// PNGs decoded together would take gigabytes ([`decode_waves`]).
    fn waves_of<'a>(misses: &[(usize, ImageKey, &'a [u8])]) -> Vec<Vec<(usize, ImageKey, &'a [u8])>> {
        let costs: Vec<u64> = misses.iter().map(|m| decoded_bytes(m.2)).collect();
        decode_waves(&costs, DECODE_BUDGET).into_iter().map(|wave| misses[wave].to_vec()).collect()
    }
}
