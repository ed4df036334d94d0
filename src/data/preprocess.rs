//! Image → network input: decode (with size limits), resize the shorter side with an antialiased
//! bilinear filter (the same filter as PIL's `BILINEAR`), centre-crop, scale to [-1, 1].

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ImageDecoder, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// Larger images are refused before any pixel memory is allocated.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
pub const MAX_IMAGE_PIXELS: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// The shorter side is resized to this many pixels, keeping the aspect ratio.
    pub resize_shorter: u32,
    /// Then the centre `crop × crop` square is taken.
    pub crop: u32,
    /// Per RGB channel: `(x / 255 - mean) / std`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    /// EfficientNet-Lite's ImageNet evaluation transform: 256 → 224, RGB scaled to [-1, 1].
    pub fn efficientnet_lite() -> Self {
        Self { resize_shorter: 256, crop: 224, mean: [0.5; 3], std: [0.5; 3] }
    }

    /// torchvision's ImageNet evaluation transform (ResNets): 256 → 224, ImageNet mean and std.
    pub fn imagenet() -> Self {
        Self { resize_shorter: 256, crop: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }

    /// Checks a record read from a file (a `.wick`, a backbone file) before it sizes anything: the
    /// crop is the network's input side and the resize only ever computes the crop's window, so
    /// both stay within [`MIN_CROP`]–[`MAX_CROP`] and [`MAX_RESIZE`]; a zero or non-finite std would
    /// turn every input into NaN.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(invalid!("bad preprocessing: {why}"));
        if !(MIN_CROP..=MAX_CROP).contains(&self.crop) {
            return bad(format!("crop is {} pixels, expected {MIN_CROP} to {MAX_CROP}", self.crop));
        }
        if !(1..=MAX_RESIZE).contains(&self.resize_shorter) {
            return bad(format!("resize_shorter is {} pixels, expected 1 to {MAX_RESIZE}", self.resize_shorter));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return bad(format!("mean {:?} is not finite", self.mean));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s >= 1e-6)) {
            return bad(format!("std {:?} must be positive numbers", self.std));
        }
        Ok(())
    }

    /// The view's pixels as an exported model takes them ([`crate::export`]): RGB in [0, 1], one
    /// plane per channel (3 × crop × crop), before the normalisation, which the export does itself.
    pub fn pixels(&self, image: &RgbImage) -> Vec<f32> {
        let view = self.view(image);
        (0..3).flat_map(|ch| view.pixels().map(move |p| p[ch] as f32 / 255.0)).collect()
    }

    /// RGB pixels → CHW floats of length `3 * crop * crop`.
    pub fn apply(&self, image: &RgbImage) -> Vec<f32> {
        let view = self.view(image);
        let plane = view.len() / 3;
        let mut out = vec![0f32; 3 * plane];
        for ch in 0..3 {
            let (scale, shift) = (1.0 / (255.0 * self.std[ch]), -self.mean[ch] / self.std[ch]);
            for (o, pixel) in out[ch * plane..(ch + 1) * plane].iter_mut().zip(view.pixels()) {
                *o = pixel[ch] as f32 * scale + shift;
            }
        }
        out
    }

    /// What the network sees of `image`, before normalisation: resized, then the centre crop
    /// (crop × crop RGB).
    pub fn view(&self, image: &RgbImage) -> RgbImage {
        let (w, h) = image.dimensions();
        let (rw, rh) = if w <= h {
            (self.resize_shorter, (self.resize_shorter as u64 * h as u64 / w as u64) as u32)
        } else {
            ((self.resize_shorter as u64 * w as u64 / h as u64) as u32, self.resize_shorter)
        };
        let (rw, rh) = (rw.max(1), rh.max(1));
        let c = self.crop;
        // Like torchvision's CenterCrop, whose Python `round` takes halves to even; a crop larger
        // than the image is zero-padded around it.
        let top = ((rh as f64 - c as f64) / 2.0).round_ties_even() as i64;
        let left = ((rw as f64 - c as f64) / 2.0).round_ties_even() as i64;
        // Only the part of the resized image that the crop keeps is computed: a 16384×1 strip
        // resized to a shorter side of 256 would otherwise be 4 billion pixels.
        let columns = left.max(0) as u32..(left + c as i64).min(rw as i64) as u32;
        let rows = top.max(0) as u32..(top + c as i64).min(rh as i64) as u32;
        let window = resize_window(image, (rw, rh), columns.clone(), rows.clone());
        RgbImage::from_fn(c, c, |x, y| {
            let (sy, sx) = (y as i64 + top, x as i64 + left);
            let inside = sy >= 0 && sx >= 0 && rows.contains(&(sy as u32)) && columns.contains(&(sx as u32));
            if inside {
                *window.get_pixel(sx as u32 - columns.start, sy as u32 - rows.start)
            } else {
                image::Rgb([0, 0, 0])
            }
        })
    }
}

