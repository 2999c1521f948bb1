//! Checks every fused op on a device against its composed definition on
//! the CPU: forward values and the gradient of every input.
//!
//! On the CPU this tests the fused CPU kernels; on a GPU it tests the CUDA
//! kernels (`cargo xtask gpu-check` and the `cuda_parity` test run it).
//!
//! ```
//! use gpicl_kernels::{parity, Device};
//! for r in parity::check_fused_ops(&Device::Cpu).unwrap() {
//!     assert!(r.max_rel_error < 1e-4, "{}: {}", r.op, r.max_rel_error);
//! }
//! ```

use crate::rng::Rng;
use crate::{fused, lstm, ops, outer_lstm};
use candle_core::{DType, Device, Result, Tensor, Var};

/// How far one fused op on a device is from the composed CPU reference.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpParity {
    /// The op and the shape it ran on.
    pub op: String,
    /// Largest `|fused − reference| / max(1, |reference|)` over the forward
    /// values and every input's gradient.
    pub max_rel_error: f32,
    /// Which output had that error (`forward` or `grad <input>`).
    pub worst: String,
}

fn random(shape: &[usize], seed: u64, scale: f64) -> Result<Tensor> {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
    Tensor::from_vec(data, shape, &Device::Cpu)
}

fn flat(x: &Tensor) -> Result<Vec<f32>> {
    x.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()
}

/// Forward values and the gradients of `Σ w ⊙ f(inputs)` (`w` fixed and
/// random, so every output element gets a distinct upstream gradient).
type Outputs = (Vec<f32>, Vec<Vec<f32>>);

fn run(
    inputs: &[Tensor],
    device: &Device,
    f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<Outputs> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_device(device)?))
        .collect::<Result<_>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let out = f(&tensors)?;
    let weights = random(out.dims(), 99, 1.0)?.to_device(device)?;
    let grads = (&out * &weights)?.sum_all()?.backward()?;
    let mut g = Vec::with_capacity(vars.len());
    for v in &vars {
        match grads.get(v.as_tensor()) {
            Some(grad) => g.push(flat(grad)?),
            None => g.push(vec![0.0; v.elem_count()]),
        }
    }
    Ok((flat(&out)?, g))
}

fn compare(op: String, names: &[&str], got: Outputs, want: Outputs) -> OpParity {
    let mut worst = (0f32, "forward".to_string());
    let mut check = |a: &[f32], b: &[f32], what: String| {
        let err = if a.len() != b.len() {
            f32::INFINITY
        } else {
            a.iter()
                .zip(b)
                .map(|(x, y)| {
                    let e = (x - y).abs() / y.abs().max(1.0);
                    if e.is_nan() {
                        f32::INFINITY
                    } else {
                        e
                    }
                })
                .fold(0f32, f32::max)
        };
        if err > worst.0 || (err.is_infinite() && worst.0.is_finite()) {
            worst = (err, what);
        }
    };
    check(&got.0, &want.0, "forward".into());
    for (i, (a, b)) in got.1.iter().zip(&want.1).enumerate() {
        check(a, b, format!("grad {}", names.get(i).unwrap_or(&"?")));
    }
    OpParity {
        op,
        max_rel_error: worst.0,
        worst: worst.1,
    }
}

/// Runs every fused op on `device` and its composed definition on the CPU,
/// on small odd shapes, and reports the largest relative difference of
/// each (forward and all gradients).
pub fn check_fused_ops(device: &Device) -> Result<Vec<OpParity>> {
    let was_enabled = fused::use_fused(&Tensor::zeros(1, DType::F32, &Device::Cpu)?);
    fused::set_enabled(true);
    let result = check_all(device);
    fused::set_enabled(was_enabled);
    result
}

