//! The fused bias + ReLU6 op against the same computation spelt with Candle's broadcast ops.

use candle_core::{Device, Tensor, Var};
use wick::kernels::bias_relu6::add_bias_relu6;

#[test]
fn values_and_gradients_match_broadcast_ops() {
    let dev = Device::Cpu;
    // Values spread over (-9, 9) so that both ReLU6 bounds are crossed.
    let x = Var::from_tensor(&(Tensor::randn(0f32, 4f32, (2, 5, 3, 4), &dev).unwrap())).unwrap();
    let b = Var::from_tensor(&Tensor::randn(0f32, 2f32, 5, &dev).unwrap()).unwrap();
    let r = Tensor::randn(0f32, 1f32, (2, 5, 3, 4), &dev).unwrap();
    for relu6 in [true, false] {
        let fused = add_bias_relu6(x.as_tensor(), b.as_tensor(), relu6).unwrap();
        let plain = x.as_tensor().broadcast_add(&b.as_tensor().reshape((1, 5, 1, 1)).unwrap()).unwrap();
        let plain = if relu6 { plain.clamp(0f32, 6f32).unwrap() } else { plain };
        let diff = (&fused - &plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "relu6={relu6}: values differ by {diff}");
        if relu6 {
            let clipped = fused.eq(0f32).unwrap().sum_all().unwrap().to_scalar::<u8>().unwrap();
            assert!(clipped > 0, "test data never hits the lower bound");
        }

        let g_fused = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g_plain = (plain * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", &x), ("bias", &b)] {
            let (a, e) = (g_fused.get(v.as_tensor()).unwrap(), g_plain.get(v.as_tensor()).unwrap());
            let diff = (a - e).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "relu6={relu6}: grad {name} differs by {diff}");
        }
    }
}
