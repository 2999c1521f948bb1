//! The layout of a run directory.

use crate::error::{MetaError, Result};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a synced temporary file and a rename,
/// so a crash leaves either the old file or the new one, never half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(MetaError::io(&tmp))?;
        f.write_all(bytes).map_err(MetaError::io(&tmp))?;
        f.sync_all().map_err(MetaError::io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(MetaError::io(path))
}

/// Paths inside one run's directory:
///
/// ```text
/// <run>/config.toml        the fully resolved config
/// <run>/metrics.jsonl      one JSON object per line (train and eval)
/// <run>/checkpoints/       step-NNNNNNNNN.safetensors
/// <run>/eval/              evaluation results (JSON, Markdown, SVG)
/// ```
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// `plateau.json`: the training loss plateau
    /// ([`crate::plateau::Plateau`]), written when training finishes.
    pub fn plateau(&self) -> PathBuf {
        self.root.join("plateau.json")
    }

    /// `checkpoints/`.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// `eval/`.
    pub fn eval(&self) -> PathBuf {
        self.root.join("eval")
    }

    /// `tensorboard/`: TensorBoard event files (`schedule.tensorboard`).
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join("tensorboard")
    }

    /// Whether a run was started here (its config exists).
    pub fn exists(&self) -> bool {
        self.config().is_file()
    }
}
