//! The layout of a run directory.

use std::path::{Path, PathBuf};

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

    /// Whether a run was started here (its config exists).
    pub fn exists(&self) -> bool {
        self.config().is_file()
    }
}
