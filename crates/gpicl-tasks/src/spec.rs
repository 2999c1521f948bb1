//! How datasets are named: the split a sequence is read from, the
//! synthetic datasets' names and the names a `--dataset` value holds —
//! what the catalogue, the cache, the configs, the loaders and the pools
//! all speak of, owned here so that none of them needs another for it.

use crate::error::{Result, TaskError};
use crate::tabular::TABULAR_DATASET;

/// Which split of a dataset to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// `train-*` files: meta-training sequences.
    Train,
    /// `t10k-*` files: every meta-test sequence.
    Test,
}

impl Split {
    /// `train` or `t10k`, the file-name prefix of the split.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Name of the synthetic dataset that needs no files.
pub const RANDOM_DATASET: &str = "random";

/// The dataset names of a `--dataset` value, checked for duplicates and for
/// `random` mixed with real data.
pub fn dataset_names(spec: &str) -> Result<Vec<String>> {
    let names: Vec<String> = spec
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(TaskError::config(
            "data.dataset",
            "names no dataset: expected e.g. `mnist` or `mnist,fashion_mnist`",
        ));
    }
    for synthetic in [RANDOM_DATASET, TABULAR_DATASET] {
        if names.len() > 1 && names.iter().any(|n| n == synthetic) {
            return Err(TaskError::config(
                "data.dataset",
                format!("`{synthetic}` cannot be mixed with other datasets in data.dataset; use data.{synthetic}_fraction to mix it into training"),
            ));
        }
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(TaskError::config(
                "data.dataset",
                format!("`{n}` is named twice"),
            ));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_value_names_each_dataset_once_and_no_synthetic_one_in_a_mixture() {
        assert!(dataset_names("mnist,random").is_err());
        assert!(dataset_names("tabular,mnist").is_err());
        assert!(dataset_names("mnist,mnist").is_err());
        assert!(dataset_names(" , ").is_err());
        assert_eq!(
            dataset_names("mnist, fashion_mnist").unwrap(),
            vec!["mnist".to_string(), "fashion_mnist".to_string()]
        );
    }
}
