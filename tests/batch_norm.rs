//! The fused CPU BatchNorm(+ReLU6), and the checkpointed tensor-op version other devices take,
//! against the same function from plain tensor ops differentiated by autograd: outputs, batch
//! statistics and gradients.

use candle_core::{Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use wick::kernels::batch_norm::{
    batch_norm_eval, batch_norm_eval_by_ops, batch_norm_train, batch_norm_train_by_ops, batch_norm_train_checkpointed,
};

fn random(rng: &mut StdRng, shape: &[usize], scale: f32, shift: f32) -> Vec<f32> {
    (0..shape.iter().product()).map(|_| rng.random_range(-1.0..1.0) * scale + shift).collect()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    let (got, want) =
        (got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn fused_training_mode_matches_tensor_ops_with_gradients() {
    let mut rng = StdRng::seed_from_u64(3);
    for (shape, relu6) in
        [(vec![4, 3, 5, 5], true), (vec![2, 6, 3, 4], false), (vec![8, 5, 1, 1], true), (vec![3, 4, 7], true)]
    {
        let c = shape[1];
        // Values around 2 ± 3 so that ReLU6 clips at both ends.
        let x = random(&mut rng, &shape, 3.0, 2.0);
        let (gamma, beta) = (random(&mut rng, &[c], 1.0, 1.0), random(&mut rng, &[c], 2.0, 0.0));
        let r = Tensor::from_vec(random(&mut rng, &shape, 1.0, 0.0), shape.as_slice(), &Device::Cpu).unwrap();
        let run = |path: &str| {
            let xv = Var::from_vec(x.clone(), shape.as_slice(), &Device::Cpu).unwrap();
            let gv = Var::from_vec(gamma.clone(), c, &Device::Cpu).unwrap();
            let bv = Var::from_vec(beta.clone(), c, &Device::Cpu).unwrap();
            let f = match path {
                "fused" => batch_norm_train,
                "checkpointed" => batch_norm_train_checkpointed,
                _ => batch_norm_train_by_ops,
            };
            let (y, mean, var) = f(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), 1e-3, relu6).unwrap();
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let grad = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
            (y, mean, var, grad(&xv), grad(&gv), grad(&bv))
        };
        let ops = run("tensor ops");
        for path in ["fused", "checkpointed"] {
            let got = run(path);
            let what = format!("{path} {shape:?} relu6 {relu6}");
            assert_close(&format!("{what} output"), &got.0, &ops.0, 1e-5);
            assert_close(&format!("{what} mean"), &got.1, &ops.1, 1e-5);
            assert_close(&format!("{what} variance"), &got.2, &ops.2, 1e-5);
            assert_close(&format!("{what} grad x"), &got.3, &ops.3, 1e-4);
            assert_close(&format!("{what} grad gamma"), &got.4, &ops.4, 1e-4);
            assert_close(&format!("{what} grad beta"), &got.5, &ops.5, 1e-4);
        }
    }
}

#[test]
fn fused_evaluation_mode_matches_tensor_ops() {
    let mut rng = StdRng::seed_from_u64(4);
    let shape = [2, 3, 4, 4];
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &Device::Cpu).unwrap();
    let x = t(random(&mut rng, &shape, 3.0, 2.0), &shape);
    let (gamma, beta) = (t(random(&mut rng, &[3], 1.0, 1.0), &[3]), t(random(&mut rng, &[3], 1.0, 0.0), &[3]));
    let (mean, var) = (t(random(&mut rng, &[3], 1.0, 0.0), &[3]), t(random(&mut rng, &[3], 0.5, 1.0), &[3]));
    for relu6 in [true, false] {
        let fused = batch_norm_eval(&x, &gamma, &beta, &mean, &var, 1e-3, relu6).unwrap();
        let ops = batch_norm_eval_by_ops(&x, &gamma, &beta, &mean, &var, 1e-3, relu6).unwrap();
        assert_close(&format!("eval relu6 {relu6}"), &fused, &ops, 1e-5);
    }
}
