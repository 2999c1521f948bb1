//! `x W + b` and `max(x W + b, 0)` over the last dimension: the products
//! on `gemm` forward and backward, the bias gradient a parallel column sum,
//! the ReLU's backward a mask by the saved output.

use crate::cpu::{f32_slice, with_f32};
use crate::options::{Backend, KernelOptions};
use crate::parity::{random_tensor, Case};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

/// `x W + b` over the last dimension of `x` (`[.., in]`, `W: [in, out]`,
/// `b: [out]`). The input's gradient is skipped when the input is data
/// (tracks no gradient).
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    options: KernelOptions,
) -> Result<Tensor> {
    forward(x, weight, bias, false, options)
}

/// `max(x W + b, 0)`: [`linear`] with the bias and a ReLU in one op.
pub fn linear_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    options: KernelOptions,
) -> Result<Tensor> {
    forward(x, weight, bias, true, options)
}

fn forward(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    relu: bool,
    options: KernelOptions,
) -> Result<Tensor> {
    match options.backend(x) {
        Backend::Composed => {
            let y = reference(x, weight, bias)?;
            if relu {
                y.relu()
            } else {
                Ok(y)
            }
        }
        Backend::Cpu => x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            LinearOp {
                relu,
                bf16: options.bf16_matmuls,
            },
        ),
        #[cfg(feature = "cuda")]
        Backend::Cuda => cuda::linear(x, weight, bias, relu, options.bf16_matmuls),
    }
}

/// `x W + b` from candle ops (`x` flattened to rows, one product): the
/// composed reference.
pub fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let in_dim = *dims.last().expect("input has a last dimension");
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let out_dim = weight.dim(1)?;
    let y = x
        .reshape((rows, in_dim))?
        .matmul(weight)?
        .broadcast_add(bias)?;
    let mut out_shape = dims;
    *out_shape.last_mut().expect("non-empty") = out_dim;
    y.reshape(out_shape)
}

/// The fused CPU kernel.
struct LinearOp {
    relu: bool,
    /// The products in bf16 ([`KernelOptions::bf16_matmuls`]).
    bf16: bool,
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        if self.relu {
            "fused-linear-relu"
        } else {
            "fused-linear"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            f32_slice(self.name(), s1, l1)?,
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
        );
        let (k, n) = l2.shape().dims2()?;
        let dims = l1.dims();
        if dims.last() != Some(&k) || b.len() != n {
            candle_core::bail!(
                "fused-linear: input {:?}, weight [{k}, {n}] and bias [{}] do not fit",
                dims,
                b.len()
            );
        }
        let mut out = vec![0f32; x.len() / k * n];
        if self.relu {
            cpu::linear_relu_forward(x, w, b, &mut out, self.bf16);
        } else {
            cpu::linear_forward(x, w, b, &mut out, self.bf16);
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("non-empty") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (k, n) = weight.dims2()?;
        let (dx, dw, db) = with_f32(self.name(), &[x, grad, weight, res], |s| {
            let (xs, w) = (s[0], s[2]);
            let masked;
            let gs = if self.relu {
                let mut m = vec![0f32; s[1].len()];
                cpu::relu_backward(s[3], s[1], &mut m);
                masked = m;
                &masked[..]
            } else {
                s[1]
            };
            // The input of a first layer (data) needs no gradient: skip
            // its product, as large as the weight gradient's.
            let mut dx = x.track_op().then(|| vec![0f32; xs.len()]);
            let (mut dw, mut db) = (vec![0f32; k * n], vec![0f32; n]);
            cpu::linear_backward(
                xs,
                w,
                gs,
                dx.as_deref_mut(),
                &mut dw,
                &mut db,
                false,
                self.bf16,
            );
            (dx, dw, db)
        })?;
        let device = x.device();
        Ok((
            dx.map(|dx| Tensor::from_vec(dx, x.shape(), device))
                .transpose()?,
            Some(Tensor::from_vec(dw, (k, n), device)?),
            Some(Tensor::from_vec(db, bias.shape(), device)?),
        ))
    }
}