fn check_all(device: &Device) -> Result<Vec<OpParity>> {
    let cpu = Device::Cpu;
    let mut out = Vec::new();
    let mut case = |op: String,
                    names: &[&str],
                    inputs: Vec<Tensor>,
                    fused_f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
                    reference: &dyn Fn(&[Tensor]) -> Result<Tensor>|
     -> Result<()> {
        let got = run(&inputs, device, fused_f)?;
        let want = run(&inputs, &cpu, reference)?;
        out.push(compare(op, names, got, want));
        Ok(())
    };
    let composed_linear = |t: &[Tensor]| t[0].broadcast_matmul(&t[1])?.broadcast_add(&t[2]);
    let lin = || -> Result<Vec<Tensor>> {
        Ok(vec![
            random(&[3, 7, 24], 1, 1.0)?,
            random(&[24, 40], 2, 0.3)?,
            random(&[40], 3, 0.3)?,
        ])
    };
    case(
        "linear [3,7,24]x[24,40]".into(),
        &["x", "weight", "bias"],
        lin()?,
        &|t| fused::linear(&t[0], &t[1], &t[2]),
        &composed_linear,
    )?;
    case(
        "linear_relu [3,7,24]x[24,40]".into(),
        &["x", "weight", "bias"],
        lin()?,
        &|t| fused::linear_relu(&t[0], &t[1], &t[2]),
        &|t| composed_linear(t)?.relu(),
    )?;
    case(
        "layer_norm [6,5,48]".into(),
        &["x", "gain", "bias"],
        vec![
            random(&[6, 5, 48], 4, 2.0)?,
            random(&[48], 5, 1.0)?,
            random(&[48], 6, 1.0)?,
        ],
        &|t| fused::layer_norm(&t[0], &t[1], &t[2], 1e-5),
        &|t| ops::layer_norm(&t[0], &t[1], &t[2], 1e-5),
    )?;
    for tanh in [false, true] {
        case(
            format!("gelu{} [5,33]", if tanh { "_tanh" } else { "_erf" }),
            &["x"],
            vec![random(&[5, 33], 7, 2.0)?],
            &|t| fused::gelu(&t[0], tanh),
            &|t| if tanh { t[0].gelu() } else { t[0].gelu_erf() },
        )?;
    }
    let (b, t, h, k) = (2, 37, 3, 40);
    case(
        format!("causal_attention [{b},{t},{h},{k}]"),
        &["q", "k", "v"],
        vec![
            random(&[b, t, h, k], 8, 1.0)?,
            random(&[b, t, h, k], 9, 1.0)?,
            random(&[b, t, h, k], 10, 1.0)?,
        ],
        &|x| fused::causal_attention(&x[0], &x[1], &x[2]),
        &|x| {
            let heads_first = |y: &Tensor| y.transpose(1, 2)?.contiguous();
            let mask = ops::causal_mask(t, &Device::Cpu)?;
            ops::causal_attention(
                &heads_first(&x[0])?,
                &heads_first(&x[1])?,
                &heads_first(&x[2])?,
                &mask,
            )?
            .transpose(1, 2)?
            .contiguous()
        },
    )?;
    let mut rng = Rng::new(11);
    let labels: Vec<u32> = (0..3 * 7).map(|_| rng.below(10) as u32).collect();
    let targets_cpu = Tensor::from_vec(labels, (3, 7), &Device::Cpu)?;
    let targets_dev = targets_cpu.to_device(device)?;
    case(
        "cross_entropy [3,7,10]".into(),
        &["logits"],
        vec![random(&[3, 7, 10], 12, 3.0)?],
        &|x| fused::cross_entropy(&x[0], &targets_dev),
        &|x| ops::cross_entropy(&x[0], &targets_cpu),
    )?;
    let (hid, steps) = (13, 6);
    case(
        format!("lstm_recurrence [3,{steps},4x{hid}]"),
        &["input", "w_rec"],
        vec![
            random(&[3, steps, 4 * hid], 13, 1.0)?,
            random(&[hid, 4 * hid], 14, 0.3)?,
        ],
        &|x| lstm::lstm_recurrence(&x[0], &x[1]),
        &|x| lstm::lstm_recurrence_composed(&x[0], &x[1]),
    )?;
    let (heads, size) = (2, 7);
    let width = heads * size;
    case(
        format!("outer_lstm_recurrence [2,5,8x{heads}x{size}]"),
        &["input", "w_rec", "scale"],
        vec![
            random(&[2, 5, 8 * width], 15, 1.0)?,
            random(&[width, 8 * width], 16, 0.3)?,
            Tensor::new(&[0.8f32], &Device::Cpu)?,
        ],
        &|x| outer_lstm::outer_lstm_recurrence(&x[0], &x[1], &x[2], heads),
        &|x| outer_lstm::outer_lstm_recurrence_composed(&x[0], &x[1], &x[2], heads),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fused_op_on_the_cpu_matches_its_composed_definition() {
        let results = check_fused_ops(&Device::Cpu).unwrap();
        assert_eq!(results.len(), 9);
        for r in results {
            assert!(r.max_rel_error < 1e-4, "{r:?}");
        }
    }

    /// Runs only where a CUDA device is present (skips otherwise, saying so).
    #[test]
    fn every_fused_op_on_a_gpu_matches_its_composed_definition_on_the_cpu() {
        let Ok(gpu) = crate::device::parse_device("cuda") else {
            eprintln!("no CUDA device: GPU parity not run");
            return;
        };
        for r in check_fused_ops(&gpu).unwrap() {
            assert!(r.max_rel_error < 1e-4, "{r:?}");
        }
    }
}
