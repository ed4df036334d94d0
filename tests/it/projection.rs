//! The data map's PCA ([`wick::eval::projection`]): it finds the directions the points spread
//! along, gives the same picture each time, and refuses rows of the wrong length.

use candle_core::Device;
use rand::{rngs::StdRng, Rng, SeedableRng};
use wick::eval::projection::pca_2d;

#[test]
fn pca_recovers_the_two_widest_directions() {
    let dim = 64;
    let mut rng = StdRng::seed_from_u64(7);
    let mut rows = Vec::new();
    let mut along = Vec::new();
    for _ in 0..500 {
        let (a, b): (f32, f32) = (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
        along.push((a, b));
        for d in 0..dim {
            // Wide along axis 3, narrower along axis 10, a little noise elsewhere.
            let v = match d {
                3 => 10.0 * a,
                10 => 4.0 * b,
                _ => rng.random_range(-0.1..0.1),
            };
            rows.push(v + 2.0);
        }
    }
    let points = pca_2d(&rows, dim, &Device::Cpu).unwrap();
    assert_eq!(points.len(), 500);
    assert_eq!(points, pca_2d(&rows, dim, &Device::Cpu).unwrap(), "deterministic");
    let corr = |xs: Vec<f32>, ys: Vec<f32>| {
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        let (mx, my) = (mean(&xs), mean(&ys));
        let cov: f32 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sx: f32 = xs.iter().map(|x| (x - mx).powi(2)).sum::<f32>().sqrt();
        let sy: f32 = ys.iter().map(|y| (y - my).powi(2)).sum::<f32>().sqrt();
        cov / (sx * sy)
    };
    let first = corr(points.iter().map(|p| p[0]).collect(), along.iter().map(|a| a.0).collect());
    let second = corr(points.iter().map(|p| p[1]).collect(), along.iter().map(|a| a.1).collect());
    assert!(first > 0.999, "first axis correlation {first}");
    assert!(second.abs() > 0.99, "second axis correlation {second}");
    let mean: f32 = points.iter().map(|p| p[0]).sum::<f32>() / 500.0;
    assert!(mean.abs() < 1e-3, "centred: {mean}");
}

#[test]
fn degenerate_and_bad_input() {
    assert!(pca_2d(&[], 8, &Device::Cpu).unwrap().is_empty());
    let same = vec![1.5f32; 5 * 8];
    assert!(
        pca_2d(&same, 8, &Device::Cpu).unwrap().iter().all(|p| p == &[0.0, 0.0]),
        "identical images sit at the origin"
    );
    let err = pca_2d(&[1.0; 7], 8, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("not rows of 8"), "{err}");
    assert!(pca_2d(&[1.0; 8], 0, &Device::Cpu).is_err());
}
