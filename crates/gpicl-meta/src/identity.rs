//! A run knows what it is: an id drawn when it starts and the
//! training-relevant config, both in every checkpoint's metadata, so that
//! resuming refuses a checkpoint of another run (set aside) or a config
//! that is not the one the checkpoints were trained with (naming the keys).

use crate::checkpoint::{LoadedCheckpoint, RunIdentity};
use crate::error::MetaError;
use crate::run_dir::RunDir;

/// A fresh run id: 16 hex digits from the clock, the process and the folder.
pub(crate) fn new_run_id(dir: &RunDir) -> String {
    use sha2::{Digest, Sha256};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(dir.root().to_string_lossy().as_bytes());
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether checkpoint `ckpt` (at `path`) belongs to this run: written by
/// the run `run_id` (when both are known; otherwise a
/// [`MetaError::Corrupt`], and the checkpoint is set aside) under the
/// training-relevant config `now` (otherwise a [`MetaError::Config`]
/// naming the differing keys: the config, not the checkpoint, is at fault).
pub(crate) fn check_identity(
    path: &std::path::Path,
    ckpt: &LoadedCheckpoint,
    run_id: Option<&str>,
    now: &std::collections::BTreeMap<String, String>,
) -> std::result::Result<(), MetaError> {
    let identity: &RunIdentity = &ckpt.meta.identity;
    if let Some(id) = run_id {
        if !identity.run_id.is_empty() && identity.run_id != id {
            return Err(MetaError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "was written by another run (id {}; this run is {id}): copied in from elsewhere?",
                    identity.run_id
                ),
            });
        }
    }
    if identity.config.is_empty() {
        return Ok(());
    }
    let differences = identity.config_differences(now);
    if differences.is_empty() {
        return Ok(());
    }
    Err(MetaError::Config {
        option: differences
            .iter()
            .map(|d| d.split(' ').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        reason: format!(
            "differs from the config checkpoint {} was trained with: {}. Only schedule.*, device, optim.lr and optim.clip_norm may change when resuming: restore config.toml (or drop the --set), or use another --out for a new run",
            path.display(),
            differences.join("; ")
        ),
    })
}