/// Bounds on a preprocessing record read from a file.
pub const MIN_CROP: u32 = 16;
pub const MAX_CROP: u32 = 1024;
pub const MAX_RESIZE: u32 = 4096;

/// What a decoder may allocate besides the image's pixels: what it reads before them (an ICC colour
/// profile, EXIF, a PNG's text chunks). A PNG's profile is compressed: a 1 MB chunk can inflate to
/// 1 GB, and each header read inflated it again (eight 8 × 8 such PNGs took 2.7 GB). Capped here,
/// a larger one is dropped by the decoder (PNG) or the file refused. Real profiles are under 1 MB.
/// A buffer that grows to this cap holds its old and new copies at once: [`decoded_bytes`] counts
/// twice this (measured: 24.7 MB at the peak for a profile that inflates to 512 MB, 2026-12-07).
pub const ANCILLARY_BYTES: u64 = 8 << 20;

/// Decoded images held at once, in bytes of [`decoded_bytes`]: every path that decodes several
/// images at a time (training, prediction, the CLI's folders) decodes them in waves within this.
pub const DECODE_BUDGET: u64 = 768 << 20;
/// The page's budget: its memory is the tab's (iOS gives a tab about 1.5 GB, and the threaded build
/// may hold only 512 MiB on a phone), so a batch of photos is decoded a few at a time.
pub const PAGE_DECODE_BUDGET: u64 = 256 << 20;

/// A reader of `bytes` whose decoder may allocate at most `max_alloc` bytes.
fn reader(bytes: &[u8], max_alloc: u64) -> ImageReader<Cursor<&[u8]>> {
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().expect("reading from memory cannot fail");
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    reader
}

/// The image's size and pixel type, read from its header alone (at most [`ANCILLARY_BYTES`]).
fn header(bytes: &[u8]) -> Result<(u32, u32, image::ColorType)> {
    let decoder =
        reader(bytes, ANCILLARY_BYTES).into_decoder().map_err(|e| invalid!("cannot read the image header: {e}"))?;
    let (w, h) = decoder.dimensions();
    Ok((w, h, decoder.color_type()))
}

