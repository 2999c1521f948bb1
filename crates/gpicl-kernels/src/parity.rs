//! Checks every fused op on a device against its composed definition on
//! the CPU: forward values and the gradient of every input.
//!
//! On the CPU this tests the fused CPU kernels; on a GPU it tests the CUDA
//! kernels (`cargo xtask gpu-check` and the `cuda_parity` test run it).
//! Each op module of [`crate::op`] gives its cases; the fused
//! side runs with the fused kernels on and the reference side calls the
//! op's `reference` directly, so no setting is switched to compare them.
//!
//! ```
//! use gpicl_kernels::{parity, Device};
//! for r in parity::check_fused_ops(&Device::Cpu).unwrap() {
//!     assert!(r.max_rel_error < 1e-4, "{}: {}", r.op, r.max_rel_error);
//! }
//! ```

use crate::op;
use crate::rng::Rng;
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

/// A CPU tensor of normal values times `scale`, drawn from `seed`.
pub(crate) fn random_tensor(shape: &[usize], seed: u64, scale: f64) -> Result<Tensor> {
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
    let weights = random_tensor(out.dims(), 99, 1.0)?.to_device(device)?;
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

/// The fused side of a case: the op on the inputs (moved to `device`,
/// which it is also given, for data such as targets).
type FusedFn = Box<dyn Fn(&[Tensor], &Device) -> Result<Tensor>>;
/// The reference side of a case, on CPU inputs.
type ReferenceFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

/// One parity case: an op on small odd shapes, its fused call and its
/// composed reference.
pub(crate) struct Case {
    op: String,
    names: &'static [&'static str],
    inputs: Vec<Tensor>,
    fused: FusedFn,
    reference: ReferenceFn,
}

impl Case {
    /// A case named `op` (with its shape) over `inputs` (CPU tensors, one
    /// name each for the report).
    pub(crate) fn new(
        op: impl Into<String>,
        names: &'static [&'static str],
        inputs: Vec<Tensor>,
        fused: impl Fn(&[Tensor], &Device) -> Result<Tensor> + 'static,
        reference: impl Fn(&[Tensor]) -> Result<Tensor> + 'static,
    ) -> Self {
        Self {
            op: op.into(),
            names,
            inputs,
            fused: Box::new(fused),
            reference: Box::new(reference),
        }
    }
}

/// Every op module's cases, in report order.
fn all_cases() -> Result<Vec<Case>> {
    let modules: [fn() -> Result<Vec<Case>>; 8] = [
        op::linear::parity_cases,
        op::layer_norm::parity_cases,
        op::gelu::parity_cases,
        op::attention::parity_cases,
        op::cross_entropy::parity_cases,
        op::lstm::parity_cases,
        op::outer_lstm::parity_cases,
        op::vsml::parity_cases,
    ];
    let mut cases = Vec::new();
    for cases_of in modules {
        cases.extend(cases_of()?);
    }
    Ok(cases)
}

/// Runs every fused op on `device` and its composed definition on the CPU,
/// on small odd shapes, and reports the largest relative difference of
/// each (forward and all gradients).
pub fn check_fused_ops(device: &Device) -> Result<Vec<OpParity>> {
    let cpu = Device::Cpu;
    all_cases()?
        .into_iter()
        .map(|case| {
            let got = run(&case.inputs, device, &|t| (case.fused)(t, device))?;
            let want = run(&case.inputs, &cpu, &*case.reference)?;
            Ok(compare(case.op, case.names, got, want))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fused_op_on_the_cpu_matches_its_composed_definition() {
        let results = check_fused_ops(&Device::Cpu).unwrap();
        assert_eq!(results.len(), 10);
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
