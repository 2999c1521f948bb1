//! The error type of the kernels crate.

/// Everything that can go wrong below the model level.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A tensor operation failed inside candle (shape mismatch, dtype, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The `--device` string could not be understood or is not available.
    #[error("device `{name}`: {reason}")]
    Device {
        /// The device string as given.
        name: String,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, KernelError>;
