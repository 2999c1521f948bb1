//! The token layout: what a sequence model reads at each position.
//!
//! Every model receives a sequence of examples as `inputs` (`[b, t, n_x]`
//! features) and `labels` (`[b, t]` class indices, `u32`) and reads at
//! position `t` the paper's token `[x_t, onehot(y_{t−1})]`, zeros standing
//! in for the label before the first example ([`build`]); the label of
//! position `t` is what it predicts there and never enters its own token.
//! The Transformer's previous-token input (`previous_token_input`) reads
//! each token beside its predecessor ([`with_previous`]). Changing the
//! layout is this file: batches, the evaluation protocol, `predict` and the
//! benchmarks hand examples, never tokens.
//!
//! ```
//! use gpicl_kernels::{Device, Tensor};
//! use gpicl_models::tokens;
//! let inputs = Tensor::new(&[[[0.5f32], [0.25]]], &Device::Cpu).unwrap();
//! let labels = Tensor::new(&[[2u32, 0]], &Device::Cpu).unwrap();
//! let tokens = tokens::build(&inputs, &labels, 3).unwrap();
//! assert_eq!(tokens::width(1, 3), 4);
//! assert_eq!(
//!     tokens.to_vec3::<f32>().unwrap(),
//!     vec![vec![vec![0.5, 0.0, 0.0, 0.0], vec![0.25, 0.0, 0.0, 1.0]]]
//! );
//! ```

use crate::error::{ModelError, Result};
use gpicl_kernels::{DType, Tensor};

/// Width of the token a model reads for examples of `features` features
/// and `classes` label values.
pub fn width(features: usize, classes: usize) -> usize {
    features + classes
}

/// Features per example in tokens of `width` (the rest is the one-hot
/// previous label); an error when no feature is left.
pub fn features_in(width: usize, classes: usize) -> Result<usize> {
    width
        .checked_sub(classes)
        .filter(|&n| n > 0)
        .ok_or_else(|| ModelError::Config {
            option: "input_dim",
            reason: format!("{width} inputs cannot hold {classes} label values and any features"),
        })
}

/// Checks `inputs` (`[b ≥ 1, 1 ≤ t ≤ max_len, features]`) and `labels`
/// (`[b, t]`, `u32`, every value below `classes`).
pub fn check_examples(
    inputs: &Tensor,
    labels: &Tensor,
    features: usize,
    classes: usize,
    max_len: usize,
) -> Result<()> {
    let dims = inputs.dims();
    if dims.len() != 3 || dims[2] != features || dims[1] == 0 || dims[1] > max_len || dims[0] == 0 {
        let len = if max_len == usize::MAX {
            "t".to_string()
        } else {
            format!("t ≤ {max_len}")
        };
        return Err(ModelError::Input {
            got: dims.to_vec(),
            expected: format!("[batch, {len}, {features}] example features"),
        });
    }
    check_labels(labels, &dims[..2], classes)
}

/// Checks that `labels` is a `u32` tensor of shape `dims` whose values are
/// all below `classes`.
fn check_labels(labels: &Tensor, dims: &[usize], classes: usize) -> Result<()> {
    if labels.dims() != dims || labels.dtype() != DType::U32 {
        return Err(ModelError::Input {
            got: labels.dims().to_vec(),
            expected: format!("{dims:?} u32 labels, one per example"),
        });
    }
    if labels.elem_count() > 0 {
        let largest = labels.flatten_all()?.max(0)?.to_scalar::<u32>()? as usize;
        if largest >= classes {
            return Err(ModelError::Input {
                got: vec![largest],
                expected: format!("labels below {classes}"),
            });
        }
    }
    Ok(())
}

/// `[.., classes]`: the one-hot code of every label, in `dtype`.
pub fn one_hot(labels: &Tensor, classes: usize, dtype: DType) -> Result<Tensor> {
    let values = Tensor::arange(0u32, classes as u32, labels.device())?;
    let rank = labels.rank();
    let mut shape = vec![1; rank];
    shape.push(classes);
    Ok(labels
        .unsqueeze(rank)?
        .broadcast_eq(&values.reshape(shape)?)?
        .to_dtype(dtype)?)
}

