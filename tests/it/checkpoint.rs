//! PyTorch checkpoints in both `torch.save` containers: the zip one (PyTorch ≥ 1.6) on a committed
//! fixture (`tests/reference/make_zip_checkpoint.py`), the legacy one on generated files, and zip
//! archives that lie.

use crate::common::pickle::CheckpointSpec;
use wick::checkpoint::{read_state_dict, StorageDtype};

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-zip.pth")).unwrap()
}

fn error_of(bytes: &[u8]) -> String {
    match read_state_dict(bytes) {
        Ok(_) => panic!("a damaged checkpoint was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_zip_container_gives_every_tensor_with_its_strides_offsets_and_shared_storage() {
    let state = read_state_dict(&fixture()).unwrap();
    let names: Vec<&str> = state.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a.weight", "b.weight", "c.bias"]);
    assert_eq!(state.get("a.weight").unwrap().dtype, StorageDtype::F32);
    assert_eq!(state.f32_contiguous("a.weight").unwrap(), (vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    // A transposed view: element [i][j] is storage[i + 3j].
    assert_eq!(state.f32_contiguous("b.weight").unwrap(), (vec![3, 2], vec![10.0, 13.0, 11.0, 14.0, 12.0, 15.0]));
    // A view into a.weight's storage from offset 2.
    assert_eq!(state.f32_contiguous("c.bias").unwrap(), (vec![3], vec![2.0, 3.0, 4.0]));
}

#[test]
fn both_containers_read_the_same_state_dict() {
    let tensors = crate::common::seeds::tiny_checkpoint_tensors();
    let legacy = read_state_dict(&CheckpointSpec::contiguous(&tensors).to_bytes()).unwrap();
    let zipped = read_state_dict(&CheckpointSpec::contiguous(&tensors).to_zip()).unwrap();
    for (name, shape, values) in &tensors {
        assert_eq!(legacy.f32_contiguous(name).unwrap(), (shape.clone(), values.clone()));
        assert_eq!(zipped.f32_contiguous(name).unwrap(), (shape.clone(), values.clone()));
    }
}

#[test]
fn lying_zip_checkpoints_are_refused_with_the_reason() {
    let spec = CheckpointSpec::contiguous(&crate::common::seeds::tiny_checkpoint_tensors());
    let missing = spec.to_zip_with(|name, data| (name != "archive/data/1").then_some(data));
    assert!(error_of(&missing).contains("storage `1` is missing"), "{}", error_of(&missing));
    let short = spec
        .to_zip_with(|name, data| Some(if name == "archive/data/0" { data[..data.len() - 4].to_vec() } else { data }));
    assert!(error_of(&short).contains("storage `0` holds"), "{}", error_of(&short));
    let long = spec.to_zip_with(|name, mut data| {
        if name == "archive/data/0" {
            data.extend([0; 4]);
        }
        Some(data)
    });
    assert!(error_of(&long).contains("more than expected"), "{}", error_of(&long));
    let big_endian =
        spec.to_zip_with(|name, data| Some(if name == "archive/byteorder" { b"big".to_vec() } else { data }));
    assert!(error_of(&big_endian).contains("big-endian"));
    let no_pickle = spec.to_zip_with(|name, data| (name != "archive/data.pkl").then_some(data));
    assert!(error_of(&no_pickle).contains("has no <folder>/data.pkl"));
    let mut evil = spec.clone();
    evil.tensors[0].storage_type = "EvilStorage".into();
    assert!(error_of(&evil.to_zip()).contains("refusing pickle global `torch.EvilStorage`"));
    let mut cut = fixture();
    cut.truncate(cut.len() / 2);
    assert!(error_of(&cut).contains("zip container of this torch checkpoint is damaged"), "{}", error_of(&cut));
    // A compressed entry (the method field of data.pkl's headers set to deflate): torch.save never
    // writes one, and a decompressor is not a thing to run on a stranger's file.
    let mut deflated = spec.to_zip();
    for (signature, at) in [(&b"PK\x03\x04"[..], 8), (&b"PK\x01\x02"[..], 10)] {
        let header = deflated.windows(4).position(|w| w == signature).unwrap();
        deflated[header + at] = 8;
    }
    assert!(error_of(&deflated).contains("is compressed"), "{}", error_of(&deflated));
}
