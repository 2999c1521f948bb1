//! Checkpoints: weights, optimiser state, sampler state and step in one
//! safetensors file, written atomically.
//!
//! Tensors are stored under `param/<name>` (weights) and under the names
//! the optimiser gives its state ([`OptimizerState::tensors`]; Adam's are
//! `adam.m/<name>` and `adam.v/<name>`); the optimiser's update count is
//! the metadata field `adam_step`, the name every checkpoint so far used.

use crate::error::{MetaError, Result};
use crate::optim::{Optimizer, OptimizerState, StateTensor};
use gpicl_kernels::{Device, Tensor};
use gpicl_models::ParamStore;
use gpicl_tasks::SamplerState;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const FORMAT: &str = "gpicl-checkpoint-1";
/// The prefix of the weights' tensor names.
const PARAM: &str = "param/";
/// The metadata field of the optimiser's update count.
const OPTIMIZER_STEP: &str = "adam_step";

/// What a checkpoint restores besides the tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    /// Completed training steps.
    pub step: u64,
    /// The width of the token the model reads
    /// (`gpicl_models::tokens::width`: `N_x + 10`), so a model can be
    /// rebuilt from `config.toml` and the checkpoint alone.
    pub input_dim: usize,
    /// The training distribution's position.
    pub sampler: SamplerState,
    /// Which run wrote it, under which config (empty in checkpoints of
    /// earlier versions).
    pub identity: RunIdentity,
}

/// What makes a checkpoint belong to a run: the run's id and its
/// training-relevant config ([`crate::TrainConfig::training_identity`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunIdentity {
    /// Drawn when the run started; empty when unknown.
    pub run_id: String,
    /// `key → value` of every option that may not change on resume.
    pub config: BTreeMap<String, String>,
}

impl RunIdentity {
    /// The keys whose values differ between `self` (a checkpoint's) and
    /// `now`, each as `key (checkpoint A, now B)`.
    pub fn config_differences(&self, now: &BTreeMap<String, String>) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> =
            self.config.keys().chain(now.keys()).collect();
        let missing = "unset".to_string();
        keys.into_iter()
            .filter(|k| self.config.get(*k) != now.get(*k))
            .map(|k| {
                format!(
                    "{k} (checkpoint {}, now {})",
                    self.config.get(k).unwrap_or(&missing),
                    now.get(k).unwrap_or(&missing)
                )
            })
            .collect()
    }
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
    optimizer: &OptimizerState,
    meta: &CheckpointMeta,
    keep: usize,
) -> Result<PathBuf> {
    write_checkpoint(dir, params, optimizer, meta, keep)
}

/// Writes the weights and metadata of a checkpoint without the optimiser
/// state (only its update count `optimizer_step`): a learner to ship and
/// evaluate (a third of the size), which cannot be resumed.
pub fn save_weights(
    dir: &Path,
    params: &ParamStore,
    meta: &CheckpointMeta,
    optimizer_step: u64,
) -> Result<PathBuf> {
    let state = OptimizerState {
        step: optimizer_step,
        tensors: BTreeMap::new(),
    };
    write_checkpoint(dir, params, &state, meta, usize::MAX)
}

