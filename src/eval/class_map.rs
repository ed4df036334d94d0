//! Where the model looks: the head applied to each cell of the backbone's last feature map before
//! pooling (a class activation map, Zhou et al. 2016). The pooled features are the cells' mean,
//! so for a linear head a class's logit for the image is exactly the mean of its map: the map
//! shows which parts of the picture the score came from. A hidden-layer head is applied to each
//! cell the same way (there the mean no longer adds up to the image's logit).

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};

use crate::error::{invalid, Result};
use crate::model::head::Head;
use crate::model::Backbone;

/// Every class's logit at every cell of one image's feature map.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMaps {
    pub h: usize,
    pub w: usize,
    pub classes: usize,
    /// Cell-major: `logits[(y · w + x) · classes + class]`.
    pub logits: Vec<f32>,
}

impl ClassMaps {
    /// `map`: one image's last feature map, NHWC (H' × W' × C, as [`crate::model::Backbone::feature_maps`]
    /// gives it) → the head's logits at each cell.
    pub fn new(head: &Head, map: &[f32], shape: [usize; 3], device: &Device) -> Result<Self> {
        fits(head, shape)?;
        let cells = Self::cells(map, shape, device)?;
        Self::from_cell_logits(&head.logits(&cells, None)?, shape[0], shape[1])
    }

    /// From any classifier's logits at the cells of an H' × W' map, (H' · W', classes) (e.g. the
    /// backbone's own ImageNet classifier applied to the cells).
    pub fn from_cell_logits(logits: &Tensor, h: usize, w: usize) -> Result<Self> {
        let (cells, classes) = logits.dims2()?;
        if cells != h * w {
            return Err(invalid!("{cells} cells of logits for a {h}×{w} map"));
        }
        Ok(Self { h, w, classes, logits: logits.flatten_all()?.to_vec1::<f32>()? })
    }

    /// The cells (H' · W', C) of an NHWC map, checked against its shape, as a tensor.
    pub fn cells(map: &[f32], [h, w, c]: [usize; 3], device: &Device) -> Result<Tensor> {
        if map.len() != h * w * c || h * w == 0 {
            return Err(invalid!("a feature map of {} values is not {h}×{w}×{c}", map.len()));
        }
        Ok(Tensor::from_slice(map, (h * w, c), device)?)
    }

    /// The (row, column) of one class's highest cell.
    pub fn peak(&self, class: usize) -> (usize, usize) {
        let values = self.of(class);
        let top = (0..values.len()).max_by(|&a, &b| values[a].total_cmp(&values[b])).unwrap_or(0);
        (top / self.w, top % self.w)
    }

    /// One class's map (H' × W', row-major).
    pub fn of(&self, class: usize) -> Vec<f32> {
        assert!(class < self.classes, "class {class} of {}", self.classes);
        self.logits.iter().skip(class).step_by(self.classes).copied().collect()
    }
}

/// Where a classifier looks in `image`: `head` (or, without one, the backbone's own classifier)
/// applied to each cell of the backbone's last feature map, and the class it predicts for the
/// image (from the pooled features, the cells' mean). The cells are on the backbone's device, where
/// the classifier's weights are.
pub fn where_it_looks(backbone: &Backbone, head: Option<&Head>, image: &RgbImage) -> Result<(ClassMaps, usize)> {
    let (map, shape) = backbone.feature_maps(&backbone.input_tensor(&[image])?)?;
    if let Some(head) = head {
        fits(head, shape)?;
    }
    let classify = |x: &Tensor| match head {
        Some(head) => head.logits(x, None),
        None => backbone.own_logits(x),
    };
    let cells = ClassMaps::cells(&map, shape, backbone.device())?;
    let maps = ClassMaps::from_cell_logits(&classify(&cells)?, shape[0], shape[1])?;
    let logits = classify(&cells.mean_keepdim(0)?)?.flatten_all()?.to_vec1::<f32>()?;
    let predicted = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0);
    Ok((maps, predicted))
}

/// Whether `head` takes the channels of a feature map of `shape`.
fn fits(head: &Head, shape: [usize; 3]) -> Result<()> {
    if shape[2] != head.spec.input_dim {
        return Err(invalid!("a {shape:?} feature map does not fit a head on {} features", head.spec.input_dim));
    }
    Ok(())
}

/// Share of the map's colour in the blend over the image.
const OVERLAY_ALPHA: f32 = 0.5;

/// `image` (what the network saw: the preprocessed crop) with `map` (H' × W') drawn over it: the
/// map scaled to the image (bilinear, cell centres on the image's cell centres), its range from
/// lowest to highest stretched over a blue → red scale, half blended with the picture. A flat map
/// (every cell alike) draws as the scale's low end.
pub fn overlay(image: &RgbImage, map: &[f32], (h, w): (usize, usize)) -> RgbImage {
    assert_eq!(map.len(), h * w, "a {h}×{w} map");
    let (low, high) = map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, u), &v| (l.min(v), u.max(v)));
    let range = if high - low > 1e-6 { high - low } else { f32::INFINITY };
    let (width, height) = image.dimensions();
    let at = |y: usize, x: usize| (map[y * w + x] - low) / range;
    let mut out = image.clone();
    for (px, py, pixel) in out.enumerate_pixels_mut() {
        // Continuous map coordinates of this pixel's centre.
        let fy = ((py as f32 + 0.5) * h as f32 / height as f32 - 0.5).clamp(0.0, (h - 1) as f32);
        let fx = ((px as f32 + 0.5) * w as f32 / width as f32 - 0.5).clamp(0.0, (w - 1) as f32);
        let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
        let (ty, tx) = (fy - y0 as f32, fx - x0 as f32);
        let top = at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx;
        let bottom = at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx;
        let colour = heat(top * (1.0 - ty) + bottom * ty);
        for ch in 0..3 {
            let blended = pixel[ch] as f32 * (1.0 - OVERLAY_ALPHA) + colour[ch] as f32 * OVERLAY_ALPHA;
            pixel[ch] = blended.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// 0 → blue, 0.5 → yellow-green, 1 → red.
fn heat(t: f32) -> Rgb<u8> {
    let t = t.clamp(0.0, 1.0);
    let channel = |centre: f32| ((1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb([channel(3.0), channel(2.0), channel(1.0)])
}
