//! Augmented views of an image for training the backbone's last layers: each is a fixed, seeded
//! variation, so its activation can be computed once and cached like the plain view's.
//!
//! View 0 is the image as it is (validation images only ever get this one); view 1 its mirror;
//! later views a random crop of 70–95% of each side, mirrored on odd views, with mild colour
//! jitter (brightness, contrast and saturation each within ±15%).

use image::RgbImage;

use crate::util::rng::Rng;

/// Views per training image when augmenting: the plain one and three variations.
pub const AUGMENTED_VIEWS: usize = 4;

/// The `view`-th view of `image`, drawn from `seed` (the same seed and view give the same pixels).
pub fn view(image: &RgbImage, view: usize, seed: u64) -> RgbImage {
    if view == 0 {
        return image.clone();
    }
    let mut rng = Rng::new(seed ^ (view as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = if view >= 2 {
        let (w, h) = image.dimensions();
        let side = 0.7 + 0.25 * rng.uniform();
        let (cw, ch) = (((w as f32 * side) as u32).max(1), ((h as f32 * side) as u32).max(1));
        let (x, y) = (rng.below((w - cw + 1) as usize) as u32, rng.below((h - ch + 1) as usize) as u32);
        let cropped = image::imageops::crop_imm(image, x, y, cw, ch).to_image();
        jitter(&cropped, &mut rng)
    } else {
        image.clone()
    };
    if view % 2 == 1 {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// Brightness, contrast and saturation each scaled by a factor within ±15%.
fn jitter(image: &RgbImage, rng: &mut Rng) -> RgbImage {
    let mut factor = || 0.85 + 0.3 * rng.uniform();
    let (brightness, contrast, saturation) = (factor(), factor(), factor());
    let pixels = image.pixels();
    let count = (image.width() * image.height()).max(1) as f32;
    let mean = pixels.map(|p| luma(p.0)).sum::<f32>() / count;
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        let grey = luma(pixel.0);
        for v in pixel.0.iter_mut() {
            let saturated = grey + (*v as f32 - grey) * saturation;
            let contrasted = mean + (saturated - mean) * contrast;
            *v = (contrasted * brightness).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

fn luma([r, g, b]: [u8; 3]) -> f32 {
    0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32
}

/// Images whose pixels number at most this are kept losslessly (PNG); larger ones as JPEG.
const LOSSLESS_PIXELS: u32 = 96 * 96;

/// The copy of an image kept to make its views later (the page stores it with the sample): no
/// larger than the backbone's preprocessing reads (`resize_shorter` on the shorter side), PNG when
/// small (a CIFAR-10 photo stays exact), JPEG at quality 90 otherwise.
/// `image` with its shorter side brought down to `resize_shorter` (the side the backbone reads), or
/// `None` when it is no larger: the copy views are made from, in the page and the CLI alike.
pub fn bounded_copy(image: &RgbImage, resize_shorter: u32) -> Option<RgbImage> {
    let (w, h) = image.dimensions();
    let scale = resize_shorter as f32 / w.min(h) as f32;
    if scale >= 1.0 {
        return None;
    }
    let size = |side: u32| ((side as f32 * scale).round() as u32).max(1);
    Some(image::imageops::resize(image, size(w), size(h), image::imageops::FilterType::Triangle))
}

pub fn stored_copy(image: &RgbImage, resize_shorter: u32) -> Result<Vec<u8>, image::ImageError> {
    let resized = bounded_copy(image, resize_shorter);
    let image = resized.as_ref().unwrap_or(image);
    let mut bytes = Vec::new();
    if image.width() * image.height() <= LOSSLESS_PIXELS {
        image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    } else {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(image)?;
    }
    Ok(bytes)
}
