//! The depthwise convolution (CPU kernels and the tensor-op path used on other devices) against a
//! naive loop, values and gradients.

use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use wick::kernels::depthwise::{depthwise_by_shifts, depthwise_by_shifts_checkpointed, depthwise_conv2d};
use wick::kernels::geometry::same_padding;

/// Direct definition: out[n,c,oy,ox] = Σ w[c,ky,kx] · x[n,c,oy·s+ky−pt, ox·s+kx−pl] (zero outside).
fn naive(x: &[f64], w: &[f64], (n, c, h, wd): (usize, usize, usize, usize), k: usize, s: usize) -> Vec<f64> {
    let (oh, pt) = same_padding(h, k, s);
    let (ow, pl) = same_padding(wd, k, s);
    let mut out = vec![0.0; n * c * oh * ow];
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0;
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * s + ky) as isize - pt as isize;
                            let ix = (ox * s + kx) as isize - pl as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                acc +=
                                    w[(ch * k + ky) * k + kx] * x[((b * c + ch) * h + iy as usize) * wd + ix as usize];
                            }
                        }
                    }
                    out[((b * c + ch) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    out
}

/// Gradients of `Σ out · r` for a fixed random `r`, by the chain rule on the naive definition:
/// d/dx and d/dw are accumulated tap by tap.
fn naive_grads(
    x: &[f64],
    w: &[f64],
    r: &[f64],
    dims: (usize, usize, usize, usize),
    k: usize,
    s: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (n, c, h, wd) = dims;
    let (oh, pt) = same_padding(h, k, s);
    let (ow, pl) = same_padding(wd, k, s);
    let (mut gx, mut gw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let go = r[((b * c + ch) * oh + oy) * ow + ox];
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * s + ky) as isize - pt as isize;
                            let ix = (ox * s + kx) as isize - pl as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                let xi = ((b * c + ch) * h + iy as usize) * wd + ix as usize;
                                let wi = (ch * k + ky) * k + kx;
                                gx[xi] += go * w[wi];
                                gw[wi] += go * x[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    (gx, gw)
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
    }
}

/// The device under test: the CPU, or with `WICK_TEST_DEVICE=cuda` (a `--features cuda` build on a GPU
/// machine; `scripts/gpu-check.sh` runs it) the first GPU, where `depthwise_conv2d` takes the
/// tensor-op path.
fn test_device() -> Device {
    match std::env::var("WICK_TEST_DEVICE").as_deref() {
        Ok("cuda") => Device::new_cuda(0).expect("WICK_TEST_DEVICE=cuda, but no CUDA device"),
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok(other) => panic!("WICK_TEST_DEVICE={other}: expected cpu or cuda"),
    }
}

#[test]
fn values_and_gradients_match_the_naive_loop() {
    let mut rng = StdRng::seed_from_u64(7);
    let dev = test_device();
    eprintln!("depthwise against the naive loop on {dev:?}");
    for &(h, w) in &[(7, 7), (8, 8), (9, 6), (12, 13), (1, 1), (2, 3)] {
        for k in [3, 5] {
            for s in [1, 2] {
                let dims = (2, 3, h, w);
                let x: Vec<f32> = (0..2 * 3 * h * w).map(|_| rng.random_range(-1.0..1.0)).collect();
                let wt: Vec<f32> = (0..3 * k * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                let (oh, _) = same_padding(h, k, s);
                let (ow, _) = same_padding(w, k, s);
                let r: Vec<f32> = (0..2 * 3 * oh * ow).map(|_| rng.random_range(-1.0..1.0)).collect();
                let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
                let want = naive(&f64s(&x), &f64s(&wt), dims, k, s);
                let (want_gx, want_gw) = naive_grads(&f64s(&x), &f64s(&wt), &f64s(&r), dims, k, s);

                for (path, conv) in [
                    ("cpu kernel", depthwise_conv2d as fn(&Tensor, &Tensor, usize) -> candle_core::Result<Tensor>),
                    ("tensor ops", depthwise_by_shifts),
                    ("tensor ops, checkpointed", depthwise_by_shifts_checkpointed),
                ] {
                    let what = format!("{path} {h}x{w} k{k} s{s}");
                    let xv = Var::from_vec(x.clone(), (2, 3, h, w), &dev).unwrap();
                    let wv = Var::from_vec(wt.clone(), (3, 1, k, k), &dev).unwrap();
                    let out = conv(xv.as_tensor(), wv.as_tensor(), s).unwrap();
                    assert_eq!(out.dims(), &[2, 3, oh, ow], "{what}: shape");
                    assert_close(&format!("{what} out"), &out.flatten_all().unwrap().to_vec1().unwrap(), &want, 1e-5);

                    let rt = Tensor::from_vec(r.clone(), (2, 3, oh, ow), &dev).unwrap();
                    let grads = (out * rt).unwrap().sum_all().unwrap().backward().unwrap();
                    let gx = grads.get(xv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                    let gw = grads.get(wv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                    assert_close(&format!("{what} grad x"), &gx, &want_gx, 1e-5);
                    assert_close(&format!("{what} grad w"), &gw, &want_gw, 1e-5);
                }
            }
        }
    }
}

#[test]
fn same_padding_puts_the_extra_pixel_after() {
    assert_eq!(same_padding(224, 3, 2), (112, 0)); // total 1: none before, one after
    assert_eq!(same_padding(56, 5, 2), (28, 1)); // total 3: one before, two after
    assert_eq!(same_padding(14, 5, 1), (14, 2));
    assert_eq!(same_padding(7, 3, 1), (7, 1));
}

#[test]
fn mismatched_weight_is_an_error() {
    let x = Tensor::zeros((1, 4, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((3, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = depthwise_conv2d(&x, &w, 1).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
}
