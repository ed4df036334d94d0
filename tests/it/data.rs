//! Labelled folders, the stratified split and the feature cache.

use crate::common::scratch;
use std::path::{Path, PathBuf};
use wick::infer::MatmulPrecision;

use candle_core::Device;
use wick::data::dataset::{check_every_class_has_samples, check_labels, scan_folder, stratified_split};
use wick::data::preprocess::Preprocess;
use wick::model::features::{extract_files, CacheFile, CacheHeader, FeatureCache, View};
use wick::model::Backbone;

fn touch(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn folders_are_scanned_in_name_order() {
    let dir = scratch("scan");
    for (class, file) in [("zebra", "b.png"), ("zebra", "a.png"), ("ant", "x.jpg"), ("ant", ".hidden")] {
        touch(&dir.join(class).join(file), b"?");
    }
    touch(&dir.join("notes.txt"), b"top-level files are not classes");
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    let folder = scan_folder(&dir).unwrap();
    assert_eq!(folder.labels, ["ant", "zebra"]);
    let files: Vec<(String, u32)> =
        folder.samples.iter().map(|s| (s.path.file_name().unwrap().to_string_lossy().into_owned(), s.label)).collect();
    assert_eq!(files, [("x.jpg".into(), 0), ("a.png".into(), 1), ("b.png".into(), 1)]);
}

#[test]
fn bad_folders_are_refused_with_the_reason() {
    let refuse = |dir: &Path| scan_folder(dir).expect_err("refused").to_string();
    let missing = std::env::temp_dir().join("wick-no-such-folder");
    assert!(refuse(&missing).contains("no such folder"));

    let empty = scratch("no-classes");
    touch(&empty.join("loose.jpg"), b"?");
    let err = refuse(&empty);
    assert!(err.contains("no class folders") && err.contains("<class name>/<image files>"), "{err}");

    let dir = scratch("empty-class");
    touch(&dir.join("cats/1.jpg"), b"?");
    std::fs::create_dir_all(dir.join("dogs")).unwrap();
    let err = refuse(&dir);
    assert!(err.contains("dogs") && err.contains("has no images"), "{err}");

    let dir = scratch("blank-label");
    touch(&dir.join("cats/1.jpg"), b"?");
    touch(&dir.join("   /1.jpg"), b"?");
    assert!(refuse(&dir).contains("class name is empty"));

    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let dir = scratch("latin1-label");
        touch(&dir.join("cats/1.jpg"), b"?");
        touch(&dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9")).join("1.jpg"), b"?");
        let err = refuse(&dir);
        assert!(err.contains("not valid UTF-8") && err.contains("caf"), "{err}");
    }
}

#[test]
fn labels_need_two_distinct_valid_names() {
    let labels = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(check_labels(&labels(&["a", "b"])).is_ok());
    assert!(check_labels(&labels(&["only"])).unwrap_err().to_string().contains("only one class (`only`)"));
    assert!(check_labels(&labels(&[])).unwrap_err().to_string().contains("no classes"));
    assert!(check_labels(&labels(&["a", "a"])).unwrap_err().to_string().contains("appears twice"));
    assert!(check_labels(&labels(&["a", ""])).unwrap_err().to_string().contains("empty"));
    assert!(check_labels(&labels(&["a", "tab\there"])).unwrap_err().to_string().contains("control"));
    assert!(check_labels(&labels(&["a", &"x".repeat(101)])).unwrap_err().to_string().contains("longer than"));
}

#[test]
fn the_split_is_stratified_and_seeded() {
    // 20 of class 0, 7 of class 1, 2 of class 2, 1 of class 3.
    let labels: Vec<u32> = [(0, 20), (1, 7), (2, 2), (3, 1)].iter().flat_map(|&(c, n)| vec![c; n]).collect();
    let split = |share: f32, seed: u64| stratified_split(&labels, 4, share, seed);
    let (train, val) = split(0.15, 1).unwrap();
    let count = |idx: &[usize], c: u32| idx.iter().filter(|&&i| labels[i] == c).count();
    assert_eq!([count(&val, 0), count(&val, 1), count(&val, 2), count(&val, 3)], [3, 1, 1, 0]);
    assert_eq!(train.len() + val.len(), labels.len());
    assert!(val.iter().all(|i| !train.contains(i)));
    assert_eq!(split(0.15, 1).unwrap(), (train.clone(), val.clone()));
    assert_ne!(split(0.15, 2).unwrap().1, val, "another seed holds out other images");
    assert!(split(0.0, 1).unwrap().1.is_empty());
}

#[test]
fn a_bad_share_or_an_empty_class_is_refused() {
    let labels = [0, 0, 1, 1, 1];
    for share in [-0.1, 1.0, f32::NAN] {
        let err = stratified_split(&labels, 2, share, 1).unwrap_err().to_string();
        assert!(err.contains("validation share"), "{share}: {err}");
    }
    let classes = ["cats", "dogs", "birds"].map(String::from);
    assert!(check_every_class_has_samples(&labels, &classes[..2]).is_ok());
    let err = check_every_class_has_samples(&labels, &classes).unwrap_err().to_string();
    assert!(err.contains("class `birds` has no images"), "{err}");
}

fn header(backbone: &str) -> CacheHeader {
    CacheHeader {
        backbone: backbone.into(),
        backbone_sha256: "00".repeat(32),
        preprocess: Preprocess::efficientnet_lite(),
        dim: 3,
        precision: MatmulPrecision::Int8,
        pooling: Default::default(),
    }
}

#[test]
fn cache_file_round_trips_and_survives_a_cut_short_write() {
    let mut cache = FeatureCache::new(header("b1"));
    cache.insert([1; 32], View::AsIs, vec![1.0, 2.0, 3.0]);
    let mut bytes = cache.encode_preamble();
    bytes.extend(FeatureCache::encode_record(&[1; 32], View::AsIs, &[1.0, 2.0, 3.0]));
    bytes.extend(FeatureCache::encode_record(&[1; 32], View::Mirrored, &[4.0, 5.0, 6.0]));
    let whole = bytes.len();
    bytes.extend(&FeatureCache::encode_record(&[2; 32], View::AsIs, &[7.0, 8.0, 9.0])[..20]); // cut short

    let (decoded, valid) = FeatureCache::decode(&bytes, &header("b1")).unwrap();
    assert_eq!(valid, whole);
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded.get(&[1; 32], View::Mirrored), Some(&[4.0, 5.0, 6.0][..]));
    assert_eq!(decoded.get(&[2; 32], View::AsIs), None);

    let err = FeatureCache::decode(&bytes, &header("b2")).unwrap_err().to_string();
    assert!(err.contains("made for backbone b1"), "{err}");
    assert!(FeatureCache::decode(b"not a cache at all", &header("b1")).unwrap_err().to_string().contains("magic"));

    // On disk: the partial record is cut off and appends continue after the last whole one.
    let dir = scratch("cache-file");
    std::fs::write(dir.join(header("b1").file_name()), &bytes).unwrap();
    let (mut file, note) = CacheFile::open(&dir, header("b1")).unwrap();
    assert!(note.is_none());
    file.insert([3; 32], View::AsIs, vec![0.5, 0.5, 0.5]).unwrap();
    drop(file);
    let (reopened, note) = CacheFile::open(&dir, header("b1")).unwrap();
    assert!(note.is_none());
    assert_eq!(reopened.cache.len(), 3);
    assert_eq!(reopened.cache.get(&[3; 32], View::AsIs), Some(&[0.5, 0.5, 0.5][..]));

    // A damaged file is replaced (it only holds derived data), and the user is told.
    std::fs::write(dir.join(header("b1").file_name()), b"garbage").unwrap();
    let (fresh, note) = CacheFile::open(&dir, header("b1")).unwrap();
    assert!(fresh.cache.is_empty());
    assert!(note.unwrap().contains("it is replaced by a new cache"));
}

