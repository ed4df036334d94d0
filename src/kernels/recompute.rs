//! Activation checkpointing for ops spelt with tensor ops (the non-CPU paths of the depthwise
//! convolution and BatchNorm): the op's output is computed without its autograd graph, so its
//! intermediate tensors are freed at once, and the backward pass runs the op again, with autograd,
//! from the saved input and parameters. Autograd keeps every intermediate until the backward pass:
//! for a 5×5 depthwise layer that is 50 buffers the size of its output, for a BatchNorm about eight.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, Var};

type Op = dyn Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor> + Send + Sync;

/// `op(input, params)`, differentiable in both, holding on to nothing but its arguments and output.
pub fn recompute_in_backward(
    input: &Tensor,
    params: &Tensor,
    op: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor> + Send + Sync + 'static,
) -> candle_core::Result<Tensor> {
    let out = op(&input.detach(), &params.detach())?.contiguous()?;
    input.apply_op3(params, &out, Recompute { op: Box::new(op) })
}

/// Forward: hands over the output computed without a graph (the third argument). Backward: runs the
/// op again with autograd.
struct Recompute {
    op: Box<Op>,
}

impl CustomOp3 for Recompute {
    fn name(&self) -> &'static str {
        "recompute-in-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        out: &CpuStorage,
        out_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((out.try_clone(out_l)?, out_l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        out: &candle_core::CudaStorage,
        out_l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        Ok((out.try_clone(out_l)?, out_l.shape().clone()))
    }

    fn bwd(
        &self,
        input: &Tensor,
        params: &Tensor,
        _precomputed: &Tensor,
        _out: &Tensor,
        grad_out: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // An input outside the graph (frozen activations) stays outside: no gradient is computed for it.
        let tracked = input.track_op();
        let params = Var::from_tensor(&params.detach())?;
        let input = if tracked { Var::from_tensor(&input.detach())?.as_tensor().clone() } else { input.detach() };
        let out = (self.op)(&input, params.as_tensor())?;
        let grads = (out * grad_out.detach())?.sum_all()?.backward()?;
        let grad_input = if tracked { grads.get(&input).cloned() } else { None };
        Ok((grad_input, grads.get(params.as_tensor()).cloned(), None))
    }
}
