//! Large images are decoded a few at a time, by their decoded size: sixteen 16384×2048 PNGs (33
//! megapixels each, 200 MB decoded, a few kilobytes on disk) once reached 3.2 GB together. This
//! binary's allocator records the peak of live memory while their features are extracted.

mod common;

use common::alloc::Counting;
use wick::data::preprocess::DECODE_BUDGET;
use wick::model::features::{extract_files, CacheFile, CacheHeader};

#[global_allocator]
static ALLOCATOR: Counting = Counting { limit: usize::MAX };

/// The peak is the whole process's: each test holds this while it measures, so that the other's
/// allocations (the sixteen PNGs' ~100 MB) never land in its figure — the test runner runs tests
/// side by side, and once the bomb's 2 MB bound saw a 108 MB peak that way.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn measuring() -> std::sync::MutexGuard<'static, ()> {
    MEASURING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn sixteen_huge_pngs_are_decoded_within_the_budget() {
    let _measuring = measuring();
    let dir = std::env::temp_dir().join(format!("wick-decode-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (w, h) = (16_384u32, 2_048u32);
    let requests: Vec<(std::path::PathBuf, bool)> = (0..16u8)
        .map(|i| {
            let path = dir.join(format!("{i}.png"));
            image::RgbImage::from_pixel(w, h, image::Rgb([i * 15, 100, 200])).save(&path).unwrap();
            (path, false)
        })
        .collect();
    let backbone = wick::model::Backbone::from_backbone_file(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/efficientnet-lite0-int8.safetensors")).unwrap(),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut cache = CacheFile::in_memory(CacheHeader::of(&backbone));
    let before = Counting::live();
    Counting::reset_peak();
    let results = extract_files(&backbone, &mut cache, &requests, |_| {}).unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
    let peak = Counting::peak() - before;
    let one_image = w as usize * h as usize * 6; // the decoder's RGB pixels and their RGB copy
    eprintln!("peak {} MB for 16 images of {} MB decoded", peak >> 20, one_image >> 20);
    assert!(
        peak < DECODE_BUDGET as usize + 2 * one_image,
        "peak {} MB: more images were held at once than the {} MB budget allows",
        peak >> 20,
        DECODE_BUDGET >> 20
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A PNG's colour profile is compressed: a 0.5 MB iCCP chunk inflates to 512 MB, once per read of
/// the header (eight such 8 × 8 PNGs once took 2.7 GB in `wick train`). What a decoder reads
/// besides the pixels is capped: the profile is dropped and the image decodes in bounded memory.
#[test]
fn a_png_whose_colour_profile_inflates_to_half_a_gigabyte_decodes_in_bounded_memory() {
    let _measuring = measuring();
    use wick::data::preprocess::{decode_image, decoded_bytes, ANCILLARY_BYTES};
    let image = common::seeds::colour_image(3);
    let bomb =
        common::seeds::png_with_chunks(&common::seeds::png(&image), &[(*b"iCCP", common::seeds::iccp_bomb(512 << 20))]);
    assert!(bomb.len() < 2 << 20, "the bomb is {} bytes on disk", bomb.len());
    let before = Counting::live();
    Counting::reset_peak();
    let decoded = decode_image(&bomb).expect("decodes, its profile dropped");
    let peak = Counting::peak() - before;
    assert!(decoded == image, "the pixels are the image's");
    eprintln!("peak {} KB decoding a 40 × 36 PNG with a 512 MB profile", peak >> 10);
    assert!(peak <= 2 * ANCILLARY_BYTES as usize + (1 << 20), "peak {} MB", peak >> 20);
    assert_eq!(decoded_bytes(&bomb), 2 * ANCILLARY_BYTES + 40 * 36 * 6);
}
