//! Checks every sequence model must pass, shared by the models' tests.

use crate::SequenceModel;
use gpicl_kernels::rng::Rng;
use gpicl_kernels::{composed, Device, Tensor};

const B: usize = 2;
const T: usize = 6;
const CLASSES: usize = 3;

/// Random examples: features `[b, t, n]` and labels `[b, t]` below
/// `CLASSES`.
pub fn examples(b: usize, t: usize, n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    let labels: Vec<u32> = (0..b * t)
        .map(|_| rng.below(CLASSES as u64) as u32)
        .collect();
    let data: Vec<f32> = (0..b * t * n).map(|_| rng.normal() as f32).collect();
    (
        Tensor::from_vec(data, (b, t, n), &Device::Cpu).unwrap(),
        Tensor::from_vec(labels, (b, t), &Device::Cpu).unwrap(),
    )
}

fn flat(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1().unwrap()
}

/// Changing features after position `t`, or labels from position `t` on,
/// leaves predictions up to `t` alone.
pub fn assert_causal(model: &dyn SequenceModel) {
    let n = model.features();
    let (x, y) = examples(B, T, n, 2);
    let base = flat(&model.forward(&x, &y).unwrap());
    for cut in 0..T - 1 {
        let (other_x, other_y) = examples(B, T, n, 100 + cut as u64);
        let changed_x = Tensor::cat(
            &[
                &x.narrow(1, 0, cut + 1).unwrap(),
                &other_x.narrow(1, cut + 1, T - cut - 1).unwrap(),
            ],
            1,
        )
        .unwrap();
        let changed_y = Tensor::cat(
            &[
                &y.narrow(1, 0, cut).unwrap(),
                &other_y.narrow(1, cut, T - cut).unwrap(),
            ],
            1,
        )
        .unwrap();
        let out = flat(&model.forward(&changed_x, &changed_y).unwrap());
        for b in 0..B {
            for t in 0..=cut {
                for c in 0..CLASSES {
                    let i = (b * T + t) * CLASSES + c;
                    assert!(
                        (out[i] - base[i]).abs() < 1e-5,
                        "{}: position {t} changed when examples after {cut} changed",
                        model.kind()
                    );
                }
            }
        }
    }
}

/// Every parameter's gradient of the loss, as training computes it
/// ([`SequenceModel::loss_and_grads`]), has a non-zero entry.
pub fn assert_every_parameter_gets_a_gradient(model: &dyn SequenceModel) {
    let (x, y) = examples(B, T, model.features(), 4);
    let step = model.loss_and_grads(&x, &y).unwrap();
    assert_eq!(step.grads.len(), model.params().len());
    for (name, var) in model.params().iter() {
        let g = step
            .grads
            .get(name)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_eq!(g.len(), var.elem_count(), "{}: {name}", model.kind());
        assert!(
            g.iter().any(|v| *v != 0.0),
            "{}: {name} gradient is zero",
            model.kind()
        );
    }
}

/// The training gradients ([`SequenceModel::loss_and_grads`]) agree with
/// central finite differences on the two largest-gradient coordinates of
/// every parameter.
pub fn assert_gradient_matches_finite_differences(model: &dyn SequenceModel) {
    let dev = Device::Cpu;
    let (x, y) = examples(1, 5, model.features(), 6);
    let loss_of = || -> f64 {
        composed::cross_entropy(&model.forward(&x, &y).unwrap(), &y)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let grads = model.loss_and_grads(&x, &y).unwrap().grads;
    let mut checked = 0;
    for (name, var) in model.params().iter() {
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let orig = flat(var.as_tensor());
        let mut idx: Vec<usize> = (0..g.len()).collect();
        idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        for &i in idx.iter().take(2) {
            let h = 1e-2f32;
            let at = |delta: f32| {
                let mut v = orig.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &dev).unwrap())
                    .unwrap();
                loss_of()
            };
            let (lp, lm) = (at(h), at(-h));
            var.set(&Tensor::from_vec(orig.clone(), var.shape(), &dev).unwrap())
                .unwrap();
            let numeric = (lp - lm) / (2.0 * h as f64);
            let analytic = g[i] as f64;
            let tol = 2e-3 + 3e-2 * analytic.abs().max(numeric.abs());
            assert!(
                (numeric - analytic).abs() < tol,
                "{}: {name}[{i}]: numeric {numeric} vs analytic {analytic}",
                model.kind()
            );
            checked += 1;
        }
    }
    assert!(checked >= 2 * model.params().len().min(4));
}
