//! Checkpoints: weights, Adam state, sampler state and step in one
//! safetensors file, written atomically.

use crate::adam::Adam;
use crate::error::{MetaError, Result};
use gpicl_kernels::{Device, Tensor};
use gpicl_models::ParamStore;
use gpicl_tasks::SamplerState;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const FORMAT: &str = "gpicl-checkpoint-1";

/// What a checkpoint restores besides the tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    /// Completed training steps.
    pub step: u64,
    /// Adam's update count.
    pub adam_step: u64,
    /// The model's input width (`N_x + 10`), so a model can be rebuilt
    /// from `config.toml` and the checkpoint alone.
    pub input_dim: usize,
    /// The training distribution's position.
    pub sampler: SamplerState,
}

/// The file name of the checkpoint after `step` steps.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:09}.safetensors")
}

/// Every checkpoint in `dir`, oldest first.
pub fn list_checkpoints(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name
                .strip_prefix("step-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// SHA-256 over every tensor's name, shape and bytes, in name order:
/// stored at write time and checked at read time, so a checkpoint damaged
/// on disk (a flipped byte in a weight, not only a broken header) is
/// never resumed from.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    for (name, shape, data) in sorted {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((shape.len() as u64).to_le_bytes());
        for d in shape {
            hasher.update((*d as u64).to_le_bytes());
        }
        hasher.update((data.len() as u64).to_le_bytes());
        hasher.update(data);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes a checkpoint to `dir` and deletes all but the newest `keep`.
/// The file is written under a temporary name, synced and renamed, so a
/// crash never leaves a half-written checkpoint under a checkpoint name.
pub fn save_checkpoint(
    dir: &Path,
    params: &ParamStore,
    adam: &Adam,
    meta: &CheckpointMeta,
    keep: usize,
) -> Result<PathBuf> {
    write_checkpoint(dir, params, Some(adam), meta, keep)
}

/// Writes the weights and metadata of a checkpoint without the optimiser
/// state: a learner to ship and evaluate (a third of the size), which
/// cannot be resumed.
pub fn save_weights(dir: &Path, params: &ParamStore, meta: &CheckpointMeta) -> Result<PathBuf> {
    write_checkpoint(dir, params, None, meta, usize::MAX)
}

fn write_checkpoint(
    dir: &Path,
    params: &ParamStore,
    adam: Option<&Adam>,
    meta: &CheckpointMeta,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(MetaError::io(dir))?;
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, (name, var)) in params.iter().enumerate() {
        let shape = var.dims().to_vec();
        let values: Vec<f32> = var.flatten_all()?.to_vec1()?;
        buffers.push((format!("param/{name}"), shape.clone(), f32_bytes(&values)));
        if let Some(adam) = adam {
            buffers.push((
                format!("adam.m/{name}"),
                shape.clone(),
                f32_bytes(&adam.m[i]),
            ));
            buffers.push((format!("adam.v/{name}"), shape, f32_bytes(&adam.v[i])));
        }
    }
    let views: Vec<(String, TensorView)> = buffers
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| corrupt(dir, e))?,
            ))
        })
        .collect::<Result<_>>()?;
    let sum = checksum(
        buffers
            .iter()
            .map(|(n, shape, b)| (n.as_str(), shape.as_slice(), b.as_slice())),
    );
    let info = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("checksum".to_string(), sum),
        ("step".to_string(), meta.step.to_string()),
        ("adam_step".to_string(), meta.adam_step.to_string()),
        ("input_dim".to_string(), meta.input_dim.to_string()),
        (
            "sampler".to_string(),
            serde_json::to_string(&meta.sampler).expect("sampler state serialises"),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| corrupt(dir, e))?;
    let path = dir.join(checkpoint_name(meta.step));
    let tmp = path.with_extension("partial");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(MetaError::io(&tmp))?;
        f.write_all(&bytes).map_err(MetaError::io(&tmp))?;
        f.sync_all().map_err(MetaError::io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(MetaError::io(&path))?;
    let all = list_checkpoints(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_file(old).map_err(MetaError::io(old))?;
    }
    Ok(path)
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> MetaError {
    MetaError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// A checkpoint read back from disk.
pub struct LoadedCheckpoint {
    /// Parameter values by name.
    pub params: BTreeMap<String, Tensor>,
    /// Adam first moments by name.
    pub adam_m: BTreeMap<String, Vec<f32>>,
    /// Adam second moments by name.
    pub adam_v: BTreeMap<String, Vec<f32>>,
    /// Step, Adam step and sampler state.
    pub meta: CheckpointMeta,
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<LoadedCheckpoint> {
    let bytes = std::fs::read(path).map_err(MetaError::io(path))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| corrupt(path, format!("not a safetensors file: {e}")))?;
    let info = header.metadata().clone().unwrap_or_default();
    if info.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(corrupt(
            path,
            format!("not a gpicl checkpoint (expected format `{FORMAT}`)"),
        ));
    }
    let field = |key: &str| {
        info.get(key)
            .ok_or_else(|| corrupt(path, format!("metadata lacks `{key}`")))
    };
    let meta = CheckpointMeta {
        step: field("step")?.parse().map_err(|e| corrupt(path, e))?,
        adam_step: field("adam_step")?.parse().map_err(|e| corrupt(path, e))?,
        input_dim: field("input_dim")?.parse().map_err(|e| corrupt(path, e))?,
        sampler: serde_json::from_str(field("sampler")?).map_err(|e| corrupt(path, e))?,
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e))?;
    // Checkpoints written before checksums existed have none to verify.
    if let Some(expected) = info.get("checksum") {
        let tensors = st.tensors();
        let found = checksum(
            tensors
                .iter()
                .map(|(n, v)| (n.as_str(), v.shape(), v.data())),
        );
        if &found != expected {
            return Err(corrupt(
                path,
                "checksum mismatch: the file was damaged after it was written",
            ));
        }
    }
    let (mut params, mut adam_m, mut adam_v) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(
                path,
                format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if let Some(p) = name.strip_prefix("param/") {
            params.insert(
                p.to_string(),
                Tensor::from_vec(values, view.shape(), device)?,
            );
        } else if let Some(p) = name.strip_prefix("adam.m/") {
            adam_m.insert(p.to_string(), values);
        } else if let Some(p) = name.strip_prefix("adam.v/") {
            adam_v.insert(p.to_string(), values);
        } else {
            return Err(corrupt(path, format!("unexpected tensor `{name}`")));
        }
    }
    Ok(LoadedCheckpoint {
        params,
        adam_m,
        adam_v,
        meta,
    })
}

impl LoadedCheckpoint {
    /// Copies the weights into `params` and the moments into `adam`,
    /// checking that every name and size matches.
    pub fn restore(&self, path: &Path, params: &ParamStore, adam: &mut Adam) -> Result<()> {
        params.load(&self.params).map_err(|e| corrupt(path, e))?;
        for (i, (name, var)) in params.iter().enumerate() {
            let (m, v) = match (self.adam_m.get(name), self.adam_v.get(name)) {
                (Some(m), Some(v))
                    if m.len() == var.elem_count() && v.len() == var.elem_count() =>
                {
                    (m, v)
                }
                _ if self.adam_m.is_empty() && self.adam_v.is_empty() => {
                    return Err(corrupt(
                        path,
                        "holds weights only (an exported learner) and cannot be resumed: train a new run from its config instead",
                    ))
                }
                _ => {
                    return Err(corrupt(
                        path,
                        format!("Adam state for `{name}` is missing or has the wrong size"),
                    ))
                }
            };
            adam.m[i].clone_from(m);
            adam.v[i].clone_from(v);
        }
        adam.step = self.meta.adam_step;
        Ok(())
    }
}