#[test]
fn features_are_computed_once_and_mirrored_on_request() {
    let model = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/efficientnet-lite0-int8.safetensors"));
    let backbone = Backbone::from_backbone_file(&model.unwrap(), &Device::Cpu).unwrap();
    let dir = scratch("extract");
    let coffee = fixture("coffee.png");
    let mirrored_file = dir.join("coffee-mirrored.png");
    image::imageops::flip_horizontal(&image::open(&coffee).unwrap().to_rgb8()).save(&mirrored_file).unwrap();
    let broken = dir.join("broken.jpg");
    std::fs::write(&broken, b"not an image").unwrap();

    let cache_dir = dir.join("cache");
    let (mut cache, _) = CacheFile::open(&cache_dir, CacheHeader::of(&backbone)).unwrap();
    let requests = vec![(coffee.clone(), true), (broken.clone(), false), (mirrored_file.clone(), false)];
    let first = extract_files(&backbone, &mut cache, &requests, |_| {}).unwrap();
    assert_eq!(cache.cache.len(), 3, "coffee, its mirror image, and the mirrored file");
    let coffee_features = first[0].as_ref().unwrap();
    let err = first[1].as_ref().unwrap_err().to_string();
    assert!(err.contains("broken.jpg"), "{err}");
    // Mirroring in memory gives the features of the mirrored file.
    assert_eq!(coffee_features.mirrored.as_ref().unwrap(), &first[2].as_ref().unwrap().as_is);
    assert_ne!(coffee_features.mirrored.as_ref().unwrap(), &coffee_features.as_is);

    // A fresh process finds them on disk, computes nothing, and gets the same numbers.
    drop(cache);
    let (mut cache, _) = CacheFile::open(&cache_dir, CacheHeader::of(&backbone)).unwrap();
    let again = extract_files(&backbone, &mut cache, &requests, |_| {}).unwrap();
    assert_eq!(cache.cache.len(), 3);
    assert_eq!(again[0].as_ref().unwrap(), coffee_features);
}

/// Features from int8 and from f32 products live in separate caches; a cache written before the
/// precision was recorded holds f32 features (all there was then) and serves only the f32 path.
#[test]
fn caches_keep_int8_and_f32_features_apart() {
    let (int8, f32) = (header("b1"), CacheHeader { precision: MatmulPrecision::F32, ..header("b1") });
    assert_ne!(int8.file_name(), f32.file_name());

    let mut old = serde_json::to_value(&f32).unwrap();
    old.as_object_mut().unwrap().remove("precision");
    let json = serde_json::to_vec(&old).unwrap();
    let mut bytes = b"WICKFEAT".to_vec();
    bytes.extend(1u32.to_le_bytes());
    bytes.extend((json.len() as u32).to_le_bytes());
    bytes.extend(&json);
    bytes.extend(FeatureCache::encode_record(&[1; 32], View::AsIs, &[1.0, 2.0, 3.0]));
    let (cache, _) = FeatureCache::decode(&bytes, &f32).unwrap();
    assert_eq!(cache.get(&[1; 32], View::AsIs), Some(&[1.0, 2.0, 3.0][..]));
    let err = FeatureCache::decode(&bytes, &int8).unwrap_err().to_string();
    assert!(err.contains("features from f32 products, not int8"), "{err}");
}
