//! Growing a trained Transformer deeper without changing what it computes.
//!
//! A learner that has converged at one depth can be meta-trained further
//! with more blocks: the trained blocks keep their weights and the new
//! ones are appended after them with their output projections (the
//! attention's `out` and the MLP's `fc_out`) set to zero, so each new
//! block adds nothing to the residual stream at first and the deeper
//! model starts exactly where the shallower one stopped. Their other
//! weights keep the fresh model's initialisation, so gradients reach
//! them as soon as the projections move away from zero.

use std::collections::BTreeMap;

use gpicl_kernels::Tensor;

use crate::{ModelError, Result};

/// The weights for a Transformer of `fresh`'s shape grown from the
/// trained weights `trained` of a Transformer with `trained_layers`
/// blocks and otherwise the same options: every trained tensor is kept,
/// each block at or past `trained_layers` takes `fresh`'s tensors with
/// its two output projections zeroed. Fails, naming the parameter, when
/// the two models differ in anything but their depth.
pub fn deepened_weights(
    trained: &BTreeMap<String, Tensor>,
    trained_layers: usize,
    fresh: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    if let Some(name) = trained.keys().find(|name| !fresh.contains_key(*name)) {
        return Err(ModelError::Parameter {
            name: name.clone(),
            reason: "is in the trained model but not in the deeper one".into(),
        });
    }
    fresh
        .iter()
        .map(|(name, init)| {
            let value = match trained.get(name) {
                Some(value) if value.dims() == init.dims() => value.clone(),
                Some(value) => {
                    return Err(ModelError::Parameter {
                        name: name.clone(),
                        reason: format!(
                            "shape {:?} in the trained model, {:?} in the deeper one: only the number of layers may differ",
                            value.dims(),
                            init.dims()
                        ),
                    })
                }
                None => match new_block_part(name, trained_layers) {
                    Some(part) if is_output_projection(part) => init.zeros_like()?,
                    Some(_) => init.copy()?,
                    None => {
                        return Err(ModelError::Parameter {
                            name: name.clone(),
                            reason: "is missing from the trained model and is not part of a new block"
                                .into(),
                        })
                    }
                },
            };
            Ok((name.clone(), value))
        })
        .collect()
}

/// `name`'s part within its block (`attn.out.weight`) when it belongs to
/// a block numbered `trained_layers` or higher.
fn new_block_part(name: &str, trained_layers: usize) -> Option<&str> {
    let rest = name.strip_prefix("layers.")?;
    let (index, part) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    (index >= trained_layers).then_some(part)
}

/// Whether a block's parameter writes into the residual stream.
fn is_output_projection(part: &str) -> bool {
    part.starts_with("attn.out.") || part.starts_with("mlp.fc_out.")
}
