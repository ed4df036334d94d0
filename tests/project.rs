//! The web app's project file: round trip and refusals.

use wick::formats::classifier::BackboneRef;
use wick::formats::project::{ClassMeta, Project, ProjectMeta, ProjectSettings, SampleMeta};

fn project(with_model: bool) -> Project {
    let sample = |name: &str, bytes| SampleMeta { name: name.into(), thumbnail_bytes: bytes };
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
        model: with_model.then(|| b"model bytes".to_vec()),
    }
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
}
