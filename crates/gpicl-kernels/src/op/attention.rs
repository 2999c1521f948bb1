//! Causal scaled dot-product attention over heads, in the layout a linear
//! layer produces, with its causal mask built in.

use self::cpu::AttentionShape;
use crate::composed;
use crate::cpu::{f32_slice, with_f32};
use crate::options::{Backend, KernelOptions};
use crate::parity::{random_tensor, Case};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

/// Causal scaled dot-product attention, as [`reference()`]: `q`, `k`, `v`
/// and the result are `[batch, t, heads, key_size]` (a free reshape of
/// `[batch, t, heads·key_size]`), so the model needs no head transposes.
/// Position `i` attends to `0..=i`.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: KernelOptions,
) -> Result<Tensor> {
    match options.backend(q) {
        Backend::Composed => reference(q, k, v),
        Backend::Cpu => {
            q.contiguous()?
                .apply_op3(&k.contiguous()?, &v.contiguous()?, CausalAttention)
        }
        #[cfg(feature = "cuda")]
        Backend::Cuda => cuda::causal_attention(q, k, v),
    }
}

/// [`composed::causal_attention`] (heads before positions, an additive
/// [`composed::causal_mask`]) in the `[batch, t, heads, key_size]` layout:
/// the composed reference. The result is a transposed view.
pub fn reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let t = q.dim(1)?;
    let mask = composed::causal_mask(t, q.device())?;
    let heads_first = |x: &Tensor| x.transpose(1, 2)?.contiguous();
    composed::causal_attention(&heads_first(q)?, &heads_first(k)?, &heads_first(v)?, &mask)?
        .transpose(1, 2)
}

/// The fused CPU kernel.
struct CausalAttention;

/// The shared shape of `q`, `k` and `v`, which must agree.
pub(crate) fn attention_layouts(q: &Layout, k: &Layout, v: &Layout) -> Result<AttentionShape> {
    if k.shape() != q.shape() || v.shape() != q.shape() {
        candle_core::bail!(
            "fused-causal-attention: q {:?}, k {:?}, v {:?} must have one shape",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    attention_shape(q.shape())
}

fn attention_shape(shape: &Shape) -> Result<AttentionShape> {
    let (batch, t, heads, key) = shape.dims4()?;
    Ok(AttentionShape {
        batch,
        t,
        heads,
        key,
    })
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "fused-causal-attention"
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
        let shape = attention_layouts(l1, l2, l3)?;
        let (q, k, v) = (
            f32_slice(self.name(), s1, l1)?,
            f32_slice(self.name(), s2, l2)?,
            f32_slice(self.name(), s3, l3)?,
        );
        let mut out = vec![0f32; q.len()];
        cpu::causal_attention_forward(q, k, v, shape, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let shape = attention_shape(q.shape())?;
        let [dq, dk, dv] = with_f32(self.name(), &[q, k, v, grad], |s| {
            let mut out = [(); 3].map(|_| vec![0f32; s[0].len()]);
            let [dq, dk, dv] = &mut out;
            cpu::causal_attention_backward(s[0], s[1], s[2], s[3], shape, dq, dk, dv);
            out
        })?;
        let (shape, device) = (q.shape(), q.device());
        Ok((
            Some(Tensor::from_vec(dq, shape, device)?),
            Some(Tensor::from_vec(dk, shape, device)?),
            Some(Tensor::from_vec(dv, shape, device)?),
        ))
    }
}

/// The parity case of [`causal_attention`].
pub(crate) fn parity_cases() -> Result<Vec<Case>> {
    let (b, t, h, k) = (2, 37, 3, 40);
    Ok(vec![Case::new(
        format!("causal_attention [{b},{t},{h},{k}]"),
        &["q", "k", "v"],
        vec![
            random_tensor(&[b, t, h, k], 8, 1.0)?,
            random_tensor(&[b, t, h, k], 9, 1.0)?,
            random_tensor(&[b, t, h, k], 10, 1.0)?,
        ],
        |x, _| causal_attention(&x[0], &x[1], &x[2], KernelOptions::default()),
        |x| reference(&x[0], &x[1], &x[2])?.contiguous(),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::testing::{close, random, value_and_grads};
    use candle_core::{Device, Var};

    #[test]
    fn attention_matches_the_composed_op_on_odd_shapes() {
        for shape in [[2, 7, 3, 5], [1, 1, 1, 4], [1, 17, 2, 8], [3, 9, 1, 6]] {
            let q = random(&shape, 5, 1.0);
            let k = random(&shape, 6, 1.0);
            let v = random(&shape, 7, 1.0);
            // Shapes are [batch, t, heads, key]; the composed op wants heads
            // before positions.
            let mask = composed::causal_mask(shape[1], &Device::Cpu).unwrap();
            let (fv, fg) = value_and_grads(
                &causal_attention(&q, &k, &v, KernelOptions::default()).unwrap(),
                &[&q, &k, &v],
            );
            let heads_first = |x: &Var| x.transpose(1, 2).unwrap().contiguous().unwrap();
            let composed = composed::causal_attention(
                &heads_first(&q),
                &heads_first(&k),
                &heads_first(&v),
                &mask,
            )
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap();
            let (cv, cg) = value_and_grads(&composed, &[&q, &k, &v]);
            close(&fv, &cv, 1e-5, "attention");
            for (i, (f, c)) in fg.iter().zip(&cg).enumerate() {
                close(f, c, 1e-4, &format!("attention grad {i} {shape:?}"));
            }
        }
    }
}