/// Decodes JPEG, PNG, WebP, GIF (first frame) or BMP bytes to RGB, the right way up. The header is
/// checked against [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_PIXELS`] before decoding, and the decoder may
/// allocate the image's pixels and [`ANCILLARY_BYTES`] besides, no more.
///
/// Phone cameras store a portrait photo as the sensor saw it, sideways, with an EXIF Orientation
/// tag saying how to turn it; browsers draw such a photo upright. The tag is applied here (JPEG and
/// PNG), so the backbone, the thumbnail and the kept copy all see the photo as its owner does, in
/// the CLI and the page alike. A tag that cannot be read leaves the image as stored. (WebP's EXIF
/// is not read: its decoder allocates what the chunk header claims, up to 4 GB, before reading it.)
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(invalid!("the file is empty (0 bytes)"));
    }
    let format = reader(bytes, ANCILLARY_BYTES).format();
    if format.is_none() {
        return Err(invalid!("not an image Wick can read (expected JPEG, PNG, WebP, GIF or BMP)"));
    }
    let (w, h, color) = header(bytes)?;
    if w == 0 || h == 0 {
        return Err(invalid!("the image has no pixels ({w} × {h})"));
    }
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE || w as u64 * h as u64 > MAX_IMAGE_PIXELS {
        return Err(invalid!(
            "the image is {w} × {h} pixels, larger than the limit of {MAX_IMAGE_SIDE} pixels a side and {} megapixels",
            MAX_IMAGE_PIXELS / (1024 * 1024)
        ));
    }
    if format == Some(image::ImageFormat::Jpeg) && !jpeg_has_end_marker(bytes) {
        return Err(invalid!("the image is corrupt or truncated: the JPEG data stops before its end marker"));
    }
    let orientation = match format {
        Some(image::ImageFormat::Jpeg | image::ImageFormat::Png) => reader(bytes, ANCILLARY_BYTES)
            .into_decoder()
            .and_then(|mut decoder| decoder.orientation())
            .unwrap_or(Orientation::NoTransforms),
        _ => Orientation::NoTransforms,
    };
    let pixels = w as u64 * h as u64 * color.bytes_per_pixel() as u64;
    // A decoder that cannot allocate may panic (the GIF decoder unwraps a failed `try_reserve`):
    // natively that is caught and named as this file's error. (In the page a panic aborts; there
    // the budgets keep decoders from running out.)
    let decoded = std::panic::catch_unwind(|| reader(bytes, pixels + ANCILLARY_BYTES).decode())
        .map_err(|_| invalid!("the decoder failed on this image (out of memory?)"))?;
    let image = decoded.map_err(|e| invalid!("the image is corrupt or truncated: {e}"))?;
    Ok(upright(image.into_rgb8(), orientation))
}

/// `image` turned as its EXIF `orientation` says (a turned copy of the RGB pixels at most). Written
/// on `RgbImage` rather than through `DynamicImage::apply_orientation`, which compiles the turns for
/// every pixel type: 25 KB more wasm (6 KB gzipped; measured 2026-12-06), and the page's first load
/// is held under 6 MB.
fn upright(mut image: RgbImage, orientation: Orientation) -> RgbImage {
    use image::imageops::{flip_horizontal, flip_horizontal_in_place, flip_vertical_in_place, rotate180_in_place};
    use image::imageops::{rotate270, rotate90};
    match orientation {
        Orientation::NoTransforms => image,
        Orientation::Rotate90 => rotate90(&image),
        Orientation::Rotate180 => {
            rotate180_in_place(&mut image);
            image
        }
        Orientation::Rotate270 => rotate270(&image),
        Orientation::FlipHorizontal => {
            flip_horizontal_in_place(&mut image);
            image
        }
        Orientation::FlipVertical => {
            flip_vertical_in_place(&mut image);
            image
        }
        Orientation::Rotate90FlipH => flip_horizontal(&rotate90(&image)),
        Orientation::Rotate270FlipH => flip_horizontal(&rotate270(&image)),
    }
}

/// RGBA pixels (a canvas's `ImageData`: a webcam frame) → an RGB image, checked against its size.
pub fn rgba_image(rgba: &[u8], width: u32, height: u32) -> Result<RgbImage> {
    if width == 0 || height == 0 || rgba.len() as u64 != 4 * width as u64 * height as u64 {
        return Err(invalid!("the frame's size does not match its pixels"));
    }
    let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    Ok(RgbImage::from_raw(width, height, rgb).expect("size checked"))
}

/// Thumbnails are at most this many pixels on their longer side: small, since a project of 10,000
/// images keeps them all (96 px JPEGs are 2–4 KB).
pub const THUMBNAIL_SIDE: u32 = 96;

/// A JPEG of `image` at most [`THUMBNAIL_SIDE`] pixels on its longer side.
pub fn thumbnail_jpeg(image: &RgbImage) -> Result<Vec<u8>> {
    let (w, h) = image.dimensions();
    let scale = (THUMBNAIL_SIDE as f32 / w.max(h) as f32).min(1.0);
    let small =
        image::imageops::thumbnail(image, ((w as f32 * scale) as u32).max(1), ((h as f32 * scale) as u32).max(1));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 82)
        .encode_image(&small)
        .map_err(|e| invalid!("cannot write a thumbnail: {e}"))?;
    Ok(jpeg)
}

