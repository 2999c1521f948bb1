//! What the ops' unit tests share: random inputs, relative closeness,
//! gradients of a weighted sum and finite differences.

use crate::rng::Rng;
use candle_core::{Device, Tensor, Var};

/// A CPU variable of normal values times `scale`, drawn from `seed`.
pub(crate) fn random(shape: &[usize], seed: u64, scale: f64) -> Var {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
    Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu).unwrap()).unwrap()
}

/// A tensor's values, flattened.
pub(crate) fn flat(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1().unwrap()
}

/// Relative closeness: `|a − b| ≤ tol · max(1, |b|)`.
pub(crate) fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: fused {x} vs composed {y}"
        );
    }
}

/// Forward values and the gradients of `Σ w ⊙ f(args)` for a fixed
/// random `w`, so every output element gets a distinct upstream gradient.
pub(crate) fn value_and_grads(out: &Tensor, args: &[&Var]) -> (Vec<f32>, Vec<Vec<f32>>) {
    let w = random(out.dims(), 99, 1.0);
    let loss = (out * w.as_tensor()).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    (
        flat(out),
        args.iter()
            .map(|a| flat(grads.get(a.as_tensor()).expect("gradient")))
            .collect(),
    )
}

/// `n` class indices below `classes`, drawn from `seed`.
pub(crate) fn random_targets(n: usize, classes: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let ys: Vec<u32> = (0..n).map(|_| rng.below(classes as u64) as u32).collect();
    Tensor::from_vec(ys, n, &Device::Cpu).unwrap()
}

/// Central differences in f64 of a scalar function of one argument.
pub(crate) fn finite_difference_check(
    f: impl Fn(&Tensor) -> Tensor,
    x: &Var,
    analytic: &[f32],
    what: &str,
) {
    let base = flat(x.as_tensor());
    let w = random(f(x.as_tensor()).dims(), 99, 1.0);
    let loss = |data: Vec<f32>| -> f64 {
        let t = Tensor::from_vec(data, x.shape(), &Device::Cpu).unwrap();
        (f(&t) * w.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let h = 1e-2f32;
    for i in (0..base.len()).step_by(3) {
        let (mut plus, mut minus) = (base.clone(), base.clone());
        plus[i] += h;
        minus[i] -= h;
        let numeric = (loss(plus) - loss(minus)) / (2.0 * h as f64);
        assert!(
            (numeric - analytic[i] as f64).abs() < 2e-2 * numeric.abs().max(1.0),
            "{what}[{i}]: numeric {numeric} vs analytic {}",
            analytic[i]
        );
    }
}
