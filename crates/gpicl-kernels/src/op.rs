//! The fused ops, one module each: the differentiable function a model
//! calls, its composed reference (`reference`, candle primitives, the
//! definition it is tested against), its CPU kernel (a candle custom op
//! over its slice loops, `cpu`, which [`crate::host`] re-exports for
//! hand-written training steps), its CUDA half (`cuda`, with the `cuda`
//! feature) and its parity case ([`crate::parity`]).
//!
//! Every op dispatches the same way, once, on
//! [`KernelOptions`](crate::KernelOptions) and its input: the composed
//! reference when the fused kernels are off or do not apply (not `f32`, a
//! device without kernels), the CPU op on the CPU, the op's `cuda` half on
//! CUDA. The CPU and CUDA halves are separate candle ops, each refusing the
//! other's device, so no op branches on the device inside its passes.
//!
//! A new kernel is a new module here: its function, `reference`, CPU op
//! and loops, `cuda` half and `parity_cases`, listed in [`crate::parity`].

pub mod adam;
pub mod attention;
pub mod cross_entropy;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod lstm;
pub mod outer_lstm;
#[cfg(test)]
pub(crate) mod testing;
pub mod vsml;

#[cfg(test)]
mod tests {
    use super::attention::causal_attention;
    use super::cross_entropy::cross_entropy;
    use super::gelu::gelu;
    use super::layer_norm::layer_norm;
    use super::testing::{finite_difference_check, random, random_targets, value_and_grads};
    use crate::KernelOptions;
    use candle_core::Tensor;

    const ON: KernelOptions = KernelOptions {
        fused: true,
        bf16_matmuls: false,
    };

    #[test]
    fn fused_gradients_match_finite_differences() {
        let x = random(&[3, 6], 8, 1.0);
        let gain = random(&[6], 9, 1.0);
        let bias = random(&[6], 10, 1.0);
        let ln = |x: &Tensor| layer_norm(x, &gain, &bias, 1e-5, ON).unwrap();
        let (_, g) = value_and_grads(&ln(x.as_tensor()), &[&x]);
        finite_difference_check(ln, &x, &g[0], "layer norm");

        let (_, g) = value_and_grads(&gelu(&x, false, ON).unwrap(), &[&x]);
        finite_difference_check(|x| gelu(x, false, ON).unwrap(), &x, &g[0], "gelu");
        let (_, g) = value_and_grads(&gelu(&x, true, ON).unwrap(), &[&x]);
        finite_difference_check(|x| gelu(x, true, ON).unwrap(), &x, &g[0], "gelu tanh");

        let targets = random_targets(3, 6, 14);
        let ce = |x: &Tensor| cross_entropy(x, &targets, ON).unwrap();
        let (_, g) = value_and_grads(&ce(x.as_tensor()), &[&x]);
        finite_difference_check(ce, &x, &g[0], "cross-entropy");

        let q = random(&[1, 5, 2, 3], 11, 1.0);
        let k = random(&[1, 5, 2, 3], 12, 1.0);
        let v = random(&[1, 5, 2, 3], 13, 1.0);
        let (_, g) = value_and_grads(&causal_attention(&q, &k, &v, ON).unwrap(), &[&q, &k, &v]);
        finite_difference_check(
            |q| causal_attention(q, &k, &v, ON).unwrap(),
            &q,
            &g[0],
            "attention q",
        );
        finite_difference_check(
            |k| causal_attention(&q, k, &v, ON).unwrap(),
            &k,
            &g[1],
            "attention k",
        );
        finite_difference_check(
            |v| causal_attention(&q, &k, v, ON).unwrap(),
            &v,
            &g[2],
            "attention v",
        );
    }
}