fn write_checkpoint(
    dir: &Path,
    params: &ParamStore,
    optimizer: &OptimizerState,
    meta: &CheckpointMeta,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(MetaError::io(dir))?;
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, var) in params.iter() {
        let shape = var.dims().to_vec();
        let values: Vec<f32> = var.flatten_all()?.to_vec1()?;
        buffers.push((format!("{PARAM}{name}"), shape, f32_bytes(&values)));
    }
    for (name, tensor) in &optimizer.tensors {
        if name.starts_with(PARAM) {
            return Err(corrupt(
                dir,
                format!("optimiser state `{name}` would be read back as a weight"),
            ));
        }
        buffers.push((
            name.clone(),
            tensor.shape.clone(),
            f32_bytes(&tensor.values),
        ));
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
        (OPTIMIZER_STEP.to_string(), optimizer.step.to_string()),
        ("input_dim".to_string(), meta.input_dim.to_string()),
        (
            "sampler".to_string(),
            serde_json::to_string(&meta.sampler).expect("sampler state serialises"),
        ),
        (
            "identity".to_string(),
            serde_json::to_string(&meta.identity).expect("an identity serialises"),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| corrupt(dir, e))?;
    let bytes = with_canonical_header(bytes);
    let path = dir.join(checkpoint_name(meta.step));
    let tmp = path.with_extension("partial");
    // Leftovers of earlier failed writes (a full disk) only take space.
    remove_partials(dir);
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(MetaError::io(&tmp))?;
        f.write_all(&bytes).map_err(MetaError::io(&tmp))?;
        f.sync_all().map_err(MetaError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(MetaError::io(&path))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let all = list_checkpoints(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_file(old).map_err(MetaError::io(old))?;
    }
    Ok(path)
}

/// `bytes` (a safetensors file) with its JSON header written in one order:
/// every object's keys sorted. safetensors writes the metadata from a
/// `HashMap`, whose order changes from one map to the next, so the same
/// state would otherwise give different bytes on every save. The header
/// keeps its length (the same content, reordered; padded with spaces as
/// safetensors pads it); should anything not fit, the bytes are returned
/// as they were.
fn with_canonical_header(bytes: Vec<u8>) -> Vec<u8> {
    let canonical = (|| {
        let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
        let header = bytes.get(8..8usize.checked_add(len)?)?;
        let value: serde_json::Value = serde_json::from_slice(header).ok()?;
        let mut text = String::with_capacity(len);
        write_sorted(&value, &mut text);
        if text.len() > len {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len());
        out.extend_from_slice(&bytes[..8]);
        out.extend_from_slice(text.as_bytes());
        out.resize(8 + len, b' ');
        out.extend_from_slice(&bytes[8 + len..]);
        SafeTensors::deserialize(&out).ok()?;
        Some(out)
    })();
    canonical.unwrap_or(bytes)
}

/// Writes `value` as compact JSON with every object's keys sorted.
fn write_sorted(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(value, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Removes `*.partial` files (unfinished checkpoint writes) from `dir`.
fn remove_partials(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if regular && path.extension().is_some_and(|e| e == "partial") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The largest checkpoint read (64 GiB).
const MAX_CHECKPOINT_BYTES: u64 = 64 << 30;

/// Reads a checkpoint file: a regular file (not a FIFO or a device, also
/// through a link) of at most [`MAX_CHECKPOINT_BYTES`], read no further
/// than the size it had when opened.
fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(MetaError::io(path))?;
    if !meta.is_file() {
        return Err(corrupt(
            path,
            "is not a regular file (a FIFO, a device or a folder): expected a checkpoint written by gpicl",
        ));
    }
    if meta.len() > MAX_CHECKPOINT_BYTES {
        return Err(corrupt(
            path,
            format!(
                "is {} bytes, more than the {MAX_CHECKPOINT_BYTES} a checkpoint may have",
                meta.len()
            ),
        ));
    }
    let file = std::fs::File::open(path).map_err(MetaError::io(path))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(meta.len())
        .read_to_end(&mut bytes)
        .map_err(MetaError::io(path))?;
    Ok(bytes)
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
    /// The optimiser's state: every tensor that is not a weight, and its
    /// update count (no tensors in a weights-only checkpoint).
    pub optimizer: OptimizerState,
    /// Step, input width and sampler state.
    pub meta: CheckpointMeta,
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<LoadedCheckpoint> {
    let bytes = read_regular_file(path)?;
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
    // Read in the order of earlier versions, so a damaged file names the
    // same field first.
    let step = field("step")?.parse().map_err(|e| corrupt(path, e))?;
    let optimizer_step: u64 = field(OPTIMIZER_STEP)?
        .parse()
        .map_err(|e| corrupt(path, e))?;
    // A checkpoint named for another step than it holds was renamed or
    // dropped in from elsewhere: resuming it would mix two histories.
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("step-")?.strip_suffix(".safetensors"))
        .and_then(|n| n.parse::<u64>().ok());
    if let Some(named) = named.filter(|&n| n != step) {
        return Err(corrupt(
            path,
            format!(
                "its name says step {named} but it holds step {step}: renamed, or copied from another run"
            ),
        ));
    }
    let meta = CheckpointMeta {
        step,
        input_dim: field("input_dim")?.parse().map_err(|e| corrupt(path, e))?,
        sampler: serde_json::from_str(field("sampler")?).map_err(|e| corrupt(path, e))?,
        identity: match info.get("identity") {
            Some(text) => serde_json::from_str(text).map_err(|e| corrupt(path, e))?,
            None => RunIdentity::default(),
        },
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
    let (mut params, mut tensors) = (BTreeMap::new(), BTreeMap::new());
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
        if let Some(p) = name.strip_prefix(PARAM) {
            params.insert(
                p.to_string(),
                Tensor::from_vec(values, view.shape(), device)?,
            );
        } else {
            let shape = view.shape().to_vec();
            tensors.insert(name, StateTensor { shape, values });
        }
    }
    Ok(LoadedCheckpoint {
        params,
        optimizer: OptimizerState {
            step: optimizer_step,
            tensors,
        },
        meta,
    })
}

impl LoadedCheckpoint {
    /// Copies the weights into `params` and the saved state into
    /// `optimizer`, checking that every name and size matches.
    pub fn restore(
        &self,
        path: &Path,
        params: &ParamStore,
        optimizer: &mut dyn Optimizer,
    ) -> Result<()> {
        params.load(&self.params).map_err(|e| corrupt(path, e))?;
        if self.optimizer.tensors.is_empty() && !params.is_empty() {
            return Err(corrupt(
                path,
                "holds weights only (an exported learner) and cannot be resumed: train a new run from its config instead",
            ));
        }
        optimizer
            .load_state(&self.optimizer)
            .map_err(|e| corrupt(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::Adam;
    use crate::config::OptimConfig;
    use gpicl_tasks::{SamplerState, StreamState};
    use gpicl_testing::scratch_dir;

    /// The metadata of a checkpoint of `store()` at `step`.
    fn meta_at(step: u64) -> CheckpointMeta {
        CheckpointMeta {
            step,
            input_dim: 12,
            sampler: sampler(),
            identity: RunIdentity::default(),
        }
    }

    fn sampler() -> SamplerState {
        SamplerState {
            rng: [1, 2, 3, 4],
            stream: StreamState {
                seed: 5,
                epoch: 0,
                cursor: 9,
                examples: 100,
            },
        }
    }

    /// A checkpoint laid out by hand as every earlier version wrote it:
    /// `param/`, `adam.m/`, `adam.v/` tensors and `adam_step` metadata.
    fn legacy_checkpoint(path: &Path) {
        let tensors = [
            ("param/w", [1.0f32, 2.0]),
            ("adam.m/w", [0.5, 0.25]),
            ("adam.v/w", [0.125, 0.0625]),
        ];
        let buffers: Vec<(String, Vec<u8>)> = tensors
            .iter()
            .map(|(n, v)| (n.to_string(), f32_bytes(v)))
            .collect();
        let views: Vec<(String, TensorView)> = buffers
            .iter()
            .map(|(n, b)| (n.clone(), TensorView::new(Dtype::F32, vec![2], b).unwrap()))
            .collect();
        let info = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), "4".to_string()),
            ("adam_step".to_string(), "3".to_string()),
            ("input_dim".to_string(), "12".to_string()),
            (
                "sampler".to_string(),
                serde_json::to_string(&sampler()).unwrap(),
            ),
        ]);
        std::fs::write(path, safetensors::serialize(views, Some(info)).unwrap()).unwrap();
    }

    fn store() -> ParamStore {
        let mut p = ParamStore::new();
        p.insert(
            "w",
            Tensor::zeros(2, gpicl_kernels::DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
        p
    }

    #[test]
    fn a_checkpoint_in_the_layout_of_earlier_versions_restores_adam() {
        let dir = scratch_dir("legacy");
        let path = dir.join(checkpoint_name(4));
        legacy_checkpoint(&path);
        let ckpt = load_checkpoint(&path, &Device::Cpu).unwrap();
        assert_eq!((ckpt.meta.step, ckpt.optimizer.step), (4, 3));
        let params = store();
        let mut adam = Adam::new(OptimConfig::default(), &params);
        ckpt.restore(&path, &params, &mut adam).unwrap();
        assert_eq!(
            params.get("w").unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 2.0]
        );
        assert_eq!(adam.step(), 3);
        assert_eq!(
            adam.moments("w"),
            Some((&[0.5, 0.25][..], &[0.125, 0.0625][..]))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpoint_whose_name_disagrees_with_its_step_is_refused() {
        let dir = scratch_dir("renamed");
        let path = dir.join(checkpoint_name(63));
        legacy_checkpoint(&path);
        let err = load_checkpoint(&path, &Device::Cpu)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("step-000000063") && err.contains("holds step 4"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_or_a_link_to_a_device_is_refused_as_a_checkpoint_without_reading_it() {
        let dir = scratch_dir("special");
        let fifo = dir.join(checkpoint_name(3));
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = load_checkpoint(&fifo, &Device::Cpu).err().expect("refused");
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        #[cfg(unix)]
        {
            let zero = dir.join(checkpoint_name(6));
            std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
            let err = load_checkpoint(&zero, &Device::Cpu).err().expect("refused");
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_partial_checkpoint_left_by_a_failed_write_is_removed_by_the_next_write() {
        let dir = scratch_dir("partial");
        let params = store();
        let adam = Adam::new(OptimConfig::default(), &params);
        let meta = meta_at(2);
        let stale = dir.join(checkpoint_name(1)).with_extension("partial");
        std::fs::write(&stale, vec![0u8; 4096]).unwrap();
        let same = dir.join(checkpoint_name(2)).with_extension("partial");
        std::fs::write(&same, b"half").unwrap();
        let path = save_checkpoint(&dir, &params, &adam.state(), &meta, 5).unwrap();
        assert!(!stale.exists() && !same.exists());
        assert_eq!(load_checkpoint(&path, &Device::Cpu).unwrap().meta.step, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_saved_checkpoint_stores_the_optimiser_state_under_its_own_names() {
        let dir = scratch_dir("names");
        let params = store();
        let adam = Adam::new(OptimConfig::default(), &params);
        let meta = meta_at(2);
        let path = save_checkpoint(&dir, &params, &adam.state(), &meta, 1).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(names, ["adam.m/w", "adam.v/w", "param/w"]);
        let ckpt = load_checkpoint(&path, &Device::Cpu).unwrap();
        assert_eq!((&ckpt.meta, &ckpt.optimizer), (&meta, &adam.state()));

        // Weights only: no optimiser tensors, and resuming is refused.
        let slim = scratch_dir("names-slim");
        let path = save_weights(&slim, &params, &ckpt.meta, 7).unwrap();
        let weights = load_checkpoint(&path, &Device::Cpu).unwrap();
        assert!(weights.optimizer.tensors.is_empty() && weights.optimizer.step == 7);
        let mut fresh = Adam::new(OptimConfig::default(), &params);
        let err = weights.restore(&path, &params, &mut fresh).unwrap_err();
        assert!(err.to_string().contains("holds weights only"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&slim).unwrap();
    }

    #[test]
    fn the_same_state_is_saved_as_the_same_bytes() {
        let params = store();
        let adam = Adam::new(OptimConfig::default(), &params);
        let mut meta = meta_at(3);
        meta.identity
            .config
            .insert("model.d_model".into(), "64".into());
        let saved: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let dir = scratch_dir(&format!("same-bytes-{i}"));
                let path = save_checkpoint(&dir, &params, &adam.state(), &meta, 1).unwrap();
                let bytes = std::fs::read(&path).unwrap();
                std::fs::remove_dir_all(&dir).unwrap();
                bytes
            })
            .collect();
        // safetensors writes its metadata from a HashMap, in a new order
        // for every map: without a canonical header these differ.
        assert!(saved.windows(2).all(|w| w[0] == w[1]));
        let header = &saved[0][8..];
        let text = String::from_utf8_lossy(&header[..64]);
        assert!(
            text.starts_with("{\"__metadata__\":{\"adam_step\":"),
            "{text}"
        );
    }
}