/// `[b, t, n_x + classes]`: the tokens of `inputs` (`[b, t, n_x]`) and
/// `labels` (`[b, t]`, `u32`, below `classes`), each position's features
/// beside the one-hot label of the position before it.
pub fn build(inputs: &Tensor, labels: &Tensor, classes: usize) -> Result<Tensor> {
    let (b, t, _) = inputs.dims3()?;
    check_labels(labels, &[b, t], classes)?;
    assemble(inputs, labels, classes)
}

/// [`build`] of examples already checked.
fn assemble(inputs: &Tensor, labels: &Tensor, classes: usize) -> Result<Tensor> {
    let (b, t, n) = inputs.dims3()?;
    if t == 0 {
        return Ok(Tensor::zeros(
            (b, 0, n + classes),
            inputs.dtype(),
            inputs.device(),
        )?);
    }
    let before_first = Tensor::zeros((b, 1, classes), inputs.dtype(), inputs.device())?;
    let previous = if t > 1 {
        let codes = one_hot(&labels.narrow(1, 0, t - 1)?, classes, inputs.dtype())?;
        Tensor::cat(&[&before_first, &codes], 1)?
    } else {
        before_first
    };
    Ok(Tensor::cat(&[inputs, &previous], 2)?)
}

/// [`build`] after [`check_examples`]: what each model's `forward` reads.
pub fn build_checked(
    inputs: &Tensor,
    labels: &Tensor,
    features: usize,
    classes: usize,
    max_len: usize,
) -> Result<Tensor> {
    check_examples(inputs, labels, features, classes, max_len)?;
    assemble(inputs, labels, classes)
}

/// `[m, q, n_x + classes]`: the tokens of queries (`[m, q, n_x]`) that each
/// follow a context of row `j`, whose last label is `last_labels[j]`
/// (`[m]`, `u32`; `None` for empty contexts, where queries come first).
pub fn build_queries(
    queries: &Tensor,
    last_labels: Option<&Tensor>,
    classes: usize,
) -> Result<Tensor> {
    let (m, q, _) = queries.dims3()?;
    let codes = match last_labels {
        Some(labels) => {
            check_labels(labels, &[m], classes)?;
            one_hot(labels, classes, queries.dtype())?
                .unsqueeze(1)?
                .broadcast_as((m, q, classes))?
        }
        None => Tensor::zeros((m, q, classes), queries.dtype(), queries.device())?,
    };
    Ok(Tensor::cat(&[queries, &codes], 2)?)
}

/// `[b, t, 2n]`: each token of `tokens` (`[b, t, n]`) beside the token
/// before it (zeros before the first): the Transformer's previous-token
/// input.
pub fn with_previous(tokens: &Tensor) -> Result<Tensor> {
    let (b, t, n) = tokens.dims3()?;
    let shifted = Tensor::zeros((b, 1, n), tokens.dtype(), tokens.device())?;
    let shifted = if t > 1 {
        Tensor::cat(&[&shifted, &tokens.narrow(1, 0, t - 1)?], 1)?
    } else {
        shifted
    };
    Ok(Tensor::cat(&[tokens, &shifted], 2)?)
}

