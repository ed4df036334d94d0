//! The web app's project file: round trip and refusals.

use wick::backbone::Pooling;
use wick::formats::classifier::BackboneRef;
use wick::formats::project::{ClassMeta, Project, ProjectMeta, ProjectSettings, SampleMeta};

fn project(with_model: bool) -> Project {
    let sample = |name: &str, bytes| SampleMeta { name: name.into(), thumbnail_bytes: bytes, source_bytes: bytes + 1 };
    Project {
        meta: ProjectMeta {
            backbone: BackboneRef { id: "b".into(), architecture: "a".into(), sha256: "ab".repeat(32) },
            classes: vec![
                ClassMeta { name: "cat".into(), samples: vec![sample("1.jpg", 3), sample("2.jpg", 2)] },
                ClassMeta { name: "dog".into(), samples: vec![sample("webcam", 4)] },
                ClassMeta { name: "empty".into(), samples: vec![] },
            ],
            settings: ProjectSettings { epochs: Some(50), ..Default::default() },
        },
        features: (0..12).map(|i| i as f32).collect(),
        thumbnails: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
        sources: (0..12).collect(),
        model: with_model.then(|| b"model bytes".to_vec()),
        model_backbone: None,
    }
}

fn backbone_file() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/efficientnet-lite0-int8.safetensors")).unwrap()
}

#[test]
fn a_deeper_trained_project_round_trips_with_its_model_backbone() {
    let mut original = project(true);
    original.model_backbone = Some(backbone_file());
    original.meta.settings.train_layers = Some(2);
    original.meta.settings.layer_epochs = Some(10);
    original.meta.settings.augment = Some(true);
    let loaded = Project::from_bytes(&original.to_bytes().unwrap(), 4).unwrap();
    assert_eq!(loaded, original);
}

#[test]
fn a_project_written_before_kept_copies_still_opens() {
    let mut old = project(true);
    old.sources.clear();
    old.meta.classes.iter_mut().flat_map(|c| &mut c.samples).for_each(|s| s.source_bytes = 0);
    let loaded = Project::from_bytes(&old.to_bytes().unwrap(), 4).unwrap();
    assert!(loaded.sources.is_empty());
}

/// A project file says which pooling its features have (files written before it was a setting
/// hold the last layer's); an unknown one is refused.
#[test]
fn a_project_records_its_features_pooling() {
    let old = project(false);
    assert_eq!(Project::pooling_of(&old.to_bytes().unwrap()).unwrap(), Pooling::Last);
    let mut stages = project(false);
    stages.meta.settings.pooling = Some(Pooling::Stages);
    let bytes = stages.to_bytes().unwrap();
    assert_eq!(Project::pooling_of(&bytes).unwrap(), Pooling::Stages);
    assert_eq!(Project::from_bytes(&bytes, 4).unwrap(), stages);
    let (from, to) = (br#"\"pooling\":\"stages\""#, br#"\"pooling\":\"floors\""#);
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the setting is in the header");
    let mut edited = bytes.clone();
    edited[at..at + to.len()].copy_from_slice(to);
    let err = Project::pooling_of(&edited).unwrap_err().to_string();
    assert!(err.contains("unknown variant `floors`"), "{err}");
}

#[test]
fn projects_round_trip() {
    for with_model in [false, true] {
        let original = project(with_model);
        let loaded = Project::from_bytes(&original.to_bytes().unwrap(), 4).unwrap();
        assert_eq!(loaded, original);
    }
}

#[test]
fn bad_projects_are_refused() {
    let good = project(true).to_bytes().unwrap();
    let refuse = |bytes: &[u8], dim| Project::from_bytes(bytes, dim).expect_err("refused").to_string();
    assert!(refuse(&good[..good.len() - 5], 4).contains("not a valid Wick project file"));
    assert!(refuse(b"hello", 4).contains("not a valid Wick project file"));
    assert!(refuse(&good, 5).contains("feature values for 3 samples of 5"));
    let model = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/efficientnet-lite0-int8.safetensors"));
    assert!(refuse(&model.unwrap(), 4).contains("no Wick metadata"));

    let mut twice = project(false);
    twice.meta.classes[1].name = "cat".into();
    assert!(twice.check(4).unwrap_err().to_string().contains("appears twice"));
    let mut blank = project(false);
    blank.meta.classes[0].name = " ".into();
    assert!(blank.check(4).unwrap_err().to_string().contains("empty"));
    let mut thumbs = project(false);
    thumbs.thumbnails.pop();
    assert!(thumbs.check(4).unwrap_err().to_string().contains("thumbnails hold 8 bytes"));
    let mut nan = project(false);
    nan.features[0] = f32::NAN;
    assert!(nan.check(4).unwrap_err().to_string().contains("NaN"));
    let mut sources = project(false);
    sources.sources.pop();
    assert!(sources.check(4).unwrap_err().to_string().contains("kept copies hold 11 bytes, the samples list 12"));
    let mut orphan = project(false);
    orphan.model_backbone = Some(backbone_file());
    assert!(orphan.check(4).unwrap_err().to_string().contains("backbone but no model"));
    let mut not_backbone = project(true);
    not_backbone.model_backbone = Some(b"hello".to_vec());
    assert!(not_backbone.check(4).unwrap_err().to_string().contains("not a Wick backbone file"));
    let mut deep = project(false);
    deep.meta.settings.train_layers = Some(9);
    assert!(deep.check(4).unwrap_err().to_string().contains("train_layers is 9"));
}

/// Sizes that add up past `usize` wrap to any total a reader adds them to: a project whose
/// thumbnails list `usize::MAX` and then the real length plus one would add up (wrapping) to the
/// real length. On wasm32 `usize` is 32 bits, and 2³² − 1 does it.
#[test]
fn listed_sizes_that_wrap_are_refused() {
    let mut p = project(false);
    let real = p.thumbnails.len();
    p.meta.classes[0].samples[0].thumbnail_bytes = usize::MAX;
    p.meta.classes[0].samples[1].thumbnail_bytes = real + 1;
    p.meta.classes[1].samples[0].thumbnail_bytes = 0;
    let message = p.check(4).unwrap_err().to_string();
    assert!(message.contains("thumbnail sizes add up to more than this machine can address"), "{message}");
    let mut p = project(false);
    p.meta.classes[0].samples[0].source_bytes = usize::MAX;
    p.meta.classes[1].samples[0].source_bytes = p.sources.len() - 2;
    let message = p.check(4).unwrap_err().to_string();
    assert!(message.contains("kept copy sizes add up"), "{message}");
}
