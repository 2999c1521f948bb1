//! The error type of the models crate.

/// Everything that can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A model option has an impossible value.
    #[error("model option `{option}`: {reason}")]
    Config {
        /// The option at fault, as written in `config.toml`.
        option: &'static str,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// Loaded parameters do not fit the model.
    #[error("parameter `{name}`: {reason}")]
    Parameter {
        /// The parameter, by its store name.
        name: String,
        /// What is wrong, and what was expected instead.
        reason: String,
    },
    /// Gradients that do not fit the parameters they belong to (names or
    /// sizes).
    #[error("{0}")]
    Mismatch(String),
    /// The input does not have the shape the model was built for.
    #[error("input shape {got:?}: {expected}")]
    Input {
        /// The shape given.
        got: Vec<usize>,
        /// The shape the model expects.
        expected: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Refuses a zero for `option`, a count of something (units, layers, heads,
/// …): every model's options check their counts with it.
pub(crate) fn at_least_one(option: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(ModelError::Config {
            option,
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}