/// [`with_previous`] on host memory: `tokens` is `[b, t, n]` row-major.
pub(crate) fn with_previous_on_host(tokens: &[f32], t: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; tokens.len() * 2];
    for (row, token) in tokens.chunks_exact(n).enumerate() {
        let wide = &mut out[row * 2 * n..(row + 1) * 2 * n];
        wide[..n].copy_from_slice(token);
        if row % t > 0 {
            wide[n..].copy_from_slice(&tokens[(row - 1) * n..row * n]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_kernels::Device;

    fn examples(b: usize, t: usize, n: usize, classes: u32) -> (Tensor, Tensor) {
        let x: Vec<f32> = (0..b * t * n).map(|v| v as f32 + 0.5).collect();
        let y: Vec<u32> = (0..b * t).map(|v| (v as u32 * 7 + 3) % classes).collect();
        (
            Tensor::from_vec(x, (b, t, n), &Device::Cpu).unwrap(),
            Tensor::from_vec(y, (b, t), &Device::Cpu).unwrap(),
        )
    }

    #[test]
    fn each_token_holds_its_features_and_the_label_before_it() {
        let (inputs, labels) = examples(2, 4, 3, 5);
        let tokens: Vec<Vec<Vec<f32>>> = build(&inputs, &labels, 5).unwrap().to_vec3().unwrap();
        let x: Vec<Vec<Vec<f32>>> = inputs.to_vec3().unwrap();
        let y: Vec<Vec<u32>> = labels.to_vec2().unwrap();
        for s in 0..2 {
            for step in 0..4 {
                let token = &tokens[s][step];
                assert_eq!(token.len(), width(3, 5));
                assert_eq!(&token[..3], &x[s][step][..]);
                let code = &token[3..];
                if step == 0 {
                    assert!(code.iter().all(|&v| v == 0.0));
                } else {
                    let hot: Vec<usize> = (0..5).filter(|&c| code[c] == 1.0).collect();
                    assert_eq!(hot, vec![y[s][step - 1] as usize]);
                    assert_eq!(code.iter().sum::<f32>(), 1.0);
                }
            }
        }
    }

    #[test]
    fn a_query_token_equals_the_position_after_its_context() {
        let (inputs, labels) = examples(3, 5, 2, 4);
        let full: Vec<Vec<Vec<f32>>> = build(&inputs, &labels, 4).unwrap().to_vec3().unwrap();
        let queries = inputs.narrow(1, 4, 1).unwrap();
        let last = labels.narrow(1, 3, 1).unwrap().squeeze(1).unwrap();
        let query: Vec<Vec<Vec<f32>>> = build_queries(&queries, Some(&last), 4)
            .unwrap()
            .to_vec3()
            .unwrap();
        for s in 0..3 {
            assert_eq!(query[s][0], full[s][4]);
        }
        let first: Vec<Vec<Vec<f32>>> = build_queries(&inputs.narrow(1, 0, 1).unwrap(), None, 4)
            .unwrap()
            .to_vec3()
            .unwrap();
        for s in 0..3 {
            assert_eq!(first[s][0], full[s][0]);
        }
    }

    #[test]
    fn labels_outside_the_classes_or_of_the_wrong_shape_are_refused() {
        let (inputs, labels) = examples(1, 3, 2, 4);
        let err = build(&inputs, &labels, 3).unwrap_err().to_string();
        assert!(err.contains("labels below 3"), "{err}");
        let err = check_examples(&inputs, &labels.narrow(1, 0, 2).unwrap(), 2, 4, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("u32 labels"), "{err}");
        let as_float = labels.to_dtype(DType::F32).unwrap();
        assert!(check_examples(&inputs, &as_float, 2, 4, 10).is_err());
        let err = check_examples(&inputs, &labels, 3, 4, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("example features"), "{err}");
        assert!(check_examples(&inputs, &labels, 2, 4, 2).is_err());
        assert!(check_examples(&inputs, &labels, 2, 4, 3).is_ok());
        assert!(features_in(10, 10).is_err());
        assert_eq!(features_in(206, 10).unwrap(), 196);
    }

    #[test]
    fn the_previous_token_input_reads_each_token_beside_its_predecessor() {
        let tokens: Vec<f32> = (0..2 * 3 * 2).map(|v| v as f32).collect();
        // Two sequences of three 2-feature tokens.
        let wide = with_previous_on_host(&tokens, 3, 2);
        assert_eq!(
            wide,
            vec![
                0., 1., 0., 0., 2., 3., 0., 1., 4., 5., 2., 3., //
                6., 7., 0., 0., 8., 9., 6., 7., 10., 11., 8., 9.
            ]
        );
        let on_device = with_previous(&Tensor::from_vec(tokens, (2, 3, 2), &Device::Cpu).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(on_device, wide);
    }
}
