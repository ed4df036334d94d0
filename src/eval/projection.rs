//! A map of the data: every image's features projected to 2-D by PCA, the two directions along
//! which the features vary most, so images the backbone sees alike land close together.
//!
//! The directions come from subspace iteration on the centred features (X · (Xᵀ · V), then
//! re-orthonormalised), never forming the 1280 × 1280 covariance: each step is two thin matrix
//! products, which is what keeps 10,000 images to well under a second.

use candle_core::{Device, Tensor};

use crate::error::{invalid, Result};
use crate::util::rng::Rng;

/// Steps of subspace iteration: the leading two directions of image features are well apart
/// from the third, and the projection only has to look right on a canvas.
const STEPS: usize = 40;

/// `rows` feature vectors (`n × dim`, row-major) → their 2-D coordinates (`n` pairs), centred on
/// the mean image, along the first and second principal directions (each direction's sign fixed so
/// that its largest component is positive: the same data gives the same picture).
pub fn pca_2d(rows: &[f32], dim: usize, device: &Device) -> Result<Vec<[f32; 2]>> {
    if dim == 0 || !rows.len().is_multiple_of(dim) {
        return Err(invalid!("{} values are not rows of {dim}", rows.len()));
    }
    let n = rows.len() / dim;
    if n == 0 {
        return Ok(Vec::new());
    }
    let x = Tensor::from_slice(rows, (n, dim), device)?;
    let x = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let mut rng = Rng::new(0);
    let start: Vec<f32> = (0..dim * 2).map(|_| rng.uniform() - 0.5).collect();
    let mut v = orthonormal(&Tensor::from_vec(start, (dim, 2), device)?)?;
    for _ in 0..STEPS {
        v = orthonormal(&x.t()?.matmul(&x.matmul(&v)?)?)?;
    }
    let v = fix_signs(&v)?;
    let coordinates = x.matmul(&v)?.to_vec2::<f32>()?;
    Ok(coordinates.into_iter().map(|p| [p[0], p[1]]).collect())
}

/// Gram–Schmidt on the two columns of `v` (dim × 2); a column that vanishes (all images alike
/// along it) becomes zero rather than NaN.
fn orthonormal(v: &Tensor) -> Result<Tensor> {
    let columns = v.t()?.to_vec2::<f32>()?;
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let normalise = |a: Vec<f32>| {
        let norm = dot(&a, &a).sqrt();
        if norm > 1e-12 {
            a.into_iter().map(|x| x / norm).collect()
        } else {
            vec![0.0; a.len()]
        }
    };
    let first: Vec<f32> = normalise(columns[0].clone());
    let along = dot(&columns[1], &first);
    let second = normalise(columns[1].iter().zip(&first).map(|(y, x)| y - along * x).collect());
    Ok(Tensor::from_vec([first, second].concat(), (2, columns[0].len()), v.device())?.t()?.contiguous()?)
}

fn fix_signs(v: &Tensor) -> Result<Tensor> {
    let columns = v.t()?.to_vec2::<f32>()?;
    let fixed: Vec<f32> = columns
        .into_iter()
        .flat_map(|c| {
            let largest = c.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs())).unwrap_or(0.0);
            let sign = if largest < 0.0 { -1.0 } else { 1.0 };
            c.into_iter().map(move |x| x * sign)
        })
        .collect();
    let dim = fixed.len() / 2;
    Ok(Tensor::from_vec(fixed, (2, dim), v.device())?.t()?.contiguous()?)
}