/// About how many bytes decoding `bytes` takes at its peak: the decoder's pixels plus their RGB
/// copy, or two RGB copies while a sideways photo is turned upright, and what the decoder may read
/// besides (twice [`ANCILLARY_BYTES`]); 0 when the header cannot be read (decoding then fails at
/// once).
pub fn decoded_bytes(bytes: &[u8]) -> u64 {
    let Ok((w, h, color)) = header(bytes) else { return 0 };
    w as u64 * h as u64 * (color.bytes_per_pixel() as u64 + 3).max(6) + 2 * ANCILLARY_BYTES
}

/// `costs` (each item's [`decoded_bytes`]) cut into consecutive waves that each cost at most
/// `budget` (an item that costs more goes alone): the images of a wave are decoded together.
pub fn decode_waves(costs: &[u64], budget: u64) -> Vec<std::ops::Range<usize>> {
    let mut waves: Vec<std::ops::Range<usize>> = Vec::new();
    let mut used = 0u64;
    for (i, &cost) in costs.iter().enumerate() {
        match waves.last_mut() {
            Some(wave) if used.saturating_add(cost) <= budget => {
                wave.end = i + 1;
                used = used.saturating_add(cost);
            }
            _ => {
                waves.push(i..i + 1);
                used = cost;
            }
        }
    }
    waves
}