/// The parity cases of [`linear`] and [`linear_relu`].
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    let inputs = || -> Result<Vec<Tensor>> {
        Ok(vec![
            random_tensor(&[3, 7, 24], 1, 1.0)?,
            random_tensor(&[24, 40], 2, 0.3)?,
            random_tensor(&[40], 3, 0.3)?,
        ])
    };
    Ok(vec![
        Case::new(
            "linear [3,7,24]x[24,40]",
            &["x", "weight", "bias"],
            inputs()?,
            |t, _| linear(&t[0], &t[1], &t[2], KernelOptions::default()),
            |t| reference(&t[0], &t[1], &t[2]),
        ),
        Case::new(
            "linear_relu [3,7,24]x[24,40]",
            &["x", "weight", "bias"],
            inputs()?,
            |t, _| linear_relu(&t[0], &t[1], &t[2], KernelOptions::default()),
            |t| reference(&t[0], &t[1], &t[2])?.relu(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::testing::{close, random, value_and_grads};

    #[test]
    fn linear_matches_the_composed_op_on_odd_shapes() {
        for (x_shape, k, n) in [
            (vec![3, 7, 5], 5, 9),
            (vec![1, 1], 1, 1),
            (vec![37, 16], 16, 3),
        ] {
            let x = random(&x_shape, 20, 1.0);
            let w = random(&[k, n], 21, 1.0);
            let b = random(&[n], 22, 1.0);
            let (fv, fg) = value_and_grads(
                &linear(&x, &w, &b, KernelOptions::default()).unwrap(),
                &[&x, &w, &b],
            );
            let rows: usize = x_shape[..x_shape.len() - 1].iter().product();
            let composed = x
                .reshape((rows, k))
                .unwrap()
                .matmul(&w)
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let mut out_shape = x_shape.clone();
            *out_shape.last_mut().unwrap() = n;
            let composed = composed.reshape(out_shape).unwrap();
            let (cv, cg) = value_and_grads(&composed, &[&x, &w, &b]);
            close(&fv, &cv, 1e-5, "linear");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("linear grad {i} {x_shape:?}"));
            }
        }
    }

    #[test]
    fn linear_relu_matches_the_composed_ops() {
        for (rows, k, n) in [(7, 5, 9), (1, 1, 1), (37, 16, 3)] {
            let x = random(&[rows, k], 43, 1.0);
            let w = random(&[k, n], 44, 1.0);
            let b = random(&[n], 45, 1.0);
            let (fv, fg) = value_and_grads(
                &linear_relu(&x, &w, &b, KernelOptions::default()).unwrap(),
                &[&x, &w, &b],
            );
            let composed = x
                .matmul(&w)
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
                .relu()
                .unwrap();
            let (cv, cg) = value_and_grads(&composed, &[&x, &w, &b]);
            assert!(fv.contains(&0.0) || rows == 1, "some outputs clipped");
            close(&fv, &cv, 1e-5, "linear relu");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("linear relu grad {i}"));
            }
        }
    }

    #[test]
    fn linear_of_a_data_input_skips_only_the_input_gradient() {
        // A plain tensor (no gradient needed) as the input of a first layer.
        let x = random(&[9, 4], 40, 1.0).as_tensor().detach();
        let w = random(&[4, 3], 41, 1.0);
        let b = random(&[3], 42, 1.0);
        let (_, fused) = value_and_grads(
            &linear(&x, &w, &b, KernelOptions::default()).unwrap(),
            &[&w, &b],
        );
        let composed = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        let (_, reference) = value_and_grads(&composed, &[&w, &b]);
        close(&fused[0], &reference[0], 1e-4, "weight grad");
        close(&fused[1], &reference[1], 1e-4, "bias grad");
    }
}
