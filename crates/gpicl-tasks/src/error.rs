//! The error type of the tasks crate.

use std::path::PathBuf;

/// Everything that can go wrong reading data or building task batches.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A dataset was asked for by name but is nowhere to be found.
    #[error("dataset `{name}` not found; looked in: {searched}. Pass --data-dir DIR (or set GPICL_DATA_DIR) to a folder holding `{name}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]`")]
    MissingDataset { name: String, searched: String },
    /// A configuration option has an impossible value.
    #[error("option `{option}`: {reason}")]
    Config { option: String, reason: String },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TaskError {
    pub(crate) fn config(option: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            option: option.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, TaskError>;