/// JPEG decoders quietly grey-fill a cut-off scan, so truncation is checked here: the end-of-image
/// marker must follow the last start-of-scan (entropy-coded data never holds `FF D9`: an `FF` byte
/// there is stuffed as `FF 00`).
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let marker = |m: u8| bytes.windows(2).rposition(|w| w == [0xFF, m]);
    match (marker(0xDA), marker(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}

/// Separable resize with a triangle filter whose support widens with the downscale factor
/// (antialiasing), rounding to 8 bits after each pass — PIL's `Image.resize(BILINEAR)`.
pub fn resize_bilinear_antialiased(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_window(image, (width, height), 0..width, 0..height)
}

/// The `columns` × `rows` window of `image` resized to `size` (what [`resize_bilinear_antialiased`]
/// gives there), computing nothing outside it.
fn resize_window(
    image: &RgbImage,
    size: (u32, u32),
    columns: std::ops::Range<u32>,
    rows: std::ops::Range<u32>,
) -> RgbImage {
    let (w, h) = image.dimensions();
    let horizontal = filter_taps(w, size.0, columns.clone());
    let mut tmp = RgbImage::new(columns.len() as u32, h);
    for y in 0..h {
        for (x, (first, weights)) in horizontal.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (i, &wt) in weights.iter().enumerate() {
                let p = image.get_pixel(first + i as u32, y);
                for c in 0..3 {
                    acc[c] += wt * p[c] as f32;
                }
            }
            tmp.put_pixel(x as u32, y, image::Rgb(acc.map(to_u8)));
        }
    }
    let vertical = filter_taps(h, size.1, rows);
    let mut out = RgbImage::new(columns.len() as u32, vertical.len() as u32);
    for (y, (first, weights)) in vertical.iter().enumerate() {
        for x in 0..columns.len() as u32 {
            let mut acc = [0f32; 3];
            for (i, &wt) in weights.iter().enumerate() {
                let p = tmp.get_pixel(x, first + i as u32);
                for c in 0..3 {
                    acc[c] += wt * p[c] as f32;
                }
            }
            out.put_pixel(x, y as u32, image::Rgb(acc.map(to_u8)));
        }
    }
    out
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// For each output position in `range` (of `out_size`): the first input index and the normalised
/// filter weights.
fn filter_taps(in_size: u32, out_size: u32, range: std::ops::Range<u32>) -> Vec<(u32, Vec<f32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1 at scale 1
    range
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as u32;
            let hi = ((center + support + 0.5).floor() as u32).min(in_size);
            let mut weights: Vec<f64> = (lo..hi)
                .map(|j| {
                    let d = (j as f64 - center + 0.5) / filter_scale;
                    (1.0 - d.abs()).max(0.0)
                })
                .collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            (lo, weights.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;

    /// `jpeg` with an EXIF APP1 segment right after its start marker, holding only the Orientation
    /// tag (`orientation`, 1–8), as a phone camera writes it.
    pub(crate) fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        assert_eq!(&jpeg[..2], [0xFF, 0xD8]);
        let mut app1 = vec![0xFF, 0xE1, 0, 34];
        app1.extend(b"Exif\0\0MM\0\x2A\0\0\0\x08"); // big-endian TIFF header, first IFD at 8
        app1.extend([0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1]); // one entry: tag 0x0112, SHORT, count 1
        app1.extend(orientation.to_be_bytes());
        app1.extend([0, 0, 0, 0, 0, 0]); // value padding, no next IFD
        assert_eq!(app1.len(), 2 + 34);
        [&jpeg[..2], &app1, &jpeg[2..]].concat()
    }

    /// How a camera stores an upright scene under EXIF orientation `tag`: the inverse of the turn
    /// the tag asks a viewer for (the EXIF specification's table, written out here independently).
    fn as_stored(upright: &RgbImage, tag: u16) -> RgbImage {
        use image::imageops::{flip_horizontal, flip_vertical, rotate180, rotate270, rotate90};
        match tag {
            1 => upright.clone(),
            2 => flip_horizontal(upright),
            3 => rotate180(upright),
            4 => flip_vertical(upright),
            5 => flip_horizontal(&rotate90(upright)), // transpose: its own inverse
            6 => rotate270(upright),
            7 => flip_horizontal(&rotate270(upright)), // transverse: its own inverse
            8 => rotate90(upright),
            _ => unreachable!(),
        }
    }

    fn jpeg(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 95).encode_image(image).unwrap();
        out
    }

    /// A 64 × 48 picture of 16 × 16 single-colour blocks, no two alike: JPEG keeps such blocks
    /// exactly wherever they land, so a turned copy decodes to the same pixels, turned.
    fn blocks() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            let (bx, by) = (x / 16, y / 16);
            image::Rgb([(bx * 60) as u8, (by * 100) as u8, (200 - 15 * (bx + 4 * by)) as u8])
        })
    }

    #[test]
    fn each_exif_orientation_decodes_upright() {
        let upright = decode_image(&jpeg(&blocks())).unwrap();
        for tag in 1..=8 {
            let stored = as_stored(&blocks(), tag);
            if tag >= 5 {
                assert_eq!(stored.dimensions(), (48, 64), "orientation {tag} is stored sideways");
            }
            let decoded = decode_image(&with_exif_orientation(&jpeg(&stored), tag)).unwrap();
            assert_eq!(decoded.dimensions(), (64, 48), "orientation {tag}");
            assert!(decoded == upright, "orientation {tag}: the decoded pixels differ from the upright photo's");
        }
    }

    #[test]
    fn an_unreadable_or_out_of_range_tag_leaves_the_image_as_stored() {
        let stored = jpeg(&blocks());
        let plain = decode_image(&stored).unwrap();
        for tag in [0, 9, 0xFFFF] {
            assert!(decode_image(&with_exif_orientation(&stored, tag)).unwrap() == plain, "tag {tag}");
        }
        // An EXIF segment whose TIFF header lies (bad byte order) is ignored, not an error.
        let mut broken = with_exif_orientation(&stored, 6);
        broken[12] = b'X';
        assert!(decode_image(&broken).unwrap() == plain);
    }

    #[test]
    fn the_decode_estimate_covers_turning_a_photo_upright() {
        // 64 × 48 RGB: the decoder's pixels plus an RGB copy (6 bytes a pixel), or two RGB
        // copies while it is turned (also 6), and what the decoder may read besides.
        assert_eq!(
            decoded_bytes(&with_exif_orientation(&jpeg(&as_stored(&blocks(), 6)), 6)),
            48 * 64 * 6 + 2 * ANCILLARY_BYTES
        );
    }
}
